//! The simulated federation's members: profiles from `config/` or generated ones, their GPU
//! capacity, keys derived from the seed, and the roster the simulated authority signs.

use std::collections::BTreeSet;
use std::path::Path;

use aiguillage_core::profile::{GpuProfile, SectorProfile};
use aiguillage_core::{Confidence, DevnetAssumptions, Profile};
use aiguillage_wire::{
    AUTHORITY_ID, CountryCode, Envelope, LATEST_TIME, Language, MemberId, PublicKey, Role, Roster,
    RosterEntry, Sector, SectorLevel, Service, SigningKey, Timestamp,
};

use crate::geo;
use crate::rng::Rng;
use crate::scenario::{ProfileSet, Scenario, ScenarioError};

/// One member as the simulator sets it up.
#[derive(Clone, Debug)]
pub struct MemberSetup {
    pub profile: Profile,
    pub gpus: u32,
    pub takes_overflow: bool,
    pub accelerator: Option<String>,
    pub referral_intake: u32,
}

impl MemberSetup {
    pub fn id(&self) -> &MemberId {
        &self.profile.id
    }
    pub fn country(&self) -> CountryCode {
        self.profile.country
    }
}

/// Builds the members of `scenario`, sorted by id.
pub fn build(scenario: &Scenario, seed: u64) -> Result<Vec<MemberSetup>, ScenarioError> {
    let m = &scenario.members;
    let config_dir = scenario.resolve(&m.config_dir);
    let mut out = Vec::new();
    let wanted: Option<BTreeSet<MemberId>> = match &m.profiles {
        ProfileSet::None => Some(BTreeSet::new()),
        ProfileSet::All => None,
        ProfileSet::Some(ids) => Some(ids.iter().cloned().collect()),
    };
    if wanted.as_ref().is_none_or(|w| !w.is_empty()) {
        let assumptions_path = config_dir.join(&m.assumptions);
        let text = read(&assumptions_path)?;
        let assumptions =
            DevnetAssumptions::from_toml(&text, &assumptions_path.display().to_string())
                .map_err(|e| ScenarioError::Members(e.to_string()))?;
        let mut found = BTreeSet::new();
        for sub in ["factories", "antennas"] {
            let dir = config_dir.join(sub);
            let mut paths: Vec<_> = std::fs::read_dir(&dir)
                .map_err(|source| ScenarioError::Read {
                    path: dir.display().to_string(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            for path in paths {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some(w) = &wanted
                    && !w.iter().any(|id| id.as_str() == stem)
                {
                    continue;
                }
                let text = read(&path)?;
                let profile = Profile::from_toml(&text, &path.display().to_string())
                    .map_err(|e| ScenarioError::Members(e.to_string()))?;
                let cap = assumptions.for_member(&profile.id, profile.role);
                let gpus = m
                    .gpus
                    .get(&profile.id)
                    .copied()
                    .unwrap_or((f64::from(cap.gpus) * m.gpu_scale).round() as u32);
                let intake = m
                    .intake
                    .get(&profile.id)
                    .copied()
                    .unwrap_or(cap.referral_intake);
                found.insert(profile.id.clone());
                out.push(MemberSetup {
                    gpus,
                    takes_overflow: cap.takes_overflow,
                    accelerator: cap.accelerator.clone(),
                    referral_intake: intake,
                    profile,
                });
            }
        }
        if let Some(w) = &wanted
            && let Some(missing) = w.iter().find(|id| !found.contains(*id))
        {
            return Err(ScenarioError::Members(format!(
                "members.profiles: no profile {missing} under {}",
                config_dir.display()
            )));
        }
    }
    if let Some(syn) = &m.synthetic {
        let countries: Vec<CountryCode> = if syn.countries.is_empty() {
            geo::COUNTRIES
                .iter()
                .filter_map(|c| CountryCode::new(c.0).ok())
                .collect()
        } else {
            syn.countries.clone()
        };
        let mut rng = Rng::stream(seed, "synthetic-members", 0);
        for i in 0..syn.count {
            let id = MemberId::new(format!("syn-{:04}", i + 1))
                .map_err(|e| ScenarioError::Members(e.to_string()))?;
            let country = countries[rng.below(countries.len())];
            let factory = rng.chance(syn.factory_share);
            let n = rng.range(
                u64::from(syn.priority_sectors[0]),
                u64::from(syn.priority_sectors[1]),
            ) as usize;
            let mut sectors: Vec<Sector> = Sector::ALL.to_vec();
            let mut priority = Vec::new();
            for _ in 0..n.min(sectors.len()) {
                priority.push(sectors.swap_remove(rng.below(sectors.len())));
            }
            let excluded = if rng.chance(syn.exclude_share) && !sectors.is_empty() {
                vec![sectors.swap_remove(rng.below(sectors.len()))]
            } else {
                vec![]
            };
            let mut languages = vec![Language::new("en").map_err(members_err)?];
            let local = Language::new(geo::language(country)).map_err(members_err)?;
            if !languages.contains(&local) {
                languages.insert(0, local);
            }
            let gpus = if factory {
                syn.gpus[rng.below(syn.gpus.len())]
            } else {
                0
            };
            let profile = Profile {
                id,
                role: if factory {
                    Role::Factory
                } else {
                    Role::Antenna
                },
                name: format!("Synthetic member {}", i + 1),
                acronym: None,
                country,
                host: None,
                site: None,
                supercomputer: None,
                announced: None,
                linked_factories: vec![],
                confidence: Confidence::Partial,
                sources: vec!["synthetic (aiguillage-sim)".into()],
                notes: None,
                services: Service::ALL.to_vec(),
                services_basis: "synthetic".into(),
                languages,
                languages_basis: None,
                countries_served: vec![country],
                countries_served_basis: None,
                datasets: vec![],
                sectors: SectorProfile {
                    priority,
                    excluded,
                    others: SectorLevel::Accepted,
                    basis: None,
                },
                gpu: GpuProfile::default(),
            };
            out.push(MemberSetup {
                profile,
                gpus,
                takes_overflow: factory,
                accelerator: None,
                referral_intake: syn.referral_intake,
            });
        }
    }
    out.sort_by(|a, b| a.profile.id.cmp(&b.profile.id));
    for w in out.windows(2) {
        if w[0].profile.id == w[1].profile.id {
            return Err(ScenarioError::Members(format!(
                "member {} appears twice",
                w[0].profile.id
            )));
        }
    }
    if out.len() < 2 {
        return Err(ScenarioError::Members(
            "members: a federation needs at least two members".into(),
        ));
    }
    for (field, id) in scenario.named_members() {
        if !out.iter().any(|m| m.profile.id == id) {
            return Err(ScenarioError::Members(format!(
                "{field}: {id} is not a member of this scenario"
            )));
        }
    }
    for mb in &out {
        if !geo::known(mb.profile.country) {
            return Err(ScenarioError::Members(format!(
                "member {} is in {}, which the network model does not know",
                mb.profile.id, mb.profile.country
            )));
        }
    }
    Ok(out)
}

fn members_err(e: aiguillage_wire::WireError) -> ScenarioError {
    ScenarioError::Members(e.to_string())
}

fn read(path: &Path) -> Result<String, ScenarioError> {
    std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The signing key of member number `index`, derived from the seed.
pub fn member_key(seed: u64, index: usize) -> SigningKey {
    key_from(Rng::stream(seed, "member-key", index as u64))
}

/// The simulated federation authority's key.
pub fn authority_key(seed: u64) -> SigningKey {
    key_from(Rng::stream(seed, "authority-key", 0))
}

fn key_from(mut rng: Rng) -> SigningKey {
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    SigningKey::from_bytes(&bytes)
}

/// The roster of every member, signed by the authority at `now`, valid for `life_ms`.
pub fn roster(
    members: &[MemberSetup],
    keys: &[SigningKey],
    authority: &SigningKey,
    now: Timestamp,
    life_ms: u64,
) -> Result<Envelope, aiguillage_wire::WireError> {
    let roster = Roster {
        federation: "aiguillage-sim".into(),
        serial: 1,
        members: members
            .iter()
            .zip(keys)
            .map(|(m, k)| RosterEntry {
                id: m.profile.id.clone(),
                key: PublicKey::of(k),
                role: m.profile.role,
                country: m.profile.country,
                // Only links to factories of this federation: a scenario may take a subset.
                linked_factories: m
                    .profile
                    .linked_factories
                    .iter()
                    .filter(|f| {
                        members
                            .iter()
                            .any(|x| &x.profile.id == *f && x.profile.role == Role::Factory)
                    })
                    .cloned()
                    .collect(),
                valid_from: Timestamp(0),
                valid_until: LATEST_TIME,
            })
            .collect(),
    };
    let id = MemberId::new(AUTHORITY_ID)?;
    Envelope::seal(&roster, &id, authority, now, now.saturating_add_ms(life_ms))
}
