//! The federation roster: the trust root. Only keys it lists may advertise, refer, bid or
//! lease. It is signed by the federation authority key that every node pins.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{
    CountryCode, Envelope, MemberId, Message, MessageKind, PublicKey, Role, Timestamp, Verified,
    WireError,
};

/// The signer id the federation authority uses on roster envelopes.
pub const AUTHORITY_ID: &str = "federation-authority";

/// 9999-12-31T23:59:59.999Z: later times cannot be written as RFC 3339.
pub const LATEST_TIME: Timestamp = Timestamp(253_402_300_799_999);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    pub federation: String,
    /// A roster with a higher serial replaces one with a lower serial.
    pub serial: u64,
    pub members: Vec<RosterEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    pub id: MemberId,
    pub key: PublicKey,
    pub role: Role,
    pub country: CountryCode,
    /// For antennas: the factories whose systems they use.
    pub linked_factories: Vec<MemberId>,
    pub valid_from: Timestamp,
    pub valid_until: Timestamp,
}

/// Why a roster, or a message checked against one, was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TrustError {
    #[error("roster is not signed by the pinned federation authority (signed by key {found})")]
    NotSignedByAuthority { found: PublicKey },
    #[error("roster for federation {found:?}, but this node is in {expected:?}")]
    WrongFederation { expected: String, found: String },
    #[error("roster serial {offered} is not newer than the current serial {current}")]
    StaleSerial { current: u64, offered: u64 },
    #[error("{0} is not in the roster")]
    NotRostered(MemberId),
    #[error("key {key} is not the rostered key of {member}")]
    KeyMismatch { member: MemberId, key: PublicKey },
    #[error("{member}'s roster entry is not valid at {now}")]
    OutsideValidity { member: MemberId, now: Timestamp },
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl TrustError {
    /// A short stable label for metrics.
    pub fn reason_label(&self) -> &'static str {
        match self {
            TrustError::NotSignedByAuthority { .. } => "not_signed_by_authority",
            TrustError::WrongFederation { .. } => "wrong_federation",
            TrustError::StaleSerial { .. } => "stale_serial",
            TrustError::NotRostered(_) => "not_rostered",
            TrustError::KeyMismatch { .. } => "key_mismatch",
            TrustError::OutsideValidity { .. } => "outside_validity",
            TrustError::Wire(e) => e.reason_label(),
        }
    }
}

impl Roster {
    /// The member's entry. A roster whose members are sorted by id (as a node keeps the
    /// one it installed) is searched in O(log n); any other falls back to a scan.
    pub fn member(&self, id: &MemberId) -> Option<&RosterEntry> {
        match self.members.binary_search_by(|m| m.id.cmp(id)) {
            Ok(i) => Some(&self.members[i]),
            Err(_) => self.members.iter().find(|m| &m.id == id),
        }
    }

    /// Sorts the members by id, so that lookups take O(log n). The signed envelope the
    /// roster came in is unchanged; only this decoded copy is reordered.
    pub fn sort_members(&mut self) {
        self.members.sort_by(|a, b| a.id.cmp(&b.id));
    }

    pub fn member_by_key(&self, key: &PublicKey) -> Option<&RosterEntry> {
        self.members.iter().find(|m| &m.key == key)
    }

    /// Checks that an envelope's signer is a rostered member, signing with its rostered key,
    /// inside its validity window.
    pub fn authorise(
        &self,
        envelope: &Envelope,
        now: Timestamp,
    ) -> Result<&RosterEntry, TrustError> {
        let entry = self
            .member(&envelope.signer)
            .ok_or_else(|| TrustError::NotRostered(envelope.signer.clone()))?;
        if entry.key != envelope.key {
            return Err(TrustError::KeyMismatch {
                member: envelope.signer.clone(),
                key: envelope.key,
            });
        }
        if now < entry.valid_from || now >= entry.valid_until {
            return Err(TrustError::OutsideValidity {
                member: entry.id.clone(),
                now,
            });
        }
        Ok(entry)
    }

    /// Verifies a signed roster against the pinned authority key.
    pub fn verify_signed(
        envelope: Envelope,
        authority: &PublicKey,
        now: Timestamp,
    ) -> Result<Verified<Roster>, TrustError> {
        if &envelope.key != authority {
            return Err(TrustError::NotSignedByAuthority {
                found: envelope.key,
            });
        }
        if envelope.signer.as_str() != AUTHORITY_ID {
            return Err(TrustError::Wire(WireError::SignerMismatch {
                signer: envelope.signer.to_string(),
                field: "roster signer",
                claimed: AUTHORITY_ID.to_owned(),
            }));
        }
        Ok(envelope.open::<Roster>(now)?)
    }

    /// Decides whether `offered` replaces `self`: same federation, strictly newer serial.
    pub fn check_successor(&self, offered: &Roster) -> Result<(), TrustError> {
        if offered.federation != self.federation {
            return Err(TrustError::WrongFederation {
                expected: self.federation.clone(),
                found: offered.federation.clone(),
            });
        }
        if offered.serial <= self.serial {
            return Err(TrustError::StaleSerial {
                current: self.serial,
                offered: offered.serial,
            });
        }
        Ok(())
    }
}

impl Message for Roster {
    const KIND: MessageKind = MessageKind::Roster;

