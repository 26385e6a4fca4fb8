//! The fault suite (slow; runs with `SLUICE_FAULT=1`, which scripts/test.sh
//! sets): a real Kafka broker, the real `sluice` binary with HTTP ingest
//! feeding a wasm stage, a steady HTTP load, and then a fault. Each test
//! counts the event ids answered 202 that the stage should pass on, and
//! checks every one of them in the output topic, printing
//! `accepted=N delivered=N duplicates=N lost=0`.
//!
//! The malformed-input corpus is in `malformed.rs` and graceful shutdown in
//! `shutdown.rs` (both always run); fuzzing is in `fuzz/`.

mod common;

use std::time::{Duration, Instant};

use common::{Load, broker, count, fault_enabled, host_config, wait_delivered};
use sluice_tests::{Sluice, free_port, topic_size};

/// (a) SIGKILL the host under steady ingest and stage load, restart it, and
/// find every event id that was answered 202 in the output.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_ingest_and_stage_load_loses_no_accepted_event() -> anyhow::Result<()> {
    if !fault_enabled("sigkill") {
        return Ok(());
    }
    let broker = broker()?;
    let port = free_port();
    let config = host_config(&broker.bootstrap(), port, "");
    let mut sluice = Sluice::start(&config, port)?;
    let load = Load::start(&sluice.url, 50, Duration::from_millis(5), 0);

    // Let ingest and the stage both make progress, then kill mid-stream.
    let bootstrap = broker.bootstrap();
    sluice_tests::wait_until(Duration::from_secs(60), "stage output under load", || {
        topic_size(&bootstrap, common::OUTPUT).is_ok_and(|n| n >= 2_000)
    })?;
    sluice.kill();
    let at_kill = load.snapshot();
    let written_at_kill = topic_size(&bootstrap, common::OUTPUT)?;
    let input_at_kill = topic_size(&bootstrap, common::INPUT)?;
    assert!(
        (written_at_kill as usize) < at_kill.accepted.len(),
        "killed with the stage behind ingest: {written_at_kill} out of {} accepted",
        at_kill.accepted.len()
    );

    // The load keeps trying while the host is down (no answer, no 202).
    // Restart at once: the dead member's session (8 s) is still running;
    // the coordinator rebalances it away (see stage.rs).
    let restarted = Sluice::start(&config, port)?;
    let restart_at = Instant::now();
    while load.snapshot().accepted.len() <= at_kill.accepted.len() + 1_000 {
        assert!(
            restart_at.elapsed() < Duration::from_secs(60),
            "ingest accepts again after the restart\n{}",
            restarted.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = load.finish().await;
    assert!(
        report.no_answer > 0,
        "requests went unanswered while the host was dead"
    );

    let ids = {
        let (bootstrap, report) = (broker.bootstrap(), report.clone());
        tokio::task::spawn_blocking(move || {
            wait_delivered(&bootstrap, &report, Duration::from_secs(180))
        })
        .await?
    };
    let counts = count(&report, &ids);
    println!(
        "fault sigkill: accepted={} delivered={} duplicates={} lost={} (input at kill={input_at_kill}, output at kill={written_at_kill}, unanswered requests={})",
        counts.accepted, counts.delivered, counts.duplicates, counts.lost, report.no_answer
    );
    assert_eq!(
        counts.lost,
        0,
        "accepted events missing after the restart\n{}",
        restarted.log()
    );
    assert!(counts.accepted > 2_000);
    Ok(())
}

/// (b) Stop the broker for 30 s under load: ingest answers 503 with
/// Retry-After (never 202) while it is down, `/readyz` says so, and after it
/// returns the same host process accepts again and delivers every accepted
/// event through the stage.
#[tokio::test(flavor = "multi_thread")]
async fn broker_down_30s_under_load_answers_503_and_loses_nothing() -> anyhow::Result<()> {
    if !fault_enabled("broker outage") {
        return Ok(());
    }
    let mut broker = broker()?;
    let port = free_port();
    let sluice = Sluice::start(&host_config(&broker.bootstrap(), port, ""), port)?;
    let load = Load::start(&sluice.url, 20, Duration::from_millis(20), 0);
    let bootstrap = broker.bootstrap();
    sluice_tests::wait_until(Duration::from_secs(60), "stage output under load", || {
        topic_size(&bootstrap, common::OUTPUT).is_ok_and(|n| n >= 500)
    })?;

    broker.stop();
    let stopped = Instant::now();
    let before = load.snapshot();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut readyz_503 = false;
    let mut accepted_late = None;
    while stopped.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(r) = client.get(format!("{}/readyz", sluice.url)).send().await {
            readyz_503 |= r.status() == 503;
        }
        // Requests in flight when the broker died may still be acknowledged
        // within ack_timeout_ms (3 s); after that, nothing is.
        if stopped.elapsed() > Duration::from_secs(8) && accepted_late.is_none() {
            accepted_late = Some(load.snapshot().accepted.len());
        }
    }
    let during = load.snapshot();
    broker.restart()?;
    let restarted = Instant::now();
    let unavailable = during.statuses.get(&503).copied().unwrap_or(0)
        - before.statuses.get(&503).copied().unwrap_or(0);
    assert!(
        unavailable > 0,
        "ingest answered 503 while the broker was down"
    );
    assert_eq!(
        during.unavailable_without_retry_after, 0,
        "every 503 has Retry-After"
    );
    assert_eq!(
        accepted_late,
        Some(during.accepted.len()),
        "no 202 while the broker was down (after the in-flight acks)"
    );
    assert!(readyz_503, "/readyz answered 503 while the broker was down");

    while load.snapshot().accepted.len() < during.accepted.len() + 500 {
        assert!(
            restarted.elapsed() < Duration::from_secs(90),
            "ingest accepts again after the broker is back, without a restart\n{}",
            sluice.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovery = restarted.elapsed();
    let report = load.finish().await;
    let ids = {
        let (bootstrap, report) = (broker.bootstrap(), report.clone());
        tokio::task::spawn_blocking(move || {
            wait_delivered(&bootstrap, &report, Duration::from_secs(180))
        })
        .await?
    };
    let counts = count(&report, &ids);
    println!(
        "fault broker-outage: accepted={} delivered={} duplicates={} lost={} (503s during the outage={unavailable}, ingest recovered {:.1}s after the broker)",
        counts.accepted,
        counts.delivered,
        counts.duplicates,
        counts.lost,
        recovery.as_secs_f64()
    );
    assert_eq!(counts.lost, 0, "accepted events missing\n{}", sluice.log());
    Ok(())
}
