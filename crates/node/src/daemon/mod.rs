//! `aiguillage run`: the node. One task owns the core and the store; the network task, the
//! admin API and the executor talk to it through channels. Every call to the core is
//! persisted (and flushed) before any of its outputs leaves the node.
//!
//! The node stops in one way: its loop ends with a [`Stop`], whether a signal asked for it,
//! the store refused a commit, or a task it depends on went away.

mod calls;
mod clock_watch;
mod commit;
mod peers;
mod refusal_log;
mod start;
mod views;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aiguillage_core::{Core, Input};
use aiguillage_net::{Client, MessageAcceptance, NetEvent, Topic, Verdict};
use aiguillage_store::Store;
use aiguillage_wire::{Channel, MemberId, SigningKey, Timestamp};
use anyhow::Result;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::api::ApiError;
use crate::executor::{Executor, Report};
use crate::metrics::Metrics;
use crate::{clock, files};

use clock_watch::{ClockNews, ClockWatch};
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
    store: Store,
    key: SigningKey,
    client: Client,
    peers: Peers,
    metrics: Arc<Metrics>,
    executor: Executor,
    sync_tx: mpsc::Sender<(aiguillage_net::PeerId, Vec<Vec<u8>>)>,
    /// Refusals that this node's messages met, back from the tasks that sent them.
    refusals: mpsc::Sender<(MemberId, aiguillage_wire::Envelope, String)>,
    /// Changes to the sync snapshot, handed to the network task in the order they were made.
    sync_updates: mpsc::UnboundedSender<Vec<(String, Option<Vec<u8>>)>>,
    run_info: RunInfo,
    run_path: PathBuf,
    /// Open group commit: outputs and changed records held until one flush covers them.
    batch: Option<Batch>,
    /// Set once the node must stop; nothing is applied after it.
    stop: Option<Stop>,
    /// This clock against the members', from their messages' `issued_at`.
    clock: ClockWatch,
    /// Refusals, for the log.
    refusal_log: refusal_log::RefusalLog,
    /// The job output hosts sent back, newest kept (not stored: asked again after a restart).
    outputs: Outputs,
    /// What changed, for the open consoles.
    live: crate::console::Live,
    started_at: aiguillage_wire::Timestamp,
}

/// Fetched job output in memory, at most [`Outputs::KEPT`] jobs' worth.
#[derive(Default)]
pub(crate) struct Outputs(
    std::collections::VecDeque<(MemberId, Timestamp, aiguillage_wire::JobOutput)>,
);

impl Outputs {
    const KEPT: usize = 32;

    fn keep(&mut self, host: MemberId, at: Timestamp, output: aiguillage_wire::JobOutput) {
        self.0.retain(|(_, _, o)| o.job != output.job);
        if self.0.len() == Self::KEPT {
            self.0.pop_front();
        }
        self.0.push_back((host, at, output));
    }

    fn get(
        &self,
        job: &aiguillage_wire::JobId,
    ) -> Option<&(MemberId, Timestamp, aiguillage_wire::JobOutput)> {
        self.0.iter().find(|(_, _, o)| &o.job == job)
    }
}

