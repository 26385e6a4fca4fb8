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
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut reason = String::new();
        for attempt in 0..=self.retries {
            match self.attempt(events) {
                Attempt::Written(_) => return Ok(Vec::new()),
                Attempt::Unavailable(m) => return Err(Unavailable(m)),
                Attempt::Denied(m) => return Ok(all_failed(0, events.len(), &m)),
                Attempt::Failed(m) => {
                    tracing::warn!(stage = %self.stage, plugin = %self.plugin.name, attempt, error = %m, "sink batch failed");
                    reason = m;
                }
            }
        }
        if events.len() == 1 {
            return Ok(vec![(0, reason)]);
        }
        self.bisect(events, 0)
    }

    /// Split a failing range until its failing events are alone.
    fn bisect(
        &mut self,
        events: &[Event],
        offset: usize,
    ) -> Result<Vec<(usize, String)>, Unavailable> {
        let middle = events.len() / 2;
        let mut failed = Vec::new();
        for (part, start) in [(&events[..middle], 0), (&events[middle..], middle)] {
            match self.attempt(part) {
                Attempt::Written(_) => {}
                Attempt::Unavailable(m) => return Err(Unavailable(m)),
                Attempt::Denied(m) => failed.extend(all_failed(offset + start, part.len(), &m)),
                Attempt::Failed(m) if part.len() == 1 => failed.push((offset + start, m)),
                Attempt::Failed(_) => failed.extend(self.bisect(part, offset + start)?),
            }
        }
        Ok(failed)
    }

    fn attempt(&mut self, events: &[Event]) -> Attempt {
        let started = Instant::now();
        let mut instance = match self.instance.take() {
            Some(instance) => instance,
            None => match self.plugin.instantiate(
                &self.stage,
                &self.config,
                self.limits,
                Session::new(self.grants.clone()),
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
        let finished = instance.session().finish(plugin_ok);
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

fn all_failed(offset: usize, len: usize, reason: &str) -> Vec<(usize, String)> {
    (offset..offset + len)
        .map(|i| (i, reason.to_string()))
        .collect()
}
