//! Scenario files: TOML, documented in `simulations/README.md`. Every table refuses unknown
//! fields, and every error names the file and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use aiguillage_core::routing::{ReferralRule, Strategy, Weights};
use aiguillage_wire::{CountryCode, MemberId, Sector, Service};

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// A span of virtual time, written like `"90s"`, `"15m"`, `"2h 30m"` or `"365d"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub u64);

impl Dur {
    pub const fn ms(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_duration(std::time::Duration::from_millis(self.0))
        )
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(|d| Dur(d.as_millis() as u64))
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a duration like \"90s\", \"15m\" or \"2d\": {e}"
                ))
            })
    }
}

/// A whole scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Used when the command line gives no `--seed`.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// How long projects and jobs arrive.
    pub duration: Dur,
    /// After the arrivals stop: faults heal, loss stops, and the federation runs on this
    /// long before the final checks (ledgers agree only once messages settle).
    #[serde(default = "default_settle")]
    pub settle: Dur,
    /// Time-series sampling interval.
    #[serde(default = "default_sample")]
    pub sample_every: Dur,
    pub members: Members,
    #[serde(default)]
    pub core: CoreTimings,
    #[serde(default)]
    pub policy: PolicyChoice,
    /// Named policies a scenario defines besides the built-in ones.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicySpec>,
    #[serde(default)]
    pub projects: Projects,
    #[serde(default)]
    pub jobs: Jobs,
    #[serde(default)]
    pub operators: Operators,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub checks: Checks,
    /// Where the scenario file is, to resolve relative paths (set by [`Scenario::load`]).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_seed() -> u64 {
    1
}
fn default_settle() -> Dur {
    Dur(DAY)
}
fn default_sample() -> Dur {
    Dur(HOUR)
}

/// Which members take part.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    /// `"all"` for every profile under `config_dir`, `"none"`, or a list of member ids.
    #[serde(default = "default_profiles")]
    pub profiles: ProfileSet,
    /// Folder with `factories/` and `antennas/`, relative to the scenario file.
    #[serde(default = "default_config_dir")]
    pub config_dir: PathBuf,
    /// The labelled capacity assumptions (`config/devnet/assumptions.toml` by default),
    /// relative to `config_dir`.
    #[serde(default = "default_assumptions")]
    pub assumptions: PathBuf,
    /// Multiplies the assumed GPU counts of profile members.
    #[serde(default = "one")]
    pub gpu_scale: f64,
    /// GPU counts per member id, replacing the assumption.
    #[serde(default)]
    pub gpus: BTreeMap<MemberId, u32>,
    /// Referral intake per member id, replacing the assumption.
    #[serde(default)]
    pub intake: BTreeMap<MemberId, u32>,
    #[serde(default)]
    pub synthetic: Option<Synthetic>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileSet {
    All,
    None,
    Some(Vec<MemberId>),
}

impl<'de> Deserialize<'de> for ProfileSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<MemberId>),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected \"all\", \"none\" or a list of member ids")
        })? {
            Raw::Word(w) if w == "all" => Ok(ProfileSet::All),
            Raw::Word(w) if w == "none" => Ok(ProfileSet::None),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "{w:?}: expected \"all\", \"none\" or a list of member ids"
            ))),
            Raw::List(l) => Ok(ProfileSet::Some(l)),
        }
    }
}

fn default_profiles() -> ProfileSet {
    ProfileSet::All
}
fn default_config_dir() -> PathBuf {
    PathBuf::from("../config")
}
fn default_assumptions() -> PathBuf {
    PathBuf::from("devnet/assumptions.toml")
}
fn one() -> f64 {
    1.0
}

