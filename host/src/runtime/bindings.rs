//! Host-side bindings generated from the WIT contract, one module per
//! contract version and world: `v2` from `wit/sluice.wit`
//! (`sluice:plugin@0.2.0`), `v1` from `wit/v0.1/sluice.wit`
//! (`sluice:plugin@0.1.0`), which the host keeps running unchanged. Within a
//! version both worlds share the `types` and `host` interfaces.

/// `sluice:plugin@0.2.0`, the current contract.
pub mod v2 {
    /// The `transform` world.
    pub mod transform {
        wasmtime::component::bindgen!({
            path: "../wit/sluice.wit",
            world: "transform",
        });
    }

    /// The `sink` world; its shared interfaces are the transform world's.
    pub mod sink {
        wasmtime::component::bindgen!({
            path: "../wit/sluice.wit",
            world: "sink",
            additional_derives: [PartialEq],
            with: {
                "sluice:plugin/types": super::transform::sluice::plugin::types,
                "sluice:plugin/host": super::transform::sluice::plugin::host,
            },
        });
    }
}

/// `sluice:plugin@0.1.0`: a batch as `list<event>`, outcomes as variants.
pub mod v1 {
    /// The `transform` world.
    pub mod transform {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1/sluice.wit",
            world: "transform",
        });
    }

    /// The `sink` world; its shared interfaces are the transform world's.
    pub mod sink {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1/sluice.wit",
            world: "sink",
            with: {
                "sluice:plugin/types": super::transform::sluice::plugin::types,
                "sluice:plugin/host": super::transform::sluice::plugin::host,
            },
        });
    }
}

pub use super::event::{Edit, Event, Header, Origin, Outcome};
pub use v2::sink::sluice::plugin::sql::{ColumnDef, SqlType, SqlValue, TableWrite};
pub use v2::transform::sluice::plugin::types::Level;
