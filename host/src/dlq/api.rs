//! The request and response bodies of `/admin/dlq`, in one place (the
//! OpenAPI document describes exactly these; `sluice dlq` reads them).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

/// A JSON integer, also written as an integral float (`192.0`, which JSON
/// Schema's `integer` allows), within `T`'s range.
fn integer<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    let v = n
        .as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        })
        .ok_or_else(|| D::Error::custom(format!("{n} is not an integer")))?;
    T::try_from(v).map_err(|_| D::Error::custom(format!("{v} is out of range")))
}

/// An optional [`integer`]; also used by [`crate::preview`]'s body.
pub(crate) fn optional_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "integer")] i64);
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

/// Default number of entries `GET /admin/dlq/{stage}` returns.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// Most entries one list answer carries (the counts cover every match).
pub const MAX_LIST_LIMIT: usize = 10_000;

/// The query of `GET /admin/dlq/{stage}`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only dead letters of this plugin (`(host)` for decode failures).
    pub plugin: Option<String>,
    /// Only dead letters whose error contains this text (case-insensitive).
    pub error: Option<String>,
    /// Entries to return, 1 to [`MAX_LIST_LIMIT`] (default
    /// [`DEFAULT_LIST_LIMIT`]); `matched` and `groups` count every match.
    #[param(minimum = 1, maximum = 10000, default = 100)]
    pub limit: Option<usize>,
    /// Start at this offset in every partition (default: the oldest kept).
    #[param(minimum = 0)]
    pub from: Option<i64>,
    /// Only this partition of the dead-letter topic.
    #[param(minimum = 0)]
    pub partition: Option<i32>,
}

/// Where a dead letter's input record was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = DlqOrigin)]
pub struct Origin {
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: Option<i32>,
    /// Input offset.
    pub offset: Option<i64>,
}

/// One dead letter, as its headers describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = DlqEntry)]
pub struct Entry {
    /// Partition of the dead-letter topic.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
    /// Record timestamp, epoch milliseconds (the input record's).
    pub timestamp: Option<i64>,
    /// Kafka key as text.
    pub key: Option<String>,
    /// `sluice-stage`.
    pub stage: String,
    /// `sluice-plugin` (`(host)`: decoding or a sink).
    pub plugin: String,
    /// `sluice-plugin-version`.
    pub version: String,
    /// `sluice-error`.
    pub error: String,
    /// `sluice-origin-*`.
    pub origin: Origin,
    /// `sluice-redriven-by`: who redrove this record before it failed again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redriven_by: Option<String>,
    /// `sluice-redrive-id` of that redrive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_id: Option<String>,
}

/// Dead letters counted by reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = DlqGroup)]
pub struct Group {
    /// Plugin.
    pub plugin: String,
    /// Error, verbatim.
    pub error: String,
    /// How many matched dead letters have this plugin and error.
    pub count: u64,
}

/// The answer of `GET /admin/dlq/{stage}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = DlqList)]
pub struct ListAnswer {
    /// Stage.
    pub stage: String,
    /// Its dead-letter topic.
    pub topic: String,
    /// Records read.
    pub scanned: u64,
    /// Records that passed the filters.
    pub matched: u64,
    /// The first `limit` matches, by partition and offset.
    pub entries: Vec<Entry>,
    /// True when more matched than `entries` holds.
    pub truncated: bool,
    /// Every match counted by (plugin, error), most frequent first.
    pub groups: Vec<Group>,
}

/// The answer of `GET /admin/dlq/{stage}/{partition}/{offset}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = DlqShow)]
pub struct ShowAnswer {
    /// What the headers say.
    #[serde(flatten)]
    pub entry: Entry,
    /// Every header as text, in order, `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    /// The value decoded to natural JSON, or `{"undecodable": reason}`.
    pub value: serde_json::Value,
}

/// One dead letter by position.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[schema(as = DlqRecordRef)]
#[serde(deny_unknown_fields)]
pub struct RecordRef {
    /// Partition of the dead-letter topic.
    #[serde(deserialize_with = "integer")]
    #[schema(minimum = 0)]
    pub partition: i32,
    /// Offset.
    #[serde(deserialize_with = "integer")]
    #[schema(minimum = 0)]
    pub offset: i64,
}

/// The body of `POST /admin/dlq/{stage}/redrive`: which dead letters to
/// send back to the stage's input (exactly one of `all`, a filter
/// (`plugin` and/or `error`), `records`), and optionally a chain to run
/// them through first.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = DlqRedriveRequest)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Every dead letter of the stage.
    #[serde(default)]
    pub all: bool,
    /// Those of this plugin.
    pub plugin: Option<String>,
    /// Those whose error contains this text (case-insensitive).
    pub error: Option<String>,
    /// These ones.
    pub records: Option<Vec<RecordRef>>,
    /// Only from this offset in every partition (with `all` or a filter).
    #[serde(default, deserialize_with = "optional_integer")]
    #[schema(minimum = 0)]
    pub from: Option<i64>,
    /// Plugins (`name`, `name@vN` for a store version, `name@<12 hex>`)
    /// to run the records through before they go back, as replay does.
    #[serde(default)]
    pub through: Vec<String>,
}

/// A record a redrive did not send, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = DlqNotRedriven)]
pub struct NotRedriven {
    /// Partition of the dead-letter topic.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Why (a `through` plugin failed it, or it is not there).
    pub reason: String,
}

/// The answer of `POST /admin/dlq/{stage}/redrive`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = DlqRedrive)]
pub struct RedriveAnswer {
    /// This redrive's id (`sluice-redrive-id` on every record it sent).
    pub redrive_id: String,
    /// The admin token's name (`sluice-redriven-by`).
    pub by: String,
    /// Stage.
    pub stage: String,
    /// Where the records went: the stage's input.
    pub topic: String,
    /// Dead letters read.
    pub scanned: u64,
    /// Dead letters selected.
    pub selected: u64,
    /// Records produced to the input and acknowledged.
    pub redriven: u64,
    /// Selected dead letters a `through` plugin dropped.
    pub dropped: u64,
    /// Selected dead letters not sent: failed by `through`, or not found.
    pub not_redriven: Vec<NotRedriven>,
    /// `name@version` of each `through` plugin.
    pub through: Vec<String>,
}
