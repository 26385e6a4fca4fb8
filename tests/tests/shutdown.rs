//! Graceful shutdown on SIGTERM under ingest and stage load: ingest answers
//! 503 while the host drains, the process exits 0 within
//! `[shutdown] timeout_ms`, and a restart re-delivers no batch that was
//! already committed: after the restart has caught up, the output holds
//! every accepted event exactly once.

mod common;

use std::time::{Duration, Instant};

use common::{Load, broker, count, host_config, ids_in, wait_delivered};
use sluice_tests::{Sluice, free_port, topic_size};

const TIMEOUT_MS: u64 = 20_000;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_drains_exits_0_and_restart_redelivers_nothing() -> anyhow::Result<()> {
    let broker = broker()?;
    let port = free_port();
    let config = host_config(
        &broker.bootstrap(),
        port,
        &format!("\n[shutdown]\ntimeout_ms = {TIMEOUT_MS}\nlinger_ms = 1500\n"),
    );
    let mut sluice = Sluice::start(&config, port)?;
    let load = Load::start(&sluice.url, 50, Duration::from_millis(5), 0);
    let bootstrap = broker.bootstrap();
    sluice_tests::wait_until(Duration::from_secs(60), "stage output under load", || {
        topic_size(&bootstrap, common::OUTPUT).is_ok_and(|n| n >= 1_000)
    })?;

    let before = load.snapshot();
    let signalled = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = sluice.terminate(Duration::from_millis(TIMEOUT_MS + 5_000));
        (status, sluice)
    })
    .await?;
    let (status, sluice) = status;
    let status = status?;
    let took = signalled.elapsed();
    let report = load.finish().await;
    let log = sluice.log();
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(
        took < Duration::from_millis(TIMEOUT_MS),
        "exited {took:?} after SIGTERM, over the {TIMEOUT_MS} ms bound"
    );
    let draining_503 = report.statuses.get(&503).copied().unwrap_or(0)
        - before.statuses.get(&503).copied().unwrap_or(0);
    assert!(
        draining_503 > 0,
        "ingest answered 503 while draining (statuses {:?})",
        report.statuses
    );
    assert_eq!(report.unavailable_without_retry_after, 0);
    assert!(log.contains("sluice stopped"), "{log}");

    let at_exit = {
        let bootstrap = broker.bootstrap();
        tokio::task::spawn_blocking(move || ids_in(&bootstrap, common::OUTPUT)).await??
    };
    let before_restart = count(&report, &at_exit);
    assert_eq!(
        before_restart.duplicates, 0,
        "no duplicates before the restart"
    );

    // Restart with no new input: the stage resumes at the committed offsets.
    // Anything committed and read again would show up as a duplicate.
    let restarted = Sluice::start(&config, port)?;
    let ids = {
        let (bootstrap, report) = (broker.bootstrap(), report.clone());
        tokio::task::spawn_blocking(move || {
            wait_delivered(&bootstrap, &report, Duration::from_secs(120))
        })
        .await?
    };
    // Once the group has committed all of the input (lag 0), nothing can be
    // delivered again: read the final output then.
    {
        let bootstrap = broker.bootstrap();
        tokio::task::spawn_blocking(move || {
            sluice_tests::wait_caught_up(
                &bootstrap,
                "sluice-clean",
                common::INPUT,
                Duration::from_secs(60),
            )
        })
        .await??;
    }
    let ids = {
        let bootstrap = broker.bootstrap();
        let read =
            tokio::task::spawn_blocking(move || ids_in(&bootstrap, common::OUTPUT)).await??;
        if read.len() >= ids.len() { read } else { ids }
    };
    let counts = count(&report, &ids);
    println!(
        "shutdown: exit=0 in {:.2}s, 503s while draining={draining_503}; accepted={} delivered={} duplicates={} lost={} (output at exit={}, after restart={})",
        took.as_secs_f64(),
        counts.accepted,
        counts.delivered,
        counts.duplicates,
        counts.lost,
        at_exit.len(),
        ids.len()
    );
    assert_eq!(
        counts.lost,
        0,
        "accepted events missing\n{}",
        restarted.log()
    );
    assert_eq!(
        counts.duplicates,
        0,
        "a committed batch was delivered again after the restart\n{}",
        restarted.log()
    );
    Ok(())
}
