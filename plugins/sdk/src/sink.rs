//! The [`Sink`] trait: plugins that write batches out through capabilities
//! the host grants (a database connection, a directory).

use crate::{Config, Event};

/// A sink plugin: the write logic the SDK exports as the component's
/// `sluice:plugin/sinker` interface via [`export_sink!`](crate::export_sink).
///
/// The SDK keeps exactly one instance per component instance, created by
/// [`Sink::init`] before the first batch. A sink writes through
/// [`sql`](crate::sql) and [`files`](crate::files); the host grants each stage
/// only the connections and directory its operator configured, and refuses
/// anything else with an error string.
///
/// The host commits a batch's Kafka offsets only after [`Sink::write`]
/// returned `Ok`. An `Err` makes the host retry the batch on a fresh
/// instance, then split it until the events that fail are alone, and
/// dead-letter those with the error as reason. Delivery is therefore
/// at-least-once: write idempotently (an upsert on a key, or one append per
/// batch) so a re-delivered batch does no harm.
pub trait Sink: Sized + 'static {
    /// Creates the sink from its configuration: the stage's
    /// `[stage.config.NAME]` TOML table rendered as JSON (`{}` when absent).
    ///
    /// Validate everything here; an error rejects the plugin before any
    /// batch, and `sluice validate` reports it.
    fn init(config: Config) -> Result<Self, String>;

    /// Writes one batch. `Ok` means the whole batch is durably written;
    /// `Err` fails the whole batch with a readable reason (name the event
    /// index and what was wrong with it when one event is to blame).
    fn write(&mut self, batch: &[Event<'_>]) -> Result<(), String>;

    /// What the sink reads beyond keys, values and timestamps (headers,
    /// origins); the default asks for neither.
    fn needs(&self) -> crate::Needs {
        crate::Needs::empty()
    }
}

/// Exports a [`Sink`] implementation as the component's
/// `sluice:plugin/sinker@0.2.0` interface (world `sink`).
///
/// Use it exactly once per plugin crate, at module level, and not together
/// with [`export_transform!`](crate::export_transform):
///
/// ```ignore
/// sluice_sdk::export_sink!(MySink);
/// ```
///
/// The crate must be built as a `cdylib` for `wasm32-wasip2`; on other
/// targets the macro still type-checks the sink but exports nothing, so sink
/// crates can also be `rlib`s tested natively (see
/// [`testing::run_sink`](crate::testing::run_sink)). `write` before a
/// successful `init` returns an error to the host.
#[macro_export]
macro_rules! export_sink {
    ($ty:ty) => {
        const _: () = {
            ::std::thread_local! {
                static __SLUICE_SINK: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            #[allow(dead_code)] // only referenced by the wasm32 exports below
            struct __SluiceSinkExport;

            impl $crate::sink_bindings::exports::sluice::plugin::sinker::Guest
                for __SluiceSinkExport
            {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<$crate::PluginInfo, ::std::string::String> {
                    $crate::__private::sink_init::<$ty>(&__SLUICE_SINK, config)
                }

                fn write(
                    batch: $crate::__private::WireBatch,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::sink_write::<$ty>(&__SLUICE_SINK, batch)
                }
            }

            // As in `export_transform!`: component exports exist only on
            // wasm32.
            #[cfg(target_arch = "wasm32")]
            $crate::sink_bindings::export_sink_world!(
                __SluiceSinkExport with_types_in $crate::sink_bindings
            );
        };
    };
}
