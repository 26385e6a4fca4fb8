//! `sluice run`: start everything the configuration enables (embedded or
//! real Kafka, stages, HTTP ingest, operator endpoints) and drain it all on
//! SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;

use crate::admin::{self, AdminState};
use crate::config::LoadedConfig;
use crate::ingest::Ingest;
use crate::kafka::{BrokerHealth, Kafka};
use crate::stage::Stage;
use crate::stage::{StageState, StatusBoard};

/// Every topic the configuration names.
pub fn topics(loaded: &LoadedConfig) -> Vec<String> {
    let config = &loaded.config;
    let mut topics = Vec::new();
    if let Some(ingest) = &config.ingest {
        topics.extend(ingest.routes.iter().map(|r| r.topic.get_ref().clone()));
    }
    for stage in &config.stages {
        topics.push(stage.input.get_ref().clone());
        topics.extend(stage.output.iter().map(|o| o.get_ref().clone()));
        topics.push(stage.dead_letter_topic());
    }
    topics.sort();
    topics.dedup();
    topics
}

/// Run until a shutdown signal, then drain and return.
pub async fn run(loaded: LoadedConfig) -> anyhow::Result<()> {
    run_until(loaded, shutdown_signal()).await
}

/// Run until `shutdown` completes, then drain and return.
pub async fn run_until(
    loaded: LoadedConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut host = start(loaded).await?;
    host.serve(shutdown).await?;
    host.drain().await
}

/// A started host: what [`Host::drain`] stops, in order.
struct Host {
    loaded: LoadedConfig,
    kafka: Kafka,
    board: StatusBoard,
    /// Tells stage threads to finish their batch and stop.
    stop: Arc<AtomicBool>,
    stage_threads: Vec<std::thread::JoinHandle<()>>,
    ingest: Option<Arc<Ingest>>,
    plugins: Option<Arc<crate::plugins::PluginService>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Closes the HTTP listener at the end of the drain.
    close: tokio::sync::watch::Sender<bool>,
}

/// Start everything the configuration enables: the broker connection,
/// schemas and registry, the plugin store, stages, ingest and the HTTP
/// listener.
async fn start(loaded: LoadedConfig) -> anyhow::Result<Host> {
    let config = &loaded.config;
    // Identity and uptime for `/admin/stats`, from the start of the start.
    let info = Arc::new(crate::stats::HostInfo::from_config(config));
    let metrics = match crate::metrics::install() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    };
    let kafka = Kafka::start(&config.kafka, &topics(&loaded)).await?;
    let mut schema_set = crate::schema::setup::schema_set(&loaded)?;
    // Without an external registry the host serves its own schemas.
    let registry = Arc::new(match &config.schema_registry {
        None => crate::schema::setup::builtin_registry(&loaded, &mut schema_set)?,
        Some(external) => {
            crate::schema::setup::external_registry(&loaded, &mut schema_set, external).await?
        }
    });
    schema_set.set_registry(registry.clone());
    let schemas = Arc::new(schema_set);
    let board = StatusBoard::default();
    let stop = Arc::new(AtomicBool::new(false));

    let mut stage_threads = Vec::new();
    // The plugin store (hot reload): read before stages start, so they run
    // the store's active versions.
    crate::plugins::check_config(&loaded)?;
    let mut plugins = None;
    if config.plugins.store {
        let runtime = crate::runtime::for_config(&loaded)?;
        plugins = Some(crate::plugins::PluginService::open(&loaded, &kafka, &runtime).await?);
    }
    let overrides = crate::plugins::overrides(plugins.as_ref().map(|(s, _, _)| s));
    if !config.stages.is_empty() {
        let runtime = crate::runtime::for_config(&loaded)?;
        let connections =
            crate::sink::Connections::open(&loaded, tokio::runtime::Handle::current())?;
        for stage_config in &config.stages {
            let name = stage_config.name.get_ref();
            board.set(name, StageState::Starting, "loading plugins");
            let mut stage = Stage::build_with(
                &loaded,
                stage_config,
                &kafka,
                &runtime,
                &connections,
                // The set carries how this stage frames its output and the
                // schema it reads records as.
                Arc::new(crate::schema::setup::stage_set(
                    &loaded,
                    &schemas,
                    stage_config,
                )?),
                &overrides,
            )?;
            if let Some((service, _, _)) = &plugins {
                stage.follow(service.updates());
            }
            stage_threads.push(stage.spawn(board.clone(), stop.clone())?);
        }
    }
    let plugins = match plugins {
        Some((service, changes, applied)) => {
            service.start(changes, applied)?;
            if config.plugins.watch {
                crate::plugins::watch_dir(
                    service.clone(),
                    loaded.resolve(config.plugins.dir.get_ref()),
                )?;
            }
            Some(service)
        }
        None => None,
    };

    let ingest = match &config.ingest {
        Some(ingest_config) => {
            let health = BrokerHealth::watch(kafka.reader()?, Duration::from_secs(1))?;
            Some((
                Arc::new(Ingest::new(
                    &loaded,
                    ingest_config,
                    &kafka,
                    health.clone(),
                    &schemas,
                )?),
                health,
            ))
        }
        None => None,
    };
    let health = match &ingest {
        Some((_, health)) => health.clone(),
        None => BrokerHealth::watch(kafka.reader()?, Duration::from_secs(1))?,
    };
    let ingest = ingest.map(|(ingest, _)| ingest);
    let tokens = crate::auth::Tokens::new(
        config
            .admin
            .named_tokens()
            .map_err(anyhow::Error::msg)
            .context("[admin]")?,
    );
    let dlq = crate::dlq::Dlq::new(&loaded, &kafka, schemas.clone(), plugins.clone())?;
    let admin_state = AdminState {
        health,
        tail: Some(Arc::new(crate::kafka::Tail::new(&kafka, schemas.clone())?)),
        tokens,
        board: board.clone(),
        metrics,
        plugins: plugins.clone(),
        taps: crate::tap::Known::from_config(config),
        dlq: Some(Arc::new(dlq)),
    };
    let admin_router =
        admin::router(admin_state.clone()).merge(admin::stats::router(admin::stats::StatsState {
            admin: admin_state,
            info,
        }));
    let admin_router = if config.schema_registry.is_none() {
        admin_router.merge(crate::schema::registry_api::router(registry.clone()))
    } else {
        admin_router
    };
    let (router, listen) = match (&ingest, &config.ingest, &config.admin.listen) {
        (Some(ingest), Some(ingest_config), _) => (
            Some(ingest.clone().router().merge(admin_router)),
            Some(ingest_config.listen.get_ref().clone()),
        ),
        (_, _, Some(listen)) => (Some(admin_router), Some(listen.get_ref().clone())),
        _ => (None, None),
    };

    // The HTTP listener stays open through the drain: ingest answers 503
    // and `/readyz` 503 until everything is flushed and committed.
    let (close, close_rx) = tokio::sync::watch::channel(false);
    let server = match (router, listen) {
        (Some(router), Some(listen)) => {
            Some(tokio::spawn(serve(bind(&listen).await?, router, close_rx)))
        }
        _ => None,
    };
    Ok(Host {
        loaded,
        kafka,
        board,
        stop,
        stage_threads,
        ingest,
        plugins,
        server,
        close,
    })
}

