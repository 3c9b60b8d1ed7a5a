//! Every input goes to the core, what changed is persisted with one flush (group commit),
//! and only then do the outputs leave. A store that refuses a commit stops the node: its
//! memory already holds changes the store does not, and a restart resumes from the store.

use std::collections::{BTreeMap, BTreeSet};

use aiguillage_core::{
    HostPhase, InState, Input, JobPhase, Notification, OutState, Output, StateKey,
};
use aiguillage_net::{Channel, NetError, Reply, Topic, Verdict};
use aiguillage_store::Changes;
use aiguillage_wire::{Envelope, MessageKind, Timestamp};
use tracing::{debug, error, info, warn};

use super::{Node, Stop};
use crate::clock;

/// What one group commit holds until its flush.
#[derive(Default)]
pub(super) struct Batch {
    inputs: u32,
    outputs: Vec<Output>,
    dirty: BTreeSet<StateKey>,
    retired: Vec<(StateKey, Vec<u8>)>,
    /// Verdicts on direct messages, given once the batch is durable.
    replies: Vec<(Reply, Verdict)>,
}

/// Where an envelope sits in the snapshot that answers peers' sync requests: one entry per
/// advertising member and one for the roster.
fn sync_key(envelope: &Envelope) -> String {
    if envelope.kind == MessageKind::Roster {
        "roster".to_owned()
    } else {
        envelope.signer.to_string()
    }
}

fn channel_for(kind: MessageKind) -> Channel {
    match kind {
        MessageKind::Offer
        | MessageKind::Accept
        | MessageKind::Decline
        | MessageKind::Withdraw
        | MessageKind::HandOver
        | MessageKind::Progress => Channel::Referral,
        _ => Channel::Overflow,
    }
}

impl Node {
    /// Inputs from here to `end_batch` are committed together.
    pub(super) fn begin_batch(&mut self) {
        self.batch.get_or_insert_with(Batch::default);
    }

    /// Persists everything the batch changed with one flush, then acts on its outputs.
    /// A batch of reads only has nothing to keep.
    pub(super) fn end_batch(&mut self) {
        let Some(b) = self.batch.take() else {
            return;
        };
        if b.inputs > 0 {
            self.metrics.commit_batch.observe(b.inputs as f64);
            self.commit_and_act(b.outputs, b.dirty, b.retired);
        }
        for (reply, verdict) in b.replies {
            reply.send(match &self.stop {
                Some(_) => Verdict::refused("unavailable"),
                None => verdict,
            });
        }
    }

    /// Gives a verdict on a direct message once what it changed is durable: at the end of
    /// the open batch, or now.
    pub(super) fn reply_after_commit(&mut self, reply: Reply, verdict: Verdict) {
        match &mut self.batch {
            Some(b) => b.replies.push((reply, verdict)),
            None => reply.send(verdict),
        }
    }

    /// Feeds one input to the core, persists what changed, then acts on the outputs (or,
    /// inside a batch, leaves both to `end_batch`; nothing leaves the node before that).
    /// Returns the input's notifications. After a failed commit it does nothing: the node
    /// is stopping.
    pub(super) fn apply(&mut self, input: Input) -> Vec<Notification> {
        self.apply_with_refusal(input).0
    }

