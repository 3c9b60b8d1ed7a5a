//! Routing: for a project card, decide whether to keep the project or refer it, and rank
//! the candidate members. Every score term is reported with its weight and value, and every
//! member left out is reported with the rule that excluded it.
//!
//! This is on the hot path of every filed project, so [`decide`] borrows from the directory
//! and allocates only for the ranked list; [`Decision::explanation`] builds the owned,
//! human-readable record when one is needed.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use aiguillage_wire::{Advert, MemberId, ProjectCard, SectorLevel, Service, Timestamp};

use crate::directory::{Behaviour, SectorTable};
use crate::geo;

/// The terms of a candidate's score, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Term {
    Sector,
    Datasets,
    Language,
    Geography,
    Capacity,
    Reciprocity,
    Responsiveness,
}

impl Term {
    pub const ALL: [Term; 7] = [
        Term::Sector,
        Term::Datasets,
        Term::Language,
        Term::Geography,
        Term::Capacity,
        Term::Reciprocity,
        Term::Responsiveness,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Term::Sector => "sector",
            Term::Datasets => "datasets",
            Term::Language => "language",
            Term::Geography => "geography",
            Term::Capacity => "capacity",
            Term::Reciprocity => "reciprocity",
            Term::Responsiveness => "responsiveness",
        }
    }
}

/// Weight of each term; the defaults add up to 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub sector: f64,
    pub datasets: f64,
    pub language: f64,
    pub geography: f64,
    pub capacity: f64,
    pub reciprocity: f64,
    pub responsiveness: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            sector: 0.40,
            datasets: 0.10,
            language: 0.10,
            geography: 0.15,
            capacity: 0.10,
            reciprocity: 0.05,
            responsiveness: 0.10,
        }
    }
}

impl Weights {
    pub fn get(&self, t: Term) -> f64 {
        match t {
            Term::Sector => self.sector,
            Term::Datasets => self.datasets,
            Term::Language => self.language,
            Term::Geography => self.geography,
            Term::Capacity => self.capacity,
            Term::Reciprocity => self.reciprocity,
            Term::Responsiveness => self.responsiveness,
        }
    }
}

/// How candidates are ranked. `Scored` is Aiguillage's; the others are baselines the
/// simulator compares it with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    Scored,
    /// Never refer: every project stays where it was filed.
    KeepAll,
    /// Refer what the scored policy would refer, to eligible members in a pseudo-random
    /// order derived from the project id.
    Random,
    /// Refer what the scored policy would refer, to the geographically nearest members.
    Nearest,
}

/// When a project in a sector this member only accepts (not a priority, not excluded) is
/// referred.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferralRule {
    /// Referred when a better-suited member exists: the sector is a priority there, it
    /// offers every service needed, the client's consent covers it, and it has intake and
    /// GPU capacity; it is offered to those members only. The programme's rule.
    #[default]
    BetterSuited,
    /// Referred only when the best candidate's score beats the local score by more than
    /// `accept_margin`.
    Margin,
}

/// A member's routing policy, from its configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingPolicy {
    pub strategy: Strategy,
    /// When a project in an accepted sector leaves.
    pub rule: ReferralRule,
    pub weights: Weights,
    /// With the `margin` rule: a project in an accepted sector is referred only when the
    /// best candidate's score beats the local score by more than this.
    pub accept_margin: f64,
    /// When not empty, only these members may be offered projects.
    pub allow: Vec<MemberId>,
    /// These members are never offered projects.
    pub deny: Vec<MemberId>,
    /// How many ranked candidates a decision keeps.
    pub max_candidates: usize,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        RoutingPolicy {
            strategy: Strategy::Scored,
            rule: ReferralRule::BetterSuited,
            weights: Weights::default(),
            accept_margin: 0.15,
            allow: Vec::new(),
            deny: Vec::new(),
            max_candidates: 8,
        }
    }
}

/// Why a member cannot be offered a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Ineligible {
    /// The member excludes the project's sector.
    SectorExcluded,
    /// The member does not offer a service the project needs.
    ServiceNotOffered { service: Service },
    /// The client did not consent to this member seeing the dossier.
    OutOfConsentScope,
    /// The member advertises no referral intake left.
    NoIntake,
    /// The local policy's deny list names the member.
    Denied,
    /// The local policy has an allow list without the member.
    NotAllowed,
}

impl Ineligible {
    pub fn describe(&self) -> String {
        match self {
            Ineligible::SectorExcluded => "excludes the sector".into(),
            Ineligible::ServiceNotOffered { service } => format!("does not offer {service}"),
            Ineligible::OutOfConsentScope => "outside the client's consent scope".into(),
            Ineligible::NoIntake => "advertises no intake left".into(),
            Ineligible::Denied => "on the local deny list".into(),
            Ineligible::NotAllowed => "not on the local allow list".into(),
        }
    }
}

