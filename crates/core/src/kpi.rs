//! The figures an AI Factory reports to its funders, derived from the state.

use std::collections::BTreeMap;

use serde::Serialize;

use aiguillage_wire::{Service, Timestamp};

use crate::{
    FiledProject, InReferral, InState, JobPhase, JourneyState, OriginJob, OutReferral, OutState,
    Record, State,
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
    /// Companies this member serves or served (its projects served here, advised against
    /// or not, and the referrals it took in), by the journey step they are at now or
    /// reached.
    pub companies_by_step: BTreeMap<String, u64>,
    /// Companies whose journey here reached its end at the production step.
    pub companies_in_production: u64,
    /// Projects the one-stop shop advised against, and why.
    pub advised_against: u64,
    pub advised_against_reasons: BTreeMap<String, u64>,
    /// Projects that stayed here because the client chose to, and why.
    pub stayed_by_choice: u64,
    pub stayed_by_choice_reasons: BTreeMap<String, u64>,
    /// Projects that had to leave and no member took.
    pub unplaced: u64,
    /// Median days a company spent at each step here, over the steps it moved on from.
    pub median_days_per_step: BTreeMap<String, f64>,
    pub gpu_hours_hosted: f64,
    pub gpu_hours_consumed: f64,
    pub jobs_local: u64,
    pub jobs_federated: u64,
    /// Time at each step, in days, before the medians are taken.
    #[serde(skip)]
    days_at_step: BTreeMap<String, Vec<f64>>,
}

const DAY_MS: f64 = 86_400_000.0;

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
    /// The figures of what a state holds in memory and of the records that left it (the
    /// store's archive).
    pub fn of<'a>(state: &State, archived: impl IntoIterator<Item = &'a Record>) -> Kpis {
        let mut k = Kpis::default();
        for r in archived {
            k.add_record(r);
        }
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
        k.finish()
    }

    /// Takes the medians once every record was added.
    fn finish(mut self) -> Kpis {
        self.median_days_per_step = std::mem::take(&mut self.days_at_step)
            .into_iter()
            .filter_map(|(step, mut days)| {
                crate::stats::quantile_of(&mut days, 0.5)
                    .map(|d| (step, (d * 100.0).round() / 100.0))
            })
            .collect();
        self
    }

    /// A company at `step` now, whose journey here is `finished` (ended at that step).
    fn company(&mut self, step: &str, completed: bool) {
        *self.companies_by_step.entry(step.to_owned()).or_default() += 1;
        if completed && step == "production" {
            self.companies_in_production += 1;
        }
    }

    /// Time spent at each step of a history whose entries name their step first
    /// (`<step>: …`), from entering it to entering the next.
    fn steps(&mut self, entered: Timestamp, first: &str, history: &[crate::Transition]) {
        let (mut at, mut step) = (entered, first.to_owned());
        for t in history {
            let Some(next) = t
                .detail
                .split(':')
                .next()
                .filter(|s| s.parse::<Service>().is_ok())
            else {
                continue;
            };
            if next != step {
                let days = t.at.millis().saturating_sub(at.millis()) as f64 / DAY_MS;
                self.days_at_step
                    .entry(step.clone())
                    .or_default()
                    .push(days);
                step = next.to_owned();
                at = t.at;
            }
        }
    }

    fn add_record(&mut self, record: &Record) {
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
        if p.explanation.rule == crate::routing::Rule::ClientChoseToStay {
            self.stayed_by_choice += 1;
            let reason = p.explanation.stay_reason.clone().unwrap_or_default();
            *self.stayed_by_choice_reasons.entry(reason).or_default() += 1;
        }
        let step = p.journey.step.unwrap_or(p.card.stage);
        match &p.journey.state {
            JourneyState::Referred => {}
            JourneyState::Unplaced => self.unplaced += 1,
            JourneyState::AdvisedAgainst { reason } => {
                // Advice is a service too: the company counts at the step it reached.
                self.company(step.tag(), false);
                self.advised_against += 1;
                *self
                    .advised_against_reasons
                    .entry(reason.clone())
                    .or_default() += 1;
            }
            JourneyState::Active | JourneyState::Abandoned => self.company(step.tag(), false),
            JourneyState::Completed => {
                self.projects_completed += 1;
                self.company(step.tag(), true);
            }
        }
        if !matches!(p.journey.state, JourneyState::Referred) {
            self.steps(p.filed_at, p.card.stage.tag(), &p.journey.history);
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
        if r.state.was_accepted() {
            let step = r.last_progress.as_ref().map_or(r.card.stage, |p| p.0);
            self.company(step.tag(), r.state == InState::Completed);
            self.steps(r.received_at, r.card.stage.tag(), &r.history);
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
