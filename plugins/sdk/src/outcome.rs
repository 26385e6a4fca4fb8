//! Constructors for [`Outcome`].

use crate::{Event, Outcome};

impl Outcome {
    /// Pass the event on unchanged; the host reuses its own copy, so nothing
    /// is copied back or re-serialized.
    pub fn keep() -> Outcome {
        Outcome::Keep
    }

    /// Replace the event with `event` (e.g. from
    /// [`Event::with_value_json`] or [`Event::with_topic`]).
    pub fn modify(event: Event) -> Outcome {
        Outcome::Modify(event)
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
    pub fn fan_out(events: Vec<Event>) -> Outcome {
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

    /// The modified event, for [`Outcome::modify`].
    pub fn modified(&self) -> Option<&Event> {
        match self {
            Outcome::Modify(event) => Some(event),
            _ => None,
        }
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
        let event = Event::new("{}");
        assert_eq!(Outcome::modify(event.clone()).modified(), Some(&event));
        assert_eq!(
            Outcome::fan_out(vec![event.clone(), event.clone()]),
            Outcome::FanOut(vec![event.clone(), event])
        );
        assert_eq!(Outcome::keep().modified(), None);
        assert_eq!(Outcome::keep().failure(), None);
    }
}
