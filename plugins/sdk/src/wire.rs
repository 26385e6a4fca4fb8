//! The boundary: the host's flat batch buffers as [`Event`] views, and a
//! batch's [`Outcome`]s as the by-index `outcomes` record of
//! `sluice:plugin@0.2.0` (one code byte per event; only changed values
//! cross back).

use crate::bindings::sluice::plugin::types as wit;
use crate::{Event, Outcome};

/// Outcome codes, as documented on `outcomes` in `wit/sluice.wit`.
const KEEP: u8 = 0;
const DROP: u8 = 1;
const MODIFIED: u8 = 2;
const FAIL: u8 = 3;
const FAN_OUT: u8 = 4;

/// Views of every event of `batch`; an error if its buffers do not fit
/// together (which only a broken host would send).
pub fn events(batch: &wit::Batch) -> Result<Vec<Event<'_>>, String> {
    let count = batch.value_lens.len();
    if batch.key_lens.len() != count || batch.timestamps.len() != count {
        return Err(format!(
            "malformed batch: {count} values, {} keys, {} timestamps",
            batch.key_lens.len(),
            batch.timestamps.len()
        ));
    }
    let with_headers = batch.headers.len() == count;
    let with_origins = batch.origins.len() == count;
    // Two numbers per declared field per event.
    let per_event = batch.field_spans.len().checked_div(count).unwrap_or(0);
    if per_event * count != batch.field_spans.len() || !per_event.is_multiple_of(2) {
        return Err(format!(
            "malformed batch: {} field spans for {count} events",
            batch.field_spans.len()
        ));
    }
    let mut events = Vec::with_capacity(count);
    let (mut value_at, mut key_at) = (0usize, 0usize);
    for i in 0..count {
        let value_end = value_at + batch.value_lens[i] as usize;
        let value = batch
            .values
            .get(value_at..value_end)
            .ok_or("malformed batch: values overrun their buffer")?;
        value_at = value_end;
        let key = match usize::try_from(batch.key_lens[i]) {
            Ok(len) => {
                let key = batch
                    .keys
                    .get(key_at..key_at + len)
                    .ok_or("malformed batch: keys overrun their buffer")?;
                key_at += len;
                Some(key)
            }
            Err(_) => None,
        };
        let timestamp = batch.timestamps[i];
        events.push(Event {
            key,
            value,
            timestamp_ms: (timestamp >= 0).then_some(timestamp),
            headers: if with_headers { &batch.headers[i] } else { &[] },
            // The host marks events a plugin created (no Kafka origin) with
            // an empty topic and offset -1.
            origin: if with_origins
                && !(batch.origins[i].offset < 0 && batch.origins[i].topic.is_empty())
            {
                Some(&batch.origins[i])
            } else {
                None
            },
            located: &batch.field_spans[i * per_event..(i + 1) * per_event],
        });
    }
    Ok(events)
}

/// Locate `fields` in every value of `batch` into its `field_spans`, as the
/// host does for a plugin's declared fields. `validate` also marks every
/// field of a value that is not valid JSON as invalid (the host only sends
/// valid JSON; native tests may not).
pub fn locate_fields(batch: &mut wit::Batch, fields: &[crate::FieldPath], validate: bool) {
    batch.field_spans.clear();
    if fields.is_empty() {
        return;
    }
    let mut at = 0usize;
    for &len in &batch.value_lens {
        let value = &batch.values[at..at + len as usize];
        at += len as usize;
        if validate && serde_json::from_slice::<serde::de::IgnoredAny>(value).is_err() {
            for _ in fields {
                batch.field_spans.extend([crate::json::INVALID, 0]);
            }
        } else {
            crate::json::locate(value, fields, &mut batch.field_spans);
        }
    }
}

/// Lay out one outcome per event by index.
pub fn encode(outcomes: Vec<Outcome>) -> wit::Outcomes {
    let mut out = wit::Outcomes {
        codes: Vec::with_capacity(outcomes.len()),
        values: Vec::new(),
        value_lens: Vec::new(),
        edits: Vec::new(),
        failures: Vec::new(),
        fan_outs: Vec::new(),
    };
    for (index, outcome) in outcomes.into_iter().enumerate() {
        let index = index as u32;
        match outcome {
            Outcome::Keep => out.codes.push(KEEP),
            Outcome::Drop => out.codes.push(DROP),
            Outcome::Modify(change) => {
                match change.value {
                    Some(value) => {
                        out.codes.push(MODIFIED);
                        out.value_lens.push(value.len() as u32);
                        out.values.extend_from_slice(&value);
                    }
                    None => out.codes.push(KEEP),
                }
                out.edits.extend(
                    change
                        .edits
                        .into_iter()
                        .map(|edit| wit::EventEdit { index, edit }),
                );
            }
            Outcome::Fail(reason) => {
                out.codes.push(FAIL);
                out.failures.push(wit::Failure { index, reason });
            }
            Outcome::FanOut(events) => {
                out.codes.push(FAN_OUT);
                out.fan_outs.push(wit::FanOut { index, events });
            }
        }
    }
    out
}

