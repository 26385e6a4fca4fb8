//! A structural pre-check of Avro binary datums, before apache-avro decodes
//! them. apache-avro reserves room for an array or map block from its item
//! count alone, so a few bytes claiming a billion map entries make it ask for
//! tens of gigabytes and abort the process (found by `cargo fuzz` on
//! `ingest_decode`). This walk reads the same bytes without allocating and
//! refuses any length or block count that the remaining input cannot hold.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, ResolvedSchema};

/// Items whose encoding may take zero bytes (nulls, empty records) allowed
/// in one array or map block.
const MAX_EMPTY_ITEMS: u64 = 1 << 16;

/// Check that `datum` is structurally plausible for `schema`: every length
/// and block count fits in the bytes that follow it.
pub fn check(schema: &Schema, datum: &[u8]) -> Result<(), String> {
    let resolved = ResolvedSchema::try_from(schema).map_err(|e| e.to_string())?;
    let names = resolved.get_names();
    let mut walker = Walker {
        input: datum,
        names,
        depth: 0,
    };
    walker.value(schema)
}

struct Walker<'a, 's> {
    input: &'a [u8],
    names: &'a HashMap<Name, &'s Schema>,
    depth: usize,
}

impl Walker<'_, '_> {
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

    fn skip(&mut self, n: u64, what: &str) -> Result<(), String> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > self.input.len() {
            return Err(format!(
                "Avro {what} claims {n} bytes but only {} remain",
                self.input.len()
            ));
        }
        self.input = &self.input[n..];
        Ok(())
    }

    fn length(&mut self, what: &str) -> Result<(), String> {
        let len = self.long()?;
        if len < 0 {
            return Err(format!("negative Avro {what} length {len}"));
        }
        self.skip(len as u64, what)
    }

    /// Array and map blocks: `count` items (negative: followed by a byte
    /// size), until a zero count.
    fn blocks(
        &mut self,
        what: &str,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
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
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    fn value(&mut self, schema: &Schema) -> Result<(), String> {
        self.depth += 1;
        if self.depth > 64 {
            return Err("Avro datum nests more than 64 levels".into());
        }
        let result = self.value_inner(schema);
        self.depth -= 1;
        result
    }

    fn value_inner(&mut self, schema: &Schema) -> Result<(), String> {
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.skip(1, "boolean"),
            Schema::Int
            | Schema::Long
            | Schema::Enum(_)
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(drop),
            Schema::Float => self.skip(4, "float"),
            Schema::Double => self.skip(8, "double"),
            Schema::Bytes | Schema::String | Schema::Uuid | Schema::BigDecimal => {
                self.length("string or bytes")
            }
            Schema::Fixed(fixed) => self.skip(fixed.size as u64, "fixed"),
            Schema::Duration => self.skip(12, "duration"),
            Schema::Decimal(decimal) => self.value(&decimal.inner),
            Schema::Array(array) => self.blocks("array", |w| w.value(&array.items)),
            Schema::Map(map) => self.blocks("map", |w| {
                w.length("map key")?;
                w.value(&map.types)
            }),
            Schema::Union(union) => {
                let index = self.long()?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| union.variants().get(i))
                    .ok_or_else(|| format!("Avro union index {index} out of range"))?;
                self.value(variant)
            }
            Schema::Record(record) => record
                .fields
                .iter()
                .try_for_each(|field| self.value(&field.schema)),
            Schema::Ref { name } => {
                let target = *self
                    .names
                    .get(name)
                    .ok_or_else(|| format!("unknown Avro type {name}"))?;
                self.value(target)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_schema() -> Schema {
        Schema::parse_str(r#"{"type":"record","name":"r","fields":[{"name":"m","type":{"type":"map","values":"string"}}]}"#)
            .unwrap()
    }

    #[test]
    fn a_huge_block_count_is_refused_before_any_allocation() {
        // zigzag(1_000_000_000) as a varint, then nothing.
        let datum = [0x80, 0xa8, 0xd6, 0xb9, 0x07];
        let err = check(&map_schema(), &datum).unwrap_err();
        assert!(err.contains("claims 1000000000 items"), "{err}");
    }

    #[test]
    fn well_formed_datums_pass_and_lengths_are_checked() {
        // One block of one entry "a" -> "b", then the end.
        assert_eq!(check(&map_schema(), &[2, 2, b'a', 2, b'b', 0]), Ok(()));
        let err = check(&map_schema(), &[2, 200, 1, b'a']).unwrap_err();
        assert!(err.contains("claims 100 bytes"), "{err}");
    }
}