pub async fn run(config_path: &Path) -> Result<()> {
    let (mut node, mut inbox) = start::start(config_path).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut summary = tokio::time::interval(std::time::Duration::from_secs(60));
    summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                let Some((caller, call, reply)) = call else {
                    node.stop = Some(Stop::TaskGone("admin API"));
                    continue;
                };
                // Admin calls that arrive together share one commit too. Each answer waits
                // for the flush: a caller is never told of a change the store has not kept.
                node.begin_batch();
                let mut answered = vec![(node.on_api(&caller, call), reply)];
                for _ in 1..MAX_BATCH {
                    match inbox.api.try_recv() {
                        Ok((caller, call, reply)) => {
                            answered.push((node.on_api(&caller, call), reply))
                        }
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
            Some((to, envelope, reason)) = inbox.refusals.recv() => {
                node.metrics
                    .sent_refused
                    .with_label_values(&[envelope.kind.name(), reason.as_str()])
                    .inc();
                debug!(%to, kind = %envelope.kind, %reason, "a message was refused");
                node.apply(Input::Refused { to, envelope, reason });
            }
            Some((peer, envelopes)) = inbox.sync.recv() => {
                node.begin_batch();
                for bytes in envelopes {
                    node.receive(peer, Channel::Sync, &bytes);
                }
                node.end_batch();
            }
            () = sleep => {
                node.apply(Input::Tick);
            }
            _ = summary.tick() => node.summarise_refusals(),
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

/// What gossipsub is told of a message: forward what was admitted; do not hold against the
/// relay what may be this node's own clock or an old copy; reject the rest.
fn gossip_verdict(v: &Verdict) -> MessageAcceptance {
    match v {
        Verdict::Admitted => MessageAcceptance::Accept,
        Verdict::Refused { reason, .. }
            if matches!(
                reason.as_str(),
                "expired" | "not_yet_valid" | "stale_serial" | "unavailable"
            ) =>
        {
            MessageAcceptance::Ignore
        }
        Verdict::Refused { .. } => MessageAcceptance::Reject,
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
                // The executor's word on a job run here, for this member or a remote one.
                match &event {
                    aiguillage_core::ExecutorEvent::Queued { .. } => {
                        debug!(%job, epoch, "executor: {}", event.describe())
                    }
                    _ => info!(%job, epoch, "executor: job {job} {}", event.describe()),
                }
                self.apply(Input::Executor { job, epoch, event });
            }
            Report::Capacity(total_gpus) => {
                self.apply(Input::Capacity { total_gpus });
            }
            Report::Output { to, output } => {
                self.apply(Input::OutputRead { to, output });
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

    /// Admits peer bytes that came on `channel` and hands them to the core; the verdict
    /// says whether they were admitted and acted on, or why not.
    fn receive(&mut self, peer: aiguillage_net::PeerId, channel: Channel, bytes: &[u8]) -> Verdict {
        let now = clock::now();
        let refusal = match self.core.admit_bytes(now, channel, bytes) {
            Ok(admitted) => {
                let kind = admitted.envelope.kind;
                let signer = admitted.envelope.signer.clone();
                self.metrics.received(channel, kind, bytes.len());
                self.peer_heard(&signer, now);
                // A clock sample only from the signer's own connection (a relayed or replayed
                // copy is as old as it is), and never from a sync answer's stored copies.
                if channel != Channel::Sync && self.peers.member_of(&peer) == Some(&signer) {
                    self.clock_sample(&signer, admitted.envelope.issued_at, now);
                }
                self.apply_with_refusal(Input::Received(admitted)).1
            }
            Err(r) => {
                if channel != Channel::Sync && matches!(r.reason, "expired" | "not_yet_valid") {
                    self.time_refused(peer, &r, bytes, now);
                }
                Some(r.into())
            }
        };
        match refusal {
            None => Verdict::Admitted,
            Some(r) => {
                debug!(from = ?r.from, reason = %r.reason, %channel, "refused: {}", r.detail);
                self.metrics
                    .refused(&r.reason, r.kind.as_deref().unwrap_or("-"), channel.name());
                let member = self.peers.name(&peer);
                self.metrics
                    .peer_refused
                    .with_label_values(&[member.as_str(), r.reason.as_str()])
                    .inc();
                if self.refusal_log.refused(&member, &r.reason) {
                    info!(
                        peer = %member,
                        reason = %r.reason,
                        %channel,
                        "refused a message from {member} ({}): {}; further refusals are summarised each minute",
                        r.reason,
                        r.detail
                    );
                }
                Verdict::refused(r.reason)
            }
        }
    }

    fn clock_sample(&mut self, member: &MemberId, issued_at: Timestamp, now: Timestamp) {
        match self.clock.sample(member, issued_at, now) {
            Some(ClockNews::Off(o)) => warn!(
                offset_s = o.ms as f64 / 1000.0,
                members = o.members,
                "this node's clock is {} than the members' (median of {}); messages past {} s are refused, check NTP",
                clock_watch::describe(o.ms),
                o.members,
                aiguillage_wire::MAX_CLOCK_SKEW_MS / 1000,
            ),
            Some(ClockNews::Back(o)) => info!(
                offset_s = o.ms as f64 / 1000.0,
                members = o.members,
                "this node's clock agrees with the members' again"
            ),
            None => {}
        }
    }

    /// A message refused for its time window: if a rostered member signed it, its
    /// `issued_at` is still a clock sample (verified at most every ten seconds per member).
    fn time_refused(
        &mut self,
        peer: aiguillage_net::PeerId,
        r: &aiguillage_core::Refused,
        bytes: &[u8],
        now: Timestamp,
    ) {
        // Only what a rostered member sent over its own connection: a name claimed in a
        // relayed or forged envelope costs nothing and is remembered nowhere.
        let Some(signer) = &r.signer else { return };
        if self.peers.member_of(&peer) != Some(signer) || !self.clock.may_witness(signer, now) {
            return;
        }
        if let Ok(envelope) = aiguillage_wire::Envelope::from_bytes(bytes)
            && self.core.time_witness(&envelope)
        {
            self.clock_sample(&envelope.signer, envelope.issued_at, now);
        }
    }

    /// The refusals of the last minute, one line per member that sent or relayed them.
    fn summarise_refusals(&mut self) {
        for (member, total, reasons) in self.refusal_log.summary() {
            info!(peer = %member, refused = total, "refused {total} messages from {member} in the last minute: {reasons}");
        }
    }

    /// When a member last sent something that was admitted.
    fn peer_heard(&self, member: &MemberId, now: Timestamp) {
        self.metrics
            .peer_last_message
            .with_label_values(&[member.as_str()])
            .set(now.millis() as f64 / 1000.0);
    }

    fn on_net(&mut self, event: NetEvent) {
        match event {
            NetEvent::Gossip {
                source,
                id,
                topic,
                data,
            } => {
                let channel = match topic {
                    Topic::Adverts => Channel::Adverts,
                    Topic::Roster => Channel::Roster,
                };
                let acceptance = gossip_verdict(&self.receive(source, channel, &data));
                let client = self.client.clone();
                tokio::spawn(async move {
                    let _ = client.report(id, source, acceptance).await;
                });
            }
            NetEvent::Direct {
                from,
                channel,
                data,
                reply,
            } => {
                let channel = match channel {
                    aiguillage_net::Channel::Referral => Channel::Referral,
                    aiguillage_net::Channel::Overflow => Channel::Overflow,
                };
                let verdict = self.receive(from, channel, &data);
                self.reply_after_commit(reply, verdict);
            }
            NetEvent::PeerConnected(peer) => {
                self.peers.connected(peer);
                let connected = self.peers.connected_count();
                self.metrics.peers.set(connected as i64);
                let member = self.peers.name(&peer);
                info!(peer = %member, connected, "member {member} connected");
                self.live.publish("peers", member.to_string());
                let client = self.client.clone();
                let tx = self.sync_tx.clone();
                tokio::spawn(async move {
                    match client.sync(peer).await {
                        Ok(envelopes) => {
                            let _ = tx.send((peer, envelopes)).await;
                        }
                        Err(e) => debug!(%peer, "directory sync failed: {e}"),
                    }
                });
            }
            NetEvent::PeerScores(scores) => {
                for (peer, score) in scores {
                    if let Some(member) = self.peers.member_of(&peer) {
                        self.metrics
                            .peer_score
                            .with_label_values(&[member.as_str()])
                            .set(score);
                    }
                }
            }
            NetEvent::PeerDisconnected(peer) => {
                self.peers.disconnected(&peer);
                let connected = self.peers.connected_count();
                self.live
                    .publish("peers", self.peers.name(&peer).to_string());
                self.metrics.peers.set(connected as i64);
                let member = self.peers.name(&peer);
                info!(peer = %member, connected, "member {member} left");
            }
            NetEvent::PeerAddresses { peer, addrs } => {
                let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                if let Err(e) = self.store.set_peer_addresses(&peer.to_string(), &addrs) {
                    warn!(%peer, "cannot keep the peer's addresses: {e}");
                }
            }
            NetEvent::DialFailed {
                peer,
                failures,
                error,
                retry_in,
                log,
            } => {
                let member = self.peers.name(&peer);
                self.metrics
                    .dial_failures
                    .with_label_values(&[member.as_str()])
                    .inc();
                if log {
                    warn!(
                        peer = %member,
                        failures,
                        retry_in_ms = retry_in.as_millis() as u64,
                        "cannot reach member: {error}"
                    );
                }
                self.peers.dial_failed(peer, failures, error);
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
