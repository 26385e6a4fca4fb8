//! `sluice validate`: every check that can run without a broker: the config
//! file, the schema files it names, and the plugins its stages chain.

use std::path::Path;

use crate::config::{self, Diagnostics, LoadedConfig};
use crate::schema::LoadedSchema;

/// Check a configuration file and everything it references; returns the
/// loaded config when there is no problem.
pub fn validate(path: &Path) -> Result<LoadedConfig, Diagnostics> {
    validate_with_plugins(path).map(|(loaded, _)| loaded)
}

/// [`validate`], plus one line per checked plugin saying which component
/// it is and which contract version it exports (`sluice validate` prints
/// them).
pub fn validate_with_plugins(path: &Path) -> Result<(LoadedConfig, Vec<String>), Diagnostics> {
    let (loaded, mut problems) = config::load_checked(path);
    let Some(loaded) = loaded else {
        return Err(problems);
    };
    check_schemas(&loaded, &mut problems);
    let plugins = crate::runtime::check_plugins(&loaded, &mut problems);
    problems.into_result()?;
    Ok((loaded, plugins))
}

fn check_schemas(loaded: &LoadedConfig, problems: &mut Diagnostics) {
    check_reader_schemas(loaded, problems);
    let Some(ingest) = &loaded.config.ingest else {
        return;
    };
    for (i, route) in ingest.routes.iter().enumerate() {
        let path = loaded.resolve(route.schema.get_ref());
        let key = format!("ingest.route[{i}].schema");
        if !path.is_file() {
            problems.push(loaded.problem_at(
                &route.schema,
                &key,
                format!("schema file {} does not exist", path.display()),
            ));
            continue;
        }
        if let Err(e) = LoadedSchema::from_file(&path) {
            problems.push(loaded.problem_at(&route.schema, &key, format!("{e:#}")));
        }
    }
}

/// Each stage's `reader_schema` loads, and can read the schema of every
/// route that writes the stage's input (the writers Sluice knows of).
fn check_reader_schemas(loaded: &LoadedConfig, problems: &mut Diagnostics) {
    use apache_avro::schema_compatibility::SchemaCompatibility;
    for (i, stage) in loaded.config.stages.iter().enumerate() {
        let Some(reader_path) = &stage.reader_schema else {
            continue;
        };
        let key = format!("stage[{i}].reader_schema");
        let path = loaded.resolve(reader_path.get_ref());
        let reader = match LoadedSchema::from_file(&path) {
            Ok(reader) => reader,
            Err(e) => {
                problems.push(loaded.problem_at(reader_path, &key, format!("{e:#}")));
                continue;
            }
        };
        let routes = loaded.config.ingest.iter().flat_map(|i| &i.routes);
        for route in routes.filter(|r| r.topic.get_ref() == stage.input.get_ref()) {
            let Ok(writer) = LoadedSchema::from_file(&loaded.resolve(route.schema.get_ref()))
            else {
                continue; // reported for the route
            };
            if let Err(e) = SchemaCompatibility::can_read(&writer.schema, &reader.schema) {
                problems.push(loaded.problem_at(
                    reader_path,
                    &key,
                    format!(
                        "{} cannot read records of route `{}` (schema {}): {e}",
                        path.display(),
                        route.event_type,
                        writer.path.display()
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config in a fresh directory whose stage reads route `login`'s
    /// topic as `reader` (a schema text written next to it).
    fn problems_with_reader(reader: &serde_json::Value) -> Diagnostics {
        let dir = std::env::temp_dir().join(format!(
            "sluice-validate-reader-{}-{}",
            std::process::id(),
            reader.to_string().len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let telemetry =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/telemetry_event.avsc");
        std::fs::copy(&telemetry, dir.join("telemetry_event.avsc")).unwrap();
        std::fs::write(dir.join("reader.avsc"), reader.to_string()).unwrap();
        let text = r#"[kafka]
brokers = "embedded"
[ingest]
listen = "127.0.0.1:0"
[[ingest.route]]
event_type = "login"
topic = "in"
schema = "telemetry_event.avsc"

[[stage]]
name = "s"
input = "in"
output = "out"
chain = ["filter"]
reader_schema = "reader.avsc"
"#;
        let loaded = config::parse_str(text, &dir.join("sluice.toml")).expect("parses");
        let mut problems = Diagnostics::default();
        check_reader_schemas(&loaded, &mut problems);
        problems
    }

    fn telemetry_doc() -> serde_json::Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/telemetry_event.avsc");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn a_reader_schema_must_read_the_routes_writing_the_stage_input() {
        let mut newer = telemetry_doc();
        newer["fields"].as_array_mut().unwrap().push(
            serde_json::json!({"name": "region", "type": ["null", "string"], "default": null}),
        );
        assert!(problems_with_reader(&newer).0.is_empty());

        let mut strict = telemetry_doc();
        strict["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "must_have", "type": "string"}));
        let problems = problems_with_reader(&strict).0;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "stage[0].reader_schema");
        assert_eq!(problems[0].line, 15);
        assert!(
            problems[0].message.contains("route `login`"),
            "{}",
            problems[0]
        );

        let problems = problems_with_reader(&serde_json::json!({"type": "nope"})).0;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "stage[0].reader_schema");
    }
}
