//! Avro schemas and the wire framing of every Kafka record Sluice writes.
//!
//! **Framing.** Record values use Avro *single-object encoding* (Avro spec
//! 1.11, "Single object encoding"): the two marker bytes `C3 01`, the 8-byte
//! little-endian CRC-64-AVRO (Rabin) fingerprint of the writer schema's
//! canonical form, then the Avro binary datum. A reader that has the same
//! `.avsc` files (the `schemas/` directory) looks the fingerprint up in its
//! [`SchemaSet`] and decodes without guessing; an unknown fingerprint is an
//! error, never a silent mis-decode.
//!
//! **JSON mapping.** Producers POST, and plugins see, the *natural* JSON form
//! of a record: records are objects, enums are their symbol, maps are
//! objects, unions are the plain value (`null` or the value, not Avro's
//! `{"string": ...}` wrapping), `timestamp-millis` is epoch milliseconds (an
//! RFC 3339 string is accepted on input), bytes are strings. Missing fields
//! with a default take the default.

mod from_json;
mod guard;
mod json;
mod json_doc;
mod to_json;

pub use from_json::Input;
pub use json::{FieldError, avro_to_json, json_to_avro};
pub use json_doc::{JsonDoc, JsonKind, JsonNode};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::types::Value;

/// The two marker bytes that open every single-object-encoded value.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];
/// Length of the framing header: marker plus fingerprint.
pub const HEADER_LEN: usize = 10;

/// A parsed schema with its fingerprint and where it came from.
#[derive(Debug)]
pub struct LoadedSchema {
    /// The parsed schema.
    pub schema: Schema,
    /// CRC-64-AVRO fingerprint of the canonical form, as written in frames.
    pub fingerprint: [u8; 8],
    /// The file it was read from.
    pub path: PathBuf,
    /// Named types of the schema, to resolve references while transcoding.
    names: HashMap<Name, Schema>,
}