/// Generated members, `syn-0001` onwards.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Synthetic {
    pub count: u32,
    /// Share of factories (the rest are antennas without GPUs).
    #[serde(default = "default_factory_share")]
    pub factory_share: f64,
    /// GPU counts a factory draws from.
    #[serde(default = "default_syn_gpus")]
    pub gpus: Vec<u32>,
    /// Fewest and most priority sectors.
    #[serde(default = "default_syn_priorities")]
    pub priority_sectors: [u32; 2],
    /// Share of members that exclude one sector.
    #[serde(default = "default_exclude_share")]
    pub exclude_share: f64,
    #[serde(default = "default_syn_intake")]
    pub referral_intake: u32,
    /// Countries drawn from; every country the network model knows by default.
    #[serde(default)]
    pub countries: Vec<CountryCode>,
}

fn default_factory_share() -> f64 {
    0.8
}
fn default_syn_gpus() -> Vec<u32> {
    vec![16, 32, 64, 128]
}
fn default_syn_priorities() -> [u32; 2] {
    [3, 6]
}
fn default_exclude_share() -> f64 {
    0.2
}
fn default_syn_intake() -> u32 {
    50
}

/// Overrides of the core's timings; anything left out keeps the production default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreTimings {
    pub offer_ttl: Option<Dur>,
    pub decision_ttl: Option<Dur>,
    pub max_attempts: Option<u32>,
    pub resend: Option<Dur>,
    pub message_ttl: Option<Dur>,
    pub advert_ttl: Option<Dur>,
    pub advert_min_interval: Option<Dur>,
    pub bid_window: Option<Dur>,
    pub max_bidders: Option<usize>,
    pub reserve_ttl: Option<Dur>,
    pub lease_ttl: Option<Dur>,
    pub heartbeat: Option<Dur>,
    pub replace_retry: Option<Dur>,
    /// How long a finished record stays in a core's memory before it is archived.
    pub retention: Option<Dur>,
}

/// The policy a `run` uses: a built-in name or one of `[policies]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChoice {
    #[serde(default = "default_policy")]
    pub name: String,
}

impl Default for PolicyChoice {
    fn default() -> Self {
        PolicyChoice {
            name: default_policy(),
        }
    }
}

fn default_policy() -> String {
    "scored".into()
}

/// A routing and bidding policy under test.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default)]
    pub strategy: Strategy,
    /// When a project in a sector the filing member only accepts leaves.
    #[serde(default)]
    pub rule: ReferralRule,
    #[serde(default)]
    pub weights: Option<Weights>,
    #[serde(default)]
    pub accept_margin: Option<f64>,
    #[serde(default)]
    pub max_candidates: Option<usize>,
    /// Whether members host each other's GPU overflow.
    #[serde(default = "yes")]
    pub federate_overflow: bool,
}

fn yes() -> bool {
    true
}

/// Names of the built-in policies, in the order `compare` lists them.
pub const BUILTIN_POLICIES: &[&str] = &["no_federation", "random", "nearest", "margin", "scored"];

