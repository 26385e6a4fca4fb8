//! The two wire framings of a record value, and schema identities.
//!
//! * **Single-object** (Avro specification, "Single object encoding"):
//!   `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer
//!   schema's Parsing Canonical Form, the datum.
//! * **Confluent** (the Schema Registry wire format): `00`, the writer
//!   schema's registry id as 4 big-endian bytes, the datum.
//!
//! A reader tells them apart by the first byte.
//!
//! **Fingerprints.** apache-avro 0.21's canonical form keeps a primitive that
//! carried a logical type as an object (`{"type":"long"}` for a
//! `timestamp-millis` field) where the specification's Parsing Canonical
//! Form has the bare name (`"long"`), so its fingerprint differs from Java
//! Avro's (and every other implementation's). [`canonical_form`] collapses
//! those, giving the standard form; records written by earlier Sluice
//! versions carry the old fingerprint ([`legacy_fingerprint`]), which readers
//! keep accepting.

use anyhow::{Context, bail};
use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use serde_json::Value as Json;

/// The two marker bytes that open every single-object-encoded value.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];
/// Length of the single-object header: marker plus fingerprint.
pub const HEADER_LEN: usize = 10;
/// The byte that opens a Confluent-framed value.
pub const CONFLUENT_MAGIC: u8 = 0;
/// Length of the Confluent header: magic byte plus schema id.
pub const CONFLUENT_HEADER_LEN: usize = 5;

/// A framed value's header, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Single-object: the writer schema's fingerprint.
    SingleObject([u8; 8]),
    /// Confluent: the writer schema's registry id.
    Confluent(u32),
}

/// Split a framed value into its header and datum, by its first byte.
pub fn split(bytes: &[u8]) -> anyhow::Result<(Frame, &[u8])> {
    match bytes.first() {
        Some(0xC3) if bytes.len() >= HEADER_LEN && bytes[1] == MAGIC[1] => {
            let mut fingerprint = [0u8; 8];
            fingerprint.copy_from_slice(&bytes[2..HEADER_LEN]);
            Ok((Frame::SingleObject(fingerprint), &bytes[HEADER_LEN..]))
        }
        Some(&CONFLUENT_MAGIC) if bytes.len() >= CONFLUENT_HEADER_LEN => {
            let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
            Ok((Frame::Confluent(id), &bytes[CONFLUENT_HEADER_LEN..]))
        }
        _ => bail!(
            "value is neither Avro single-object encoded (C3 01 marker) nor in the Confluent \
             wire format (magic byte 0 and a schema id)"
        ),
    }
}

/// The Parsing Canonical Form of a schema (Avro specification, "Parsing
/// Canonical Form for Schemas").
pub fn canonical_form(schema: &Schema) -> anyhow::Result<String> {
    let library: Json = serde_json::from_str(&schema.canonical_form())
        .context("apache-avro's canonical form is not JSON")?;
    Ok(serde_json::to_string(&collapse(library))?)
}

/// `{"type":"long"}` (what is left of a primitive with a logical type once
/// its attributes are stripped) becomes `"long"`, at any depth.
fn collapse(value: Json) -> Json {
    match value {
        Json::Object(map) => {
            if map.len() == 1
                && let Some(Json::String(name)) = map.get("type")
                && is_primitive(name)
            {
                return Json::String(name.clone());
            }
            Json::Object(map.into_iter().map(|(k, v)| (k, collapse(v))).collect())
        }
        Json::Array(items) => Json::Array(items.into_iter().map(collapse).collect()),
        other => other,
    }
}

fn is_primitive(name: &str) -> bool {
    matches!(
        name,
        "null" | "boolean" | "int" | "long" | "float" | "double" | "bytes" | "string"
    )
}

/// CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form, as the
/// 8 little-endian bytes single-object frames carry.
pub fn fingerprint(schema: &Schema) -> anyhow::Result<[u8; 8]> {
    // sha2 re-exports the `digest` 0.10 trait that apache-avro's Rabin implements.
    use sha2::Digest;
    let form = canonical_form(schema)?;
    let mut rabin = Rabin::new();
    rabin.update(form.as_bytes());
    let bytes = rabin.finalize();
    bytes
        .as_slice()
        .try_into()
        .context("Rabin fingerprint is not 8 bytes")
}

/// The fingerprint Sluice wrote before it used the standard canonical form
/// (apache-avro 0.21's own), accepted on read for existing data.
pub fn legacy_fingerprint(schema: &Schema) -> anyhow::Result<[u8; 8]> {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    bytes
        .as_slice()
        .try_into()
        .context("Rabin fingerprint is not 8 bytes")
}

