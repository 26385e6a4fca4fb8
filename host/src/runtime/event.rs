//! The host's own event type: what a chain carries between plugins, the same
//! for components of every contract version (each version's bindings convert
//! from and to it at the boundary).

/// One Kafka record header. Values are raw bytes, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: Vec<u8>,
}

/// Where an event was read from in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Topic the record was read from (shared by a batch's records).
    pub topic: std::sync::Arc<str>,
    /// Partition within that topic.
    pub partition: i32,
    /// Offset within that partition.
    pub offset: i64,
}

/// One event: key, JSON value, headers, timestamp, origin and a destination
/// topic override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Kafka record key.
    pub key: Option<Vec<u8>>,
    /// The value as UTF-8 JSON. Shared, not copied: the values a plugin
    /// returns for a batch arrive as one buffer that every modified event's
    /// value is a slice of.
    pub value: bytes::Bytes,
    /// Kafka record headers, in order.
    pub headers: Vec<Header>,
    /// Record timestamp in epoch milliseconds, if any.
    pub timestamp_ms: Option<i64>,
    /// Where the event came from; `None` for events a plugin created.
    pub origin: Option<Origin>,
    /// Destination topic override; `None` sends it to the stage's output.
    pub topic: Option<String>,
}

/// A change to an event's metadata that leaves its value alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Send the event to this topic.
    SetTopic(String),
    /// Replace every header of this name (or add it).
    SetHeader(Header),
    /// Remove every header of this name.
    RemoveHeader(String),
}

impl Event {
    /// Apply a metadata edit.
    pub fn apply(&mut self, edit: Edit) {
        match edit {
            Edit::SetTopic(topic) => self.topic = Some(topic),
            Edit::SetHeader(header) => {
                self.headers.retain(|h| h.key != header.key);
                self.headers.push(header);
            }
            Edit::RemoveHeader(key) => self.headers.retain(|h| h.key != key),
        }
    }
}

/// What a transform decided for one event, whatever its contract version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Pass it on; its value is unchanged (metadata edits may apply).
    Keep(Vec<Edit>),
    /// Its value was replaced (and metadata edits may apply).
    Modify(bytes::Bytes, Vec<Edit>),
    /// Drop it on purpose.
    Drop,
    /// Dead-letter it with this reason.
    Fail(String),
    /// Replace it with these events.
    FanOut(Vec<Event>),
    /// Replace the whole event (contract 0.1's `modify`).
    Replace(Event),
}
