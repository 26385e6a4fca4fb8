//! # sluice-sdk
//!
//! The SDK for writing Sluice plugins in Rust. A plugin is a WebAssembly
//! component built for `wasm32-wasip2` that exports one world of
//! `wit/sluice.wit`:
//!
//! * a **transform** (`sluice:plugin/transformer@0.2.0`, world `transform`):
//!   implement [`Transform`] and use [`export_transform!`];
//! * a **sink** (`sluice:plugin/sinker@0.2.0`, world `sink`): implement
//!   [`Sink`], use [`export_sink!`], and write through [`sql`] and [`files`]
//!   (see [Sinks](#sinks) below).
//!
//! This crate hides the generated bindings behind those small traits.
//!
//! The host hands a plugin batches of events whose value is UTF-8 JSON and
//! expects exactly one [`Outcome`] per event, in input order. A batch arrives
//! as a few flat buffers; the SDK gives your code [`Event`] views that borrow
//! from them (nothing is copied per event), creates one plugin instance with
//! [`Transform::init`] and calls [`Transform::process`] for every event.
//!
//! Parsing JSON is the cost that matters in a chain of plugins, so read only
//! what you need:
//!
//! * [`json::find`] and [`json::Edits`] look up and change fields on the raw
//!   bytes: no tree, and everything you did not touch is copied verbatim.
//! * [`Event::json`] deserializes into your own (borrowed, partial) serde type;
//!   serde skips the fields the type does not name.
//! * [`Event::select`] extracts only the values at a few dotted paths chosen
//!   at run time (see [`Selector`]).
//! * Return [`Outcome::keep`] when the event does not change: the host reuses
//!   its own copy and nothing crosses back. [`Outcome::route`] (a topic) and
//!   header edits ([`Change::with_header`]) leave the value alone too, so the
//!   host does not re-encode it.
//! * A [`serde_json::Value`] round trip ([`Event::value_json`], [`set_path`],
//!   [`Event::with_value_json`]) is the simple way to make a big change.
//!
//! ## Example
//!
//! A plugin that marks error events with `attributes.alert = "true"` and
//! drops debug events:
//!
//! ```
//! use serde::Deserialize;
//! use sluice_sdk::{Config, Event, Outcome, Transform};
//!
//! /// Plugin configuration, from the stage's `[stage.config.NAME]` TOML table.
//! #[derive(Deserialize)]
//! struct Settings {
//!     /// Attribute to set on error events.
//!     #[serde(default = "default_flag")]
//!     flag: String,
//! }
//!
//! fn default_flag() -> String {
//!     "alert".to_string()
//! }
//!
//! /// The only fields this plugin reads; serde skips everything else.
//! #[derive(Deserialize)]
//! struct Head<'a> {
//!     #[serde(borrow)]
//!     severity: &'a str,
//! }
//!
//! struct Alert {
//!     flag_path: String,
//! }
//!
//! impl Transform for Alert {
//!     fn init(config: Config) -> Result<Self, String> {
//!         let settings: Settings = config.parse()?;
//!         Ok(Alert { flag_path: format!("attributes.{}", settings.flag) })
//!     }
//!
//!     fn process(&mut self, event: &Event<'_>) -> Outcome {
//!         let head: Head = match event.json() {
//!             Ok(head) => head,
//!             Err(err) => return Outcome::fail(format!("bad event: {err}")),
//!         };
//!         match head.severity {
//!             "DEBUG" => Outcome::drop(),
//!             "ERROR" | "FATAL" => {
//!                 let mut value = match event.value_json() {
//!                     Ok(value) => value,
//!                     Err(err) => return Outcome::fail(format!("bad event: {err}")),
//!                 };
//!                 if let Err(err) = sluice_sdk::set_path(&mut value, &self.flag_path, "true".into()) {
//!                     return Outcome::fail(err.to_string());
//!                 }
//!                 sluice_sdk::counter_add("alerts", 1);
//!                 Outcome::modify(event.with_value_json(&value))
//!             }
//!             _ => Outcome::keep(),
//!         }
//!     }
//! }
//!
//! // Exports the component's `sluice:plugin/transformer` interface.
//! sluice_sdk::export_transform!(Alert);
//!
//! // The same logic runs natively in unit tests (`cargo test`):
//! let events = vec![
//!     Event::new(r#"{"severity":"ERROR","attributes":{}}"#),
//!     Event::new(r#"{"severity":"DEBUG","attributes":{}}"#),
//!     Event::new(r#"{"severity":"INFO","attributes":{}}"#),
//! ];
//! let outcomes = sluice_sdk::testing::run::<Alert>("{}", events).unwrap();
//! assert_eq!(
//!     outcomes[0].modified_value(),
//!     Some(r#"{"attributes":{"alert":"true"},"severity":"ERROR"}"#)
//! );
//! assert_eq!(outcomes[1], Outcome::drop());
//! assert_eq!(outcomes[2], Outcome::keep());
//! ```
//!
//! Build the component with `cargo build --target wasm32-wasip2 --release`;
//! the crate must be a `cdylib` (add `rlib` too to keep native unit tests).
//!
//! ## Sinks
//!
//! A sink gets each batch once, after the stage's chain, and writes it out
//! through capabilities the operator granted to the stage: named database
//! connections ([`sql::write`], [`sql::create_table`]) and one directory
//! ([`files::append`], [`files::size`], [`files::rename`]). The host commits
//! the batch's offsets only after [`Sink::write`] returned `Ok`; an `Err`
//! retries the batch and then dead-letters the events that keep failing.
//! Delivery is at-least-once, so write idempotently: [`sql::write`] upserts on
//! its key columns, and one [`files::append`] per batch writes all of it or
//! nothing of it.
//!
//! A sink that stores each event's JSON value in a table keyed by `event_id`:
//!
//! ```
//! use serde::Deserialize;
//! use sluice_sdk::sql::{self, SqlValue, TableWrite};
//! use sluice_sdk::{Config, Event, Sink};
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Settings {
//!     connection: String,
//! }
//!
//! #[derive(Deserialize)]
//! struct Head<'a> {
//!     #[serde(borrow)]
//!     event_id: std::borrow::Cow<'a, str>,
//! }
//!
//! struct Archive {
//!     connection: String,
//! }
//!
//! impl Sink for Archive {
//!     fn init(config: Config) -> Result<Self, String> {
//!         let settings: Settings = config.parse()?;
//!         Ok(Archive { connection: settings.connection })
//!     }
//!
//!     fn write(&mut self, batch: &[Event<'_>]) -> Result<(), String> {
//!         let mut rows = Vec::with_capacity(batch.len());
//!         for (index, event) in batch.iter().enumerate() {
//!             let head: Head = event
//!                 .json()
//!                 .map_err(|err| format!("event {index}: {err}"))?;
//!             let value = event.value_str().map_err(|err| format!("event {index}: {err}"))?;
//!             rows.push(vec![
//!                 SqlValue::Text(head.event_id.into_owned()),
//!                 SqlValue::Json(value.to_string()),
//!             ]);
//!         }
//!         let written = sql::write(&TableWrite {
//!             connection: self.connection.clone(),
//!             table: "archive".into(),
//!             columns: vec!["event_id".into(), "body".into()],
//!             key_columns: vec!["event_id".into()],
//!             rows,
//!         })?;
//!         sluice_sdk::counter_add("rows_written", written);
//!         Ok(())
//!     }
//! }
//!
//! // Exports the component's `sluice:plugin/sinker` interface.
//! sluice_sdk::export_sink!(Archive);
//!
//! // Natively, `sql` and `files` are in-memory stand-ins that `testing` reads:
//! sluice_sdk::testing::reset();
//! sluice_sdk::testing::run_sink::<Archive>(
//!     r#"{"connection":"warehouse"}"#,
//!     vec![Event::new(r#"{"event_id":"e-1"}"#)],
//! )
//! .unwrap();
//! let writes = sluice_sdk::testing::sql_writes();
//! assert_eq!(writes[0].rows[0][0], SqlValue::Text("e-1".into()));
//! assert_eq!(sluice_sdk::testing::counter("rows_written"), 1);
//! ```
//!
//! ## Sandbox
//!
//! The host links WASI with an empty context: `std` works, but there are no
//! files, environment variables, network, and no clocks or randomness to rely
//! on. A panic traps the instance; the SDK first logs the panic message through
//! the host's `log` import at error level.
//!
//! ## Native builds
//!
//! The host imports exist only inside a component. When the target is not
//! `wasm32`, [`log`] writes to stderr, [`counter_add`] records into a
//! thread-local table, [`sql`] records its requests and [`files`] works on an
//! in-memory directory, all of which [`testing`] can read (and make fail), so
//! plugin logic is testable with a plain `cargo test`.

#![warn(missing_docs)]

// Lets the generated bindings name this crate as `::sluice_sdk` both from
// inside it and from the plugin crates that expand `export_transform!`.
extern crate self as sluice_sdk;

mod config;
mod event;
pub mod files;
pub mod json;
pub mod log;
mod outcome;
mod path;
mod select;
mod sink;
pub mod sql;
pub mod testing;
#[doc(hidden)]
pub mod wire;

pub use config::Config;
pub use event::{Change, Event};
pub use outcome::Outcome;
pub use path::{FieldPath, PathError, get_path, get_path_mut, remove_path, set_path};
pub use select::{Selected, Selector};
/// Re-export of `serde_json`, the JSON library the SDK's helpers speak.
pub use serde_json;
/// Error returned when an event value is not the JSON a plugin expects.
pub use serde_json::Error as JsonError;
pub use sink::Sink;

/// The raw bindings generated from `wit/sluice.wit` (world `transform`).
///
/// Plugins normally use the friendly types ([`Event`], [`Outcome`],
/// [`Change`], [`NewEvent`], [`Header`], [`Origin`], [`Level`]) and
/// [`export_transform!`] instead.
#[doc(hidden)]
pub mod bindings {
    // Only the `transform` world is generated here; the `sink` world has its
    // own `generate!` in `sink_bindings`, reusing these types and the `host`
    // import. Each world's export macro carries that world's exports in its
    // own custom section, so a transform component never claims to export
    // `sinker` (and vice versa); unused imports are dropped by wit-component.
    wit_bindgen::generate!({
        // The contract, shared with the host: `wit/sluice.wit` at the repository
        // root (`wit/` here links to it; `cargo package` and `sluice plugin
        // new` copy the file).
        path: "wit/sluice.wit",
        world: "transform",
        pub_export_macro: true,
        export_macro_name: "export_transform_world",
        default_bindings_module: "::sluice_sdk::bindings",
        runtime_path: "::sluice_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
    });
}

/// The raw bindings generated from `wit/sluice.wit` (world `sink`).
///
/// They reuse the `types` and `host` bindings of [`bindings`], so [`Event`]
/// and [`log`] are the same in both worlds. Plugins normally use [`Sink`],
/// [`export_sink!`], [`sql`] and [`files`] instead.
#[doc(hidden)]
pub mod sink_bindings {
    wit_bindgen::generate!({
        path: "wit/sluice.wit",
        world: "sink",
        with: {
            "sluice:plugin/types@0.2.0": ::sluice_sdk::bindings::sluice::plugin::types,
            "sluice:plugin/host@0.2.0": ::sluice_sdk::bindings::sluice::plugin::host,
        },
        pub_export_macro: true,
        export_macro_name: "export_sink_world",
        default_bindings_module: "::sluice_sdk::sink_bindings",
        runtime_path: "::sluice_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
    });
}

/// An event a plugin creates ([`Outcome::fan_out`]): key, value, headers,
/// timestamp and topic override, owned. [`Event::to_new_event`] copies an
/// input event's.
pub type NewEvent = bindings::sluice::plugin::types::NewEvent;

/// A metadata edit ([`Change::with_topic`], [`Change::with_header`],
/// [`Change::without_header`]).
pub type Edit = bindings::sluice::plugin::types::Edit;

/// What a plugin reads beyond keys, values and timestamps
/// ([`Transform::needs`]): `Needs::HEADERS`, `Needs::ORIGINS`.
pub type Needs = bindings::sluice::plugin::types::Needs;

/// What `init` tells the host: needs and declared fields.
pub type PluginInfo = bindings::sluice::plugin::types::PluginInfo;

/// One Kafka record header (`key`, raw `value` bytes).
pub type Header = bindings::sluice::plugin::types::Header;

/// Where an event was read from in Kafka (`topic`, `partition`, `offset`).
pub type Origin = bindings::sluice::plugin::types::Origin;

/// Severity of a plugin log line (`Trace`, `Debug`, `Info`, `Warn`, `Error`).
pub type Level = bindings::sluice::plugin::types::Level;

/// A transform plugin: the rule logic the SDK exports as the component's
/// `sluice:plugin/transformer` interface via [`export_transform!`].
///
/// The SDK keeps exactly one instance per component instance, created by
/// [`Transform::init`] before the first batch.
pub trait Transform: Sized + 'static {
    /// Creates the plugin from its configuration: the stage's
    /// `[stage.config.NAME]` TOML table rendered as JSON (`{}` when absent).
    ///
    /// Return an error for invalid configuration; the host reports it and
    /// never runs the plugin.
    fn init(config: Config) -> Result<Self, String>;

    /// What the plugin reads beyond keys, values and timestamps. Headers and
    /// origins cross the boundary only when asked for here; the default asks
    /// for neither.
    fn needs(&self) -> Needs {
        Needs::empty()
    }

    /// The dotted paths this plugin reads or edits in every event. The host
    /// locates them in each value natively and hands the spans over with the
    /// batch, so [`Event::field`] reads them without scanning the JSON in the
    /// sandbox. The default declares none.
    fn fields(&self) -> Vec<FieldPath> {
        Vec::new()
    }

    /// Decides what happens to one event.
    fn process(&mut self, event: &Event<'_>) -> Outcome;

    /// Processes one batch; must return exactly one outcome per input event,
    /// in input order. An error fails the whole batch (the host retries it on
    /// a fresh instance, then dead-letters its events).
    ///
    /// The default calls [`Transform::process`] for each event.
    fn process_batch(&mut self, batch: &[Event<'_>]) -> Result<Vec<Outcome>, String> {
        Ok(batch.iter().map(|event| self.process(event)).collect())
    }
}

/// Adds `value` to the plugin counter `name`.
///
/// The host exports it as `sluice_plugin_counter_total{plugin, stage, name}`.
/// Outside `wasm32` this records into a thread-local table read by
/// [`testing::counter`].
pub fn counter_add(name: &str, value: u64) {
    #[cfg(target_arch = "wasm32")]
    bindings::sluice::plugin::host::counter_add(name, value);
    #[cfg(not(target_arch = "wasm32"))]
    testing::record_counter(name, value);
}

/// Exports a [`Transform`] implementation as the component's
/// `sluice:plugin/transformer@0.2.0` interface.
///
/// Use it exactly once per plugin crate, at module level:
///
/// ```ignore
/// sluice_sdk::export_transform!(MyRule);
/// ```
///
/// The crate must be built as a `cdylib` for `wasm32-wasip2`; on other
/// targets the macro still type-checks the plugin but exports nothing, so
/// plugin crates can also be `rlib`s tested natively. The macro keeps
/// the single plugin instance in a thread-local slot; `process` before a
/// successful `init` returns an error to the host.
#[macro_export]
macro_rules! export_transform {
    ($ty:ty) => {
        const _: () = {
            ::std::thread_local! {
                static __SLUICE_INSTANCE: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            #[allow(dead_code)] // only referenced by the wasm32 exports below
            struct __SluiceTransformExport;

            impl $crate::bindings::exports::sluice::plugin::transformer::Guest
                for __SluiceTransformExport
            {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<$crate::PluginInfo, ::std::string::String> {
                    $crate::__private::init::<$ty>(&__SLUICE_INSTANCE, config)
                }

                fn process(
                    batch: $crate::__private::WireBatch,
                ) -> ::core::result::Result<$crate::__private::WireOutcomes, ::std::string::String>
                {
                    $crate::__private::process::<$ty>(&__SLUICE_INSTANCE, batch)
                }
            }

            // The component exports exist only on wasm32: native linkers
            // reject their symbol names (`sluice:plugin/...#init`), and native
            // builds are for unit tests of the plugin logic.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::export_transform_world!(
                __SluiceTransformExport with_types_in $crate::bindings
            );
        };
    };
}

/// Glue used by [`export_transform!`] and [`export_sink!`]; not part of the
/// public API.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;
    use std::thread::LocalKey;

    use crate::{Config, Event, Outcome, PluginInfo, Sink, Transform};

    pub use wit_bindgen;

    /// A batch as the host lays it out.
    pub type WireBatch = crate::bindings::sluice::plugin::types::Batch;
    /// Outcomes as the host reads them.
    pub type WireOutcomes = crate::bindings::sluice::plugin::types::Outcomes;

    /// The slot holding the single plugin instance.
    pub type Slot<T> = LocalKey<RefCell<Option<T>>>;

    /// Implements `transformer.init`.
    pub fn init<T: Transform>(
        slot: &'static Slot<T>,
        config: String,
    ) -> Result<PluginInfo, String> {
        install_panic_hook();
        let config = Config::from_json_str(&config)?;
        let instance = T::init(config)?;
        let info = PluginInfo {
            needs: instance.needs(),
            fields: instance
                .fields()
                .iter()
                .map(|f| f.as_str().to_string())
                .collect(),
        };
        slot.with(|cell| *cell.borrow_mut() = Some(instance));
        Ok(info)
    }

    /// Implements `transformer.process`.
    pub fn process<T: Transform>(
        slot: &'static Slot<T>,
        batch: WireBatch,
    ) -> Result<WireOutcomes, String> {
        install_panic_hook();
        let events = crate::wire::events(&batch)?;
        slot.with(|cell| {
            let mut guard = cell.borrow_mut();
            let instance = guard.as_mut().ok_or_else(|| {
                "plugin is not initialised: init was not called or failed".to_string()
            })?;
            run_batch(instance, &events).map(crate::wire::encode)
        })
    }

    /// Runs one batch and checks the one-outcome-per-event contract.
    pub fn run_batch<T: Transform>(
        instance: &mut T,
        batch: &[Event<'_>],
    ) -> Result<Vec<Outcome>, String> {
        let expected = batch.len();
        let outcomes = instance.process_batch(batch)?;
        if outcomes.len() != expected {
            return Err(format!(
                "plugin returned {} outcomes for a batch of {expected} events",
                outcomes.len()
            ));
        }
        Ok(outcomes)
    }

    /// Implements `sinker.init`.
    pub fn sink_init<T: Sink>(
        slot: &'static Slot<T>,
        config: String,
    ) -> Result<PluginInfo, String> {
        install_panic_hook();
        let config = Config::from_json_str(&config)?;
        let instance = T::init(config)?;
        let info = PluginInfo {
            needs: instance.needs(),
            fields: Vec::new(),
        };
        slot.with(|cell| *cell.borrow_mut() = Some(instance));
        Ok(info)
    }

    /// Implements `sinker.write`.
    pub fn sink_write<T: Sink>(slot: &'static Slot<T>, batch: WireBatch) -> Result<(), String> {
        install_panic_hook();
        let events = crate::wire::events(&batch)?;
        slot.with(|cell| {
            let mut guard = cell.borrow_mut();
            let instance = guard.as_mut().ok_or_else(|| {
                "plugin is not initialised: init was not called or failed".to_string()
            })?;
            instance.write(&events)
        })
    }

    /// Routes panic messages to the host log (error level, one line:
    /// `plugin panicked at FILE:LINE:COL: MESSAGE`) before the instance traps.
    /// Installed once, on the first `init` or `process` call; wasm32 only.
    fn install_panic_hook() {
        #[cfg(target_arch = "wasm32")]
        {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                std::panic::set_hook(Box::new(|info| {
                    let message = info
                        .payload_as_str()
                        .unwrap_or("(non-string panic payload)");
                    let line = match info.location() {
                        Some(at) => format!(
                            "plugin panicked at {}:{}:{}: {message}",
                            at.file(),
                            at.line(),
                            at.column()
                        ),
                        None => format!("plugin panicked: {message}"),
                    };
                    crate::log::error(&line);
                }));
            });
        }
    }
}
