//! The pure part of dead-letter handling: reading a dead letter's headers,
//! filtering, counting by reason, which records a redrive selects, the
//! headers a redriven record carries, and `through` plugin references.

use std::collections::{BTreeMap, BTreeSet};

use super::api::{Entry, Group, Origin, RecordRef, RedriveRequest};

/// `sluice-redriven-by`: the admin token name that redrove a record.
pub const REDRIVEN_BY: &str = "sluice-redriven-by";
/// `sluice-redrive-id`: the redrive that sent it.
pub const REDRIVE_ID: &str = "sluice-redrive-id";
/// `sluice-redrive-count`: how many times it was redriven.
pub const REDRIVE_COUNT: &str = "sluice-redrive-count";
/// `sluice-redriven-from`: `topic/partition/offset` of the dead letter it
/// was redriven from.
pub const REDRIVEN_FROM: &str = "sluice-redriven-from";

/// Headers that describe one failure; a redriven record leaves them behind
/// (the next failure, if any, writes its own).
const FAILURE_HEADERS: &[&str] = &[
    "sluice-stage",
    "sluice-plugin",
    "sluice-plugin-version",
    "sluice-error",
];

fn text(headers: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// What a dead letter's headers say about it, at `partition`/`offset` of
/// the dead-letter topic.
pub fn entry(
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<&[u8]>,
    headers: &[(String, Vec<u8>)],
) -> Entry {
    let get = |name: &str| text(headers, name).unwrap_or_default();
    Entry {
        partition,
        offset,
        timestamp,
        key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
        stage: get("sluice-stage"),
        plugin: get("sluice-plugin"),
        version: get("sluice-plugin-version"),
        error: get("sluice-error"),
        origin: Origin {
            topic: get("sluice-origin-topic"),
            partition: text(headers, "sluice-origin-partition").and_then(|p| p.parse().ok()),
            offset: text(headers, "sluice-origin-offset").and_then(|o| o.parse().ok()),
        },
        redriven_by: text(headers, REDRIVEN_BY),
        redrive_id: text(headers, REDRIVE_ID),
    }
}

/// Dead letters by plugin and error text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The plugin, exactly.
    pub plugin: Option<String>,
    /// Text the error contains, compared without case.
    pub error: Option<String>,
}

impl Filter {
    /// A filter; empty strings count as unset.
    pub fn new(plugin: Option<&str>, error: Option<&str>) -> Self {
        let set = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        Self {
            plugin: set(plugin),
            error: set(error).map(|e| e.to_lowercase()),
        }
    }

    /// True when neither plugin nor error is given.
    pub fn is_empty(&self) -> bool {
        self.plugin.is_none() && self.error.is_none()
    }

    /// Whether `entry` passes.
    pub fn matches(&self, entry: &Entry) -> bool {
        self.plugin.as_ref().is_none_or(|p| *p == entry.plugin)
            && self
                .error
                .as_ref()
                .is_none_or(|e| entry.error.to_lowercase().contains(e))
    }
}

/// Counts of dead letters by (plugin, error).
#[derive(Debug, Default)]
pub struct Groups(BTreeMap<(String, String), u64>);

impl Groups {
    /// Count one.
    pub fn add(&mut self, entry: &Entry) {
        *self
            .0
            .entry((entry.plugin.clone(), entry.error.clone()))
            .or_default() += 1;
    }

    /// Most frequent first; ties by plugin, then error.
    pub fn into_sorted(self) -> Vec<Group> {
        let mut groups: Vec<Group> = self
            .0
            .into_iter()
            .map(|((plugin, error), count)| Group {
                plugin,
                error,
                count,
            })
            .collect();
        groups.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.plugin.cmp(&b.plugin))
                .then_with(|| a.error.cmp(&b.error))
        });
        groups
    }
}

/// Which dead letters a redrive sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// All of them (from `from` on).
    All {
        /// First offset per partition.
        from: Option<i64>,
    },
    /// Those passing a filter (from `from` on).
    Matching {
        /// The filter.
        filter: Filter,
        /// First offset per partition.
        from: Option<i64>,
    },
    /// These positions.
    Records(BTreeSet<(i32, i64)>),
}

/// Most records a redrive may name one by one.
pub const MAX_RECORDS: usize = 100_000;