/// A score: the value of each term in [0, 1] (in `Term::ALL` order) and the weighted total.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub values: [f64; 7],
    pub total: f64,
}

/// Facts about a candidate that do not come from its advert.
#[derive(Clone, Copy, Debug, Default)]
pub struct Standing<'a> {
    /// Ledger balance: favours the member gave us minus favours we gave it.
    pub reciprocity: f64,
    pub behaviour: Option<&'a Behaviour>,
    pub now: Timestamp,
    pub decline_half_life_ms: u64,
}

#[derive(Clone, Debug)]
pub struct Ranked<'a> {
    pub member: &'a MemberId,
    pub score: Score,
    /// The sector is a priority there and it has the capacity the project needs.
    pub better_suited: bool,
    /// What the strategy ranks on: for `Scored`, better-suited members first, then by
    /// total; the baseline's key otherwise.
    pub key: f64,
}

/// Added to the ranking key of a better-suited member: totals are at most 1, so a member
/// where the sector is a priority always ranks above one where it is not, and home
/// advantages (geography, responsiveness) only order members of equal standing.
const BETTER_SUITED: f64 = 2.0;

/// Whether a member can take the project's GPU work: it advertises GPUs (or does not say)
/// when the project needs GPU-hours.
fn has_capacity(card: &ProjectCard, advert: &Advert) -> bool {
    card.gpu_hours == 0 || advert.gpu.total.is_none_or(|t| t > 0)
}

/// The routing outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Keep,
    Refer,
    /// The project should leave but no member can take it.
    Exhausted,
}

impl Outcome {
    pub fn tag(self) -> &'static str {
        match self {
            Outcome::Keep => "keep",
            Outcome::Refer => "refer",
            Outcome::Exhausted => "exhausted",
        }
    }
}

/// Why the outcome is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The sector is one of our priorities and we offer every service needed.
    PrioritySector,
    /// The sector is only accepted here and it is a priority at a member that offers what
    /// the project needs.
    BetterSuitedElsewhere,
    /// The sector is accepted here and no member inside the client's consent has it as a
    /// priority with what the project needs and room to take it.
    NoBetterSuited,
    /// The sector is accepted here and no candidate beats us by the margin.
    AcceptedNotBeaten,
    /// The sector is accepted here but a candidate beats us by more than the margin.
    AcceptedButBeaten,
    /// The client (or the adviser) chose to stay here.
    ClientChoseToStay,
    /// The client consents to no other member seeing the project: it stays here.
    NoConsentToRefer,
    /// The adviser advised the company against the project: it is not routed.
    AdvisedAgainst,
    /// We exclude the sector.
    SectorExcludedHere,
    /// We do not offer a service the project needs.
    ServiceMissingHere,
    /// The policy keeps every project.
    KeepAllPolicy,
}

impl Rule {
    /// The rule's name, as in the explanation's JSON and the KPIs.
    pub fn tag(self) -> &'static str {
        match self {
            Rule::PrioritySector => "priority_sector",
            Rule::BetterSuitedElsewhere => "better_suited_elsewhere",
            Rule::NoBetterSuited => "no_better_suited",
            Rule::AcceptedNotBeaten => "accepted_not_beaten",
            Rule::AcceptedButBeaten => "accepted_but_beaten",
            Rule::ClientChoseToStay => "client_chose_to_stay",
            Rule::NoConsentToRefer => "no_consent_to_refer",
            Rule::AdvisedAgainst => "advised_against",
            Rule::SectorExcludedHere => "sector_excluded_here",
            Rule::ServiceMissingHere => "service_missing_here",
            Rule::KeepAllPolicy => "keep_all_policy",
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Rule::PrioritySector => {
                "the sector is a priority here and every service needed is offered"
            }
            Rule::BetterSuitedElsewhere => {
                "the sector is only accepted here and is a priority at a member that offers what the project needs"
            }
            Rule::NoBetterSuited => {
                "the sector is accepted here and no member inside the client's consent has it as a priority with what the project needs and room to take it"
            }
            Rule::ClientChoseToStay => "the client chose to stay here",
            Rule::NoConsentToRefer => "the client consents to no other member seeing the project",
            Rule::AdvisedAgainst => "the adviser advised the company against the project",
            Rule::AcceptedNotBeaten => {
                "the sector is accepted here and no candidate beats the local score by the margin"
            }
            Rule::AcceptedButBeaten => {
                "the sector is only accepted here and a candidate beats the local score by more than the margin"
            }
            Rule::SectorExcludedHere => "the sector is excluded here",
            Rule::ServiceMissingHere => "a service the project needs is not offered here",
            Rule::KeepAllPolicy => "the routing policy keeps every project",
        }
    }
}

