//! Nothing accepted that cannot be delivered: what an operator asks the node to file, send
//! or report is checked against the messages it will become, when it is asked, and refused
//! at once with the field, its size and the limit. A message the core then cannot seal is
//! a bug, not an input error.

use aiguillage_wire::{
    Decline, DeclineReason, Dossier, HandOver, JobId, JobRequirements, JobSpec, MemberId, Message,
    Offer, Progress, ProgressState, ProjectCard, ReferralId, Reserve, SectorLevel, Service,
    Timestamp, WireError, Withdraw, deliverable,
};

use crate::Core;
use crate::state::InState;

/// Why an operator's input is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Too large for the message it would travel in.
    #[error("{field}: {size} bytes, over the limit of {limit} bytes ({detail})")]
    TooLarge {
        field: String,
        size: usize,
        limit: usize,
        detail: String,
    },
    /// Not a value the field can take.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// Not allowed in the state the referral or project is in.
    #[error("{subject} is {state}: {reason}")]
    Conflict {
        subject: String,
        state: String,
        reason: String,
    },
}

impl InputError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> InputError {
        InputError::Invalid {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The longest id a member mints (`<member>/<n>`): ids are checked at their longest.
fn longest_referral(me: &MemberId) -> ReferralId {
    ReferralId::new(format!("{me}/{}", u64::MAX)).expect("a member id and a number")
}

fn longest_job(me: &MemberId) -> JobId {
    JobId::new(format!("{me}/{}", u64::MAX)).expect("a member id and a number")
}

/// Checks that `message` would be sealed and admitted; a refusal names `field`, the one
/// the operator wrote, and, for size, which of its parts is largest.
fn fits<M: Message>(
    message: &M,
    signer: &MemberId,
    field: &str,
    parts: &[(&str, usize)],
) -> Result<(), InputError> {
    match deliverable(message, signer) {
        Ok(_) => Ok(()),
        Err(WireError::TooLarge { size, limit }) => {
            let largest = parts
                .iter()
                .max_by_key(|(_, n)| *n)
                .map(|(name, n)| format!("{name} alone is {n} bytes; "))
                .unwrap_or_default();
            Err(InputError::TooLarge {
                field: field.to_owned(),
                size,
                limit,
                detail: format!("{largest}the {} message carries at most {limit}", M::KIND),
            })
        }
        Err(e) => Err(InputError::invalid(field, e.to_string())),
    }
}

/// A contact e-mail address a person could write to: one `@`, a local part, a domain with
/// a dot, no spaces, at most 254 characters.
pub fn check_email(email: &str) -> Result<(), String> {
    let bad = || format!("{email:?} is not an e-mail address (name@organisation.eu)");
    if email.len() > 254 || email.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(bad());
    };
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    Ok(())
}

impl Core {
    /// Checks a project before it is filed: the client's contact, the choice to stay, and
    /// that its card fits an offer and its dossier a hand-over.
    pub fn check_filing(
        &self,
        card: &ProjectCard,
        dossier: &Dossier,
        stay: Option<&str>,
    ) -> Result<(), InputError> {
        check_email(&dossier.contact_email)
            .map_err(|r| InputError::invalid("dossier.contact_email", r))?;
        if let Some(reason) = stay {
            if reason.trim().is_empty() {
                return Err(InputError::invalid(
                    "stay.reason",
                    "say why the client stays (language, proximity, …)",
                ));
            }
            if self.profile.level(card.sector) == SectorLevel::Excluded {
                return Err(InputError::invalid(
                    "stay",
                    format!(
                        "{} is excluded at {}: the project cannot stay here",
                        card.sector, self.me
                    ),
                ));
            }
        }
        let referral = longest_referral(&self.me);
        let mut card = card.clone();
        card.project = aiguillage_wire::ProjectId::new(format!("{}/p{}", self.me, u64::MAX))
            .expect("a member id and a number");
        // The longest member id any target can have (ids are at most 64 characters).
        let target = MemberId::new("z".repeat(64)).expect("a valid member id");
        let offer = Offer {
            referral: referral.clone(),
            attempt: self.config.max_attempts.max(1),
            target,
            card: card.clone(),
            respond_by: Timestamp(u64::MAX),
            rationale: crate::referral::rationale(u32::MAX, card.sector),
        };
        fits(
            &offer,
            &self.me,
            "project",
            &[
                (
                    "datasets_wanted",
                    card.datasets_wanted.iter().map(String::len).sum(),
                ),
                ("consent.members", card.consent.members.len() * 64),
            ],
        )?;
        let hand_over = HandOver {
            referral,
            attempt: self.config.max_attempts.max(1),
            dossier: dossier.clone(),
        };
        fits(
            &hand_over,
            &self.me,
            "dossier",
            &[
                ("dossier.company", dossier.company.len()),
                ("dossier.contact_name", dossier.contact_name.len()),
                ("dossier.contact_email", dossier.contact_email.len()),
                ("dossier.summary", dossier.summary.len()),
            ],
        )
    }