impl Scenario {
    /// The policy called `name`: one of the scenario's `[policies]`, else a built-in.
    pub fn policy(&self, name: &str) -> Result<PolicySpec, ScenarioError> {
        if let Some(p) = self.policies.get(name) {
            return Ok(p.clone());
        }
        let spec = |strategy, federate_overflow| PolicySpec {
            strategy,
            rule: ReferralRule::BetterSuited,
            weights: None,
            accept_margin: None,
            max_candidates: None,
            federate_overflow,
        };
        match name {
            "no_federation" => Ok(spec(Strategy::KeepAll, false)),
            "random" => Ok(spec(Strategy::Random, true)),
            "nearest" => Ok(spec(Strategy::Nearest, true)),
            "scored" => Ok(spec(Strategy::Scored, true)),
            // The earlier default: an accepted sector leaves only when the best candidate
            // beats the local score by the margin.
            "margin" => Ok(PolicySpec {
                rule: ReferralRule::Margin,
                ..spec(Strategy::Scored, true)
            }),
            _ => Err(ScenarioError::UnknownPolicy {
                name: name.to_owned(),
                known: BUILTIN_POLICIES
                    .iter()
                    .map(|s| s.to_string())
                    .chain(self.policies.keys().cloned())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// Project arrivals.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Projects {
    /// Mean arrivals per factory per day (Poisson).
    #[serde(default = "default_projects_rate")]
    pub per_factory_per_day: f64,
    #[serde(default = "default_projects_antenna")]
    pub per_antenna_per_day: f64,
    /// Share of projects in one of the filing member's priority sectors.
    #[serde(default = "default_priority_share")]
    pub priority_share: f64,
    /// Sector mix of the other projects (relative weights; uniform when empty).
    #[serde(default)]
    pub sectors: BTreeMap<Sector, f64>,
    /// Journey stage mix (relative weights; uniform when empty). A project needs its stage
    /// and the next step of the journey.
    #[serde(default)]
    pub stages: BTreeMap<Service, f64>,
    /// Share of clients from another country than the member's.
    #[serde(default = "default_foreign_share")]
    pub foreign_share: f64,
    /// Share of clients that consent to the whole federation; the rest consent to their
    /// own country only.
    #[serde(default = "default_consent_share")]
    pub consent_whole_federation: f64,
    /// Fewest and most GPU-hours a project needs.
    #[serde(default = "default_gpu_hours")]
    pub gpu_hours: [u32; 2],
    /// Arrival multipliers per member id.
    #[serde(default)]
    pub member_factor: BTreeMap<MemberId, f64>,
    /// Projects filed together at each arrival (an intake session); the rate still
    /// counts projects.
    #[serde(default = "one_u32")]
    pub batch: u32,
}

fn one_u32() -> u32 {
    1
}

impl Default for Projects {
    fn default() -> Self {
        Projects {
            per_factory_per_day: default_projects_rate(),
            per_antenna_per_day: default_projects_antenna(),
            priority_share: default_priority_share(),
            sectors: BTreeMap::new(),
            stages: BTreeMap::new(),
            foreign_share: default_foreign_share(),
            consent_whole_federation: default_consent_share(),
            gpu_hours: default_gpu_hours(),
            member_factor: BTreeMap::new(),
            batch: 1,
        }
    }
}

fn default_projects_rate() -> f64 {
    0.5
}
fn default_projects_antenna() -> f64 {
    0.2
}
fn default_priority_share() -> f64 {
    0.6
}
fn default_foreign_share() -> f64 {
    0.1
}
fn default_consent_share() -> f64 {
    0.85
}
fn default_gpu_hours() -> [u32; 2] {
    [0, 5_000]
}

/// GPU job arrivals.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jobs {
    /// Mean jobs per factory per day, before the daily curve.
    #[serde(default = "default_jobs_rate")]
    pub per_factory_per_day: f64,
    #[serde(default)]
    pub per_antenna_per_day: f64,
    /// GPUs per job and their relative weights.
    #[serde(default = "default_job_gpus")]
    pub gpus: Vec<u32>,
    #[serde(default = "default_job_gpu_weights")]
    pub gpu_weights: Vec<f64>,
    /// Shortest and longest run (log-uniform).
    #[serde(default = "default_job_duration")]
    pub duration: [Dur; 2],
    /// Relative arrival rate for each hour of the day (24 values).
    #[serde(default = "default_curve")]
    pub daily_curve: Vec<f64>,
    /// A job that cannot start within this is missed.
    #[serde(default = "default_max_wait")]
    pub max_wait: Dur,
    /// Share of jobs that exit non-zero.
    #[serde(default)]
    pub fail_share: f64,
    /// Share of jobs that must stay in the member's country.
    #[serde(default)]
    pub residency_share: f64,
    /// Arrival multipliers per member id.
    #[serde(default)]
    pub member_factor: BTreeMap<MemberId, f64>,
    /// Temporary multipliers for some members.
    #[serde(default)]
    pub surges: Vec<Surge>,
    /// Jobs submitted together at each arrival; the rate still counts jobs.
    #[serde(default = "one_u32")]
    pub batch: u32,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            per_factory_per_day: default_jobs_rate(),
            per_antenna_per_day: 0.0,
            gpus: default_job_gpus(),
            gpu_weights: default_job_gpu_weights(),
            duration: default_job_duration(),
            daily_curve: default_curve(),
            max_wait: default_max_wait(),
            fail_share: 0.0,
            residency_share: 0.0,
            member_factor: BTreeMap::new(),
            surges: Vec::new(),
            batch: 1,
        }
    }
}

fn default_jobs_rate() -> f64 {
    10.0
}
fn default_job_gpus() -> Vec<u32> {
    vec![1, 2, 4, 8]
}
fn default_job_gpu_weights() -> Vec<f64> {
    vec![4.0, 3.0, 2.0, 1.0]
}
fn default_job_duration() -> [Dur; 2] {
    [Dur(10 * MINUTE), Dur(4 * HOUR)]
}
fn default_curve() -> Vec<f64> {
    // Quiet nights, a morning rise, a working-day plateau.
    vec![
        0.3, 0.25, 0.2, 0.2, 0.2, 0.3, 0.5, 0.9, 1.4, 1.7, 1.8, 1.8, 1.6, 1.7, 1.8, 1.8, 1.6, 1.3,
        1.0, 0.8, 0.7, 0.6, 0.5, 0.4,
    ]
}
fn default_max_wait() -> Dur {
    Dur(12 * HOUR)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Surge {
    pub members: Vec<MemberId>,
    pub factor: f64,
    pub from: Dur,
    pub until: Dur,
}

/// How the simulated operators behave.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operators {
    /// Share of offers needing a decision that the operator accepts.
    #[serde(default = "default_accept_share")]
    pub accept_share: f64,
    /// Share of such offers the operator never gets to (they time out).
    #[serde(default = "default_never_share")]
    pub never_decide_share: f64,
    /// Fastest and slowest decision (log-uniform).
    #[serde(default = "default_decision_delay")]
    pub decision_delay: [Dur; 2],
    /// When a handed-over project is reported finished (log-uniform).
    #[serde(default = "default_complete_after")]
    pub complete_after: [Dur; 2],
    /// Share of handed-over projects that end abandoned rather than completed.
    #[serde(default = "default_abandon_share")]
    pub abandon_share: f64,
    /// When a project kept at its own member ends its journey there (log-uniform; completed,
    /// or abandoned at `abandon_share`). Unset, such a project stays open for the whole run.
    #[serde(default)]
    pub complete_at_home: Option<[Dur; 2]>,
}

impl Default for Operators {
    fn default() -> Self {
        Operators {
            accept_share: default_accept_share(),
            never_decide_share: default_never_share(),
            decision_delay: default_decision_delay(),
            complete_after: default_complete_after(),
            abandon_share: default_abandon_share(),
            complete_at_home: None,
        }
    }
}

fn default_accept_share() -> f64 {
    0.75
}
fn default_never_share() -> f64 {
    0.05
}
fn default_decision_delay() -> [Dur; 2] {
    [Dur(20 * MINUTE), Dur(12 * HOUR)]
}
fn default_complete_after() -> [Dur; 2] {
    [Dur(7 * DAY), Dur(60 * DAY)]
}
fn default_abandon_share() -> f64 {
    0.1
}

/// The simulated network.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// One-way latency inside a country.
    #[serde(default = "default_base_latency")]
    pub base_latency: Dur,
    /// Added one-way latency per 1,000 km between the two capitals.
    #[serde(default = "default_per_1000km")]
    pub per_1000km: Dur,
    /// Uniform extra delay per message, in [0, jitter] (reorders messages).
    #[serde(default)]
    pub jitter: Dur,
    /// Share of messages lost.
    #[serde(default)]
    pub loss: f64,
    /// Share of direct messages delivered twice.
    #[serde(default)]
    pub duplicate: f64,
    /// Link bandwidth: a message of B bytes takes B / bandwidth more.
    #[serde(default = "default_bandwidth")]
    pub bandwidth_mbps: f64,
    /// Latencies for named country pairs, replacing the model.
    #[serde(default)]
    pub pairs: Vec<LatencyPair>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            base_latency: default_base_latency(),
            per_1000km: default_per_1000km(),
            jitter: Dur(0),
            loss: 0.0,
            duplicate: 0.0,
            bandwidth_mbps: default_bandwidth(),
            pairs: Vec::new(),
        }
    }
}

