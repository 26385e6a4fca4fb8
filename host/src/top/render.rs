//! Drawing `sluice top`: a pure function of the hosts' snapshots and the
//! terminal's size, so it is tested with ratatui's `TestBackend`.
//!
//! Plain text in fixed columns, no mouse, a few styles: it reads the same
//! over SSH in an 80x24 terminal. Columns that do not fit are left out,
//! least important first (totals, then dead letters and drops), and rows
//! that do not fit are counted in the last line.

use std::time::Duration;

use ratatui::Frame;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use super::rates::{Host, Kind, Row, rows};

/// Draw the whole screen.
pub fn draw(frame: &mut Frame, hosts: &[Host], interval: Duration) {
    let area = frame.area();
    let lines = screen(hosts, interval, area.width.into(), area.height.into());
    frame.render_widget(Paragraph::new(lines), area);
}

/// A numeric column: title, width, and its rank (lower stays longer).
struct Column {
    title: &'static str,
    width: usize,
    rank: u8,
    cell: fn(&Row) -> String,
}

const COLUMNS: &[Column] = &[
    Column {
        title: "in/s",
        width: 8,
        rank: 0,
        cell: |r| rate(r.in_rate),
    },
    Column {
        title: "out/s",
        width: 8,
        rank: 1,
        cell: |r| rate(r.out_rate),
    },
    Column {
        title: "drop/s",
        width: 7,
        rank: 5,
        cell: |r| rate(r.dropped_rate),
    },
    Column {
        title: "fail/s",
        width: 7,
        rank: 4,
        cell: |r| rate(r.failed_rate),
    },
    Column {
        title: "dlq/s",
        width: 7,
        rank: 6,
        cell: |r| rate(r.dead_letter_rate),
    },
    Column {
        title: "p99",
        width: 7,
        rank: 3,
        cell: |r| r.p99.map_or_else(|| "-".into(), seconds),
    },
    Column {
        title: "lag",
        width: 8,
        rank: 2,
        cell: |r| r.lag.map_or_else(|| "-".into(), count),
    },
    Column {
        title: "in total",
        width: 11,
        rank: 7,
        cell: |r| r.total_in.map_or_else(|| "-".into(), |n| n.to_string()),
    },
    Column {
        title: "out total",
        width: 11,
        rank: 8,
        cell: |r| r.total_out.map_or_else(|| "-".into(), |n| n.to_string()),
    },
];

/// The screen as lines, at most `height` of them, none wider than `width`.
pub fn screen(
    hosts: &[Host],
    interval: Duration,
    width: usize,
    height: usize,
) -> Vec<Line<'static>> {
    let mut lines: Vec<Line<'static>> = Vec::new();
    let plural = if hosts.len() == 1 { "" } else { "s" };
    let title = format!(
        "sluice top · {} host{plural} · every {} · q quits",
        hosts.len(),
        humantime::format_duration(interval)
    );
    lines.push(Line::styled(
        fit(&title, width),
        Style::default().add_modifier(Modifier::BOLD),
    ));
    for host in hosts {
        lines.push(host_line(host, width));
    }
    lines.push(Line::raw(""));

    let table = rows(hosts);
    if table.is_empty() {
        let waiting = if hosts.iter().all(|h| h.error.is_some()) {
            "no host answered"
        } else {
            "waiting for the first snapshot…"
        };
        lines.push(Line::raw(fit(waiting, width)));
    } else {
        let name_width = table
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(12, 32)
            .min(width);
        let columns = fitting(width.saturating_sub(name_width));
        let used: usize = name_width + columns.iter().map(|c| c.width + 1).sum::<usize>();
        // What is left after the numbers holds state and versions.
        let note_width = width.saturating_sub(used + 2);
        let note_width = if note_width >= 6 { note_width } else { 0 };
        let header = format_row(
            "stage / plugin",
            name_width,
            &columns,
            |c| c.title.to_string(),
            note_width,
            "state / version",
        );
        lines.push(Line::styled(
            header,
            Style::default().add_modifier(Modifier::REVERSED),
        ));
        for row in &table {
            let text = format_row(
                &row.name,
                name_width,
                &columns,
                |c| (c.cell)(row),
                note_width,
                &row.note,
            );
            let style = match row.kind {
                Kind::Stage | Kind::Route => Style::default().add_modifier(Modifier::BOLD),
                Kind::Plugin => Style::default(),
                Kind::HostShare => Style::default().fg(Color::Cyan),
            };
            lines.push(Line::styled(text, style));
        }
    }
    if lines.len() > height && height > 0 {
        let hidden = lines.len() - (height - 1);
        lines.truncate(height - 1);
        lines.push(Line::styled(
            fit(
                &format!("… {hidden} more lines: enlarge the terminal"),
                width,
            ),
            Style::default().add_modifier(Modifier::DIM),
        ));
    }
    lines
}

