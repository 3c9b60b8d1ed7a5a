//! The simulator on small versions of the shipped scenarios: determinism, invariants under
//! faults, and the two comparisons the federation must win.

use std::path::{Path, PathBuf};

use aiguillage_sim::scenario::Dur;
use aiguillage_sim::{RunOutcome, Scenario};

fn simulations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../simulations")
}

fn small(name: &str) -> Scenario {
    Scenario::load(&simulations().join("small").join(format!("{name}.toml"))).unwrap()
}

fn run(s: &Scenario, seed: u64, policy: &str) -> RunOutcome {
    aiguillage_sim::run(s, seed, policy, None).unwrap()
}

#[test]
fn the_same_seed_gives_the_same_digest_and_another_seed_another() {
    let s = small("crash-restart");
    let a = run(&s, 9, "scored");
    let b = run(&s, 9, "scored");
    assert_eq!(a.digest, b.digest);
    assert_eq!(
        serde_json::to_string(&a.summary).unwrap(),
        serde_json::to_string(&b.summary).unwrap()
    );
    let c = run(&s, 10, "scored");
    assert_ne!(a.digest, c.digest);
}

fn assert_clean(r: &RunOutcome) {
    let inv = &r.summary.invariants;
    assert_eq!(inv.violations, 0, "{:#?}", inv.first);
    assert!(inv.checks > 0);
}

#[test]
fn invariants_hold_across_partitions_that_heal_on_a_lossy_network() {
    let r = run(&small("partition-heal"), 5, "scored");
    assert_clean(&r);
    let n = &r.summary.network;
    assert!(n.dropped_partition > 0, "the partition cut messages");
    assert!(n.dropped_loss > 0, "the network lost messages");
    assert!(r.summary.projects.accepted_elsewhere > 0);
    assert!(r.summary.jobs.started_remote > 0);
}

#[test]
fn invariants_hold_across_crashes_restarts_a_silent_member_and_clock_skew() {
    let r = run(&small("crash-restart"), 9, "scored");
    assert_clean(&r);
    let e = &r.summary.engine;
    assert_eq!(e.crashes, 4);
    assert_eq!(
        e.restarts, 4,
        "the member without a restart comes back to settle"
    );
    assert!(r.summary.network.dropped_silent > 0);
    assert!(r.summary.projects.accepted_elsewhere > 0);
    assert!(r.summary.jobs.started_remote > 0);
}

#[test]
fn invariants_hold_under_heavy_loss_duplicates_and_reordering() {
    let mut s = small("crash-restart");
    s.network.loss = 0.1;
    s.network.duplicate = 0.1;
    s.network.jitter = aiguillage_sim::scenario::Dur(3_000);
    let r = run(&s, 3, "scored");
    assert_clean(&r);
    assert!(r.summary.network.dropped_loss > 100);
}

#[test]
fn federation_cuts_the_p95_job_wait_in_an_overflow_surge() {
    let s = small("overflow-surge");
    let alone = run(&s, 42, "no_federation");
    let fed = run(&s, 42, "scored");
    assert_clean(&alone);
    assert_clean(&fed);
    let p95 = |r: &RunOutcome| r.summary.jobs.wait_minutes.p95.unwrap();
    assert!(
        p95(&fed) < p95(&alone),
        "p95 wait with federation {} min, without {} min",
        p95(&fed),
        p95(&alone)
    );
    assert_eq!(alone.summary.jobs.started_remote, 0);
    assert!(fed.summary.jobs.started_remote > 0);
}

#[test]
fn aiguillage_scoring_beats_random_referral_on_match_quality() {
    let s = small("eu-week");
    let scored = run(&s, 7, "scored");
    let random = run(&s, 7, "random");
    assert_clean(&scored);
    assert_clean(&random);
    // Same arrivals under both policies: only where referrals go differs.
    assert_eq!(scored.summary.projects.filed, random.summary.projects.filed);
    let mq = |r: &RunOutcome| r.summary.projects.match_quality;
    assert!(
        mq(&scored) > mq(&random),
        "scored {} vs random {}",
        mq(&scored),
        mq(&random)
    );
}

#[test]
fn scored_reaches_what_was_achievable_and_the_margin_rule_falls_short() {
    let s = small("eu-week");
    let scored = run(&s, 7, "scored");
    let margin = run(&s, 7, "margin");
    assert_clean(&scored);
    assert_clean(&margin);
    let p = &scored.summary.projects;
    assert!(p.achievable_match_quality > 0.5, "{p:?}");
    assert!(
        p.match_quality <= p.achievable_match_quality,
        "nothing ends better than was possible: {p:?}"
    );
    assert!(p.achieved_ratio >= 0.95, "scored achieved ratio {p:?}");
    assert_eq!(p.exhausted_with_eligible, 0, "{:?}", p.missed);
    // The margin rule keeps accepted-sector projects a priority member would take.
    let m = &margin.summary.projects;
    assert_eq!(m.achievable_match_quality, p.achievable_match_quality);
    assert!(m.achieved_ratio < 0.9, "margin achieved ratio {m:?}");
    assert!(
        m.missed
            .keys()
            .any(|k| k.starts_with("accepted_not_beaten")),
        "{:?}",
        m.missed
    );
    // No member held more referrals than its intake.
    assert!(scored.summary.inflow.max_peak_over_intake <= 1.0);
    for mr in &scored.members {
        assert!(mr.peak_held <= mr.intake, "{mr:?}");
    }
}

