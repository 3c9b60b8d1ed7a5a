//! The programme's routing rule on the real member profiles in config/: a project in a
//! priority sector is served at home; one outside the filing member's priorities goes to a
//! member that has it as a priority, when one exists inside the client's consent; it stays
//! when none does, when the client consents to no one, or when the client chose to stay.

mod common;

use aiguillage_core::routing::{Explanation, Outcome, Rule};
use aiguillage_core::{FilingChoice, Input, JourneyState};
use aiguillage_wire::*;
use common::*;

fn whole_federation() -> Net {
    let ids = all_member_ids();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    Net::new(&ids, &[], |_, _| {})
}

fn explanation(net: &Net, at: &str, filed: &ReferralIdOrKept) -> Explanation {
    net.core(at).state().projects[&filed.project]
        .explanation
        .clone()
}

/// Whether `member` has `sector` as a priority in its profile.
fn priority_at(member: &MemberId, sector: Sector) -> bool {
    profile(member.as_str()).level(sector) == SectorLevel::Priority
}

fn offered(e: &Explanation) -> Vec<MemberId> {
    e.ranked.iter().map(|c| c.member.clone()).collect()
}

#[test]
fn a_priority_sector_is_kept_at_home() {
    let mut net = whole_federation();
    let filed = net.file("lu-l-aif", card(Sector::FinanceInsurance, "LU"));
    let e = explanation(&net, "lu-l-aif", &filed);
    assert_eq!((e.outcome, e.rule), (Outcome::Keep, Rule::PrioritySector));
    assert!(filed.referral.is_none());
}

#[test]
fn an_excluded_sector_is_referred_and_members_with_it_as_a_priority_come_first() {
    let mut net = whole_federation();
    let filed = net.file("lu-l-aif", card(Sector::Health, "LU"));
    let e = explanation(&net, "lu-l-aif", &filed);
    assert_eq!(
        (e.outcome, e.rule),
        (Outcome::Refer, Rule::SectorExcludedHere)
    );
    let candidates = offered(&e);
    assert!(!candidates.is_empty());
    // Every member ranked above a non-priority one has health as a priority.
    let first_other = candidates
        .iter()
        .position(|m| !priority_at(m, Sector::Health))
        .unwrap_or(candidates.len());
    assert!(first_other > 0, "{candidates:?}");
    assert!(
        candidates[first_other..]
            .iter()
            .all(|m| !priority_at(m, Sector::Health)),
        "{candidates:?}"
    );
}

#[test]
fn an_accepted_sector_goes_to_a_member_that_has_it_as_a_priority() {
    // An Austrian space start-up filed at at-aiat, where space is only accepted.
    let mut net = whole_federation();
    let filed = net.file("at-aiat", card(Sector::Space, "AT"));
    let e = explanation(&net, "at-aiat", &filed);
    assert_eq!(
        (e.outcome, e.rule),
        (Outcome::Refer, Rule::BetterSuitedElsewhere),
        "{}",
        e.text
    );
    let candidates = offered(&e);
    assert!(!candidates.is_empty());
    assert!(
        candidates.iter().all(|m| priority_at(m, Sector::Space)),
        "{candidates:?}"
    );
    assert!(filed.referral.is_some());
}

#[test]
fn an_accepted_sector_stays_when_no_member_has_it_as_a_priority() {
    // Of these, only se-mimer has gaming as a priority, and it is not in this federation.
    let mut net = Net::new(
        &["at-aiat", "cz-czai", "fi-lumi-aif", "lu-l-aif"],
        &[],
        |_, _| {},
    );
    let filed = net.file("at-aiat", card(Sector::Gaming, "AT"));
    let e = explanation(&net, "at-aiat", &filed);
    assert_eq!((e.outcome, e.rule), (Outcome::Keep, Rule::NoBetterSuited));
    assert_eq!(
        net.core("at-aiat").state().projects[&filed.project]
            .journey
            .state,
        JourneyState::Active
    );
}

#[test]
fn consent_limited_to_one_country_keeps_every_candidate_in_that_country() {
    let mut net = whole_federation();
    let mut c = card(Sector::Space, "AT");
    c.consent = ConsentScope {
        whole_federation: false,
        members: vec![],
        countries: vec![CountryCode::new("PL").unwrap()],
    };
    let filed = net.file("at-aiat", c);
    let e = explanation(&net, "at-aiat", &filed);
    assert_eq!(e.outcome, Outcome::Refer, "{}", e.text);
    let candidates = offered(&e);
    assert!(!candidates.is_empty());
    for m in &candidates {
        assert_eq!(profile(m.as_str()).country.as_str(), "PL", "{m}");
    }
}

#[test]
fn without_consent_a_project_is_never_referred() {
    let mut net = whole_federation();
    let mut c = card(Sector::Health, "LU");
    c.consent = ConsentScope::default();
    let filed = net.file("lu-l-aif", c);
    let e = explanation(&net, "lu-l-aif", &filed);
    assert_eq!((e.outcome, e.rule), (Outcome::Keep, Rule::NoConsentToRefer));
    assert!(filed.referral.is_none());
    assert!(net.core("lu-l-aif").state().outgoing.is_empty());
}

