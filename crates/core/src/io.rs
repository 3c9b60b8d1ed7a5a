//! What crosses the core's boundary: the inputs it is given, the outputs it asks for, and
//! the notifications and refusals it reports.

use serde::{Deserialize, Serialize};

use aiguillage_wire::{
    DeclineReason, Dossier, Envelope, JobId, JobRequirements, JobSpec, JobState, MemberId,
    ProgressState, ProjectCard, ProjectId, ReferralId, Service, Timestamp,
};

use crate::routing;

/// Something that happened to the core.
#[derive(Clone, Debug)]
pub enum Input {
    /// The node started (or restarted from its state): publish the advert, arm timers.
    Start,
    /// A message from the network that passed admission ([`crate::Core::admit`]).
    Received(crate::Admitted),
    /// A peer answered a message this member sent it with a refusal (its §3 reason).
    Refused {
        to: MemberId,
        envelope: Envelope,
        reason: String,
    },
    /// The local operator files a client project. `by` names who (for the audit log).
    FileProject {
        card: ProjectCard,
        dossier: Dossier,
        choice: FilingChoice,
        by: String,
    },
    /// The local operator decides on an incoming referral that awaits a decision.
    Decide {
        referral: ReferralId,
        accept: bool,
        /// Why, for a decline (`operator_declined` when none is given).
        reason: Option<DeclineReason>,
        detail: String,
        by: String,
    },
    /// The local operator withdraws an outgoing referral.
    Withdraw {
        referral: ReferralId,
        detail: String,
        by: String,
    },
    /// The local operator reports progress on a referral this member took in.
    ReportProgress {
        referral: ReferralId,
        step: Service,
        state: ProgressState,
        note: String,
        by: String,
    },
    /// The local adviser moves a project served here along its journey.
    ProjectProgress {
        project: ProjectId,
        step: Service,
        state: ProgressState,
        note: String,
        by: String,
    },
    /// The local adviser tells the company the project is not worth doing.
    AdviseAgainst {
        project: ProjectId,
        reason: String,
        by: String,
    },
    /// The local operator submits a GPU job.
    SubmitJob {
        requirements: JobRequirements,
        command: Vec<String>,
        env: Vec<aiguillage_wire::EnvVar>,
    },
    /// The local operator cancels a job it submitted.
    CancelJob { job: JobId },
    /// The local operator asks the host of a job it submitted for the end of its output.
    RequestOutput { job: JobId },
    /// The node read the end of a hosted job's output, which `to` (its origin) asked for.
    OutputRead {
        to: MemberId,
        output: aiguillage_wire::JobOutput,
    },
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

/// What the adviser decided when filing a project.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "choice")]
pub enum FilingChoice {
    /// Routing decides.
    #[default]
    Route,
    /// The client (or adviser) chose to stay here, for this reason.
    Stay { reason: String },
    /// Not worth doing: recorded, and told to the company, for this reason.
    AdviseAgainst { reason: String },
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

impl ExecutorEvent {
    /// How the job ended, for an event that ends it: its state, exit code and GPU-seconds.
    pub fn end(&self) -> Option<(JobState, Option<i32>, u64)> {
        match *self {
            ExecutorEvent::Queued { .. } | ExecutorEvent::Started => None,
            ExecutorEvent::Finished {
                exit_code,
                gpu_seconds,
            } => {
                let state = if exit_code == 0 {
                    JobState::Succeeded
                } else {
                    JobState::Failed
                };
                Some((state, Some(exit_code), gpu_seconds))
            }
            ExecutorEvent::Failed { gpu_seconds, .. } => {
                Some((JobState::Failed, None, gpu_seconds))
            }
            ExecutorEvent::TimedOut { gpu_seconds } => {
                Some((JobState::TimedOut, None, gpu_seconds))
            }
            ExecutorEvent::Cancelled { gpu_seconds } => {
                Some((JobState::Cancelled, None, gpu_seconds))
            }
        }
    }

