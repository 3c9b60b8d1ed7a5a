//! Random input sequences against the in-memory federation: any order, duplicates, drops,
//! delays, crashes and clock jumps. Safety invariants are checked after every step, and
//! liveness invariants once the faults stop and the federation has quietened.

mod common;

use std::collections::BTreeMap;

use aiguillage_core::{HostPhase, InState, Input, JobPhase, StateKey};
use aiguillage_wire::*;
use common::*;
use proptest::prelude::*;

const MEMBERS: &[&str] = &[
    "lu-l-aif",
    "es-1healthai",
    "de-jaif",
    "fr-ai2f",
    "it-it4lia",
];
const SECTORS: &[Sector] = &[
    Sector::Health,
    Sector::DefenceSecurity,
    Sector::Health,
    Sector::Space,
    Sector::FinanceInsurance,
    Sector::Gaming,
    Sector::Agrifood,
    Sector::Manufacturing,
];
const COUNTRIES: &[&str] = &["LU", "DE", "FR", "ES", "IT"];

#[derive(Clone, Debug)]
enum Action {
    File {
        at: usize,
        sector: usize,
        country: usize,
        consent: u8,
    },
    Submit {
        at: usize,
        gpus: u32,
        secs: u64,
        exit: i32,
    },
    Advance(u64),
    Jump(u64),
    Crash(usize),
    Restart(usize),
    Decide {
        at: usize,
        accept: bool,
    },
    Withdraw {
        at: usize,
    },
    Progress {
        at: usize,
        done: bool,
    },
    Cancel {
        at: usize,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let m = 0..MEMBERS.len();
    prop_oneof![
        6 => (m.clone(), 0..SECTORS.len(), 0..COUNTRIES.len(), 0u8..4)
            .prop_map(|(at, sector, country, consent)| Action::File { at, sector, country, consent }),
        4 => (m.clone(), 1u32..4, 1u64..200, 0i32..2)
            .prop_map(|(at, gpus, secs, exit)| Action::Submit { at, gpus, secs, exit }),
        5 => (0u64..20_000).prop_map(Action::Advance),
        1 => (60_000u64..3_600_000).prop_map(Action::Jump),
        1 => m.clone().prop_map(Action::Crash),
        2 => m.clone().prop_map(Action::Restart),
        2 => (m.clone(), any::<bool>()).prop_map(|(at, accept)| Action::Decide { at, accept }),
        1 => m.clone().prop_map(|at| Action::Withdraw { at }),
        2 => (m.clone(), any::<bool>()).prop_map(|(at, done)| Action::Progress { at, done }),
        1 => m.prop_map(|at| Action::Cancel { at }),
    ]
}

fn consent(kind: u8, country: &str) -> ConsentScope {
    match kind {
        0 => ConsentScope {
            whole_federation: true,
            members: vec![],
            countries: vec![],
        },
        1 => ConsentScope {
            whole_federation: false,
            members: vec![],
            countries: vec![CountryCode::new(country).unwrap()],
        },
        2 => ConsentScope {
            whole_federation: false,
            members: vec![
                MemberId::new("de-jaif").unwrap(),
                MemberId::new("es-1healthai").unwrap(),
            ],
            countries: vec![],
        },
        _ => ConsentScope {
            whole_federation: false,
            members: vec![],
            countries: vec![],
        },
    }
}

fn apply(net: &mut Net, a: &Action) {
    let member = |i: usize| Net::id(MEMBERS[i]);
    match a {
        Action::File {
            at,
            sector,
            country,
            consent: k,
        } => {
            let mut c = card(SECTORS[*sector], COUNTRIES[*country]);
            c.consent = consent(*k, COUNTRIES[*country]);
            net.input(
                &member(*at),
                Input::FileProject {
                    card: c,
                    dossier: dossier(),
                    choice: aiguillage_core::FilingChoice::Route,
                    by: "adviser".into(),
                },
            );
        }
        Action::Submit {
            at,
            gpus,
            secs,
            exit,
        } => {
            let requirements = JobRequirements {
                gpus: *gpus,
                time_limit_s: secs * 2 + 60,
                accelerator: None,
                latest_start: net.now.saturating_add_ms(7_200_000),
                residency: vec![],
                priority: 0,
            };
            let command = vec!["sim".into(), secs.to_string(), exit.to_string()];
            net.input(
                &member(*at),
                Input::SubmitJob {
                    requirements,
                    command,
                    env: vec![],
                },
            );
        }
        Action::Advance(ms) => net.run_for(*ms),
        Action::Jump(ms) => {
            // The clock leaps: every deadline in between is due at once.
            net.now = net.now.saturating_add_ms(*ms);
            net.run_for(1);
        }
        Action::Crash(i) => net.crash(MEMBERS[*i]),
        Action::Restart(i) => {
            if net.down.contains(&member(*i)) {
                net.restart(MEMBERS[*i]);
            }
        }
        Action::Decide { at, accept } => {
            let pending = net.cores[&member(*at)]
                .state()
                .incoming
                .iter()
                .find(|(_, r)| matches!(r.state, InState::AwaitingDecision { .. }))
                .map(|(id, _)| id.clone());
            if let Some(referral) = pending {
                net.input(
                    &member(*at),
                    Input::Decide {
                        referral,
                        accept: *accept,
                        reason: None,
                        detail: "operator".into(),
                        by: "operator".into(),
                    },
                );
            }
        }
        Action::Withdraw { at } => {
            let open = net.cores[&member(*at)]
                .state()
                .outgoing
                .iter()
                .find(|(_, r)| !r.state.is_final())
                .map(|(id, _)| id.clone());
            if let Some(referral) = open {
                net.input(
                    &member(*at),
                    Input::Withdraw {
                        referral,
                        detail: "client changed plans".into(),
                        by: "operator".into(),
                    },
                );
            }
        }
        Action::Progress { at, done } => {
            let held = net.cores[&member(*at)]
                .state()
                .incoming
                .iter()
                .find(|(_, r)| matches!(r.state, InState::HandedOver | InState::InProgress))
                .map(|(id, _)| id.clone());
            if let Some(referral) = held {
                let state = if *done {
                    ProgressState::Completed
                } else {
                    ProgressState::InProgress
                };
                net.input(
                    &member(*at),
                    Input::ReportProgress {
                        referral,
                        step: Service::PocSandbox,
                        state,
                        note: "update".into(),
                        by: "operator".into(),
                    },
                );
            }
        }
        Action::Cancel { at } => {
            let job = net.cores[&member(*at)].state().jobs.keys().next().cloned();
            if let Some(job) = job {
                net.input(&member(*at), Input::CancelJob { job });
            }
        }
    }
}

/// Holds at every moment.
fn check_safety(net: &Net) -> Result<(), String> {
    let cores: Vec<&aiguillage_core::Core> = net.cores.values().collect();
    match aiguillage_core::invariants::safety(&cores, |m| net.cores.get(m)).first() {
        Some(v) => Err(v.clone()),
        None => Ok(()),
    }
}

/// Holds once faults stopped and every message had time to settle.
fn check_settled(net: &Net) -> Result<(), String> {
    // A referral is held by at most one target, and only by the one the origin recorded.
    let mut holders: BTreeMap<ReferralId, Vec<MemberId>> = BTreeMap::new();
    for (m, core) in &net.cores {
        for (id, r) in &core.state().incoming {
            if r.state.was_accepted() {
                holders.entry(id.clone()).or_default().push(m.clone());
            }
        }
    }
    for (id, hs) in &holders {
        if hs.len() > 1 {
            return Err(format!("{id} held by {hs:?}"));
        }
        let origin = MemberId::new(id.origin().unwrap()).unwrap();
        let origin = &net.cores[&origin];
        // The origin's record of a finished referral may have left its memory first.
        let Some(out) = origin.state().outgoing.get(id) else {
            if origin.retired(&StateKey::Outgoing(id.clone())).is_none() {
                return Err(format!("{id} held but unknown at its origin"));
            }
            continue;
        };
        if out.accepted_by() != Some(&hs[0]) {
            return Err(format!(
                "{id} held by {} but the origin recorded {:?}",
                hs[0],
                out.accepted_by()
            ));
        }
    }
    // No job is left in flight, and at most one host runs any job.
    for core in net.cores.values() {
        for (job, j) in &core.state().jobs {
            if !matches!(
                j.phase,
                JobPhase::Done { .. } | JobPhase::Cancelled | JobPhase::Missed { .. }
            ) {
                return Err(format!("{job} still in flight: {:?}", j.phase));
            }
            let running = net
                .cores
                .values()
                .filter(|h| {
                    h.state().hosted.get(job).is_some_and(|x| {
                        matches!(x.phase, HostPhase::Running { .. } | HostPhase::Held { .. })
                    })
                })
                .count();
            if running > 0 {
                return Err(format!(
                    "{job} still held or running at {running} host(s) after it settled"
                ));
            }
        }
    }
    // Ledgers agree pairwise.
    for (a, ca) in &net.cores {
        for (b, cb) in &net.cores {
            if a == b {
                continue;
            }
            let ta = ca.state().ledger.totals(b);
            let tb = cb.state().ledger.totals(a);
            if ta.gpu_seconds_consumed != tb.gpu_seconds_hosted {
                return Err(format!(
                    "{a} consumed {} GPU-s from {b}, which hosted {}",
                    ta.gpu_seconds_consumed, tb.gpu_seconds_hosted
                ));
            }
            if ta.referrals_sent_accepted != tb.referrals_received_accepted {
                return Err(format!(
                    "{a} counts {} referrals accepted by {b}, which counts {}",
                    ta.referrals_sent_accepted, tb.referrals_received_accepted
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_faults(
        actions in proptest::collection::vec(action(), 5..60),
        seed in any::<u64>(),
        drop_pct in 0u64..25,
        dup_pct in 0u64..25,
        jitter_ms in 0u64..3_000,
        survive in any::<bool>(),
    ) {
        // Small capacities push jobs into overflow; short deadlines make answers race them.
        let gpus = [("lu-l-aif", 0), ("fr-ai2f", 1), ("es-1healthai", 2), ("de-jaif", 3), ("it-it4lia", 2)];
        let mut net = Net::new(MEMBERS, &gpus, |_, c| {
            c.offer_ttl_ms = 6_000;
            c.decision_ttl_ms = 4_000;
            c.resend_ms = 1_500;
            c.reserve_ttl_ms = 4_000;
            c.lease_ttl_ms = 12_000;
            c.heartbeat_ms = 4_000;
            // Finished records leave memory while faults go on.
            c.retention_ms = 600_000;
        });
        net.jobs_survive_crash = survive;
        net.chaos = Some(Chaos { state: seed | 1, drop_pct, dup_pct, jitter_ms });
        for a in &actions {
            apply(&mut net, a);
            if let Err(e) = check_safety(&net) {
                prop_assert!(false, "after {a:?}: {e}");
            }
        }
        // Faults stop; everyone comes back; give it simulated time to settle.
        net.chaos = None;
        for m in MEMBERS {
            if net.down.contains(&Net::id(m)) {
                net.restart(m);
            }
        }
        // Three hours: past every job's latest start, so every job must have an outcome.
        net.run_for(3 * 3_600_000);
        if std::env::var("PROP_STATS").is_ok() {
            let mut refs = 0; let mut acc = 0; let mut remote = 0; let mut receipts = 0; let mut decl = 0;
            for c in net.cores.values() {
                refs += c.state().outgoing.len();
                acc += c.state().outgoing.values().filter(|r| r.accepted_by().is_some()).count();
                decl += c.state().outgoing.values().map(|r| r.attempts.len()).sum::<usize>();
                remote += c.state().jobs.values().filter(|j| j.epoch > 0).count();
                receipts += c.state().jobs.values().filter(|j| j.receipt.is_some()).count();
            }
            eprintln!("STATS refs={refs} accepted={acc} attempts={decl} remote_jobs={remote} receipts={receipts}");
        }
        if let Err(e) = check_safety(&net).and_then(|()| check_settled(&net)) {
            prop_assert!(false, "settled: {e}");
        }
    }
}
