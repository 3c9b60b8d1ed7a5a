//! Workload generators: project arrivals with a sector mix and journey stages, and GPU jobs
//! with sizes and a daily load curve. Each member has its own random streams, so its
//! arrivals do not depend on anything the policy under test changes.

use aiguillage_core::Profile;
use aiguillage_wire::{
    CompanySize, ConsentScope, CountryCode, Dossier, JobRequirements, Language, ProjectCard,
    ProjectId, Role, Sector, SectorLevel, Service, Timestamp,
};

use crate::geo;
use crate::rng::Rng;
use crate::scenario::{Jobs, Projects, Scenario};

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// One member's arrival streams.
pub struct MemberWorkload {
    project_rng: Rng,
    job_rng: Rng,
    /// Mean project arrivals per ms (0 = none).
    project_rate: f64,
    /// Mean job arrivals per ms at the curve's peak, before surges.
    job_peak_rate: f64,
    job_base_factor: f64,
}

/// A job to submit: what the operator asks for, and how the simulated run behaves.
pub struct JobDraw {
    pub requirements: JobRequirements,
    pub command: Vec<String>,
    pub gpus: u32,
}

impl MemberWorkload {
    pub fn new(scenario: &Scenario, seed: u64, index: usize, profile: &Profile) -> Self {
        let p = &scenario.projects;
        let j = &scenario.jobs;
        let (pr, jr) = match profile.role {
            Role::Factory => (p.per_factory_per_day, j.per_factory_per_day),
            Role::Antenna => (p.per_antenna_per_day, j.per_antenna_per_day),
        };
        let pf = p.member_factor.get(&profile.id).copied().unwrap_or(1.0);
        let jf = j.member_factor.get(&profile.id).copied().unwrap_or(1.0);
        let curve_mean = j.daily_curve.iter().sum::<f64>() / 24.0;
        let curve_max = j.daily_curve.iter().cloned().fold(0.0, f64::max);
        let surge_max = j
            .surges
            .iter()
            .filter(|s| s.members.contains(&profile.id))
            .map(|s| s.factor)
            .fold(1.0, f64::max);
        let peak = if curve_mean > 0.0 {
            jr * jf * curve_max / curve_mean * surge_max / DAY_MS as f64
        } else {
            0.0
        };
        MemberWorkload {
            project_rng: Rng::stream(seed, "projects", index as u64),
            job_rng: Rng::stream(seed, "jobs", index as u64),
            project_rate: pr * pf / DAY_MS as f64 / f64::from(p.batch.max(1)),
            job_peak_rate: peak / f64::from(j.batch.max(1)),
            job_base_factor: jf,
        }
    }

    /// Time of the next project arrival after `after_ms` (virtual ms since the start).
    pub fn next_project(&mut self, after_ms: u64) -> Option<u64> {
        if self.project_rate <= 0.0 {
            return None;
        }
        let gap = self.project_rng.exp(1.0 / self.project_rate);
        Some(after_ms + gap.max(1.0) as u64)
    }

    /// Time of the next job arrival after `after_ms`, thinning a Poisson process at the
    /// peak rate by the daily curve and any surge.
    pub fn next_job(&mut self, after_ms: u64, jobs: &Jobs, member: &Profile) -> Option<u64> {
        if self.job_peak_rate <= 0.0 {
            return None;
        }
        let curve_mean = jobs.daily_curve.iter().sum::<f64>() / 24.0;
        let peak_per_day = self.job_peak_rate * DAY_MS as f64;
        let mut t = after_ms as f64;
        // Bounded: at worst the curve is zero most of the day.
        for _ in 0..100_000 {
            t += self.job_rng.exp(1.0 / self.job_peak_rate).max(1.0);
            let hour = ((t as u64 % DAY_MS) / HOUR_MS) as usize;
            let surge = jobs
                .surges
                .iter()
                .filter(|s| {
                    s.members.contains(&member.id)
                        && (s.from.ms() as f64) <= t
                        && t < s.until.ms() as f64
                })
                .map(|s| s.factor)
                .fold(1.0, f64::max);
            let base = match member.role {
                Role::Factory => jobs.per_factory_per_day,
                Role::Antenna => jobs.per_antenna_per_day,
            } * self.job_base_factor;
            let rate_now = base * jobs.daily_curve[hour] / curve_mean.max(1e-12) * surge
                / f64::from(jobs.batch.max(1));
            if self.job_rng.f64() * peak_per_day <= rate_now {
                return Some(t as u64);
            }
        }
        None
    }

