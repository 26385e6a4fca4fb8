//! Running an ordered chain of transform plugins over a batch.
//!
//! A plugin that traps, times out or hits its memory cap costs its batch a
//! retry on a fresh instance; if it keeps failing, the batch is split in
//! halves until the events that make it fail are alone, and only those are
//! reported as failed (for the dead-letter topic). The host never exits.

use std::sync::Arc;
use std::time::Instant;

use super::event::{Event, Outcome};
use super::plugin::{CallError, TransformInstance, TransformPlugin};
use crate::config::Limits;

/// An event moving through the chain.
#[derive(Debug, Clone)]
pub struct Item {
    /// The event as the next plugin will see it.
    pub event: Event,
    /// Index of the input event this one came from.
    pub source: usize,
    /// True once any plugin changed its value or created it by fan-out: the
    /// host must re-encode it instead of reusing the input bytes. Metadata
    /// edits (topic, headers) leave it false.
    pub changed: bool,
    /// The last plugin that changed its value (`(name, version)`), to
    /// name in the dead letter when the new value does not fit the schema.
    pub changed_by: Option<Arc<(String, String)>>,
}

/// An event a plugin failed, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Index of the input event.
    pub source: usize,
    /// Plugin that failed it.
    pub plugin: String,
    /// That plugin's version.
    pub version: String,
    /// The reason (the plugin's own words, or the trap).
    pub error: String,
}

/// What a chain made of a batch.
#[derive(Debug, Default)]
pub struct ChainOutput {
    /// Events to write, in input order (fan-outs in the order returned).
    pub items: Vec<Item>,
    /// Events that failed.
    pub failures: Vec<Failure>,
    /// Events dropped on purpose.
    pub dropped: usize,
}

/// One plugin in a chain, with its live instance.
pub struct Link {
    plugin: Arc<TransformPlugin>,
    config: String,
    limits: Limits,
    instance: Option<TransformInstance>,
    /// Version label for headers; the plugin's short hash unless the
    /// plugin store numbered it (`v2-3f2a9c1b0d4e`).
    label: Option<String>,
}

impl Link {
    /// A link running `plugin` with `config` (JSON) under `limits`.
    pub fn new(plugin: Arc<TransformPlugin>, config: String, limits: Limits) -> Self {
        Self {
            plugin,
            config,
            limits,
            instance: None,
            label: None,
        }
    }

    /// Label this link's version in output headers (the plugin store's
    /// numbered version) instead of the bare short hash.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Set the version label (the same component got a store number).
    pub fn relabel(&mut self, label: impl Into<String>) {
        self.label = Some(label.into());
    }

    /// The version label used in headers.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(self.plugin.version())
    }

    /// The plugin this link runs.
    pub fn plugin(&self) -> &Arc<TransformPlugin> {
        &self.plugin
    }

    /// Replace the plugin with `plugin`, keeping config and limits. The new
    /// version is instantiated (`init` with this link's config) first; if
    /// that fails the link keeps its old plugin and instance.
    pub fn swap(
        &mut self,
        stage: &str,
        plugin: Arc<TransformPlugin>,
        label: Option<String>,
    ) -> Result<(), CallError> {
        let instance = plugin.instantiate(stage, &self.config, self.limits)?;
        self.plugin = plugin;
        self.instance = Some(instance);
        self.label = label;
        Ok(())
    }

    fn call(&mut self, stage: &str, batch: &[Event]) -> Result<Vec<Outcome>, String> {
        let instance = match self.instance.take() {
            Some(instance) => instance,
            None => self
                .plugin
                .instantiate(stage, &self.config, self.limits)
                .map_err(|e| self.trapped(stage, &e))?,
        };
        let mut instance = instance;
        let started = Instant::now();
        let result = instance.process(batch);
        crate::metrics::plugin_call(stage, &self.plugin.name, started.elapsed());
        match result {
            Ok(Ok(outcomes)) if outcomes.len() == batch.len() => {
                self.instance = Some(instance);
                Ok(outcomes)
            }
            Ok(Ok(outcomes)) => Err(format!(
                "plugin returned {} outcomes for {} events",
                outcomes.len(),
                batch.len()
            )),
            Ok(Err(message)) => {
                self.instance = Some(instance);
                Err(format!("plugin failed the batch: {message}"))
            }
            Err(e) => Err(self.trapped(stage, &e)),
        }
    }

    fn trapped(&self, stage: &str, e: &CallError) -> String {
        crate::metrics::plugin_trap(stage, &self.plugin.name, e.kind());
        tracing::warn!(stage, plugin = %self.plugin.name, version = %self.plugin.version(), error = %e, "plugin call failed");
        e.to_string()
    }
}