fn default_base_latency() -> Dur {
    Dur(2)
}
fn default_per_1000km() -> Dur {
    Dur(10)
}
fn default_bandwidth() -> f64 {
    1_000.0
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyPair {
    pub a: CountryCode,
    pub b: CountryCode,
    pub latency: Dur,
}

/// A fault injected at a moment of virtual time.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// The member's process dies; with `restart_after` it comes back from its persisted
    /// state (else at the settle phase).
    Crash {
        member: MemberId,
        at: Dur,
        #[serde(default)]
        restart_after: Option<Dur>,
        /// Its jobs keep running while it is down (as under Slurm).
        #[serde(default)]
        jobs_survive: bool,
    },
    /// Members in different groups cannot reach each other until it heals; members in no
    /// group are cut off from every group.
    Partition {
        at: Dur,
        heal_after: Dur,
        groups: Vec<Vec<MemberId>>,
    },
    /// The member stops answering offers, bids and reservations (its answers are lost and
    /// its operator decides nothing).
    Silent {
        member: MemberId,
        at: Dur,
        until: Dur,
    },
    /// The member's clock runs ahead (positive) or behind (negative) by `skew_ms`.
    ClockSkew { member: MemberId, skew_ms: i64 },
}

/// What the invariant checker inspects.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// Check every core's whole state at each sample, besides the checks on every output.
    #[serde(default = "yes")]
    pub full_state_at_samples: bool,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            full_state_at_samples: true,
        }
    }
}