/// A routing decision, borrowing member ids from the directory.
#[derive(Clone, Debug)]
pub struct Decision<'a> {
    pub outcome: Outcome,
    pub rule: Rule,
    pub local: Score,
    pub local_level: SectorLevel,
    /// Best first; at most `max_candidates`.
    pub ranked: Vec<Ranked<'a>>,
    /// Eligible members that did not make the ranked list.
    pub eligible_unranked: usize,
    pub ineligible: Vec<(&'a MemberId, Ineligible)>,
}

/// Decides keep or refer for `card` at member `me`, against the fresh adverts of the other
/// members. `standing` supplies ledger and behaviour facts for a member.
pub fn decide<'a, I, S>(
    card: &ProjectCard,
    (me, me_table): (&Advert, &SectorTable),
    others: I,
    standing: S,
    policy: &RoutingPolicy,
    now: Timestamp,
) -> Decision<'a>
where
    I: IntoIterator<Item = (&'a Advert, &'a SectorTable)>,
    S: Fn(&MemberId) -> Standing<'a>,
{
    let local_level = me_table.level(card.sector);
    let missing_here = card
        .services_needed
        .iter()
        .find(|s| !me_table.offers(**s))
        .copied();
    let local = score(
        card,
        me,
        me_table,
        &Standing {
            reciprocity: 0.0,
            behaviour: None,
            now,
            decline_half_life_ms: 0,
        },
        &policy.weights,
        true,
    );

    // Upper bound of the two ledger-based terms: a candidate whose other terms cannot reach
    // the current k-th best even with full marks there is not looked up at all.
    let ledger_weight = policy.weights.reciprocity + policy.weights.responsiveness;
    let k = policy.max_candidates.max(1);
    let mut ranked: Vec<Ranked<'a>> = Vec::with_capacity(k + 1);
    let mut eligible = 0usize;
    let mut better_suited = 0usize;
    let mut best_total = f64::NEG_INFINITY;
    let mut ineligible = Vec::new();

    // Kept whatever the others offer (a priority sector with every service here, or the
    // keep-everything baseline): the other members are not scored at all.
    let no_consent = !card.consent.whole_federation
        && card.consent.members.is_empty()
        && card.consent.countries.is_empty();
    let settled = policy.strategy == Strategy::KeepAll
        || no_consent
        || (local_level == SectorLevel::Priority && missing_here.is_none());
    if !settled {
        for (advert, table) in others {
            if advert.member == me.member {
                continue;
            }
            if let Some(why) = eligibility(card, advert, table, policy) {
                ineligible.push((&advert.member, why));
                continue;
            }
            eligible += 1;
            let suited =
                table.level(card.sector) == SectorLevel::Priority && has_capacity(card, advert);
            better_suited += usize::from(suited);
            let bonus = if suited { BETTER_SUITED } else { 0.0 };
            let key = match policy.strategy {
                Strategy::Random => {
                    Some(pseudo_random(card.project.as_str(), advert.member.as_str()))
                }
                Strategy::Nearest => Some(geography(card, advert)),
                Strategy::Scored | Strategy::KeepAll => None,
            };
            let partial = score_without_standing(card, advert, table, &policy.weights);
            if key.is_none()
                && ranked.len() == k
                && bonus + partial.total + ledger_weight < ranked[k - 1].key
            {
                continue;
            }
            let mut score = partial;
            add_standing(&mut score, &standing(&advert.member), &policy.weights);
            best_total = best_total.max(score.total);
            let key = key.unwrap_or(bonus + score.total);
            insert_ranked(
                &mut ranked,
                Ranked {
                    member: &advert.member,
                    score,
                    better_suited: suited,
                    key,
                },
                k,
            );
        }
    }

    let best = (eligible > 0).then_some(best_total);
    let (outcome, rule) = match (policy.strategy, local_level, missing_here) {
        (Strategy::KeepAll, _, _) => (Outcome::Keep, Rule::KeepAllPolicy),
        _ if no_consent => (Outcome::Keep, Rule::NoConsentToRefer),
        (_, SectorLevel::Excluded, _) => (refer_or_exhausted(&ranked), Rule::SectorExcludedHere),
        (_, _, Some(_)) => (refer_or_exhausted(&ranked), Rule::ServiceMissingHere),
        (_, SectorLevel::Priority, None) => (Outcome::Keep, Rule::PrioritySector),
        (_, SectorLevel::Accepted, None) => match policy.rule {
            ReferralRule::BetterSuited if better_suited > 0 => {
                // Offered to the better-suited members only; ranked puts them first.
                if policy.strategy == Strategy::Scored {
                    ranked.retain(|r| r.better_suited);
                }
                (Outcome::Refer, Rule::BetterSuitedElsewhere)
            }
            ReferralRule::BetterSuited => (Outcome::Keep, Rule::NoBetterSuited),
            ReferralRule::Margin => match best {
                Some(b) if b > local.total + policy.accept_margin => {
                    (Outcome::Refer, Rule::AcceptedButBeaten)
                }
                _ => (Outcome::Keep, Rule::AcceptedNotBeaten),
            },
        },
    };
    let eligible_unranked = eligible - ranked.len();
    Decision {
        outcome,
        rule,
        local,
        local_level,
        ranked,
        eligible_unranked,
        ineligible,
    }
}

