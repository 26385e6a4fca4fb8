//! Live taps: the registry of active `GET /admin/tap` subscriptions and the
//! hooks the data path calls to offer copies of events to them.
//!
//! The data path pays one relaxed atomic load per batch while no tap is
//! active ([`active`]). When one is, only sampled events are copied, into a
//! bounded channel with `try_send`: a full channel drops the copy and counts
//! it (`sluice_tap_dropped_total`), so a slow reader never blocks a stage,
//! and nothing here touches delivery or commits.
//!
//! This module sits below `admin` (which serves the taps) and is called by
//! `ingest`, `stage` and `runtime`; it imports none of them.

pub mod cli;
mod known;

pub use known::Known;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

/// Where events are tapped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Point {
    /// Events accepted by an ingest route (named by its event type), as
    /// they are produced to the route's topic.
    Route {
        /// The route's event type.
        route: String,
    },
    /// Records of a topic as a stage on this host reads them.
    Topic {
        /// The topic.
        topic: String,
    },
    /// The output of one plugin in a stage's chain.
    Plugin {
        /// The stage.
        stage: String,
        /// The plugin's name in that chain.
        plugin: String,
    },
    /// Events a stage sends to its dead-letter topic, with the reason.
    DeadLetters {
        /// The stage.
        stage: String,
    },
}

/// One tapped event: one NDJSON line of `GET /admin/tap`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tapped {
    /// Where it was tapped (shared by the copies of one batch).
    #[schema(value_type = Point)]
    pub point: Arc<Point>,
    /// When, in epoch milliseconds.
    pub at_ms: i64,
    /// Record key (UTF-8, lossy), if any.
    pub key: Option<String>,
    /// The event as JSON, carried as the text it already is (not parsed
    /// into a tree and written again).
    #[schema(value_type = Object)]
    pub value: Box<RawValue>,
    /// Topic the record was read from or written to, where known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub topic: Option<String>,
    /// Partition, where known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub partition: Option<i32>,
    /// Offset, where known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub offset: Option<i64>,
    /// Why the event was dead-lettered (dead-letter taps only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl Tapped {
    /// A tapped event at `point`, now, with no position.
    pub fn new(point: Arc<Point>, key: Option<&[u8]>, value: Box<RawValue>) -> Self {
        Self {
            point,
            at_ms: now_ms(),
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
            value,
            topic: None,
            partition: None,
            offset: None,
            error: None,
        }
    }

    /// With the record's topic, partition and offset.
    pub fn at(mut self, topic: &str, partition: i32, offset: i64) -> Self {
        self.topic = Some(topic.to_string());
        self.partition = Some(partition);
        self.offset = Some(offset);
        self
    }
}

/// `value` (UTF-8 JSON bytes) as JSON, checked but not parsed into a tree;
/// a JSON string of the lossy text if it is not JSON.
pub fn json_of(value: &[u8]) -> Box<RawValue> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| RawValue::from_string(text.to_owned()).ok())
        .unwrap_or_else(|| {
            raw(&serde_json::Value::String(
                String::from_utf8_lossy(value).into_owned(),
            ))
        })
}

/// `value` as raw JSON.
pub fn raw(value: &serde_json::Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| null())
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).unwrap_or_default()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One active tap.
struct Tap {
    id: u64,
    point: Point,
    /// Probability that an event is copied, in [0, 1].
    sample: f64,
    sender: mpsc::Sender<Tapped>,
    dropped: AtomicU64,
}

/// Number of active taps; the data path's only cost while it is zero.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static TAPS: LazyLock<Mutex<Vec<Arc<Tap>>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// True while any tap is active (one relaxed load).
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed) > 0
}

/// An active tap's receiving end; dropping it removes the tap.
pub struct Subscription {
    id: u64,
    tap: Arc<Tap>,
    /// Copies as the data path offers them.
    pub receiver: mpsc::Receiver<Tapped>,
}

impl Subscription {
    /// Copies dropped so far because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.tap.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut taps = TAPS.lock().unwrap_or_else(PoisonError::into_inner);
        taps.retain(|t| t.id != self.id);
        ACTIVE.store(taps.len(), Ordering::Relaxed);
        crate::metrics::taps_active(taps.len());
    }
}