    /// The event for a job's history: "exit 3, 12 GPU-s", "failed: <reason>, 0 GPU-s".
    pub fn describe(&self) -> String {
        match self {
            ExecutorEvent::Queued { reason } => format!("queued: {reason}"),
            ExecutorEvent::Started => "started".into(),
            ExecutorEvent::Finished {
                exit_code,
                gpu_seconds,
            } => format!("exit {exit_code}, {gpu_seconds} GPU-s"),
            ExecutorEvent::Failed {
                reason,
                gpu_seconds,
            } => format!("failed: {reason}, {gpu_seconds} GPU-s"),
            ExecutorEvent::TimedOut { gpu_seconds } => {
                format!("stopped at its time limit, {gpu_seconds} GPU-s")
            }
            ExecutorEvent::Cancelled { gpu_seconds } => format!("cancelled, {gpu_seconds} GPU-s"),
        }
    }
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
    /// The host of a job submitted here sent the end of its output, which was asked of it.
    OutputArrived {
        host: MemberId,
        output: aiguillage_wire::JobOutput,
    },
    /// Read the end (at most `max_bytes` of each) of a hosted job's stdout and stderr and
    /// hand it back as [`Input::OutputRead`] for `to`, the job's origin.
    ReadOutput {
        job: JobId,
        epoch: u64,
        to: MemberId,
        max_bytes: u32,
    },
    /// Append to the audit log.
    Audit(AuditEvent),
    /// Tell the local operator.
    Notify(Notification),
    /// A message was refused; count it by reason.
    Refused(Refusal),
    /// A message could not be sealed (a bug: inputs are checked when taken); it is not
    /// sent, now or later.
    SealFailed {
        kind: aiguillage_wire::MessageKind,
        subject: String,
        error: String,
    },
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
    /// A project served here moved along its journey, or ended.
    ProjectProgress {
        project: ProjectId,
        step: Service,
        state: String,
    },
    /// A job was submitted here under this id.
    JobSubmitted {
        job: JobId,
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

impl Notification {
    /// The event's name, as its JSON `event` field spells it.
    pub fn tag(&self) -> &'static str {
        use Notification as N;
        match self {
            N::ProjectFiled { .. } => "project_filed",
            N::DecisionNeeded { .. } => "decision_needed",
            N::ReferralAccepted { .. } => "referral_accepted",
            N::ReferralDeclined { .. } => "referral_declined",
            N::ReferralExhausted { .. } => "referral_exhausted",
            N::ReferralProgress { .. } => "referral_progress",
            N::DossierReceived { .. } => "dossier_received",
            N::ReferralWithdrawn { .. } => "referral_withdrawn",
            N::ProjectProgress { .. } => "project_progress",
            N::JobSubmitted { .. } => "job_submitted",
            N::JobQueued { .. } => "job_queued",
            N::JobMissed { .. } => "job_missed",
            N::JobRunningLocally { .. } => "job_running_locally",
            N::JobPlaced { .. } => "job_placed",
            N::JobReplaced { .. } => "job_replaced",
            N::JobFinished { .. } => "job_finished",
        }
    }

    /// One line for a person: what happened, to what.
    pub fn describe(&self) -> String {
        use Notification as N;
        match self {
            N::ProjectFiled {
                project,
                outcome,
                referral,
                ..
            } => match referral {
                Some(r) => format!("project {project} filed: {}, referral {r}", outcome.tag()),
                None => format!("project {project} filed: {}", outcome.tag()),
            },
            N::DecisionNeeded {
                referral, origin, ..
            } => format!("referral {referral} from {origin} needs a decision"),
            N::ReferralAccepted { referral, target } => {
                format!("referral {referral} accepted by {target}")
            }
            N::ReferralDeclined {
                referral,
                target,
                reason,
            } => format!("referral {referral} declined by {target}: {reason}"),
            N::ReferralExhausted { referral } => {
                format!("referral {referral}: no member took it")
            }
            N::ReferralProgress {
                referral,
                step,
                state,
            } => format!("referral {referral}: {step} {state}"),
            N::DossierReceived { referral, origin } => {
                format!("referral {referral}: dossier received from {origin}")
            }
            N::ReferralWithdrawn { referral } => format!("referral {referral} withdrawn"),
            N::ProjectProgress {
                project,
                step,
                state,
            } => format!("project {project}: {step} {state}"),
            N::JobSubmitted { job } => format!("job {job} submitted"),
            N::JobQueued { job, reason } => format!("job {job} queued: {reason}"),
            N::JobMissed { job, reason } => format!("job {job} missed its start: {reason}"),
            N::JobRunningLocally { job } => format!("job {job} running here"),
            N::JobPlaced { job, host, epoch } => {
                format!("job {job} placed at {host} (lease {epoch})")
            }
            N::JobReplaced {
                job,
                lost_host,
                epoch,
            } => format!("job {job} lost {lost_host}; placed again (lease {epoch})"),
            N::JobFinished {
                job,
                host,
                state,
                exit_code,
            } => {
                let at = host
                    .as_ref()
                    .map_or("here".to_owned(), |h| format!("at {h}"));
                match exit_code {
                    Some(c) => format!("job {job} {state} {at}, exit code {c}"),
                    None => format!("job {job} {state} {at}"),
                }
            }
        }
    }
}