    /// The card and dossier of a project filed at `member`.
    pub fn project(&mut self, p: &Projects, member: &Profile, n: u64) -> (ProjectCard, Dossier) {
        let rng = &mut self.project_rng;
        let sector = if !member.sectors.priority.is_empty() && rng.chance(p.priority_share) {
            member.sectors.priority[rng.below(member.sectors.priority.len())]
        } else if p.sectors.is_empty() {
            Sector::ALL[rng.below(Sector::ALL.len())]
        } else {
            let keys: Vec<Sector> = p.sectors.keys().copied().collect();
            let weights: Vec<f64> = p.sectors.values().copied().collect();
            keys[rng.weighted(&weights)]
        };
        let stage = if p.stages.is_empty() {
            Service::ALL[rng.below(Service::ALL.len())]
        } else {
            let keys: Vec<Service> = p.stages.keys().copied().collect();
            let weights: Vec<f64> = p.stages.values().copied().collect();
            keys[rng.weighted(&weights)]
        };
        let mut services = vec![stage];
        if let Some(next) = Service::ALL
            .iter()
            .position(|s| *s == stage)
            .and_then(|i| Service::ALL.get(i + 1))
        {
            services.push(*next);
        }
        let country = if rng.chance(p.foreign_share) {
            let c = geo::COUNTRIES[rng.below(geo::COUNTRIES.len())].0;
            CountryCode::new(c).unwrap_or(member.country)
        } else {
            member.country
        };
        let mut secondary = Vec::new();
        if rng.chance(0.3) {
            let s = Sector::ALL[rng.below(Sector::ALL.len())];
            if s != sector {
                secondary.push(s);
            }
        }
        let languages = match Language::new(geo::language(country)) {
            Ok(l) if rng.chance(0.5) => vec![l],
            _ => vec![Language::new("en").expect("en is a language tag")],
        };
        let consent = if rng.chance(p.consent_whole_federation) {
            ConsentScope {
                whole_federation: true,
                members: vec![],
                countries: vec![],
            }
        } else {
            ConsentScope {
                whole_federation: false,
                members: vec![],
                countries: vec![country],
            }
        };
        let sizes = [
            CompanySize::Micro,
            CompanySize::Small,
            CompanySize::Medium,
            CompanySize::Large,
            CompanySize::Public,
            CompanySize::Research,
        ];
        let card = ProjectCard {
            project: ProjectId::new("unassigned/0").expect("a valid placeholder id"),
            sector,
            secondary_sectors: secondary,
            country,
            company_size: sizes[rng.below(sizes.len())],
            stage,
            services_needed: services,
            gpu_hours: rng.range(u64::from(p.gpu_hours[0]), u64::from(p.gpu_hours[1])) as u32,
            datasets_wanted: vec![],
            languages,
            consent,
        };
        let dossier = Dossier {
            company: format!("Client {n} of {}", member.id),
            contact_name: "A. Client".into(),
            contact_email: format!("client{n}@example.eu"),
            summary: format!("A {sector} project at the {stage} stage"),
        };
        (card, dossier)
    }

    /// A job submitted at `member` at virtual `now`.
    pub fn job(&mut self, j: &Jobs, member: &Profile, now: Timestamp) -> JobDraw {
        let rng = &mut self.job_rng;
        let gpus = j.gpus[rng.weighted(&j.gpu_weights)];
        let secs = (rng.log_uniform(j.duration[0].ms() as f64, j.duration[1].ms() as f64) / 1000.0)
            .max(1.0) as u64;
        let exit = i32::from(rng.chance(j.fail_share));
        let residency = if rng.chance(j.residency_share) {
            vec![member.country]
        } else {
            vec![]
        };
        JobDraw {
            requirements: JobRequirements {
                gpus,
                time_limit_s: secs * 2 + 60,
                accelerator: None,
                latest_start: now.saturating_add_ms(j.max_wait.ms()),
                residency,
                priority: 0,
            },
            command: vec!["sim".into(), secs.to_string(), exit.to_string()],
            gpus,
        }
    }
}

/// Whether `sector` is a priority of `profile` (match quality).
pub fn is_priority(profile: &Profile, sector: Sector) -> bool {
    profile.level(sector) == SectorLevel::Priority
}
