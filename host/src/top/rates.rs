//! What `sluice top` shows, computed from snapshots: per host the last two
//! `/admin/stats` answers, and from them rows of rates (the counter's
//! difference over the time between the snapshots, as the host measured
//! it), interval p99s (from the difference of the histogram buckets), lag
//! and cumulative totals, aggregated over the hosts per stage and plugin.

use std::collections::BTreeMap;

use crate::stats::{Histogram, Stats, prom};

/// One watched host: its address, its last two snapshots, and why the last
/// fetch failed, if it did.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// The `--admin` URL.
    pub url: String,
    /// The newest snapshot.
    pub current: Option<Stats>,
    /// The one before it.
    pub previous: Option<Stats>,
    /// Set when the last fetch failed (the host is then left out of the rows).
    pub error: Option<String>,
}

impl Host {
    /// A host not fetched yet.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Take the result of a fetch.
    pub fn update(&mut self, fetched: Result<Stats, String>) {
        match fetched {
            Ok(stats) => {
                self.previous = self.current.take();
                self.current = Some(stats);
                self.error = None;
            }
            Err(e) => {
                // A host that comes back starts its rates afresh.
                self.previous = None;
                self.current = None;
                self.error = Some(e);
            }
        }
    }

    /// The host's two snapshots, when it answered last time; the previous
    /// one only if it is of the same process and older.
    fn pair(&self) -> Option<(&Stats, Option<Pair<'_>>)> {
        let current = self.current.as_ref().filter(|_| self.error.is_none())?;
        let pair = self.previous.as_ref().and_then(|previous| {
            let same_process = previous.host.started_at_ms == current.host.started_at_ms
                && previous.host.id == current.host.id;
            let seconds = (current.host.uptime_ms as f64 - previous.host.uptime_ms as f64) / 1e3;
            (same_process && seconds > 0.0).then_some(Pair { previous, seconds })
        });
        Some((current, pair))
    }

    /// The host's id once it answered, else its URL.
    pub fn label(&self) -> String {
        match &self.current {
            Some(stats) if !stats.host.id.is_empty() => stats.host.id.clone(),
            _ => self.url.clone(),
        }
    }
}

/// The previous snapshot and the seconds between it and the current one.
#[derive(Clone, Copy)]
struct Pair<'a> {
    previous: &'a Stats,
    seconds: f64,
}

/// Events per second between two readings of a counter; `None` without a
/// previous reading, 0 if the counter went backwards (it never should).
pub fn rate(current: u64, previous: Option<u64>, seconds: f64) -> Option<f64> {
    let previous = previous?;
    (seconds > 0.0).then(|| current.saturating_sub(previous) as f64 / seconds)
}

/// What a row is, for its style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An ingest route (a topic it writes).
    Route,
    /// A stage, summed over the hosts.
    Stage,
    /// A plugin of a stage, summed over the hosts.
    Plugin,
    /// One host's share of a stage (with several hosts).
    HostShare,
}

/// One line of the table. Rates are events per second; `None` shows `-`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Its kind.
    pub kind: Kind,
    /// The label (`clean`, `  filter`, `  @eu-1`, `* → telemetry.events`).
    pub name: String,
    /// In.
    pub in_rate: Option<f64>,
    /// Out: kept and modified for a plugin, written for a stage or route.
    pub out_rate: Option<f64>,
    /// Dropped by a plugin.
    pub dropped_rate: Option<f64>,
    /// Failed (plugins), rejected or unavailable (routes).
    pub failed_rate: Option<f64>,
    /// Dead-lettered (stages).
    pub dead_letter_rate: Option<f64>,
    /// p99 over the interval, seconds: batches for stages, calls for plugins.
    pub p99: Option<f64>,
    /// Consumer lag now (stages).
    pub lag: Option<u64>,
    /// Cumulative in since each host started, summed.
    pub total_in: Option<u64>,
    /// Cumulative out, summed.
    pub total_out: Option<u64>,
    /// State, plugin versions, partitions held.
    pub note: String,
}

impl Row {
    fn new(kind: Kind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
            in_rate: None,
            out_rate: None,
            dropped_rate: None,
            failed_rate: None,
            dead_letter_rate: None,
            p99: None,
            lag: None,
            total_in: None,
            total_out: None,
            note: String::new(),
        }
    }
}

/// Sums of `Option`s: `None` only if every part is `None`.
fn add<T: std::ops::Add<Output = T>>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

