//! Avro schemas and the wire framing of every Kafka record Sluice writes.
//!
//! **Framing.** Record values use Avro *single-object encoding* (Avro spec
//! 1.11, "Single object encoding"): the two marker bytes `C3 01`, the 8-byte
//! little-endian CRC-64-AVRO (Rabin) fingerprint of the writer schema's
//! Parsing Canonical Form, then the Avro binary datum; or, per route and
//! stage output, the Confluent Schema Registry wire format (`00`, a 4-byte
//! big-endian schema id, the datum). See [`framing`]. A reader that has the
//! same `.avsc` files (the `schemas/` directory) looks the fingerprint or id
//! up in its [`SchemaSet`] and decodes without guessing; an unknown one is
//! an error, never a silent mis-decode.
//!
//! **JSON mapping.** Producers POST, and plugins see, the *natural* JSON form
//! of a record: records are objects, enums are their symbol, maps are
//! objects, unions are the plain value (`null` or the value, not Avro's
//! `{"string": ...}` wrapping), `timestamp-millis` is epoch milliseconds (an
//! RFC 3339 string is accepted on input), bytes are strings. Missing fields
//! with a default take the default.

pub mod framing;
mod from_json;
mod guard;
mod json;
mod json_doc;
pub mod json_schema;
pub mod registry;
pub mod registry_api;
pub mod registry_client;
pub mod setup;
mod to_json;

pub use framing::{CONFLUENT_HEADER_LEN, Frame, HEADER_LEN, MAGIC};
pub use from_json::Input;
pub use json::{FieldError, avro_to_json, json_to_avro};
pub use json_doc::{JsonDoc, JsonKind, JsonNode};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use apache_avro::Schema;
use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::types::Value;

use crate::config::Framing;

