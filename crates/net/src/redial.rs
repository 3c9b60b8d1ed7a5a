//! Keeping a connection to every member: each rostered peer whose address is known is
//! dialled, and dialled again after a failed dial or a lost connection, with a capped
//! exponential backoff. The bookkeeping is plain data driven by the event loop, with the
//! time passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

/// Addresses kept per peer, newest first.
pub const MAX_ADDRS: usize = 8;

/// How soon a peer is dialled again: `initial` after the first failure or a lost
/// connection, doubling at each failure up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct Entry {
    addrs: Vec<Multiaddr>,
    /// When it may be dialled next; `None` while connected or dialling.
    next: Option<Instant>,
    backoff: Duration,
    failures: u32,
    last_logged: Option<Instant>,
}

/// What became of a failed dial.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub failures: u32,
    /// When the next dial is due.
    pub retry_in: Duration,
    /// Whether this failure should be logged: the first, then at most once a minute.
    pub log: bool,
}

const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Redial {
    backoff: Backoff,
    peers: HashMap<PeerId, Entry>,
}

impl Redial {
    pub fn new(backoff: Backoff) -> Redial {
        Redial {
            backoff,
            peers: HashMap::new(),
        }
    }

    fn entry(&mut self, peer: PeerId, now: Instant) -> &mut Entry {
        let initial = self.backoff.initial;
        self.peers.entry(peer).or_insert_with(|| Entry {
            addrs: Vec::new(),
            next: Some(now),
            backoff: initial,
            failures: 0,
            last_logged: None,
        })
    }

    /// Records an address of `peer`; returns whether it was new.
    pub fn learn(&mut self, peer: PeerId, addr: Multiaddr, now: Instant) -> bool {
        let addr = without_p2p(addr);
        let e = self.entry(peer, now);
        if let Some(i) = e.addrs.iter().position(|a| *a == addr) {
            let a = e.addrs.remove(i);
            e.addrs.insert(0, a);
            return false;
        }
        e.addrs.insert(0, addr);
        e.addrs.truncate(MAX_ADDRS);
        true
    }

    /// The addresses known for `peer`, newest first.
    pub fn addresses(&self, peer: &PeerId) -> &[Multiaddr] {
        self.peers.get(peer).map_or(&[], |e| e.addrs.as_slice())
    }

    /// The peers due for a dial among `allowed` that are not connected, with their
    /// addresses; each is marked as being dialled.
    pub fn due(
        &mut self,
        now: Instant,
        allowed: impl Fn(&PeerId) -> bool,
    ) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut out = Vec::new();
        for (peer, e) in &mut self.peers {
            if e.addrs.is_empty() || !allowed(peer) {
                continue;
            }
            if e.next.is_some_and(|t| t <= now) {
                e.next = None;
                out.push((*peer, e.addrs.clone()));
            }
        }
        out.sort_by_key(|(p, _)| p.to_bytes());
        out
    }

    pub fn connected(&mut self, peer: PeerId, now: Instant) {
        let initial = self.backoff.initial;
        let e = self.entry(peer, now);
        e.next = None;
        e.backoff = initial;
        e.failures = 0;
        e.last_logged = None;
    }

    /// The last connection to `peer` closed: dial it again after the initial backoff.
    pub fn disconnected(&mut self, peer: PeerId, now: Instant) {
        let initial = self.backoff.initial;
        let e = self.entry(peer, now);
        e.backoff = initial;
        e.next = Some(now + initial);
    }

    /// A dial of `peer` failed.
    pub fn failed(&mut self, peer: PeerId, now: Instant) -> Failure {
        let max = self.backoff.max;
        let e = self.entry(peer, now);
        e.failures = e.failures.saturating_add(1);
        let retry_in = e.backoff;
        e.next = Some(now + retry_in);
        e.backoff = (e.backoff * 2).min(max);
        let log = e
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
        if log {
            e.last_logged = Some(now);
        }
        Failure {
            failures: e.failures,
            retry_in,
            log,
        }
    }

    /// Forgets the peers `keep` says no longer belong (a new roster removed them).
    pub fn retain(&mut self, keep: impl Fn(&PeerId) -> bool) {
        self.peers.retain(|p, _| keep(p));
    }
}

