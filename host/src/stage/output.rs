//! At-least-once output: producing a batch's records, waiting for the
//! broker's acknowledgements (producing failed ones again with backoff),
//! and the in-flight batch that the stage loop and the rebalance callback
//! both may finish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use futures::executor::block_on;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use super::batch::{Batch, Record};
use super::{MAX_RETRY_DELAY, retry_delays};
use crate::kafka::Producer;
use crate::stage::{StageState, StatusBoard};

/// A stage's at-least-once producer.
pub struct Output {
    stage: String,
    input: String,
    producer: Producer,
}

/// Records handed to the producer, with their delivery futures.
pub struct InFlightSend {
    producer: Arc<FutureProducer>,
    deliveries: Vec<Result<rdkafka::producer::DeliveryFuture, rdkafka::error::KafkaError>>,
}

/// A batch run through its chain, with the records to produce.
pub struct Prepared {
    /// The batch read (its next offsets are what is committed).
    pub batch: Batch,
    /// Output records and dead letters.
    pub records: Vec<Record>,
    /// When the batch's first record was taken up.
    pub started: Instant,
}

/// A batch whose records are on their way to the broker.
pub struct InFlight {
    /// The batch and its records.
    pub prepared: Prepared,
    sent: InFlightSend,
}

/// The at-least-once stage's in-flight batch, shared with the rebalance
/// callback.
pub type InFlightSlot = Arc<Mutex<Option<InFlight>>>;

impl Output {
    /// An output for `stage` (reading `input`) through `producer`.
    pub fn new(stage: &str, input: &str, producer: Producer) -> Self {
        Self {
            stage: stage.to_string(),
            input: input.to_string(),
            producer,
        }
    }

    /// Hand a prepared batch's records to the producer.
    pub fn launch(&self, prepared: Prepared) -> InFlight {
        let sent = self.send(&prepared.records.iter().collect::<Vec<_>>());
        InFlight { prepared, sent }
    }

    /// Wait until every record of `in_flight` is acknowledged. Returns the
    /// prepared batch, or `None` if asked to stop first (not to be
    /// committed: it is read again after restart).
    pub fn settle(
        &self,
        in_flight: InFlight,
        board: &StatusBoard,
        stop: &AtomicBool,
    ) -> Option<Prepared> {
        let InFlight { prepared, sent } = in_flight;
        self.deliver(&prepared.records, sent, board, stop)
            .then_some(prepared)
    }

    /// Hand `records` to the producer without waiting for the broker.
    fn send(&self, records: &[&Record]) -> InFlightSend {
        let producer = self.producer.get();
        let deliveries = records
            .iter()
            .map(|record| {
                producer
                    .send_result(future_record(record))
                    .map_err(|(e, _)| e)
            })
            .collect();
        crate::metrics::producer_queue_depth("stage", producer.in_flight_count());
        InFlightSend {
            producer,
            deliveries,
        }
    }

    /// Wait for the broker's answer to every record of a send; true for each
    /// acknowledged one.
    fn acknowledged(&self, sent: InFlightSend) -> Vec<bool> {
        let InFlightSend {
            producer,
            deliveries,
        } = sent;
        deliveries
            .into_iter()
            .map(|d| {
                let error = match d {
                    Ok(delivery) => match block_on(delivery) {
                        Ok(Ok(_)) => return true,
                        Ok(Err((e, _))) => e,
                        Err(_) => rdkafka::error::KafkaError::Canceled,
                    },
                    Err(e) => e,
                };
                self.producer.on_failure(&producer, &error);
                false
            })
            .collect()
    }

    /// Wait until every record of `sent` (the records in `records`) is
    /// acknowledged, producing failed ones again with backoff. Returns false
    /// if asked to stop first.
    fn deliver(
        &self,
        records: &[Record],
        sent: InFlightSend,
        board: &StatusBoard,
        stop: &AtomicBool,
    ) -> bool {
        let mut pending: Vec<&Record> = records.iter().collect();
        let mut sent = sent;
        let mut delays = retry_delays(Duration::from_millis(100)).build();
        let mut retried = false;
        loop {
            let results = self.acknowledged(sent);
            pending = pending
                .into_iter()
                .zip(results)
                .filter_map(|(r, ok)| (!ok).then_some(r))
                .collect();
            if pending.is_empty() {
                if retried {
                    board.set(
                        &self.stage,
                        StageState::Running,
                        format!("consuming {}", self.input),
                    );
                    tracing::info!(stage = %self.stage, "output acknowledged again; resuming");
                }
                return true;
            }
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            board.set(
                &self.stage,
                StageState::Retrying,
                format!("{} records not acknowledged; retrying", pending.len()),
            );
            tracing::warn!(stage = %self.stage, pending = pending.len(), "output not acknowledged; retrying");
            std::thread::sleep(delays.next().unwrap_or(MAX_RETRY_DELAY));
            retried = true;
            sent = self.send(&pending);
        }
    }
}

/// The librdkafka record for `record`: topic, key, value, timestamp and
/// headers.
pub fn future_record(record: &Record) -> FutureRecord<'_, Vec<u8>, Vec<u8>> {
    let mut future = FutureRecord::to(&record.topic).payload(&record.value);
    if let Some(key) = &record.key {
        future = future.key(key);
    }
    if let Some(ts) = record.timestamp {
        future = future.timestamp(ts);
    }
    future.headers(headers(&record.headers))
}

/// Librdkafka headers for a record's header pairs.
fn headers(pairs: &[(String, Vec<u8>)]) -> OwnedHeaders {
    pairs
        .iter()
        .fold(OwnedHeaders::new_with_capacity(pairs.len()), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            })
        })
}
