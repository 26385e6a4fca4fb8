//! Host-side bindings generated from `wit/sluice.wit`, one module per world.
//! Both worlds share the `types` and `host` interfaces.

/// The `transform` world.
pub mod transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
        additional_derives: [PartialEq],
    });
}

/// The `sink` world; its shared interfaces are the transform world's types.
pub mod sink {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sink",
        additional_derives: [PartialEq],
        with: {
            "sluice:plugin/types": super::transform::sluice::plugin::types,
            "sluice:plugin/host": super::transform::sluice::plugin::host,
        },
    });
}

pub use sink::sluice::plugin::sql::{ColumnDef, SqlType, SqlValue, TableWrite};
pub use transform::sluice::plugin::types::{Event, Header, Level, Origin, Outcome};
