//! The figures an AI Factory reports to its funders, derived from the state.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    FiledProject, InReferral, InState, JobPhase, OriginJob, OutReferral, OutState, Record, State,
};

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
    /// The figures of what a state holds in memory.
    pub fn of(state: &State) -> Kpis {
        let mut k = Kpis::default();
        for p in state.projects.values() {
            k.add_project(p);
        }
        for r in state.outgoing.values() {
            k.add_outgoing(r);
        }
        for r in state.incoming.values() {
            k.add_incoming(r);
        }
        for j in state.jobs.values() {
            k.add_job(j);
        }
        for (_, t) in state.ledger.peers() {
            k.gpu_hours_hosted += t.gpu_seconds_hosted as f64 / 3600.0;
            k.gpu_hours_consumed += t.gpu_seconds_consumed as f64 / 3600.0;
        }
        k
    }

    /// Adds a record that is no longer in memory (the store's archive keeps it).
    pub fn add_record(&mut self, record: &Record) {
        match record {
            Record::Project(p) => self.add_project(p),
            Record::Outgoing(r) => self.add_outgoing(r),
            Record::Incoming(r) => self.add_incoming(r),
            Record::Job(j) => self.add_job(j),
            Record::Hosted(_) | Record::Other => {}
        }
    }

    fn add_project(&mut self, p: &FiledProject) {
        *self
            .projects_by_stage
            .entry(p.card.stage.tag().to_owned())
            .or_default() += 1;
        if p.referral.is_some() {
            self.projects_referred += 1;
        } else {
            self.projects_kept += 1;
        }
    }

    fn add_outgoing(&mut self, r: &OutReferral) {
        let sector = r.card.sector.tag();
        for a in &r.attempts {
            let outcome = match &a.outcome {
                None => "pending".to_owned(),
                Some(crate::AttemptOutcome::Declined { reason, .. }) => {
                    format!("declined:{reason}")
                }
                Some(o) => o.tag().to_owned(),
            };
            bump(&mut self.referrals_out, a.target.as_str(), sector, &outcome);
        }
        if r.state == OutState::Completed {
            self.projects_completed += 1;
        }
    }

    fn add_incoming(&mut self, r: &InReferral) {
        let outcome = match &r.state {
            InState::Declined { reason, .. } => format!("declined:{reason}"),
            other => other.tag().to_owned(),
        };
        bump(
            &mut self.referrals_in,
            r.origin.as_str(),
            r.card.sector.tag(),
            &outcome,
        );
        if r.state == InState::Completed {
            self.projects_completed += 1;
        }
    }

    fn add_job(&mut self, j: &OriginJob) {
        if j.epoch > 0 {
            self.jobs_federated += 1;
        } else if matches!(j.phase, JobPhase::Local | JobPhase::Done { host: None, .. }) {
            self.jobs_local += 1;
        }
    }
}