impl LoadedSchema {
    /// Parse a schema file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read schema file {}", path.display()))?;
        Self::from_str(&text, path)
    }

    /// Parse schema text; `path` names it in messages.
    pub fn from_str(text: &str, path: &Path) -> anyhow::Result<Self> {
        let schema = Schema::parse_str(text)
            .with_context(|| format!("{} is not a valid Avro schema", path.display()))?;
        if !matches!(schema, Schema::Record(_)) {
            bail!(
                "{}: the top-level schema must be a record (events are objects)",
                path.display()
            );
        }
        let names = ResolvedSchema::try_from(&schema)
            .with_context(|| format!("{}: cannot resolve named types", path.display()))?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        let bytes = schema.fingerprint::<Rabin>().bytes;
        let fingerprint: [u8; 8] = bytes
            .as_slice()
            .try_into()
            .context("Rabin fingerprint is not 8 bytes")?;
        Ok(Self {
            schema,
            fingerprint,
            path: path.to_path_buf(),
            names,
        })
    }

    /// Encode a datum with this schema and frame it.
    pub fn encode(&self, value: Value) -> anyhow::Result<Vec<u8>> {
        let datum = apache_avro::to_avro_datum(&self.schema, value)
            .context("value does not match its schema")?;
        let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&datum);
        Ok(out)
    }

    /// Validate natural JSON against the schema and encode it framed.
    /// Same answers as [`json_to_avro`] then [`LoadedSchema::encode`], in one
    /// pass without an Avro value.
    pub fn encode_json(&self, json: &serde_json::Value) -> Result<Vec<u8>, FieldError> {
        self.encode_input(json)
    }

    /// Validate a JSON document (request bytes) against the schema and
    /// encode it framed, without building a tree. Unreadable JSON is a
    /// `FieldError` on the event as a whole: `invalid JSON: ...` with
    /// serde_json's message.
    pub fn encode_json_bytes(&self, json: &[u8]) -> Result<Vec<u8>, FieldError> {
        let doc = JsonDoc::parse(json).map_err(|e| FieldError {
            field: String::new(),
            reason: format!("invalid JSON: {e}"),
        })?;
        self.encode_input(doc.root())
    }

    /// Validate and encode (framed) one value of a parsed [`JsonDoc`], such
    /// as one event of a batch.
    pub fn encode_node(&self, node: JsonNode<'_>) -> Result<Vec<u8>, FieldError> {
        self.encode_input(node)
    }

    /// Validate `json` and append its framed record to `out` (for callers
    /// that pack many records into one buffer). On error `out` is left as it
    /// was.
    pub fn append_encoded<'a, I: Input<'a>>(
        &self,
        json: I,
        out: &mut Vec<u8>,
    ) -> Result<(), FieldError> {
        let mark = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.fingerprint);
        from_json::encode(&self.schema, json, out).inspect_err(|_| out.truncate(mark))
    }

    fn encode_input<'a, I: Input<'a>>(&self, json: I) -> Result<Vec<u8>, FieldError> {
        let mut out = Vec::with_capacity(HEADER_LEN + 256);
        self.append_encoded(json, &mut out)?;
        Ok(out)
    }

    /// Natural JSON bytes of an unframed datum written with this schema, in
    /// one pass: the same bytes as `serde_json::to_vec(&avro_to_json(
    /// &self.decode_datum(datum)?)?)`, and an error wherever that fails.
    pub fn datum_to_json(&self, datum: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(datum.len() * 2 + 64);
        self.append_datum_json(datum, &mut out)?;
        Ok(out)
    }

    /// Append the natural JSON of an unframed datum to `out` (for writers
    /// that build a line around it). On error `out` is left as it was.
    pub fn append_datum_json(&self, datum: &[u8], out: &mut Vec<u8>) -> anyhow::Result<()> {
        let mark = out.len();
        to_json::datum_to_json(&self.schema, &self.names, datum, out)
            .map_err(|e| {
                out.truncate(mark);
                anyhow::Error::msg(e)
            })
            .context("bytes are not a valid Avro datum for this schema")
    }

    /// Check that an unframed datum is a complete, valid value of this
    /// schema with a natural JSON form, without keeping anything.
    pub fn validate_datum(&self, datum: &[u8]) -> anyhow::Result<()> {
        self.datum_to_json(datum).map(drop)
    }

    /// Decode an unframed datum written with this schema. Truncated data is
    /// an error: apache-avro decodes a string, bytes or union index cut off
    /// by the end of input as `null`, so reads past the end are watched here.
    pub fn decode_datum(&self, datum: &[u8]) -> anyhow::Result<Value> {
        guard::check(&self.schema, datum)
            .map_err(anyhow::Error::msg)
            .context("bytes are not a valid Avro datum for this schema")?;
        let mut reader = EofGuard {
            rest: datum,
            past_end: false,
        };
        let value = apache_avro::from_avro_datum(&self.schema, &mut reader, None)
            .context("bytes are not a valid Avro datum for this schema")?;
        if reader.past_end {
            bail!("truncated Avro datum: the bytes end inside a value");
        }
        if !reader.rest.is_empty() {
            bail!("{} trailing bytes after the Avro datum", reader.rest.len());
        }
        Ok(value)
    }
}

/// A reader over a byte slice that remembers any attempt to read past its
/// end (which apache-avro would otherwise turn into `null` values).
struct EofGuard<'a> {
    rest: &'a [u8],
    past_end: bool,
}

impl std::io::Read for EofGuard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.rest.is_empty() && !buf.is_empty() {
            self.past_end = true;
        }
        self.rest.read(buf)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        if buf.len() > self.rest.len() {
            self.past_end = true;
        }
        self.rest.read_exact(buf)
    }
}

/// Split a framed value into fingerprint and datum.
pub fn split_frame(bytes: &[u8]) -> anyhow::Result<([u8; 8], &[u8])> {
    if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
        bail!("value is not Avro single-object encoded (missing C3 01 marker)");
    }
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&bytes[2..HEADER_LEN]);
    Ok((fingerprint, &bytes[HEADER_LEN..]))
}