    fn validate(&self, _signer: &MemberId) -> Result<(), WireError> {
        if self.federation.is_empty() {
            return Err(WireError::invalid("federation", "must not be empty"));
        }
        let mut ids = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for m in &self.members {
            if m.id.as_str() == AUTHORITY_ID {
                return Err(WireError::invalid(
                    "members",
                    format!("{AUTHORITY_ID} is reserved for the authority"),
                ));
            }
            if m.valid_until > LATEST_TIME {
                return Err(WireError::invalid(
                    "members",
                    format!("{}: valid_until is after the year 9999", m.id),
                ));
            }
            if !ids.insert(&m.id) {
                return Err(WireError::invalid(
                    "members",
                    format!("{} is listed twice", m.id),
                ));
            }
            if !keys.insert(m.key) {
                return Err(WireError::invalid(
                    "members",
                    format!("key of {} is also another member's key", m.id),
                ));
            }
            if m.valid_until <= m.valid_from {
                return Err(WireError::invalid(
                    "members",
                    format!("{}: valid_until is not after valid_from", m.id),
                ));
            }
            if m.role == Role::Factory && !m.linked_factories.is_empty() {
                return Err(WireError::invalid(
                    "members",
                    format!("{}: only antennas have linked factories", m.id),
                ));
            }
        }
        for m in &self.members {
            for link in &m.linked_factories {
                if self.member(link).is_none_or(|f| f.role != Role::Factory) {
                    return Err(WireError::invalid(
                        "members",
                        format!(
                            "{}: linked factory {link} is not a factory in this roster",
                            m.id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;

    const T0: Timestamp = Timestamp(1_780_000_000_000);

    fn entry(id: &str, seed: u8) -> RosterEntry {
        RosterEntry {
            id: MemberId::new(id).unwrap(),
            key: PublicKey::of(&SigningKey::from_bytes(&[seed; 32])),
            role: Role::Factory,
            country: CountryCode::new("LU").unwrap(),
            linked_factories: vec![],
            valid_from: T0,
            valid_until: T0.saturating_add_ms(1000),
        }
    }

    fn roster(serial: u64) -> Roster {
        Roster {
            federation: "eurohpc".into(),
            serial,
            members: vec![entry("lu-l-aif", 1)],
        }
    }

    #[test]
    fn only_a_newer_serial_of_the_same_federation_replaces_a_roster() {
        assert!(roster(3).check_successor(&roster(4)).is_ok());
        assert_eq!(
            roster(3).check_successor(&roster(3)).unwrap_err(),
            TrustError::StaleSerial {
                current: 3,
                offered: 3
            }
        );
        assert!(matches!(
            roster(3).check_successor(&roster(2)),
            Err(TrustError::StaleSerial { .. })
        ));
        let mut other = roster(9);
        other.federation = "elsewhere".into();
        assert!(matches!(
            roster(3).check_successor(&other),
            Err(TrustError::WrongFederation { .. })
        ));
    }

    #[test]
    fn authorise_checks_membership_key_and_validity() {
        let authority = SigningKey::from_bytes(&[50; 32]);
        let member = SigningKey::from_bytes(&[1; 32]);
        let stranger = SigningKey::from_bytes(&[2; 32]);
        let r = roster(1);
        let ack = crate::ReceiptAck {
            job: crate::JobId::new("lu-l-aif/1").unwrap(),
            epoch: 1,
        };
        let lu = MemberId::new("lu-l-aif").unwrap();
        let env = |key: &SigningKey, id: &MemberId| {
            Envelope::seal(&ack, id, key, T0, T0.saturating_add_ms(60_000)).unwrap()
        };
        assert!(r.authorise(&env(&member, &lu), T0).is_ok());
        assert!(matches!(
            r.authorise(&env(&stranger, &lu), T0),
            Err(TrustError::KeyMismatch { .. })
        ));
        let it = MemberId::new("it-it4lia").unwrap();
        let ack_it = crate::ReceiptAck {
            job: crate::JobId::new("it-it4lia/1").unwrap(),
            epoch: 1,
        };
        let from_it =
            Envelope::seal(&ack_it, &it, &stranger, T0, T0.saturating_add_ms(60_000)).unwrap();
        assert_eq!(
            r.authorise(&from_it, T0).unwrap_err(),
            TrustError::NotRostered(it)
        );
        assert!(matches!(
            r.authorise(&env(&member, &lu), T0.saturating_add_ms(1000)),
            Err(TrustError::OutsideValidity { .. })
        ));
        // The roster itself is trusted only under the pinned authority key.
        let signed = Envelope::seal(
            &r,
            &MemberId::new(AUTHORITY_ID).unwrap(),
            &authority,
            T0,
            T0.saturating_add_ms(60_000),
        )
        .unwrap();
        assert!(Roster::verify_signed(signed.clone(), &PublicKey::of(&authority), T0).is_ok());
        assert!(matches!(
            Roster::verify_signed(signed, &PublicKey::of(&member), T0),
            Err(TrustError::NotSignedByAuthority { .. })
        ));
    }

    #[test]
    fn a_roster_listing_a_key_twice_is_invalid() {
        let mut r = roster(1);
        r.members.push(entry("it-it4lia", 1));
        assert!(r.validate(&MemberId::new(AUTHORITY_ID).unwrap()).is_err());
    }
}
