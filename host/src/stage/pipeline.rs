//! The order of one turn of the at-least-once stage loop, apart from the
//! Kafka and plugin work it orders, so the order itself is tested in
//! milliseconds (see the tests below) and the loop reads as its phases.
//!
//! Batch N is in flight (its records produced, not yet acknowledged) while
//! batch N+1 has just run through the chain. A topic output builds N+1's
//! records first (overlapping N's acknowledgement), then waits for N and
//! commits it, then produces N+1: the broker never holds N+1's records
//! before N is committed, so a crash redelivers from N at most and per-key
//! order holds. A sink writes outside Kafka, so it writes N+1 only after N
//! is committed: its write is a phase of its own, after the commit.

/// The work one turn orders; [`turn`] calls each at most once.
pub(super) trait Phases {
    /// A batch run through the chain, not yet delivered.
    type Processed;
    /// A batch whose records are ready to produce.
    type Ready;
    /// A batch whose records were produced and await acknowledgement.
    type InFlight;

    /// Build a processed batch's output records, or write it to the sink;
    /// `None` when nothing is left to produce (or the stage is stopping).
    fn deliver(&mut self, processed: Self::Processed) -> Option<Self::Ready>;
    /// Wait for a batch's acknowledgement and commit its offsets.
    fn finish(&mut self, in_flight: Self::InFlight);
    /// Produce a ready batch's records.
    fn launch(&mut self, ready: Self::Ready) -> Self::InFlight;
}

/// One turn: deliver `processed` (batch N+1) and finish `previous` (batch
/// N) in the order the module doc explains; returns what is in flight
/// afterwards.
pub(super) fn turn<P: Phases>(
    phases: &mut P,
    processed: Option<P::Processed>,
    sink: bool,
    previous: Option<P::InFlight>,
) -> Option<P::InFlight> {
    let (mut ready, for_sink) = match processed {
        Some(processed) if sink => (None, Some(processed)),
        Some(processed) => (phases.deliver(processed), None),
        None => (None, None),
    };
    if let Some(previous) = previous {
        phases.finish(previous);
    }
    if let Some(processed) = for_sink {
        ready = phases.deliver(processed);
    }
    ready.map(|ready| phases.launch(ready))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the phases in order; batches are numbers.
    #[derive(Default)]
    struct Log {
        steps: Vec<String>,
        /// Batches whose delivery leaves nothing to produce.
        empty: Vec<u32>,
    }

    impl Phases for Log {
        type Processed = u32;
        type Ready = u32;
        type InFlight = u32;
        fn deliver(&mut self, n: u32) -> Option<u32> {
            self.steps.push(format!("deliver {n}"));
            (!self.empty.contains(&n)).then_some(n)
        }
        fn finish(&mut self, n: u32) {
            self.steps.push(format!("commit {n}"));
        }
        fn launch(&mut self, n: u32) -> u32 {
            self.steps.push(format!("produce {n}"));
            n
        }
    }

    /// Run `batches` through turns as the loop does; the steps, then the
    /// final drain.
    fn run(sink: bool, batches: &[Option<u32>], empty: &[u32]) -> Vec<String> {
        let mut log = Log {
            empty: empty.to_vec(),
            ..Log::default()
        };
        let mut in_flight = None;
        for batch in batches {
            in_flight = turn(&mut log, *batch, sink, in_flight.take());
        }
        if let Some(last) = in_flight {
            log.finish(last);
        }
        log.steps
    }

    #[test]
    fn a_topic_stage_builds_the_next_batch_before_committing_the_last() {
        assert_eq!(
            run(false, &[Some(1), Some(2), Some(3)], &[]),
            [
                "deliver 1",
                "produce 1", //
                "deliver 2",
                "commit 1",
                "produce 2", //
                "deliver 3",
                "commit 2",
                "produce 3", //
                "commit 3",
            ]
        );
    }

    #[test]
    fn a_sink_stage_writes_the_next_batch_only_after_the_last_is_committed() {
        assert_eq!(
            run(true, &[Some(1), Some(2), Some(3)], &[]),
            [
                "deliver 1",
                "produce 1", //
                "commit 1",
                "deliver 2",
                "produce 2", //
                "commit 2",
                "deliver 3",
                "produce 3", //
                "commit 3",
            ]
        );
    }

    #[test]
    fn an_idle_turn_commits_what_is_in_flight_and_an_empty_batch_produces_nothing() {
        for sink in [false, true] {
            let steps = run(sink, &[Some(1), None, Some(2), Some(3)], &[2]);
            // Nothing produced for 2, and 3 still waits for nothing older.
            assert!(!steps.contains(&"produce 2".to_string()), "{steps:?}");
            let commit_1 = steps.iter().position(|s| s == "commit 1").unwrap();
            let deliver_2 = steps.iter().position(|s| s == "deliver 2").unwrap();
            assert!(commit_1 < deliver_2, "the idle turn committed 1: {steps:?}");
            assert_eq!(steps.iter().filter(|s| s.starts_with("commit")).count(), 2);
            assert_eq!(steps.last().map(String::as_str), Some("commit 3"));
        }
    }

    #[test]
    fn every_produced_batch_is_committed_once_and_in_order() {
        for sink in [false, true] {
            let steps = run(sink, &[Some(1), Some(2), None, None, Some(3), Some(4)], &[]);
            let commits: Vec<&str> = steps
                .iter()
                .filter_map(|s| s.strip_prefix("commit "))
                .collect();
            assert_eq!(commits, ["1", "2", "3", "4"], "{steps:?}");
            // No batch is produced while an older one is uncommitted.
            for n in 2..=4 {
                let produce = steps.iter().position(|s| *s == format!("produce {n}"));
                let commit_before = steps.iter().position(|s| *s == format!("commit {}", n - 1));
                assert!(commit_before < produce, "{n}: {steps:?}");
            }
        }
    }
}