#[test]
fn a_client_that_chose_to_stay_stays_with_its_reason_on_record() {
    let mut net = whole_federation();
    let filed = net.file_with(
        "at-aiat",
        card(Sector::Space, "AT"),
        FilingChoice::Stay {
            reason: "wants German-speaking advisers nearby".into(),
        },
    );
    let e = explanation(&net, "at-aiat", &filed);
    assert_eq!(
        (e.outcome, e.rule),
        (Outcome::Keep, Rule::ClientChoseToStay)
    );
    assert_eq!(
        e.stay_reason.as_deref(),
        Some("wants German-speaking advisers nearby")
    );
    assert!(e.text.contains("German-speaking"), "{}", e.text);
    assert!(filed.referral.is_none());
    let kpis = aiguillage_core::kpi::Kpis::of(net.core("at-aiat").state(), []);
    assert_eq!(kpis.stayed_by_choice, 1);
}

#[test]
fn a_kept_project_moves_along_its_journey_and_may_end_advised_against() {
    let mut net = whole_federation();
    let lu = Net::id("lu-l-aif");
    let kept = net.file("lu-l-aif", card(Sector::FinanceInsurance, "LU"));
    for step in [
        Service::SolutionMatching,
        Service::PocSandbox,
        Service::Production,
    ] {
        net.now = net.now.saturating_add_ms(86_400_000);
        net.input(
            &lu,
            Input::ProjectProgress {
                project: kept.project.clone(),
                step,
                state: ProgressState::InProgress,
                note: format!("at {step}"),
                by: "adviser".into(),
            },
        );
    }
    net.input(
        &lu,
        Input::ProjectProgress {
            project: kept.project.clone(),
            step: Service::Production,
            state: ProgressState::Completed,
            note: "in production".into(),
            by: "adviser".into(),
        },
    );
    // A recruiting tool for a company that hires ten people a year: not worth doing.
    let advised = net.file_with(
        "lu-l-aif",
        card(Sector::FinanceInsurance, "LU"),
        FilingChoice::AdviseAgainst {
            reason: "an AI recruiting tool for ten hires a year".into(),
        },
    );
    let later = net.file("lu-l-aif", card(Sector::Cybersecurity, "LU"));
    net.input(
        &lu,
        Input::AdviseAgainst {
            project: later.project.clone(),
            reason: "the data it needs does not exist".into(),
            by: "adviser".into(),
        },
    );
    let s = net.core("lu-l-aif").state();
    assert_eq!(
        s.projects[&kept.project].journey.state,
        JourneyState::Completed
    );
    assert!(matches!(
        s.projects[&advised.project].journey.state,
        JourneyState::AdvisedAgainst { .. }
    ));
    let kpis = aiguillage_core::kpi::Kpis::of(s, []);
    assert_eq!(kpis.advised_against, 2);
    assert_eq!(kpis.companies_in_production, 1);
    assert_eq!(kpis.companies_by_step.get("production"), Some(&1));
    // The two advised against count at the step they reached.
    assert_eq!(kpis.companies_by_step.values().sum::<u64>(), 3, "{kpis:?}");
    // A day at each step it moved on from.
    for step in ["assessment", "solution_matching", "poc_sandbox"] {
        assert_eq!(kpis.median_days_per_step.get(step), Some(&1.0), "{step}");
    }
    // A journey that ended does not move again.
    net.input(
        &lu,
        Input::ProjectProgress {
            project: kept.project.clone(),
            step: Service::Training,
            state: ProgressState::InProgress,
            note: "again".into(),
            by: "adviser".into(),
        },
    );
    assert_eq!(
        net.core("lu-l-aif").state().projects[&kept.project]
            .journey
            .step,
        Some(Service::Production)
    );
}

#[test]
fn a_project_no_better_suited_member_takes_is_served_at_home_after_all() {
    // Only pl-gaia-aif has space as a priority here, and its offers never arrive.
    let mut net = Net::new(&["at-aiat", "pl-gaia-aif", "cz-czai"], &[], |_, _| {});
    net.drop = Box::new(|_, e| e.kind == MessageKind::Offer);
    let filed = net.file("at-aiat", card(Sector::Space, "AT"));
    assert!(filed.referral.is_some());
    net.run_for(2 * fast_config().offer_ttl_ms);
    let r = &net.core("at-aiat").state().outgoing[filed.referral.as_ref().unwrap()];
    assert_eq!(r.state, aiguillage_core::OutState::Exhausted);
    let p = &net.core("at-aiat").state().projects[&filed.project];
    assert_eq!(p.journey.state, JourneyState::Active, "{:?}", p.journey);
    assert!(
        p.journey
            .history
            .iter()
            .any(|t| t.detail.contains("served here"))
    );
}
