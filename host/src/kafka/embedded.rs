//! The embedded broker: librdkafka's in-process mock cluster, for the
//! quickstart and local development. Memory only.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Context, anyhow};
use rdkafka::mocking::MockCluster;

enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: mpsc::Sender<anyhow::Result<()>>,
    },
    Stop,
}

/// An in-process Kafka-protocol broker. The mock cluster is not `Send`, so
/// it lives on a thread of its own that takes commands over a channel; it
/// stops when this handle is dropped.
pub struct EmbeddedBroker {
    bootstrap: String,
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Start a one-broker mock cluster.
    pub fn start() -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<String>>();
        let (commands, command_rx) = mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name("sluice-embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("mock cluster: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                while let Ok(command) = command_rx.recv() {
                    match command {
                        Command::CreateTopic {
                            name,
                            partitions,
                            reply,
                        } => {
                            let result = cluster
                                .create_topic(&name, partitions, 1)
                                .map_err(|e| anyhow!("cannot create topic {name}: {e}"));
                            let _ = reply.send(result);
                        }
                        Command::Stop => break,
                    }
                }
            })
            .context("cannot spawn the embedded broker thread")?;
        let bootstrap = ready_rx
            .recv()
            .context("embedded broker thread exited during start-up")??;
        Ok(Self {
            bootstrap,
            commands,
            thread: Some(thread),
        })
    }

    /// The broker's `bootstrap.servers` address.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Create a topic (a no-op if it exists with that many partitions).
    pub fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        let (reply, result) = mpsc::channel();
        self.commands
            .send(Command::CreateTopic {
                name: name.to_string(),
                partitions,
                reply,
            })
            .map_err(|_| anyhow!("embedded broker has stopped"))?;
        result
            .recv()
            .map_err(|_| anyhow!("embedded broker has stopped"))?
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
