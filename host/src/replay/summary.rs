//! What a replay did: counts, failure reasons by plugin, per-partition
//! ranges and time, printed at the end.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Distinct failure reasons listed per plugin before the rest are summed.
const REASONS_SHOWN: usize = 5;

/// The per-partition part of a summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionRange {
    /// First offset of the window.
    pub start: i64,
    /// One past the last offset of the window.
    pub end: i64,
    /// Records read from this partition.
    pub read: u64,
    /// Lowest offset read.
    pub first: Option<i64>,
    /// Highest offset read.
    pub last: Option<i64>,
}

/// Counts of one replay.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Topic replayed.
    pub topic: String,
    /// Records read from the broker within the window.
    pub read: u64,
    /// Records skipped because their key is not one of `--key`.
    pub skipped_key: u64,
    /// Output records written (fan-out can make this exceed the input).
    pub kept: u64,
    /// Events a plugin dropped on purpose.
    pub dropped: u64,
    /// Events that failed: undecodable, failed by a plugin, or output the
    /// schema rejects.
    pub failed: u64,
    /// Failure counts by plugin (`(host)` for decoding), then by reason.
    pub failures: BTreeMap<String, BTreeMap<String, u64>>,
    /// Window and reads per partition.
    pub partitions: BTreeMap<i32, PartitionRange>,
    /// Wall time from the first fetch to the last write.
    pub elapsed: Duration,
    /// Whether a key filter was on.
    pub key_filter: bool,
    /// `--diff`: events whose outcome differs between the two versions.
    pub differ: u64,
    /// `--diff`: the comparison chain's `name@version`s, if any.
    pub diff_against: Option<String>,
}

impl Summary {
    /// Note a record read at `offset` of `partition`.
    pub fn read(&mut self, partition: i32, offset: i64) {
        self.read += 1;
        let range = self.partitions.entry(partition).or_default();
        range.read += 1;
        range.first = Some(range.first.map_or(offset, |f| f.min(offset)));
        range.last = Some(range.last.map_or(offset, |l| l.max(offset)));
    }

    /// Note a failed event.
    pub fn fail(&mut self, plugin: &str, reason: &str) {
        self.failed += 1;
        let plugin = if plugin.is_empty() { "(host)" } else { plugin };
        *self
            .failures
            .entry(plugin.to_string())
            .or_default()
            .entry(reason.to_string())
            .or_default() += 1;
    }

    /// Add the chain's outcomes counted elsewhere (kept, dropped, failed).
    pub fn add_outcomes(&mut self, other: Summary) {
        self.kept += other.kept;
        self.dropped += other.dropped;
        self.failed += other.failed;
        self.differ += other.differ;
        for (plugin, reasons) in other.failures {
            let mine = self.failures.entry(plugin).or_default();
            for (reason, count) in reasons {
                *mine.entry(reason).or_default() += count;
            }
        }
    }

    /// Events per second read.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.read as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replay {}: read {}", self.topic, self.read)?;
        if self.key_filter {
            write!(f, " (skipped {} with other keys)", self.skipped_key)?;
        }
        writeln!(
            f,
            ", kept {}, dropped {}, failed {} in {:.2} s ({:.0} events/s)",
            self.kept,
            self.dropped,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.rate()
        )?;
        if let Some(against) = &self.diff_against {
            writeln!(
                f,
                "  {} events' outcomes differ from {against}",
                self.differ
            )?;
        }
        for (partition, range) in &self.partitions {
            write!(
                f,
                "  partition {partition}: window {}..{}, read {}",
                range.start, range.end, range.read
            )?;
            if let (Some(first), Some(last)) = (range.first, range.last) {
                write!(f, " (offsets {first}..={last})")?;
            }
            writeln!(f)?;
        }
        for (plugin, reasons) in &self.failures {
            let total: u64 = reasons.values().sum();
            writeln!(f, "  failed by {plugin}: {total}")?;
            let mut by_count: Vec<(&String, &u64)> = reasons.iter().collect();
            by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (reason, count) in by_count.iter().take(REASONS_SHOWN) {
                writeln!(f, "    {count} × {reason}")?;
            }
            if by_count.len() > REASONS_SHOWN {
                let rest: u64 = by_count[REASONS_SHOWN..].iter().map(|(_, c)| **c).sum();
                writeln!(
                    f,
                    "    {rest} more, {} other reasons",
                    by_count.len() - REASONS_SHOWN
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_reasons_by_plugin() {
        let mut s = Summary {
            topic: "t".into(),
            ..Summary::default()
        };
        s.read(0, 10);
        s.read(0, 11);
        s.read(2, 5);
        s.fail("filter", "bad");
        s.fail("filter", "bad");
        s.fail("", "cannot decode");
        let text = s.to_string();
        assert!(
            text.starts_with("replay t: read 3, kept 0, dropped 0, failed 3"),
            "{text}"
        );
        assert!(
            text.contains("partition 0: window 0..0, read 2 (offsets 10..=11)"),
            "{text}"
        );
        assert!(text.contains("failed by filter: 2\n    2 × bad"), "{text}");
        assert!(text.contains("failed by (host): 1"), "{text}");
    }
}