    /// [`Node::apply`], also returning the refusal the input caused, if any.
    pub(super) fn apply_with_refusal(
        &mut self,
        input: Input,
    ) -> (Vec<Notification>, Option<aiguillage_core::Refusal>) {
        if self.stop.is_some() {
            return (Vec::new(), None);
        }
        let outputs = self.core.handle(clock::now(), input);
        let refused = outputs.iter().find_map(|o| match o {
            Output::Refused(r) => Some(r.clone()),
            _ => None,
        });
        let dirty = self.core.take_dirty();
        let retired = self.core.take_retired();
        let notes = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Notify(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        if let Some(b) = &mut self.batch {
            b.inputs += 1;
            b.outputs.extend(outputs);
            b.dirty.extend(dirty);
            b.retired.extend(retired);
        } else {
            self.commit_and_act(outputs, dirty, retired);
        }
        (notes, refused)
    }

    /// Persists, then acts.
    fn commit_and_act(
        &mut self,
        outputs: Vec<Output>,
        dirty: BTreeSet<StateKey>,
        retired: Vec<(StateKey, Vec<u8>)>,
    ) {
        let audit: Vec<_> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Audit(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        let now = clock::now();
        let notices: Vec<_> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Notify(n) => Some((now, n.clone())),
                _ => None,
            })
            .collect();
        let changes = Changes {
            dirty: &dirty,
            retired: &retired,
            audit: &audit,
            notices: &notices,
        };
        let started = std::time::Instant::now();
        let committed = self.store.commit(self.core.state(), &changes, &self.key);
        self.metrics
            .store_flush_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = committed {
            error!(
                "cannot persist state: {e}. Stopping with {} output(s) unsent; restart the \
                 node once its store is writable",
                outputs.len()
            );
            self.stop = Some(Stop::StoreFailed(e.to_string()));
            return;
        }
        self.live.publish_changes(&dirty);
        let mut sync_entries: Vec<(String, Option<Vec<u8>>)> = dirty
            .iter()
            .filter_map(|k| match k {
                StateKey::Listing(m) => Some((
                    m.to_string(),
                    self.core
                        .state()
                        .directory
                        .get(m)
                        .map(|l| l.envelope.to_bytes()),
                )),
                _ => None,
            })
            .collect();
        for o in outputs {
            match o {
                Output::Publish(envelope) => {
                    let topic = if envelope.kind == MessageKind::Roster {
                        Topic::Roster
                    } else {
                        sync_entries.push((sync_key(&envelope), Some(envelope.to_bytes())));
                        Topic::Adverts
                    };
                    let client = self.client.clone();
                    let bytes = envelope.to_bytes();
                    self.metrics
                        .sent(envelope.kind.channel(), envelope.kind, bytes.len());
                    tokio::spawn(async move {
                        let _ = client.publish(topic, bytes).await;
                    });
                }
                Output::Send { to, envelope } => {
                    let Some(peer) = self.peers.peer_of(&to) else {
                        warn!(%to, "no peer id for member");
                        continue;
                    };
                    let client = self.client.clone();
                    let channel = channel_for(envelope.kind);
                    let kind = envelope.kind;
                    let bytes = envelope.to_bytes();
                    self.metrics.sent(kind.channel(), kind, bytes.len());
                    let refusals = self.refusals.clone();
                    tokio::spawn(async move {
                        match client.send(peer, channel, bytes).await {
                            Ok(()) => {}
                            Err(NetError::Refused { reason, .. }) => {
                                let _ = refusals.send((to, envelope, reason)).await;
                            }
                            Err(e) => debug!(
                                %to, %kind, "send failed (the core re-sends what is owed): {e}"
                            ),
                        }
                    });
                }
                Output::StartJob { job, epoch, spec } => self.executor.start(job, epoch, spec),
                Output::CancelJob { job, epoch } => self.executor.cancel(job, epoch),
                Output::ReadOutput {
                    job,
                    epoch,
                    to,
                    max_bytes,
                    // The wire already bounds max_bytes to OUTPUT_TAIL_BYTES; read off the loop.
                } => self.executor.read_output(job, epoch, to, max_bytes),
                Output::OutputArrived { host, output } => {
                    self.live.publish("job", output.job.to_string());
                    self.outputs.keep(host, clock::now(), output)
                }
                Output::Notify(n) => {
                    log_notification(&n);
                    self.count(&n);
                }
                Output::SealFailed {
                    kind,
                    subject,
                    error,
                } => {
                    error!(%kind, %subject, "a message could not be sealed and is not sent: {error}");
                    self.metrics
                        .seal_failures
                        .with_label_values(&[kind.name()])
                        .inc();
                }
                // Counted where the refused message was received.
                Output::Refused(_) | Output::Audit(_) | Output::Wake { .. } => {}
            }
        }
        if self.follow_roster()
            && let Some((_, roster)) = &self.core.state().roster
        {
            sync_entries.push((sync_key(roster), Some(roster.to_bytes())));
        }
        if !sync_entries.is_empty() {
            let _ = self.sync_updates.send(sync_entries);
        }
    }

