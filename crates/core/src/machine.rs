//! The machine: one member's [`Core`], the entry point [`Core::handle`], its timers, and the
//! helpers every part of the lifecycle uses to sign, send, audit and notify.

use std::collections::BTreeSet;

use aiguillage_wire::{
    Envelope, MemberId, Message, MessageKind, PublicKey, Roster, SigningKey, Timestamp, TrustError,
};

use crate::admission::{Admitted, Body, Verifications};
use crate::config::{CoreConfig, SECOND};
use crate::state::{JobPhase, State, StateKey};
use crate::timers::Deadline;
use std::sync::Arc;

use crate::{AuditEvent, Input, Notification, Output, Profile, Refusal, VerifyCache};

/// One member's federation logic.
pub struct Core {
    pub(crate) me: MemberId,
    pub(crate) key: SigningKey,
    pub(crate) authority: PublicKey,
    pub(crate) profile: Profile,
    pub(crate) config: CoreConfig,
    pub(crate) state: State,
    pub(crate) out: Vec<Output>,
    pub(crate) dirty: BTreeSet<StateKey>,
    pub(crate) announced_wake: Option<Timestamp>,
    /// Set when capacity or intake changed during a call, to republish once at its end.
    pub(crate) advert_stale: bool,
    /// When the advert was last published, and whether a deferred publish is scheduled.
    pub(crate) last_advert_at: Timestamp,
    /// The advert this member signed last (since it started).
    pub(crate) signed_advert: Option<Envelope>,
    /// Records that left memory, for the store's archive (see `take_retired`).
    pub(crate) retired_out: Vec<(StateKey, Vec<u8>)>,
    pub(crate) advert_deferred: bool,
    /// Shared advert verifications, set only by a simulator running many cores (off in a node).
    pub(crate) verify_cache: Option<VerifyCache>,
    pub(crate) verifications: Verifications,
    /// Output asked of a job's host and not yet answered: job → (host, epoch). Not kept
    /// across restarts: the operator asks again.
    pub(crate) pending_outputs: std::collections::BTreeMap<aiguillage_wire::JobId, (MemberId, u64)>,
}

/// The core could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("the signing key is not the key of {member} in the roster")]
    KeyNotRostered { member: MemberId },
    #[error(transparent)]
    Trust(#[from] TrustError),
}

impl Core {
    /// A core for `profile`'s member, signing with `key`, trusting rosters signed by
    /// `authority`, starting from `state` (default for a new member).
    pub fn new(
        profile: Profile,
        key: SigningKey,
        authority: PublicKey,
        config: CoreConfig,
        state: State,
    ) -> Core {
        Core {
            me: profile.id.clone(),
            key,
            authority,
            profile,
            config,
            state,
            out: Vec::new(),
            dirty: BTreeSet::new(),
            announced_wake: None,
            advert_stale: false,
            last_advert_at: Timestamp(0),
            signed_advert: None,
            retired_out: Vec::new(),
            advert_deferred: false,
            verify_cache: None,
            verifications: Verifications::default(),
            pending_outputs: Default::default(),
        }
    }

    /// Shares advert verifications with the other cores of this process (see
    /// [`crate::verify_cache`]). Off by default; a node never sets it.
    pub fn set_verify_cache(&mut self, cache: Option<VerifyCache>) {
        self.verify_cache = cache;
    }

