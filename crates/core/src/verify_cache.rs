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
//!
//! The cache also lets the cores share what they keep of a verified message: the first core
//! to file an advert in its directory (or to install a roster) leaves its decoded copy here,
//! and every other core that files the same envelope keeps a reference to that copy instead
//! of its own. With 1,000 members, each directory holding every other member's advert and
//! each core the 1,000-member roster, that is one copy of each instead of 1,000.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aiguillage_wire::{Envelope, MessageKind, Timestamp};

/// A verified envelope and, once a core kept it, its decoded body.
#[derive(Debug)]
struct Held {
    envelope: Arc<Envelope>,
    decoded: Option<Arc<dyn Any + Send + Sync>>,
}

/// A verification cache shared by the cores of one process (clones share it).
#[derive(Clone, Debug)]
pub struct VerifyCache {
    inner: Arc<Mutex<BTreeMap<[u8; 64], Held>>>,
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
        if envelope.kind != MessageKind::Advert {
            return false;
        }
        // A poisoned lock only means another core panicked mid-insert; the map is still a
        // set of verified envelopes, so keep using it.
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&envelope.signature)
            .is_some_and(|h| *h.envelope == *envelope)
    }

    /// The shared copy of a message and its envelope, which the caller has verified and
    /// decoded into `value`: the copy another core kept of the same envelope, or else `value`
    /// and `envelope`, which become the copy the next core gets.
    pub fn share<T: Any + Send + Sync>(
        &self,
        value: T,
        envelope: Envelope,
        now: Timestamp,
    ) -> (Arc<T>, Arc<Envelope>) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = map.get_mut(&envelope.signature)
            && *h.envelope == envelope
        {
            if let Some(shared) = h.decoded.clone().and_then(|d| d.downcast::<T>().ok()) {
                return (shared, h.envelope.clone());
            }
            let value = Arc::new(value);
            h.decoded = Some(value.clone());
            return (value, h.envelope.clone());
        }
        let (value, envelope) = (Arc::new(value), Arc::new(envelope));
        make_room(&mut map, self.capacity, now);
        map.insert(
            envelope.signature,
            Held {
                envelope: envelope.clone(),
                decoded: Some(value.clone()),
            },
        );
        (value, envelope)
    }

    /// Remembers an advert envelope whose signature just verified.
    pub fn remember(&self, envelope: &Envelope, now: Timestamp) {
        if envelope.kind != MessageKind::Advert {
            return;
        }
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut map, self.capacity, now);
        map.insert(
            envelope.signature,
            Held {
                envelope: Arc::new(envelope.clone()),
                decoded: None,
            },
        );
    }

    /// Envelopes held (adverts that verified, and what the cores shared).
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Past `capacity`, expired envelopes go first, and if none has expired, all of them.
fn make_room(map: &mut BTreeMap<[u8; 64], Held>, capacity: usize, now: Timestamp) {
    if map.len() >= capacity {
        map.retain(|_, h| h.envelope.expires_at > now);
        if map.len() >= capacity {
            map.clear();
        }
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
    fn cores_that_file_the_same_envelope_share_one_copy() {
        let cache = VerifyCache::new(16);
        let now = Timestamp(1_000_000);
        let e = advert_envelope(1, 1_000_000);
        let decoded = || e.clone().open::<Advert>(now).unwrap();
        // Verified at one core, then filed by three.
        cache.remember(&e, now);
        let (a1, e1) = cache.share(decoded(), e.clone(), now);
        let (a2, e2) = cache.share(decoded(), e.clone(), now);
        assert!(Arc::ptr_eq(&a1, &a2) && Arc::ptr_eq(&e1, &e2));
        assert_eq!(*a1, decoded());
        // Shared without a remember first (a roster, verified by each core): the same.
        let other = advert_envelope(2, 1_000_000);
        let (b1, _) = cache.share(
            other.clone().open::<Advert>(now).unwrap(),
            other.clone(),
            now,
        );
        let (b2, _) = cache.share(
            other.clone().open::<Advert>(now).unwrap(),
            other.clone(),
            now,
        );
        assert!(Arc::ptr_eq(&b1, &b2) && !Arc::ptr_eq(&a1, &b1));
        // Another envelope with the same signature bytes is not given the shared copy.
        let mut forged = e.clone();
        forged.payload[5] ^= 1;
        let (_, e3) = cache.share(decoded(), forged.clone(), now);
        assert!(!Arc::ptr_eq(&e1, &e3));
        assert_eq!(*e3, forged);
        // A copy of another type is never handed out for the same envelope.
        let (s, _) = cache.share(String::from("not an advert"), e.clone(), now);
        assert_eq!(*s, "not an advert");
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