impl Step for Link {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    fn label(&self) -> &str {
        Link::label(self)
    }

    fn run_isolating(
        &mut self,
        stage: &str,
        batch: &[Event],
        retries: u32,
    ) -> Vec<Result<Outcome, String>> {
        isolate(batch, retries, &mut |part| self.call(stage, part))
    }
}

/// One step of a chain as [`run_steps`] drives it: a [`Link`], or a fake
/// plugin in tests.
pub(crate) trait Step {
    /// Plugin name.
    fn name(&self) -> &str;
    /// Version label for headers and dead letters.
    fn label(&self) -> &str;
    /// One outcome per event of `batch`, or why that event failed.
    fn run_isolating(
        &mut self,
        stage: &str,
        batch: &[Event],
        retries: u32,
    ) -> Vec<Result<Outcome, String>>;
}

/// One call of a plugin on a batch: an outcome per event, or why the whole
/// batch failed (a trap, a timeout, the plugin's own batch error).
pub(crate) type PluginCall<'a> = dyn FnMut(&[Event]) -> Result<Vec<Outcome>, String> + 'a;

/// Outcomes for `batch`, isolating events that make `call` fail: `retries`
/// more attempts on the whole batch, then halving until each failing event
/// is alone (its error is the last one seen).
pub(crate) fn isolate(
    batch: &[Event],
    retries: u32,
    call: &mut PluginCall<'_>,
) -> Vec<Result<Outcome, String>> {
    let mut last_error = String::new();
    for _ in 0..=retries {
        match call(batch) {
            Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
            Err(e) => last_error = e,
        }
    }
    if batch.len() == 1 {
        return vec![Err(last_error)];
    }
    let (left, right) = batch.split_at(batch.len() / 2);
    let mut out = isolate(left, 0, call);
    out.extend(isolate(right, 0, call));
    out
}

/// An ordered chain of plugins for one stage.
pub struct Chain {
    stage: String,
    links: Vec<Link>,
    retries: u32,
}

impl Chain {
    /// A chain for `stage`; a failing batch is retried `retries` times.
    pub fn new(stage: &str, links: Vec<Link>, retries: u32) -> Self {
        Self {
            stage: stage.to_string(),
            links,
            retries,
        }
    }

    /// Names and versions, e.g. `filter@3f2a9c1b0d4e`.
    pub fn versions(&self) -> Vec<String> {
        self.links
            .iter()
            .map(|l| format!("{}@{}", l.plugin.name, l.label()))
            .collect()
    }

    /// The links, to swap plugin versions between batches.
    pub fn links_mut(&mut self) -> &mut [Link] {
        &mut self.links
    }

    /// Run every plugin in order over `events`, whose values must be valid
    /// JSON (what plugins are promised; the stage decodes them from Avro).
    pub fn run(&mut self, events: Vec<Event>) -> ChainOutput {
        run_steps(&self.stage, &mut self.links, self.retries, events)
    }
}

