//! Member profiles: the researched facts about each AI Factory and antenna, one TOML file
//! per member under `config/`, generated from `data/ai_factories.json`.
//!
//! A profile keeps what is unknown unknown: a GPU count the sources do not give is `None`,
//! and every profile carries its `confidence` and `sources`.

use crate::file::FileError;
use serde::{Deserialize, Serialize};

use aiguillage_wire::{
    Advert, CountryCode, Dataset, GpuCapacity, Language, MemberId, Role, Sector, SectorLevel,
    Service,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub id: MemberId,
    pub role: Role,
    pub name: String,
    #[serde(default)]
    pub acronym: Option<String>,
    pub country: CountryCode,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub supercomputer: Option<String>,
    #[serde(default)]
    pub announced: Option<String>,
    #[serde(default)]
    pub linked_factories: Vec<MemberId>,
    pub confidence: Confidence,
    pub sources: Vec<String>,
    #[serde(default)]
    pub notes: Option<String>,
    pub services: Vec<Service>,
    pub services_basis: String,
    pub languages: Vec<Language>,
    #[serde(default)]
    pub languages_basis: Option<String>,
    pub countries_served: Vec<CountryCode>,
    #[serde(default)]
    pub countries_served_basis: Option<String>,
    #[serde(default)]
    pub datasets: Vec<DatasetProfile>,
    pub sectors: SectorProfile,
    pub gpu: GpuProfile,
}