impl Selection {
    /// The selection a request makes, or why it makes none.
    pub fn of(request: &RedriveRequest) -> Result<Self, String> {
        let filter = Filter::new(request.plugin.as_deref(), request.error.as_deref());
        let records = request.records.as_ref();
        let ways = usize::from(request.all)
            + usize::from(!filter.is_empty())
            + usize::from(records.is_some());
        if ways != 1 {
            return Err(
                "select the dead letters with exactly one of: `all: true`, a filter (`plugin` and/or `error`), `records`"
                    .into(),
            );
        }
        if let Some(from) = request.from
            && from < 0
        {
            return Err(format!("`from` must be an offset (0 or more), not {from}"));
        }
        if let Some(records) = records {
            if request.from.is_some() {
                return Err("`from` goes with `all` or a filter, not with `records`".into());
            }
            if records.is_empty() {
                return Err("`records` is empty".into());
            }
            if records.len() > MAX_RECORDS {
                return Err(format!(
                    "`records` names {} records; at most {MAX_RECORDS} per redrive",
                    records.len()
                ));
            }
            if let Some(bad) = records.iter().find(|r| r.partition < 0 || r.offset < 0) {
                return Err(format!(
                    "no record at partition {} offset {}",
                    bad.partition, bad.offset
                ));
            }
            return Ok(Selection::Records(
                records.iter().map(|r| (r.partition, r.offset)).collect(),
            ));
        }
        Ok(if request.all {
            Selection::All { from: request.from }
        } else {
            Selection::Matching {
                filter,
                from: request.from,
            }
        })
    }

    /// The offsets to read in `partition`: `None` to skip it, else the
    /// first and, for named records, one past the last.
    pub fn window(&self, partition: i32) -> Option<(i64, Option<i64>)> {
        match self {
            Selection::All { from } | Selection::Matching { from, .. } => {
                Some((from.unwrap_or(0), None))
            }
            Selection::Records(set) => {
                let mut offsets = set.range((partition, 0)..=(partition, i64::MAX));
                let first = offsets.next()?.1;
                let last = offsets.next_back().map_or(first, |r| r.1);
                Some((first, Some(last + 1)))
            }
        }
    }

    /// Whether the dead letter `entry` is selected.
    pub fn selects(&self, entry: &Entry) -> bool {
        match self {
            Selection::All { .. } => true,
            Selection::Matching { filter, .. } => filter.matches(entry),
            Selection::Records(set) => set.contains(&(entry.partition, entry.offset)),
        }
    }