    pub fn me(&self) -> &MemberId {
        &self.me
    }
    pub fn state(&self) -> &State {
        &self.state
    }
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.state.timers.next()
    }

    /// What changed since the last call.
    pub fn take_dirty(&mut self) -> BTreeSet<StateKey> {
        // Deadlines live in the meta record; any change to them is persisted with the
        // change that caused it (a receipt's re-send timer, say), wherever it was made.
        if self.state.timers.take_changed() {
            self.dirty.insert(StateKey::Meta);
        }
        std::mem::take(&mut self.dirty)
    }

    /// Installs a roster the node loaded from its configuration, checked like one received.
    pub fn install_roster(&mut self, envelope: Envelope, now: Timestamp) -> Result<(), TrustError> {
        let verified = Roster::verify_signed(envelope, &self.authority, now)?;
        self.install_verified_roster(verified.message, verified.envelope, now)
    }

    /// Installs a roster whose signature was checked: it must succeed the current one.
    fn install_verified_roster(
        &mut self,
        mut roster: Roster,
        envelope: Envelope,
        now: Timestamp,
    ) -> Result<(), TrustError> {
        if let Some((current, _)) = &self.state.roster {
            current.check_successor(&roster)?;
        }
        roster.sort_members();
        for gone in self.state.directory.retain(|m| roster.member(m).is_some()) {
            self.dirty.insert(StateKey::Listing(gone));
        }
        self.state.roster = Some(match &self.verify_cache {
            Some(cache) => cache.share(roster, envelope, now),
            None => (Arc::new(roster), Arc::new(envelope)),
        });
        self.dirty.insert(StateKey::Roster);
        Ok(())
    }

    /// Handles one input and returns what the caller must do, in order.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Output> {
        match input {
            Input::Start => self.on_start(now),
            Input::Received(admitted) => self.on_admitted(now, admitted),
            Input::Refused {
                to,
                envelope,
                reason,
            } => self.on_refused(now, &to, &envelope, &reason),
            Input::FileProject {
                card,
                dossier,
                choice,
                by,
            } => self.file_project(now, card, dossier, choice, &by),
            Input::Decide {
                referral,
                accept,
                reason,
                detail,
                by,
            } => self.operator_decides(now, &referral, accept, reason, detail, &by),
            Input::Withdraw {
                referral,
                detail,
                by,
            } => self.operator_withdraws(now, &referral, detail, &by),
            Input::ReportProgress {
                referral,
                step,
                state,
                note,
                by,
            } => self.operator_reports(now, &referral, step, state, note, &by),
            Input::ProjectProgress {
                project,
                step,
                state,
                note,
                by,
            } => self.project_progress(now, &project, step, state, note, &by),
            Input::AdviseAgainst {
                project,
                reason,
                by,
            } => self.advise_against(now, &project, reason, &by),
            Input::SubmitJob {
                requirements,
                command,
                env,
            } => self.submit_job(now, requirements, command, env),
            Input::CancelJob { job } => self.cancel_job(now, &job),
            Input::RequestOutput { job } => self.request_output(now, &job),
            Input::OutputRead { to, output } => self.send_output(now, &to, output),
            Input::Executor { job, epoch, event } => self.executor_event(now, &job, epoch, event),
            Input::Capacity { total_gpus } => {
                if self.state.total_gpus != total_gpus {
                    self.state.total_gpus = total_gpus;
                    self.dirty.insert(StateKey::Meta);
                    self.advert_stale = true;
                    self.start_queued_locally(now);
                }
            }
            Input::PublishAdvert => self.publish_advert(now),
            Input::Tick => self.on_tick(now),
        }
        if std::mem::take(&mut self.advert_stale) {
            let due = self
                .last_advert_at
                .saturating_add_ms(self.config.advert_min_interval_ms);
            if now >= due {
                self.publish_advert(now);
            } else if !self.advert_deferred {
                self.advert_deferred = true;
                self.state.timers.schedule(due, Deadline::AdvertChanged);
            }
        }
        if let Some(at) = self.state.timers.next()
            && self.announced_wake != Some(at)
        {
            self.announced_wake = Some(at);
            self.out.push(Output::Wake { at });
        }
        std::mem::take(&mut self.out)
    }

    fn on_start(&mut self, now: Timestamp) {
        self.publish_advert(now);
        self.state.timers.schedule(
            now.saturating_add_ms(self.config.advert_ttl_ms / 2),
            Deadline::Republish,
        );
        self.state.timers.schedule(
            now.saturating_add_ms(self.config.advert_ttl_ms),
            Deadline::DirectorySweep,
        );
        self.schedule_retention(now);
        self.dirty.insert(StateKey::Meta);
        // A store from before the roster had its own record holds it in the meta record,
        // which is no longer written with it: keep it under its own key from the start.
        self.dirty.insert(StateKey::Roster);
    }

    fn on_tick(&mut self, now: Timestamp) {
        let due = self.state.timers.due(now);
        if !due.is_empty() {
            self.dirty.insert(StateKey::Meta);
        }
        for d in due {
            match d {
                Deadline::AdvertChanged => {
                    self.advert_deferred = false;
                    self.publish_advert(now);
                }
                Deadline::Republish => {
                    self.publish_advert(now);
                    self.state.timers.schedule(
                        now.saturating_add_ms(self.config.advert_ttl_ms / 2),
                        Deadline::Republish,
                    );
                }
                Deadline::DirectorySweep => {
                    for gone in self.state.directory.sweep(now) {
                        self.dirty.insert(StateKey::Listing(gone));
                    }
                    let next = self
                        .state
                        .directory
                        .next_expiry()
                        .unwrap_or(now.saturating_add_ms(self.config.advert_ttl_ms))
                        .max(now.saturating_add_ms(SECOND));
                    self.state.timers.schedule(next, Deadline::DirectorySweep);
                }
                Deadline::Offer(id) => self.offer_deadline(now, &id),
                Deadline::HandOver(id) => self.hand_over_deadline(now, &id),
                Deadline::Decision(id) => self.decision_deadline(now, &id),
                Deadline::Answer(id) => self.answer_deadline(now, &id),
                Deadline::Bids(job) => self.bids_deadline(now, &job),
                Deadline::Reserve(job) => self.reserve_deadline(now, &job),
                Deadline::Lease(job) => self.lease_deadline(now, &job),
                Deadline::Confirm(job) => self.confirm_deadline(now, &job),
                Deadline::Replace(job) => self.replace_deadline(now, &job),
                Deadline::Hold(job) => self.hold_deadline(now, &job),
                Deadline::Heartbeat(job) => self.heartbeat_deadline(now, &job),
                Deadline::Receipt(job) => self.receipt_deadline(now, &job),
                Deadline::Retire => self.retire_deadline(now),
            }
        }
    }

    // ----- received messages -----

    /// Acts on an admitted message: its signature, trust and body were checked once, at
    /// admission.
    fn on_admitted(&mut self, now: Timestamp, admitted: Admitted) {
        let Admitted { envelope, body } = admitted;
        let signer = envelope.signer.clone();
        let kind = envelope.kind;
        if let Body::Roster(roster) = body {
            match self.install_verified_roster(roster, envelope, now) {
                Ok(()) => self.audit(now, "roster_installed", "roster", String::new()),
                // A roster we already hold is ordinary gossip, not an offence.
                Err(TrustError::StaleSerial { current, offered }) if current == offered => {}
                Err(e) => self.refuse(Some(signer), Some(kind), e.reason_label(), e.to_string()),
            }
            return;
        }
        if signer == self.me {
            return;
        }
        match body {
            Body::Roster(_) => {}
            Body::Advert(a) => self.on_advert(now, a, envelope),
            Body::Offer(m) => self.on_offer(now, &signer, m),
            Body::Accept(m) => self.on_accept(now, &signer, m),
            Body::Decline(m) => self.on_decline(now, &signer, m),
            Body::Withdraw(m) => self.on_withdraw(now, &signer, m),
            Body::HandOver(m) => self.on_hand_over(now, &signer, m),
            Body::Progress(m) => self.on_progress(now, &signer, m),
            Body::CallForBids(m) => self.on_call_for_bids(now, &signer, m),
            Body::Bid(m) => self.on_bid(now, &signer, m),
            Body::Reserve(m) => self.on_reserve(now, &signer, *m),
            Body::Reserved(m) => self.on_reserved(now, &signer, m),
            Body::Confirm(m) => self.on_confirm(now, &signer, m),
            Body::Release(m) => self.on_release(now, &signer, m),
            Body::Heartbeat(m) => self.on_heartbeat(now, &signer, m),
            Body::JobStatus(m) => self.on_job_status(now, &signer, m),
            Body::UsageReceipt(m) => self.on_receipt(now, &signer, m, envelope),
            Body::ReceiptAck(m) => self.on_receipt_ack(now, &signer, m),
            Body::OutputRequest(m) => self.on_output_request(now, &signer, m),
            Body::JobOutput(m) => self.on_job_output(now, &signer, *m),
        }
    }

    pub fn roster(&self) -> Option<&Roster> {
        self.state.roster.as_ref().map(|(r, _)| &**r)
    }

    // ----- capacity -----

    fn allocated_gpus(&self) -> u32 {
        let local: u32 = self
            .state
            .jobs
            .values()
            .filter(|j| matches!(j.phase, JobPhase::Local))
            .map(|j| j.spec.requirements.gpus)
            .sum();
        let hosted: u32 = self
            .state
            .hosted
            .values()
            .filter(|h| h.holds_gpus())
            .map(|h| h.spec.requirements.gpus)
            .sum();
        local + hosted
    }

    pub fn free_gpus(&self) -> u32 {
        self.state.total_gpus.saturating_sub(self.allocated_gpus())
    }

    pub(crate) fn intake_used(&self) -> u32 {
        self.state
            .incoming
            .values()
            .filter(|r| r.state.holds_intake())
            .count() as u32
    }

    // ----- helpers -----

    pub(crate) fn next_id(&mut self) -> u64 {
        self.state.next_id += 1;
        self.dirty.insert(StateKey::Meta);
        self.state.next_id
    }

    pub(crate) fn seal<M: Message>(
        &mut self,
        now: Timestamp,
        message: &M,
        ttl_ms: u64,
    ) -> Option<Envelope> {
        let ttl = ttl_ms.min(M::KIND.max_lifetime_ms());
        match Envelope::seal(
            message,
            &self.me,
            &self.key,
            now,
            now.saturating_add_ms(ttl),
        ) {
            Ok(e) => Some(e),
            Err(e) => {
                // Every input is checked against its messages when it is taken, so this
                // is a bug: said loudly, and the message is not tried again.
                let subject = message.subject().unwrap_or(M::KIND.name()).to_owned();
                self.audit(now, "seal_failed", &subject, format!("{}: {e}", M::KIND));
                self.out.push(Output::SealFailed {
                    kind: M::KIND,
                    subject: subject.clone(),
                    error: e.to_string(),
                });
                let detail = format!("{} could not be sealed: {e}", M::KIND);
                self.note_failure(now, M::KIND, &subject, "failed", &detail);
                None
            }
        }
    }

    pub(crate) fn send<M: Message>(&mut self, now: Timestamp, to: &MemberId, message: &M) {
        if let Some(subject) = message.subject()
            && self.send_blocked(to, M::KIND, subject)
        {
            return;
        }
        match self.seal(now, message, self.config.message_ttl_ms) {
            Some(envelope) => self.out.push(Output::Send {
                to: to.clone(),
                envelope,
            }),
            None => {
                if let Some(subject) = message.subject() {
                    self.state.blocked.insert((
                        to.clone(),
                        M::KIND.name().to_owned(),
                        subject.to_owned(),
                    ));
                    self.dirty.insert(StateKey::Meta);
                }
            }
        }
    }

    pub(crate) fn audit(&mut self, now: Timestamp, event: &str, subject: &str, detail: String) {
        self.out.push(Output::Audit(AuditEvent {
            at: now,
            event: event.to_owned(),
            subject: subject.to_owned(),
            detail,
        }));
    }

    pub(crate) fn notify(&mut self, n: Notification) {
        self.out.push(Output::Notify(n));
    }

    /// Refuses a message of `kind` from `from` (a member, once its signature checked).
    pub(crate) fn refuse_message(
        &mut self,
        from: &MemberId,
        kind: MessageKind,
        reason: &str,
        detail: impl Into<String>,
    ) {
        self.refuse(Some(from.clone()), Some(kind), reason, detail.into());
    }

    pub(crate) fn refuse(
        &mut self,
        from: Option<MemberId>,
        kind: Option<MessageKind>,
        reason: &str,
        detail: String,
    ) {
        self.out.push(Output::Refused(Refusal {
            from,
            kind: kind.map(|k| k.name().to_owned()),
            reason: reason.to_owned(),
            detail,
        }));
    }

    pub(crate) fn country_of(&self, member: &MemberId) -> Option<aiguillage_wire::CountryCode> {
        self.roster()
            .and_then(|r| r.member(member))
            .map(|e| e.country)
            .or_else(|| self.state.directory.get(member).map(|l| l.advert.country))
    }
}
