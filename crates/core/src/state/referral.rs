//! Referral records: the origin's and the target's view of one referral.

use serde::{Deserialize, Serialize};

use aiguillage_wire::{
    DeclineReason, Dossier, MemberId, ProgressState, ProjectCard, ReferralId, Service, Timestamp,
};

use super::Transition;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutState {
    Offered,
    Accepted,
    HandedOver,
    InProgress,
    Completed,
    Abandoned,
    Exhausted,
    Withdrawn,
}

impl OutState {
    /// Every state, in lifecycle order.
    pub const ALL: [OutState; 8] = [
        OutState::Offered,
        OutState::Accepted,
        OutState::HandedOver,
        OutState::InProgress,
        OutState::Completed,
        OutState::Abandoned,
        OutState::Exhausted,
        OutState::Withdrawn,
    ];

    /// The state's name, as in the API, the metrics and the KPIs.
    pub fn tag(self) -> &'static str {
        match self {
            OutState::Offered => "offered",
            OutState::Accepted => "accepted",
            OutState::HandedOver => "handed_over",
            OutState::InProgress => "in_progress",
            OutState::Completed => "completed",
            OutState::Abandoned => "abandoned",
            OutState::Exhausted => "exhausted",
            OutState::Withdrawn => "withdrawn",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            OutState::Completed | OutState::Abandoned | OutState::Exhausted | OutState::Withdrawn
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum AttemptOutcome {
    Accepted,
    Declined {
        reason: DeclineReason,
        detail: String,
    },
    Expired,
    Withdrawn,
    /// The target refused the offer itself (a PROTOCOL.md §3 reason).
    Refused {
        reason: String,
    },
}

impl AttemptOutcome {
    /// The outcome's name (`declined` whatever the reason).
    pub fn tag(&self) -> &'static str {
        match self {
            AttemptOutcome::Accepted => "accepted",
            AttemptOutcome::Declined { .. } => "declined",
            AttemptOutcome::Expired => "expired",
            AttemptOutcome::Withdrawn => "withdrawn",
            AttemptOutcome::Refused { .. } => "refused",
        }
    }
}

/// One target tried for a referral.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub target: MemberId,
    pub offered_at: Timestamp,
    pub respond_by: Timestamp,
    pub outcome: Option<AttemptOutcome>,
    pub answered_at: Option<Timestamp>,
}

/// A referral this member originated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutReferral {
    pub id: ReferralId,
    pub card: ProjectCard,
    pub dossier: Dossier,
    pub candidates: Vec<MemberId>,
    pub attempts: Vec<AttemptRecord>,
    pub state: OutState,
    pub history: Vec<Transition>,
    pub progress: Option<(u32, Service, ProgressState, String)>,
    pub hand_over_acked: bool,
}

impl OutReferral {
    pub fn current(&self) -> Option<&AttemptRecord> {
        self.attempts.last()
    }

    /// Whether the referral was handed over to its current target, then withdrawn: the
    /// target may hold the dossier, so the withdrawal is re-sent until it answers.
    pub fn withdrawn_after_hand_over(&self) -> bool {
        self.state == OutState::Withdrawn
            && self
                .current()
                .is_some_and(|a| a.outcome == Some(AttemptOutcome::Accepted))
            && self.history.iter().any(|t| t.state == "handed_over")
    }
    /// The member that accepted, if any did.
    pub fn accepted_by(&self) -> Option<&MemberId> {
        self.attempts
            .iter()
            .find(|a| a.outcome == Some(AttemptOutcome::Accepted))
            .map(|a| &a.target)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum InState {
    AwaitingDecision {
        decide_by: Timestamp,
    },
    Accepted,
    Declined {
        reason: DeclineReason,
        detail: String,
    },
    HandedOver,
    InProgress,
    Completed,
    Abandoned,
    Withdrawn,
}

impl InState {
    /// Every state's name, in lifecycle order.
    pub const TAGS: [&'static str; 8] = [
        "awaiting_decision",
        "accepted",
        "declined",
        "handed_over",
        "in_progress",
        "completed",
        "abandoned",
        "withdrawn",
    ];

    /// The state's name, as in the API, the metrics and the KPIs.
    pub fn tag(&self) -> &'static str {
        match self {
            InState::AwaitingDecision { .. } => "awaiting_decision",
            InState::Accepted => "accepted",
            InState::Declined { .. } => "declined",
            InState::HandedOver => "handed_over",
            InState::InProgress => "in_progress",
            InState::Completed => "completed",
            InState::Abandoned => "abandoned",
            InState::Withdrawn => "withdrawn",
        }
    }

    /// Whether this member took the referral (accepted it, whatever happened since).
    pub fn was_accepted(&self) -> bool {
        matches!(
            self,
            InState::Accepted
                | InState::HandedOver
                | InState::InProgress
                | InState::Completed
                | InState::Abandoned
        )
    }

    /// Whether the referral occupies one of this member's intake slots.
    pub fn holds_intake(&self) -> bool {
        matches!(
            self,
            InState::Accepted | InState::HandedOver | InState::InProgress
        )
    }
}

/// A referral offered to this member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InReferral {
    pub id: ReferralId,
    pub origin: MemberId,
    pub attempt: u32,
    pub card: ProjectCard,
    pub received_at: Timestamp,
    pub respond_by: Timestamp,
    pub state: InState,
    pub dossier: Option<Dossier>,
    pub progress_seq: u32,
    pub last_progress: Option<(Service, ProgressState, String)>,
    pub history: Vec<Transition>,
}
