use super::*;
use std::path::Path;

fn parse(text: &str) -> Result<LoadedConfig, Diagnostics> {
    parse_str(text, Path::new("sluice.toml"))
}

const GOOD: &str = r#"
[kafka]
brokers = "embedded"

[ingest]
listen = "127.0.0.1:8080"

[[ingest.route]]
topic = "telemetry.events"
schema = "telemetry_event.avsc"
"#;

#[test]
fn a_good_config_parses_with_defaults() {
    let loaded = parse(GOOD).expect("valid");
    let ingest = loaded.config.ingest.expect("ingest");
    assert_eq!(ingest.ack, AckMode::Broker);
    assert_eq!(ingest.max_body_bytes, 1024 * 1024);
    assert_eq!(ingest.routes[0].event_type, "*");
    assert_eq!(ingest.routes[0].key_field, "entity_id");
    assert!(loaded.config.kafka.is_embedded());
}

#[test]
fn every_unknown_key_is_reported_with_its_line() {
    let text = GOOD
        .replace("listen =", "lisen = \"x\"\nlisten =")
        .replace("[kafka]", "[kafka]\nbrokrs = 1");
    let problems = parse(&text).expect_err("unknown keys");
    let rendered = problems.to_string();
    assert!(
        rendered.contains("sluice.toml:3:1: key `kafka.brokrs`: unknown key"),
        "{rendered}"
    );
    assert!(
        rendered.contains("sluice.toml:7:1: key `ingest.lisen`: unknown key"),
        "{rendered}"
    );
}

#[test]
fn semantic_problems_are_all_reported_together() {
    let text = GOOD
        .replace("127.0.0.1:8080", "localhost:eighty")
        .replace("[kafka]", "[kafka]\ncolour = \"blue\"");
    let problems = parse(&text).expect_err("two problems").0;
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(
        (problems[0].key.as_str(), problems[0].line),
        ("kafka.colour", 3)
    );
    assert_eq!(
        (problems[1].key.as_str(), problems[1].line),
        ("ingest.listen", 7)
    );
}

#[test]
fn type_errors_name_the_key_and_line() {
    let text = GOOD.replace("[ingest]", "[ingest]\nmax_body_bytes = \"big\"");
    let problems = parse(&text).expect_err("type error").0;
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].line, 6, "{problems:?}");
    assert!(problems[0].key.contains("max_body_bytes"), "{problems:?}");
}

#[test]
fn syntax_errors_have_a_position() {
    let problems = parse("[kafka\nbrokers = 1").expect_err("syntax").0;
    assert_eq!(problems[0].line, 1);
}

#[test]
fn duplicate_keys_are_named() {
    let text = GOOD.replace("listen =", "max_in_flight = 5\nmax_in_flight = 6\nlisten =");
    let problems = parse(&text).expect_err("duplicate").0;
    assert_eq!(
        (problems[0].line, problems[0].key.as_str()),
        (7, "max_in_flight"),
        "{problems:?}"
    );
}

#[test]
fn stage_checks() {
    let text = format!(
        "{GOOD}\n[[stage]]\nname = \"a\"\ninput = \"in\"\nconnections = [\"pg\"]\n\n[[stage]]\nname = \"a\"\ninput = \"in\"\noutput = \"out\"\n"
    );
    let rendered = parse(&text).expect_err("stage problems").to_string();
    assert!(rendered.contains("needs `output`"), "{rendered}");
    assert!(rendered.contains("no `[connections.pg]`"), "{rendered}");
    assert!(rendered.contains("duplicate stage name `a`"), "{rendered}");
}

#[test]
fn env_interpolation() {
    // SAFETY: tests in this module do not read this variable concurrently.
    unsafe { std::env::set_var("SLUICE_TEST_SECRET", "s3cret") };
    assert_eq!(
        interpolate_env("key-${SLUICE_TEST_SECRET}").unwrap(),
        "key-s3cret"
    );
    assert_eq!(interpolate_env("$${LITERAL}").unwrap(), "${LITERAL}");
    assert_eq!(
        interpolate_env("${SLUICE_TEST_UNSET_VAR:-postgres://db/x}").unwrap(),
        "postgres://db/x"
    );
    assert_eq!(
        interpolate_env("key-${SLUICE_TEST_SECRET:-unused}").unwrap(),
        "key-s3cret"
    );
    assert!(
        interpolate_env("${SLUICE_TEST_UNSET_VAR}")
            .unwrap_err()
            .contains("not set")
    );
}