/// Every schema a host knows, by fingerprint, to decode framed records.
#[derive(Debug, Default, Clone)]
pub struct SchemaSet {
    by_fingerprint: HashMap<[u8; 8], Arc<LoadedSchema>>,
    by_path: HashMap<PathBuf, Arc<LoadedSchema>>,
}

impl SchemaSet {
    /// Load a schema file (once; later calls return the same schema).
    pub fn load(&mut self, path: &Path) -> anyhow::Result<Arc<LoadedSchema>> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some(found) = self.by_path.get(&key) {
            return Ok(found.clone());
        }
        let loaded = Arc::new(LoadedSchema::from_file(path)?);
        self.by_fingerprint
            .insert(loaded.fingerprint, loaded.clone());
        self.by_path.insert(key, loaded.clone());
        Ok(loaded)
    }

    /// Load every `.avsc` file in a directory.
    pub fn load_dir(&mut self, dir: &Path) -> anyhow::Result<()> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list schema directory {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "avsc") {
                self.load(&path)?;
            }
        }
        Ok(())
    }

    /// Every schema in the set, in no particular order.
    pub fn schemas(&self) -> impl Iterator<Item = &Arc<LoadedSchema>> {
        self.by_fingerprint.values()
    }

    /// The schema with this fingerprint.
    pub fn get(&self, fingerprint: &[u8; 8]) -> Option<&Arc<LoadedSchema>> {
        self.by_fingerprint.get(fingerprint)
    }

    /// Decode a framed record value into its schema and Avro value.
    pub fn decode(&self, bytes: &[u8]) -> anyhow::Result<(Arc<LoadedSchema>, Value)> {
        let (fingerprint, datum) = split_frame(bytes)?;
        let schema = self.get(&fingerprint).with_context(|| {
            format!(
                "no known schema has fingerprint {}; add its .avsc to the schema set",
                hex(&fingerprint)
            )
        })?;
        Ok((schema.clone(), schema.decode_datum(datum)?))
    }

    /// Decode a framed record value to its schema and natural JSON bytes in
    /// one pass (no Avro or JSON tree; see [`LoadedSchema::datum_to_json`]).
    pub fn decode_to_json(&self, framed: &[u8]) -> anyhow::Result<(Arc<LoadedSchema>, Vec<u8>)> {
        let (schema, datum) = self.resolve(framed)?;
        let json = schema.datum_to_json(datum)?;
        Ok((schema.clone(), json))
    }

    /// Append the natural JSON of a framed record value to `out`; the
    /// record's schema is returned. On error `out` is left as it was.
    pub fn append_json(
        &self,
        framed: &[u8],
        out: &mut Vec<u8>,
    ) -> anyhow::Result<&Arc<LoadedSchema>> {
        let (schema, datum) = self.resolve(framed)?;
        schema.append_datum_json(datum, out)?;
        Ok(schema)
    }

    /// The schema of a framed value and its datum.
    pub fn resolve<'b>(&self, framed: &'b [u8]) -> anyhow::Result<(&Arc<LoadedSchema>, &'b [u8])> {
        let (fingerprint, datum) = split_frame(framed)?;
        let schema = self.get(&fingerprint).with_context(|| {
            format!(
                "no known schema has fingerprint {}; add its .avsc to the schema set",
                hex(&fingerprint)
            )
        })?;
        Ok((schema, datum))
    }

    /// Decode a framed record value straight to natural JSON.
    pub fn decode_json(&self, bytes: &[u8]) -> anyhow::Result<serde_json::Value> {
        let (_, value) = self.decode(bytes)?;
        avro_to_json(&value)
    }
}

/// Lower-case hex of bytes, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod bench_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transcode_cases;
#[cfg(test)]
mod transcode_tests;
