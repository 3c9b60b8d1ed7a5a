//! The directory: the newest verified advert of every rostered member, and what this node
//! has observed of each member's behaviour.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use aiguillage_wire::{Advert, Envelope, MemberId, Sector, SectorLevel, Service, Timestamp};

use crate::ledger::Decayed;

/// An advert's sector levels and services as tables, built once when the advert enters the
/// directory: routing looks them up for every candidate of every decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectorTable {
    levels: [SectorLevel; 26],
    services: u8,
}

impl SectorTable {
    pub fn of(advert: &Advert) -> SectorTable {
        let mut levels = [advert.other_sectors; 26];
        for (s, l) in &advert.sectors {
            levels[*s as usize] = *l;
        }
        let services = advert
            .services
            .iter()
            .fold(0u8, |bits, s| bits | (1 << (*s as u8)));
        SectorTable { levels, services }
    }

    pub fn level(&self, s: Sector) -> SectorLevel {
        self.levels[s as usize]
    }

    pub fn offers(&self, s: Service) -> bool {
        self.services & (1 << (s as u8)) != 0
    }
}

/// One member's entry: its advert, the envelope it came in (kept to forward it on sync),
/// and the advert's lookup tables for routing. The advert and its envelope are shared
/// with every other holder of the same envelope (see [`crate::VerifyCache`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "StoredListing", into = "StoredListing")]
pub struct Listing {
    pub advert: Arc<Advert>,
    pub envelope: Arc<Envelope>,
    pub table: SectorTable,
    /// When this node took the advert in (its own clock).
    pub received_at: Timestamp,
}

/// What is persisted of a listing; the tables are rebuilt on load.
#[derive(Serialize, Deserialize)]
struct StoredListing {
    advert: Advert,
    envelope: Envelope,
    #[serde(default)]
    received_at: Timestamp,
}

impl From<StoredListing> for Listing {
    fn from(s: StoredListing) -> Listing {
        Listing::new(Arc::new(s.advert), Arc::new(s.envelope), s.received_at)
    }
}

impl From<Listing> for StoredListing {
    fn from(l: Listing) -> StoredListing {
        StoredListing {
            advert: Arc::unwrap_or_clone(l.advert),
            envelope: Arc::unwrap_or_clone(l.envelope),
            received_at: l.received_at,
        }
    }
}

impl Listing {
    pub fn new(advert: Arc<Advert>, envelope: Arc<Envelope>, received_at: Timestamp) -> Listing {
        let table = SectorTable::of(&advert);
        Listing {
            advert,
            envelope,
            table,
            received_at,
        }
    }

    pub fn expires_at(&self) -> Timestamp {
        self.envelope.expires_at
    }
}

/// Why an advert was not taken into the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdvertOutcome {
    /// New or newer: stored.
    Stored,
    /// Same or older `seq` than the one held: ignored (a duplicate is normal gossip).
    Stale,
}

/// The directory. Its listings are persisted one record per member
/// ([`crate::StateKey::Listing`]), so that a new advert costs one small write; the
/// serialised directory itself holds only the observed behaviour.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Directory {
    #[serde(skip)]
    listings: BTreeMap<MemberId, Listing>,
    behaviour: BTreeMap<MemberId, Behaviour>,
}

/// What this node observed of a member, decaying with time.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Behaviour {
    /// Smoothed time the member took to answer offers and bids, in ms.
    pub answer_ms: Option<f64>,
    pub declines: Decayed,
    pub lease_breaches: Decayed,
    pub answers: u64,
}

impl Directory {
    /// Stores `advert` if it is newer than what is held for its member.
    pub fn offer(
        &mut self,
        advert: Arc<Advert>,
        envelope: Arc<Envelope>,
        now: Timestamp,
    ) -> AdvertOutcome {
        if let Some(held) = self.listings.get(&advert.member)
            && held.advert.seq >= advert.seq
        {
            return AdvertOutcome::Stale;
        }
        self.listings
            .insert(advert.member.clone(), Listing::new(advert, envelope, now));
        AdvertOutcome::Stored
    }

    /// Drops adverts that expired at or before `now`; returns the members dropped.
    pub fn sweep(&mut self, now: Timestamp) -> Vec<MemberId> {
        let expired: Vec<MemberId> = self
            .listings
            .iter()
            .filter(|(_, l)| l.expires_at() <= now)
            .map(|(m, _)| m.clone())
            .collect();
        for m in &expired {
            self.listings.remove(m);
        }
        expired
    }

    /// Drops every listing whose member `keep` rejects (a member left the roster).
    pub fn retain(&mut self, mut keep: impl FnMut(&MemberId) -> bool) -> Vec<MemberId> {
        let gone: Vec<MemberId> = self.listings.keys().filter(|m| !keep(m)).cloned().collect();
        for m in &gone {
            self.listings.remove(m);
        }
        gone
    }

    /// Puts back a listing loaded from storage.
    pub fn restore(&mut self, listing: Listing) {
        self.listings.insert(listing.advert.member.clone(), listing);
    }

    pub fn get(&self, member: &MemberId) -> Option<&Listing> {
        self.listings.get(member)
    }

    /// Fresh listings, in member-id order.
    pub fn fresh(&self, now: Timestamp) -> impl Iterator<Item = &Listing> {
        self.listings.values().filter(move |l| l.expires_at() > now)
    }

    pub fn len(&self) -> usize {
        self.listings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.listings.is_empty()
    }

    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.listings.values().map(Listing::expires_at).min()
    }

    pub fn behaviour(&self, member: &MemberId) -> Option<&Behaviour> {
        self.behaviour.get(member)
    }

    pub fn record_answer(&mut self, member: &MemberId, took_ms: u64) {
        let b = self.behaviour.entry(member.clone()).or_default();
        let took = took_ms as f64;
        b.answer_ms = Some(match b.answer_ms {
            None => took,
            Some(avg) => 0.8 * avg + 0.2 * took,
        });
        b.answers += 1;
    }

    pub fn record_decline(&mut self, member: &MemberId, now: Timestamp, half_life_ms: u64) {
        self.behaviour
            .entry(member.clone())
            .or_default()
            .declines
            .add(1.0, now, half_life_ms);
    }

    pub fn record_breach(&mut self, member: &MemberId, now: Timestamp, half_life_ms: u64) {
        self.behaviour
            .entry(member.clone())
            .or_default()
            .lease_breaches
            .add(1.0, now, half_life_ms);
    }
}
