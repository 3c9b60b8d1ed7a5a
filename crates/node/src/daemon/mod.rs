//! `aiguillage run`: the node. One task owns the core and the store; the network task, the
//! admin API and the executor talk to it through channels. Every call to the core is
//! persisted (and flushed) before any of its outputs leaves the node.
//!
//! The node stops in one way: its loop ends with a [`Stop`], whether a signal asked for it,
//! the store refused a commit, or a task it depends on went away.

mod calls;
mod commit;
mod peers;
mod start;
mod views;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aiguillage_core::{Core, Input, Notification};
use aiguillage_net::{Client, MessageAcceptance, NetEvent};
use aiguillage_store::Store;
use aiguillage_wire::{Envelope, MessageKind, PublicKey, SigningKey};
use anyhow::Result;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::api::ApiError;
use crate::executor::{Executor, Report};
use crate::metrics::Metrics;
use crate::{clock, files};

use commit::Batch;
use peers::Peers;
pub use start::open_store;
pub use views::RunInfo;

/// The exit status when the store refuses a commit (EX_IOERR).
pub const EXIT_STORE_FAILED: i32 = 74;

/// Network events, or admin calls, handled under one commit at most.
const MAX_BATCH: usize = 256;

/// Why the node's loop ended.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    #[error("asked to stop")]
    Signal,
    #[error(
        "the store refused a commit ({0}); nothing of it left the node. Restart once the store is writable"
    )]
    StoreFailed(String),
    #[error("the {0} task stopped")]
    TaskGone(&'static str),
}

pub(crate) struct Node {
    core: Core,
    authority: PublicKey,
    store: Store,
    key: SigningKey,
    client: Client,
    peers: Peers,
    metrics: Arc<Metrics>,
    executor: Executor,
    notices: Notices,
    sync_tx: mpsc::Sender<Vec<Vec<u8>>>,
    /// Changes to the sync snapshot, handed to the network task in the order they were made.
    sync_updates: mpsc::UnboundedSender<Vec<(String, Option<Vec<u8>>)>>,
    run_info: RunInfo,
    run_path: PathBuf,
    /// Open group commit: outputs and changed records held until one flush covers them.
    batch: Option<Batch>,
    /// Set once the node must stop; nothing is applied after it.
    stop: Option<Stop>,
}

/// The latest operator notifications, numbered.
#[derive(Default)]
struct Notices {
    list: VecDeque<(u64, Notification)>,
}

#[derive(Serialize)]
struct Notice<'a> {
    seq: u64,
    notification: &'a Notification,
}

impl Notices {
    const KEPT: usize = 1000;

    fn push(&mut self, n: Notification) {
        let seq = self.list.back().map_or(1, |(s, _)| s + 1);
        self.list.push_back((seq, n));
        if self.list.len() > Self::KEPT {
            self.list.pop_front();
        }
    }

    fn list(&self) -> Vec<Notice<'_>> {
        self.list
            .iter()
            .map(|(seq, notification)| Notice {
                seq: *seq,
                notification,
            })
            .collect()
    }
}