/// The columns that fit in `room`, by rank, in display order.
fn fitting(room: usize) -> Vec<&'static Column> {
    let mut by_rank: Vec<&Column> = COLUMNS.iter().collect();
    by_rank.sort_by_key(|c| c.rank);
    let mut left = room;
    let mut chosen: Vec<u8> = Vec::new();
    for column in by_rank {
        if column.width < left {
            left -= column.width + 1;
            chosen.push(column.rank);
        }
    }
    COLUMNS
        .iter()
        .filter(|c| chosen.contains(&c.rank))
        .collect()
}

fn format_row(
    name: &str,
    name_width: usize,
    columns: &[&Column],
    cell: impl Fn(&Column) -> String,
    note_width: usize,
    note: &str,
) -> String {
    let mut text = format!("{:<name_width$}", fit(name, name_width));
    for column in columns {
        let width = column.width;
        text.push(' ');
        text.push_str(&format!("{:>width$}", fit(&cell(column), width)));
    }
    if note_width > 0 {
        text.push_str("  ");
        text.push_str(&fit(note, note_width));
    }
    text.trim_end().to_string()
}

fn host_line(host: &Host, width: usize) -> Line<'static> {
    match (&host.error, &host.current) {
        (Some(error), _) => Line::styled(
            fit(&format!("{}  {error}", host.url), width),
            Style::default().fg(Color::Red),
        ),
        (None, Some(stats)) => Line::raw(fit(
            &format!(
                "{}  {} v{} up {}",
                host.url,
                stats.host.id,
                stats.host.version,
                uptime(stats.host.uptime_ms)
            ),
            width,
        )),
        (None, None) => Line::raw(fit(&format!("{}  connecting…", host.url), width)),
    }
}

/// `text` cut to `width` characters, with `…` when cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// Events per second, in at most 7 characters.
fn rate(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(0.0) => "0".into(),
        Some(v) if v < 10.0 => format!("{v:.2}"),
        Some(v) if v < 1_000.0 => format!("{v:.1}"),
        Some(v) if v < 100_000.0 => format!("{v:.0}"),
        Some(v) if v < 100_000_000.0 => format!("{:.1}k", v / 1e3),
        Some(v) => format!("{:.1}M", v / 1e6),
    }
}

/// A count in at most 8 characters.
fn count(n: u64) -> String {
    if n < 10_000_000 {
        n.to_string()
    } else {
        format!("{:.1}M", n as f64 / 1e6)
    }
}

