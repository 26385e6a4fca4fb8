//! The tap points a host has: its ingest routes, the topics its stages
//! read, each stage's chain and its dead letters. `GET /admin/tap` checks a
//! point against them, so a typo is a 400 naming what exists instead of a
//! tap that never sees an event.

use std::collections::BTreeMap;

use super::Point;
use crate::config::Config;

/// The points a host can tap, from its configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    routes: Vec<String>,
    topics: Vec<String>,
    /// Stage name → the plugins of its chain, in order.
    stages: BTreeMap<String, Vec<String>>,
}

impl Known {
    /// The points of `config`'s ingest routes and stages.
    pub fn from_config(config: &Config) -> Self {
        let routes = config
            .ingest
            .iter()
            .flat_map(|i| i.routes.iter().map(|r| r.event_type.clone()))
            .collect();
        let mut topics: Vec<String> = config
            .stages
            .iter()
            .map(|s| s.input.get_ref().clone())
            .collect();
        topics.sort();
        topics.dedup();
        let stages = config
            .stages
            .iter()
            .map(|s| {
                let chain = s.chain.iter().map(|p| p.get_ref().clone()).collect();
                (s.name.get_ref().clone(), chain)
            })
            .collect();
        Self {
            routes,
            topics,
            stages,
        }
    }

    /// `Ok` if this host has `point`, else what it has instead.
    pub fn check(&self, point: &Point) -> Result<(), String> {
        let stage_names = || self.stages.keys().cloned().collect::<Vec<_>>().join(", ");
        match point {
            Point::Route { route } if !self.routes.contains(route) => Err(format!(
                "no ingest route `{route}` on this host (routes: {})",
                none_if_empty(&self.routes.join(", "))
            )),
            Point::Topic { topic } if !self.topics.contains(topic) => Err(format!(
                "no stage on this host reads topic `{topic}` (stage inputs: {})",
                none_if_empty(&self.topics.join(", "))
            )),
            Point::Plugin { stage, plugin } => match self.stages.get(stage) {
                None => Err(format!(
                    "no stage `{stage}` on this host (stages: {})",
                    none_if_empty(&stage_names())
                )),
                Some(chain) if !chain.contains(plugin) => Err(format!(
                    "stage `{stage}` has no plugin `{plugin}` in its chain ({})",
                    none_if_empty(&chain.join(" → "))
                )),
                Some(_) => Ok(()),
            },
            Point::DeadLetters { stage } if !self.stages.contains_key(stage) => Err(format!(
                "no stage `{stage}` on this host (stages: {})",
                none_if_empty(&stage_names())
            )),
            _ => Ok(()),
        }
    }
}

fn none_if_empty(list: &str) -> &str {
    if list.is_empty() { "none" } else { list }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_the_host_lacks_names_what_it_has() {
        let known = Known {
            routes: vec!["*".into()],
            topics: vec!["in".into()],
            stages: [("clean".to_string(), vec!["filter".into(), "redact".into()])].into(),
        };
        let plugin = |stage: &str, plugin: &str| Point::Plugin {
            stage: stage.into(),
            plugin: plugin.into(),
        };
        assert_eq!(known.check(&plugin("clean", "redact")), Ok(()));
        assert_eq!(
            known.check(&plugin("clean", "enrich")),
            Err("stage `clean` has no plugin `enrich` in its chain (filter → redact)".into())
        );
        assert_eq!(
            known.check(&plugin("dirty", "redact")),
            Err("no stage `dirty` on this host (stages: clean)".into())
        );
        assert!(known.check(&Point::Topic { topic: "in".into() }).is_ok());
        assert!(
            known
                .check(&Point::Topic {
                    topic: "out".into()
                })
                .is_err()
        );
        assert!(known.check(&Point::Route { route: "*".into() }).is_ok());
        assert!(
            known
                .check(&Point::DeadLetters { stage: "x".into() })
                .is_err()
        );
    }
}
