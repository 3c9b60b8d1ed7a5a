//! Job records: a job this member submitted, and a job it hosts for another member.

use serde::{Deserialize, Serialize};

use aiguillage_wire::{JobSpec, JobState, MemberId, Timestamp, UsageReceipt};

use super::Transition;

/// Where a job this member submitted stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum JobPhase {
    /// Running on the local executor.
    Local,
    /// Waiting: no capacity here and no host found yet.
    Queued {
        reason: String,
    },
    Bidding {
        bids_by: Timestamp,
        invited: Vec<MemberId>,
        bids: Vec<(MemberId, Timestamp)>,
    },
    Reserving {
        host: MemberId,
        hold_until: Timestamp,
        /// Bidders still to try if this one refuses, best first.
        next: Vec<MemberId>,
    },
    Leased {
        host: MemberId,
        lease_until: Timestamp,
        /// The host has reported since the confirm.
        acknowledged: bool,
        host_state: JobState,
    },
    Done {
        state: JobState,
        exit_code: Option<i32>,
        host: Option<MemberId>,
    },
    Cancelled,
    /// No host could start it before its latest acceptable start; it will not run.
    Missed {
        reason: String,
    },
}

impl JobPhase {
    /// Every phase's name.
    pub const TAGS: [&'static str; 8] = [
        "local",
        "queued",
        "bidding",
        "reserving",
        "leased",
        "done",
        "cancelled",
        "missed",
    ];

    /// The phase's name, as in the API and the metrics.
    pub fn tag(&self) -> &'static str {
        match self {
            JobPhase::Local => "local",
            JobPhase::Queued { .. } => "queued",
            JobPhase::Bidding { .. } => "bidding",
            JobPhase::Reserving { .. } => "reserving",
            JobPhase::Leased { .. } => "leased",
            JobPhase::Done { .. } => "done",
            JobPhase::Cancelled => "cancelled",
            JobPhase::Missed { .. } => "missed",
        }
    }

    /// The job has ended here, one way or another; nothing more will happen to it.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobPhase::Done { .. } | JobPhase::Cancelled | JobPhase::Missed { .. }
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementOutcome {
    Refused,
    NoAnswer,
    LeaseLost,
    Completed,
    Released,
}

/// One host tried for a job, under one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub epoch: u64,
    pub host: MemberId,
    pub at: Timestamp,
    pub confirmed: bool,
    pub outcome: Option<PlacementOutcome>,
}

/// A job this member submitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OriginJob {
    pub spec: JobSpec,
    pub submitted_at: Timestamp,
    pub phase: JobPhase,
    /// The epoch of the latest placement (0 before any).
    pub epoch: u64,
    pub placements: Vec<Placement>,
    pub receipt: Option<UsageReceipt>,
    pub history: Vec<Transition>,
}

impl OriginJob {
    pub fn host(&self) -> Option<&MemberId> {
        match &self.phase {
            JobPhase::Reserving { host, .. } | JobPhase::Leased { host, .. } => Some(host),
            JobPhase::Done { host, .. } => host.as_ref(),
            _ => None,
        }
    }
}

/// Where a job hosted for another member stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum HostPhase {
    Held {
        until: Timestamp,
    },
    Running {
        state: JobState,
        started_at: Option<Timestamp>,
    },
    Finished {
        acknowledged: bool,
    },
    Released,
    /// The origin refused the result (its lease had moved on): nothing is owed either way.
    Disowned,
}

impl HostPhase {
    /// Every phase's name.
    pub const TAGS: [&'static str; 5] = ["held", "running", "finished", "released", "disowned"];

    /// The phase's name, as in the API and the metrics.
    pub fn tag(&self) -> &'static str {
        match self {
            HostPhase::Held { .. } => "held",
            HostPhase::Running { .. } => "running",
            HostPhase::Finished { .. } => "finished",
            HostPhase::Released => "released",
            HostPhase::Disowned => "disowned",
        }
    }
}

/// A job this member hosts for another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostedJob {
    pub origin: MemberId,
    pub epoch: u64,
    pub spec: JobSpec,
    pub phase: HostPhase,
    pub receipt: Option<(UsageReceipt, aiguillage_wire::Envelope)>,
    pub history: Vec<Transition>,
}

impl HostedJob {
    pub fn holds_gpus(&self) -> bool {
        matches!(
            self.phase,
            HostPhase::Held { .. } | HostPhase::Running { .. }
        )
    }
}
