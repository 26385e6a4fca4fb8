//! Reading the Prometheus text exposition format, as the exporter renders
//! `/metrics`: `/admin/stats` is built from that very text, so its numbers
//! are the ones `/metrics` shows, with no second set of counters to drift.

use std::collections::BTreeMap;

/// One sample line: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`, `_sum`, `_count` for histograms).
    pub name: String,
    /// Labels by name.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// The label `key`, or `""` when absent.
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map(String::as_str).unwrap_or("")
    }
}

/// Every sample of an exposition text, by metric name.
#[derive(Debug, Default)]
pub struct Samples {
    by_name: BTreeMap<String, Vec<Sample>>,
}

impl Samples {
    /// Parse `text`; lines that are not samples (comments, blanks, garbage)
    /// are skipped.
    pub fn parse(text: &str) -> Self {
        let mut by_name: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
        for line in text.lines() {
            if let Some(sample) = parse_line(line) {
                by_name.entry(sample.name.clone()).or_default().push(sample);
            }
        }
        Self { by_name }
    }

    /// The samples of `name`.
    pub fn all(&self, name: &str) -> &[Sample] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The samples of `name` carrying every `(label, value)` of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + use<'a> {
        self.all(name)
            .iter()
            .filter(move |s| labels.iter().all(|(k, v)| s.label(k) == *v))
    }

    /// The sum of the samples of `name` matching `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// [`Samples::sum`] as a count (negative and NaN read as 0).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        to_count(self.sum(name, labels))
    }
}

/// A sample value as a whole count.
pub fn to_count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `key="value",...}` → the labels and what follows the `}`.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim().to_string();
        text = text[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = text.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.insert(key, value);
        text = &text[end + 1..];
    }
}

/// The `q` quantile (0 to 1) of cumulative `buckets` (`(upper bound,
/// count)`, ascending, the last possibly `+Inf`) holding `total`
/// observations, interpolated linearly within the bucket as Prometheus'
/// `histogram_quantile` does; `None` without observations. A quantile in
/// the `+Inf` bucket is the highest finite bound.
pub fn quantile(q: f64, buckets: &[(f64, u64)], total: u64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = 0.0;
    let mut below = 0u64;
    for &(le, count) in buckets {
        if count as f64 >= rank && count > below {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = (rank - below as f64) / (count - below) as f64;
            return Some(lower + (le - lower) * within.clamp(0.0, 1.0));
        }
        if le.is_finite() {
            lower = le;
        }
        below = count;
    }
    // Past every finite bucket: the observations are above the highest bound.
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_labels_escapes_and_special_values_parse() {
        let text = r#"# HELP sluice_stage_events_total Events.
# TYPE sluice_stage_events_total counter
sluice_stage_events_total 0
sluice_stage_events_total{stage="clean",plugin="",outcome="in"} 2000
sluice_stage_events_total{stage="clean",plugin="filter",outcome="dropped"} 500
odd{a="x\"y\\z",b="line\nbreak"} 1.5e3 1700000000
h_bucket{stage="clean",le="+Inf"} 7

garbage line
"#;
        let samples = Samples::parse(text);
        assert_eq!(samples.all("sluice_stage_events_total").len(), 3);
        assert_eq!(
            samples.sum(
                "sluice_stage_events_total",
                &[("stage", "clean"), ("plugin", "")]
            ),
            2000.0
        );
        assert_eq!(
            samples.count("sluice_stage_events_total", &[("plugin", "filter")]),
            500
        );
        let odd = &samples.all("odd")[0];
        assert_eq!(odd.label("a"), "x\"y\\z");
        assert_eq!(odd.label("b"), "line\nbreak");
        assert_eq!(odd.value, 1500.0);
        let bucket = &samples.all("h_bucket")[0];
        assert_eq!((bucket.label("le"), bucket.value), ("+Inf", 7.0));
        assert!(samples.all("garbage").is_empty());
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_prometheus() {
        let buckets = [(0.1, 50), (0.2, 90), (0.5, 100), (f64::INFINITY, 100)];
        // Rank 99 of 100 lies in (0.2, 0.5]: 9 of its 10 observations below.
        let p99 = quantile(0.99, &buckets, 100).expect("observations");
        assert!((p99 - 0.47).abs() < 1e-9, "{p99}");
        let p50 = quantile(0.5, &buckets, 100).expect("observations");
        assert!((p50 - 0.1).abs() < 1e-9, "{p50}");
        assert_eq!(quantile(0.99, &buckets, 0), None);
        // Everything above the highest finite bound: that bound.
        assert_eq!(
            quantile(0.99, &[(0.1, 0), (f64::INFINITY, 4)], 4),
            Some(0.1)
        );
    }
}
