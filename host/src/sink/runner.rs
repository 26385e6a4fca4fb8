//! Writing a stage's batches through its sink plugin: one transaction per
//! call; an outage is handed back to the stage (which retries the batch and
//! commits nothing meanwhile); a denied capability dead-letters the batch; a
//! rejected batch is retried on a fresh instance, then split in halves until
//! the events that make it fail are alone.

use std::sync::Arc;
use std::time::Instant;

use super::session::{Grants, Problem, Session};
use crate::config::Limits;
use crate::runtime::bindings::Event;
use crate::runtime::{SinkInstance, SinkPlugin};

/// A target was unreachable; the batch must be written again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

enum Attempt {
    Written(u64),
    Unavailable(String),
    Denied(String),
    Failed(String),
}

/// A stage's sink: the plugin, its config and grants, and a live instance.
pub struct SinkRunner {
    stage: String,
    plugin: Arc<SinkPlugin>,
    config: String,
    limits: Limits,
    grants: Arc<Grants>,
    retries: u32,
    instance: Option<SinkInstance>,
}

impl SinkRunner {
    /// A runner for `plugin` in `stage`.
    pub fn new(
        stage: &str,
        plugin: Arc<SinkPlugin>,
        config: String,
        limits: Limits,
        grants: Arc<Grants>,
        retries: u32,
    ) -> Self {
        Self {
            stage: stage.to_string(),
            plugin,
            config,
            limits,
            grants,
            retries,
            instance: None,
        }
    }

    /// The sink plugin's name.
    pub fn name(&self) -> &str {
        &self.plugin.name
    }

    /// The sink plugin's version label.
    pub fn version(&self) -> &str {
        self.plugin.version()
    }

    /// Write `events`. Returns the events that failed for good, as
    /// `(index, reason)`, for the dead-letter topic; everything else is
    /// committed. `Err` means a target is down: the whole batch must be
    /// written again (the upsert makes the repeated part harmless).
    pub fn write(&mut self, events: &[Event]) -> Result<Vec<(usize, String)>, Unavailable> {
        let retries = self.retries;
        write_isolating(events, retries, &mut |part, whole| {
            let attempt = self.attempt(part);
            if let (true, Attempt::Failed(m)) = (whole, &attempt) {
                tracing::warn!(stage = %self.stage, plugin = %self.plugin.name, error = %m, "sink batch failed");
            }
            attempt
        })
    }

    fn attempt(&mut self, events: &[Event]) -> Attempt {
        let started = Instant::now();
        let mut instance = match self.instance.take() {
            Some(instance) => instance,
            None => match self.plugin.instantiate(
                &self.stage,
                &self.config,
                self.limits,
                Box::new(Session::new(self.grants.clone())),
            ) {
                Ok(instance) => instance,
                Err(e) => {
                    crate::metrics::plugin_trap(&self.stage, &self.plugin.name, e.kind());
                    return Attempt::Failed(e.to_string());
                }
            },
        };
        let call = instance.write(events);
        let plugin_ok = matches!(call, Ok(Ok(())));
        let finished = match instance.capabilities::<Session>() {
            Some(session) => session.finish(plugin_ok),
            None => Err(None),
        };
        crate::metrics::plugin_call(&self.stage, &self.plugin.name, started.elapsed());
        let attempt = match (call, finished) {
            (_, Err(Some(Problem::Unavailable(m)))) => Attempt::Unavailable(m),
            (_, Err(Some(Problem::Denied(m)))) => Attempt::Denied(m),
            (Ok(Ok(())), Ok(rows)) => Attempt::Written(rows),
            (Ok(Ok(())), Err(problem)) => Attempt::Failed(
                problem.map_or_else(|| "the batch was not committed".into(), |p| p.to_string()),
            ),
            (Ok(Err(message)), _) => Attempt::Failed(message),
            (Err(trap), _) => {
                crate::metrics::plugin_trap(&self.stage, &self.plugin.name, trap.kind());
                // A trapped instance cannot be entered again.
                return Attempt::Failed(trap.to_string());
            }
        };
        if let Attempt::Written(rows) = attempt {
            crate::metrics::sink_rows(&self.stage, &self.plugin.name, rows);
        }
        self.instance = Some(instance);
        attempt
    }
}