pub async fn run(config_path: &Path) -> Result<()> {
    let (mut node, mut inbox) = start::start(config_path).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = loop {
        if let Some(stop) = node.stop.take() {
            break stop;
        }
        let deadline = node.core.next_deadline();
        let sleep = async {
            match deadline {
                Some(at) => {
                    let ms = at.millis().saturating_sub(clock::now().millis());
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await
                }
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            ev = inbox.net.recv() => {
                let Some(ev) = ev else {
                    node.stop = Some(Stop::TaskGone("network"));
                    continue;
                };
                // Group commit: whatever else the network has delivered is handled too, and
                // all of it is made durable with one flush before any output leaves.
                node.begin_batch();
                node.on_net(ev);
                for _ in 1..MAX_BATCH {
                    match inbox.net.try_recv() {
                        Ok(ev) => node.on_net(ev),
                        Err(_) => break,
                    }
                }
                node.end_batch();
            }
            call = inbox.api.recv() => {
                let Some((call, reply)) = call else {
                    node.stop = Some(Stop::TaskGone("admin API"));
                    continue;
                };
                // Admin calls that arrive together share one commit too. Each answer waits
                // for the flush: a caller is never told of a change the store has not kept.
                node.begin_batch();
                let mut answered = vec![(node.on_api(call), reply)];
                for _ in 1..MAX_BATCH {
                    match inbox.api.try_recv() {
                        Ok((call, reply)) => answered.push((node.on_api(call), reply)),
                        Err(_) => break,
                    }
                }
                node.end_batch();
                for (answer, reply) in answered {
                    let answer = match &node.stop {
                        Some(stop) => Err(ApiError::unavailable(stop.to_string())),
                        None => answer,
                    };
                    let _ = reply.send(answer);
                }
            }
            report = inbox.executor.recv() => match report {
                Some(report) => node.on_executor(report),
                None => node.stop = Some(Stop::TaskGone("executor")),
            },
            Some(envelopes) = inbox.sync.recv() => {
                node.begin_batch();
                for bytes in envelopes {
                    node.receive(&bytes);
                }
                node.end_batch();
            }
            () = sleep => {
                node.apply(Input::Tick);
            }
            _ = tokio::signal::ctrl_c() => node.stop = Some(Stop::Signal),
            _ = terminate.recv() => node.stop = Some(Stop::Signal),
        }
    };
    match stop {
        Stop::Signal => {
            info!("shutting down");
            Ok(())
        }
        other => Err(other.into()),
    }
}

impl Node {
    /// Hands the executor every job the core believes running, so that it finds each again
    /// (or reports how it ended while the node was down, or that it vanished).
    fn recover_jobs(&mut self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let state = self.core.state();
        let mut jobs: Vec<_> = state
            .jobs
            .iter()
            .filter(|(_, j)| matches!(j.phase, aiguillage_core::JobPhase::Local))
            .map(|(id, j)| (id.clone(), 0, j.spec.clone(), true))
            .collect();
        jobs.extend(state.hosted.iter().filter_map(|(id, h)| match h.phase {
            aiguillage_core::HostPhase::Running { started_at, .. } => {
                Some((id.clone(), h.epoch, h.spec.clone(), started_at.is_some()))
            }
            _ => None,
        }));
        if jobs.is_empty() {
            return None;
        }
        info!(jobs = jobs.len(), "following jobs from before the restart");
        Some(self.executor.recover(jobs))
    }

    fn on_executor(&mut self, report: Report) {
        match report {
            Report::Job { job, epoch, event } => {
                self.apply(Input::Executor { job, epoch, event });
            }
            Report::Capacity(total_gpus) => {
                self.apply(Input::Capacity { total_gpus });
            }
        }
    }

    fn write_run_info(&self) {
        match serde_json::to_vec_pretty(&self.run_info) {
            Ok(bytes) => {
                if let Err(e) = files::write_atomic(&self.run_path, &bytes) {
                    warn!("cannot write {}: {e:#}", self.run_path.display());
                }
            }
            Err(e) => warn!("cannot encode run info: {e}"),
        }
    }

    /// Checks peer bytes up to roster membership; returns the envelope if it may go on.
    fn check(&self, bytes: &[u8]) -> Result<Envelope, (String, String)> {
        let envelope = Envelope::from_bytes(bytes)
            .map_err(|e| (e.reason_label().to_owned(), "-".to_owned()))?;
        let kind = envelope.kind.name().to_owned();
        envelope
            .verify(clock::now())
            .map_err(|e| (e.reason_label().to_owned(), kind.clone()))?;
        if envelope.kind == MessageKind::Roster {
            aiguillage_wire::Roster::verify_signed(envelope.clone(), &self.authority, clock::now())
                .map_err(|e| (e.reason_label().to_owned(), kind.clone()))?;
        } else {
            let roster = self
                .core
                .roster()
                .ok_or(("not_rostered".to_owned(), kind.clone()))?;
            roster
                .authorise(&envelope, clock::now())
                .map_err(|e| (e.reason_label().to_owned(), kind.clone()))?;
        }
        Ok(envelope)
    }

    /// Hands checked peer bytes to the core; returns whether they were acceptable.
    fn receive(&mut self, bytes: &[u8]) -> bool {
        match self.check(bytes) {
            Ok(envelope) => {
                if envelope.kind == MessageKind::Advert {
                    self.metrics.adverts_received.inc();
                }
                self.apply(Input::Received(envelope));
                true
            }
            Err((reason, kind)) => {
                self.metrics
                    .refused
                    .with_label_values(&[reason.as_str(), kind.as_str()])
                    .inc();
                false
            }
        }
    }

    fn on_net(&mut self, event: NetEvent) {
        match event {
            NetEvent::Gossip {
                source, id, data, ..
            } => {
                let acceptance = if self.receive(&data) {
                    MessageAcceptance::Accept
                } else {
                    MessageAcceptance::Reject
                };
                let client = self.client.clone();
                tokio::spawn(async move {
                    let _ = client.report(id, source, acceptance).await;
                });
            }
            NetEvent::Direct { data, .. } => {
                self.receive(&data);
            }
            NetEvent::PeerConnected(peer) => {
                self.peers.connected(peer);
                self.metrics.peers.set(self.peers.connected_count() as i64);
                debug!(member = ?self.peers.member_of(&peer), "peer connected");
                let client = self.client.clone();
                let tx = self.sync_tx.clone();
                tokio::spawn(async move {
                    match client.sync(peer).await {
                        Ok(envelopes) => {
                            let _ = tx.send(envelopes).await;
                        }
                        Err(e) => debug!(%peer, "directory sync failed: {e}"),
                    }
                });
            }
            NetEvent::PeerDisconnected(peer) => {
                self.peers.disconnected(&peer);
                self.metrics.peers.set(self.peers.connected_count() as i64);
            }
            NetEvent::Listening(addr) => {
                self.run_info
                    .listen
                    .push(format!("{addr}/p2p/{}", self.run_info.peer_id));
                self.write_run_info();
            }
        }
    }
}
