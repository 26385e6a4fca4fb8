//! Kafka: where the brokers are, how clients are configured, topic creation,
//! the embedded in-process broker, and broker reachability.
//!
//! Every producer Sluice builds is idempotent with `acks=all`; every consumer
//! disables auto-commit so offsets are committed only after a batch is done.

mod embedded;
mod health;
mod producer;
mod tail;
mod transactional;

pub use embedded::EmbeddedBroker;
pub use health::BrokerHealth;
pub use producer::{Producer, is_broker_unreachable};
pub use tail::{Tail, TailRecord};
pub use transactional::{
    TRANSACTION_CALL_TIMEOUT, TransactionalProducer, TxnErrorKind, classify as classify_txn_error,
};

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::FromClientConfig;

use crate::config::KafkaConfig;

/// A handle on the Kafka cluster this host talks to.
pub struct Kafka {
    bootstrap: String,
    settings: Vec<(String, String)>,
    partitions: i32,
    embedded: Option<EmbeddedBroker>,
}

impl Kafka {
    /// Connect to the configured brokers, starting the embedded broker when
    /// `brokers = "embedded"`, and make sure `topics` exist where Sluice is
    /// responsible for them (always on the embedded broker; on a real one
    /// with `create_topics = true`).
    pub async fn start(config: &KafkaConfig, topics: &[String]) -> anyhow::Result<Self> {
        let settings = config.client_settings();
        let (bootstrap, embedded) = if config.is_embedded() {
            let broker = EmbeddedBroker::start().context("cannot start the embedded broker")?;
            tracing::warn!(
                bootstrap = broker.bootstrap_servers(),
                "using the embedded in-process Kafka broker: data is kept in memory only and is \
                 lost when sluice exits; set [kafka] brokers to a real cluster for anything durable \
                 (other processes reach this one at its bootstrap address: `sluice replay --brokers`)"
            );
            *EMBEDDED_BOOTSTRAP
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(broker.bootstrap_servers().to_string());
            (broker.bootstrap_servers().to_string(), Some(broker))
        } else {
            (config.brokers.get_ref().trim().to_string(), None)
        };
        let kafka = Self {
            bootstrap,
            settings,
            partitions: config.partitions,
            embedded,
        };
        if kafka.embedded.is_some() || config.create_topics {
            kafka.ensure_topics(topics).await?;
        }
        Ok(kafka)
    }

