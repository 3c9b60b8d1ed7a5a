//! The whole persistent state of a member's core, the records it is made of, and the keys
//! under which a store keeps each record.

mod job;
mod records;
mod referral;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use aiguillage_wire::{
    Envelope, JobId, MemberId, ProjectCard, ProjectId, ReferralId, Roster, Timestamp,
};

use crate::directory::Directory;
use crate::ledger::Ledger;
use crate::routing::Explanation;
use crate::timers::Timers;

pub use job::{HostPhase, HostedJob, JobPhase, OriginJob, Placement, PlacementOutcome};
pub use records::{Record, RecordError, decode_record};
pub use referral::{AttemptOutcome, AttemptRecord, InReferral, InState, OutReferral, OutState};

/// A piece of state that changed and must be persisted before outputs leave.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StateKey {
    /// Counters, capacity, advert sequence, timers: written at nearly every commit.
    Meta,
    /// The installed roster and its signed envelope: written when the roster changes.
    Roster,
    /// Observed behaviour of members (the listings are per member).
    Directory,
    /// One member's advert as held in the directory.
    Listing(MemberId),
    Ledger,
    /// The ids of finished records that left memory, until no message about them is valid.
    Retired,
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
    /// Where the company stands on its journey with this member.
    #[serde(default)]
    pub journey: Journey,
}

/// A company's journey at the member that serves it: the step it is at (first contact →
/// production) and how the journey stands, with its history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Journey {
    pub step: Option<aiguillage_wire::Service>,
    pub state: JourneyState,
    pub history: Vec<Transition>,
}

/// How a project's journey stands here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum JourneyState {
    /// Served here; the adviser moves it along the steps.
    #[default]
    Active,
    /// Referred to another member, which serves it (its progress comes back).
    Referred,
    /// It had to leave (its sector is excluded here, or a service is missing) and no member
    /// took it.
    Unplaced,
    /// It reached the end of its journey here.
    Completed,
    Abandoned,
    /// The one-stop shop told the company it is not worth doing.
    AdvisedAgainst {
        reason: String,
    },
}

impl JourneyState {
    pub fn tag(&self) -> &'static str {
        match self {
            JourneyState::Active => "active",
            JourneyState::Referred => "referred",
            JourneyState::Unplaced => "unplaced",
            JourneyState::Completed => "completed",
            JourneyState::Abandoned => "abandoned",
            JourneyState::AdvisedAgainst { .. } => "advised_against",
        }
    }

    /// The journey can still move here.
    pub fn is_open(&self) -> bool {
        matches!(self, JourneyState::Active | JourneyState::Unplaced)
    }
}

/// The whole persistent state of a member's core.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub roster: Option<(Arc<Roster>, Arc<Envelope>)>,
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
    /// Finished records that left memory, by their [`StateKey::path`]; the records
    /// themselves stay in the store's archive.
    pub retired: BTreeMap<String, Retired>,
    /// Messages a peer refused for good, by (peer, kind, referral or job): not sent again.
    pub blocked: BTreeSet<(MemberId, String, String)>,
}

/// A finished record that has left memory, remembered by its id until no message about it
/// can still be valid, so that a late or replayed message cannot bring it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    pub at: Timestamp,
    /// For a job: the member at the other end (the host, or the origin) and the epoch of
    /// its last placement. A host's re-sent receipt is acknowledged again; an origin's
    /// replayed reservation of that epoch or an older one changes nothing.
    pub placement: Option<(MemberId, u64)>,
}

/// A state change, for the lifecycle history shown to operators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at: Timestamp,
    pub state: String,
    pub detail: String,
}

/// Appends a transition to a history.
pub(crate) fn record(
    history: &mut Vec<Transition>,
    at: Timestamp,
    state: &str,
    detail: impl Into<String>,
) {
    history.push(Transition {
        at,
        state: state.to_owned(),
        detail: detail.into(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiguillage_wire::{DeclineReason, JobState};

    /// The field serde writes the variant's name into, for a tagged enum; the string itself
    /// for a plain one.
    fn serde_name(v: &impl Serialize, field: &str) -> String {
        let json = serde_json::to_value(v).unwrap();
        json.get(field)
            .and_then(|s| s.as_str())
            .or(json.as_str())
            .unwrap()
            .to_owned()
    }

    #[test]
    fn every_state_is_named_by_its_tag_as_serde_names_it() {
        for s in OutState::ALL {
            assert_eq!(serde_name(&s, "state"), s.tag());
        }
        let t = Timestamp(1);
        let incoming = [
            InState::AwaitingDecision { decide_by: t },
            InState::Accepted,
            InState::Declined {
                reason: DeclineReason::NoCapacity,
                detail: String::new(),
            },
            InState::HandedOver,
            InState::InProgress,
            InState::Completed,
            InState::Abandoned,
            InState::Withdrawn,
        ];
        assert_eq!(incoming.clone().map(|s| s.tag()), InState::TAGS);
        for s in &incoming {
            assert_eq!(serde_name(s, "state"), s.tag());
        }
        let m = MemberId::new("lu-l-aif").unwrap();
        let phases = [
            JobPhase::Local,
            JobPhase::Queued {
                reason: String::new(),
            },
            JobPhase::Bidding {
                bids_by: t,
                invited: vec![],
                bids: vec![],
            },
            JobPhase::Reserving {
                host: m.clone(),
                hold_until: t,
                next: vec![],
            },
            JobPhase::Leased {
                host: m.clone(),
                lease_until: t,
                acknowledged: false,
                host_state: JobState::Running,
            },
            JobPhase::Done {
                state: JobState::Succeeded,
                exit_code: None,
                host: None,
            },
            JobPhase::Cancelled,
            JobPhase::Missed {
                reason: String::new(),
            },
        ];
        assert_eq!(phases.clone().map(|p| p.tag()), JobPhase::TAGS);
        for p in &phases {
            assert_eq!(serde_name(p, "phase"), p.tag());
        }
        let hosted = [
            HostPhase::Held { until: t },
            HostPhase::Running {
                state: JobState::Running,
                started_at: None,
            },
            HostPhase::Finished { acknowledged: true },
            HostPhase::Released,
            HostPhase::Disowned,
        ];
        assert_eq!(hosted.clone().map(|p| p.tag()), HostPhase::TAGS);
        for p in &hosted {
            assert_eq!(serde_name(p, "phase"), p.tag());
        }
        for o in [
            AttemptOutcome::Accepted,
            AttemptOutcome::Declined {
                reason: DeclineReason::NoCapacity,
                detail: String::new(),
            },
            AttemptOutcome::Expired,
            AttemptOutcome::Withdrawn,
            AttemptOutcome::Refused {
                reason: "not_the_target".into(),
            },
        ] {
            assert_eq!(serde_name(&o, "outcome"), o.tag());
        }
    }
}