/// Run every step in order over `events`: each step gets the batch by
/// reference, failures are isolated per event, and each output item keeps
/// the index of the input it came from.
pub(crate) fn run_steps<S: Step>(
    stage: &str,
    steps: &mut [S],
    retries: u32,
    mut events: Vec<Event>,
) -> ChainOutput {
    // Events and their bookkeeping live in parallel vectors so each
    // plugin gets the batch by reference, without a copy per plugin.
    let mut meta: Vec<Meta> = (0..events.len())
        .map(|source| Meta {
            source,
            changed: false,
            changed_by: None,
        })
        .collect();
    let mut out = ChainOutput::default();
    for link in steps.iter_mut() {
        if events.is_empty() {
            break;
        }
        let name = link.name().to_string();
        let version = link.label().to_string();
        let identity = Arc::new((name.clone(), version.clone()));
        crate::metrics::stage_events(stage, &name, "in", events.len());
        let results = link.run_isolating(stage, &events, retries);
        let mut next_events = Vec::with_capacity(events.len());
        let mut next_meta = Vec::with_capacity(events.len());
        let mut counts = Counts::default();
        for ((event, m), result) in events.into_iter().zip(meta).zip(results) {
            // Every plugin may rely on getting valid JSON: a value that
            // is not fails its event, naming the plugin that returned it.
            match result.and_then(checked) {
                Ok(Outcome::Keep(edits)) if edits.is_empty() => {
                    counts.kept += 1;
                    next_events.push(event);
                    next_meta.push(m);
                }
                Ok(Outcome::Keep(edits)) => {
                    counts.modified += 1;
                    let mut event = event;
                    edits.into_iter().for_each(|e| event.apply(e));
                    next_events.push(event);
                    next_meta.push(m);
                }
                Ok(Outcome::Modify(value, edits)) => {
                    counts.modified += 1;
                    let mut event = event;
                    event.value = value;
                    edits.into_iter().for_each(|e| event.apply(e));
                    next_events.push(event);
                    next_meta.push(m.touched(&identity));
                }
                Ok(Outcome::Replace(new)) => {
                    counts.modified += 1;
                    next_events.push(new);
                    next_meta.push(m.touched(&identity));
                }
                Ok(Outcome::Drop) => counts.dropped += 1,
                Ok(Outcome::FanOut(created)) => {
                    counts.modified += 1;
                    let m = m.touched(&identity);
                    for mut new in created {
                        if new.timestamp_ms.is_none() {
                            new.timestamp_ms = event.timestamp_ms;
                        }
                        next_events.push(new);
                        next_meta.push(m.clone());
                    }
                }
                Ok(Outcome::Fail(error)) | Err(error) => {
                    counts.failed += 1;
                    out.failures.push(Failure {
                        source: m.source,
                        plugin: name.clone(),
                        version: version.clone(),
                        error,
                    });
                }
            }
        }
        counts.report(stage, &name);
        out.dropped += counts.dropped;
        if crate::tap::active() {
            tap_output(stage, &name, &next_events);
        }
        events = next_events;
        meta = next_meta;
    }
    out.items = events
        .into_iter()
        .zip(meta)
        .map(|(event, m)| Item {
            event,
            source: m.source,
            changed: m.changed,
            changed_by: m.changed_by,
        })
        .collect();
    out
}

/// Offer one plugin's output to the taps on it (only called while a tap is
/// active; sampled events are copied, none are held).
fn tap_output(stage: &str, plugin: &str, events: &[Event]) {
    let point = std::sync::Arc::new(crate::tap::Point::Plugin {
        stage: stage.to_string(),
        plugin: plugin.to_string(),
    });
    crate::tap::offer(&point, events.len(), |i| {
        let event = &events[i];
        let tapped = crate::tap::Tapped::new(
            point.clone(),
            event.key.as_deref(),
            crate::tap::json_of(&event.value),
        );
        match (&event.topic, &event.origin) {
            (_, Some(origin)) => tapped.at(&origin.topic, origin.partition, origin.offset),
            _ => tapped,
        }
    });
}

/// `outcome`, or why a value it returns is not JSON.
fn checked(outcome: Outcome) -> Result<Outcome, String> {
    let invalid = match &outcome {
        Outcome::Modify(value, _) => not_json(value),
        Outcome::Replace(event) => not_json(&event.value),
        Outcome::FanOut(events) => events.iter().find_map(|e| not_json(&e.value)),
        Outcome::Keep(_) | Outcome::Drop | Outcome::Fail(_) => None,
    };
    invalid.map_or(Ok(outcome), Err)
}

