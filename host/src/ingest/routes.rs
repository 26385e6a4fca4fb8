//! Ingest routes: which `[[ingest.route]]` takes an event (the first whose
//! event type is `*` or equals the event's type field), and what a route
//! writes (topic, schema, key, framing, producer).

use std::sync::Arc;

use crate::config::Framing;
use crate::schema::{JsonNode, LoadedSchema};

/// One `[[ingest.route]]`, resolved.
#[derive(Debug)]
pub(super) struct Route {
    pub(super) event_type: String,
    pub(super) topic: String,
    pub(super) schema: Arc<LoadedSchema>,
    pub(super) key_field: String,
    pub(super) type_field: String,
    /// How this route frames its records.
    pub(super) framing: Framing,
    /// Index of this route's producer in `Ingest::producers`.
    pub(super) producer: usize,
}

/// Why no route takes an event: the field to name in the 400, and why.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NoRoute {
    pub(super) field: String,
    pub(super) reason: String,
}

/// The route that takes `event`, with its index: the first whose event
/// type is `*` or equals the event's type field (routes are tried in
/// config order).
pub(super) fn select<'r>(
    routes: &'r [Route],
    event: &JsonNode<'_>,
) -> Result<(usize, &'r Route), NoRoute> {
    if let Some(found) = routes.iter().enumerate().find(|(_, r)| {
        r.event_type == "*"
            || event
                .get(&r.type_field)
                .is_some_and(|t| t.str_eq(&r.event_type))
    }) {
        return Ok(found);
    }
    let field = routes.first().map_or("type", |r| r.type_field.as_str());
    Err(NoRoute {
        field: field.to_string(),
        reason: match event.get(field) {
            Some(t) => format!("no ingest route takes event type {}", t.to_value()),
            None => "required field is missing".into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::JsonDoc;

    fn route(event_type: &str, type_field: &str, topic: &str) -> Route {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schemas/telemetry_event.avsc");
        Route {
            event_type: event_type.into(),
            topic: topic.into(),
            schema: Arc::new(LoadedSchema::from_file(&path).expect("schema")),
            key_field: "entity_id".into(),
            type_field: type_field.into(),
            framing: Framing::SingleObject,
            producer: 0,
        }
    }

    fn pick(routes: &[Route], event: &str) -> Result<String, NoRoute> {
        let doc = JsonDoc::parse(event.as_bytes()).expect("JSON");
        select(routes, &doc.root()).map(|(i, r)| format!("{i}:{}", r.topic))
    }

    #[test]
    fn the_first_matching_route_in_config_order_takes_the_event() {
        let routes = [
            route("login", "type", "logins"),
            route("page_view", "type", "views"),
            route("*", "type", "rest"),
        ];
        assert_eq!(pick(&routes, r#"{"type":"login"}"#).unwrap(), "0:logins");
        assert_eq!(pick(&routes, r#"{"type":"page_view"}"#).unwrap(), "1:views");
        assert_eq!(pick(&routes, r#"{"type":"other"}"#).unwrap(), "2:rest");
        // `*` takes events without the type field too.
        assert_eq!(pick(&routes, r#"{"kind":"login"}"#).unwrap(), "2:rest");
        // A catch-all first shadows the routes after it.
        let shadowed = [route("*", "type", "all"), route("login", "type", "logins")];
        assert_eq!(pick(&shadowed, r#"{"type":"login"}"#).unwrap(), "0:all");
    }

    #[test]
    fn type_fields_are_per_route_and_compared_as_strings() {
        let routes = [
            route("login", "kind", "by-kind"),
            route("login", "type", "by-type"),
        ];
        assert_eq!(pick(&routes, r#"{"type":"login"}"#).unwrap(), "1:by-type");
        assert_eq!(
            pick(&routes, r#"{"kind":"login","type":"x"}"#).unwrap(),
            "0:by-kind"
        );
        // A non-string type never matches a string event type.
        let err = pick(&routes, r#"{"kind":1}"#).unwrap_err();
        assert_eq!(err.field, "kind");
        assert_eq!(err.reason, "no ingest route takes event type 1");
    }

    #[test]
    fn no_route_names_the_first_routes_type_field() {
        let routes = [route("login", "type", "logins")];
        assert_eq!(
            pick(&routes, r#"{"type":"page_view"}"#).unwrap_err(),
            NoRoute {
                field: "type".into(),
                reason: "no ingest route takes event type \"page_view\"".into()
            }
        );
        assert_eq!(
            pick(&routes, r#"{"entity_id":"u"}"#).unwrap_err(),
            NoRoute {
                field: "type".into(),
                reason: "required field is missing".into()
            }
        );
    }
}