#[test]
fn records_archived_under_a_short_retention_still_count_in_the_summary() {
    let mut short = small("eu-week");
    short.core.retention = Some(Dur(3_600_000));
    let mut long = small("eu-week");
    long.core.retention = Some(Dur(30 * 86_400_000));
    let a = run(&short, 3, "scored");
    let b = run(&long, 3, "scored");
    assert_clean(&a);
    assert!(
        a.summary.engine.records_retired > 100,
        "{:?}",
        a.summary.engine
    );
    assert!(a.summary.engine.records_retired > b.summary.engine.records_retired);
    let (pa, pb) = (&a.summary.projects, &b.summary.projects);
    assert_eq!(
        (pa.filed, pa.kept, pa.referred, pa.accepted_elsewhere),
        (pb.filed, pb.kept, pb.referred, pb.accepted_elsewhere)
    );
    assert_eq!(pa.match_quality, pb.match_quality);
    let accepted = |r: &RunOutcome| r.members.iter().map(|m| m.accepted_in).sum::<u64>();
    assert_eq!(accepted(&a), accepted(&b));
}

#[test]
fn projects_kept_at_home_end_their_journeys_leave_memory_and_still_count() {
    let mut ending = small("eu-week");
    ending.core.retention = Some(Dur(3_600_000));
    ending.operators.complete_at_home = Some([Dur(600_000), Dur(7_200_000)]);
    let mut open = small("eu-week");
    open.core.retention = Some(Dur(3_600_000));
    let a = run(&ending, 5, "scored");
    let b = run(&open, 5, "scored");
    assert_clean(&a);
    let (pa, pb) = (&a.summary.projects, &b.summary.projects);
    assert!(pa.kept > 100, "{pa:?}");
    // Every kept project that ended more than the retention before the end left memory:
    // at least most of them, beyond what leaves when only referrals and jobs end.
    assert!(
        a.summary.engine.records_retired > b.summary.engine.records_retired + pa.kept / 2,
        "{:?} against {:?}",
        a.summary.engine,
        b.summary.engine
    );
    // The adviser's draws are its own: everything else happened as without it.
    assert_eq!(
        (pa.filed, pa.kept, pa.referred, pa.accepted_elsewhere),
        (pb.filed, pb.kept, pb.referred, pb.accepted_elsewhere)
    );
    assert_eq!(pa.match_quality, pb.match_quality);
}

#[test]
fn a_run_writes_its_summary_series_and_plots() {
    let r = run(&small("scale"), 1, "scored");
    assert_clean(&r);
    assert_eq!(r.summary.members, 100);
    let dir = tempfile::tempdir().unwrap();
    aiguillage_sim::report::write_run(dir.path(), &r).unwrap();
    for f in [
        "summary.json",
        "timeseries.csv",
        "members_timeseries.csv",
        "members.csv",
        "distributions.csv",
        "gpu_utilisation.svg",
        "job_waits.svg",
        "referral_outcomes.svg",
        "time_to_acceptance.svg",
    ] {
        let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert!(!text.is_empty(), "{f} is empty");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(json["digest"], r.digest.as_str());
    let series = std::fs::read_to_string(dir.path().join("timeseries.csv")).unwrap();
    assert!(series.lines().count() > 3);
    assert!(aiguillage_sim::report::table(&r.summary).contains("match quality"));
}

#[test]
fn every_shipped_scenario_loads_and_its_members_build() {
    let mut seen = 0;
    for dir in [simulations(), simulations().join("small")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let s = Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
                let m = aiguillage_sim::members::build(&s, s.seed)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert!(m.len() >= 2);
                seen += 1;
            }
        }
    }
    assert!(seen >= 10, "{seen} scenarios");
    let eu = Scenario::load(&simulations().join("eu-year.toml")).unwrap();
    assert_eq!(aiguillage_sim::members::build(&eu, 1).unwrap().len(), 32);
    let big = Scenario::load(&simulations().join("scale-1000.toml")).unwrap();
    assert_eq!(aiguillage_sim::members::build(&big, 1).unwrap().len(), 1000);
}

#[test]
fn a_scenario_naming_an_unknown_member_is_refused_with_the_field() {
    let mut s = small("partition-heal");
    s.jobs
        .member_factor
        .insert(aiguillage_wire::MemberId::new("xx-nowhere").unwrap(), 2.0);
    let e = aiguillage_sim::run(&s, 1, "scored", None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("jobs.member_factor.xx-nowhere"), "{e}");
    let e = aiguillage_sim::run(&small("partition-heal"), 1, "greedy", None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("greedy"), "{e}");
}
