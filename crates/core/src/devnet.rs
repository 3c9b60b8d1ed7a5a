//! The labelled assumptions the local devnet uses for GPU capacity and referral intake
//! (`config/devnet/assumptions.toml`). They are not facts about any member.

use std::collections::BTreeMap;

use serde::Deserialize;

use aiguillage_wire::{MemberId, Role};

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevnetAssumptions {
    pub factory: DevnetCapacity,
    pub antenna: DevnetCapacity,
    #[serde(default)]
    pub members: BTreeMap<MemberId, DevnetOverride>,
}

/// Capacity a devnet member runs with.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevnetCapacity {
    pub gpus: u32,
    #[serde(default)]
    pub accelerator: Option<String>,
    pub takes_overflow: bool,
    pub referral_intake: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevnetOverride {
    pub gpus: Option<u32>,
    pub accelerator: Option<String>,
    pub takes_overflow: Option<bool>,
    pub referral_intake: Option<u32>,
}

impl DevnetAssumptions {
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, crate::FileError> {
        crate::file::from_toml(text, source_name)
    }

    /// The capacity `member` runs with in the devnet.
    pub fn for_member(&self, member: &MemberId, role: Role) -> DevnetCapacity {
        let mut c = match role {
            Role::Factory => self.factory.clone(),
            Role::Antenna => self.antenna.clone(),
        };
        if let Some(o) = self.members.get(member) {
            c.gpus = o.gpus.unwrap_or(c.gpus);
            c.accelerator = o.accelerator.clone().or(c.accelerator);
            c.takes_overflow = o.takes_overflow.unwrap_or(c.takes_overflow);
            c.referral_intake = o.referral_intake.unwrap_or(c.referral_intake);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_assumptions_load_and_overrides_apply() {
        let text = include_str!("../../../config/devnet/assumptions.toml");
        let a = DevnetAssumptions::from_toml(text, "assumptions.toml").unwrap();
        let jaif = a.for_member(&MemberId::new("de-jaif").unwrap(), Role::Factory);
        assert_eq!(jaif.gpus, 8);
        assert!(jaif.takes_overflow);
        let other = a.for_member(&MemberId::new("at-aiat").unwrap(), Role::Factory);
        assert_eq!(other.gpus, a.factory.gpus);
        let antenna = a.for_member(&MemberId::new("be-be-aifa").unwrap(), Role::Antenna);
        assert_eq!(antenna.gpus, 0);
        assert!(!antenna.takes_overflow);
    }
}
