//! One batch through a stage: decode and run the chain ([`Stage::process`]),
//! then deliver the result ([`Stage::deliver`]): output records for a topic
//! output, or a write through the sink plugin (retried while its target is
//! down), and dead letters for what failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;

use super::output::Prepared;
use super::{Batch, MAX_RETRY_DELAY, Stage, StageState, StatusBoard, dead_letter, retry_delays};
use crate::runtime::bindings::Event;
use crate::runtime::{ChainOutput, Failure};
use crate::sink::Unavailable;

/// A batch decoded and run through the chain, not yet delivered.
pub(super) struct Processed {
    batch: Batch,
    /// Index in the batch of each event the chain was given.
    decoded: Vec<usize>,
    output: ChainOutput,
    failures: Vec<Failure>,
    started: Instant,
}

impl Stage {
    /// Decode `batch` and run it through the chain.
    pub(super) fn process(&mut self, mut batch: Batch) -> Processed {
        let started = Instant::now();
        crate::metrics::stage_events(&self.name, "", "in", batch.len());
        let (events, failures) = batch.decode(&self.schemas);
        if crate::tap::active() {
            super::tap::input(&events);
        }
        let decoded: Vec<usize> = events.iter().map(|(i, _)| *i).collect();
        let output = self.chain.run(events.into_iter().map(|(_, e)| e).collect());
        Processed {
            batch,
            decoded,
            output,
            failures,
            started,
        }
    }

    /// Build the batch's output records, or write it through the sink, and
    /// its dead letters. `None` if asked to stop while a sink target was
    /// down (nothing to commit).
    pub(super) fn deliver(
        &mut self,
        processed: Processed,
        board: &StatusBoard,
        stop: &AtomicBool,
    ) -> Option<Prepared> {
        let Processed {
            batch,
            decoded,
            output,
            mut failures,
            started,
        } = processed;
        for failure in output.failures {
            let mut failure = failure;
            failure.source = decoded[failure.source];
            failures.push(failure);
        }
        let mut records = Vec::with_capacity(output.items.len());
        if self.sink.is_some() {
            let sources: Vec<usize> = output.items.iter().map(|i| decoded[i.source]).collect();
            let events: Vec<Event> = output.items.into_iter().map(|i| i.event).collect();
            // Stopped while the sink's target was down: nothing committed.
            let sink_failures = self.write_to_sink(&events, &batch, board, stop)?;
            let written = events.len() - sink_failures.len();
            crate::metrics::stage_events(&self.name, "", "out", written);
            if let Some(sink) = &self.sink {
                crate::metrics::stage_events(&self.name, sink.name(), "in", events.len());
                crate::metrics::stage_events(&self.name, sink.name(), "written", written);
                crate::metrics::stage_events(
                    &self.name,
                    sink.name(),
                    "failed",
                    sink_failures.len(),
                );
            }
            failures.extend(
                sink_failures
                    .into_iter()
                    .map(|(index, error)| self.sink_failure(sources[index], error)),
            );
        } else {
            let versions = self.chain.versions().join(",");
            for item in output.items {
                let source = decoded[item.source];
                match batch.output_record(source, item, &self.output, &versions) {
                    Ok(record) => records.push(record),
                    Err(failure) => failures.push(failure),
                }
            }
            crate::metrics::stage_events(&self.name, "", "out", records.len());
        }
        for failure in &failures {
            records.push(dead_letter::record(
                &batch,
                &self.name,
                &self.dead_letter,
                failure,
            ));
        }
        crate::metrics::stage_events(&self.name, "", "dead_lettered", failures.len());
        if crate::tap::active() && !failures.is_empty() {
            super::tap::dead_letters(&self.name, &batch, &self.schemas, &failures);
        }
        Some(Prepared {
            batch,
            records,
            started,
        })
    }

    fn sink_failure(&self, source: usize, error: String) -> Failure {
        let sink = self.sink.as_ref();
        Failure {
            source,
            plugin: sink.map(|s| s.name().to_string()).unwrap_or_default(),
            version: sink.map(|s| s.version().to_string()).unwrap_or_default(),
            error,
        }
    }

    /// Write the chain's output through the sink, retrying with backoff for
    /// as long as a target is unavailable (the batch stays uncommitted, so
    /// consumer lag grows and nothing is lost). Returns the events that
    /// failed for good, or `None` if asked to stop first.
    fn write_to_sink(
        &mut self,
        events: &[Event],
        batch: &Batch,
        board: &StatusBoard,
        stop: &AtomicBool,
    ) -> Option<Vec<(usize, String)>> {
        let mut delays = retry_delays(Duration::from_millis(200))
            .with_jitter()
            .build();
        let mut outage: Option<Instant> = None;
        let mut last_lag = Instant::now();
        loop {
            let sink = self.sink.as_mut()?;
            match sink.write(events) {
                Ok(failures) => {
                    if let Some(since) = outage {
                        tracing::info!(stage = %self.name, down_for = ?since.elapsed(), "sink target reachable again; resuming");
                        board.set(
                            &self.name,
                            StageState::Running,
                            format!("consuming {}", self.input),
                        );
                    }
                    return Some(failures);
                }
                Err(Unavailable(reason)) => {
                    crate::metrics::sink_unavailable(&self.name);
                    if outage.is_none() {
                        tracing::warn!(stage = %self.name, error = %reason, events = events.len(), "sink target unavailable; holding the batch and retrying");
                    }
                    let since = *outage.get_or_insert_with(Instant::now);
                    board.set(
                        &self.name,
                        StageState::Retrying,
                        format!(
                            "sink target unavailable for {} s ({} offsets held at {}): {reason}",
                            since.elapsed().as_secs(),
                            batch.len(),
                            self.input
                        ),
                    );
                }
            }
            let delay = delays.next().unwrap_or(MAX_RETRY_DELAY);
            let wake = Instant::now() + delay;
            while Instant::now() < wake {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if last_lag.elapsed() > Duration::from_secs(2) {
                self.report_lag();
                last_lag = Instant::now();
            }
        }
    }
}