/// A parsed schema with its fingerprint and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedSchema {
    /// The parsed schema.
    pub schema: Schema,
    /// CRC-64-AVRO fingerprint of the Parsing Canonical Form, as written in
    /// single-object frames.
    pub fingerprint: [u8; 8],
    /// The fingerprint earlier Sluice versions wrote (apache-avro's
    /// canonical form), still accepted on read.
    pub legacy_fingerprint: [u8; 8],
    /// The schema's id in the built-in registry (Confluent framing).
    pub id: u32,
    single_header: [u8; HEADER_LEN],
    confluent_header: [u8; CONFLUENT_HEADER_LEN],
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
        let fingerprint = framing::fingerprint(&schema)?;
        let legacy_fingerprint = framing::legacy_fingerprint(&schema)?;
        let id = framing::builtin_id(&fingerprint);
        let mut single_header = [0u8; HEADER_LEN];
        single_header[..2].copy_from_slice(&MAGIC);
        single_header[2..].copy_from_slice(&fingerprint);
        let mut confluent_header = [framing::CONFLUENT_MAGIC; CONFLUENT_HEADER_LEN];
        confluent_header[1..].copy_from_slice(&id.to_be_bytes());
        Ok(Self {
            schema,
            fingerprint,
            legacy_fingerprint,
            id,
            single_header,
            confluent_header,
            path: path.to_path_buf(),
            names,
        })
    }

    /// The header this schema's records carry in `framing`.
    pub fn header(&self, framing: Framing) -> &[u8] {
        match framing {
            Framing::SingleObject => &self.single_header,
            Framing::Confluent => &self.confluent_header,
        }
    }

    /// The schema's JSON text in Parsing Canonical Form (what the built-in
    /// registry serves).
    pub fn canonical_form(&self) -> String {
        framing::canonical_form(&self.schema).unwrap_or_else(|_| self.schema.canonical_form())
    }

    /// The record's full name, e.g. `dev.sluice.TelemetryEvent`.
    pub fn full_name(&self) -> Option<String> {
        match &self.schema {
            Schema::Record(record) => Some(record.name.fullname(None)),
            _ => None,
        }
    }

    /// Encode a datum with this schema and frame it.
    pub fn encode(&self, value: Value) -> anyhow::Result<Vec<u8>> {
        self.encode_framed(Framing::SingleObject, value)
    }

    /// Encode a datum with this schema and frame it in `framing`.
    pub fn encode_framed(&self, framing: Framing, value: Value) -> anyhow::Result<Vec<u8>> {
        let datum = apache_avro::to_avro_datum(&self.schema, value)
            .context("value does not match its schema")?;
        let header = self.header(framing);
        let mut out = Vec::with_capacity(header.len() + datum.len());
        out.extend_from_slice(header);
        out.extend_from_slice(&datum);
        Ok(out)
    }

    /// [`LoadedSchema::encode_json_bytes`] framed in `framing`.
    pub fn encode_json_bytes_framed(
        &self,
        framing: Framing,
        json: &[u8],
    ) -> Result<Vec<u8>, FieldError> {
        let doc = JsonDoc::parse(json).map_err(|e| FieldError {
            field: String::new(),
            reason: format!("invalid JSON: {e}"),
        })?;
        let mut out = Vec::with_capacity(HEADER_LEN + 256);
        self.append_encoded_framed(framing, doc.root(), &mut out)?;
        Ok(out)
    }

    /// [`LoadedSchema::encode_node`] framed in `framing`.
    pub fn encode_node_framed(
        &self,
        framing: Framing,
        node: JsonNode<'_>,
    ) -> Result<Vec<u8>, FieldError> {
        let mut out = Vec::with_capacity(HEADER_LEN + 256);
        self.append_encoded_framed(framing, node, &mut out)?;
        Ok(out)
    }

    /// [`LoadedSchema::append_encoded`] framed in `framing`.
    pub fn append_encoded_framed<'a, I: Input<'a>>(
        &self,
        framing: Framing,
        json: I,
        out: &mut Vec<u8>,
    ) -> Result<(), FieldError> {
        let mark = out.len();
        out.extend_from_slice(self.header(framing));
        from_json::encode(&self.schema, json, out).inspect_err(|_| out.truncate(mark))
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
        self.append_encoded_framed(Framing::SingleObject, json, out)
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

/// Split a single-object-framed value into fingerprint and datum.
pub fn split_frame(bytes: &[u8]) -> anyhow::Result<([u8; 8], &[u8])> {
    match framing::split(bytes) {
        Ok((Frame::SingleObject(fingerprint), datum)) => Ok((fingerprint, datum)),
        _ => bail!("value is not Avro single-object encoded (missing C3 01 marker)"),
    }
}

/// Every schema a host knows, by fingerprint and registry id, to decode
/// framed records.
#[derive(Debug, Default, Clone)]
pub struct SchemaSet {
    by_fingerprint: HashMap<[u8; 8], Arc<LoadedSchema>>,
    by_id: HashMap<u32, Arc<LoadedSchema>>,
    by_path: HashMap<PathBuf, Arc<LoadedSchema>>,
    /// How a stage that decodes with this set frames its output records.
    output_framing: Framing,
    /// Writer schemas known by registry id beyond the local files.
    registry: Option<Arc<registry::Registry>>,
    /// A stage's set: an unknown registry id during a registry outage holds
    /// the batch (waits) instead of failing the record.
    hold_on_registry_outage: bool,
    /// A stage's `reader_schema`: every record is read as this schema (Avro
    /// schema resolution from its writer schema). Without it a record is
    /// read as its own schema, and a registered writer schema that is not
    /// local as the local schema of the same full name.
    reader: Option<Arc<LoadedSchema>>,
}

impl SchemaSet {
    /// Load a schema file (once; later calls return the same schema).
    pub fn load(&mut self, path: &Path) -> anyhow::Result<Arc<LoadedSchema>> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some(found) = self.by_path.get(&key) {
            return Ok(found.clone());
        }
        let loaded = Arc::new(LoadedSchema::from_file(path)?);
        if let Some(same) = self.by_fingerprint.get(&loaded.fingerprint) {
            // The same schema in another file: one entry.
            let same = same.clone();
            self.by_path.insert(key, same.clone());
            return Ok(same);
        }
        if let Some(other) = self.by_id.get(&loaded.id) {
            bail!(
                "{} and {} get the same built-in registry id {}; rename a field or the record",
                loaded.path.display(),
                other.path.display(),
                loaded.id
            );
        }
        self.by_fingerprint
            .insert(loaded.fingerprint, loaded.clone());
        self.by_fingerprint
            .entry(loaded.legacy_fingerprint)
            .or_insert_with(|| loaded.clone());
        self.by_id.insert(loaded.id, loaded.clone());
        self.by_path.insert(key, loaded.clone());
        Ok(loaded)
    }

    /// The same set, for a stage whose output records are framed in
    /// `framing`. A stage's set waits out registry outages (the batch is
    /// held) when it meets an unknown schema id.
    pub fn with_output_framing(&self, framing: Framing) -> Self {
        let mut set = self.framed_as(framing);
        set.hold_on_registry_outage = true;
        set
    }

    /// The same set, framing the output records it describes in `framing`
    /// (a replay writing as a stage does), failing records whose schema id
    /// the registry cannot give.
    pub fn framed_as(&self, framing: Framing) -> Self {
        let mut set = self.clone();
        set.output_framing = framing;
        set
    }

    /// Read every record as `reader` (a stage's `reader_schema`), resolving
    /// it from the schema it was written with; `None` reads each record as
    /// its own schema.
    pub fn with_reader(mut self, reader: Option<Arc<LoadedSchema>>) -> Self {
        self.reader = reader;
        self
    }

    /// The schema every record is read as, if one is set.
    pub fn reader(&self) -> Option<&Arc<LoadedSchema>> {
        self.reader.as_ref()
    }

    /// The schema loaded from `path`, if it was.
    pub fn loaded(&self, path: &Path) -> Option<&Arc<LoadedSchema>> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        self.by_path.get(&key)
    }

    /// Drop the built-in registry ids: with an external registry only the
    /// ids it assigned ([`SchemaSet::assign_id`]) name local schemas.
    pub fn clear_ids(&mut self) {
        self.by_id.clear();
    }

    /// Give the local schema with `fingerprint` the registry id `id` (from an
    /// external registry), in every map of the set. The schema's `Arc`
    /// changes: load route schemas from this set afterwards.
    pub fn assign_id(&mut self, fingerprint: &[u8; 8], id: u32) -> anyhow::Result<()> {
        let old = self
            .by_fingerprint
            .get(fingerprint)
            .cloned()
            .context("no such schema in the set")?;
        let mut new = (*old).clone();
        new.id = id;
        new.confluent_header[1..].copy_from_slice(&id.to_be_bytes());
        let new = Arc::new(new);
        for value in self
            .by_fingerprint
            .values_mut()
            .chain(self.by_path.values_mut())
        {
            if Arc::ptr_eq(value, &old) {
                *value = new.clone();
            }
        }
        self.by_id.retain(|_, v| !Arc::ptr_eq(v, &old));
        if let Some(other) = self.by_id.get(&id) {
            bail!(
                "registry id {id} names both {} and {}",
                other.path.display(),
                new.path.display()
            );
        }
        self.by_id.insert(id, new);
        Ok(())
    }

    /// How a stage decoding with this set frames its output.
    pub fn output_framing(&self) -> Framing {
        self.output_framing
    }

    /// Decode Confluent-framed records whose writer schema is not a local
    /// file through `registry` (resolved to the local schema of the same
    /// full name).
    pub fn set_registry(&mut self, registry: Arc<registry::Registry>) {
        self.registry = Some(registry);
    }

    /// Decode a Confluent-framed record written with a registered schema
    /// that is not local: the writer's datum resolved to the reader schema
    /// (Avro schema resolution), as the reader's natural JSON.
    fn decode_remote(&self, framed: &[u8]) -> Option<anyhow::Result<(Arc<LoadedSchema>, Vec<u8>)>> {
        let (Frame::Confluent(id), datum) = framing::split(framed).ok()? else {
            return None;
        };
        if self.by_id.contains_key(&id) {
            return None;
        }
        let remote = match self
            .registry
            .as_ref()?
            .fetched(id, self.hold_on_registry_outage)
        {
            Ok(Some(remote)) => remote,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        let reader = match (&self.reader, &remote.reader) {
            (Some(reader), _) | (None, Some(reader)) => reader.clone(),
            (None, None) => {
                return Some(Err(anyhow::anyhow!(
                    "schema {id} (registered) has no local schema of the same full name to be \
                     read as; add its .avsc to the schema set or set the stage's reader_schema"
                )));
            }
        };
        Some(
            read_as(&remote.writer, datum, &reader)
                .with_context(|| format!("registered schema {id}"))
                .map(|json| (reader, json)),
        )
    }

    /// The schema with this registry id.
    pub fn by_id(&self, id: u32) -> Option<&Arc<LoadedSchema>> {
        self.by_id.get(&id)
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

    /// Every schema in the set, once each, in no particular order.
    pub fn schemas(&self) -> impl Iterator<Item = &Arc<LoadedSchema>> {
        let mut all: Vec<&Arc<LoadedSchema>> = Vec::with_capacity(self.by_path.len());
        for schema in self.by_path.values() {
            if !all.iter().any(|s| Arc::ptr_eq(s, schema)) {
                all.push(schema);
            }
        }
        all.into_iter()
    }

    /// True when `framed` was written with `schema` itself (not a registered
    /// writer schema resolved to it).
    pub fn written_with(framed: &[u8], schema: &LoadedSchema) -> bool {
        match framing::split(framed) {
            Ok((Frame::SingleObject(fp), _)) => {
                fp == schema.fingerprint || fp == schema.legacy_fingerprint
            }
            Ok((Frame::Confluent(id), _)) => id == schema.id,
            Err(_) => false,
        }
    }

    /// The schema with this fingerprint.
    pub fn get(&self, fingerprint: &[u8; 8]) -> Option<&Arc<LoadedSchema>> {
        self.by_fingerprint.get(fingerprint)
    }

    /// Decode a framed record value into its schema and Avro value.
    pub fn decode(&self, bytes: &[u8]) -> anyhow::Result<(Arc<LoadedSchema>, Value)> {
        let (schema, datum) = self.resolve(bytes)?;
        Ok((schema.clone(), schema.decode_datum(datum)?))
    }

    /// Decode a framed record value to its schema and natural JSON bytes in
    /// one pass (no Avro or JSON tree; see [`LoadedSchema::datum_to_json`]).
    pub fn decode_to_json(&self, framed: &[u8]) -> anyhow::Result<(Arc<LoadedSchema>, Vec<u8>)> {
        if let Some(remote) = self.decode_remote(framed) {
            return remote;
        }
        let (schema, datum) = self.resolve(framed)?;
        if let Some(reader) = &self.reader
            && reader.fingerprint != schema.fingerprint
        {
            let json = read_as(&schema.schema, datum, reader)
                .with_context(|| format!("schema {}", schema.path.display()))?;
            return Ok((reader.clone(), json));
        }
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

    /// The schema of a framed value (either framing) and its datum.
    pub fn resolve<'b>(&self, framed: &'b [u8]) -> anyhow::Result<(&Arc<LoadedSchema>, &'b [u8])> {
        let (frame, datum) = framing::split(framed)?;
        let schema = match frame {
            Frame::SingleObject(fingerprint) => self.get(&fingerprint).with_context(|| {
                format!(
                    "no known schema has fingerprint {}; add its .avsc to the schema set",
                    hex(&fingerprint)
                )
            })?,
            Frame::Confluent(id) => self.by_id(id).with_context(|| {
                format!(
                    "no known schema has registry id {id}; add its .avsc to the schema set or \
                     configure [schema_registry]"
                )
            })?,
        };
        Ok((schema, datum))
    }

    /// Decode a framed record value straight to natural JSON.
    pub fn decode_json(&self, bytes: &[u8]) -> anyhow::Result<serde_json::Value> {
        let (_, value) = self.decode(bytes)?;
        avro_to_json(&value)
    }
}

/// A datum written with `writer`, read as `reader` (Avro schema
/// resolution: fields the writer lacks take the reader's defaults, fields
/// the reader lacks are skipped), as the reader's natural JSON. This builds
/// a value tree: only records whose writer schema is not the reader's come
/// here.
fn read_as(writer: &Schema, datum: &[u8], reader: &LoadedSchema) -> anyhow::Result<Vec<u8>> {
    guard::check(writer, datum)
        .map_err(anyhow::Error::msg)
        .context("bytes are not a valid Avro datum for their writer schema")?;
    let mut input = EofGuard {
        rest: datum,
        past_end: false,
    };
    let value = apache_avro::from_avro_datum(writer, &mut input, Some(&reader.schema))
        .with_context(|| format!("cannot read the record as {}", reader.path.display()))?;
    if input.past_end || !input.rest.is_empty() {
        bail!("the datum does not end where its writer schema does");
    }
    Ok(serde_json::to_vec(&avro_to_json(&value)?)?)
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
