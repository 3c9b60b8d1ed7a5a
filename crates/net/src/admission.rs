//! Admission of connections, decided inside the swarm so that a refused connection costs
//! no other behaviour anything and leaves no state behind.
//!
//! A peer's identity is known only once its handshake is done, so an outsider can make a
//! node run handshakes. This behaviour bounds how many incoming TCP connections from one
//! address (one IPv4 address, one IPv6 /64) may be in their handshake at once, and refuses
//! an identified peer outside the roster before any other behaviour records it. libp2p's
//! `connection_limits`, after it in the swarm, bounds handshakes in all and connections per
//! peer.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};

use crate::PeerId;

/// Refusal of a connection from an address that already has `limit` handshakes running.
#[derive(Debug, thiserror::Error)]
#[error("{ip} already has {limit} connections in their handshake")]
pub struct HandshakeLimit {
    pub ip: IpAddr,
    pub limit: u32,
}

/// Refusal of a peer that is not in the roster.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not in the roster")]
pub struct NotRostered(pub PeerId);

pub(crate) struct Admission {
    handshakes_per_ip: u32,
    /// Peers allowed to connect (the roster's members).
    allowed: HashSet<PeerId>,
    pending: HashMap<ConnectionId, IpAddr>,
    per_ip: HashMap<IpAddr, u32>,
}

impl Admission {
    pub(crate) fn new(handshakes_per_ip: u32, allowed: HashSet<PeerId>) -> Admission {
        Admission {
            handshakes_per_ip,
            allowed,
            pending: HashMap::new(),
            per_ip: HashMap::new(),
        }
    }

    pub(crate) fn set_allowed(&mut self, allowed: HashSet<PeerId>) {
        self.allowed = allowed;
    }

    /// Whatever became of the connection (established, failed, refused by another
    /// behaviour), it no longer counts. Safe to call more than once.
    fn release(&mut self, id: ConnectionId) {
        if let Some(ip) = self.pending.remove(&id)
            && let Some(n) = self.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    fn admit_peer(&self, peer: PeerId) -> Result<THandler<Self>, ConnectionDenied> {
        if self.allowed.contains(&peer) {
            Ok(dummy::ConnectionHandler)
        } else {
            Err(ConnectionDenied::new(NotRostered(peer)))
        }
    }

    #[cfg(test)]
    fn in_handshake(&self, ip: IpAddr) -> u32 {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }
}

/// The address a remote is counted under: its IPv4 address, or the /64 of its IPv6 one
/// (a single host usually holds a whole /64).
fn source_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => {
            let prefix = u128::from(ip) & !((1u128 << 64) - 1);
            Some(IpAddr::V6(Ipv6Addr::from(prefix)))
        }
        _ => None,
    })
}

impl NetworkBehaviour for Admission {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = source_of(remote) else {
            return Ok(());
        };
        let running = self.per_ip.get(&ip).copied().unwrap_or(0);
        if running >= self.handshakes_per_ip {
            return Err(ConnectionDenied::new(HandshakeLimit {
                ip,
                limit: self.handshakes_per_ip,
            }));
        }
        self.per_ip.insert(ip, running + 1);
        self.pending.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.release(connection_id);
        self.admit_peer(peer)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit_peer(peer)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(f) => self.release(f.connection_id),
            FromSwarm::ConnectionEstablished(c) => self.release(c.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn handshakes_are_bounded_per_address_and_released_whatever_their_end() {
        let member = PeerId::random();
        let mut b = Admission::new(2, HashSet::from([member]));
        let local = addr("/ip4/127.0.0.1/tcp/4001");
        let a = addr("/ip4/10.0.0.7/tcp/50000");
        let other = addr("/ip6/::1/tcp/50001");
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let (c1, c2, c3, c4) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
            ConnectionId::new_unchecked(3),
            ConnectionId::new_unchecked(4),
        );
        b.handle_pending_inbound_connection(c1, &local, &a).unwrap();
        b.handle_pending_inbound_connection(c2, &local, &a).unwrap();
        let refused = b
            .handle_pending_inbound_connection(c3, &local, &a)
            .unwrap_err();
        let limit = refused
            .downcast_ref::<HandshakeLimit>()
            .expect("the reason");
        assert_eq!((limit.ip, limit.limit), (ip, 2));
        // Another address is not affected.
        b.handle_pending_inbound_connection(c4, &local, &other)
            .unwrap();
        // One handshake completes: a slot frees, and only one.
        b.handle_established_inbound_connection(c1, member, &local, &a)
            .unwrap();
        b.release(c1);
        assert_eq!(b.in_handshake(ip), 1);
        b.handle_pending_inbound_connection(c3, &local, &a).unwrap();
        assert!(
            b.handle_pending_inbound_connection(ConnectionId::new_unchecked(5), &local, &a)
                .is_err()
        );
        // Failed handshakes free theirs too.
        b.release(c2);
        b.release(c3);
        assert_eq!(b.in_handshake(ip), 0);
        assert!(b.per_ip.keys().all(|k| *k != ip), "no empty entries kept");
    }

