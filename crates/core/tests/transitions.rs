//! One test per lifecycle transition not already covered by the scenarios.

mod common;

use aiguillage_core::{
    AttemptOutcome, HostPhase, InState, Input, JobPhase, Notification, OutState, StateKey,
};
use aiguillage_wire::*;
use common::*;

fn two(a: &str, b: &str) -> Net {
    Net::new(&[a, b], &[], |_, _| {})
}

/// Files a health project at lu-l-aif (excluded there) and returns its referral id.
fn refer_health(net: &mut Net) -> ReferralId {
    net.file("lu-l-aif", card(Sector::Health, "LU"))
        .referral
        .expect("referred")
}

/// Refers a health project from lu-l-aif to es-1healthai, lets it settle for 200 ms, checks
/// the target's state, then has lu-l-aif's operator withdraw it.
fn refer_then_withdraw(net: &mut Net, target_state: InState) -> ReferralId {
    let id = refer_health(net);
    net.run_for(200);
    assert_eq!(
        net.core("es-1healthai").state().incoming[&id].state,
        target_state
    );
    net.input(
        &Net::id("lu-l-aif"),
        Input::Withdraw {
            referral: id.clone(),
            detail: "client changed plans".into(),
            by: "operator".into(),
        },
    );
    id
}

/// An offer of attempt 1 of `referral` to `target`.
fn offer(referral: &str, target: &str, card: ProjectCard, respond_by: Timestamp) -> Offer {
    Offer {
        referral: ReferralId::new(referral).unwrap(),
        attempt: 1,
        target: Net::id(target),
        card,
        respond_by,
        rationale: String::new(),
    }
}

