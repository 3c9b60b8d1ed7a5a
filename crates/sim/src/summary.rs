//! The measures of a run, computed from the cores' final states and the recorded metrics.

use std::collections::BTreeMap;

use serde::Serialize;

use aiguillage_core::{AttemptOutcome, InState, OutState, routing::Outcome};
use aiguillage_wire::MessageKind;

use crate::engine::Sim;
use crate::metrics::{MemberRow, SeriesRow, jain, quantile};
use crate::workload::is_priority;

const HOUR: f64 = 3_600_000.0;
const MINUTE: f64 = 60_000.0;

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub policy: String,
    pub seed: u64,
    pub members: usize,
    pub factories: usize,
    pub gpus: u64,
    pub duration_days: f64,
    pub settle_days: f64,
    pub projects: ProjectMeasures,
    pub jobs: JobMeasures,
    pub network: NetworkMeasures,
    pub engine: EngineMeasures,
    pub invariants: InvariantReport,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ProjectMeasures {
    pub filed: u64,
    pub lost_while_down: u64,
    pub kept: u64,
    pub referred: u64,
    pub accepted_elsewhere: u64,
    pub exhausted: u64,
    pub withdrawn: u64,
    pub pending: u64,
    /// Share of filed projects that end at a member where their sector is a priority.
    pub match_quality: f64,
    pub exhausted_share: f64,
    pub referred_share: f64,
    pub time_to_acceptance_hours: Quantiles,
    pub offers_per_project: f64,
    pub offers_per_referral: f64,
    /// Referral messages (offer, accept, decline, withdraw, hand-over, progress) per
    /// filed project, re-sends included.
    pub messages_per_project: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct JobMeasures {
    pub submitted: u64,
    pub lost_while_down: u64,
    pub started: u64,
    pub started_remote: u64,
    pub missed: u64,
    pub never_started: u64,
    /// Minutes from submission to first start; jobs that never started count with the
    /// time until they were given up (or the end).
    pub wait_minutes: Quantiles,
    pub lease_replacements: u64,
    pub placements: u64,
    /// Overflow messages (calls for bids to receipt acks) per submitted job.
    pub overflow_messages_per_job: f64,
    /// GPU-time used over GPU-time available, whole federation, whole run.
    pub utilisation: f64,
    /// Jain's index of load run at each member relative to its capacity (members with
    /// GPUs): 1 when every member is equally loaded.
    pub fairness_jain: Option<f64>,
    pub gpu_hours_hosted_for_others: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Quantiles {
    pub n: usize,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Quantiles {
    fn of(sorted: &[u64], unit: f64) -> Quantiles {
        let q = |p| quantile(sorted, p).map(|v| round3(v as f64 / unit));
        Quantiles {
            n: sorted.len(),
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct NetworkMeasures {
    pub messages: u64,
    pub messages_by_kind: BTreeMap<String, u64>,
    pub message_mib: f64,
    pub adverts_published: u64,
    pub advert_deliveries: u64,
    pub dropped_loss: u64,
    pub dropped_partition: u64,
    pub dropped_member_down: u64,
    pub dropped_silent: u64,
    pub refusals: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EngineMeasures {
    pub events: u64,
    pub core_calls: u64,
    pub state_writes: u64,
    pub records_retired: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub operator_decisions: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct InvariantReport {
    pub checks: u64,
    pub violations: u64,
    pub first: Vec<String>,
}

/// One member's totals for `members.csv` and the plots.
#[derive(Clone, Debug, Serialize)]
pub struct MemberReport {
    pub member: String,
    pub role: String,
    pub country: String,
    pub gpus: u32,
    pub filed: u64,
    pub kept: u64,
    pub referred_out: u64,
    pub referred_out_accepted: u64,
    pub exhausted: u64,
    pub offers_in: u64,
    pub accepted_in: u64,
    pub declined_in: u64,
    pub utilisation: f64,
    pub gpu_hours_hosted_for_others: f64,
    pub gpu_hours_used_elsewhere: f64,
}

/// Everything a finished run hands to the report writers.
pub struct RunOutcome {
    pub summary: Summary,
    pub digest: String,
    pub members: Vec<MemberReport>,
    pub series: Vec<SeriesRow>,
    pub member_series: Vec<MemberRow>,
    /// Sorted, in ms.
    pub waits_ms: Vec<u64>,
    /// Sorted, in ms.
    pub acceptance_ms: Vec<u64>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn share(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        (a as f64 / b as f64 * 10_000.0).round() / 10_000.0
    }
}

const REFERRAL_KINDS: &[MessageKind] = &[
    MessageKind::Offer,
    MessageKind::Accept,
    MessageKind::Decline,
    MessageKind::Withdraw,
    MessageKind::HandOver,
    MessageKind::Progress,
];

/// Computes the measures of a finished run.
pub fn summarise(sim: &Sim<'_>) -> RunOutcome {
    let s = sim.scenario;
    let m = &sim.metrics;
    let mut p = ProjectMeasures {
        lost_while_down: m.projects_lost_down,
        ..Default::default()
    };
    let mut matched = 0u64;
    let mut offers = 0u64;
    let mut acceptance = Vec::new();
    let mut members: Vec<MemberReport> = sim
        .members
        .iter()
        .map(|mb| MemberReport {
            member: mb.id().to_string(),
            role: mb.profile.role.to_string(),
            country: mb.country().to_string(),
            gpus: mb.gpus,
            filed: 0,
            kept: 0,
            referred_out: 0,
            referred_out_accepted: 0,
            exhausted: 0,
            offers_in: 0,
            accepted_in: 0,
            declined_in: 0,
            utilisation: 0.0,
            gpu_hours_hosted_for_others: 0.0,
            gpu_hours_used_elsewhere: 0.0,
        })
        .collect();
    for (oi, core) in sim.cores().enumerate() {
        let st = core.state();
        for fp in st.projects.values() {
            p.filed += 1;
            members[oi].filed += 1;
            let ended_at = match &fp.referral {
                None => match fp.explanation.outcome {
                    Outcome::Exhausted => {
                        p.exhausted += 1;
                        members[oi].exhausted += 1;
                        None
                    }
                    _ => {
                        p.kept += 1;
                        members[oi].kept += 1;
                        Some(oi)
                    }
                },
                Some(rid) => {
                    p.referred += 1;
                    members[oi].referred_out += 1;
                    match st.outgoing.get(rid) {
                        None => {
                            p.pending += 1;
                            None
                        }
                        Some(out) => {
                            offers += out.attempts.len() as u64;
                            if let Some(a) = out
                                .attempts
                                .iter()
                                .find(|a| a.outcome == Some(AttemptOutcome::Accepted))
                            {
                                p.accepted_elsewhere += 1;
                                members[oi].referred_out_accepted += 1;
                                if let Some(at) = a.answered_at {
                                    acceptance
                                        .push(at.millis().saturating_sub(fp.filed_at.millis()));
                                }
                                sim.index.get(&a.target).copied()
                            } else {
                                match out.state {
                                    OutState::Exhausted => {
                                        p.exhausted += 1;
                                        members[oi].exhausted += 1;
                                    }
                                    OutState::Withdrawn => p.withdrawn += 1,
                                    _ => p.pending += 1,
                                }
                                None
                            }
                        }
                    }
                }
            };
            if let Some(e) = ended_at
                && is_priority(&sim.members[e].profile, fp.card.sector)
            {
                matched += 1;
            }
        }
        for r in st.incoming.values() {
            members[oi].offers_in += 1;
            if r.state.was_accepted() {
                members[oi].accepted_in += 1;
            } else if matches!(r.state, InState::Declined { .. }) {
                members[oi].declined_in += 1;
            }
        }
        let mut used = 0u64;
        for (_, t) in st.ledger.peers() {
            used += t.gpu_seconds_consumed;
        }
        members[oi].gpu_hours_used_elsewhere = round3(used as f64 / 3600.0);
    }
    acceptance.sort_unstable();
    p.match_quality = share(matched, p.filed);
    p.exhausted_share = share(p.exhausted, p.filed);
    p.referred_share = share(p.referred, p.filed);
    p.time_to_acceptance_hours = Quantiles::of(&acceptance, HOUR);
    p.offers_per_project = share(offers, p.filed);
    p.offers_per_referral = share(offers, p.referred);
    let referral_messages: u64 = REFERRAL_KINDS
        .iter()
        .map(|k| m.messages.get(k.name()).copied().unwrap_or(0))
        .sum();
    p.messages_per_project = share(referral_messages, p.filed);

    // Jobs never started count with the time until they were given up, or until the end.
    let mut waits = m.waits_ms.clone();
    for pj in m.pending_jobs.values() {
        waits.push(pj.missed_at.unwrap_or(sim.now).saturating_sub(pj.submitted));
    }
    waits.sort_unstable();
    let overflow_messages: u64 = m
        .messages
        .iter()
        .filter(|(k, _)| {
            !REFERRAL_KINDS.iter().any(|r| r.name() == **k) && **k != MessageKind::Advert.name()
        })
        .map(|(_, v)| *v)
        .sum();
    let total_ms = sim.now.max(1) as f64;
    let mut busy = 0u128;
    let mut cap = 0f64;
    let mut loads = Vec::new();
    let mut hosted = 0u128;
    for (i, o) in m.occupancy.iter().enumerate() {
        busy += o.busy_gpu_ms;
        hosted += o.hosted_gpu_ms;
        cap += f64::from(o.gpus) * total_ms;
        if o.gpus > 0 {
            let u = o.busy_gpu_ms as f64 / (f64::from(o.gpus) * total_ms);
            loads.push(u);
            members[i].utilisation = round3(u);
        }
        members[i].gpu_hours_hosted_for_others = round3(o.hosted_gpu_ms as f64 / HOUR);
    }
    let submitted = m.jobs_arrived - m.jobs_lost_down;
    let jobs = JobMeasures {
        submitted,
        lost_while_down: m.jobs_lost_down,
        started: m.jobs_started_local + m.jobs_started_remote,
        started_remote: m.jobs_started_remote,
        missed: m.jobs_missed,
        never_started: m.pending_jobs.len() as u64,
        wait_minutes: Quantiles::of(&waits, MINUTE),
        lease_replacements: m.lease_replacements,
        placements: m.placements,
        overflow_messages_per_job: share(overflow_messages, submitted),
        utilisation: if cap > 0.0 {
            round3(busy as f64 / cap)
        } else {
            0.0
        },
        fairness_jain: jain(&loads).map(round3),
        gpu_hours_hosted_for_others: round3(hosted as f64 / HOUR),
    };
    let network = NetworkMeasures {
        messages: m.total_messages(),
        messages_by_kind: m
            .messages
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        message_mib: round3(m.message_bytes as f64 / (1024.0 * 1024.0)),
        adverts_published: m.adverts_published,
        advert_deliveries: m.advert_deliveries,
        dropped_loss: m.dropped_loss,
        dropped_partition: m.dropped_partition,
        dropped_member_down: m.dropped_down,
        dropped_silent: m.dropped_silent,
        refusals: m.refusals.clone(),
    };
    let summary = Summary {
        scenario: s.name.clone(),
        policy: sim.policy_name.clone(),
        seed: sim.seed,
        members: sim.members.len(),
        factories: sim
            .members
            .iter()
            .filter(|m| m.profile.role == aiguillage_wire::Role::Factory)
            .count(),
        gpus: sim.members.iter().map(|m| u64::from(m.gpus)).sum(),
        duration_days: round3(s.duration.ms() as f64 / (24.0 * HOUR)),
        settle_days: round3(s.settle.ms() as f64 / (24.0 * HOUR)),
        projects: p,
        jobs,
        network,
        engine: EngineMeasures {
            events: m.events,
            core_calls: m.core_calls,
            state_writes: m.state_writes,
            records_retired: m.records_retired,
            crashes: m.crashes,
            restarts: m.restarts,
            operator_decisions: m.decisions,
        },
        invariants: InvariantReport {
            checks: sim.checker.checks_run,
            violations: sim.checker.count,
            first: sim.checker.violations.clone(),
        },
    };
    let json = serde_json::to_string(&summary).unwrap_or_default();
    let digest = m.digest_with(&json);
    RunOutcome {
        summary,
        digest,
        members,
        series: m.series.clone(),
        member_series: m.member_series.clone(),
        waits_ms: waits,
        acceptance_ms: acceptance,
    }
}
