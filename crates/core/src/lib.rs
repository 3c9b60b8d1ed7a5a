//! The federation logic of Aiguillage, as a deterministic state machine that performs no
//! I/O: `Core::handle(now, input) -> Vec<Output>`. The node (libp2p, sled, executors) and the
//! simulator are both callers, so a simulation result is evidence about the real network.
//!
//! Time comes in as `now`; nothing here reads a clock, spawns a thread or draws randomness.
//! The core signs its own messages (signing is computation, not I/O) and hands them out as
//! [`Output::Send`] and [`Output::Publish`].
//!
//! Persistence: everything the node must keep is in [`State`] (serde), and
//! [`Core::take_dirty`] names what changed since the last call, so a store can write exactly
//! that before it lets the outputs of the same call leave the node.

pub mod devnet;
pub mod directory;
mod geo;
pub mod invariants;
pub mod kpi;
pub mod ledger;
mod overflow;
pub mod profile;
pub mod project_file;
mod referral;
pub mod routing;
pub mod timers;
pub mod verify_cache;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use aiguillage_wire::{
    Advert, DeclineReason, Dossier, Envelope, GpuCapacity, JobId, JobRequirements, JobSpec,
    MemberId, Message, MessageKind, ProgressState, ProjectCard, ProjectId, PublicKey, ReferralId,
    Roster, Service, SigningKey, Timestamp, TrustError, WireError,
};

pub use devnet::{DevnetAssumptions, DevnetCapacity};
pub use overflow::{HostPhase, HostedJob, JobPhase, OriginJob, Placement, PlacementOutcome};
pub use profile::{Confidence, Profile, ProfileError};
pub use referral::{
    AttemptOutcome, AttemptRecord, InReferral, InState, OutReferral, OutState, Transition,
};
pub use routing::{Explanation, RoutingPolicy};
pub use verify_cache::VerifyCache;

use directory::Directory;
use ledger::Ledger;
use timers::{Deadline, Timers};

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Tunable behaviour of a member's core. Defaults suit a production federation; the devnet
/// and the tests shorten the times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoreConfig {
    pub routing: RoutingPolicy,
    /// How long a target has to answer an offer.
    pub offer_ttl_ms: u64,
    /// How long the local operator has to decide on an offer that needs a decision.
    pub decision_ttl_ms: u64,
    /// Targets tried per referral before it is exhausted.
    pub max_attempts: u32,
    /// Referrals this member takes in at once (its advertised intake).
    pub referral_intake: u32,
    /// Re-send interval for messages still owed an answer.
    pub resend_ms: u64,
    /// Lifetime of referral and overflow message envelopes.
    pub message_ttl_ms: u64,
    pub advert_ttl_ms: u64,
    /// Capacity and intake changes are re-advertised at most this often; each advert costs
    /// every member a verification and a write.
    pub advert_min_interval_ms: u64,
    pub bid_window_ms: u64,
    pub max_bidders: usize,
    pub reserve_ttl_ms: u64,
    pub lease_ttl_ms: u64,
    pub heartbeat_ms: u64,
    /// How often a queued job that found no host is offered again.
    pub replace_retry_ms: u64,
    pub ledger_half_life_ms: u64,
    pub behaviour_half_life_ms: u64,
    /// Hosts overflow jobs for other members.
    pub takes_overflow: bool,
    pub accelerator: Option<String>,
    /// Countries whose members may send overflow here; empty means any.
    pub overflow_from: Vec<aiguillage_wire::CountryCode>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            routing: RoutingPolicy::default(),
            offer_ttl_ms: 2 * DAY,
            decision_ttl_ms: DAY,
            max_attempts: 4,
            referral_intake: 20,
            resend_ms: 5 * SECOND,
            message_ttl_ms: HOUR,
            advert_ttl_ms: 10 * MINUTE,
            advert_min_interval_ms: SECOND,
            bid_window_ms: 2 * SECOND,
            max_bidders: 8,
            reserve_ttl_ms: 10 * SECOND,
            lease_ttl_ms: 30 * SECOND,
            heartbeat_ms: 10 * SECOND,
            replace_retry_ms: 30 * SECOND,
            ledger_half_life_ms: 90 * DAY,
            behaviour_half_life_ms: 30 * DAY,
            takes_overflow: true,
            accelerator: None,
            overflow_from: Vec::new(),
        }
    }
}

