//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` annotations and the types they send and read; served
//! at `/openapi.json` and printed by `sluice openapi` (which is how
//! `docs/openapi.json` is written; a test keeps the two equal).

use std::sync::LazyLock;

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The document's description.
const DESCRIPTION: &str = "Event ingestion (validated against Avro schemas, produced to Kafka; \
    202 only after the broker acknowledged) and operator endpoints. Served by `sluice run` at \
    `/openapi.json`.";

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice HTTP API", description = DESCRIPTION),
    paths(
        crate::ingest::post_single,
        crate::ingest::post_batch,
        crate::ingest::otlp::post_logs,
        super::healthz,
        super::readyz,
        super::metrics,
        super::openapi,
        super::plugins_list,
        super::plugins_push,
        super::plugins_rollback,
        super::tail,
        super::tap::tap,
        super::dlq::list,
        super::dlq::show,
        super::dlq::redrive,
        super::dlq::preview,
        super::stats::stats,
        super::console::page,
        super::console::asset,
        super::stats::topology,
        crate::schema::registry_api::schema_by_id,
        crate::schema::registry_api::raw_schema_by_id,
        crate::schema::registry_api::schema_types,
        crate::schema::registry_api::subjects,
        crate::schema::registry_api::lookup,
        crate::schema::registry_api::versions,
        crate::schema::registry_api::register,
        crate::schema::registry_api::version,
        crate::schema::registry_api::raw_version,
        crate::schema::registry_api::config,
        crate::schema::registry_api::compatibility,
        crate::schema::registry_api::compatibility_latest,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "ingest", description = "Events in: JSON, Avro and OTLP logs, produced to Kafka."),
        (name = "operations", description = "Liveness, readiness, metrics and this document."),
        (name = "admin", description = "The bearer-protected operator API: plugins, tails, taps, dead letters."),
        (name = "console", description = "The web console's page and files (embedded; the page reads `/admin` with the admin token)."),
        (name = "schema registry", description = "The built-in registry (a Confluent-compatible subset)."),
    )
)]
struct ApiDoc;

/// `bearer` (API keys and the admin token) and `apiKey` (`X-Api-Key`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Ingest: one of `[ingest] api_keys` (or send it as `X-Api-Key`). \
                         Admin: `[admin] token`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.info.license = None;
    doc.info.contact = None;
    doc
}

/// The document as pretty-printed JSON, rendered once.
pub fn json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        let mut text = document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    });
    &JSON
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Every path routed with `.route("PATH", ...)` in the host's source.
    fn routed_paths(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("source dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                routed_paths(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source file");
                for piece in text.split(".route(").skip(1) {
                    let Some(piece) = piece.trim_start().strip_prefix('"') else {
                        continue;
                    };
                    if let Some(end) = piece.find('"')
                        && piece.starts_with('/')
                    {
                        out.insert(piece[..end].to_string());
                    }
                }
            }
        }
    }

    fn doc() -> serde_json::Value {
        serde_json::from_str(super::json()).expect("valid JSON")
    }

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_has() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let documented: BTreeSet<String> = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .cloned()
            .collect();
        let mut routed = BTreeSet::new();
        routed_paths(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut routed,
        );
        assert!(routed.contains("/v1/events"), "{routed:?}");
        assert_eq!(
            documented, routed,
            "documented paths (left) and the router's routes (right) differ: \
             annotate the handler with #[utoipa::path] and list it in ApiDoc"
        );
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let responses = operation["responses"].as_object().expect("responses");
                assert!(!responses.is_empty(), "{method} {path} documents no status");
                for (status, response) in responses {
                    assert!(
                        response["description"].is_string(),
                        "{method} {path} {status} has no description"
                    );
                }
                assert!(
                    operation["summary"].is_string(),
                    "{method} {path} has no summary (the handler's doc comment)"
                );
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = doc();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').expect("closing quote")];
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
    }

    #[test]
    fn errors_and_events_are_described_by_the_types_the_handlers_use() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let codes = schemas["ErrorCode"]["enum"].as_array().expect("codes");
        assert!(codes.contains(&serde_json::json!("invalid_event")));
        assert!(codes.contains(&serde_json::json!("admin_disabled")));
        assert_eq!(
            schemas["ErrorBody"]["required"],
            serde_json::json!(["error", "message"])
        );
        let event = &schemas["TelemetryEvent"];
        assert_eq!(event["additionalProperties"], false);
        assert_eq!(event["properties"]["severity"]["default"], "INFO");
        let batch = &doc["paths"]["/v1/events/batch"]["post"]["requestBody"]["content"];
        assert!(batch["application/x-ndjson"].is_object(), "{batch}");
        let single = &doc["paths"]["/v1/events"]["post"];
        assert_eq!(single["operationId"], "postEvent");
        assert!(single["responses"]["503"]["headers"]["Retry-After"].is_object());
        assert_eq!(single["security"][1]["bearer"], serde_json::json!([]));
    }

    #[test]
    fn docs_openapi_json_is_the_generated_document() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            kept == super::json(),
            "docs/openapi.json is not the generated document; regenerate it with \
             `cargo run --release -p sluice-host -- openapi > docs/openapi.json`"
        );
    }
}