#[test]
fn zero_batch_size_and_delivery_timeout_are_refused_by_key() {
    let text = format!(
        "{GOOD}\n[[stage]]\nname = \"s\"\ninput = \"telemetry.events\"\noutput = \"out\"\nbatch_size = 0\ndelivery_timeout_ms = 0\n"
    );
    let rendered = parse(&text).expect_err("two problems").to_string();
    assert!(
        rendered.contains("batch_size`: must be at least 1"),
        "{rendered}"
    );
    assert!(
        rendered.contains("delivery_timeout_ms`: must be at least 1"),
        "{rendered}"
    );
    let defaults =
        parse(&text.replace("batch_size = 0\ndelivery_timeout_ms = 0\n", "")).expect("valid");
    assert_eq!(defaults.config.stages[0].delivery_timeout_ms, 30_000);
}

#[test]
fn durations_take_numbers_or_duration_strings() {
    let text = r#"
[kafka]
brokers = "embedded"

[ingest]
listen = "127.0.0.1:8080"
ack_timeout = "2s"
retry_after_secs = "1m"

[[ingest.route]]
topic = "telemetry.events"
schema = "telemetry_event.avsc"

[plugins.limits]
timeout = "1.5s"

[shutdown]
timeout_ms = 10000
linger = "250ms"

[[stage]]
name = "s"
input = "a"
output = "b"
batch_wait_ms = "50ms"
delivery_timeout = "1m"
"#;
    let loaded = parse(text).expect("valid");
    let ingest = loaded.config.ingest.as_ref().unwrap();
    assert_eq!(ingest.ack_timeout_ms, 2000);
    assert_eq!(ingest.retry_after_secs, 60);
    assert_eq!(loaded.config.plugins.limits.timeout_ms, 1500);
    assert_eq!(loaded.config.shutdown.timeout_ms, 10_000);
    assert_eq!(loaded.config.shutdown.linger_ms, 250);
    assert_eq!(loaded.config.stages[0].batch_wait_ms, 50);
    assert_eq!(loaded.config.stages[0].delivery_timeout_ms, 60_000);
}

#[test]
fn a_bad_duration_names_file_line_and_key() {
    let text = format!("{GOOD}\n[shutdown]\ntimeout_ms = \"5 parsecs\"\n");
    let rendered = parse(&text).expect_err("bad duration").to_string();
    assert!(
        rendered.contains(
            "sluice.toml:13:14: key `shutdown.timeout_ms`: `5 parsecs` is not a duration"
        ),
        "{rendered}"
    );
    let text = format!("{GOOD}\n[shutdown]\nlinger = \"1500us\"\n");
    let rendered = parse(&text).expect_err("sub-millisecond").to_string();
    assert!(
        rendered.contains("not a whole number of milliseconds"),
        "{rendered}"
    );
    let text = format!("{GOOD}\n[shutdown]\nlinger = -5\n");
    let rendered = parse(&text).expect_err("negative").to_string();
    assert!(rendered.contains("cannot be negative"), "{rendered}");
}

/// Every `examples/**/*.toml` loads without a problem, and its typed form
/// written back to TOML loads to the same configuration. (`sluice validate`
/// of the examples, plugins included, is in tests/tests/cli.rs.)
#[test]
fn every_example_config_loads_and_round_trips() {
    fn tomls(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.ends_with("target") {
                tomls(&path, out);
            } else if path.extension().is_some_and(|e| e == "toml")
                && path.file_name().is_some_and(|n| n != "Cargo.toml")
            {
                out.push(path);
            }
        }
    }
    let mut found = Vec::new();
    tomls(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"),
        &mut found,
    );
    assert!(found.len() >= 4, "{found:?}");
    for path in found {
        let loaded = load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let written = toml::to_string(&loaded.config)
            .unwrap_or_else(|e| panic!("{}: cannot write back: {e}", path.display()));
        let again = parse_str(&written, &path)
            .unwrap_or_else(|e| panic!("{} written back:\n{written}\n{e}", path.display()));
        assert_eq!(again.config, loaded.config, "{}", path.display());
    }
}

