//! A member's advert: what it specialises in, what it offers and what GPU capacity it has.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    CountryCode, Language, MemberId, Message, MessageKind, Role, Sector, SectorLevel, Service,
    WireError,
};

/// Signed and gossiped by every member. A newer `seq` from the same member replaces an older
/// one; the envelope's `expires_at` bounds how long it stays in a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    pub member: MemberId,
    pub seq: u64,
    pub role: Role,
    pub name: String,
    pub country: CountryCode,
    /// Sectors with an explicit level; every other sector has `other_sectors`.
    pub sectors: BTreeMap<Sector, SectorLevel>,
    pub other_sectors: SectorLevel,
    pub services: Vec<Service>,
    pub languages: Vec<Language>,
    pub countries_served: Vec<CountryCode>,
    pub datasets: Vec<Dataset>,
    pub gpu: GpuCapacity,
    /// Referrals the member can still take in now; `None` when it does not say.
    pub referral_intake: Option<u32>,
}

/// A dataset a member can open to clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub id: String,
    pub title: String,
    pub sectors: Vec<Sector>,
}

/// GPU capacity as the member's scheduler reports it. `None` means unknown, never zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuCapacity {
    pub total: Option<u32>,
    pub free: Option<u32>,
    pub accelerator: Option<String>,
    pub largest_job_gpus: Option<u32>,
    pub takes_overflow: bool,
    /// Countries whose members may send overflow jobs here; empty means any member.
    pub overflow_from: Vec<CountryCode>,
}

impl Advert {
    /// The member's level for `sector`.
    pub fn level(&self, sector: Sector) -> SectorLevel {
        self.sectors
            .get(&sector)
            .copied()
            .unwrap_or(self.other_sectors)
    }

    pub fn offers(&self, service: Service) -> bool {
        self.services.contains(&service)
    }
}

impl Message for Advert {
    const KIND: MessageKind = MessageKind::Advert;

    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        if &self.member != signer {
            return Err(WireError::SignerMismatch {
                signer: signer.to_string(),
                field: "member",
                claimed: self.member.to_string(),
            });
        }
        if let (Some(total), Some(free)) = (self.gpu.total, self.gpu.free)
            && free > total
        {
            return Err(WireError::invalid(
                "gpu.free",
                format!("{free} free GPUs exceed the {total} total"),
            ));
        }
        if let (Some(total), Some(largest)) = (self.gpu.total, self.gpu.largest_job_gpus)
            && largest > total
        {
            return Err(WireError::invalid(
                "gpu.largest_job_gpus",
                format!("{largest} exceeds the {total} total"),
            ));
        }
        Ok(())
    }
}