    /// Hands the network task everything a sync request is answered with; commits keep it
    /// current from then on.
    pub(super) fn seed_sync(&self) {
        let entries = self
            .core
            .directory_envelopes()
            .iter()
            .map(|e| (sync_key(e), Some(e.to_bytes())))
            .collect();
        let _ = self.sync_updates.send(entries);
    }

    /// After a newer roster was installed: who may connect, and which peer is which member.
    /// Returns whether the roster changed.
    fn follow_roster(&mut self) -> bool {
        let Some(roster) = self.core.roster() else {
            return false;
        };
        if !self.peers.follow(roster) {
            return false;
        }
        self.clock.retain(|m| roster.member(m).is_some());
        // The members the roster removed leave the per-member gauges.
        self.metrics.peer_up.reset();
        let members = self.peers.rostered_up();
        self.metrics
            .members(members.iter().map(|(m, _)| m.as_str()));
        info!(
            serial = roster.serial,
            members = roster.members.len(),
            "roster updated"
        );
        let allowed = self.peers.allowed();
        let client = self.client.clone();
        tokio::spawn(async move {
            let _ = client.set_allowed(allowed).await;
        });
        true
    }

    /// A job started (here or at its first host): how long it waited since submission.
    fn observe_wait(&self, job: &aiguillage_wire::JobId) {
        // Only its first start counts: no placement of it was confirmed before this one.
        if let Some(j) = self.core.state().jobs.get(job)
            && j.placements.iter().filter(|p| p.confirmed).count()
                <= usize::from(matches!(j.phase, aiguillage_core::JobPhase::Leased { .. }))
        {
            let waited = crate::clock::now()
                .millis()
                .saturating_sub(j.submitted_at.millis());
            self.metrics
                .job_wait_seconds
                .observe(waited as f64 / 1000.0);
        }
    }

    fn count(&self, n: &Notification) {
        let m = &self.metrics;
        match n {
            Notification::ReferralAccepted { referral, .. }
            | Notification::ReferralDeclined { referral, .. } => {
                if let Some(a) = self
                    .core
                    .state()
                    .outgoing
                    .get(referral)
                    .and_then(|r| r.attempts.last())
                    && let Some(at) = a.answered_at
                {
                    m.offer_answer_seconds.observe(
                        (at.millis().saturating_sub(a.offered_at.millis())) as f64 / 1000.0,
                    );
                }
            }
            Notification::JobPlaced { job, .. } => {
                m.overflow.with_label_values(&["placed"]).inc();
                self.observe_wait(job);
            }
            Notification::JobRunningLocally { job } => self.observe_wait(job),
            Notification::JobReplaced { .. } => m.overflow.with_label_values(&["replaced"]).inc(),
            Notification::JobQueued { job, .. } => {
                // A job counts once, however often it waits again.
                let first =
                    self.core.state().jobs.get(job).is_some_and(|j| {
                        j.history.iter().filter(|t| t.state == "queued").count() == 1
                    });
                if first {
                    m.overflow.with_label_values(&["queued"]).inc();
                }
            }
            Notification::JobFinished { host: Some(_), .. } => {
                m.overflow.with_label_values(&["finished"]).inc()
            }
            _ => {}
        }
    }