fn refer_or_exhausted(ranked: &[Ranked<'_>]) -> Outcome {
    if ranked.is_empty() {
        Outcome::Exhausted
    } else {
        Outcome::Refer
    }
}

/// Inserts `item` into `ranked`, kept sorted by key descending (ties by member id) and at
/// most `k` long.
fn insert_ranked<'a>(ranked: &mut Vec<Ranked<'a>>, item: Ranked<'a>, k: usize) {
    let pos = ranked
        .iter()
        .position(|r| match item.key.total_cmp(&r.key) {
            Ordering::Greater => true,
            Ordering::Equal => item.member < r.member,
            Ordering::Less => false,
        })
        .unwrap_or(ranked.len());
    if pos < k {
        ranked.insert(pos, item);
        ranked.truncate(k);
    }
}

/// The first hard constraint `advert` fails for `card`, if any.
pub fn eligibility(
    card: &ProjectCard,
    advert: &Advert,
    table: &SectorTable,
    policy: &RoutingPolicy,
) -> Option<Ineligible> {
    if table.level(card.sector) == SectorLevel::Excluded {
        return Some(Ineligible::SectorExcluded);
    }
    if let Some(service) = card.services_needed.iter().find(|s| !table.offers(**s)) {
        return Some(Ineligible::ServiceNotOffered { service: *service });
    }
    if !card.consent.allows(&advert.member, advert.country) {
        return Some(Ineligible::OutOfConsentScope);
    }
    if advert.referral_intake == Some(0) {
        return Some(Ineligible::NoIntake);
    }
    if policy.deny.contains(&advert.member) {
        return Some(Ineligible::Denied);
    }
    if !policy.allow.is_empty() && !policy.allow.contains(&advert.member) {
        return Some(Ineligible::NotAllowed);
    }
    None
}

/// Main sector: priority 0.8, accepted 0.3; up to 0.2 more for the share of secondary
/// sectors that are priorities of the member (all of it when there are none).
fn sector_fit(card: &ProjectCard, table: &SectorTable) -> f64 {
    let base = match table.level(card.sector) {
        SectorLevel::Priority => 0.8,
        SectorLevel::Accepted => 0.3,
        SectorLevel::Excluded => return 0.0,
    };
    let share = if card.secondary_sectors.is_empty() {
        1.0
    } else {
        let matched = card
            .secondary_sectors
            .iter()
            .filter(|s| table.level(**s) == SectorLevel::Priority)
            .count();
        matched as f64 / card.secondary_sectors.len() as f64
    };
    base + 0.2 * share
}

fn datasets(card: &ProjectCard, advert: &Advert) -> f64 {
    if card.datasets_wanted.is_empty() {
        return 0.0;
    }
    let matched = card
        .datasets_wanted
        .iter()
        .filter(|w| {
            let w = w.to_lowercase();
            advert
                .datasets
                .iter()
                .any(|d| d.id.to_lowercase() == w || d.title.to_lowercase().contains(&w))
        })
        .count();
    matched as f64 / card.datasets_wanted.len() as f64
}

fn language(card: &ProjectCard, advert: &Advert) -> f64 {
    if card.languages.iter().any(|l| advert.languages.contains(l)) {
        1.0
    } else {
        0.0
    }
}

fn geography(card: &ProjectCard, advert: &Advert) -> f64 {
    if advert.country == card.country || advert.countries_served.contains(&card.country) {
        1.0
    } else if geo::are_neighbours(advert.country, card.country) {
        0.6
    } else if geo::in_eu(advert.country) && geo::in_eu(card.country) {
        0.3
    } else {
        0.1
    }
}

fn capacity(card: &ProjectCard, advert: &Advert) -> f64 {
    if card.gpu_hours == 0 {
        return 1.0;
    }
    match advert.gpu.free {
        // Free GPU-hours over the next 30 days against what the project needs.
        Some(free) => (f64::from(free) * 24.0 * 30.0 / f64::from(card.gpu_hours)).min(1.0),
        None => 0.25,
    }
}

fn reciprocity(balance: f64) -> f64 {
    0.5 + 0.5 * (balance / 5.0).tanh()
}

fn responsiveness(standing: &Standing<'_>) -> f64 {
    match standing.behaviour {
        None => 0.5,
        Some(b) => {
            let speed = b.answer_ms.map_or(0.5, |ms| 1.0 / (1.0 + ms / 3_600_000.0));
            let declines = b
                .declines
                .value(standing.now, standing.decline_half_life_ms);
            speed * (-declines / 5.0).exp()
        }
    }
}

