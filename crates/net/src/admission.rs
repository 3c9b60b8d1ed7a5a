//! Admission of incoming connections before any cryptography runs.
//!
//! A peer's identity is known only once its noise handshake is done, so an outsider can
//! make a node run handshakes. This behaviour bounds how many incoming connections from one
//! IP address may be in their handshake at once; libp2p's `connection_limits` (beside it in
//! the swarm) bounds them in all and bounds connections per peer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
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

pub(crate) struct HandshakesPerIp {
    limit: u32,
    pending: HashMap<ConnectionId, IpAddr>,
    per_ip: HashMap<IpAddr, u32>,
}

impl HandshakesPerIp {
    pub(crate) fn new(limit: u32) -> HandshakesPerIp {
        HandshakesPerIp {
            limit,
            pending: HashMap::new(),
            per_ip: HashMap::new(),
        }
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

    #[cfg(test)]
    fn in_handshake(&self, ip: IpAddr) -> u32 {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl NetworkBehaviour for HandshakesPerIp {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        let running = self.per_ip.entry(ip).or_insert(0);
        if *running >= self.limit {
            return Err(ConnectionDenied::new(HandshakeLimit {
                ip,
                limit: self.limit,
            }));
        }
        *running += 1;
        self.pending.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.release(connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
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
        let mut b = HandshakesPerIp::new(2);
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
        b.handle_established_inbound_connection(c1, PeerId::random(), &local, &a)
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
}