/// A scenario that could not be loaded or is inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Parse(#[from] aiguillage_core::FileError),
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
    #[error("unknown policy {name:?}; known: {known}")]
    UnknownPolicy { name: String, known: String },
    #[error("{0}")]
    Members(String),
}

impl Scenario {
    /// Reads, parses and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Scenario::parse(&text, &path.display().to_string(), base)
    }

    /// Parses and checks scenario text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, source: &str, base_dir: PathBuf) -> Result<Scenario, ScenarioError> {
        let mut s: Scenario = aiguillage_core::file::from_toml(text, source)?;
        s.base_dir = base_dir;
        s.validate(source)?;
        Ok(s)
    }

    /// Checks what the types alone cannot: shares in [0, 1], positive spans, list lengths.
    pub fn validate(&self, source: &str) -> Result<(), ScenarioError> {
        let bad = |field: &str, message: String| ScenarioError::Invalid {
            path: source.to_owned(),
            field: field.to_owned(),
            message,
        };
        let share = |field: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(bad(field, format!("{v} is not a share between 0 and 1")))
            }
        };
        let rate = |field: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(bad(field, format!("{v} is not a rate of 0 or more")))
            }
        };
        if self.duration.ms() == 0 {
            return Err(bad("duration", "must be more than zero".into()));
        }
        if self.sample_every.ms() < MINUTE {
            return Err(bad("sample_every", "must be at least 1m".into()));
        }
        let total = self.duration.ms() + self.settle.ms();
        if total > 399 * DAY {
            return Err(bad(
                "duration",
                "duration + settle must stay under 399 days (the roster's longest lifetime)".into(),
            ));
        }
        if !(self.members.gpu_scale.is_finite() && self.members.gpu_scale >= 0.0) {
            return Err(bad("members.gpu_scale", "must be 0 or more".into()));
        }
        if let Some(syn) = &self.members.synthetic {
            share("members.synthetic.factory_share", syn.factory_share)?;
            share("members.synthetic.exclude_share", syn.exclude_share)?;
            if syn.gpus.is_empty() {
                return Err(bad("members.synthetic.gpus", "must not be empty".into()));
            }
            let [lo, hi] = syn.priority_sectors;
            if lo > hi || hi as usize > Sector::ALL.len() {
                return Err(bad(
                    "members.synthetic.priority_sectors",
                    format!("[{lo}, {hi}] is not a range within 0..=26"),
                ));
            }
            if syn.count > 9_999 {
                return Err(bad("members.synthetic.count", "at most 9999".into()));
            }
        }
        rate(
            "projects.per_factory_per_day",
            self.projects.per_factory_per_day,
        )?;
        rate(
            "projects.per_antenna_per_day",
            self.projects.per_antenna_per_day,
        )?;
        share("projects.priority_share", self.projects.priority_share)?;
        share("projects.foreign_share", self.projects.foreign_share)?;
        share(
            "projects.consent_whole_federation",
            self.projects.consent_whole_federation,
        )?;
        for (m, f) in &self.projects.member_factor {
            rate(&format!("projects.member_factor.{m}"), *f)?;
        }
        if self.projects.batch == 0 || self.jobs.batch == 0 {
            return Err(bad(
                if self.projects.batch == 0 {
                    "projects.batch"
                } else {
                    "jobs.batch"
                },
                "must be 1 or more".into(),
            ));
        }
        rate("jobs.per_factory_per_day", self.jobs.per_factory_per_day)?;
        rate("jobs.per_antenna_per_day", self.jobs.per_antenna_per_day)?;
        if self.jobs.gpus.is_empty() || self.jobs.gpus.contains(&0) {
            return Err(bad(
                "jobs.gpus",
                "needs at least one size, each 1 or more".into(),
            ));
        }
        if self.jobs.gpu_weights.len() != self.jobs.gpus.len() {
            return Err(bad(
                "jobs.gpu_weights",
                format!(
                    "has {} weights for {} sizes",
                    self.jobs.gpu_weights.len(),
                    self.jobs.gpus.len()
                ),
            ));
        }
        if self.jobs.daily_curve.len() != 24 || self.jobs.daily_curve.iter().any(|v| *v < 0.0) {
            return Err(bad(
                "jobs.daily_curve",
                "needs 24 values of 0 or more".into(),
            ));
        }
        if self.jobs.duration[0].ms() < SECOND || self.jobs.duration[0] > self.jobs.duration[1] {
            return Err(bad(
                "jobs.duration",
                "needs [shortest, longest] with shortest at least 1s".into(),
            ));
        }
        share("jobs.fail_share", self.jobs.fail_share)?;
        share("jobs.residency_share", self.jobs.residency_share)?;
        for (m, f) in &self.jobs.member_factor {
            rate(&format!("jobs.member_factor.{m}"), *f)?;
        }
        for (i, s) in self.jobs.surges.iter().enumerate() {
            rate(&format!("jobs.surges[{i}].factor"), s.factor)?;
            if s.from >= s.until {
                return Err(bad(
                    &format!("jobs.surges[{i}]"),
                    "from must be before until".into(),
                ));
            }
        }
        share("operators.accept_share", self.operators.accept_share)?;
        share(
            "operators.never_decide_share",
            self.operators.never_decide_share,
        )?;
        share("operators.abandon_share", self.operators.abandon_share)?;
        if self.operators.decision_delay[0] > self.operators.decision_delay[1] {
            return Err(bad(
                "operators.decision_delay",
                "needs [fastest, slowest]".into(),
            ));
        }
        if self.operators.complete_after[0] > self.operators.complete_after[1] {
            return Err(bad(
                "operators.complete_after",
                "needs [fastest, slowest]".into(),
            ));
        }
        if let Some([fastest, slowest]) = self.operators.complete_at_home
            && fastest > slowest
        {
            return Err(bad(
                "operators.complete_at_home",
                "needs [fastest, slowest]".into(),
            ));
        }
        share("network.loss", self.network.loss)?;
        share("network.duplicate", self.network.duplicate)?;
        if self.network.bandwidth_mbps.is_nan() || self.network.bandwidth_mbps <= 0.0 {
            return Err(bad("network.bandwidth_mbps", "must be more than 0".into()));
        }
        for (i, f) in self.faults.iter().enumerate() {
            if let Fault::Partition { groups, .. } = f
                && groups.is_empty()
            {
                return Err(bad(
                    &format!("faults[{i}].groups"),
                    "needs at least one group".into(),
                ));
            }
            if let Fault::Silent { at, until, .. } = f
                && at >= until
            {
                return Err(bad(
                    &format!("faults[{i}]"),
                    "at must be before until".into(),
                ));
            }
            if let Fault::ClockSkew { skew_ms, .. } = f
                && skew_ms.unsigned_abs() > HOUR
            {
                return Err(bad(
                    &format!("faults[{i}].skew_ms"),
                    "at most one hour either way".into(),
                ));
            }
        }
        self.policy(&self.policy.name)
            .map_err(|e| bad("policy.name", e.to_string()))?;
        for (name, p) in &self.policies {
            if let Some(m) = p.accept_margin
                && !m.is_finite()
            {
                return Err(bad(
                    &format!("policies.{name}.accept_margin"),
                    "must be a number".into(),
                ));
            }
        }
        Ok(())
    }

    /// Every member id the scenario names in faults, overrides and surges, with the field
    /// that names it (checked against the member set once it is built).
    pub fn named_members(&self) -> Vec<(String, MemberId)> {
        let mut v = Vec::new();
        for m in self.members.gpus.keys() {
            v.push((format!("members.gpus.{m}"), m.clone()));
        }
        for m in self.members.intake.keys() {
            v.push((format!("members.intake.{m}"), m.clone()));
        }
        for m in self.projects.member_factor.keys() {
            v.push((format!("projects.member_factor.{m}"), m.clone()));
        }
        for m in self.jobs.member_factor.keys() {
            v.push((format!("jobs.member_factor.{m}"), m.clone()));
        }
        for (i, s) in self.jobs.surges.iter().enumerate() {
            for m in &s.members {
                v.push((format!("jobs.surges[{i}].members"), m.clone()));
            }
        }
        for (i, f) in self.faults.iter().enumerate() {
            match f {
                Fault::Crash { member, .. }
                | Fault::Silent { member, .. }
                | Fault::ClockSkew { member, .. } => {
                    v.push((format!("faults[{i}].member"), member.clone()))
                }
                Fault::Partition { groups, .. } => {
                    for m in groups.iter().flatten() {
                        v.push((format!("faults[{i}].groups"), m.clone()));
                    }
                }
            }
        }
        v
    }

    /// Resolves a path written in the scenario relative to the scenario file.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
