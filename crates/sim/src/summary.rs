//! The measures of a run, computed from the cores' final states and the recorded metrics.

use std::collections::BTreeMap;

use serde::Serialize;

use aiguillage_core::{
    AttemptOutcome, FiledProject, InReferral, InState, JourneyState, OutReferral, OutState, Record,
    decode_record,
    routing::{Ineligible, Outcome},
};
use aiguillage_wire::{
    DeclineReason, MemberId, MessageKind, ProjectCard, ReferralId, Sector, Service,
};

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
    pub inflow: InflowMeasures,
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
    /// Projects that had to leave (an excluded sector, a service missing) and that no
    /// member took: unplaced.
    pub exhausted: u64,
    /// Referrals every target declined, whose project the filing member then served
    /// itself (its sector is accepted there); not counted as exhausted.
    pub served_at_home_after_all: u64,
    pub withdrawn: u64,
    pub pending: u64,
    /// Share of filed projects that end at a member where their sector is a priority.
    pub match_quality: f64,
    /// Share of filed projects for which such an end was possible: some member inside the
    /// client's consent (the filing member always is) that takes referrals has the sector as
    /// a priority, offers every service the project needs and has GPUs when it needs GPU
    /// hours.
    pub achievable_match_quality: f64,
    /// `match_quality` over `achievable_match_quality`.
    pub achieved_ratio: f64,
    /// Exhausted projects for which such a member existed.
    pub exhausted_with_eligible: u64,
    /// Projects that could have ended at a priority member and did not, by the rule that
    /// decided at filing and where they ended.
    pub missed: BTreeMap<String, u64>,
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

/// Inflow against intake over all members that take referrals.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InflowMeasures {
    /// Members whose intake was full at least once (they declined an offer for it).
    pub members_at_intake: u64,
    /// Offers declined for a full intake, whole federation.
    pub declined_no_capacity: u64,
    /// The highest peak of referrals held at once over intake, across members.
    pub max_peak_over_intake: f64,
    /// The member with that peak.
    pub most_loaded: Option<String>,
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
    /// Offers declined because every intake slot was taken.
    pub declined_no_capacity: u64,
    /// Referrals the member may hold at once (accepted and not yet finished).
    pub intake: u32,
    /// The most referrals it held at once over the run.
    pub peak_held: u32,
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

/// One member's projects and referrals: those in memory and those archived.
struct Books {
    projects: Vec<FiledProject>,
    outgoing: BTreeMap<ReferralId, OutReferral>,
    incoming: Vec<InReferral>,
}

impl Books {
    fn of<'a>(
        st: &aiguillage_core::State,
        archive: impl Iterator<Item = std::io::Result<(&'a aiguillage_core::StateKey, Vec<u8>)>>,
    ) -> Books {
        let mut b = Books {
            projects: st.projects.values().cloned().collect(),
            outgoing: st.outgoing.clone(),
            incoming: st.incoming.values().cloned().collect(),
        };
        for record in archive {
            let (key, bytes) = record.expect("the simulator's archive file reads back");
            // The simulator wrote these records itself; one it cannot read is a bug there.
            match decode_record(key, &bytes).expect("an archived record decodes") {
                Record::Project(p) => b.projects.push(p),
                Record::Outgoing(o) => {
                    b.outgoing.insert(o.id.clone(), o);
                }
                Record::Incoming(i) => b.incoming.push(i),
                Record::Job(_) | Record::Hosted(_) | Record::Other => {}
            }
        }
        b.projects.sort_by_key(|p| p.filed_at);
        b
    }
}

/// A member where a project could end well: it has the project's sector as a priority.
struct Haven<'a> {
    index: usize,
    id: &'a MemberId,
    country: aiguillage_wire::CountryCode,
    services: &'a [Service],
    takes_referrals: bool,
    has_gpus: bool,
}

/// For each sector, the members that have it as a priority.
struct Achievable<'a> {
    by_sector: BTreeMap<Sector, Vec<Haven<'a>>>,
}

impl<'a> Achievable<'a> {
    fn index(sim: &'a Sim<'_>) -> Achievable<'a> {
        let mut by_sector: BTreeMap<Sector, Vec<Haven<'a>>> = BTreeMap::new();
        for (index, m) in sim.members.iter().enumerate() {
            for s in &m.profile.sectors.priority {
                by_sector.entry(*s).or_default().push(Haven {
                    index,
                    id: m.id(),
                    country: m.country(),
                    services: &m.profile.services,
                    takes_referrals: m.referral_intake > 0,
                    has_gpus: m.gpus > 0,
                });
            }
        }
        Achievable { by_sector }
    }

    /// Whether a project with `card`, filed at member `home`, could end at a member where
    /// its sector is a priority: home itself, or one inside the consent that takes
    /// referrals; either offering every service the project needs and, when the project
    /// needs GPU hours, having GPUs (routing's definition of better suited, less the intake
    /// free at the moment).
    fn any(&self, card: &ProjectCard, home: usize) -> bool {
        self.by_sector.get(&card.sector).is_some_and(|havens| {
            havens.iter().any(|h| {
                card.services_needed.iter().all(|s| h.services.contains(s))
                    && (h.index == home
                        || (h.takes_referrals
                            && (h.has_gpus || card.gpu_hours == 0)
                            && card.consent.allows(h.id, h.country)))
            })
        })
    }
}

