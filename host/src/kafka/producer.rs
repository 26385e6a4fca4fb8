//! A replaceable idempotent producer.
//!
//! After a delivery times out, librdkafka's idempotent producer bumps its
//! epoch (KIP-360) when the broker returns. Not every Kafka-protocol broker
//! handles that, and a producer that cannot re-establish its idempotence
//! state stalls every later send. With tansu 0.6 it is worse: a producer
//! whose in-flight records timed out during an outage, producing again after
//! the broker returns, panics tansu's single storage task ("more or less than
//! one row" in its idempotence check), after which the broker serves no one.
//! So when a delivery fails because the broker is unreachable, the producer is
//! replaced by a fresh one (new producer id) and the old one is dropped as
//! soon as its last pending delivery resolves. Records the old one had not
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
    config: ClientConfig,
    current: RwLock<Arc<FutureProducer>>,
}

impl Producer {
    /// Build from a complete client configuration.
    pub(super) fn new(config: ClientConfig) -> anyhow::Result<Self> {
        let producer: FutureProducer = config.create().context("cannot create Kafka producer")?;
        Ok(Self {
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
    /// broker was unreachable and `used` is still current, replace it, and
    /// purge what `used` still holds so every delivery pending on it fails
    /// now: its senders are told (503, or a stage retry) and the old producer
    /// is dropped promptly instead of outliving the outage with its stale
    /// idempotence state. Returns true when the producer was replaced.
    pub fn on_failure(&self, used: &Arc<FutureProducer>, error: &KafkaError) -> bool {
        use rdkafka::producer::{Producer as _, PurgeConfig};
        if !is_broker_unreachable(error) {
            return false;
        }
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
        tracing::warn!(error = %error, "delivery failed while the broker was unreachable: replacing the producer");
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
