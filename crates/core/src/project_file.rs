//! The project file an operator writes (`PROJECT.toml`): a project card without its id,
//! and optionally the client's dossier.

use serde::Deserialize;

use crate::InputError;

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
    /// The client (or the adviser) chose to stay at the filing member, and why (language,
    /// proximity, …). Recorded in the explanation and counted in the KPIs.
    #[serde(default)]
    pub stay: Option<ReasonFile>,
    /// The adviser advises the company against the project, and why: it is recorded and
    /// not routed.
    #[serde(default)]
    pub advised_against: Option<ReasonFile>,
}

/// `[stay]` or `[advised_against]`: a reason in the adviser's words.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonFile {
    pub reason: String,
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
    /// The client consents to no other member: the project stays here. Without it, a
    /// consent that names nobody is refused.
    #[serde(default)]
    pub local_only: bool,
}

impl ProjectFile {
    pub fn from_toml(text: &str, source_name: &str) -> Result<ProjectFile, crate::FileError> {
        crate::file::from_toml(text, source_name)
    }

    /// What the file says beyond the card: the choice to route, stay or advise against.
    pub fn choice(&self) -> crate::FilingChoice {
        match (&self.stay, &self.advised_against) {
            (Some(s), _) => crate::FilingChoice::Stay {
                reason: s.reason.clone(),
            },
            (None, Some(a)) => crate::FilingChoice::AdviseAgainst {
                reason: a.reason.clone(),
            },
            (None, None) => crate::FilingChoice::Route,
        }
    }

    /// The checks that need nothing but the file: a dossier, a consent that says something,
    /// one choice at most.
    pub fn check(&self) -> Result<(), InputError> {
        if self.dossier.is_none() {
            return Err(InputError::invalid(
                "dossier",
                "a dossier (company, contact_name, contact_email, summary) is needed to file a project",
            ));
        }
        let c = &self.consent;
        let names_someone = c.whole_federation || !c.members.is_empty() || !c.countries.is_empty();
        match (names_someone, c.local_only) {
            (false, false) => {
                return Err(InputError::invalid(
                    "consent",
                    "the client consents to no member and no country: set whole_federation = true, list members or countries, or set local_only = true to keep the project here",
                ));
            }
            (true, true) => {
                return Err(InputError::invalid(
                    "consent.local_only",
                    "cannot be set together with whole_federation, members or countries",
                ));
            }
            _ => {}
        }
        if self.stay.is_some() && self.advised_against.is_some() {
            return Err(InputError::invalid(
                "advised_against",
                "a project cannot both stay and be advised against",
            ));
        }
        if let Some(a) = &self.advised_against
            && a.reason.trim().is_empty()
        {
            return Err(InputError::invalid(
                "advised_against.reason",
                "say why the project is not worth doing",
            ));
        }
        Ok(())
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
