//! Referral messages: an origin member offers an anonymised project card to one target at a
//! time; the full dossier travels only after the target accepted, and only inside the
//! client's consent scope.

use serde::{Deserialize, Serialize};

use crate::{
    CompanySize, CountryCode, DeclineReason, JobId, Language, MemberId, Message, MessageKind,
    ProgressState, ProjectId, ReferralId, Sector, Service, Timestamp, WireError,
};

/// The anonymised description of a client project that routing works on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectCard {
    pub project: ProjectId,
    pub sector: Sector,
    pub secondary_sectors: Vec<Sector>,
    pub country: CountryCode,
    pub company_size: CompanySize,
    /// The journey step the client is at now.
    pub stage: Service,
    pub services_needed: Vec<Service>,
    pub gpu_hours: u32,
    pub datasets_wanted: Vec<String>,
    pub languages: Vec<Language>,
    pub consent: ConsentScope,
}

/// Which members may see the client's dossier: listed members, members in listed countries,
/// or, with `whole_federation`, any rostered member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentScope {
    pub whole_federation: bool,
    pub members: Vec<MemberId>,
    pub countries: Vec<CountryCode>,
}

impl ConsentScope {
    pub fn allows(&self, member: &MemberId, country: CountryCode) -> bool {
        self.whole_federation || self.members.contains(member) || self.countries.contains(&country)
    }
}

/// The client's identity and full project description, released at hand-over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dossier {
    pub company: String,
    pub contact_name: String,
    pub contact_email: String,
    pub summary: String,
}

/// Origin → target: would you take this project? Answer by `respond_by`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub referral: ReferralId,
    /// 1 for the first target, incremented for each next candidate.
    pub attempt: u32,
    pub target: MemberId,
    pub card: ProjectCard,
    pub respond_by: Timestamp,
    /// One line on why the origin chose this target.
    pub rationale: String,
}

/// Target → origin: the target takes the project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    pub referral: ReferralId,
    pub attempt: u32,
}

/// Target → origin: the target does not take the project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decline {
    pub referral: ReferralId,
    pub attempt: u32,
    pub reason: DeclineReason,
    pub detail: String,
}

/// Origin → target: the offer (or the accepted referral) is withdrawn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdraw {
    pub referral: ReferralId,
    pub attempt: u32,
    pub detail: String,
}

/// Origin → the target that accepted: the client's dossier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandOver {
    pub referral: ReferralId,
    pub attempt: u32,
    pub dossier: Dossier,
}

/// Target → origin: where the project stands on its journey.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub referral: ReferralId,
    pub attempt: u32,
    /// Update counter per referral, so a receiver keeps the newest under reordering.
    pub seq: u32,
    pub step: Service,
    pub state: ProgressState,
    pub note: String,
}

/// The member that minted an id of the form `<member>/<n>`.
pub fn origin_of(id: &str) -> Option<&str> {
    id.split_once('/').map(|(origin, _)| origin)
}

pub(crate) fn check_origin(
    kind: &'static str,
    id: &str,
    signer: &MemberId,
) -> Result<(), WireError> {
    match origin_of(id) {
        Some(origin) if origin == signer.as_str() => Ok(()),
        _ => Err(WireError::SignerMismatch {
            signer: signer.to_string(),
            field: kind,
            claimed: id.to_owned(),
        }),
    }
}

/// For messages that flow back to an id's origin: the signer must not be that origin.
pub(crate) fn check_not_origin(
    kind: &'static str,
    id: &str,
    signer: &MemberId,
) -> Result<(), WireError> {
    if origin_of(id) == Some(signer.as_str()) {
        return Err(WireError::SignerMismatch {
            signer: signer.to_string(),
            field: kind,
            claimed: format!("{id} (its own id: this message goes to the origin)"),
        });
    }
    Ok(())
}

fn check_attempt(attempt: u32) -> Result<(), WireError> {
    if attempt == 0 {
        return Err(WireError::invalid("attempt", "attempts count from 1"));
    }
    Ok(())
}

impl ReferralId {
    pub fn origin(&self) -> Option<&str> {
        origin_of(self.as_str())
    }
}

impl JobId {
    pub fn origin(&self) -> Option<&str> {
        origin_of(self.as_str())
    }
}

impl Message for Offer {
    const KIND: MessageKind = MessageKind::Offer;
    fn subject(&self) -> Option<&str> {
        Some(self.referral.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_origin("referral", self.referral.as_str(), signer)?;
        check_attempt(self.attempt)?;
        if &self.target == signer {
            return Err(WireError::invalid(
                "target",
                "a member cannot refer to itself",
            ));
        }
        Ok(())
    }
}

impl Message for Accept {
    const KIND: MessageKind = MessageKind::Accept;
    fn subject(&self) -> Option<&str> {
        Some(self.referral.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_not_origin("referral", self.referral.as_str(), signer)?;
        check_attempt(self.attempt)
    }
}

impl Message for Decline {
    const KIND: MessageKind = MessageKind::Decline;
    fn subject(&self) -> Option<&str> {
        Some(self.referral.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_not_origin("referral", self.referral.as_str(), signer)?;
        check_attempt(self.attempt)
    }
}

impl Message for Withdraw {
    const KIND: MessageKind = MessageKind::Withdraw;
    fn subject(&self) -> Option<&str> {
        Some(self.referral.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_origin("referral", self.referral.as_str(), signer)?;
        check_attempt(self.attempt)
    }
}

impl Message for HandOver {
    const KIND: MessageKind = MessageKind::HandOver;
    fn subject(&self) -> Option<&str> {
        Some(self.referral.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_origin("referral", self.referral.as_str(), signer)?;
        check_attempt(self.attempt)
    }
}

impl Message for Progress {
    const KIND: MessageKind = MessageKind::Progress;
    fn subject(&self) -> Option<&str> {
        Some(self.referral.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_not_origin("referral", self.referral.as_str(), signer)?;
        check_attempt(self.attempt)
    }
}