/// How well the facts in a profile are established (from the research data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Host and priority sectors found in a primary source or several consistent ones.
    Confirmed,
    /// Sectors or other key facts missing or only second-hand.
    Partial,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectorProfile {
    pub priority: Vec<Sector>,
    #[serde(default)]
    pub excluded: Vec<Sector>,
    /// Level of every sector listed in neither `priority` nor `excluded`.
    pub others: SectorLevel,
    #[serde(default)]
    pub basis: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetProfile {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub sectors: Vec<Sector>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuProfile {
    /// AI accelerators, only where a public source states or plans a number.
    #[serde(default)]
    pub accelerators: Option<u32>,
    #[serde(default)]
    pub note: Option<String>,
}

/// A profile that could not be loaded, naming the file and what was wrong in it.
impl Profile {
    /// Parses and validates a profile; `source_name` (usually the path) prefixes every error.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Profile, FileError> {
        let profile: Profile = crate::file::from_toml(text, source_name)?;
        profile
            .validate()
            .map_err(|message| FileError::invalid(source_name, message))?;
        Ok(profile)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(s) = self
            .sectors
            .priority
            .iter()
            .find(|s| self.sectors.excluded.contains(s))
        {
            return Err(format!("sector {s} is both priority and excluded"));
        }
        if self.sectors.others == SectorLevel::Priority {
            return Err("sectors.others cannot be \"priority\"".into());
        }
        if self.sources.is_empty() {
            return Err("a profile needs at least one source".into());
        }
        if self.role == Role::Factory && !self.linked_factories.is_empty() {
            return Err("only antennas have linked_factories".into());
        }
        if self.languages.is_empty() {
            return Err("languages must not be empty".into());
        }
        Ok(())
    }

    /// The member's level for `sector`.
    pub fn level(&self, sector: Sector) -> SectorLevel {
        if self.sectors.priority.contains(&sector) {
            SectorLevel::Priority
        } else if self.sectors.excluded.contains(&sector) {
            SectorLevel::Excluded
        } else {
            self.sectors.others
        }
    }

    /// The advert this member publishes, with its live GPU capacity and intake.
    pub fn advert(&self, seq: u64, gpu: GpuCapacity, referral_intake: Option<u32>) -> Advert {
        let mut sectors = std::collections::BTreeMap::new();
        for s in &self.sectors.priority {
            sectors.insert(*s, SectorLevel::Priority);
        }
        for s in &self.sectors.excluded {
            sectors.insert(*s, SectorLevel::Excluded);
        }
        Advert {
            member: self.id.clone(),
            seq,
            role: self.role,
            name: self.name.clone(),
            country: self.country,
            sectors,
            other_sectors: self.sectors.others,
            services: self.services.clone(),
            languages: self.languages.clone(),
            countries_served: self.countries_served.clone(),
            datasets: self
                .datasets
                .iter()
                .map(|d| Dataset {
                    id: d.id.clone(),
                    title: d.title.clone(),
                    sectors: d.sectors.clone(),
                })
                .collect(),
            gpu,
            referral_intake,
        }
    }
}

/// Checks a set of profiles against each other: file names match ids, ids are unique,
/// roles match the folder, and antennas link to factories in the set. Each problem is one
/// line naming its source.
pub fn cross_check(profiles: &[(String, Profile)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    for (source, p) in profiles {
        let stem = std::path::Path::new(source)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned());
        if stem.as_deref() != Some(p.id.as_str()) {
            problems.push(format!(
                "{source}: id {} does not match the file name",
                p.id
            ));
        }
        let folder_role = if source.contains("/factories/") {
            Some(Role::Factory)
        } else if source.contains("/antennas/") {
            Some(Role::Antenna)
        } else {
            None
        };
        if let Some(role) = folder_role
            && role != p.role
        {
            problems.push(format!(
                "{source}: role {} in the folder of {}s",
                p.role, role
            ));
        }
        if let Some(first) = seen.insert(p.id.clone(), source.clone()) {
            problems.push(format!("{source}: id {} is also used by {first}", p.id));
        }
    }
    for (source, p) in profiles {
        for link in &p.linked_factories {
            match profiles.iter().find(|(_, q)| &q.id == link) {
                None => problems.push(format!("{source}: linked factory {link} has no profile")),
                Some((_, q)) if q.role != Role::Factory => {
                    problems.push(format!("{source}: linked member {link} is not a factory"))
                }
                _ => {}
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const LU: &str = r#"
id = "lu-l-aif"
role = "factory"
name = "Luxembourg AI Factory"
country = "LU"
host = "LuxProvide"
confidence = "confirmed"
sources = ["https://example.org/a"]
services = ["first_contact", "training"]
services_basis = "test"
languages = ["fr", "en"]
countries_served = ["LU"]

[sectors]
priority = ["finance_insurance", "space"]
excluded = ["health"]
others = "accepted"

[gpu]
accelerators = 2100
"#;

    #[test]
    fn a_profile_loads_and_answers_sector_levels() {
        let p = Profile::from_toml(LU, "lu.toml").unwrap();
        assert_eq!(p.level(Sector::Space), SectorLevel::Priority);
        assert_eq!(p.level(Sector::Health), SectorLevel::Excluded);
        assert_eq!(p.level(Sector::Gaming), SectorLevel::Accepted);
        let advert = p.advert(3, GpuCapacity::default(), None);
        assert_eq!(advert.level(Sector::Health), SectorLevel::Excluded);
        assert_eq!(p.gpu.accelerators, Some(2100));
    }

    #[test]
    fn an_unknown_sector_tag_names_the_file_and_line() {
        let bad = LU.replace("\"space\"", "\"spaceflight\"");
        let err = Profile::from_toml(&bad, "config/factories/lu-l-aif.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config/factories/lu-l-aif.toml: "), "{err}");
        assert!(err.contains("line 15"), "{err}");
        assert!(err.contains("spaceflight"), "{err}");
    }

    #[test]
    fn contradictions_and_typos_are_refused() {
        let both = LU.replace("excluded = [\"health\"]", "excluded = [\"space\"]");
        assert!(
            Profile::from_toml(&both, "x")
                .unwrap_err()
                .to_string()
                .contains("both")
        );
        let typo = LU.replace("host =", "hots =");
        assert!(
            Profile::from_toml(&typo, "x")
                .unwrap_err()
                .to_string()
                .contains("hots")
        );
        let no_sources = LU.replace("sources = [\"https://example.org/a\"]", "sources = []");
        assert!(Profile::from_toml(&no_sources, "x").is_err());
    }
}
