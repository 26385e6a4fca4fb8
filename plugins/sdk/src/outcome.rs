//! What a transform decides for one event.

use crate::{Change, NewEvent};

/// What a transform decided for one input event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Pass the event on unchanged; the host reuses its own copy, so nothing
    /// crosses back and nothing is re-serialized.
    Keep,
    /// Change the event's value and/or metadata.
    Modify(Change),
    /// Drop the event on purpose; counted as dropped, not as failed.
    Drop,
    /// The event is bad: send it to the dead-letter topic with this reason.
    Fail(String),
    /// Replace the event with zero or more new events.
    FanOut(Vec<NewEvent>),
}

impl Outcome {
    /// Pass the event on unchanged.
    pub fn keep() -> Outcome {
        Outcome::Keep
    }

    /// Apply `change` (e.g. from [`crate::Event::with_value_json`],
    /// [`crate::Event::with_topic`] or [`Change::value`]).
    pub fn modify(change: Change) -> Outcome {
        Outcome::Modify(change)
    }

    /// Send the event to `topic`, value untouched.
    pub fn route(topic: impl Into<String>) -> Outcome {
        Outcome::Modify(Change::default().with_topic(topic))
    }

    /// Drop the event on purpose; the host counts it as dropped, not failed.
    #[allow(clippy::should_implement_trait)]
    pub fn drop() -> Outcome {
        Outcome::Drop
    }

    /// The event is bad: the host sends it to the stage's dead-letter topic
    /// with this reason.
    pub fn fail(reason: impl Into<String>) -> Outcome {
        Outcome::Fail(reason.into())
    }

    /// Replace the event with zero or more new events.
    pub fn fan_out(events: Vec<NewEvent>) -> Outcome {
        Outcome::FanOut(events)
    }

    /// `true` for [`Outcome::keep`].
    pub fn is_keep(&self) -> bool {
        matches!(self, Outcome::Keep)
    }

    /// `true` for [`Outcome::drop`].
    pub fn is_drop(&self) -> bool {
        matches!(self, Outcome::Drop)
    }

    /// The change, for [`Outcome::modify`].
    pub fn modified(&self) -> Option<&Change> {
        match self {
            Outcome::Modify(change) => Some(change),
            _ => None,
        }
    }

    /// The new value as text, for a [`Outcome::modify`] that changes it.
    pub fn modified_value(&self) -> Option<&str> {
        self.modified().and_then(Change::value_str)
    }

    /// The failure reason, for [`Outcome::fail`].
    pub fn failure(&self) -> Option<&str> {
        match self {
            Outcome::Fail(reason) => Some(reason),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_build_the_variants() {
        assert!(Outcome::keep().is_keep());
        assert!(Outcome::drop().is_drop());
        assert_eq!(Outcome::fail("bad").failure(), Some("bad"));
        let change = Change::value("{}");
        assert_eq!(Outcome::modify(change.clone()).modified(), Some(&change));
        assert_eq!(Outcome::modify(change).modified_value(), Some("{}"));
        assert_eq!(
            Outcome::fan_out(vec![NewEvent::new("1")]),
            Outcome::FanOut(vec![NewEvent::new("1")])
        );
        assert_eq!(
            Outcome::route("t").modified().and_then(Change::topic),
            Some("t")
        );
        assert_eq!(Outcome::keep().modified(), None);
        assert_eq!(Outcome::keep().failure(), None);
    }
}