    /// Base client settings: bootstrap servers plus the operator's
    /// pass-through `[kafka.client]` settings (which win).
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in &self.settings {
            config.set(key, value);
        }
        config
    }

    /// An idempotent producer (`enable.idempotence=true`, `acks=all`) whose
    /// deliveries fail after `delivery_timeout` instead of retrying forever.
    /// `role` (ingest, stage, ...) labels its logs and metrics.
    pub fn producer(
        &self,
        role: &'static str,
        delivery_timeout: Duration,
    ) -> anyhow::Result<Producer> {
        Producer::new(role, self.idempotent_config(delivery_timeout))
    }

    /// Settings every producer of the host shares: idempotent, `acks=all`,
    /// deliveries failing after `delivery_timeout`, and the batching and
    /// compression defaults (which `[kafka.client]` may override).
    fn idempotent_config(&self, delivery_timeout: Duration) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            )
            .set("linger.ms", setting_or(&self.settings, "linger.ms", "2"))
            .set(
                "queue.buffering.max.messages",
                setting_or(&self.settings, "queue.buffering.max.messages", "1000000"),
            )
            .set(
                "compression.type",
                setting_or(&self.settings, "compression.type", "lz4"),
            );
        config
    }

    /// A transactional producer (idempotent, `acks=all`) with the id
    /// `transactional_id`, its transactions aborted by the broker when left
    /// open past `transaction_timeout`. Registers the id (fencing an earlier
    /// producer with it) before returning.
    pub fn transactional_producer(
        &self,
        transactional_id: String,
        transaction_timeout: Duration,
        delivery_timeout: Duration,
    ) -> anyhow::Result<TransactionalProducer> {
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        let mut config = self.idempotent_config(delivery_timeout.min(transaction_timeout));
        config.set("transactional.id", &transactional_id).set(
            "transaction.timeout.ms",
            transaction_timeout.as_millis().to_string(),
        );
        TransactionalProducer::new(config, transactional_id)
    }

    /// A consumer in `group` with auto-commit off: the caller commits after
    /// processing. Starts from the earliest offset when the group has none.
    pub fn group_consumer<C: FromClientConfig>(&self, group: &str) -> anyhow::Result<C> {
        self.group_config(group)
            .create()
            .context("cannot create Kafka consumer")
    }

    /// [`Kafka::group_consumer`] with a context that sees rebalances, and
    /// `isolation.level=read_committed` (records of aborted or still open
    /// transactions are never read, and committed offsets that a pending
    /// transaction may still change are waited for).
    pub fn group_consumer_with<Cx: rdkafka::consumer::ConsumerContext + 'static>(
        &self,
        group: &str,
        context: Cx,
    ) -> anyhow::Result<rdkafka::consumer::BaseConsumer<Cx>> {
        let mut config = self.group_config(group);
        config.set("isolation.level", "read_committed");
        config
            .create_with_context(context)
            .context("cannot create Kafka consumer")
    }

    fn group_config(&self, group: &str) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                setting_or(&self.settings, "auto.offset.reset", "earliest"),
            )
            .set(
                "session.timeout.ms",
                setting_or(&self.settings, "session.timeout.ms", "10000"),
            )
            .set(
                "partition.assignment.strategy",
                setting_or(
                    &self.settings,
                    "partition.assignment.strategy",
                    "cooperative-sticky",
                ),
            );
        config
    }

    /// A consumer with no group, for manual partition assignment (broker
    /// health, tails).
    pub fn reader(&self) -> anyhow::Result<rdkafka::consumer::BaseConsumer> {
        self.reader_config("reader")
            .create()
            .context("cannot create Kafka reader")
    }

    /// The config of a group-less reader for `purpose` (manually assigned
    /// partitions; it never commits, so its `group.id` is never used).
    pub fn reader_config(&self, purpose: &str) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("group.id", format!("sluice-{purpose}-unused"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        config
    }

    /// Create the topics that do not exist yet, with the configured partition
    /// count. On the embedded broker this uses its own API (its admin API
    /// does not support CreateTopics).
    pub async fn ensure_topics(&self, topics: &[String]) -> anyhow::Result<()> {
        if let Some(broker) = &self.embedded {
            for topic in topics {
                broker.create_topic(topic, self.partitions)?;
            }
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .context("cannot create Kafka admin client")?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, self.partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .context("CreateTopics request failed")?;
        for result in results {
            match result {
                Ok(topic) => tracing::info!(topic, "created topic"),
                Err((topic, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::debug!(topic, "topic exists")
                }
                Err((topic, code)) => bail!("cannot create topic {topic}: {code}"),
            }
        }
        Ok(())
    }
}

impl Kafka {
    /// Create `topic` with one partition and `cleanup.policy=compact` if it
    /// does not exist (the plugin store). A broker that ignored the config
    /// would keep every record, which is also correct, only larger.
    pub async fn ensure_compacted_topic(&self, topic: &str) -> anyhow::Result<()> {
        if let Some(broker) = &self.embedded {
            return broker.create_topic(topic, 1);
        }
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .context("cannot create Kafka admin client")?;
        let new_topic =
            NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&[new_topic], &options)
            .await
            .context("CreateTopics request failed")?;
        for result in results {
            match result {
                Ok(topic) => tracing::info!(topic, "created compacted topic"),
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => bail!("cannot create topic {topic}: {code}"),
            }
        }
        Ok(())
    }
}

/// The address of the embedded broker this process started last, if any:
/// other processes (`sluice replay --brokers`) reach it there while it runs.
pub fn embedded_bootstrap() -> Option<String> {
    EMBEDDED_BOOTSTRAP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

static EMBEDDED_BOOTSTRAP: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

impl Kafka {
    /// [`Kafka::producer`] with its own `compression.type` (a route's
    /// `compression`); `None` keeps the default.
    pub fn producer_compressed(
        &self,
        role: &'static str,
        delivery_timeout: Duration,
        compression: Option<&str>,
    ) -> anyhow::Result<Producer> {
        match compression {
            None => self.producer(role, delivery_timeout),
            Some(codec) => {
                let mut settings = self.settings.clone();
                settings.retain(|(k, _)| k != "compression.type" && k != "compression.codec");
                settings.push(("compression.type".into(), codec.into()));
                let with = Self {
                    bootstrap: self.bootstrap.clone(),
                    settings,
                    partitions: self.partitions,
                    embedded: None,
                };
                with.producer(role, delivery_timeout)
            }
        }
    }
}

fn setting_or(settings: &[(String, String)], key: &str, default: &str) -> String {
    settings
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| default.to_string())
}

/// A record's headers as `(name, value)` pairs, in order (a header without
/// a value reads as empty).
pub fn record_headers<M: rdkafka::Message>(message: &M) -> Vec<(String, Vec<u8>)> {
    use rdkafka::message::Headers;
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}