fn score_without_standing(
    card: &ProjectCard,
    advert: &Advert,
    table: &SectorTable,
    w: &Weights,
) -> Score {
    let values = [
        sector_fit(card, table),
        datasets(card, advert),
        language(card, advert),
        geography(card, advert),
        capacity(card, advert),
        0.0,
        0.0,
    ];
    let total = values[0] * w.sector
        + values[1] * w.datasets
        + values[2] * w.language
        + values[3] * w.geography
        + values[4] * w.capacity;
    Score { values, total }
}

fn add_standing(s: &mut Score, standing: &Standing<'_>, w: &Weights) {
    s.values[5] = reciprocity(standing.reciprocity);
    s.values[6] = responsiveness(standing);
    s.total += s.values[5] * w.reciprocity + s.values[6] * w.responsiveness;
}

/// The local member's own score: no consent or intake rules, neutral reciprocity, and full
/// responsiveness (it answers itself at once).
fn score(
    card: &ProjectCard,
    advert: &Advert,
    table: &SectorTable,
    standing: &Standing<'_>,
    w: &Weights,
    local: bool,
) -> Score {
    let mut s = score_without_standing(card, advert, table, w);
    add_standing(&mut s, standing, w);
    if local {
        s.total -= s.values[6] * w.responsiveness;
        s.values[6] = 1.0;
        s.total += w.responsiveness;
    }
    s
}

/// A deterministic pseudo-random number in [0, 1) from two strings (FNV-1a).
fn pseudo_random(a: &str, b: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([0]).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The owned record of a decision: what the operator sees and what is stored with a
/// referral.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub outcome: Outcome,
    pub rule: Rule,
    pub sector_level_here: SectorLevel,
    pub local: ScoreReport,
    pub ranked: Vec<CandidateReport>,
    pub eligible_unranked: usize,
    /// Ineligible members by name, at most [`LISTED_INELIGIBLE`] of them; `ineligible_total`
    /// counts them all and the text gives the count per rule.
    pub ineligible: Vec<IneligibleReport>,
    #[serde(default)]
    pub ineligible_total: usize,
    pub text: String,
    /// Why the client chose to stay, with the rule `client_chose_to_stay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stay_reason: Option<String>,
}

