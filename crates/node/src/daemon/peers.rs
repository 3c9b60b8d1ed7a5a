//! Which libp2p peer is which member: the roster's PeerId book, built once per roster, and
//! the members connected now.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use aiguillage_net::PeerId;
use aiguillage_wire::{MemberId, Roster};

/// The roster's members by PeerId and back, and which of them are connected.
pub struct Peers {
    me: PeerId,
    serial: Option<u64>,
    by_member: HashMap<MemberId, PeerId>,
    by_peer: HashMap<PeerId, MemberId>,
    connected: HashSet<PeerId>,
    /// Members whose last dial failed: how many times since they were last connected, and
    /// the last error.
    unreachable: HashMap<PeerId, (u32, String)>,
}

/// A rostered member that is not connected, for `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotConnected {
    pub member: MemberId,
    /// Failed dials since it was last connected (0: no address known yet, or waiting for
    /// the first dial).
    pub failed_dials: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Peers {
    pub fn new(me: PeerId, roster: Option<&Roster>) -> Peers {
        let mut p = Peers {
            me,
            serial: None,
            by_member: HashMap::new(),
            by_peer: HashMap::new(),
            connected: HashSet::new(),
            unreachable: HashMap::new(),
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
        self.unreachable.retain(|p, _| by_peer.contains_key(p));
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
            self.unreachable.remove(&peer);
        }
    }

    pub fn dial_failed(&mut self, peer: PeerId, failures: u32, error: String) {
        if self.by_peer.contains_key(&peer) && !self.connected.contains(&peer) {
            self.unreachable.insert(peer, (failures, error));
        }
    }

    /// Every rostered member but this one that is not connected, by id.
    pub fn not_connected(&self) -> Vec<NotConnected> {
        let mut out: Vec<NotConnected> = self
            .by_peer
            .iter()
            .filter(|(p, _)| **p != self.me && !self.connected.contains(*p))
            .map(|(p, member)| {
                let failed = self.unreachable.get(p);
                NotConnected {
                    member: member.clone(),
                    failed_dials: failed.map_or(0, |f| f.0),
                    last_error: failed.map(|f| f.1.clone()),
                }
            })
            .collect();
        out.sort_by(|a, b| a.member.cmp(&b.member));
        out
    }

    pub fn disconnected(&mut self, peer: &PeerId) {
        self.connected.remove(peer);
    }

    /// The member a peer is, or its peer id when it is none: for logs and labels.
    pub fn name(&self, peer: &PeerId) -> String {
        self.member_of(peer)
            .map_or_else(|| peer.to_string(), ToString::to_string)
    }

    /// Every rostered member but this one, with whether it is connected now.
    pub fn rostered_up(&self) -> Vec<(MemberId, bool)> {
        let mut up: Vec<_> = self
            .by_peer
            .iter()
            .filter(|(peer, _)| **peer != self.me)
            .map(|(peer, member)| (member.clone(), self.connected.contains(peer)))
            .collect();
        up.sort();
        up
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

    #[test]
    fn status_names_each_member_not_connected_with_its_failed_dials() {
        let r = roster(1, &[("lu-l-aif", 1), ("de-jaif", 2), ("fr-ai2f", 3)]);
        let me = aiguillage_net::peer_id_of(&r.members[0].key).unwrap();
        let mut peers = Peers::new(me, Some(&r));
        let de = peers.peer_of(&MemberId::new("de-jaif").unwrap()).unwrap();
        let fr = peers.peer_of(&MemberId::new("fr-ai2f").unwrap()).unwrap();
        peers.dial_failed(de, 3, "connection refused".into());
        let nc = peers.not_connected();
        assert_eq!(nc.len(), 2);
        assert_eq!(
            (
                nc[0].member.as_str(),
                nc[0].failed_dials,
                nc[0].last_error.as_deref()
            ),
            ("de-jaif", 3, Some("connection refused"))
        );
        assert_eq!((nc[1].member.as_str(), nc[1].failed_dials), ("fr-ai2f", 0));
        peers.connected(de);
        peers.connected(fr);
        assert!(peers.not_connected().is_empty());
        // A failure reported for a connected member (a second dial) changes nothing.
        peers.dial_failed(de, 1, "late".into());
        assert!(peers.not_connected().is_empty());
    }
}