impl Host {
    /// Serve until `shutdown` completes. An HTTP server that ends on its own
    /// is a failure: the stages are told to stop and the error returned.
    async fn serve(&mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Some(handle) = &mut self.server else {
            shutdown.await;
            return Ok(());
        };
        tokio::select! {
            () = shutdown => Ok(()),
            result = handle => {
                self.stop.store(true, Ordering::SeqCst);
                match result {
                    Ok(Ok(())) => Err(anyhow::anyhow!("HTTP server stopped unexpectedly")),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(anyhow::anyhow!("HTTP server task failed: {e}")),
                }
            }
        }
    }

    /// Drain within `shutdown.timeout_ms`: ingest answers 503 and settles
    /// what it accepted, stages commit their batch in flight and stop, then
    /// the listener closes (after `shutdown.linger_ms`).
    async fn drain(self) -> anyhow::Result<()> {
        let Host {
            loaded,
            kafka,
            board,
            stop,
            stage_threads,
            ingest,
            plugins,
            server,
            close,
        } = self;
        let config = &loaded.config;
        let bound = Duration::from_millis(config.shutdown.timeout_ms);
        let linger = Duration::from_millis(config.shutdown.linger_ms);
        let signalled = tokio::time::Instant::now();
        let deadline = signalled + bound;
        tracing::info!(
            timeout_ms = config.shutdown.timeout_ms,
            "shutting down: ingest answers 503; draining ingest and stages"
        );
        board.set_draining();
        // Stages finish the batch in flight, commit it and stop, while ingest
        // settles the requests it accepted and flushes its producer.
        stop.store(true, Ordering::SeqCst);
        let ingest_drained = async {
            match &ingest {
                Some(ingest) => ingest.drain(deadline).await,
                None => true,
            }
        };
        let stages_stopped = async {
            while !stage_threads
                .iter()
                .all(std::thread::JoinHandle::is_finished)
            {
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            true
        };
        let (ingest_ok, stages_ok) = tokio::join!(ingest_drained, stages_stopped);
        tokio::time::sleep_until(signalled + linger).await;
        let _ = close.send(true);
        if let Some(server) = server {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left.max(Duration::from_millis(100)), server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server failed while closing"),
                Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
                Err(_) => tracing::warn!("HTTP connections still open at the drain bound"),
            }
        }
        for thread in stage_threads {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        if let Some(plugins) = &plugins {
            plugins.stop();
        }
        drop(kafka);
        if !(ingest_ok && stages_ok) {
            anyhow::bail!(
                "shutdown did not finish within shutdown.timeout_ms = {} ({}); work not committed is read again after a restart",
                config.shutdown.timeout_ms,
                match (ingest_ok, stages_ok) {
                    (false, false) => "ingest and stages",
                    (false, true) => "ingest acknowledgements",
                    _ => "stages",
                }
            );
        }
        tracing::info!(
            elapsed_ms = signalled.elapsed().as_millis() as u64,
            "sluice stopped"
        );
        Ok(())
    }
}

async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("bad listen address {listen}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "HTTP listening");
    Ok(listener)
}

async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    mut close: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = close.wait_for(|close| *close).await;
        })
        .await
        .context("HTTP server failed")
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
