//! A replaceable idempotent producer.
//!
//! After a delivery times out, librdkafka's idempotent producer bumps its
//! epoch (KIP-360) when the broker returns; a producer that cannot
//! re-establish its idempotence state (or that librdkafka declares fatally
//! failed, e.g. after an out-of-sequence answer) stalls or refuses every
//! later send, on any broker. So when a delivery fails because the broker is
//! unreachable (or the producer is fatally failed), the producer is replaced
//! by a fresh one (new producer id) and the old one is purged, so its
//! pending deliveries fail at once and it is dropped before the broker
//! returns. Records the old one had not
//! delivered were never acknowledged, so their senders were told (503, or
//! a stage retry): at-least-once holds.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;

/// An idempotent producer that can be swapped after broker outages.
pub struct Producer {
    role: &'static str,
    config: ClientConfig,
    current: RwLock<Arc<FutureProducer>>,
}

impl Producer {
    /// Build from a complete client configuration. `role` names the part
    /// of the host it serves, in logs and metrics.
    pub(super) fn new(role: &'static str, config: ClientConfig) -> anyhow::Result<Self> {
        let producer: FutureProducer = config.create().context("cannot create Kafka producer")?;
        Ok(Self {
            role,
            config,
            current: RwLock::new(Arc::new(producer)),
        })
    }

    /// The producer to send with now.
    pub fn get(&self) -> Arc<FutureProducer> {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Note a failed delivery through `used`. If the failure means the
    /// broker was unreachable, or `used` is in a fatal state, and `used` is
    /// still current, replace it, and purge what `used` still holds so every
    /// delivery pending on it fails now: its senders are told (503, or a
    /// stage retry) and the old producer is dropped promptly instead of
    /// outliving the outage with its stale idempotence state. Returns true
    /// when the producer was replaced.
    pub fn on_failure(&self, used: &Arc<FutureProducer>, error: &KafkaError) -> bool {
        use rdkafka::producer::{Producer as _, PurgeConfig};
        // A fatal error (librdkafka gives up on the idempotent session, e.g.
        // after an out-of-order sequence) makes every later send fail: the
        // producer must be rebuilt, whatever this delivery's error was.
        let reason = match used.client().fatal_error() {
            Some((code, why)) => format!("the producer hit a fatal error ({code:?}: {why})"),
            None if is_broker_unreachable(error) => {
                "delivery failed while the broker was unreachable".to_string()
            }
            None => return false,
        };
        let mut current = match self.current.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Every record of a failed batch reports the same outage: only the
        // first report for the current producer replaces it.
        if !Arc::ptr_eq(&current, used) {
            return false;
        }
        let fresh: FutureProducer = match self.config.create() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a replacement producer");
                return false;
            }
        };
        tracing::warn!(producer = self.role, error = %error, "{reason}: replacing the producer");
        crate::metrics::producer_replaced(self.role);
        *current = Arc::new(fresh);
        drop(current);
        used.purge(PurgeConfig::default().queue().inflight());
        true
    }

    /// Flush the current producer.
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        use rdkafka::producer::Producer as _;
        self.get().flush(timeout).context("producer flush")
    }
}

/// True for errors that mean the broker did not answer in time.
pub fn is_broker_unreachable(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::PurgeQueue
                | RDKafkaErrorCode::PurgeInflight
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::producer::{FutureRecord, Producer as _};

    fn producer() -> Producer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "1000");
        Producer::new("test", config).expect("producer")
    }

    #[test]
    fn a_producer_in_a_fatal_state_is_replaced() {
        let producer = producer();
        let used = producer.get();
        let reason = std::ffi::CString::new("injected by the test").expect("no NUL");
        // librdkafka's own fault injection for idempotent producers.
        // SAFETY: the client pointer is valid while `used` lives; `reason`
        // outlives the call, which copies it.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                used.client().native_ptr(),
                rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
        let error = match used.send_result(FutureRecord::<(), _>::to("t").payload("x")) {
            Err((e, _)) => e,
            Ok(_) => panic!("a producer in a fatal state refuses records"),
        };
        assert!(!is_broker_unreachable(&error), "{error}");
        assert!(producer.on_failure(&used, &error), "replaced");
        let fresh = producer.get();
        assert!(!Arc::ptr_eq(&fresh, &used));
        assert!(fresh.client().fatal_error().is_none());
        // A second report about the old producer changes nothing.
        assert!(!producer.on_failure(&used, &error));
        assert!(Arc::ptr_eq(&producer.get(), &fresh));
    }

    #[test]
    fn an_ordinary_rejection_keeps_the_producer() {
        let producer = producer();
        let used = producer.get();
        let error = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(!producer.on_failure(&used, &error));
        assert!(Arc::ptr_eq(&producer.get(), &used));
        let unreachable = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(producer.on_failure(&used, &unreachable));
        assert!(!Arc::ptr_eq(&producer.get(), &used));
    }
}