/// Something that happened to the core.
#[derive(Clone, Debug)]
pub enum Input {
    /// The node started (or restarted from its state): publish the advert, arm timers.
    Start,
    /// A signed message from the network, gossip or direct.
    Received(Envelope),
    /// The local operator files a client project.
    FileProject { card: ProjectCard, dossier: Dossier },
    /// The local operator decides on an incoming referral that awaits a decision.
    Decide {
        referral: ReferralId,
        accept: bool,
        detail: String,
    },
    /// The local operator withdraws an outgoing referral.
    Withdraw {
        referral: ReferralId,
        detail: String,
    },
    /// The local operator reports progress on a referral this member took in.
    ReportProgress {
        referral: ReferralId,
        step: Service,
        state: ProgressState,
        note: String,
    },
    /// The local operator submits a GPU job.
    SubmitJob {
        requirements: JobRequirements,
        command: Vec<String>,
        env: Vec<aiguillage_wire::EnvVar>,
    },
    /// The local operator cancels a job it submitted.
    CancelJob { job: JobId },
    /// The local executor reports on a job it runs (`epoch` 0 for the member's own jobs).
    Executor {
        job: JobId,
        epoch: u64,
        event: ExecutorEvent,
    },
    /// The executor reports the GPUs this member really has.
    Capacity { total_gpus: u32 },
    /// Publish the advert now (an operator's request, or a benchmark's).
    PublishAdvert,
    /// A deadline may have passed.
    Tick,
}

/// What the local executor says about a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutorEvent {
    /// Waiting for resources in the executor (its own queue, or the scheduler's).
    Queued {
        reason: String,
    },
    Started,
    Finished {
        exit_code: i32,
        gpu_seconds: u64,
    },
    Failed {
        reason: String,
        gpu_seconds: u64,
    },
    TimedOut {
        gpu_seconds: u64,
    },
    Cancelled {
        gpu_seconds: u64,
    },
}

/// Something the caller must do.
#[derive(Clone, Debug)]
pub enum Output {
    /// Gossip to every member (adverts, rosters).
    Publish(Envelope),
    /// Send to one member.
    Send { to: MemberId, envelope: Envelope },
    /// Call `handle(.., Input::Tick)` at `at` (the earliest deadline changed).
    Wake { at: Timestamp },
    /// Start a job on the local executor.
    StartJob {
        job: JobId,
        epoch: u64,
        spec: JobSpec,
    },
    /// Cancel a job on the local executor.
    CancelJob { job: JobId, epoch: u64 },
    /// Append to the audit log.
    Audit(AuditEvent),
    /// Tell the local operator.
    Notify(Notification),
    /// A message was refused; count it by reason.
    Refused(Refusal),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: Timestamp,
    pub event: String,
    pub subject: String,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub from: Option<MemberId>,
    pub kind: Option<String>,
    pub reason: String,
    pub detail: String,
}

/// Events the local operator is told about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Notification {
    ProjectFiled {
        project: ProjectId,
        outcome: routing::Outcome,
        referral: Option<ReferralId>,
        explanation: String,
    },
    DecisionNeeded {
        referral: ReferralId,
        origin: MemberId,
        decide_by: Timestamp,
    },
    ReferralAccepted {
        referral: ReferralId,
        target: MemberId,
    },
    ReferralDeclined {
        referral: ReferralId,
        target: MemberId,
        reason: DeclineReason,
    },
    ReferralExhausted {
        referral: ReferralId,
    },
    ReferralProgress {
        referral: ReferralId,
        step: Service,
        state: ProgressState,
    },
    DossierReceived {
        referral: ReferralId,
        origin: MemberId,
    },
    ReferralWithdrawn {
        referral: ReferralId,
    },
    JobQueued {
        job: JobId,
        reason: String,
    },
    /// No host could start the job before its latest acceptable start.
    JobMissed {
        job: JobId,
        reason: String,
    },
    JobRunningLocally {
        job: JobId,
    },
    JobPlaced {
        job: JobId,
        host: MemberId,
        epoch: u64,
    },
    JobReplaced {
        job: JobId,
        lost_host: MemberId,
        epoch: u64,
    },
    JobFinished {
        job: JobId,
        host: Option<MemberId>,
        state: aiguillage_wire::JobState,
        exit_code: Option<i32>,
    },
}