/// `addr` without a trailing `/p2p/<peer id>`: the dial names the peer apart.
fn without_p2p(mut addr: Multiaddr) -> Multiaddr {
    if matches!(
        addr.iter().last(),
        Some(libp2p::multiaddr::Protocol::P2p(_))
    ) {
        addr.pop();
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        let key = libp2p::identity::Keypair::ed25519_from_bytes([n; 32]).unwrap();
        key.public().to_peer_id()
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn a_known_peer_is_dialled_at_once_and_after_failures_ever_later_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
        };
        let mut r = Redial::new(b);
        let t0 = Instant::now();
        let p = peer(1);
        assert!(r.learn(p, addr(1), t0));
        assert_eq!(r.due(t0, |_| true), vec![(p, vec![addr(1)])]);
        // Being dialled: not due again until the dial ends.
        assert!(r.due(t0 + Duration::from_secs(100), |_| true).is_empty());
        let gaps: Vec<u64> = (0..5)
            .map(|i| {
                let now = t0 + Duration::from_secs(10 * i);
                let f = r.failed(p, now);
                assert_eq!(f.failures as u64, i + 1);
                assert!(
                    r.due(now + f.retry_in - Duration::from_millis(1), |_| true)
                        .is_empty()
                );
                assert_eq!(r.due(now + f.retry_in, |_| true).len(), 1);
                f.retry_in.as_secs()
            })
            .collect();
        assert_eq!(gaps, vec![1, 2, 4, 4, 4]);
        // Connected: a lost connection is redialled soon, and the count starts over.
        r.connected(p, t0);
        r.disconnected(p, t0);
        assert!(r.due(t0, |_| true).is_empty());
        assert_eq!(r.due(t0 + Duration::from_secs(1), |_| true).len(), 1);
        let f = r.failed(p, t0);
        assert_eq!((f.failures, f.retry_in.as_secs()), (1, 1));
    }

    #[test]
    fn failures_are_logged_once_then_at_most_once_a_minute() {
        let mut r = Redial::new(Backoff::default());
        let t0 = Instant::now();
        let p = peer(2);
        r.learn(p, addr(2), t0);
        let logged: Vec<bool> = [0, 5, 30, 61, 62, 125]
            .iter()
            .map(|s| r.failed(p, t0 + Duration::from_secs(*s)).log)
            .collect();
        assert_eq!(logged, vec![true, false, false, true, false, true]);
    }

    #[test]
    fn only_allowed_peers_with_an_address_are_dialled_and_addresses_are_bounded() {
        let mut r = Redial::new(Backoff::default());
        let t0 = Instant::now();
        let (a, b) = (peer(3), peer(4));
        for port in 0..20 {
            r.learn(a, addr(port), t0);
        }
        assert_eq!(r.addresses(&a).len(), MAX_ADDRS);
        assert_eq!(r.addresses(&a)[0], addr(19), "newest first");
        // A known address learnt again moves to the front, and is not new.
        assert!(!r.learn(a, addr(15), t0));
        assert_eq!(r.addresses(&a)[0], addr(15));
        // With its /p2p/ suffix it is the same address.
        let with_id: Multiaddr = format!("/ip4/127.0.0.1/tcp/15/p2p/{a}").parse().unwrap();
        assert!(!r.learn(a, with_id, t0));
        r.connected(b, t0);
        assert!(
            r.due(t0, |p| *p != a).is_empty(),
            "a is not allowed, b has no address"
        );
        r.retain(|p| *p != a);
        assert!(r.addresses(&a).is_empty());
    }
}
