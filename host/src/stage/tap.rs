//! A stage's offers to live taps (`crate::tap`): the records it reads from
//! its input topics and the events it dead-letters. Called only while a tap
//! is active; copies sampled events, never holds or changes a batch.

use std::sync::Arc;

use super::batch::Batch;
use crate::runtime::{Event, Failure};
use crate::schema::SchemaSet;
use crate::tap::{Point, Tapped, json_of, offer};

/// Offer the batch's decoded input events to taps on their topics.
pub(super) fn input(events: &[(usize, Event)]) {
    let mut topics: Vec<&str> = events
        .iter()
        .filter_map(|(_, e)| e.origin.as_ref().map(|o| &*o.topic))
        .collect();
    topics.dedup();
    topics.sort_unstable();
    topics.dedup();
    for topic in topics {
        let point = Arc::new(Point::Topic {
            topic: topic.to_string(),
        });
        let of_topic: Vec<&Event> = events
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e.origin.as_ref().is_some_and(|o| &*o.topic == topic))
            .collect();
        offer(&point, of_topic.len(), |i| {
            let event = of_topic[i];
            let tapped = Tapped::new(point.clone(), event.key.as_deref(), json_of(&event.value));
            match &event.origin {
                Some(o) => tapped.at(&o.topic, o.partition, o.offset),
                None => tapped,
            }
        });
    }
}

/// Offer the batch's failures, as dead letters with their reasons, to taps
/// on the stage's dead letters.
pub(super) fn dead_letters(stage: &str, batch: &Batch, schemas: &SchemaSet, failures: &[Failure]) {
    let point = Arc::new(Point::DeadLetters {
        stage: stage.to_string(),
    });
    offer(&point, failures.len(), |i| {
        let failure = &failures[i];
        let record = batch.original(failure.source);
        let value = match schemas.decode_to_json(&record.value) {
            Ok((_, json)) => json_of(&json),
            Err(_) => crate::tap::raw(&serde_json::Value::Null),
        };
        let (topic, partition, offset) = batch.origin(failure.source);
        let plugin = if failure.plugin.is_empty() {
            "(host)"
        } else {
            &failure.plugin
        };
        let mut tapped =
            Tapped::new(point.clone(), record.key.as_deref(), value).at(topic, partition, offset);
        tapped.error = Some(format!("{plugin}: {}", failure.error));
        tapped
    });
}