/// The id the built-in schema registry gives a schema: the top 31 bits of
/// its fingerprint (read big-endian), so every host derives the same id for
/// the same schema, across restarts, with nothing stored. 0 is avoided.
pub fn builtin_id(fingerprint: &[u8; 8]) -> u32 {
    let id = u32::from_be_bytes([
        fingerprint[0],
        fingerprint[1],
        fingerprint[2],
        fingerprint[3],
    ]) >> 1;
    id.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::hex;

    fn telemetry() -> Schema {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schemas/telemetry_event.avsc");
        Schema::parse_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_fingerprint_is_java_avros() {
        // org.apache.avro.SchemaNormalization.parsingFingerprint64 of
        // schemas/telemetry_event.avsc, as the bytes of a single-object
        // frame (little-endian).
        let schema = telemetry();
        assert_eq!(hex(&fingerprint(&schema).unwrap()), "992cbb51b7198644");
        // What Sluice wrote before: apache-avro 0.21's canonical form.
        assert_eq!(
            hex(&legacy_fingerprint(&schema).unwrap()),
            "fc76b44391bb6801"
        );
        let form = canonical_form(&schema).unwrap();
        assert!(
            form.contains(r#"{"name":"occurred_at","type":"long"}"#),
            "{form}"
        );
    }

    #[test]
    fn the_spec_examples_fingerprint_like_java() {
        // Avro's own test vectors (share/test/data/schema-tests.txt):
        // "int" → 0x7275d51a3f395c8f as a long, little-endian bytes.
        let int = Schema::parse_str(r#"{"type":"int","logicalType":"date"}"#).unwrap();
        assert_eq!(
            fingerprint(&int).unwrap(),
            0x7275_d51a_3f39_5c8f_u64.to_le_bytes()
        );
    }

    #[test]
    fn frames_are_told_apart_by_their_first_byte() {
        let single = [0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 42];
        assert_eq!(
            split(&single).unwrap(),
            (Frame::SingleObject([1, 2, 3, 4, 5, 6, 7, 8]), &[42u8][..])
        );
        let confluent = [0, 0, 0, 1, 2, 42, 43];
        assert_eq!(
            split(&confluent).unwrap(),
            (Frame::Confluent(258), &[42u8, 43][..])
        );
        assert!(split(&[0, 0, 1]).is_err());
        assert!(split(&[0xC3, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(split(b"{\"json\":1}").is_err());
        assert!(split(&[]).is_err());
    }

    #[test]
    fn a_set_reads_both_framings_and_the_old_fingerprint() {
        use crate::config::Framing;
        use crate::schema::SchemaSet;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schemas/telemetry_event.avsc");
        let mut set = SchemaSet::default();
        let schema = set.load(&path).unwrap();
        let event = serde_json::json!({
            "event_id": "e", "type": "t", "source": "s", "entity_id": "u",
            "occurred_at": 5, "severity": "WARN", "attributes": {"a": "b"}, "trace_id": null
        });
        let single = schema.encode_json(&event).unwrap();
        assert_eq!(&single[2..10], &schema.fingerprint);
        let datum = &single[HEADER_LEN..];
        let mut confluent = schema.header(Framing::Confluent).to_vec();
        confluent.extend_from_slice(datum);
        assert_eq!(confluent[0], 0);
        assert_eq!(&confluent[1..5], &schema.id.to_be_bytes());
        let mut legacy = MAGIC.to_vec();
        legacy.extend_from_slice(&schema.legacy_fingerprint);
        legacy.extend_from_slice(datum);
        for framed in [&single, &confluent, &legacy] {
            assert_eq!(set.decode_json(framed).unwrap(), event);
            assert!(SchemaSet::written_with(framed, &schema));
        }
        let mut unknown = confluent.clone();
        unknown[4] ^= 1;
        let error = set.decode_json(&unknown).unwrap_err().to_string();
        assert!(error.contains("registry id"), "{error}");
    }

    #[test]
    fn builtin_ids_are_stable_and_positive() {
        let fp = fingerprint(&telemetry()).unwrap();
        assert_eq!(builtin_id(&fp), builtin_id(&fp));
        assert!(builtin_id(&fp) > 0 && builtin_id(&fp) <= i32::MAX as u32);
        assert_eq!(builtin_id(&[0; 8]), 1);
    }
}