/// Why `value` is not JSON, if it is not. Plugins may rely on getting valid
/// JSON: the host decodes inputs from Avro and checks every value a plugin
/// returns before the next one sees it.
fn not_json(value: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(value)
        .err()
        .map(|e| format!("plugin output is not JSON: {e}"))
}

#[derive(Default)]
struct Counts {
    kept: usize,
    modified: usize,
    dropped: usize,
    failed: usize,
}

impl Counts {
    fn report(&self, stage: &str, plugin: &str) {
        crate::metrics::stage_events(stage, plugin, "kept", self.kept);
        crate::metrics::stage_events(stage, plugin, "modified", self.modified);
        crate::metrics::stage_events(stage, plugin, "dropped", self.dropped);
        crate::metrics::stage_events(stage, plugin, "failed", self.failed);
    }
}

#[derive(Clone)]
struct Meta {
    source: usize,
    changed: bool,
    changed_by: Option<Arc<(String, String)>>,
}

impl Meta {
    /// Its value changed, by this plugin (shared, not formatted per event).
    fn touched(mut self, identity: &Arc<(String, String)>) -> Self {
        self.changed = true;
        self.changed_by = Some(identity.clone());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Edit, Event};

    fn event(value: &str) -> Event {
        Event {
            key: None,
            value: bytes::Bytes::copy_from_slice(value.as_bytes()),
            headers: Vec::new(),
            timestamp_ms: None,
            origin: None,
            topic: None,
        }
    }

    #[test]
    fn values_a_plugin_returns_must_be_json() {
        let bad = "{\"a\":";
        for outcome in [
            Outcome::Modify(bytes::Bytes::from_static(b"{\"a\":"), Vec::new()),
            Outcome::Replace(event(bad)),
            Outcome::FanOut(vec![event("{}"), event(bad)]),
        ] {
            let error = checked(outcome).unwrap_err();
            assert!(error.starts_with("plugin output is not JSON: "), "{error}");
        }
        for outcome in [
            Outcome::Modify(bytes::Bytes::from_static(b"[1]"), Vec::new()),
            Outcome::Keep(Vec::new()),
            Outcome::Drop,
            Outcome::FanOut(vec![event("{}"), event("\"s\"")]),
        ] {
            assert_eq!(checked(outcome.clone()), Ok(outcome));
        }
    }

    /// A fake plugin: `f` maps each event to an outcome; a batch holding an
    /// event whose value contains `poison` fails as a whole (as a trap does).
    struct Fake {
        name: &'static str,
        poison: Option<&'static str>,
        calls: usize,
        f: fn(&Event) -> Outcome,
    }

    impl Fake {
        fn new(name: &'static str, f: fn(&Event) -> Outcome) -> Self {
            Self {
                name,
                poison: None,
                calls: 0,
                f,
            }
        }
    }

    impl Step for Fake {
        fn name(&self) -> &str {
            self.name
        }
        fn label(&self) -> &str {
            "v1"
        }
        fn run_isolating(
            &mut self,
            _stage: &str,
            batch: &[Event],
            retries: u32,
        ) -> Vec<Result<Outcome, String>> {
            let (poison, f) = (self.poison, self.f);
            let calls = &mut self.calls;
            isolate(batch, retries, &mut |part| {
                *calls += 1;
                let poisoned = poison.is_some_and(|p| {
                    part.iter()
                        .any(|e| String::from_utf8_lossy(&e.value).contains(p))
                });
                if poisoned {
                    Err("wasm trap: unreachable".into())
                } else {
                    Ok(part.iter().map(f).collect())
                }
            })
        }
    }

    fn numbered(n: usize) -> Vec<Event> {
        (0..n).map(|i| event(&format!("{{\"n\":{i}}}"))).collect()
    }

    fn n(e: &Event) -> usize {
        let v: serde_json::Value = serde_json::from_slice(&e.value).unwrap();
        v["n"].as_u64().unwrap() as usize
    }

