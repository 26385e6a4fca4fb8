//! A transactional producer for exactly-once stages (KIP-98 transactions
//! with KIP-447's consumer-group fencing).
//!
//! One per exactly-once stage per host, with the transactional id
//! `<group>.<stage>.<host id>`: a restarted host with the same host id
//! (`[plugins] host_id`, else host name and listen port) fences its
//! predecessor's producer and aborts its open transaction in
//! `init_transactions`; a zombie that lost its
//! partitions to another host is fenced by the group generation its offset
//! commit carries (the broker refuses it), so nothing it wrote becomes
//! visible to `read_committed` readers.
//!
//! Errors are classified as librdkafka does: retriable (try the same call
//! again), abortable (abort the transaction, rewind, retry the work) and
//! fatal (fenced or broken: rebuild the producer, which aborts what was
//! open, then rewind).

use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer as _};

/// How long one transactional call (init, offsets, commit, abort) may take.
pub const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A transactional producer that can be rebuilt after fatal errors.
pub struct TransactionalProducer {
    config: ClientConfig,
    transactional_id: String,
    producer: FutureProducer,
}

impl TransactionalProducer {
    /// Create the producer and register its transactional id with the
    /// coordinator (fencing any earlier producer with the same id).
    pub(super) fn new(config: ClientConfig, transactional_id: String) -> anyhow::Result<Self> {
        let producer = init(&config, &transactional_id)?;
        Ok(Self {
            config,
            transactional_id,
            producer,
        })
    }

    /// The producer to send with inside the open transaction.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// The transactional id, for logs.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Replace the producer with a fresh one with the same transactional
    /// id: `init_transactions` bumps the epoch, which aborts whatever the
    /// old one had open and fences it.
    pub fn rebuild(&mut self) -> anyhow::Result<()> {
        let fresh = init(&self.config, &self.transactional_id)?;
        self.producer = fresh;
        Ok(())
    }
}

fn init(config: &ClientConfig, transactional_id: &str) -> anyhow::Result<FutureProducer> {
    let producer: FutureProducer = config
        .create()
        .context("cannot create the transactional producer")?;
    producer
        .init_transactions(TRANSACTION_CALL_TIMEOUT)
        .with_context(|| format!("cannot initialise transactions for `{transactional_id}`"))?;
    Ok(producer)
}

/// What to do after a failed transactional call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnErrorKind {
    /// Call it again (the transaction is intact).
    Retriable,
    /// Abort the transaction, then redo its work.
    Abortable,
    /// The producer is fenced or broken: rebuild it.
    Fatal,
}

/// Classify an error from a transactional call or a send inside one.
pub fn classify(error: &KafkaError) -> TxnErrorKind {
    match error {
        KafkaError::Transaction(e) if e.is_fatal() => TxnErrorKind::Fatal,
        KafkaError::Transaction(e) if e.txn_requires_abort() => TxnErrorKind::Abortable,
        KafkaError::Transaction(e) if e.is_retriable() => TxnErrorKind::Retriable,
        _ => TxnErrorKind::Abortable,
    }
}
