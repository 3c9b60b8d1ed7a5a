//! The figures an AI Factory reports to its funders, derived from the state.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{InState, JobPhase, OutState, State};

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Kpis {
    /// Projects filed here, by the journey step they were at.
    pub projects_by_stage: BTreeMap<String, u64>,
    pub projects_kept: u64,
    pub projects_referred: u64,
    /// Outgoing referrals: per target member, per sector, per outcome.
    pub referrals_out: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    /// Incoming referrals: per origin member, per sector, per outcome.
    pub referrals_in: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    pub projects_completed: u64,
    pub gpu_hours_hosted: f64,
    pub gpu_hours_consumed: f64,
    pub jobs_local: u64,
    pub jobs_federated: u64,
}

fn bump(
    m: &mut BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    a: &str,
    b: &str,
    c: &str,
) {
    *m.entry(a.to_owned())
        .or_default()
        .entry(b.to_owned())
        .or_default()
        .entry(c.to_owned())
        .or_default() += 1;
}

impl Kpis {
    pub fn of(state: &State) -> Kpis {
        let mut k = Kpis::default();
        for p in state.projects.values() {
            *k.projects_by_stage
                .entry(p.card.stage.tag().to_owned())
                .or_default() += 1;
            if p.referral.is_some() {
                k.projects_referred += 1;
            } else {
                k.projects_kept += 1;
            }
        }
        for r in state.outgoing.values() {
            let sector = r.card.sector.tag();
            for a in &r.attempts {
                let outcome = match &a.outcome {
                    None => "pending".to_owned(),
                    Some(crate::AttemptOutcome::Declined { reason, .. }) => {
                        format!("declined:{reason}")
                    }
                    Some(o) => o.tag().to_owned(),
                };
                bump(&mut k.referrals_out, a.target.as_str(), sector, &outcome);
            }
            if r.state == OutState::Completed {
                k.projects_completed += 1;
            }
        }
        for r in state.incoming.values() {
            let outcome = match &r.state {
                InState::Declined { reason, .. } => format!("declined:{reason}"),
                other => other.tag().to_owned(),
            };
            bump(
                &mut k.referrals_in,
                r.origin.as_str(),
                r.card.sector.tag(),
                &outcome,
            );
            if r.state == InState::Completed {
                k.projects_completed += 1;
            }
        }
        for (_, t) in state.ledger.peers() {
            k.gpu_hours_hosted += t.gpu_seconds_hosted as f64 / 3600.0;
            k.gpu_hours_consumed += t.gpu_seconds_consumed as f64 / 3600.0;
        }
        for j in state.jobs.values() {
            if j.epoch > 0 {
                k.jobs_federated += 1;
            } else if matches!(j.phase, JobPhase::Local | JobPhase::Done { host: None, .. }) {
                k.jobs_local += 1;
            }
        }
        k
    }
}
