//! Producing accepted events: the records go to their routes' producers
//! under the in-flight bound, and the request waits for the broker's
//! acknowledgement (or, with `ack = "queued"`, only for the queue).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};

use super::{ACK_GRACE, ApiError, Ingest, Prepared};
use crate::config::AckMode;

impl Ingest {
    /// Publish and count the events by route and result.
    pub(super) async fn publish_counted(
        self: &Arc<Self>,
        events: Vec<Prepared>,
    ) -> Result<usize, ApiError> {
        let result = self.publish(&events).await;
        self.count(
            &events,
            if result.is_ok() {
                "accepted"
            } else {
                "unavailable"
            },
        );
        result
    }

    /// Produce the events; `Ok` once the broker acknowledged them all (or,
    /// with `ack = "queued"`, once they are queued).
    async fn publish(self: &Arc<Self>, events: &[Prepared]) -> Result<usize, ApiError> {
        let count = events.len();
        if count == 0 {
            return Ok(0);
        }
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(self.unavailable("sluice is shutting down; retry on another host"));
        }
        if !self.health.is_reachable() {
            return Err(self.unavailable("the Kafka broker is unreachable; nothing was written"));
        }
        let permits = u32::try_from(count)
            .ok()
            .and_then(|n| self.in_flight.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| {
                self.unavailable("too many events in flight to the broker; nothing was written")
            })?;
        self.report_in_flight();
        // Routes with their own compression have their own producer.
        let mut used: Vec<Option<Arc<FutureProducer>>> = vec![None; self.producers.len()];
        let mut deliveries = Vec::with_capacity(count);
        let mut enqueue_error = None;
        for event in events {
            let route = &self.routes[event.route];
            let producer =
                used[route.producer].get_or_insert_with(|| self.producers[route.producer].get());
            let mut record = FutureRecord::to(&route.topic).payload(&event.payload[..]);
            if let Some(key) = &event.key {
                record = record.key(key);
            }
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push((route.producer, delivery)),
                Err((e, _)) => {
                    enqueue_error = Some((route.producer, e));
                    break;
                }
            }
        }
        if let Some((index, e)) = enqueue_error {
            tracing::warn!(error = %e, "ingest producer refused a record");
            // A producer in a fatal state refuses every record: replace it.
            if let Some(producer) = &used[index] {
                self.producers[index].on_failure(producer, &e);
            }
            self.watch_acks(used, deliveries, permits, false);
            return Err(self.unavailable(format!(
                "the producer queue refused the events ({e}); retry"
            )));
        }
        let queued = self.ack == AckMode::Queued;
        let acks = self.watch_acks(used, deliveries, permits, queued);
        if queued {
            return Ok(count);
        }
        match acks.await {
            Ok(None) => Ok(count),
            Ok(Some(e)) => Err(self.unavailable(format!(
                "the broker did not acknowledge every event ({e}); retry the request"
            ))),
            Err(e) => Err(self.unavailable(format!(
                "waiting for the broker's acknowledgement failed ({e}); retry the request"
            ))),
        }
    }

    /// Wait for the broker's answer to `deliveries` in a task of its own and
    /// return the first failure, if any. Holding the permits until then keeps
    /// `max_in_flight` honest.
    ///
    /// A task, not the request, so a client that hangs up (or `ack =
    /// "queued"`) cannot hide a failed delivery: the producer is still
    /// replaced when the broker did not acknowledge. The wait is bounded by
    /// `ack_timeout_ms` plus [`ACK_GRACE`], because librdkafka may hold records
    /// that were in flight when a connection dropped for longer than their
    /// message timeout; past the bound they count as not acknowledged.
    ///
    /// `answered` says the client already got its 202 (`ack = "queued"`), so
    /// a failure here is an accepted event lost: logged as an error.
    fn watch_acks(
        self: &Arc<Self>,
        used: Vec<Option<Arc<FutureProducer>>>,
        deliveries: Vec<(usize, DeliveryFuture)>,
        permits: tokio::sync::OwnedSemaphorePermit,
        answered: bool,
    ) -> tokio::task::JoinHandle<Option<KafkaError>> {
        let ingest = Arc::clone(self);
        tokio::spawn(async move {
            let bound = ingest.ack_timeout + ACK_GRACE;
            let (indices, futures): (Vec<usize>, Vec<DeliveryFuture>) =
                deliveries.into_iter().unzip();
            // The producer that failed, or None for all of them (timeout).
            let failure = match tokio::time::timeout(bound, join_all(futures)).await {
                Ok(results) => results
                    .into_iter()
                    .zip(indices)
                    .find_map(|(result, index)| match result {
                        Ok(Ok(_)) => None,
                        Ok(Err((e, _))) => Some((Some(index), e)),
                        Err(_) => Some((Some(index), KafkaError::Canceled)),
                    }),
                Err(_) => Some((
                    None,
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
                )),
            };
            drop(permits);
            ingest.report_in_flight();
            let failure = failure.map(|(index, e)| {
                let mut replaced = false;
                for (i, producer) in used.iter().enumerate() {
                    if let Some(producer) = producer
                        && index.is_none_or(|index| index == i)
                    {
                        replaced |= ingest.producers[i].on_failure(producer, &e);
                    }
                }
                if replaced {
                    ingest.health.mark_unreachable();
                }
                e
            });
            if let Some(e) = &failure {
                if answered {
                    tracing::error!(error = %e, "queued ingest record was not delivered");
                } else {
                    tracing::warn!(error = %e, "broker did not acknowledge ingest records");
                }
            }
            failure
        })
    }

    fn report_in_flight(&self) {
        crate::metrics::ingest_in_flight(self.max_in_flight - self.in_flight.available_permits());
        let depth = self
            .producers
            .iter()
            .map(|p| p.get().in_flight_count())
            .sum();
        crate::metrics::producer_queue_depth("ingest", depth);
    }

    fn count(&self, events: &[Prepared], status: &'static str) {
        for (i, route) in self.routes.iter().enumerate() {
            let n = events.iter().filter(|e| e.route == i).count();
            if n > 0 {
                crate::metrics::ingest_events(&route.topic, status, n);
            }
        }
    }
}
