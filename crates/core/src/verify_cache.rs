//! An opt-in cache of advert signatures already verified by another core in the same
//! process.
//!
//! A simulator that drives many cores delivers every gossiped advert to every one of them;
//! with 1,000 members each advert would be verified 999 times, which costs the simulator
//! (one thread playing every node) about 40 ms per advert. A real node never sets the cache:
//! it verifies every envelope it receives. With the cache set, admission skips only the
//! signature arithmetic of an advert whose exact envelope (signer, key, times, payload and
//! signature, compared byte for byte) already verified; its lifetime window is still
//! checked against the receiver's clock, and decoding and roster authorisation happen as
//! usual. Every other kind of message is verified in full, cache or not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aiguillage_wire::{Envelope, MessageKind, Timestamp};

/// A verification cache shared by the cores of one process (clones share it).
#[derive(Clone, Debug)]
pub struct VerifyCache {
    inner: Arc<Mutex<BTreeMap<[u8; 64], Envelope>>>,
    capacity: usize,
}

impl VerifyCache {
    /// A cache that holds at most `capacity` adverts; past that, expired ones are dropped,
    /// and if none are, the cache starts afresh.
    pub fn new(capacity: usize) -> VerifyCache {
        VerifyCache {
            inner: Arc::new(Mutex::new(BTreeMap::new())),
            capacity: capacity.max(1),
        }
    }

    /// Whether this exact advert envelope verified before (at another core).
    pub fn holds(&self, envelope: &Envelope) -> bool {
        // A poisoned lock only means another core panicked mid-insert; the map is still a
        // set of verified envelopes, so keep using it.
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&envelope.signature) == Some(envelope)
    }

    /// Remembers an advert envelope whose signature just verified.
    pub fn remember(&self, envelope: &Envelope, now: Timestamp) {
        if envelope.kind != MessageKind::Advert {
            return;
        }
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity {
            map.retain(|_, e| e.expires_at > now);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(envelope.signature, envelope.clone());
    }

    /// Adverts held.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiguillage_wire::{
        Advert, CountryCode, GpuCapacity, Language, MemberId, Role, SectorLevel, SigningKey,
    };

    fn advert_envelope(seq: u64, issued: u64) -> Envelope {
        let advert = Advert {
            member: MemberId::new("lu-l-aif").unwrap(),
            seq,
            role: Role::Factory,
            name: "L-AIF".into(),
            country: CountryCode::new("LU").unwrap(),
            sectors: Default::default(),
            other_sectors: SectorLevel::Accepted,
            services: vec![],
            languages: vec![Language::new("en").unwrap()],
            countries_served: vec![],
            datasets: vec![],
            gpu: GpuCapacity::default(),
            referral_intake: None,
        };
        Envelope::seal(
            &advert,
            &advert.member,
            &SigningKey::from_bytes(&[7; 32]),
            Timestamp(issued),
            Timestamp(issued + 60_000),
        )
        .unwrap()
    }

    #[test]
    fn only_the_exact_envelope_that_verified_is_held() {
        let cache = VerifyCache::new(16);
        let e = advert_envelope(1, 1_000_000);
        assert!(!cache.holds(&e));
        e.verify(Timestamp(1_000_000)).unwrap();
        cache.remember(&e, Timestamp(1_000_000));
        assert!(cache.holds(&e));
        assert_eq!(cache.len(), 1);
        // Same signature, one flipped payload byte: not held.
        let mut forged = e.clone();
        forged.payload[5] ^= 1;
        assert!(!cache.holds(&forged));
        // A flipped signature byte is another envelope.
        let mut bad_sig = e.clone();
        bad_sig.signature[0] ^= 1;
        assert!(!cache.holds(&bad_sig));
    }

    #[test]
    fn a_full_cache_drops_expired_adverts_first() {
        let cache = VerifyCache::new(2);
        cache.remember(&advert_envelope(1, 1_000_000), Timestamp(1_000_000));
        cache.remember(&advert_envelope(2, 1_050_000), Timestamp(1_050_000));
        // At 1_065_000 the first has expired: it makes room for the third.
        cache.remember(&advert_envelope(3, 1_065_000), Timestamp(1_065_000));
        assert_eq!(cache.len(), 2);
        assert!(!cache.holds(&advert_envelope(1, 1_000_000)));
        assert!(cache.holds(&advert_envelope(3, 1_065_000)));
    }
}
