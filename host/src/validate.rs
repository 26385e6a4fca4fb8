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