/// A piece of state that changed and must be persisted before outputs leave.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StateKey {
    /// Counters, capacity, advert sequence, timers, roster.
    Meta,
    /// Observed behaviour of members (the listings are per member).
    Directory,
    /// One member's advert as held in the directory.
    Listing(MemberId),
    Ledger,
    Project(ProjectId),
    Outgoing(ReferralId),
    Incoming(ReferralId),
    Job(JobId),
    Hosted(JobId),
}

/// A client project as filed here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FiledProject {
    pub card: ProjectCard,
    pub filed_at: Timestamp,
    pub explanation: Explanation,
    pub referral: Option<ReferralId>,
}

/// The whole persistent state of a member's core.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub roster: Option<(Roster, Envelope)>,
    pub directory: Directory,
    pub ledger: Ledger,
    pub timers: Timers,
    pub advert_seq: u64,
    pub total_gpus: u32,
    pub next_id: u64,
    pub projects: BTreeMap<ProjectId, FiledProject>,
    pub outgoing: BTreeMap<ReferralId, OutReferral>,
    pub incoming: BTreeMap<ReferralId, InReferral>,
    pub jobs: BTreeMap<JobId, OriginJob>,
    pub hosted: BTreeMap<JobId, HostedJob>,
}

/// One member's federation logic.
pub struct Core {
    me: MemberId,
    key: SigningKey,
    authority: PublicKey,
    profile: Profile,
    config: CoreConfig,
    state: State,
    out: Vec<Output>,
    dirty: BTreeSet<StateKey>,
    announced_wake: Option<Timestamp>,
    /// Set when capacity or intake changed during a call, to republish once at its end.
    advert_stale: bool,
    /// When the advert was last published, and whether a deferred publish is scheduled.
    last_advert_at: Timestamp,
    advert_deferred: bool,
    /// Shared advert verifications, set only by a simulator running many cores (off in a node).
    verify_cache: Option<VerifyCache>,
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
            advert_deferred: false,
            verify_cache: None,
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
        if let Some((current, _)) = &self.state.roster {
            current.check_successor(&verified.message)?;
        }
        let mut roster = verified.message;
        roster.sort_members();
        self.state.roster = Some((roster, verified.envelope));
        let roster = &self.state.roster.as_ref().map(|(r, _)| r.clone());
        if let Some(r) = roster {
            for gone in self.state.directory.retain(|m| r.member(m).is_some()) {
                self.dirty.insert(StateKey::Listing(gone));
            }
        }
        self.dirty.insert(StateKey::Meta);
        Ok(())
    }

    /// Handles one input and returns what the caller must do, in order.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Output> {
        match input {
            Input::Start => self.on_start(now),
            Input::Received(envelope) => self.on_envelope(now, envelope),
            Input::FileProject { card, dossier } => self.file_project(now, card, dossier),
            Input::Decide {
                referral,
                accept,
                detail,
            } => self.operator_decides(now, &referral, accept, detail),
            Input::Withdraw { referral, detail } => self.operator_withdraws(now, &referral, detail),
            Input::ReportProgress {
                referral,
                step,
                state,
                note,
            } => self.operator_reports(now, &referral, step, state, note),
            Input::SubmitJob {
                requirements,
                command,
                env,
            } => self.submit_job(now, requirements, command, env),
            Input::CancelJob { job } => self.cancel_job(now, &job),
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
        self.dirty.insert(StateKey::Meta);
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
            }
        }
    }

    // ----- adverts, roster and the directory -----

    /// The advert this member publishes now.
    pub fn own_advert(&self) -> Advert {
        let free = self.free_gpus();
        let gpu = GpuCapacity {
            total: Some(self.state.total_gpus),
            free: Some(free),
            accelerator: self.config.accelerator.clone(),
            largest_job_gpus: Some(self.state.total_gpus),
            takes_overflow: self.config.takes_overflow && self.state.total_gpus > 0,
            overflow_from: self.config.overflow_from.clone(),
        };
        let intake = self
            .config
            .referral_intake
            .saturating_sub(self.intake_used());
        self.profile
            .advert(self.state.advert_seq, gpu, Some(intake))
    }

    fn publish_advert(&mut self, now: Timestamp) {
        // Monotonic across restarts without persisting every bump: never below the clock.
        self.state.advert_seq = (self.state.advert_seq + 1).max(now.millis());
        self.last_advert_at = now;
        let advert = self.own_advert();
        if let Some(envelope) = self.seal(now, &advert, self.config.advert_ttl_ms) {
            self.dirty.insert(StateKey::Meta);
            self.out.push(Output::Publish(envelope));
        }
    }

    fn on_envelope(&mut self, now: Timestamp, envelope: Envelope) {
        let kind = envelope.kind;
        let signer = envelope.signer.clone();
        if kind == MessageKind::Roster {
            if let Err(e) = self.install_roster(envelope, now) {
                // A roster we already hold is ordinary gossip, not an offence.
                if !matches!(e, TrustError::StaleSerial { current, offered } if current == offered)
                {
                    self.refuse(Some(signer), Some(kind), e.reason_label(), e.to_string());
                }
            } else {
                self.audit(now, "roster_installed", "roster", String::new());
            }
            return;
        }
        let verified = match &self.verify_cache {
            Some(cache) => cache.verify(&envelope, now),
            None => envelope.verify(now),
        };
        if let Err(e) = verified {
            self.refuse(Some(signer), Some(kind), e.reason_label(), e.to_string());
            return;
        }
        let authorised = match &self.state.roster {
            None => Err(TrustError::NotRostered(signer.clone())),
            Some((roster, _)) => roster.authorise(&envelope, now).map(|_| ()),
        };
        if let Err(e) = authorised {
            self.refuse(Some(signer), Some(kind), e.reason_label(), e.to_string());
            return;
        }
        if signer == self.me {
            return;
        }
        let result = match kind {
            MessageKind::Advert => self
                .decode(&envelope)
                .map(|a| self.on_advert(now, a, envelope)),
            MessageKind::Offer => self
                .decode(&envelope)
                .map(|m| self.on_offer(now, &signer, m)),
            MessageKind::Accept => self
                .decode(&envelope)
                .map(|m| self.on_accept(now, &signer, m)),
            MessageKind::Decline => self
                .decode(&envelope)
                .map(|m| self.on_decline(now, &signer, m)),
            MessageKind::Withdraw => self
                .decode(&envelope)
                .map(|m| self.on_withdraw(now, &signer, m)),
            MessageKind::HandOver => self
                .decode(&envelope)
                .map(|m| self.on_hand_over(now, &signer, m)),
            MessageKind::Progress => self
                .decode(&envelope)
                .map(|m| self.on_progress(now, &signer, m)),
            MessageKind::CallForBids => self
                .decode(&envelope)
                .map(|m| self.on_call_for_bids(now, &signer, m)),
            MessageKind::Bid => self.decode(&envelope).map(|m| self.on_bid(now, &signer, m)),
            MessageKind::Reserve => self
                .decode(&envelope)
                .map(|m| self.on_reserve(now, &signer, m)),
            MessageKind::Reserved => self
                .decode(&envelope)
                .map(|m| self.on_reserved(now, &signer, m)),
            MessageKind::Confirm => self
                .decode(&envelope)
                .map(|m| self.on_confirm(now, &signer, m)),
            MessageKind::Release => self
                .decode(&envelope)
                .map(|m| self.on_release(now, &signer, m)),
            MessageKind::Heartbeat => self
                .decode(&envelope)
                .map(|m| self.on_heartbeat(now, &signer, m)),
            MessageKind::JobStatus => self
                .decode(&envelope)
                .map(|m| self.on_job_status(now, &signer, m)),
            MessageKind::UsageReceipt => {
                let env = envelope.clone();
                self.decode(&envelope)
                    .map(|m| self.on_receipt(now, &signer, m, env))
            }
            MessageKind::ReceiptAck => self
                .decode(&envelope)
                .map(|m| self.on_receipt_ack(now, &signer, m)),
            MessageKind::Roster => Ok(()),
        };
        if let Err(e) = result {
            self.refuse(Some(signer), Some(kind), e.reason_label(), e.to_string());
        }
    }

    fn decode<M: Message>(&self, envelope: &Envelope) -> Result<M, WireError> {
        envelope.decode_payload::<M>()
    }

    fn on_advert(&mut self, now: Timestamp, advert: Advert, envelope: Envelope) {
        let entry = self.roster().and_then(|r| r.member(&advert.member));
        if let Some(e) = entry
            && (e.role != advert.role || e.country != advert.country)
        {
            let detail = format!(
                "advert says {} in {}, the roster says {} in {}",
                advert.role, advert.country, e.role, e.country
            );
            self.refuse(
                Some(advert.member.clone()),
                Some(MessageKind::Advert),
                "roster_mismatch",
                detail,
            );
            return;
        }
        let member = advert.member.clone();
        if self.state.directory.offer(advert, envelope, now) == directory::AdvertOutcome::Stored {
            self.dirty.insert(StateKey::Listing(member));
        }
    }

    /// Every envelope this member holds for the directory, its own advert included: what
    /// a peer that just connected is sent (anti-entropy).
    pub fn directory_envelopes(&self) -> Vec<Envelope> {
        let mut v: Vec<Envelope> = self
            .state
            .directory
            .fresh(Timestamp(0))
            .map(|l| l.envelope.clone())
            .collect();
        if let Some((_, roster)) = &self.state.roster {
            v.push(roster.clone());
        }
        v
    }

    pub fn roster(&self) -> Option<&Roster> {
        self.state.roster.as_ref().map(|(r, _)| r)
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

    fn intake_used(&self) -> u32 {
        self.state
            .incoming
            .values()
            .filter(|r| r.state.holds_intake())
            .count() as u32
    }

    // ----- helpers -----

    fn next_id(&mut self) -> u64 {
        self.state.next_id += 1;
        self.dirty.insert(StateKey::Meta);
        self.state.next_id
    }

    fn seal<M: Message>(&mut self, now: Timestamp, message: &M, ttl_ms: u64) -> Option<Envelope> {
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
                self.audit(now, "seal_failed", M::KIND.name(), e.to_string());
                None
            }
        }
    }

    fn send<M: Message>(&mut self, now: Timestamp, to: &MemberId, message: &M) {
        if let Some(envelope) = self.seal(now, message, self.config.message_ttl_ms) {
            self.out.push(Output::Send {
                to: to.clone(),
                envelope,
            });
        }
    }

    fn audit(&mut self, now: Timestamp, event: &str, subject: &str, detail: String) {
        self.out.push(Output::Audit(AuditEvent {
            at: now,
            event: event.to_owned(),
            subject: subject.to_owned(),
            detail,
        }));
    }

    fn notify(&mut self, n: Notification) {
        self.out.push(Output::Notify(n));
    }

    fn refuse(
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

    fn country_of(&self, member: &MemberId) -> Option<aiguillage_wire::CountryCode> {
        self.roster()
            .and_then(|r| r.member(member))
            .map(|e| e.country)
            .or_else(|| self.state.directory.get(member).map(|l| l.advert.country))
    }
}