/// Ineligible members named in a stored explanation. A federation of a few dozen members is
/// listed in full; at a thousand, naming the 970 outside a client's consent in every
/// project record would cost more than the decision (and say less than the counts).
pub const LISTED_INELIGIBLE: usize = 40;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreReport {
    pub total: f64,
    pub terms: Vec<TermReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TermReport {
    pub term: Term,
    pub weight: f64,
    pub value: f64,
    pub contribution: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateReport {
    pub rank: usize,
    pub member: MemberId,
    /// The sector is a priority there and it has the capacity the project needs.
    #[serde(default)]
    pub better_suited: bool,
    pub score: ScoreReport,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IneligibleReport {
    pub member: MemberId,
    #[serde(flatten)]
    pub rule: Ineligible,
}

fn report(score: &Score, w: &Weights) -> ScoreReport {
    ScoreReport {
        total: score.total,
        terms: Term::ALL
            .iter()
            .enumerate()
            .map(|(i, t)| TermReport {
                term: *t,
                weight: w.get(*t),
                value: score.values[i],
                contribution: score.values[i] * w.get(*t),
            })
            .collect(),
    }
}

impl Decision<'_> {
    /// The client (or the adviser) chose to stay: a project that would leave is kept. A
    /// project in a sector this member excludes cannot stay; the caller refuses that choice
    /// before it decides.
    pub fn stay_by_choice(&mut self) {
        if self.outcome != Outcome::Keep && self.local_level != SectorLevel::Excluded {
            self.outcome = Outcome::Keep;
            self.rule = Rule::ClientChoseToStay;
        }
    }

    /// The adviser advised against the project at filing: nothing is offered.
    pub fn advised_against(&mut self) {
        self.outcome = Outcome::Keep;
        self.rule = Rule::AdvisedAgainst;
        self.ranked.clear();
    }

    /// The members to offer the project to, best first.
    pub fn candidates(&self) -> Vec<MemberId> {
        self.ranked.iter().map(|r| r.member.clone()).collect()
    }

    /// Builds the owned explanation, with a one-paragraph text for the operator.
    pub fn explanation(
        &self,
        card: &ProjectCard,
        me: &MemberId,
        policy: &RoutingPolicy,
    ) -> Explanation {
        let w = &policy.weights;
        let ranked: Vec<CandidateReport> = self
            .ranked
            .iter()
            .enumerate()
            .map(|(i, r)| CandidateReport {
                rank: i + 1,
                member: r.member.clone(),
                better_suited: r.better_suited,
                score: report(&r.score, w),
            })
            .collect();
        let ineligible: Vec<IneligibleReport> = self
            .ineligible
            .iter()
            .take(LISTED_INELIGIBLE)
            .map(|(m, rule)| IneligibleReport {
                member: (*m).clone(),
                rule: *rule,
            })
            .collect();
        let mut text = format!(
            "{} project {}in {} ({} here): {} because {} (local score {:.2}).",
            card.country,
            if card.project.as_str().starts_with("draft/") {
                String::new()
            } else {
                format!("{} ", card.project)
            },
            card.sector,
            self.local_level,
            match self.outcome {
                Outcome::Keep => format!("kept at {me}"),
                Outcome::Refer => "referred".to_owned(),
                Outcome::Exhausted => "no member can take it".to_owned(),
            },
            self.rule.describe(),
            self.local.total
        );
        if matches!(
            self.rule,
            Rule::PrioritySector
                | Rule::KeepAllPolicy
                | Rule::NoConsentToRefer
                | Rule::AdvisedAgainst
        ) {
            text.push_str(" Other members were not scored: the project stays whatever they offer.");
        }
        if let Some(first) = ranked.first() {
            let strongest = first
                .score
                .terms
                .iter()
                .max_by(|a, b| a.contribution.total_cmp(&b.contribution))
                .map(|t| t.term.name())
                .unwrap_or("sector");
            text.push_str(&format!(
                " Best candidate: {} with {:.2}, strongest on {}.",
                first.member, first.score.total, strongest
            ));
            if ranked.len() > 1 {
                let rest: Vec<String> = ranked[1..]
                    .iter()
                    .map(|c| format!("{} {:.2}", c.member, c.score.total))
                    .collect();
                text.push_str(&format!(" Then: {}.", rest.join(", ")));
            }
        }
        if !self.ineligible.is_empty() {
            let mut counts: Vec<(Ineligible, usize)> = Vec::new();
            for (_, rule) in &self.ineligible {
                match counts.iter_mut().find(|(k, _)| k == rule) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((*rule, 1)),
                }
            }
            let parts: Vec<String> = counts
                .iter()
                .map(|(r, n)| format!("{n} {}", r.describe()))
                .collect();
            text.push_str(&format!(" Not eligible: {}.", parts.join("; ")));
        }
        Explanation {
            outcome: self.outcome,
            rule: self.rule,
            sector_level_here: self.local_level,
            local: report(&self.local, w),
            ranked,
            eligible_unranked: self.eligible_unranked,
            ineligible,
            ineligible_total: self.ineligible.len(),
            text,
            stay_reason: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiguillage_wire::{
        CompanySize, ConsentScope, CountryCode, GpuCapacity, Language, ProjectId, Role, Sector,
    };

    fn advert(id: &str, country: &str, priority: &[Sector], services: &[Service]) -> Advert {
        Advert {
            member: MemberId::new(id).unwrap(),
            seq: 1,
            role: Role::Factory,
            name: id.into(),
            country: CountryCode::new(country).unwrap(),
            sectors: priority
                .iter()
                .map(|s| (*s, SectorLevel::Priority))
                .collect(),
            other_sectors: SectorLevel::Accepted,
            services: services.to_vec(),
            languages: vec![Language::new("en").unwrap()],
            countries_served: vec![],
            datasets: vec![],
            gpu: GpuCapacity::default(),
            referral_intake: None,
        }
    }

    fn card(sector: Sector) -> ProjectCard {
        ProjectCard {
            project: ProjectId::new("lu/p1").unwrap(),
            sector,
            secondary_sectors: vec![],
            country: CountryCode::new("LU").unwrap(),
            company_size: CompanySize::Small,
            stage: Service::Assessment,
            services_needed: vec![Service::Financing],
            gpu_hours: 0,
            datasets_wanted: vec![],
            languages: vec![Language::new("en").unwrap()],
            consent: ConsentScope {
                whole_federation: true,
                members: vec![],
                countries: vec![],
            },
        }
    }

    fn run(
        card: &ProjectCard,
        me: &Advert,
        others: &[Advert],
        policy: &RoutingPolicy,
    ) -> Explanation {
        let tables: Vec<SectorTable> = others.iter().map(SectorTable::of).collect();
        let standing = |_: &MemberId| Standing {
            reciprocity: 0.0,
            behaviour: None,
            now: Timestamp(0),
            decline_half_life_ms: 0,
        };
        decide(
            card,
            (me, &SectorTable::of(me)),
            others.iter().zip(&tables),
            standing,
            policy,
            Timestamp(0),
        )
        .explanation(card, &me.member, policy)
    }

    #[test]
    fn a_member_without_a_needed_service_is_ineligible_and_one_here_forces_a_referral() {
        let all = Service::ALL;
        let me = advert("lu", "LU", &[Sector::Health], &[Service::Training]);
        let others = [
            advert("aa", "DE", &[Sector::Health], &[Service::Training]),
            advert("bb", "FR", &[Sector::Health], all),
        ];
        let e = run(
            &card(Sector::Health),
            &me,
            &others,
            &RoutingPolicy::default(),
        );
        assert_eq!(e.rule, Rule::ServiceMissingHere);
        assert_eq!(e.outcome, Outcome::Refer);
        assert_eq!(e.ranked.len(), 1);
        assert_eq!(e.ranked[0].member.as_str(), "bb");
        assert_eq!(
            e.ineligible[0].rule,
            Ineligible::ServiceNotOffered {
                service: Service::Financing
            }
        );
    }

    #[test]
    fn a_priority_project_with_every_service_here_is_kept_without_scoring_the_others() {
        let all = Service::ALL;
        let me = advert("lu", "LU", &[Sector::Health], all);
        let others = [advert("de", "DE", &[Sector::Health], all)];
        let e = run(
            &card(Sector::Health),
            &me,
            &others,
            &RoutingPolicy::default(),
        );
        assert_eq!((e.outcome, e.rule), (Outcome::Keep, Rule::PrioritySector));
        assert!(e.ranked.is_empty() && e.ineligible.is_empty() && e.eligible_unranked == 0);
        assert!(e.text.contains("not scored"), "{}", e.text);
        // A service missing here still sends it through the candidates.
        let me = advert("lu", "LU", &[Sector::Health], &[Service::Training]);
        let e = run(
            &card(Sector::Health),
            &me,
            &others,
            &RoutingPolicy::default(),
        );
        assert_eq!(e.outcome, Outcome::Refer);
        assert_eq!(e.ranked.len(), 1);
    }

    #[test]
    fn a_large_federation_names_some_ineligible_members_and_counts_them_all() {
        let me = advert("lu", "LU", &[], &[Service::Training]);
        let others: Vec<Advert> = (0..LISTED_INELIGIBLE + 10)
            .map(|i| advert(&format!("m{i:03}"), "DE", &[], &[Service::Training]))
            .collect();
        let e = run(
            &card(Sector::Health),
            &me,
            &others,
            &RoutingPolicy::default(),
        );
        assert_eq!(e.outcome, Outcome::Exhausted);
        assert_eq!(e.ineligible.len(), LISTED_INELIGIBLE);
        assert_eq!(e.ineligible_total, LISTED_INELIGIBLE + 10);
        assert!(
            e.text
                .contains(&format!("Not eligible: {} ", LISTED_INELIGIBLE + 10)),
            "{}",
            e.text
        );
    }

    #[test]
    fn with_the_margin_rule_an_accepted_sector_is_kept_unless_beaten_by_the_margin() {
        let all = Service::ALL;
        let me = advert("lu", "LU", &[], all);
        let strong = advert("de", "DE", &[Sector::Gaming], all);
        let keep = RoutingPolicy {
            rule: ReferralRule::Margin,
            accept_margin: 0.9,
            ..RoutingPolicy::default()
        };
        assert_eq!(
            run(
                &card(Sector::Gaming),
                &me,
                std::slice::from_ref(&strong),
                &keep
            )
            .rule,
            Rule::AcceptedNotBeaten
        );
        let refer = RoutingPolicy {
            rule: ReferralRule::Margin,
            accept_margin: 0.05,
            ..RoutingPolicy::default()
        };
        let e = run(&card(Sector::Gaming), &me, &[strong], &refer);
        assert_eq!(
            (e.outcome, e.rule),
            (Outcome::Refer, Rule::AcceptedButBeaten)
        );
    }

    #[test]
    fn an_accepted_sector_goes_to_the_members_that_have_it_as_a_priority_and_only_to_them() {
        let all = Service::ALL;
        // Luxembourg only accepts gaming; a nearby member accepts it too, one far away has
        // it as a priority.
        let me = advert("lu", "LU", &[], all);
        let near = advert("be", "BE", &[], all);
        let far = advert("fi", "FI", &[Sector::Gaming], all);
        let e = run(
            &card(Sector::Gaming),
            &me,
            &[near.clone(), far.clone()],
            &RoutingPolicy::default(),
        );
        assert_eq!(
            (e.outcome, e.rule),
            (Outcome::Refer, Rule::BetterSuitedElsewhere)
        );
        let offered: Vec<&str> = e.ranked.iter().map(|c| c.member.as_str()).collect();
        assert_eq!(offered, ["fi"], "only the better-suited member");
        assert!(e.ranked[0].better_suited);
        // With no member having it as a priority, it stays, whatever the scores.
        let e = run(
            &card(Sector::Gaming),
            &me,
            std::slice::from_ref(&near),
            &RoutingPolicy::default(),
        );
        assert_eq!((e.outcome, e.rule), (Outcome::Keep, Rule::NoBetterSuited));
        // A priority member without the GPUs the project needs is not better suited.
        let mut hungry = card(Sector::Gaming);
        hungry.gpu_hours = 1_000;
        let mut no_gpus = far.clone();
        no_gpus.gpu.total = Some(0);
        let e = run(&hungry, &me, &[near, no_gpus], &RoutingPolicy::default());
        assert_eq!((e.outcome, e.rule), (Outcome::Keep, Rule::NoBetterSuited));
    }

    #[test]
    fn home_advantages_never_outweigh_a_priority_match() {
        let all = Service::ALL;
        // Luxembourg excludes health; a neighbour that answers at once accepts it; a far
        // member has it as a priority.
        let mut me = advert("lu", "LU", &[], all);
        me.sectors.insert(Sector::Health, SectorLevel::Excluded);
        let mut neighbour = advert("be", "BE", &[], all);
        neighbour.countries_served = vec![CountryCode::new("LU").unwrap()];
        neighbour.languages = vec![Language::new("fr").unwrap(), Language::new("en").unwrap()];
        neighbour.datasets = vec![aiguillage_wire::Dataset {
            id: "clinical-images".into(),
            title: "Clinical images".into(),
            sectors: vec![Sector::Health],
        }];
        let far = advert("fi", "FI", &[Sector::Health], all);
        let mut c = card(Sector::Health);
        c.datasets_wanted = vec!["clinical-images".into()];
        let e = run(&c, &me, &[neighbour, far], &RoutingPolicy::default());
        let order: Vec<&str> = e.ranked.iter().map(|c| c.member.as_str()).collect();
        assert_eq!(
            order,
            ["fi", "be"],
            "the priority member first, the neighbour after"
        );
        // The neighbour scores higher on the terms (geography, datasets), and still comes
        // second: the terms rank members of equal standing only.
        assert!(
            e.ranked[1].score.total > e.ranked[0].score.total,
            "{} vs {}",
            e.ranked[1].score.total,
            e.ranked[0].score.total
        );
    }

    #[test]
    fn ties_break_by_member_id_and_deny_lists_apply() {
        let all = Service::ALL;
        let me = advert("lu", "LU", &[], all);
        let others = [
            advert("zz", "DE", &[Sector::Health], all),
            advert("aa", "DE", &[Sector::Health], all),
        ];
        let e = run(
            &card(Sector::Health),
            &me,
            &others,
            &RoutingPolicy::default(),
        );
        let order: Vec<&str> = e.ranked.iter().map(|c| c.member.as_str()).collect();
        assert_eq!(order, ["aa", "zz"]);
        let deny = RoutingPolicy {
            deny: vec![MemberId::new("aa").unwrap()],
            ..RoutingPolicy::default()
        };
        let e = run(&card(Sector::Health), &me, &others, &deny);
        assert_eq!(e.ranked[0].member.as_str(), "zz");
        assert_eq!(e.ineligible[0].rule, Ineligible::Denied);
    }

    #[test]
    fn keep_all_never_refers_and_exhaustion_is_reported() {
        let all = Service::ALL;
        let me = advert("lu", "LU", &[], all);
        let mut me_excl = me.clone();
        me_excl
            .sectors
            .insert(Sector::Health, SectorLevel::Excluded);
        let keep_all = RoutingPolicy {
            strategy: Strategy::KeepAll,
            ..RoutingPolicy::default()
        };
        assert_eq!(
            run(&card(Sector::Health), &me_excl, &[], &keep_all).outcome,
            Outcome::Keep
        );
        let e = run(
            &card(Sector::Health),
            &me_excl,
            &[],
            &RoutingPolicy::default(),
        );
        assert_eq!(e.outcome, Outcome::Exhausted);
    }

    #[test]
    fn pruning_never_changes_the_ranking() {
        // Many candidates with close scores: the pruned top-k equals the full sort.
        let all = Service::ALL;
        let me = advert("lu", "LU", &[], all);
        let countries = ["DE", "FR", "BE", "IT", "SE", "CH"];
        let others: Vec<Advert> = (0..60)
            .map(|i| {
                let pri: &[Sector] = if i % 3 == 0 { &[Sector::Health] } else { &[] };
                advert(
                    &format!("m{i:02}"),
                    countries[i % countries.len()],
                    pri,
                    all,
                )
            })
            .collect();
        let policy = RoutingPolicy {
            max_candidates: 5,
            ..RoutingPolicy::default()
        };
        let e = run(&card(Sector::Health), &me, &others, &policy);
        let mut full: Vec<(f64, String)> = others
            .iter()
            .map(|a| {
                let mut s = score_without_standing(
                    &card(Sector::Health),
                    a,
                    &SectorTable::of(a),
                    &policy.weights,
                );
                add_standing(
                    &mut s,
                    &Standing {
                        reciprocity: 0.0,
                        behaviour: None,
                        now: Timestamp(0),
                        decline_half_life_ms: 0,
                    },
                    &policy.weights,
                );
                (s.total, a.member.to_string())
            })
            .collect();
        full.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let top: Vec<String> = full.into_iter().take(5).map(|(_, m)| m).collect();
        let got: Vec<String> = e.ranked.iter().map(|c| c.member.to_string()).collect();
        assert_eq!(got, top);
    }
}
