//! Avro binary datum → natural JSON bytes in one schema-driven pass, with no
//! `apache_avro::types::Value` or `serde_json::Value` in between.
//!
//! The output is byte for byte what
//! `serde_json::to_vec(&avro_to_json(&schema.decode_datum(datum)?)?)` gives
//! (the property tests in `transcode_tests.rs` hold it to that): record fields
//! in schema order, map keys sorted (a repeated key keeps its last value, as
//! the `HashMap` did), unions as their plain value, bytes and fixed as lossy
//! UTF-8 strings, non-finite floats as `null`; strings and numbers are
//! written by serde_json itself, so escaping and float formatting match.
//!
//! Like `guard.rs`, every length and block count is checked against the
//! bytes that remain before anything is reserved for it, so a short body
//! claiming a billion map entries fails instead of allocating.

use std::collections::HashMap;
use std::ops::Range;

use apache_avro::Schema;
use apache_avro::schema::Name;

/// Items whose encoding may take zero bytes (nulls, empty records) allowed
/// in one array or map block (as in `guard.rs`).
const MAX_EMPTY_ITEMS: u64 = 1 << 16;
/// Nesting bound, as in `guard.rs`.
const MAX_DEPTH: usize = 64;

/// Write the natural JSON of `datum` (an unframed datum of `schema`) to
/// `out`. `names` resolves named-type references. On error `out` holds a
/// partial document; the message says what is wrong with the bytes.
pub(crate) fn datum_to_json(
    schema: &Schema,
    names: &HashMap<Name, Schema>,
    datum: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut walker = Transcoder {
        input: datum,
        names,
        depth: 0,
        entries: Vec::new(),
    };
    walker.value(schema, out)?;
    if !walker.input.is_empty() {
        return Err(format!(
            "{} trailing bytes after the Avro datum",
            walker.input.len()
        ));
    }
    Ok(())
}

/// One map entry already rendered as `"key":value` at `piece` in the output.
struct Entry<'a> {
    key: &'a str,
    piece: Range<usize>,
}

struct Transcoder<'a, 'n> {
    input: &'a [u8],
    names: &'n HashMap<Name, Schema>,
    depth: usize,
    /// Stack of map entries being sorted (nested maps push above).
    entries: Vec<Entry<'a>>,
}

/// Append `value` as serde_json writes it (to a `Vec`, which cannot fail).
fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serialising a string or a number into a Vec has no failure mode.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Append `"name":`. Avro names (`[A-Za-z_][A-Za-z0-9_]*`) need no
/// escaping; anything else goes through serde_json.
fn key(out: &mut Vec<u8>, name: &str) {
    if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
    } else {
        put(out, name);
        out.push(b':');
    }
}