/// The spans during which referral `r` held an intake slot, as (+1 at start, −1 at end).
fn held_spans(r: &InReferral, out: &mut Vec<(u64, i32)>) {
    let holds = |t: &str| matches!(t, "accepted" | "handed_over" | "in_progress");
    let mut holding = false;
    for t in &r.history {
        let now = holds(&t.state);
        if now != holding {
            out.push((t.at.millis(), if now { 1 } else { -1 }));
            holding = now;
        }
    }
}

/// The most spans open at once; an end at the same instant as a start counts first.
fn peak(mut events: Vec<(u64, i32)>) -> u32 {
    events.sort_unstable();
    let (mut open, mut most) = (0i64, 0i64);
    for (_, d) in events {
        open += i64::from(d);
        most = most.max(open);
    }
    most.max(0) as u32
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
            declined_no_capacity: 0,
            intake: mb.referral_intake,
            peak_held: 0,
            utilisation: 0.0,
            gpu_hours_hosted_for_others: 0.0,
            gpu_hours_used_elsewhere: 0.0,
        })
        .collect();
    let possible = Achievable::index(sim);
    let mut achievable = 0u64;
    for (oi, core) in sim.cores().enumerate() {
        let st = core.state();
        let books = Books::of(st, sim.archive().of(oi));
        for fp in &books.projects {
            p.filed += 1;
            members[oi].filed += 1;
            let can_match = possible.any(&fp.card, oi);
            achievable += u64::from(can_match);
            let mut exhausted = false;
            let mut end = "kept";
            let ended_at = match &fp.referral {
                None => match fp.explanation.outcome {
                    Outcome::Exhausted => {
                        exhausted = true;
                        end = "unplaced";
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
                    match books.outgoing.get(rid) {
                        None => {
                            p.pending += 1;
                            end = "pending";
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
                                end = "accepted_elsewhere";
                                if let Some(at) = a.answered_at {
                                    acceptance
                                        .push(at.millis().saturating_sub(fp.filed_at.millis()));
                                }
                                sim.index.get(&a.target).copied()
                            } else {
                                match out.state {
                                    OutState::Exhausted => {
                                        if fp.journey.state == JourneyState::Unplaced {
                                            exhausted = true;
                                            end = "unplaced";
                                            None
                                        } else {
                                            p.served_at_home_after_all += 1;
                                            end = "served_at_home_after_all";
                                            Some(oi)
                                        }
                                    }
                                    OutState::Withdrawn => {
                                        p.withdrawn += 1;
                                        end = "withdrawn";
                                        None
                                    }
                                    _ => {
                                        p.pending += 1;
                                        end = "pending";
                                        None
                                    }
                                }
                            }
                        }
                    }
                }
            };
            if exhausted {
                p.exhausted += 1;
                p.exhausted_with_eligible += u64::from(can_match);
                members[oi].exhausted += 1;
            }
            let good =
                ended_at.is_some_and(|e| is_priority(&sim.members[e].profile, fp.card.sector));
            matched += u64::from(good);
            if can_match && !good {
                let rule = fp.explanation.rule.tag();
                // A priority member that was full when the project was filed.
                let full = fp.explanation.ineligible.iter().any(|i| {
                    i.rule == Ineligible::NoIntake
                        && sim
                            .index
                            .get(&i.member)
                            .is_some_and(|&m| is_priority(&sim.members[m].profile, fp.card.sector))
                });
                let why = if full {
                    ", a priority member's intake full"
                } else {
                    ""
                };
                *p.missed.entry(format!("{rule}: {end}{why}")).or_default() += 1;
            }
        }
        let mut held = Vec::new();
        for r in &books.incoming {
            members[oi].offers_in += 1;
            if r.state.was_accepted() {
                members[oi].accepted_in += 1;
            } else if let InState::Declined { reason, .. } = &r.state {
                members[oi].declined_in += 1;
                if *reason == DeclineReason::NoCapacity {
                    members[oi].declined_no_capacity += 1;
                }
            }
            held_spans(r, &mut held);
        }
        members[oi].peak_held = peak(held);
        let mut used = 0u64;
        for (_, t) in st.ledger.peers() {
            used += t.gpu_seconds_consumed;
        }
        members[oi].gpu_hours_used_elsewhere = round3(used as f64 / 3600.0);
    }
    p.achievable_match_quality = share(achievable, p.filed);
    p.achieved_ratio = share(matched, achievable);
    let mut inflow = InflowMeasures::default();
    for (mr, setup) in members.iter().zip(&sim.members) {
        if setup.referral_intake == 0 {
            continue;
        }
        inflow.members_at_intake += u64::from(mr.declined_no_capacity > 0);
        inflow.declined_no_capacity += mr.declined_no_capacity;
        let load = f64::from(mr.peak_held) / f64::from(setup.referral_intake);
        if load > inflow.max_peak_over_intake {
            inflow.max_peak_over_intake = round3(load);
            inflow.most_loaded = Some(mr.member.clone());
        }
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
        inflow,
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

#[cfg(test)]
mod tests {
    use super::peak;

    #[test]
    fn peak_counts_the_most_spans_open_at_once() {
        assert_eq!(peak(vec![]), 0);
        // [0, 10) and [5, 20) overlap; [20, 30) starts as the second ends.
        let spans = vec![(0, 1), (10, -1), (5, 1), (20, -1), (20, 1), (30, -1)];
        assert_eq!(peak(spans), 2);
        assert_eq!(peak(vec![(0, 1), (0, -1), (0, 1), (1, -1)]), 1);
    }
}