duration = "2d"
[members]
profiles = ["lu-l-aif", "de-jaif"]
"#;

    #[test]
    fn a_minimal_scenario_gets_defaults() {
        let s = Scenario::parse(MINIMAL, "t.toml", PathBuf::from(".")).unwrap();
        assert_eq!(s.duration, Dur(2 * DAY));
        assert_eq!(s.policy.name, "scored");
        assert_eq!(s.jobs.daily_curve.len(), 24);
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        let typo = MINIMAL.replace("duration", "durration");
        let e = Scenario::parse(&typo, "t.toml", PathBuf::from("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("durration"), "{e}");
        let bad_share = format!("{MINIMAL}\n[network]\nloss = 1.5\n");
        let e = Scenario::parse(&bad_share, "t.toml", PathBuf::from("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("network.loss"), "{e}");
        let bad_dur = MINIMAL.replace("\"2d\"", "\"two days\"");
        let e = Scenario::parse(&bad_dur, "t.toml", PathBuf::from("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("two days"), "{e}");
        let bad_fault = format!(
            "{MINIMAL}\n[[faults]]\nkind = \"crash\"\nmember = \"lu-l-aif\"\nat = \"1h\"\nwhen = 3\n"
        );
        let e = Scenario::parse(&bad_fault, "t.toml", PathBuf::from("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("when"), "{e}");
        let bad_policy = format!("{MINIMAL}\n[policy]\nname = \"greedy\"\n");
        let e = Scenario::parse(&bad_policy, "t.toml", PathBuf::from("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("policy.name") && e.contains("greedy"), "{e}");
    }
}
