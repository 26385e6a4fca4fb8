//! The quickstart runs on the embedded broker with nothing installed:
//! 202 for a valid event, 400 naming a missing field, 413, 415.

use serde_json::Value;
use sluice_tests::{Sluice, repo_path};

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_serves_on_the_embedded_broker() -> anyhow::Result<()> {
    let sluice = Sluice::start_example("quickstart")?;
    let client = reqwest::Client::new();
    let events = std::fs::read_to_string(repo_path("examples/quickstart/events.ndjson"))?;
    let first = events.lines().next().unwrap_or_default().to_string();

    let single = client
        .post(format!("{}/v1/events", sluice.url))
        .header("content-type", "application/json")
        .body(first.clone())
        .send()
        .await?;
    assert_eq!(single.status(), 202, "{}", sluice.log());

    let batch = client
        .post(format!("{}/v1/events/batch", sluice.url))
        .header("content-type", "application/x-ndjson")
        .body(events.clone())
        .send()
        .await?;
    assert_eq!(batch.status(), 202);
    let body: Value = batch.json().await?;
    assert_eq!(body["accepted"], events.lines().count());

    let missing = first.replace("\"source\": \"web\", ", "");
    let response = client
        .post(format!("{}/v1/events", sluice.url))
        .header("content-type", "application/json")
        .body(missing)
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await?;
    assert_eq!(body["field"], "source", "{body}");

    let response = client
        .post(format!("{}/v1/events/batch", sluice.url))
        .header("content-type", "application/x-ndjson")
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await?;
    assert_eq!(response.status(), 413);

    let response = client
        .post(format!("{}/v1/events", sluice.url))
        .header("content-type", "application/xml")
        .body("<event/>")
        .send()
        .await?;
    assert_eq!(response.status(), 415);
    assert!(
        sluice.log().contains("in memory only"),
        "the embedded broker says data is in memory only"
    );
    Ok(())
}

/// Kills the process on drop, so a failing test leaves nothing running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sluice quickstart` (the README's first command) runs the pipeline
/// example: it posts the sample events and shows them transformed by the
/// WebAssembly chain; `sluice replay --brokers` and `sluice tail` reach its
/// embedded broker while it runs, and SIGTERM stops it cleanly.
#[test]
fn quickstart_command_shows_transformed_events_and_replays_them() -> anyhow::Result<()> {
    use std::process::Command;
    use std::time::{Duration, Instant};

    let dir = sluice_tests::TempDir::new("quickstart-cmd");
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let listen = format!("127.0.0.1:{}", sluice_tests::free_port());
    let mut host = Running(
        Command::new(sluice_tests::sluice_bin())
            .args(["quickstart", "--listen", &listen, "--repo"])
            .arg(repo_path(""))
            .env("SLUICE_LOG", "warn")
            .stdout(std::fs::File::create(&stdout_path)?)
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let printed = loop {
        let printed = std::fs::read_to_string(&stdout_path)?;
        if printed.contains("Ctrl-C stops it all") {
            break printed;
        }
        if let Some(status) = host.0.try_wait()? {
            panic!(
                "quickstart exited ({status}):\n{printed}\n{}",
                std::fs::read_to_string(&stderr_path)?
            );
        }
        assert!(
            Instant::now() < deadline,
            "no demo output in 120 s:\n{printed}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("{printed}");
    assert!(
        printed.contains(&format!("http://{listen}/v1/events")),
        "{printed}"
    );
    assert!(
        printed.contains("202 Accepted {\"accepted\":20}"),
        "{printed}"
    );
    // The 4 DEBUG events are dropped; the rest hashed and enriched.
    assert!(
        printed.contains("16 of them reached telemetry.clean"),
        "{printed}"
    );
    let shown: Vec<Value> = printed
        .lines()
        .filter_map(|l| l.strip_prefix("  {").map(|rest| format!("{{{rest}")))
        .map(|json| serde_json::from_str(&json))
        .collect::<Result<_, _>>()?;
    assert_eq!(shown.len(), 3, "{printed}");
    for value in &shown {
        let email = value["attributes"]["email"].as_str().unwrap_or_default();
        assert!(email.starts_with("sha256:"), "{value}");
        assert!(value["attributes"]["team"].is_string(), "{value}");
        assert_ne!(value["severity"], "DEBUG");
    }

    // Replay the quickstart's events from its running embedded broker.
    let bootstrap = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("Kafka (embedded)"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the broker's address is printed")
        .to_string();
    let replay = Command::new(sluice_tests::sluice_bin())
        .args(["replay", "-c"])
        .arg(repo_path("examples/pipeline/sluice.toml"))
        .args(["--brokers", &bootstrap, "--topic", "telemetry.events"])
        .args(["--from", "0", "--key", "user-2"])
        .output()?;
    let stderr = String::from_utf8_lossy(&replay.stderr);
    assert!(replay.status.success(), "replay failed: {stderr}");
    let replayed: Vec<Value> = String::from_utf8(replay.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(!replayed.is_empty(), "{stderr}");
    for record in &replayed {
        assert_eq!(record["key"], "user-2", "{record}");
        let email = record["value"]["attributes"]["email"]
            .as_str()
            .unwrap_or_default();
        assert!(email.starts_with("sha256:"), "{record}");
    }
    println!("replayed {} events of user-2:\n{stderr}", replayed.len());

    let tail = Command::new(sluice_tests::sluice_bin())
        .args(["tail", "telemetry.clean", "--limit", "2", "--url"])
        .arg(format!("http://{listen}"))
        .args(["--token", "pipeline-example-token"])
        .output()?;
    let tail_err = String::from_utf8_lossy(&tail.stderr);
    assert!(tail.status.success(), "{tail_err}");
    assert_eq!(String::from_utf8(tail.stdout)?.lines().count(), 2);

    Command::new("kill")
        .arg("-TERM")
        .arg(host.0.id().to_string())
        .status()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = host.0.try_wait()? {
            assert!(status.success(), "quickstart exit: {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "quickstart did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