    /// The named records not in `seen`, in order.
    pub fn missing(&self, seen: &BTreeSet<(i32, i64)>) -> Vec<RecordRef> {
        match self {
            Selection::Records(set) => set
                .difference(seen)
                .map(|&(partition, offset)| RecordRef { partition, offset })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Who redrove a record, in which redrive, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp<'a> {
    /// The admin token's name.
    pub by: &'a str,
    /// The redrive's id.
    pub id: &'a str,
    /// `topic/partition/offset` of the dead letter.
    pub from: String,
}

/// The headers a redriven record carries: the dead letter's, without the
/// ones describing its failure or an earlier redrive, plus who redrove it,
/// the redrive id, the count of redrives so far and where it came from.
/// The origin headers (`sluice-origin-*`) and the producer's own headers
/// stay.
pub fn redriven_headers(
    headers: &[(String, Vec<u8>)],
    stamp: &Stamp<'_>,
) -> Vec<(String, Vec<u8>)> {
    let count = text(headers, REDRIVE_COUNT)
        .and_then(|c| c.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let mut out: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(k, _)| {
            !FAILURE_HEADERS.contains(&k.as_str())
                && ![REDRIVEN_BY, REDRIVE_ID, REDRIVE_COUNT, REDRIVEN_FROM].contains(&k.as_str())
        })
        .cloned()
        .collect();
    out.push((REDRIVEN_BY.into(), stamp.by.as_bytes().to_vec()));
    out.push((REDRIVE_ID.into(), stamp.id.as_bytes().to_vec()));
    out.push((REDRIVE_COUNT.into(), count.to_string().into_bytes()));
    out.push((REDRIVEN_FROM.into(), stamp.from.as_bytes().to_vec()));
    out
}

/// A `through` plugin: `name`, `name@vN` / `name@N` (store version N) or
/// `name@<hex>` (a version by its sha256 prefix, or the plugin directory's
/// file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// The store's active version, else the directory's file.
    Current,
    /// A store version number.
    Number(u32),
    /// A sha256 prefix (at least 6 hex digits).
    Hash(String),
}

/// Parse one `through` entry.
pub fn parse_through(spec: &str) -> Result<(String, Version), String> {
    let spec = spec.trim();
    let (name, version) = match spec.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (spec, None),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "`through` entry `{spec}`: expected NAME, NAME@vN or NAME@<sha256 prefix>"
        ));
    }
    let version = match version {
        None => Version::Current,
        Some(v) => {
            let hex = (6..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_hexdigit());
            // `vN` is a number; bare digits are one when too short for a hash.
            let number = match v.strip_prefix('v') {
                Some(n) => n.parse::<u32>().ok(),
                None if !hex => v.parse::<u32>().ok(),
                None => None,
            };
            if let Some(n) = number {
                Version::Number(n)
            } else if hex {
                Version::Hash(v.to_ascii_lowercase())
            } else {
                return Err(format!(
                    "`through` entry `{spec}`: `{v}` is neither vN (a store version) nor a sha256 prefix of 6 to 64 hex digits"
                ));
            }
        }
    };
    Ok((name.to_string(), version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn dead_letter(plugin: &str, error: &str) -> Vec<(String, Vec<u8>)> {
        headers(&[
            ("trace", "t-1"),
            ("sluice-stage", "clean"),
            ("sluice-plugin", plugin),
            ("sluice-plugin-version", "v1-0123456789ab"),
            ("sluice-error", error),
            ("sluice-origin-topic", "events"),
            ("sluice-origin-partition", "2"),
            ("sluice-origin-offset", "41"),
        ])
    }

    #[test]
    fn an_entry_reads_the_dead_letter_headers() {
        let e = entry(
            0,
            7,
            Some(5),
            Some(b"user-1"),
            &dead_letter("tagger", "boom"),
        );
        assert_eq!(e.stage, "clean");
        assert_eq!((e.plugin.as_str(), e.error.as_str()), ("tagger", "boom"));
        assert_eq!(e.version, "v1-0123456789ab");
        assert_eq!(
            e.origin,
            Origin {
                topic: "events".into(),
                partition: Some(2),
                offset: Some(41)
            }
        );
        assert_eq!(e.key.as_deref(), Some("user-1"));
        assert_eq!(e.redriven_by, None);
        let bare = entry(1, 2, None, None, &[]);
        assert_eq!(bare.origin.partition, None);
        assert_eq!(bare.plugin, "");
    }

    #[test]
    fn filters_match_plugin_exactly_and_error_by_substring_without_case() {
        let e = entry(
            0,
            0,
            None,
            None,
            &dead_letter("tagger", "wasm trap: Unreachable"),
        );
        assert!(Filter::default().matches(&e));
        assert!(Filter::new(Some("tagger"), None).matches(&e));
        assert!(!Filter::new(Some("tag"), None).matches(&e));
        assert!(Filter::new(None, Some("UNREACHABLE")).matches(&e));
        assert!(Filter::new(Some("tagger"), Some("trap")).matches(&e));
        assert!(!Filter::new(Some("tagger"), Some("timeout")).matches(&e));
        assert!(Filter::new(Some(""), Some("")).is_empty());
    }

    #[test]
    fn groups_count_by_reason_most_frequent_first() {
        let mut groups = Groups::default();
        for (plugin, error) in [
            ("b", "x"),
            ("a", "y"),
            ("(host)", "cannot decode"),
            ("a", "y"),
            ("b", "x"),
            ("a", "y"),
        ] {
            groups.add(&entry(0, 0, None, None, &dead_letter(plugin, error)));
        }
        let sorted = groups.into_sorted();
        let got: Vec<(&str, &str, u64)> = sorted
            .iter()
            .map(|g| (g.plugin.as_str(), g.error.as_str(), g.count))
            .collect();
        assert_eq!(
            got,
            vec![("a", "y", 3), ("b", "x", 2), ("(host)", "cannot decode", 1)]
        );
    }

    fn request(json: &str) -> RedriveRequest {
        serde_json::from_str(json).expect("request")
    }

    #[test]
    fn a_redrive_selects_in_exactly_one_way() {
        assert_eq!(
            Selection::of(&request(r#"{"all": true}"#)),
            Ok(Selection::All { from: None })
        );
        assert_eq!(
            Selection::of(&request(r#"{"plugin": "tagger", "from": 3}"#)),
            Ok(Selection::Matching {
                filter: Filter::new(Some("tagger"), None),
                from: Some(3)
            })
        );
        let named = Selection::of(&request(
            r#"{"records": [{"partition": 1, "offset": 9}, {"partition": 1, "offset": 4}, {"partition": 0, "offset": 2}]}"#,
        ))
        .expect("records");
        assert_eq!(named.window(1), Some((4, Some(10))));
        assert_eq!(named.window(0), Some((2, Some(3))));
        assert_eq!(named.window(2), None);
        let mut seen = BTreeSet::new();
        seen.insert((1, 9));
        assert_eq!(
            named.missing(&seen),
            vec![
                RecordRef {
                    partition: 0,
                    offset: 2
                },
                RecordRef {
                    partition: 1,
                    offset: 4
                }
            ]
        );
        for bad in [
            "{}",
            r#"{"all": false}"#,
            r#"{"all": true, "plugin": "x"}"#,
            r#"{"plugin": "x", "records": []}"#,
            r#"{"records": []}"#,
            r#"{"records": [{"partition": 0, "offset": 1}], "from": 2}"#,
            r#"{"all": true, "from": -1}"#,
            r#"{"records": [{"partition": -1, "offset": 1}]}"#,
        ] {
            assert!(Selection::of(&request(bad)).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<RedriveRequest>(r#"{"alll": true}"#).is_err());
        // JSON Schema integers may be written as integral floats.
        let floats = request(r#"{"records": [{"partition": 1.0, "offset": 9.0}], "from": null}"#);
        assert_eq!(
            floats
                .records
                .as_deref()
                .map(|r| (r[0].partition, r[0].offset)),
            Some((1, 9))
        );
        assert_eq!(request(r#"{"all": true, "from": 3.0}"#).from, Some(3));
        for bad in [
            r#"{"records": [{"partition": 1.5, "offset": 9}]}"#,
            r#"{"records": [{"partition": 43603671955739, "offset": 9}]}"#,
            r#"{"all": true, "from": "3"}"#,
        ] {
            assert!(
                serde_json::from_str::<RedriveRequest>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn selection_applies_the_filter_or_the_positions() {
        let e = entry(1, 9, None, None, &dead_letter("tagger", "boom"));
        assert!(Selection::All { from: None }.selects(&e));
        let only_other = Selection::Matching {
            filter: Filter::new(Some("other"), None),
            from: None,
        };
        assert!(!only_other.selects(&e));
        assert!(Selection::Records([(1, 9)].into()).selects(&e));
        assert!(!Selection::Records([(0, 9)].into()).selects(&e));
        assert_eq!(Selection::All { from: Some(5) }.window(3), Some((5, None)));
    }

    #[test]
    fn a_redriven_record_says_who_and_keeps_its_origin() {
        let stamp = Stamp {
            by: "alice",
            id: "r-1",
            from: "events.dlq/0/7".into(),
        };
        let once = redriven_headers(&dead_letter("tagger", "boom"), &stamp);
        let names: Vec<&str> = once.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "trace",
                "sluice-origin-topic",
                "sluice-origin-partition",
                "sluice-origin-offset",
                REDRIVEN_BY,
                REDRIVE_ID,
                REDRIVE_COUNT,
                REDRIVEN_FROM
            ]
        );
        assert_eq!(text(&once, REDRIVEN_BY).as_deref(), Some("alice"));
        assert_eq!(text(&once, REDRIVE_COUNT).as_deref(), Some("1"));
        // Failed again and dead-lettered again (the stage keeps the redrive
        // headers), then redriven by someone else: one of each, counted.
        let mut again = once.clone();
        again.extend(dead_letter("tagger", "boom again").into_iter().skip(1));
        let stamp = Stamp {
            by: "bob",
            id: "r-2",
            from: "events.dlq/0/9".into(),
        };
        let twice = redriven_headers(&again, &stamp);
        assert_eq!(text(&twice, REDRIVEN_BY).as_deref(), Some("bob"));
        assert_eq!(text(&twice, REDRIVE_COUNT).as_deref(), Some("2"));
        assert_eq!(twice.iter().filter(|(k, _)| k == REDRIVEN_BY).count(), 1);
        assert!(twice.iter().all(|(k, _)| k != "sluice-error"));
    }

    #[test]
    fn through_names_a_plugin_and_maybe_a_version() {
        assert_eq!(
            parse_through("fix"),
            Ok(("fix".to_string(), Version::Current))
        );
        assert_eq!(
            parse_through("fix@v3"),
            Ok(("fix".to_string(), Version::Number(3)))
        );
        assert_eq!(
            parse_through(" fix@3 "),
            Ok(("fix".to_string(), Version::Number(3)))
        );
        assert_eq!(
            parse_through("fix@3F2A9C1B0D4E"),
            Ok(("fix".to_string(), Version::Hash("3f2a9c1b0d4e".into())))
        );
        assert_eq!(
            parse_through("fix@123456"),
            Ok(("fix".to_string(), Version::Hash("123456".into())))
        );
        for bad in ["", "@v1", "fix@", "fix@latest", "a/b@v1", "fix@abc"] {
            assert!(parse_through(bad).is_err(), "{bad}");
        }
    }
}