    /// Brings the gauges that summarise the state up to date; done when they are read,
    /// not at every commit.
    pub(super) fn update_gauges(&self) {
        let s = self.core.state();
        let m = &self.metrics;
        let now = crate::clock::now();
        let secs = |ms: u64| ms as f64 / 1000.0;
        m.peers.set(self.peers.connected_count() as i64);
        for (member, up) in self.peers.rostered_up() {
            m.peer_up
                .with_label_values(&[member.as_str()])
                .set(i64::from(up));
        }
        m.clock_offset
            .set(self.clock.offset(now).map_or(0.0, |o| o.ms as f64 / 1000.0));
        m.peer_clock_ahead.reset();
        for (member, ahead) in self.clock.members(now) {
            m.peer_clock_ahead
                .with_label_values(&[member.as_str()])
                .set(ahead as f64 / 1000.0);
        }
        let fresh: Vec<_> = s.directory.fresh(now).collect();
        m.directory_members.set(fresh.len() as i64);
        m.directory_oldest_advert_age.set(
            fresh
                .iter()
                .map(|l| l.envelope.issued_at)
                .min()
                .map_or(0.0, |t| secs(now.millis().saturating_sub(t.millis()))),
        );
        if let Some((roster, envelope)) = &s.roster {
            m.roster_serial.set(roster.serial as i64);
            m.roster_expiry.set(secs(envelope.expires_at.millis()));
        }
        let mut referrals: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for state in OutState::ALL {
            referrals.insert(("out", state.tag()), 0);
        }
        for state in InState::TAGS {
            referrals.insert(("in", state), 0);
        }
        for r in s.outgoing.values() {
            *referrals.entry(("out", r.state.tag())).or_default() += 1;
        }
        let mut oldest_waiting: Option<Timestamp> = None;
        let mut pending = 0;
        for r in s.incoming.values() {
            *referrals.entry(("in", r.state.tag())).or_default() += 1;
            if matches!(r.state, InState::AwaitingDecision { .. }) {
                pending += 1;
                oldest_waiting =
                    Some(oldest_waiting.map_or(r.received_at, |t| t.min(r.received_at)));
            }
        }
        for ((direction, state), n) in referrals {
            m.referrals.with_label_values(&[direction, state]).set(n);
        }
        m.decisions_pending.set(pending);
        m.decision_oldest_age
            .set(oldest_waiting.map_or(0.0, |t| secs(now.millis().saturating_sub(t.millis()))));
        let mut jobs: BTreeMap<&str, i64> = JobPhase::TAGS.iter().map(|t| (*t, 0)).collect();
        for j in s.jobs.values() {
            *jobs.entry(j.phase.tag()).or_default() += 1;
        }
        for (phase, n) in jobs {
            m.jobs.with_label_values(&[phase]).set(n);
        }
        let mut hosted: BTreeMap<&str, i64> = HostPhase::TAGS.iter().map(|t| (*t, 0)).collect();
        for h in s.hosted.values() {
            *hosted.entry(h.phase.tag()).or_default() += 1;
        }
        for (phase, n) in hosted {
            m.hosted_jobs.with_label_values(&[phase]).set(n);
        }
        // The ledger's totals only grow: the counters follow them.
        let (mut hosted_s, mut consumed_s) = (0u64, 0u64);
        for (_, t) in s.ledger.peers() {
            hosted_s += t.gpu_seconds_hosted;
            consumed_s += t.gpu_seconds_consumed;
        }
        for (direction, total) in [("hosted", hosted_s), ("consumed", consumed_s)] {
            let c = m.gpu_seconds.with_label_values(&[direction]);
            c.inc_by(total.saturating_sub(c.get()));
        }
    }
}

/// Every referral and job transition, one INFO line (WARN when something was lost).
fn log_notification(n: &Notification) {
    let event = n.tag();
    match n {
        Notification::ReferralExhausted { .. } | Notification::JobMissed { .. } => {
            warn!(event, "{}", n.describe())
        }
        _ => info!(event, "{}", n.describe()),
    }
}