    /// Checks a progress report on a referral taken in: the lifecycle must allow it, and
    /// its note must fit a progress message.
    pub fn check_progress(
        &self,
        id: &ReferralId,
        step: Service,
        state: ProgressState,
        note: &str,
    ) -> Result<(), InputError> {
        let Some(r) = self.state.incoming.get(id) else {
            return Err(InputError::invalid(
                "referral",
                format!("no incoming referral {id}"),
            ));
        };
        if !matches!(r.state, InState::HandedOver | InState::InProgress) {
            let reason = match r.state {
                InState::Completed | InState::Abandoned => "its journey here has ended",
                InState::AwaitingDecision { .. } => "it has not been accepted yet",
                InState::Accepted => "its dossier has not arrived yet",
                InState::Declined { .. } => "it was declined",
                InState::Withdrawn => "its origin withdrew it",
                InState::HandedOver | InState::InProgress => "",
            };
            return Err(InputError::Conflict {
                subject: id.to_string(),
                state: r.state.tag().to_owned(),
                reason: format!("no progress can be reported: {reason}"),
            });
        }
        let m = Progress {
            referral: id.clone(),
            attempt: r.attempt,
            seq: u32::MAX,
            step,
            state,
            note: note.to_owned(),
        };
        fits(&m, &self.me, "note", &[("note", note.len())])
    }

    /// Checks an operator's decline note against the decline message.
    pub fn check_decline(&self, id: &ReferralId, detail: &str) -> Result<(), InputError> {
        let m = Decline {
            referral: id.clone(),
            attempt: u32::MAX,
            reason: DeclineReason::OperatorDeclined,
            detail: detail.to_owned(),
        };
        fits(&m, &self.me, "detail", &[("detail", detail.len())])
    }

    /// Checks a withdrawal note against the withdraw message.
    pub fn check_withdraw(&self, id: &ReferralId, detail: &str) -> Result<(), InputError> {
        let m = Withdraw {
            referral: id.clone(),
            attempt: u32::MAX,
            detail: detail.to_owned(),
        };
        fits(&m, &self.me, "detail", &[("detail", detail.len())])
    }

    /// Checks a job before it is submitted: it must fit the reservation that places it.
    pub fn check_job(
        &self,
        requirements: &JobRequirements,
        command: &[String],
        env: &[aiguillage_wire::EnvVar],
    ) -> Result<(), InputError> {
        let m = Reserve {
            spec: JobSpec {
                job: longest_job(&self.me),
                requirements: requirements.clone(),
                command: command.to_vec(),
                env: env.to_vec(),
            },
            epoch: u64::MAX,
            hold_until: Timestamp(u64::MAX),
        };
        fits(
            &m,
            &self.me,
            "job",
            &[
                ("command", command.iter().map(String::len).sum()),
                (
                    "env",
                    env.iter().map(|e| e.name.len() + e.value.len()).sum(),
                ),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::check_email;

    #[test]
    fn contact_addresses_are_checked() {
        for good in ["client@example.eu", "a.b+c@x.example.org"] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "client",
            "client@",
            "@example.eu",
            "a@b",
            "a b@c.eu",
            "a@@c.eu",
            "a@c.eu.",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
    }
}