/// Start tapping `point`, copying each event with probability `sample`
/// (clamped to [0, 1]) into a channel of `capacity` copies.
pub fn subscribe(point: Point, sample: f64, capacity: usize) -> Subscription {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let sample = if sample.is_nan() {
        1.0
    } else {
        sample.clamp(0.0, 1.0)
    };
    let tap = Arc::new(Tap {
        id,
        point,
        sample,
        sender,
        dropped: AtomicU64::new(0),
    });
    let mut taps = TAPS.lock().unwrap_or_else(PoisonError::into_inner);
    taps.push(tap.clone());
    ACTIVE.store(taps.len(), Ordering::Relaxed);
    crate::metrics::taps_active(taps.len());
    Subscription { id, tap, receiver }
}

/// The active taps on `point` (empty, without locking, when none is active).
fn taps_on(point: &Point) -> Vec<Arc<Tap>> {
    if !active() {
        return Vec::new();
    }
    TAPS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|t| &t.point == point)
        .cloned()
        .collect()
}

/// Offer `count` events at `point`: for each tap there, each event is
/// sampled and only the sampled ones are built (`make(i)`) and sent.
/// Never blocks: a full channel drops the copy and counts it.
pub fn offer(point: &Point, count: usize, mut make: impl FnMut(usize) -> Tapped) {
    for tap in taps_on(point) {
        for i in 0..count {
            if tap.sample < 1.0 && rand::random::<f64>() >= tap.sample {
                continue;
            }
            if tap.sender.is_closed() {
                break;
            }
            if tap.sender.try_send(make(i)).is_err() {
                tap.dropped.fetch_add(1, Ordering::Relaxed);
                crate::metrics::tap_dropped(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(stage: &str, plugin: &str) -> Point {
        Point::Plugin {
            stage: stage.into(),
            plugin: plugin.into(),
        }
    }

    #[test]
    fn only_the_tapped_point_gets_copies_and_a_full_channel_drops() {
        let point = plugin("tap-test-a", "p2");
        let shared = Arc::new(point.clone());
        let mut sub = subscribe(point.clone(), 1.0, 3);
        assert!(active());
        offer(&plugin("tap-test-a", "p1"), 5, |i| {
            Tapped::new(Arc::new(plugin("tap-test-a", "p1")), None, raw(&i.into()))
        });
        assert!(sub.receiver.try_recv().is_err(), "another plugin's output");
        offer(&point, 5, |i| {
            Tapped::new(
                shared.clone(),
                Some(b"k"),
                raw(&serde_json::json!({ "i": i })),
            )
        });
        for i in 0..3 {
            let got = sub.receiver.try_recv().expect("a copy");
            assert_eq!(got.value.get(), format!(r#"{{"i":{i}}}"#));
            assert_eq!(got.key.as_deref(), Some("k"));
        }
        assert!(sub.receiver.try_recv().is_err());
        assert_eq!(sub.dropped(), 2, "two copies found the channel full");
        let line =
            serde_json::to_string(&Tapped::new(shared.clone(), None, raw(&1.into()))).unwrap();
        assert!(
            line.contains(r#""point":{"kind":"plugin","stage":"tap-test-a","plugin":"p2"}"#),
            "{line}"
        );
        drop(sub);
        assert!(
            taps_on(&point).is_empty(),
            "dropping the subscription ends the tap"
        );
    }

    #[test]
    fn sampling_copies_about_the_asked_share_and_zero_copies_none() {
        let point = plugin("tap-test-b", "p");
        let shared = Arc::new(point.clone());
        let mut sub = subscribe(point.clone(), 0.25, 20_000);
        offer(&point, 10_000, |_| {
            Tapped::new(shared.clone(), None, raw(&0.into()))
        });
        let mut n = 0;
        while sub.receiver.try_recv().is_ok() {
            n += 1;
        }
        println!("sampled {n} of 10000 at 0.25");
        assert!((2000..3000).contains(&n), "{n}");
        let mut none = subscribe(point.clone(), 0.0, 10);
        offer(&point, 1000, |_| {
            Tapped::new(shared.clone(), None, raw(&0.into()))
        });
        assert!(none.receiver.try_recv().is_err());
    }
}