    #[test]
    fn a_poisoned_event_is_isolated_and_the_rest_of_the_batch_goes_on() {
        let mut fake = Fake::new("enrich", |_| Outcome::Keep(Vec::new()));
        fake.poison = Some("\"n\":13}");
        let mut steps = [fake];
        let out = run_steps("s", &mut steps, 2, numbered(32));
        assert_eq!(out.items.len(), 31);
        assert!(out.items.iter().all(|i| n(&i.event) != 13));
        assert_eq!(
            out.failures,
            vec![Failure {
                source: 13,
                plugin: "enrich".into(),
                version: "v1".into(),
                error: "wasm trap: unreachable".into()
            }]
        );
        // 3 attempts on the whole batch, then one halving path of 5 levels
        // (2 calls each): the retries and the bisect are both bounded.
        assert_eq!(steps[0].calls, 3 + 2 * 5);
    }

    #[test]
    fn drops_fan_outs_and_failures_keep_their_source_index_through_the_chain() {
        fn first(e: &Event) -> Outcome {
            match n(e) % 4 {
                0 => Outcome::Drop,
                1 => Outcome::FanOut(vec![
                    event(&format!("{{\"n\":{}}}", n(e) * 100)),
                    event(&format!("{{\"n\":{}}}", n(e) * 100 + 1)),
                ]),
                2 => Outcome::Fail(format!("bad {}", n(e))),
                _ => Outcome::Modify(format!("{{\"n\":{},\"x\":1}}", n(e)).into(), Vec::new()),
            }
        }
        fn second(e: &Event) -> Outcome {
            if n(e) == 501 {
                Outcome::Fail("second refuses 501".into())
            } else {
                Outcome::Keep(vec![Edit::SetTopic("out".into())])
            }
        }
        let mut steps = [Fake::new("first", first), Fake::new("second", second)];
        let out = run_steps("s", &mut steps, 0, numbered(8));
        let items: Vec<(usize, usize, bool)> = out
            .items
            .iter()
            .map(|i| (i.source, n(&i.event), i.changed))
            .collect();
        assert_eq!(
            items,
            vec![
                (1, 100, true),
                (1, 101, true),
                (3, 3, true),
                (5, 500, true),
                (7, 7, true)
            ]
        );
        assert!(
            out.items
                .iter()
                .all(|i| i.event.topic.as_deref() == Some("out"))
        );
        assert!(
            out.items
                .iter()
                .all(|i| i.changed_by.as_deref() == Some(&("first".to_string(), "v1".to_string())))
        );
        let failures: Vec<(usize, &str, &str)> = out
            .failures
            .iter()
            .map(|f| (f.source, f.plugin.as_str(), f.error.as_str()))
            .collect();
        assert_eq!(
            failures,
            vec![
                (2, "first", "bad 2"),
                (6, "first", "bad 6"),
                (5, "second", "second refuses 501")
            ]
        );
        assert_eq!(out.dropped, 2);
    }

    #[test]
    fn a_metadata_edit_leaves_the_value_unchanged_and_reusable() {
        let mut steps = [Fake::new("route", |_| {
            Outcome::Keep(vec![Edit::SetTopic("elsewhere".into())])
        })];
        let out = run_steps("s", &mut steps, 0, numbered(3));
        assert!(
            out.items
                .iter()
                .all(|i| !i.changed && i.changed_by.is_none())
        );
    }

    #[test]
    fn a_step_returning_invalid_json_fails_only_that_event_naming_the_step() {
        let mut steps = [
            Fake::new("broken", |e| {
                if n(e) == 1 {
                    Outcome::Modify(bytes::Bytes::from_static(b"{oops"), Vec::new())
                } else {
                    Outcome::Keep(Vec::new())
                }
            }),
            Fake::new("after", |_| Outcome::Keep(Vec::new())),
        ];
        let out = run_steps("s", &mut steps, 0, numbered(3));
        assert_eq!(out.items.len(), 2);
        assert_eq!(out.failures.len(), 1);
        assert_eq!(out.failures[0].source, 1);
        assert_eq!(out.failures[0].plugin, "broken");
        assert_eq!(
            steps[1].calls, 1,
            "the next step sees the surviving events once"
        );
    }
}