/// The write policy, apart from the plugin: `attempt` writes a part of the
/// batch (`true` while it is the whole batch). The whole batch gets
/// `retries` more attempts; then failing ranges are split in halves until
/// the failing events are alone. An outage ends it at once (`Err`: write
/// everything again later); a denied capability fails the part it hit.
fn write_isolating(
    events: &[Event],
    retries: u32,
    attempt: &mut dyn FnMut(&[Event], bool) -> Attempt,
) -> Result<Vec<(usize, String)>, Unavailable> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut reason = String::new();
    for _ in 0..=retries {
        match attempt(events, true) {
            Attempt::Written(_) => return Ok(Vec::new()),
            Attempt::Unavailable(m) => return Err(Unavailable(m)),
            Attempt::Denied(m) => return Ok(all_failed(0, events.len(), &m)),
            Attempt::Failed(m) => reason = m,
        }
    }
    if events.len() == 1 {
        return Ok(vec![(0, reason)]);
    }
    bisect(events, 0, attempt)
}

/// Split a failing range until its failing events are alone.
fn bisect(
    events: &[Event],
    offset: usize,
    attempt: &mut dyn FnMut(&[Event], bool) -> Attempt,
) -> Result<Vec<(usize, String)>, Unavailable> {
    let middle = events.len() / 2;
    let mut failed = Vec::new();
    for (part, start) in [(&events[..middle], 0), (&events[middle..], middle)] {
        match attempt(part, false) {
            Attempt::Written(_) => {}
            Attempt::Unavailable(m) => return Err(Unavailable(m)),
            Attempt::Denied(m) => failed.extend(all_failed(offset + start, part.len(), &m)),
            Attempt::Failed(m) if part.len() == 1 => failed.push((offset + start, m)),
            Attempt::Failed(_) => failed.extend(bisect(part, offset + start, attempt)?),
        }
    }
    Ok(failed)
}

fn all_failed(offset: usize, len: usize, reason: &str) -> Vec<(usize, String)> {
    (offset..offset + len)
        .map(|i| (i, reason.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event {
                key: None,
                value: format!("{{\"i\":{i}}}").into(),
                headers: Vec::new(),
                timestamp_ms: None,
                origin: None,
                topic: None,
            })
            .collect()
    }

    fn index(event: &Event) -> usize {
        let text = String::from_utf8_lossy(&event.value);
        text.trim_start_matches("{\"i\":")
            .trim_end_matches('}')
            .parse()
            .unwrap()
    }

    /// A fake sink that rejects any batch holding one of `poison`.
    fn rejecting(poison: &[usize], calls: &mut usize) -> impl FnMut(&[Event], bool) -> Attempt {
        let poison = poison.to_vec();
        move |part: &[Event], _| {
            *calls += 1;
            match part.iter().map(index).find(|i| poison.contains(i)) {
                Some(i) => Attempt::Failed(format!("event {i} violates a constraint")),
                None => Attempt::Written(part.len() as u64),
            }
        }
    }

    #[test]
    fn a_clean_batch_is_written_in_one_call() {
        let mut calls = 0;
        let failed = write_isolating(&events(64), 2, &mut rejecting(&[], &mut calls)).unwrap();
        assert!(failed.is_empty());
        assert_eq!(calls, 1);
    }

    #[test]
    fn failing_events_are_isolated_by_halving_after_the_retries() {
        let mut calls = 0;
        let failed = write_isolating(&events(64), 2, &mut rejecting(&[5, 40], &mut calls)).unwrap();
        let indexes: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![5, 40]);
        assert_eq!(failed[0].1, "event 5 violates a constraint");
        // 3 whole-batch attempts, then two paths of log2(64) = 6 halvings.
        assert!(calls <= 3 + 2 * 2 * 6, "{calls} calls");
    }

    #[test]
    fn an_outage_hands_the_whole_batch_back() {
        let mut calls = 0;
        let mut down = |_: &[Event], _| {
            calls += 1;
            Attempt::Unavailable("connection refused".into())
        };
        let result = write_isolating(&events(8), 3, &mut down);
        assert_eq!(result, Err(Unavailable("connection refused".into())));
        assert_eq!(
            calls, 1,
            "an outage is not retried here: the stage holds the batch"
        );
    }

    #[test]
    fn an_outage_while_halving_still_hands_the_batch_back() {
        let mut calls = 0;
        let mut flaky = |part: &[Event], whole: bool| {
            calls += 1;
            if whole {
                Attempt::Failed("rejected".into())
            } else if part.len() < 4 {
                Attempt::Unavailable("gone".into())
            } else {
                Attempt::Failed("rejected".into())
            }
        };
        assert!(write_isolating(&events(16), 0, &mut flaky).is_err());
    }

    #[test]
    fn a_denied_capability_fails_every_event_it_hit() {
        let mut denied = |_: &[Event], _| Attempt::Denied("connection `x` not granted".into());
        let failed = write_isolating(&events(3), 2, &mut denied).unwrap();
        assert_eq!(failed.len(), 3);
        assert!(failed.iter().all(|(_, m)| m.contains("not granted")));
    }
}
