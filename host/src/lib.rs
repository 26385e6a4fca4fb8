//! The Sluice host library: everything the `sluice` binary runs, split one
//! module per concern so tests and benchmarks can use the parts directly.

pub mod admin;
pub mod api;
pub mod auth;
pub mod command;
pub mod config;
pub mod dlq;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod pipeline_test;
pub mod plugins;
pub mod preview;
pub mod quickstart;
pub mod replay;
pub mod run;
pub mod runtime;
pub mod schema;
pub mod sink;
pub mod stage;
pub mod stats;
pub mod tail;
pub mod tap;
pub mod top;
pub mod validate;

#[cfg(test)]
mod layering;