/// Turn laid-out outcomes back into one [`Outcome`] per event (what the host
/// does); used by native tests and benchmarks to check the layout.
pub fn decode(outcomes: wit::Outcomes) -> Result<Vec<Outcome>, String> {
    let mut values = outcomes.value_lens.iter().scan(0usize, |at, &len| {
        let start = *at;
        *at += len as usize;
        Some(start..*at)
    });
    let mut failures = outcomes.failures.into_iter();
    let mut fan_outs = outcomes.fan_outs.into_iter();
    let mut result = Vec::with_capacity(outcomes.codes.len());
    for code in &outcomes.codes {
        result.push(match *code {
            KEEP => Outcome::Keep,
            DROP => Outcome::Drop,
            MODIFIED => {
                let range = values.next().ok_or("modified without a value")?;
                let value = outcomes.values.get(range).ok_or("value overrun")?;
                Outcome::Modify(crate::Change::value(value))
            }
            FAIL => Outcome::Fail(failures.next().ok_or("fail without a reason")?.reason),
            FAN_OUT => Outcome::FanOut(fan_outs.next().ok_or("fan-out without events")?.events),
            other => return Err(format!("unknown outcome code {other}")),
        });
    }
    for edit in outcomes.edits {
        let slot = result
            .get_mut(edit.index as usize)
            .ok_or("edit of an event that is not in the batch")?;
        match slot {
            Outcome::Keep => *slot = Outcome::Modify(crate::Change::default()),
            Outcome::Modify(_) => {}
            _ => return Err("edit of an event that was not kept".into()),
        }
        if let Outcome::Modify(change) = slot {
            change.edits.push(edit.edit);
        }
    }
    Ok(result)
}

/// The batch buffers for `events` (what the host sends); used by native
/// tests and benchmarks.
pub fn batch(events: &[Event<'_>]) -> wit::Batch {
    let mut batch = wit::Batch {
        values: Vec::new(),
        value_lens: Vec::with_capacity(events.len()),
        keys: Vec::new(),
        key_lens: Vec::with_capacity(events.len()),
        timestamps: Vec::with_capacity(events.len()),
        headers: Vec::with_capacity(events.len()),
        origins: Vec::new(),
        field_spans: Vec::new(),
    };
    let with_origins = events.iter().all(|e| e.origin.is_some()) && !events.is_empty();
    for event in events {
        batch.values.extend_from_slice(event.value);
        batch.value_lens.push(event.value.len() as u32);
        match event.key {
            Some(key) => {
                batch.keys.extend_from_slice(key);
                batch.key_lens.push(key.len() as i32);
            }
            None => batch.key_lens.push(-1),
        }
        batch.timestamps.push(event.timestamp_ms.unwrap_or(-1));
        batch.headers.push(event.headers.to_vec());
        if with_origins {
            batch.origins.extend(event.origin.cloned());
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Change, NewEvent};

    #[test]
    fn batches_round_trip_through_the_buffers() {
        let origin = wit::Origin {
            topic: "t".into(),
            partition: 1,
            offset: 9,
        };
        let original = [
            Event {
                key: Some(b"k1"),
                value: b"{\"a\":1}",
                timestamp_ms: Some(5),
                headers: &[],
                origin: Some(&origin),
                located: &[],
            },
            Event {
                key: None,
                value: b"[]",
                timestamp_ms: None,
                headers: &[],
                origin: Some(&origin),
                located: &[],
            },
        ];
        let laid_out = batch(&original);
        let views = events(&laid_out).unwrap();
        assert_eq!(views, original);
    }

    #[test]
    fn outcomes_round_trip_by_index() {
        let outcomes = vec![
            Outcome::keep(),
            Outcome::drop(),
            Outcome::modify(Change::value("{}").with_topic("x")),
            Outcome::fail("bad"),
            Outcome::route("y"),
            Outcome::fan_out(vec![NewEvent::new("1"), NewEvent::new("2")]),
        ];
        let laid_out = encode(outcomes.clone());
        assert_eq!(laid_out.codes, vec![0, 1, 2, 3, 0, 4]);
        assert_eq!(laid_out.values, b"{}");
        assert_eq!(decode(laid_out).unwrap(), outcomes);
    }

    #[test]
    fn malformed_batches_are_refused() {
        let mut laid_out = batch(&[Event::new("{}")]);
        laid_out.value_lens[0] = 99;
        assert!(events(&laid_out).is_err());
        laid_out.value_lens.push(1);
        assert!(events(&laid_out).is_err());
    }
}