/// A histogram's new observations since `previous`, bucket by bucket.
#[derive(Debug, Default, Clone)]
struct Delta {
    /// Upper bound's bits (positive floats order like their bits) → count.
    buckets: BTreeMap<u64, u64>,
    count: u64,
}

impl Delta {
    fn add(&mut self, current: &Histogram, previous: Option<&Histogram>) {
        let Some(previous) = previous else {
            return;
        };
        self.count += current.count.saturating_sub(previous.count);
        for bucket in &current.buckets {
            let before = previous
                .buckets
                .iter()
                .find(|b| b.le == bucket.le)
                .map_or(0, |b| b.count);
            *self.buckets.entry(bucket.le.to_bits()).or_default() +=
                bucket.count.saturating_sub(before);
        }
    }

    fn p99(&self) -> Option<f64> {
        let mut buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .map(|(le, count)| (f64::from_bits(*le), *count))
            .collect();
        buckets.push((f64::INFINITY, self.count));
        prom::quantile(0.99, &buckets, self.count)
    }
}

/// The table: the ingest routes, then each stage (in the order hosts list
/// them) with its plugins and, with several hosts, each host's share.
/// Hosts whose last fetch failed are left out.
pub fn rows(hosts: &[Host]) -> Vec<Row> {
    let answered: Vec<(&Host, &Stats, Option<Pair<'_>>)> = hosts
        .iter()
        .filter_map(|h| h.pair().map(|(current, pair)| (h, current, pair)))
        .collect();
    let mut rows = route_rows(&answered);
    let mut stage_names: Vec<&str> = Vec::new();
    for (_, stats, _) in &answered {
        for stage in &stats.stages {
            if !stage_names.contains(&stage.name.as_str()) {
                stage_names.push(&stage.name);
            }
        }
    }
    for name in stage_names {
        rows.extend(stage_rows(name, &answered, answered.len() > 1));
    }
    rows
}

fn route_rows(answered: &[(&Host, &Stats, Option<Pair<'_>>)]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for (_, stats, pair) in answered {
        let Some(ingest) = &stats.ingest else {
            continue;
        };
        for route in &ingest.routes {
            let previous = pair.and_then(|p| {
                let routes = &p.previous.ingest.as_ref()?.routes;
                routes.iter().find(|r| r.topic == route.topic)
            });
            let seconds = pair.map_or(0.0, |p| p.seconds);
            let total_in = route.accepted + route.rejected + route.unavailable;
            let failed = route.rejected + route.unavailable;
            let name = format!("{} → {}", route.event_types.join(","), route.topic);
            let index = match rows.iter().position(|r| r.name == name) {
                Some(i) => i,
                None => {
                    rows.push(Row::new(Kind::Route, name));
                    rows.len() - 1
                }
            };
            let row = &mut rows[index];
            row.in_rate = add(
                row.in_rate,
                rate(
                    total_in,
                    previous.map(|p| p.accepted + p.rejected + p.unavailable),
                    seconds,
                ),
            );
            row.out_rate = add(
                row.out_rate,
                rate(route.accepted, previous.map(|p| p.accepted), seconds),
            );
            row.failed_rate = add(
                row.failed_rate,
                rate(
                    failed,
                    previous.map(|p| p.rejected + p.unavailable),
                    seconds,
                ),
            );
            row.total_in = add(row.total_in, Some(total_in));
            row.total_out = add(row.total_out, Some(route.accepted));
        }
    }
    rows
}

fn stage_rows(
    name: &str,
    answered: &[(&Host, &Stats, Option<Pair<'_>>)],
    per_host: bool,
) -> Vec<Row> {
    let mut stage_row = Row::new(Kind::Stage, name);
    let mut batches = Delta::default();
    let mut states: Vec<String> = Vec::new();
    let mut plugin_rows: Vec<(Row, Delta, Vec<String>)> = Vec::new();
    let mut host_rows = Vec::new();
    for (host, stats, pair) in answered {
        let Some(stage) = stats.stages.iter().find(|s| s.name == name) else {
            continue;
        };
        let previous = pair.and_then(|p| p.previous.stages.iter().find(|s| s.name == name));
        let seconds = pair.map_or(0.0, |p| p.seconds);
        let events = &stage.events;
        let before = previous.map(|p| &p.events);
        let mut share = Row::new(Kind::HostShare, format!("@{}", host.label()));
        share.in_rate = rate(events.input, before.map(|b| b.input), seconds);
        share.out_rate = rate(events.out, before.map(|b| b.out), seconds);
        share.dropped_rate = rate(events.dropped, before.map(|b| b.dropped), seconds);
        share.failed_rate = rate(events.failed, before.map(|b| b.failed), seconds);
        share.dead_letter_rate = rate(
            events.dead_lettered,
            before.map(|b| b.dead_lettered),
            seconds,
        );
        share.lag = Some(stage.lag.total);
        share.total_in = Some(events.input);
        share.total_out = Some(events.out);
        let mut delta = Delta::default();
        delta.add(&stage.batches, previous.map(|p| &p.batches));
        share.p99 = delta.p99();
        share.note = format!("{} {}p", stage.state, stage.assignment.len());
        for (mine, theirs) in [
            (&mut stage_row.in_rate, share.in_rate),
            (&mut stage_row.out_rate, share.out_rate),
            (&mut stage_row.dropped_rate, share.dropped_rate),
            (&mut stage_row.failed_rate, share.failed_rate),
            (&mut stage_row.dead_letter_rate, share.dead_letter_rate),
        ] {
            *mine = add(*mine, theirs);
        }
        stage_row.lag = add(stage_row.lag, share.lag);
        stage_row.total_in = add(stage_row.total_in, share.total_in);
        stage_row.total_out = add(stage_row.total_out, share.total_out);
        batches.add(&stage.batches, previous.map(|p| &p.batches));
        let state = if stage.stuck {
            "stuck".to_string()
        } else {
            stage.state.clone()
        };
        if !states.contains(&state) {
            states.push(state);
        }
        host_rows.push(share);

        for plugin in &stage.plugins {
            let before = previous.and_then(|p| p.plugins.iter().find(|q| q.name == plugin.name));
            let index = match plugin_rows
                .iter()
                .position(|(r, _, _)| r.name == plugin.name)
            {
                Some(i) => i,
                None => {
                    plugin_rows.push((
                        Row::new(Kind::Plugin, plugin.name.clone()),
                        Delta::default(),
                        Vec::new(),
                    ));
                    plugin_rows.len() - 1
                }
            };
            let (row, delta, versions) = &mut plugin_rows[index];
            let e = &plugin.events;
            let b = before.map(|b| &b.events);
            row.in_rate = add(row.in_rate, rate(e.input, b.map(|b| b.input), seconds));
            row.out_rate = add(row.out_rate, rate(e.out(), b.map(|b| b.out()), seconds));
            row.dropped_rate = add(
                row.dropped_rate,
                rate(e.dropped, b.map(|b| b.dropped), seconds),
            );
            row.failed_rate = add(
                row.failed_rate,
                rate(e.failed, b.map(|b| b.failed), seconds),
            );
            row.total_in = add(row.total_in, Some(e.input));
            row.total_out = add(row.total_out, Some(e.out()));
            delta.add(&plugin.calls, before.map(|b| &b.calls));
            let version = match (&plugin.version, plugin.store_version) {
                (Some(v), Some(n)) => format!("v{n}-{v}"),
                (Some(v), None) => v.clone(),
                (None, _) => "?".into(),
            };
            if !versions.contains(&version) {
                versions.push(version);
            }
        }
    }
    stage_row.p99 = batches.p99();
    stage_row.note = states.join(",");
    let mut rows = vec![stage_row];
    for (mut row, delta, versions) in plugin_rows {
        row.p99 = delta.p99();
        // Several versions: the hosts have not converged (yet).
        row.note = versions.join(" ≠ ");
        row.name = format!("  {}", row.name);
        rows.push(row);
    }
    if per_host {
        for mut share in host_rows {
            share.name = format!("  {}", share.name);
            rows.push(share);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{
        Bucket, HostIdentity, Lag, PluginEvents, PluginStats, StageEvents, StageStats,
    };

    /// A host `id`'s snapshot at `uptime_ms` with stage `clean` (filter) having
    /// read `input` events, `batches` batches of which all but one under 10 ms.
    fn snapshot(id: &str, uptime_ms: u64, input: u64, batches: u64) -> Stats {
        Stats {
            host: HostIdentity {
                id: id.into(),
                version: "0.1.0".into(),
                started_at_ms: 1_000,
                uptime_ms,
                at_ms: 1_000 + uptime_ms as i64,
            },
            ingest: None,
            stages: vec![StageStats {
                name: "clean".into(),
                state: "running".into(),
                events: StageEvents {
                    input,
                    out: input / 2,
                    dropped: input / 2,
                    ..StageEvents::default()
                },
                batches: Histogram {
                    count: batches,
                    sum_seconds: 0.0,
                    p99_seconds: None,
                    buckets: vec![
                        Bucket {
                            le: 0.01,
                            count: batches.saturating_sub(1),
                        },
                        Bucket {
                            le: 1.0,
                            count: batches,
                        },
                    ],
                },
                lag: Lag {
                    total: 7,
                    partitions: vec![],
                },
                plugins: vec![PluginStats {
                    name: "filter".into(),
                    kind: "transform".into(),
                    version: Some("abcdefabcdef".into()),
                    events: PluginEvents {
                        input,
                        kept: input / 2,
                        dropped: input / 2,
                        ..PluginEvents::default()
                    },
                    ..PluginStats::default()
                }],
                ..StageStats::default()
            }],
        }
    }

    #[test]
    fn rates_are_counter_differences_over_the_hosts_interval() {
        assert_eq!(rate(300, Some(100), 2.0), Some(100.0));
        assert_eq!(rate(300, None, 2.0), None, "one snapshot: no rate yet");
        assert_eq!(rate(100, Some(300), 2.0), Some(0.0), "never negative");
        assert_eq!(rate(300, Some(100), 0.0), None);

        let mut host = Host::new("http://a");
        host.update(Ok(snapshot("a", 10_000, 1_000, 10)));
        let first = rows(std::slice::from_ref(&host));
        assert_eq!(first[0].name, "clean");
        assert_eq!(first[0].in_rate, None);
        assert_eq!(
            first[0].total_in,
            Some(1_000),
            "totals from the first snapshot"
        );
        assert_eq!(first[0].lag, Some(7));

        // 2 s later (host time), 400 more events, 100 more batches, one slow.
        host.update(Ok(snapshot("a", 12_000, 1_400, 110)));
        let rows = rows(std::slice::from_ref(&host));
        let [stage, filter] = &rows[..] else {
            panic!("{rows:?}")
        };
        assert_eq!(stage.in_rate, Some(200.0));
        assert_eq!(stage.out_rate, Some(100.0));
        assert_eq!(stage.dropped_rate, Some(100.0));
        assert_eq!(stage.total_in, Some(1_400));
        // The 100 new batches all under 10 ms (the slow one is older): the
        // interval's p99 interpolates within (0, 0.01], unlike since start.
        let p99 = stage.p99.expect("new batches");
        assert!((p99 - 0.0099).abs() < 1e-9, "{p99}");
        assert_eq!(stage.note, "running");
        assert_eq!(filter.name, "  filter");
        assert_eq!(filter.in_rate, Some(200.0));
        assert_eq!(filter.out_rate, Some(100.0));
        assert_eq!(filter.note, "abcdefabcdef");

        // A restarted host (another start time): no rate across the restart.
        let mut restarted = snapshot("a", 1_000, 50, 1);
        restarted.host.started_at_ms = 50_000;
        host.update(Ok(restarted));
        assert_eq!(super::rows(std::slice::from_ref(&host))[0].in_rate, None);
    }

    #[test]
    fn several_hosts_add_up_per_stage_and_a_failed_one_is_left_out() {
        let mut a = Host::new("http://a");
        let mut b = Host::new("http://b");
        let mut down = Host::new("http://down");
        a.update(Ok(snapshot("a", 1_000, 0, 0)));
        a.update(Ok(snapshot("a", 2_000, 100, 10)));
        b.update(Ok(snapshot("b", 5_000, 0, 0)));
        b.update(Ok(snapshot("b", 7_000, 400, 10)));
        down.update(Err("unreachable".into()));
        let rows = rows(&[a, b, down]);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["clean", "  filter", "  @a", "  @b"]);
        assert_eq!(rows[0].in_rate, Some(100.0 + 200.0));
        assert_eq!(rows[0].lag, Some(14));
        assert_eq!(rows[0].total_in, Some(500));
        assert_eq!(rows[1].in_rate, Some(300.0));
        assert_eq!(rows[2].in_rate, Some(100.0));
        assert_eq!(rows[3].in_rate, Some(200.0));
        assert_eq!(rows[2].note, "running 0p");
        // Both hosts' batch deltas together: 18 of 20 under 10 ms.
        let p99 = rows[0].p99.expect("batches");
        assert!(p99 > 0.01 && p99 <= 1.0, "{p99}");
    }
}