impl<'a> Transcoder<'a, '_> {
    fn long(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .input
                .split_first()
                .ok_or("truncated Avro datum: the bytes end inside a number")?;
            self.input = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err("invalid Avro varint (more than 10 bytes)".into())
    }

    fn int(&mut self) -> Result<i32, String> {
        let n = self.long()?;
        i32::try_from(n).map_err(|_| format!("Avro int {n} does not fit 32 bits"))
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > self.input.len() {
            return Err(format!(
                "Avro {what} claims {n} bytes but only {} remain",
                self.input.len()
            ));
        }
        let (taken, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(taken)
    }

    fn sized(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.long()?;
        if len < 0 {
            return Err(format!("negative Avro {what} length {len}"));
        }
        self.take(len as u64, what)
    }

    fn string(&mut self, what: &str) -> Result<&'a str, String> {
        let bytes = self.sized(what)?;
        std::str::from_utf8(bytes).map_err(|e| format!("Avro {what} is not valid UTF-8: {e}"))
    }

    /// The item count of the next array or map block; 0 ends the sequence.
    fn block(&mut self, what: &str) -> Result<u64, String> {
        let count = self.long()?;
        if count < 0 {
            let size = self.long()?;
            if size < 0 || size as u64 > self.input.len() as u64 {
                return Err(format!(
                    "Avro {what} block size {size} does not fit the input"
                ));
            }
        }
        let count = count.unsigned_abs();
        if count > (self.input.len() as u64).max(MAX_EMPTY_ITEMS) {
            return Err(format!(
                "Avro {what} block claims {count} items but only {} bytes remain",
                self.input.len()
            ));
        }
        Ok(count)
    }

    fn value(&mut self, schema: &Schema, out: &mut Vec<u8>) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("Avro datum nests more than 64 levels".into());
        }
        let result = self.value_inner(schema, out);
        self.depth -= 1;
        result
    }

    fn value_inner(&mut self, schema: &Schema, out: &mut Vec<u8>) -> Result<(), String> {
        match schema {
            Schema::Null => out.extend_from_slice(b"null"),
            Schema::Boolean => match self.take(1, "boolean")? {
                [0] => out.extend_from_slice(b"false"),
                [1] => out.extend_from_slice(b"true"),
                other => return Err(format!("invalid Avro boolean byte {:#04x}", other[0])),
            },
            Schema::Int => {
                let n = self.int()?;
                put(out, &n);
            }
            Schema::Long | Schema::TimestampMillis | Schema::TimestampMicros => {
                let n = self.long()?;
                put(out, &n);
            }
            Schema::Float => {
                let bytes = self.take(4, "float")?;
                let mut raw = [0u8; 4];
                raw.copy_from_slice(bytes);
                put(out, &f64::from(f32::from_le_bytes(raw)));
            }
            Schema::Double => {
                let bytes = self.take(8, "double")?;
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                put(out, &f64::from_le_bytes(raw));
            }
            Schema::String => {
                let s = self.string("string")?;
                put(out, s);
            }
            Schema::Bytes => {
                let bytes = self.sized("bytes")?;
                put(out, String::from_utf8_lossy(bytes).as_ref());
            }
            Schema::Fixed(fixed) => {
                let bytes = self.take(fixed.size as u64, "fixed")?;
                put(out, String::from_utf8_lossy(bytes).as_ref());
            }
            Schema::Enum(e) => {
                let index = self.int()?;
                let symbol = usize::try_from(index)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or_else(|| {
                        format!(
                            "Avro enum index {index} out of range ({} symbols)",
                            e.symbols.len()
                        )
                    })?;
                put(out, symbol.as_str());
            }
            Schema::Union(union) => {
                let index = self.long()?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| union.variants().get(i))
                    .ok_or_else(|| format!("Avro union index {index} out of range"))?;
                self.value(variant, out)?;
            }
            Schema::Array(array) => {
                out.push(b'[');
                let mut first = true;
                loop {
                    let count = self.block("array")?;
                    if count == 0 {
                        break;
                    }
                    for _ in 0..count {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        self.value(&array.items, out)?;
                    }
                }
                out.push(b']');
            }
            Schema::Map(map) => self.map(&map.types, out)?,
            Schema::Record(record) => {
                out.push(b'{');
                for (i, field) in record.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    key(out, &field.name);
                    self.value(&field.schema, out)?;
                }
                out.push(b'}');
            }
            Schema::Ref { name } => {
                let names = self.names;
                let target = names
                    .get(name)
                    .ok_or_else(|| format!("unknown Avro type {name}"))?;
                self.value(target, out)?;
            }
            other => {
                return Err(format!(
                    "Avro type {:?} has no natural JSON form in Sluice",
                    apache_avro::schema::SchemaKind::from(other)
                ));
            }
        }
        Ok(())
    }

    /// A map: entries are rendered as they come, then put in key order with
    /// repeated keys collapsed to their last value, as `avro_to_json` does.
    fn map(&mut self, values: &Schema, out: &mut Vec<u8>) -> Result<(), String> {
        let open = out.len();
        out.push(b'{');
        let base = self.entries.len();
        let mut sorted = true;
        loop {
            let count = self.block("map")?;
            if count == 0 {
                break;
            }
            for _ in 0..count {
                let key = self.string("map key")?;
                if self.entries.len() > base {
                    out.push(b',');
                }
                let start = out.len();
                put(out, key);
                out.push(b':');
                self.value(values, out)?;
                if let Some(last) = self.entries.last().filter(|_| self.entries.len() > base) {
                    sorted &= last.key < key;
                }
                self.entries.push(Entry {
                    key,
                    piece: start..out.len(),
                });
            }
        }
        if !sorted {
            let rendered = out.split_off(open + 1);
            let entries = &mut self.entries[base..];
            // Stable: equal keys stay in datum order, so the last one wins.
            entries.sort_by(|a, b| a.key.cmp(b.key));
            let mut first = true;
            for (i, entry) in entries.iter().enumerate() {
                if entries.get(i + 1).is_some_and(|next| next.key == entry.key) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                let piece = entry.piece.start - open - 1..entry.piece.end - open - 1;
                out.extend_from_slice(&rendered[piece]);
            }
        }
        self.entries.truncate(base);
        out.push(b'}');
        Ok(())
    }
}
