//! The project file an operator writes (`PROJECT.toml`): a project card without its id,
//! and optionally the client's dossier.

use serde::Deserialize;

use aiguillage_wire::{
    CompanySize, ConsentScope, CountryCode, Dossier, Language, MemberId, ProjectCard, ProjectId,
    Sector, Service,
};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    pub sector: Sector,
    #[serde(default)]
    pub secondary_sectors: Vec<Sector>,
    pub country: CountryCode,
    pub company_size: CompanySize,
    pub stage: Service,
    #[serde(default)]
    pub services_needed: Vec<Service>,
    #[serde(default)]
    pub gpu_hours: u32,
    #[serde(default)]
    pub datasets_wanted: Vec<String>,
    #[serde(default)]
    pub languages: Vec<Language>,
    pub consent: ConsentFile,
    #[serde(default)]
    pub dossier: Option<Dossier>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentFile {
    #[serde(default)]
    pub whole_federation: bool,
    #[serde(default)]
    pub members: Vec<MemberId>,
    #[serde(default)]
    pub countries: Vec<CountryCode>,
}

impl ProjectFile {
    pub fn from_toml(text: &str, source_name: &str) -> Result<ProjectFile, crate::FileError> {
        crate::file::from_toml(text, source_name)
    }

    /// The card, under a placeholder id (the filing member assigns the real one).
    pub fn card(&self) -> ProjectCard {
        ProjectCard {
            project: ProjectId::new("draft/0").expect("a valid placeholder id"),
            sector: self.sector,
            secondary_sectors: self.secondary_sectors.clone(),
            country: self.country,
            company_size: self.company_size,
            stage: self.stage,
            services_needed: self.services_needed.clone(),
            gpu_hours: self.gpu_hours,
            datasets_wanted: self.datasets_wanted.clone(),
            languages: self.languages.clone(),
            consent: ConsentScope {
                whole_federation: self.consent.whole_federation,
                members: self.consent.members.clone(),
                countries: self.consent.countries.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_projects_load() {
        for (name, text) in [
            (
                "health",
                include_str!("../../../config/examples/project-health-lu.toml"),
            ),
            (
                "finance",
                include_str!("../../../config/examples/project-finance-lu.toml"),
            ),
            (
                "defence",
                include_str!("../../../config/examples/project-defence-lu.toml"),
            ),
        ] {
            let p = ProjectFile::from_toml(text, name).unwrap();
            assert!(p.dossier.is_some(), "{name}");
        }
        let bad = "sector = \"fintech\"\ncountry = \"LU\"\ncompany_size = \"small\"\nstage = \"training\"\n[consent]\n";
        let err = ProjectFile::from_toml(bad, "p.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.toml") && err.contains("fintech") && err.contains("line 1"),
            "{err}"
        );
    }
}
