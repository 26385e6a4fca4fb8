//! Broker reachability, watched in the background so requests can be
//! refused fast (503) while the broker is down instead of waiting out the
//! delivery timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

/// Whether the broker answered the last metadata request.
#[derive(Clone, Debug)]
pub struct BrokerHealth {
    reachable: Arc<AtomicBool>,
}

impl BrokerHealth {
    /// Start watching: a metadata request every `interval` through `client`,
    /// a client of its own (a producer's client would keep that producer
    /// alive after it was replaced).
    pub fn watch(client: BaseConsumer, interval: Duration) -> std::io::Result<Self> {
        let health = Self {
            reachable: Arc::new(AtomicBool::new(true)),
        };
        let flag = health.reachable.clone();
        std::thread::Builder::new()
            .name("sluice-broker-health".into())
            .spawn(move || {
                loop {
                    let ok = client
                        .fetch_metadata(None, interval.max(Duration::from_millis(500)))
                        .map(|m| !m.brokers().is_empty())
                        .unwrap_or(false);
                    let was = flag.swap(ok, Ordering::SeqCst);
                    if was != ok {
                        if ok {
                            tracing::info!("Kafka broker reachable again");
                        } else {
                            tracing::warn!("Kafka broker unreachable: ingest answers 503");
                        }
                    }
                    if Arc::strong_count(&flag) == 1 {
                        return;
                    }
                    std::thread::sleep(interval);
                }
            })?;
        Ok(health)
    }

    /// True when the broker answered the last check.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::SeqCst)
    }

    /// Record a delivery failure that shows the broker is unreachable; the
    /// watcher flips it back once metadata requests succeed again.
    pub fn mark_unreachable(&self) {
        if self.reachable.swap(false, Ordering::SeqCst) {
            tracing::warn!("Kafka delivery failed: marking broker unreachable");
        }
    }
}