/// A latency.
fn seconds(s: f64) -> String {
    if s < 0.001 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 0.01 {
        format!("{:.1}ms", s * 1e3)
    } else if s < 1.0 {
        format!("{:.0}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::stats::{
        HostIdentity, IngestStats, PluginEvents, PluginStats, RouteStats, StageEvents, StageStats,
        Stats,
    };

    fn snapshot(uptime_ms: u64, n: u64) -> Stats {
        let plugin = |name: &str, input: u64, kept: u64, version: &str| PluginStats {
            name: name.into(),
            kind: "transform".into(),
            version: Some(version.into()),
            events: PluginEvents {
                input,
                kept,
                dropped: input - kept,
                ..PluginEvents::default()
            },
            ..PluginStats::default()
        };
        Stats {
            host: HostIdentity {
                id: "eu-1".into(),
                version: "0.1.0".into(),
                started_at_ms: 1,
                uptime_ms,
                at_ms: uptime_ms as i64,
            },
            ingest: Some(IngestStats {
                routes: vec![RouteStats {
                    topic: "telemetry.events".into(),
                    event_types: vec!["*".into()],
                    accepted: n,
                    ..RouteStats::default()
                }],
                ..IngestStats::default()
            }),
            stages: vec![StageStats {
                name: "clean".into(),
                state: "running".into(),
                events: StageEvents {
                    input: n,
                    out: n * 3 / 4,
                    dropped: n / 4,
                    ..StageEvents::default()
                },
                plugins: vec![
                    plugin("filter", n, n * 3 / 4, "c9664ccb0026"),
                    plugin("redact", n * 3 / 4, n * 3 / 4, "66607ad414a4"),
                ],
                ..StageStats::default()
            }],
        }
    }

    /// The buffer of a `width` x `height` TestBackend after one draw, as lines.
    fn drawn(hosts: &[Host], width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
        terminal
            .draw(|frame| draw(frame, hosts, Duration::from_secs(1)))
            .expect("draw");
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect()
    }

    fn two_snapshots() -> Host {
        let mut host = Host::new("http://127.0.0.1:8080");
        host.update(Ok(snapshot(10_000, 1_000)));
        host.update(Ok(snapshot(11_000, 1_400)));
        host
    }

    #[test]
    fn a_wide_terminal_shows_rates_totals_and_versions_per_stage_and_plugin() {
        let screen = drawn(&[two_snapshots()], 120, 40);
        let text = screen.join("\n");
        assert!(
            screen[0].starts_with("sluice top · 1 host · every 1s · q quits"),
            "{text}"
        );
        assert!(screen[1].contains("eu-1 v0.1.0 up 11s"), "{text}");
        let header = screen
            .iter()
            .find(|l| l.starts_with("stage / plugin"))
            .expect(&text);
        for title in [
            "in/s",
            "out/s",
            "drop/s",
            "fail/s",
            "dlq/s",
            "p99",
            "lag",
            "in total",
            "out total",
        ] {
            assert!(header.contains(title), "{header}");
        }
        let cells = |name: &str| -> Vec<String> {
            let line = screen
                .iter()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap_or_else(|| panic!("no {name} row in\n{text}"));
            line.split_whitespace().map(str::to_string).collect()
        };
        // name, in/s, out/s, drop/s, fail/s, dlq/s, p99, lag, in total, out total, note
        assert_eq!(
            cells("clean"),
            [
                "clean", "400.0", "300.0", "100.0", "0", "0", "-", "0", "1400", "1050", "running"
            ]
        );
        assert_eq!(
            cells("filter"),
            [
                "filter",
                "400.0",
                "300.0",
                "100.0",
                "0",
                "-",
                "-",
                "-",
                "1400",
                "1050",
                "c9664ccb0026"
            ]
        );
        assert_eq!(cells("redact")[8], "1050");
        assert_eq!(cells("redact")[10], "66607ad414a4");
        let route = cells("* → telemetry.events");
        assert_eq!(
            route[3..5],
            ["400.0".to_string(), "400.0".to_string()],
            "{route:?}"
        );
    }

    #[test]
    fn an_80x24_terminal_keeps_the_rates_and_drops_the_totals() {
        let screen = drawn(&[two_snapshots()], 80, 24);
        let text = screen.join("\n");
        assert!(screen.iter().all(|l| l.chars().count() <= 80));
        let header = screen
            .iter()
            .find(|l| l.starts_with("stage / plugin"))
            .expect(&text);
        for title in ["in/s", "out/s", "lag", "p99", "fail/s"] {
            assert!(header.contains(title), "{header}");
        }
        assert!(!header.contains("out total"), "{header}");
        assert!(text.contains("filter") && text.contains("400.0"), "{text}");

        // Very narrow: names and the first rates still.
        let narrow = drawn(&[two_snapshots()], 32, 24);
        assert!(
            narrow
                .iter()
                .any(|l| l.starts_with("clean") && l.contains("400.0")),
            "{narrow:?}"
        );
        // Too short: the last line says how many are hidden.
        let short = drawn(&[two_snapshots()], 80, 5);
        assert!(short[4].contains("more lines"), "{short:?}");
    }

    #[test]
    fn an_unreachable_host_is_named_and_the_others_still_shown() {
        let mut down = Host::new("http://127.0.0.1:1");
        down.update(Err("unreachable: connection refused".into()));
        let screen = drawn(&[two_snapshots(), down], 100, 30);
        let text = screen.join("\n");
        assert!(text.contains("2 hosts"), "{text}");
        assert!(
            text.contains("http://127.0.0.1:1  unreachable: connection refused"),
            "{text}"
        );
        assert!(screen.iter().any(|l| l.starts_with("clean")), "{text}");

        let mut only_down = Host::new("http://127.0.0.1:1");
        only_down.update(Err("401 Unauthorized: wrong or missing admin token".into()));
        let text = drawn(&[only_down], 80, 24).join("\n");
        assert!(
            text.contains("401 Unauthorized") && text.contains("no host answered"),
            "{text}"
        );
        let text = drawn(&[Host::new("http://x")], 80, 24).join("\n");
        assert!(
            text.contains("connecting…") && text.contains("waiting for the first snapshot"),
            "{text}"
        );
    }
}
