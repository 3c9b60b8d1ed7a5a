//! Which libp2p peer is which member: the roster's PeerId book, built once per roster, and
//! the members connected now.

use std::collections::{HashMap, HashSet};

use aiguillage_net::PeerId;
use aiguillage_wire::{MemberId, Roster};

/// The roster's members by PeerId and back, and which of them are connected.
pub struct Peers {
    me: PeerId,
    serial: Option<u64>,
    by_member: HashMap<MemberId, PeerId>,
    by_peer: HashMap<PeerId, MemberId>,
    connected: HashSet<PeerId>,
}

impl Peers {
    pub fn new(me: PeerId, roster: Option<&Roster>) -> Peers {
        let mut p = Peers {
            me,
            serial: None,
            by_member: HashMap::new(),
            by_peer: HashMap::new(),
            connected: HashSet::new(),
        };
        if let Some(r) = roster {
            p.follow(r);
        }
        p
    }

    /// Rebuilds the book from a roster with another serial; returns whether it did. Members
    /// the roster removed no longer count as connected.
    pub fn follow(&mut self, roster: &Roster) -> bool {
        if self.serial == Some(roster.serial) {
            return false;
        }
        self.serial = Some(roster.serial);
        self.by_member.clear();
        self.by_peer.clear();
        for m in &roster.members {
            // A key that is no curve point has no PeerId; the roster check refuses those.
            if let Ok(p) = aiguillage_net::peer_id_of(&m.key) {
                self.by_member.insert(m.id.clone(), p);
                self.by_peer.insert(p, m.id.clone());
            }
        }
        let by_peer = &self.by_peer;
        self.connected.retain(|p| by_peer.contains_key(p));
        true
    }

    pub fn peer_of(&self, member: &MemberId) -> Option<PeerId> {
        self.by_member.get(member).copied()
    }

    pub fn member_of(&self, peer: &PeerId) -> Option<&MemberId> {
        self.by_peer.get(peer)
    }

    /// The peers allowed to stay connected: every rostered member but this one.
    pub fn allowed(&self) -> HashSet<PeerId> {
        self.by_peer
            .keys()
            .copied()
            .filter(|p| *p != self.me)
            .collect()
    }

    pub fn connected(&mut self, peer: PeerId) {
        if self.by_peer.contains_key(&peer) {
            self.connected.insert(peer);
        }
    }

    pub fn disconnected(&mut self, peer: &PeerId) {
        self.connected.remove(peer);
    }

    pub fn connected_count(&self) -> usize {
        self.connected.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiguillage_wire::{CountryCode, PublicKey, Role, RosterEntry, SigningKey, Timestamp};

    fn roster(serial: u64, members: &[(&str, u8)]) -> Roster {
        Roster {
            federation: "test".into(),
            serial,
            members: members
                .iter()
                .map(|(id, seed)| RosterEntry {
                    id: MemberId::new(*id).unwrap(),
                    key: PublicKey::of(&SigningKey::from_bytes(&[*seed; 32])),
                    role: Role::Factory,
                    country: CountryCode::new("LU").unwrap(),
                    linked_factories: vec![],
                    valid_from: Timestamp(0),
                    valid_until: Timestamp(u64::MAX),
                })
                .collect(),
        }
    }

    #[test]
    fn a_member_the_roster_removes_no_longer_counts_as_connected() {
        let r1 = roster(1, &[("lu-l-aif", 1), ("de-jaif", 2), ("fr-ai2f", 3)]);
        let me = aiguillage_net::peer_id_of(&r1.members[0].key).unwrap();
        let mut peers = Peers::new(me, Some(&r1));
        let de = peers.peer_of(&MemberId::new("de-jaif").unwrap()).unwrap();
        let fr = peers.peer_of(&MemberId::new("fr-ai2f").unwrap()).unwrap();
        assert_eq!(peers.allowed(), HashSet::from([de, fr]));
        peers.connected(de);
        peers.connected(fr);
        peers.connected(PeerId::random());
        assert_eq!(peers.connected_count(), 2, "an unknown peer is not counted");
        // The same serial changes nothing; a new roster without fr-ai2f drops it.
        assert!(!peers.follow(&r1));
        let r2 = roster(2, &[("lu-l-aif", 1), ("de-jaif", 2)]);
        assert!(peers.follow(&r2));
        assert_eq!(peers.connected_count(), 1);
        assert_eq!(peers.member_of(&fr), None);
        assert_eq!(peers.allowed(), HashSet::from([de]));
    }
}
