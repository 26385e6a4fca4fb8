//! Fuzz target: request bodies through ingest's decoding and Avro validation
//! (`sluice::ingest::decode_request`). The first byte picks the route and
//! the content type; the rest is the body. Any panic is a finding.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sluice::schema::{LoadedSchema, SchemaSet};

static SCHEMAS: LazyLock<(SchemaSet, std::sync::Arc<LoadedSchema>)> = LazyLock::new(|| {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/telemetry_event.avsc");
    let mut set = SchemaSet::default();
    let schema = set.load(&path).expect("telemetry schema");
    (set, schema)
});

const CONTENT_TYPES: [&str; 4] = [
    "application/json",
    "application/x-ndjson",
    "avro/binary",
    "text/plain",
];

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let batch = selector & 1 == 1;
    let content_type = CONTENT_TYPES[usize::from(selector >> 1) % CONTENT_TYPES.len()];
    let (set, schema) = &*SCHEMAS;
    if let Ok(records) = sluice::ingest::decode_request(batch, content_type, body, set, schema) {
        // What ingest accepts must decode with the documented framing.
        for record in records {
            set.decode_json(&record).expect("an accepted event decodes");
        }
    }
});