fn incoming_decline_reason(net: &Net, at: &str, id: &ReferralId) -> Option<DeclineReason> {
    match &net.core(at).state().incoming.get(id)?.state {
        InState::Declined { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[test]
fn an_offer_in_a_sector_the_target_excludes_is_declined_with_sector_excluded() {
    // A referral offered to lu-l-aif for health, which it excludes.
    let mut net = two("es-1healthai", "lu-l-aif");
    let mut c = card(Sector::Health, "ES");
    c.services_needed = vec![Service::Training];
    let offer = offer(
        "es-1healthai/9",
        "lu-l-aif",
        c,
        net.now.saturating_add_ms(60_000),
    );
    let env = net.seal_as("es-1healthai", &offer);
    net.receive(&Net::id("lu-l-aif"), env);
    assert_eq!(
        incoming_decline_reason(&net, "lu-l-aif", &offer.referral),
        Some(DeclineReason::SectorExcluded)
    );
}

#[test]
fn offers_outside_consent_or_for_someone_else_or_late_are_declined_with_their_reason() {
    let mut net = two("lu-l-aif", "es-1healthai");
    let mk = |n: u32, target: &str, consent: ConsentScope, respond_by: Timestamp| {
        let mut c = card(Sector::Health, "LU");
        c.consent = consent;
        offer(&format!("lu-l-aif/{n}"), target, c, respond_by)
    };
    let later = net.now.saturating_add_ms(60_000);
    let all = ConsentScope {
        whole_federation: true,
        members: vec![],
        countries: vec![],
    };
    let only_de = ConsentScope {
        whole_federation: false,
        members: vec![],
        countries: vec![CountryCode::new("DE").unwrap()],
    };
    let cases = [
        (
            mk(101, "es-1healthai", only_de, later),
            DeclineReason::OutOfConsentScope,
        ),
        (
            mk(103, "es-1healthai", all.clone(), net.now),
            DeclineReason::OfferExpired,
        ),
    ];
    for (offer, reason) in cases {
        let env = net.seal_as("lu-l-aif", &offer);
        net.receive(&Net::id("es-1healthai"), env);
        assert_eq!(
            incoming_decline_reason(&net, "es-1healthai", &offer.referral),
            Some(reason),
            "{}",
            offer.referral
        );
    }
    // An offer addressed to another member is refused before anything of it is kept or
    // counted: a rostered member cannot inflate another's figures with it.
    let received = |net: &Net| {
        net.core("es-1healthai")
            .state()
            .ledger
            .totals(&Net::id("lu-l-aif"))
            .referrals_received
    };
    let before = received(&net);
    let misaddressed = mk(102, "de-jaif", all, later);
    let env = net.seal_as("lu-l-aif", &misaddressed);
    net.receive(&Net::id("es-1healthai"), env);
    assert!(
        !net.core("es-1healthai")
            .state()
            .incoming
            .contains_key(&misaddressed.referral)
    );
    assert_eq!(received(&net), before);
    assert!(
        net.refusals
            .iter()
            .any(|(m, r)| m.as_str() == "es-1healthai" && r.reason == "not_the_target")
    );
}

#[test]
fn a_full_intake_declines_with_no_capacity() {
    let mut net = Net::new(&["lu-l-aif", "es-1healthai"], &[], |id, c| {
        if id == "es-1healthai" {
            c.referral_intake = 1;
        }
    });
    let first = refer_health(&mut net);
    net.run_for(2_000);
    assert!(matches!(
        net.core("es-1healthai").state().incoming[&first].state,
        InState::HandedOver
    ));
    // The advertised intake is now 0, so routing at lu-l-aif leaves es-1healthai out.
    assert_eq!(
        net.core("lu-l-aif")
            .state()
            .directory
            .get(&Net::id("es-1healthai"))
            .unwrap()
            .advert
            .referral_intake,
        Some(0)
    );
    let second = net.file("lu-l-aif", card(Sector::Health, "LU"));
    let explanation = &net.core("lu-l-aif").state().projects[&second.project].explanation;
    assert!(
        explanation
            .ineligible
            .iter()
            .any(|i| i.member.as_str() == "es-1healthai"
                && i.rule == aiguillage_core::routing::Ineligible::NoIntake)
    );
    // An offer that arrives anyway (sent on an older advert) is declined for capacity.
    let offer = offer(
        "lu-l-aif/500",
        "es-1healthai",
        card(Sector::Health, "LU"),
        net.now.saturating_add_ms(60_000),
    );
    let env = net.seal_as("lu-l-aif", &offer);
    net.receive(&Net::id("es-1healthai"), env);
    assert_eq!(
        incoming_decline_reason(&net, "es-1healthai", &offer.referral),
        Some(DeclineReason::NoCapacity)
    );
}

#[test]
fn an_undecided_offer_is_declined_at_the_deadline() {
    let mut net = two("lu-l-aif", "it-it4lia");
    let id = refer_health(&mut net);
    net.run_for(1_000);
    assert!(matches!(
        net.core("it-it4lia").state().incoming[&id].state,
        InState::AwaitingDecision { .. }
    ));
    net.run_for(fast_config().decision_ttl_ms);
    assert_eq!(
        incoming_decline_reason(&net, "it-it4lia", &id),
        Some(DeclineReason::NoDecision)
    );
    assert!(matches!(
        net.core("lu-l-aif").state().outgoing[&id].attempts[0].outcome,
        Some(AttemptOutcome::Declined {
            reason: DeclineReason::NoDecision,
            ..
        })
    ));
}

#[test]
fn a_duplicate_offer_gets_the_same_answer() {
    let mut net = two("lu-l-aif", "es-1healthai");
    let id = refer_health(&mut net);
    net.run_for(2_000);
    let before = net.core("es-1healthai").state().incoming[&id].clone();
    let offer = offer(
        id.as_str(),
        "es-1healthai",
        before.card.clone(),
        before.respond_by,
    );
    let env = net.seal_as("lu-l-aif", &offer);
    net.receive(&Net::id("es-1healthai"), env);
    net.run_for(2_000);
    let after = &net.core("es-1healthai").state().incoming[&id];
    assert_eq!(after.state, before.state);
    assert_eq!(
        after.received_at, before.received_at,
        "not taken as a new offer"
    );
    assert_eq!(
        net.core("es-1healthai")
            .state()
            .ledger
            .totals(&Net::id("lu-l-aif"))
            .referrals_received,
        1
    );
}

#[test]
fn the_operator_withdraws_a_referral_and_the_target_lets_go() {
    let mut net = two("lu-l-aif", "it-it4lia");
    let id = refer_health(&mut net);
    net.run_for(1_000);
    net.input(
        &Net::id("lu-l-aif"),
        Input::Withdraw {
            referral: id.clone(),
            detail: "client went elsewhere".into(),
            by: "operator".into(),
        },
    );
    net.run_for(1_000);
    let r = &net.core("lu-l-aif").state().outgoing[&id];
    assert_eq!(r.state, OutState::Withdrawn);
    assert_eq!(r.attempts[0].outcome, Some(AttemptOutcome::Withdrawn));
    assert_eq!(
        net.core("it-it4lia").state().incoming[&id].state,
        InState::Withdrawn
    );
    assert!(
        net.notifications
            .iter()
            .any(|(m, n)| m.as_str() == "it-it4lia"
                && matches!(n, Notification::ReferralWithdrawn { .. }))
    );
    // A late decision on a withdrawn offer changes nothing.
    net.input(
        &Net::id("it-it4lia"),
        Input::Decide {
            referral: id.clone(),
            accept: true,
            reason: None,
            detail: String::new(),
            by: "operator".into(),
        },
    );
    assert_eq!(
        net.core("it-it4lia").state().incoming[&id].state,
        InState::Withdrawn
    );
}

#[test]
fn a_withdrawal_after_the_hand_over_is_resent_until_the_target_answers_and_both_ledgers_count_it() {
    let mut net = two("lu-l-aif", "es-1healthai");
    // The target's acknowledgements of the hand-over and its first answers to the
    // withdrawal are lost.
    let lost = std::rc::Rc::new(std::cell::Cell::new(3u32));
    let budget = lost.clone();
    net.drop = Box::new(move |to, e| {
        let drop = to.as_str() == "lu-l-aif" && e.kind == MessageKind::Progress && budget.get() > 0;
        if drop {
            budget.set(budget.get() - 1);
        }
        drop
    });
    let id = refer_then_withdraw(&mut net, InState::HandedOver);
    net.run_for(10 * fast_config().resend_ms);
    assert_eq!(
        lost.get(),
        0,
        "the answers were lost, then one came through"
    );
    let es = net.core("es-1healthai").state();
    assert_eq!(es.incoming[&id].state, InState::Withdrawn);
    let (lu_totals, es_totals) = (
        net.core("lu-l-aif")
            .state()
            .ledger
            .totals(&Net::id("es-1healthai")),
        es.ledger.totals(&Net::id("lu-l-aif")),
    );
    assert_eq!(lu_totals.referrals_sent_accepted, 1);
    assert_eq!(es_totals.referrals_received_accepted, 1);
    assert!(net.core("lu-l-aif").state().outgoing[&id].hand_over_acked);
    // Answered, the origin stops re-sending.
    let before = net.core("es-1healthai").state().incoming[&id].history.len();
    net.run_for(10 * fast_config().resend_ms);
    assert_eq!(
        net.core("es-1healthai").state().incoming[&id].history.len(),
        before
    );
}

#[test]
fn a_withdrawal_that_overtakes_the_hand_over_is_answered_and_counted_by_neither_side() {
    let mut net = two("lu-l-aif", "es-1healthai");
    // Every hand-over is lost: the target never holds the dossier.
    net.drop = Box::new(|to, e| to.as_str() == "es-1healthai" && e.kind == MessageKind::HandOver);
    let id = refer_then_withdraw(&mut net, InState::Accepted);
    net.run_for(10 * fast_config().resend_ms);
    let es = net.core("es-1healthai").state();
    assert_eq!(es.incoming[&id].state, InState::Withdrawn);
    assert_eq!(es.incoming[&id].dossier, None);
    let lu = net.core("lu-l-aif").state();
    assert!(
        lu.outgoing[&id].hand_over_acked,
        "the answer stops the re-sends"
    );
    assert_eq!(
        lu.ledger
            .totals(&Net::id("es-1healthai"))
            .referrals_sent_accepted,
        0
    );
    assert_eq!(
        es.ledger
            .totals(&Net::id("lu-l-aif"))
            .referrals_received_accepted,
        0
    );
}

#[test]
fn a_new_peer_is_handed_this_members_own_advert_with_the_directory_and_the_roster() {
    let mut net = two("lu-l-aif", "es-1healthai");
    net.run_for(1_000);
    let envelopes = net.core("lu-l-aif").directory_envelopes();
    let has = |kind: MessageKind, signer: &str| {
        envelopes
            .iter()
            .any(|e| e.kind == kind && e.signer.as_str() == signer)
    };
    assert!(has(MessageKind::Advert, "lu-l-aif"), "its own advert");
    assert!(
        has(MessageKind::Advert, "es-1healthai"),
        "the other's advert"
    );
    assert!(has(MessageKind::Roster, AUTHORITY_ID), "the roster");
}

#[test]
fn a_finished_referral_leaves_memory_after_its_retention_and_a_replayed_offer_cannot_revive_it() {
    let retention = 60_000;
    let mut net = Net::new(&["lu-l-aif", "es-1healthai"], &[], |_, c| {
        c.retention_ms = retention;
    });
    let id = refer_health(&mut net);
    net.run_for(1_000);
    let offer = offer(
        id.as_str(),
        "es-1healthai",
        net.core("lu-l-aif").state().outgoing[&id].card.clone(),
        net.now.saturating_add_ms(3_600_000),
    );
    net.input(
        &Net::id("es-1healthai"),
        Input::ReportProgress {
            referral: id.clone(),
            step: Service::PocSandbox,
            state: ProgressState::Completed,
            note: "in production".into(),
            by: "operator".into(),
        },
    );
    net.run_for(1_000);
    assert_eq!(
        net.core("lu-l-aif").state().outgoing[&id].state,
        OutState::Completed
    );
    // Kept for the retention, then gone from memory at both ends, each leaving a tombstone
    // and handing the record over for the archive.
    net.run_for(retention / 2);
    assert!(net.core("lu-l-aif").state().outgoing.contains_key(&id));
    net.run_for(retention);
    for (m, key) in [
        ("lu-l-aif", StateKey::Outgoing(id.clone())),
        ("es-1healthai", StateKey::Incoming(id.clone())),
    ] {
        let core = net.core(m);
        assert!(core.retired(&key).is_some(), "{m} keeps a tombstone");
    }
    assert!(!net.core("lu-l-aif").state().outgoing.contains_key(&id));
    assert!(
        net.core("lu-l-aif").state().projects.is_empty(),
        "its project left too"
    );
    assert!(!net.core("es-1healthai").state().incoming.contains_key(&id));
    // The same offer replayed (signed afresh, so not expired) does not bring it back.
    let env = net.seal_as("lu-l-aif", &offer);
    net.receive(&Net::id("es-1healthai"), env);
    assert!(!net.core("es-1healthai").state().incoming.contains_key(&id));
    // The ledger keeps what happened.
    assert_eq!(
        net.core("es-1healthai")
            .state()
            .ledger
            .totals(&Net::id("lu-l-aif"))
            .referrals_received_accepted,
        1
    );
}

#[test]
fn the_records_that_leave_memory_are_handed_over_with_their_last_bytes() {
    let mut net = Net::new(&["lu-l-aif", "es-1healthai"], &[], |_, c| {
        c.retention_ms = 10_000;
    });
    let id = refer_health(&mut net);
    net.run_for(1_000);
    net.input(
        &Net::id("lu-l-aif"),
        Input::Withdraw {
            referral: id.clone(),
            detail: "client changed plans".into(),
            by: "operator".into(),
        },
    );
    net.run_for(2_000);
    let last = net.core("lu-l-aif").state().outgoing[&id].clone();
    let lu = Net::id("lu-l-aif");
    let _ = net.cores.get_mut(&lu).unwrap().take_retired();
    net.run_for(20_000);
    let retired = net.cores.get_mut(&lu).unwrap().take_retired();
    let key = StateKey::Outgoing(id.clone());
    let (_, bytes) = retired
        .iter()
        .find(|(k, _)| *k == key)
        .expect("the referral's record");
    match aiguillage_core::decode_record(&key, bytes).unwrap() {
        aiguillage_core::Record::Outgoing(r) => assert_eq!(r, last),
        other => panic!("{other:?}"),
    }
    assert!(
        net.cores.get_mut(&lu).unwrap().take_retired().is_empty(),
        "handed over once"
    );
}

#[test]
fn an_abandoned_project_is_reported_to_the_origin() {
    let mut net = two("lu-l-aif", "es-1healthai");
    let id = refer_health(&mut net);
    net.run_for(2_000);
    net.input(
        &Net::id("es-1healthai"),
        Input::ReportProgress {
            referral: id.clone(),
            step: Service::Financing,
            state: ProgressState::Abandoned,
            note: "no funding".into(),
            by: "operator".into(),
        },
    );
    net.run_for(1_000);
    assert_eq!(
        net.core("lu-l-aif").state().outgoing[&id].state,
        OutState::Abandoned
    );
    // Intake is released at the target.
    assert_eq!(
        net.core("es-1healthai").own_advert().referral_intake,
        Some(net.core("es-1healthai").config().referral_intake)
    );
}

#[test]
fn an_acceptance_after_the_offer_expired_is_answered_with_a_withdraw() {
    let mut net = two("lu-l-aif", "it-it4lia");
    let id = refer_health(&mut net);
    net.run_for(1_000);
    // it-it4lia's operator decides only after lu-l-aif gave up on the offer.
    net.run_for(fast_config().offer_ttl_ms);
    assert_eq!(
        net.core("lu-l-aif").state().outgoing[&id].state,
        OutState::Exhausted
    );
    let late = Accept {
        referral: id.clone(),
        attempt: 1,
    };
    let env = net.seal_as("it-it4lia", &late);
    net.receive(&Net::id("lu-l-aif"), env);
    net.run_for(1_000);
    assert_eq!(
        net.core("lu-l-aif").state().outgoing[&id].accepted_by(),
        None
    );
}

#[test]
fn an_advert_with_a_newer_seq_replaces_an_older_one_and_expired_adverts_drop_out() {
    let mut net = Net::new(&["lu-l-aif", "de-jaif"], &[], |_, _| {});
    let de = Net::id("de-jaif");
    let seq = net
        .core("lu-l-aif")
        .state()
        .directory
        .get(&de)
        .unwrap()
        .advert
        .seq;
    let mut older = net.core("de-jaif").own_advert();
    older.seq = seq - 1;
    older.name = "stale".into();
    let env = net.seal_as("de-jaif", &older);
    net.receive(&Net::id("lu-l-aif"), env);
    assert_ne!(
        net.core("lu-l-aif")
            .state()
            .directory
            .get(&de)
            .unwrap()
            .advert
            .name,
        "stale"
    );
    let mut newer = net.core("de-jaif").own_advert();
    newer.seq = seq + 1;
    newer.name = "fresh".into();
    let env = net.seal_as("de-jaif", &newer);
    net.receive(&Net::id("lu-l-aif"), env);
    assert_eq!(
        net.core("lu-l-aif")
            .state()
            .directory
            .get(&de)
            .unwrap()
            .advert
            .name,
        "fresh"
    );
    // de-jaif goes silent: its advert expires and leaves the directory.
    net.crash("de-jaif");
    net.run_for(fast_config().advert_ttl_ms + 60_000);
    assert!(net.core("lu-l-aif").state().directory.get(&de).is_none());
}

#[test]
fn a_refused_reservation_moves_to_the_next_bidder() {
    let mut net = Net::new(
        &["lu-l-aif", "de-jaif", "it-it4lia"],
        &[("lu-l-aif", 0)],
        |_, _| {},
    );
    let job = net.submit("lu-l-aif", 1, 30, 0, &[]);
    net.run_for(1_000);
    let j = &net.core("lu-l-aif").state().jobs[&job];
    let first = j.placements[0].host.clone();
    // The first host took the job; submit another that fills it, then check a fresh job
    // whose reservation the busy host refuses goes to the other.
    assert!(matches!(j.phase, JobPhase::Leased { .. }));
    let big = net.submit("lu-l-aif", 8, 30, 0, &[]);
    net.run_for(1_000);
    let j = &net.core("lu-l-aif").state().jobs[&big];
    // de-jaif has 8 GPUs in the devnet assumptions, it-it4lia 8: whichever took the first
    // job has 7 free and cannot hold 8, so the job ends at the other one.
    let host = j.host().cloned();
    assert!(host.is_some(), "{:?}", j.phase);
    assert_ne!(host.as_ref(), Some(&first));
}

#[test]
fn a_reservation_that_is_never_confirmed_lapses_and_frees_the_gpus() {
    let mut net = Net::new(&["lu-l-aif", "de-jaif"], &[("lu-l-aif", 0)], |_, _| {});
    let spec = JobSpec {
        job: JobId::new("lu-l-aif/77").unwrap(),
        requirements: JobRequirements {
            gpus: 2,
            time_limit_s: 60,
            accelerator: None,
            latest_start: net.now.saturating_add_ms(600_000),
            residency: vec![],
            priority: 0,
        },
        command: vec!["sim".into(), "5".into(), "0".into()],
        env: vec![],
    };
    let reserve = Reserve {
        spec: spec.clone(),
        epoch: 1,
        hold_until: net.now.saturating_add_ms(3_000),
    };
    let env = net.seal_as("lu-l-aif", &reserve);
    let total = net.core("de-jaif").free_gpus();
    net.receive(&Net::id("de-jaif"), env);
    assert_eq!(net.core("de-jaif").free_gpus(), total - 2);
    net.run_for(5_000);
    assert_eq!(
        net.core("de-jaif").state().hosted[&spec.job].phase,
        HostPhase::Released
    );
    assert_eq!(net.core("de-jaif").free_gpus(), total);
}

#[test]
fn a_job_whose_latest_start_passes_while_queued_is_missed() {
    let mut net = Net::new(&["lu-l-aif"], &[("lu-l-aif", 0)], |_, _| {});
    let requirements = JobRequirements {
        gpus: 1,
        time_limit_s: 60,
        accelerator: None,
        latest_start: net.now.saturating_add_ms(20_000),
        residency: vec![],
        priority: 0,
    };
    net.input(
        &Net::id("lu-l-aif"),
        Input::SubmitJob {
            requirements,
            command: vec!["sim".into()],
            env: vec![],
        },
    );
    let job = net
        .core("lu-l-aif")
        .state()
        .jobs
        .keys()
        .next()
        .unwrap()
        .clone();
    assert!(matches!(
        net.core("lu-l-aif").state().jobs[&job].phase,
        JobPhase::Queued { .. }
    ));
    net.run_for(60_000);
    assert!(matches!(
        net.core("lu-l-aif").state().jobs[&job].phase,
        JobPhase::Missed { .. }
    ));
    assert!(
        net.notifications
            .iter()
            .any(|(_, n)| matches!(n, Notification::JobMissed { .. }))
    );
}

#[test]
fn cancelling_a_leased_job_releases_it_at_the_host() {
    let mut net = Net::new(&["lu-l-aif", "de-jaif"], &[("lu-l-aif", 0)], |_, _| {});
    let job = net.submit("lu-l-aif", 1, 300, 0, &[]);
    net.run_for(2_000);
    assert!(matches!(
        net.core("lu-l-aif").state().jobs[&job].phase,
        JobPhase::Leased { .. }
    ));
    net.input(&Net::id("lu-l-aif"), Input::CancelJob { job: job.clone() });
    net.run_for(1_000);
    assert_eq!(
        net.core("lu-l-aif").state().jobs[&job].phase,
        JobPhase::Cancelled
    );
    assert_eq!(
        net.core("de-jaif").state().hosted[&job].phase,
        HostPhase::Released
    );
    assert!(
        net.cancelled_jobs
            .iter()
            .any(|(m, j, _)| m.as_str() == "de-jaif" && *j == job)
    );
}

#[test]
fn a_host_whose_scheduler_queues_the_job_tells_the_origin_why() {
    let mut net = Net::new(&["lu-l-aif", "de-jaif"], &[("lu-l-aif", 0)], |_, _| {});
    let job = net.submit("lu-l-aif", 1, 300, 0, &[]);
    net.run_for(2_000);
    let epoch = net.core("de-jaif").state().hosted[&job].epoch;
    net.input(
        &Net::id("de-jaif"),
        Input::Executor {
            job: job.clone(),
            epoch,
            event: aiguillage_core::ExecutorEvent::Queued {
                reason: "Slurm job 7 PENDING (Resources)".into(),
            },
        },
    );
    net.run_for(500);
    let hosted = &net.core("de-jaif").state().hosted[&job];
    assert!(
        hosted
            .history
            .iter()
            .any(|t| t.state == "queued" && t.detail.contains("Resources")),
        "{:?}",
        hosted.history
    );
    let origin = &net.core("lu-l-aif").state().jobs[&job];
    assert!(
        matches!(
            origin.phase,
            JobPhase::Leased {
                host_state: JobState::Queued,
                ..
            }
        ),
        "{:?}",
        origin.phase
    );
    assert!(
        origin
            .history
            .iter()
            .any(|t| t.state == "queued" && t.detail.contains("PENDING")),
        "{:?}",
        origin.history
    );
}

#[test]
fn a_busy_host_answers_with_when_it_expects_gpus_so_the_origin_need_not_wait_out_the_window() {
    let mut net = Net::new(&["lu-l-aif", "de-jaif"], &[("lu-l-aif", 0)], |_, _| {});
    let gpus = net.core("de-jaif").state().total_gpus;
    let first = net.submit("lu-l-aif", gpus, 300, 0, &[]);
    net.run_for(2_000);
    assert!(matches!(
        net.core("lu-l-aif").state().jobs[&first].phase,
        JobPhase::Leased { .. }
    ));
    // The directory may still show de-jaif's GPUs free; de-jaif answers anyway.
    let second = net.submit("lu-l-aif", gpus, 300, 0, &[]);
    net.run_for(200); // under the 500 ms bid window
    match &net.core("lu-l-aif").state().jobs[&second].phase {
        JobPhase::Queued { reason } => {
            assert!(reason.contains("none free now"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !net.core("de-jaif").state().hosted.contains_key(&second),
        "no reservation of GPUs that are not free"
    );
}

#[test]
fn a_decision_from_a_member_never_offered_the_referral_is_refused_and_changes_nothing() {
    let mut net = Net::new(&["lu-l-aif", "es-1healthai", "de-jaif"], &[], |_, _| {});
    let id = refer_health(&mut net);
    net.run_for(2_000);
    let before = net.core("lu-l-aif").state().outgoing[&id].clone();
    let target = before.attempts[0].target.clone();
    let other = if target.as_str() == "es-1healthai" {
        "de-jaif"
    } else {
        "es-1healthai"
    };
    let refused_before = net.refusals.len();
    let decline = net.seal_as(
        other,
        &Decline {
            referral: id.clone(),
            attempt: 1,
            reason: DeclineReason::NoCapacity,
            detail: "not mine to decline".into(),
        },
    );
    let accept = net.seal_as(
        other,
        &Accept {
            referral: id.clone(),
            attempt: 1,
        },
    );
    net.receive(&Net::id("lu-l-aif"), decline);
    net.receive(&Net::id("lu-l-aif"), accept);
    let reasons: Vec<&str> = net.refusals[refused_before..]
        .iter()
        .map(|(_, r)| r.reason.as_str())
        .collect();
    assert_eq!(reasons, ["not_the_target", "not_the_target"]);
    let after = &net.core("lu-l-aif").state().outgoing[&id];
    assert_eq!(after.state, before.state);
    assert_eq!(after.attempts.len(), before.attempts.len());
}

#[test]
fn a_bidder_that_never_answers_its_reservation_is_passed_over() {
    let mut net = Net::new(
        &["lu-l-aif", "de-jaif", "it-it4lia"],
        &[("lu-l-aif", 0)],
        |_, _| {},
    );
    // de-jaif bids (and, all else equal, ranks first by id) but never answers a reserve.
    net.drop = Box::new(|_, e| {
        e.kind == aiguillage_wire::MessageKind::Reserved && e.signer.as_str() == "de-jaif"
    });
    let job = net.submit("lu-l-aif", 1, 30, 0, &[]);
    net.run_for(20_000);
    let j = &net.core("lu-l-aif").state().jobs[&job];
    assert_eq!(j.placements[0].host.as_str(), "de-jaif");
    assert!(!j.placements[0].confirmed, "{:?}", j.placements);
    assert_eq!(
        j.host().map(|h| h.as_str()),
        Some("it-it4lia"),
        "{:?}",
        j.phase
    );
    assert!(
        j.placements.iter().filter(|p| p.confirmed).count() == 1,
        "{:?}",
        j.placements
    );
}

#[test]
fn a_deadline_scheduled_by_an_input_is_marked_for_the_store() {
    // Adverts deferred for a day: the host's end-of-job input changes nothing in the meta
    // record but the receipt's re-send deadline, which must still be persisted.
    let mut net = Net::new(&["lu-l-aif", "de-jaif"], &[("lu-l-aif", 0)], |_, c| {
        c.advert_min_interval_ms = 86_400_000;
    });
    let job = net.submit("lu-l-aif", 1, 300, 0, &[]);
    net.run_for(2_000);
    let de = Net::id("de-jaif");
    let epoch = net.core("de-jaif").state().hosted[&job].epoch;
    let _ = net.cores.get_mut(&de).unwrap().take_dirty();
    let timers = net.core("de-jaif").state().timers.clone();
    net.input(
        &de,
        Input::Executor {
            job: job.clone(),
            epoch,
            event: aiguillage_core::ExecutorEvent::Finished {
                exit_code: 0,
                gpu_seconds: 0,
            },
        },
    );
    let dirty = net.cores.get_mut(&de).unwrap().take_dirty();
    assert_ne!(
        format!("{:?}", net.core("de-jaif").state().timers),
        format!("{timers:?}"),
        "the input scheduled a deadline"
    );
    assert!(
        dirty.contains(&aiguillage_core::StateKey::Meta),
        "{dirty:?}"
    );
}

#[test]
fn a_message_on_a_channel_that_does_not_carry_its_kind_is_refused_and_changes_nothing() {
    let mut net = two("lu-l-aif", "es-1healthai");
    net.run_for(1_000);
    let es = Net::id("es-1healthai");
    // An offer published on the adverts topic, as a rostered member could try.
    let o = offer(
        "lu-l-aif/77",
        "es-1healthai",
        card(Sector::Health, "LU"),
        net.now.saturating_add_ms(60_000),
    );
    let env = net.seal_as("lu-l-aif", &o);
    for channel in [
        Channel::Adverts,
        Channel::Roster,
        Channel::Overflow,
        Channel::Sync,
    ] {
        net.receive_bytes(&es, channel, &env.to_bytes());
    }
    assert!(
        !net.core("es-1healthai")
            .state()
            .incoming
            .contains_key(&o.referral)
    );
    // An advert sent on the referral protocol.
    let advert = net
        .core("lu-l-aif")
        .directory_envelopes()
        .into_iter()
        .find(|e| e.kind == MessageKind::Advert && e.signer.as_str() == "lu-l-aif")
        .unwrap();
    let before = net
        .core("es-1healthai")
        .state()
        .directory
        .get(&Net::id("lu-l-aif"))
        .map(|l| l.advert.seq);
    let mut newer = net.core("lu-l-aif").own_advert();
    newer.seq += 1_000;
    let newer = net.seal_as("lu-l-aif", &newer);
    net.receive_bytes(&es, Channel::Referral, &newer.to_bytes());
    assert_eq!(
        net.core("es-1healthai")
            .state()
            .directory
            .get(&Net::id("lu-l-aif"))
            .map(|l| l.advert.seq),
        before
    );
    let wrong = net
        .refusals
        .iter()
        .filter(|(m, r)| *m == es && r.reason == "wrong_kind")
        .count();
    assert_eq!(wrong, 5, "{:?}", net.refusals);
    // On their own channels both are admitted.
    net.receive_bytes(&es, Channel::Referral, &env.to_bytes());
    assert!(
        net.core("es-1healthai")
            .state()
            .incoming
            .contains_key(&o.referral)
    );
    net.receive_bytes(&es, Channel::Sync, &advert.to_bytes());
    net.receive_bytes(&es, Channel::Adverts, &newer.to_bytes());
    assert_eq!(
        net.core("es-1healthai")
            .state()
            .directory
            .get(&Net::id("lu-l-aif"))
            .map(|l| l.advert.seq),
        Some(newer.decode_payload::<Advert>().unwrap().seq)
    );
}

#[test]
fn an_admitted_message_is_verified_once_from_its_bytes_to_its_effect() {
    let mut net = two("lu-l-aif", "es-1healthai");
    net.run_for(1_000);
    let es = Net::id("es-1healthai");
    let o = offer(
        "lu-l-aif/78",
        "es-1healthai",
        card(Sector::Health, "LU"),
        net.now.saturating_add_ms(60_000),
    );
    let env = net.seal_as("lu-l-aif", &o);
    let before = net.core("es-1healthai").verifications();
    net.receive_bytes(&es, Channel::Referral, &env.to_bytes());
    assert!(
        net.core("es-1healthai")
            .state()
            .incoming
            .contains_key(&o.referral)
    );
    assert_eq!(net.core("es-1healthai").verifications() - before, 1);
    // A refusal before the signature (wrong channel, expired) costs no verification.
    let before = net.core("es-1healthai").verifications();
    net.receive_bytes(&es, Channel::Adverts, &env.to_bytes());
    assert_eq!(net.core("es-1healthai").verifications(), before);
}

/// The envelopes of `kind` that `from` sent, in order.
fn sent_of(net: &Net, from: &str, kind: MessageKind) -> Vec<Envelope> {
    net.sent
        .iter()
        .filter(|(m, e)| m.as_str() == from && e.kind == kind)
        .map(|(_, e)| e.clone())
        .collect()
}

#[test]
fn an_offer_the_target_refuses_for_good_moves_on_to_the_next_candidate() {
    // Neither has health as a priority, so each would ask its operator.
    let mut net = Net::new(&["lu-l-aif", "it-it4lia", "cz-czai"], &[], |_, _| {});
    // The first offer never arrives; its sender is told it was refused.
    net.drop = Box::new(|_, e| e.kind == MessageKind::Offer);
    let id = refer_health(&mut net);
    let first = net.core("lu-l-aif").state().outgoing[&id].attempts[0]
        .target
        .clone();
    let offer = sent_of(&net, "lu-l-aif", MessageKind::Offer)
        .pop()
        .expect("the offer");
    net.drop = Box::new(|_, _| false);
    net.input(
        &Net::id("lu-l-aif"),
        Input::Refused {
            to: first.clone(),
            envelope: offer,
            reason: "wrong_kind".into(),
        },
    );
    let r = &net.core("lu-l-aif").state().outgoing[&id];
    assert_eq!(
        r.attempts[0].outcome,
        Some(AttemptOutcome::Refused {
            reason: "wrong_kind".into()
        })
    );
    assert_eq!(r.attempts.len(), 2, "the next candidate is offered");
    assert_ne!(r.attempts[1].target, first);
    assert!(
        r.history
            .iter()
            .any(|t| t.state == "refused" && t.detail.contains("wrong_kind"))
    );
}

#[test]
fn a_message_refused_for_good_is_not_sent_again_and_one_refused_for_now_is() {
    let mut net = two("lu-l-aif", "es-1healthai");
    // es-1healthai accepts at once, but its acceptances never arrive: it re-sends them.
    net.drop = Box::new(|to, e| to.as_str() == "lu-l-aif" && e.kind == MessageKind::Accept);
    let id = refer_health(&mut net);
    net.run_for(100);
    let accept = sent_of(&net, "es-1healthai", MessageKind::Accept)
        .pop()
        .expect("an acceptance");
    let resent = |net: &Net| sent_of(net, "es-1healthai", MessageKind::Accept).len();
    // Refused for now (a busy origin): the re-sends go on.
    net.input(
        &Net::id("es-1healthai"),
        Input::Refused {
            to: Net::id("lu-l-aif"),
            envelope: accept.clone(),
            reason: "rate_limited".into(),
        },
    );
    let before = resent(&net);
    net.run_for(3 * fast_config().resend_ms);
    assert!(resent(&net) > before, "re-sent after a passing refusal");
    // Refused for good: no more re-sends, and the history says why.
    net.input(
        &Net::id("es-1healthai"),
        Input::Refused {
            to: Net::id("lu-l-aif"),
            envelope: accept,
            reason: "signer_mismatch".into(),
        },
    );
    let before = resent(&net);
    net.run_for(5 * fast_config().resend_ms);
    assert_eq!(resent(&net), before, "not sent again");
    let history = &net.core("es-1healthai").state().incoming[&id].history;
    assert!(
        history
            .iter()
            .any(|t| t.state == "refused" && t.detail.contains("signer_mismatch")),
        "{history:?}"
    );
}