    #[test]
    fn a_limit_of_zero_refuses_without_keeping_anything() {
        let mut b = Admission::new(0, HashSet::new());
        let local = addr("/ip4/127.0.0.1/tcp/4001");
        for n in 0..3 {
            let remote = addr(&format!("/ip4/10.0.0.{n}/tcp/50000"));
            assert!(
                b.handle_pending_inbound_connection(
                    ConnectionId::new_unchecked(n),
                    &local,
                    &remote
                )
                .is_err()
            );
        }
        assert!(b.per_ip.is_empty() && b.pending.is_empty());
    }

    #[test]
    fn an_ipv6_host_counts_once_for_its_whole_slash_64() {
        let mut b = Admission::new(1, HashSet::new());
        let local = addr("/ip6/::1/tcp/4001");
        b.handle_pending_inbound_connection(
            ConnectionId::new_unchecked(1),
            &local,
            &addr("/ip6/2001:db8:1:2::1/tcp/50000"),
        )
        .unwrap();
        let refused = b
            .handle_pending_inbound_connection(
                ConnectionId::new_unchecked(2),
                &local,
                &addr("/ip6/2001:db8:1:2:ffff::9/tcp/50000"),
            )
            .unwrap_err();
        assert_eq!(
            refused.downcast_ref::<HandshakeLimit>().unwrap().ip,
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        // The next /64 is another source.
        b.handle_pending_inbound_connection(
            ConnectionId::new_unchecked(3),
            &local,
            &addr("/ip6/2001:db8:1:3::1/tcp/50000"),
        )
        .unwrap();
    }

    #[test]
    fn a_peer_outside_the_roster_is_refused_once_identified_either_way() {
        let member = PeerId::random();
        let outsider = PeerId::random();
        let mut b = Admission::new(4, HashSet::from([member]));
        let local = addr("/ip4/127.0.0.1/tcp/4001");
        let remote = addr("/ip4/10.0.0.7/tcp/50000");
        let c = ConnectionId::new_unchecked(1);
        b.handle_pending_inbound_connection(c, &local, &remote)
            .unwrap();
        let Err(refused) = b.handle_established_inbound_connection(c, outsider, &local, &remote)
        else {
            panic!("an outsider was let in");
        };
        assert_eq!(refused.downcast_ref::<NotRostered>().unwrap().0, outsider);
        assert_eq!(b.in_handshake("10.0.0.7".parse().unwrap()), 0);
        let dial = |b: &mut Admission, id| {
            b.handle_established_outbound_connection(
                ConnectionId::new_unchecked(id),
                outsider,
                &remote,
                Endpoint::Dialer,
                PortUse::New,
            )
            .is_ok()
        };
        assert!(!dial(&mut b, 2), "dialled, it is refused too");
        // A roster change lets it in.
        b.set_allowed(HashSet::from([member, outsider]));
        assert!(dial(&mut b, 3));
    }
}
