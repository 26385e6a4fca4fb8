//! Window bounds as the operator writes them (`--from`, `--to`): offsets
//! (`1200` for every partition, `p0:1200,p2:80` per partition), RFC 3339
//! timestamps, or durations back from now (`2h`, `90m`, `1h30m`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One end of a replay window, before it is resolved against a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// The same offset in every partition.
    Offset(i64),
    /// Offsets for the named partitions only (`p0:1200,p1:300`).
    Offsets(BTreeMap<i32, i64>),
    /// A point in time, epoch milliseconds (an RFC 3339 timestamp, or now
    /// minus a duration). Resolved per partition with `offsets_for_times`.
    Time(i64),
}

impl Bound {
    /// The partitions this bound names, if it names any.
    pub fn named_partitions(&self) -> Vec<i32> {
        match self {
            Bound::Offsets(map) => map.keys().copied().collect(),
            _ => Vec::new(),
        }
    }
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parse `--from`/`--to` text; `flag` names the option in messages and
/// `now` (epoch ms) anchors durations.
pub fn parse_bound(flag: &str, text: &str, now: i64) -> Result<Bound, String> {
    let text = text.trim();
    let invalid = |why: String| {
        format!(
            "{flag} `{text}` is not an offset (1200, p0:1200), an RFC 3339 timestamp \
             (2025-11-29T12:00:00Z) or a duration (2h): {why}"
        )
    };
    if text.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map(Bound::Offset)
            .map_err(|e| invalid(e.to_string()));
    }
    if text.starts_with('p') && text.contains(':') {
        let mut map = BTreeMap::new();
        for part in text.split(',') {
            let (partition, offset) = part
                .trim()
                .strip_prefix('p')
                .and_then(|rest| rest.split_once(':'))
                .ok_or_else(|| invalid(format!("`{part}` is not pN:OFFSET")))?;
            let partition: i32 = partition
                .parse()
                .map_err(|_| invalid(format!("`{part}`: bad partition number")))?;
            let offset: i64 = offset
                .parse()
                .map_err(|_| invalid(format!("`{part}`: bad offset")))?;
            if offset < 0 {
                return Err(invalid(format!("`{part}`: offsets are not negative")));
            }
            if map.insert(partition, offset).is_some() {
                return Err(invalid(format!("partition {partition} is named twice")));
            }
        }
        return Ok(Bound::Offsets(map));
    }
    if looks_like_timestamp(text) {
        return parse_rfc3339(text).map(Bound::Time).map_err(invalid);
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(Bound::Time(now - ago.as_millis() as i64)),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// `YYYY-MM-DD...`: a date, so a timestamp rather than a duration.
fn looks_like_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[7] == b'-'
}

/// RFC 3339 to epoch milliseconds, with `Z` or a `±HH:MM` offset (a
/// timestamp without a zone is taken as UTC).
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let b = text.as_bytes();
    let (local, offset_minutes) = if b.len() > 6
        && (b[b.len() - 6] == b'+' || b[b.len() - 6] == b'-')
        && b[b.len() - 3] == b':'
        && text.find(['T', 't', ' ']).is_some_and(|t| t < b.len() - 6)
    {
        let sign = if b[b.len() - 6] == b'-' { -1 } else { 1 };
        let hours: i64 = text[b.len() - 5..b.len() - 3]
            .parse()
            .map_err(|_| "bad UTC offset hours".to_string())?;
        let minutes: i64 = text[b.len() - 2..]
            .parse()
            .map_err(|_| "bad UTC offset minutes".to_string())?;
        if hours > 23 || minutes > 59 {
            return Err("UTC offset out of range".into());
        }
        (&text[..b.len() - 6], sign * (hours * 60 + minutes))
    } else {
        (text, 0)
    };
    let time = humantime::parse_rfc3339_weak(local).map_err(|e| e.to_string())?;
    let since = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64;
    Ok(since - offset_minutes * 60_000)
}

/// Format epoch milliseconds as RFC 3339 (UTC, milliseconds), for messages.
pub fn format_ms(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_400_000_000;

    #[test]
    fn offsets_for_all_or_named_partitions() {
        assert_eq!(parse_bound("--from", "1200", NOW), Ok(Bound::Offset(1200)));
        assert_eq!(
            parse_bound("--from", "p0:1200,p2:7", NOW),
            Ok(Bound::Offsets([(0, 1200), (2, 7)].into()))
        );
        assert!(parse_bound("--from", "p0:x", NOW).is_err());
        assert!(parse_bound("--from", "p0:1,p0:2", NOW).is_err());
    }

    #[test]
    fn timestamps_with_zone_or_offset() {
        let utc = parse_bound("--from", "2025-11-29T07:06:40Z", NOW).unwrap();
        assert_eq!(utc, Bound::Time(1_764_400_000_000));
        let plus_two = parse_bound("--from", "2025-11-29T09:06:40+02:00", NOW).unwrap();
        assert_eq!(plus_two, utc);
        let millis = parse_bound("--from", "2025-11-29T07:06:40.250Z", NOW).unwrap();
        assert_eq!(millis, Bound::Time(1_764_400_000_250));
        let minus = parse_bound("--to", "2025-11-29T02:06:40-05:00", NOW).unwrap();
        assert_eq!(minus, utc);
    }

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(
            parse_bound("--from", "2h", NOW),
            Ok(Bound::Time(NOW - 7_200_000))
        );
        assert_eq!(
            parse_bound("--from", "1h 30m", NOW),
            Ok(Bound::Time(NOW - 5_400_000))
        );
    }

    #[test]
    fn garbage_is_one_clear_message() {
        for bad in ["yesterday", "2025-13-45T99:00:00Z", "", "p:1"] {
            let e = parse_bound("--from", bad, NOW).unwrap_err();
            assert!(e.starts_with("--from `"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn format_round_trips() {
        assert_eq!(format_ms(1_764_400_000_250), "2025-11-29T07:06:40.250Z");
        assert_eq!(parse_rfc3339(&format_ms(NOW)), Ok(NOW));
    }
}