#[test]
fn a_bad_log_filter_names_its_line() {
    let loaded = parse(&format!("{GOOD}\n[log]\nfilter = \"info,sluice=debug\"\n")).expect("valid");
    assert_eq!(
        loaded.config.log.filter.map(|f| f.into_inner()).as_deref(),
        Some("info,sluice=debug")
    );
    let rendered = parse(&format!("{GOOD}\n[log]\nfilter = \"info,sluice=loud\"\n"))
        .expect_err("bad filter")
        .to_string();
    assert!(
        rendered.contains("sluice.toml:13:10: key `log.filter`: not a log filter"),
        "{rendered}"
    );
}

#[test]
fn exactly_once_is_refused_on_a_sink_stage_with_the_reason() {
    let text = format!(
        "{GOOD}\n[connections.db]\ntype = \"postgres\"\nurl = \"postgres://x@localhost/db\"\n\n[[stage]]\nname = \"s\"\ninput = \"telemetry.events\"\nsink = \"postgres-sink\"\nconnections = [\"db\"]\ndelivery = \"exactly-once\"\n"
    );
    let rendered = parse(&text).expect_err("refused").to_string();
    assert!(
        rendered.contains("key `stage[0].delivery`: exactly-once needs a topic `output`"),
        "{rendered}"
    );
    assert!(rendered.contains("idempotent sink"), "{rendered}");
}

#[test]
fn delivery_defaults_to_at_least_once_and_exactly_once_parses() {
    let stage = "\n[[stage]]\nname = \"s\"\ninput = \"telemetry.events\"\noutput = \"out\"\n";
    let loaded = parse(&format!("{GOOD}{stage}")).expect("valid");
    assert_eq!(loaded.config.stages[0].delivery(), Delivery::AtLeastOnce);
    let loaded = parse(&format!("{GOOD}{stage}delivery = \"exactly-once\"\n")).expect("valid");
    let stage_config = &loaded.config.stages[0];
    assert_eq!(stage_config.delivery(), Delivery::ExactlyOnce);
    assert_eq!(stage_config.transaction_interval_ms, 100);
    assert_eq!(stage_config.transaction_timeout_ms, 10_000);
    let rendered = parse(&format!(
        "{GOOD}{stage}delivery = \"exactly-once\"\ntransaction_timeout_ms = 50\n"
    ))
    .expect_err("too short")
    .to_string();
    assert!(
        rendered.contains("transaction_timeout_ms`: must be at least 1000"),
        "{rendered}"
    );
    let rendered = parse(&format!("{GOOD}{stage}delivery = \"exactly-twice\"\n"))
        .expect_err("unknown")
        .to_string();
    assert!(rendered.contains("delivery"), "{rendered}");
}

#[test]
fn admin_tokens_have_names_and_distinct_secrets() {
    let text = format!(
        "{GOOD}\n[admin]\ntoken = \"root-secret\"\n[admin.tokens]\nalice = \"alice-secret\"\n\"bob-2\" = \"bob-secret\"\n"
    );
    let loaded = parse(&text).expect("valid");
    assert_eq!(
        loaded.config.admin.named_tokens().unwrap(),
        vec![
            ("admin".to_string(), "root-secret".to_string()),
            ("alice".to_string(), "alice-secret".to_string()),
            ("bob-2".to_string(), "bob-secret".to_string()),
        ]
    );
    let text = format!(
        "{GOOD}\n[admin]\ntoken = \"same\"\ntokenz = 1\n[admin.tokens]\nadmin = \"x\"\nalice = \"same\"\n\"a b\" = \"y\"\ncarol = \"\"\n"
    );
    let problems = parse(&text).expect_err("bad tokens").to_string();
    for (line, key, what) in [
        (16, "admin.tokens.admin", "is the name of `[admin] token`"),
        (17, "admin.tokens.alice", "the same secret as `admin`'s"),
        (18, "admin.tokens.a b", "a token name is ASCII"),
        (19, "admin.tokens.carol", "must not be empty"),
        (14, "admin.tokenz", "unknown key"),
    ] {
        assert!(
            problems
                .lines()
                .any(|l| l.starts_with(&format!("sluice.toml:{line}:"))
                    && l.contains(&format!("key `{key}`: "))
                    && l.contains(what)),
            "{key} {what}:\n{problems}"
        );
    }
}
