//! Aiguillage networking on rust-libp2p.
//!
//! One [`EventLoop`] task owns the libp2p `Swarm` and is the only code that touches it; the
//! rest of the node talks to it through a cheap, cloneable [`Client`] (commands over a
//! bounded channel, each with a oneshot for its answer) and receives [`NetEvent`]s. This
//! crate moves signed envelopes; it makes no federation decision. What it does check:
//! connections from keys outside the roster are closed, each peer's messages are counted
//! against its token bucket before they are queued for the node, and frames that are not
//! envelopes within the protocol's size limit are answered with an error. Directory sync
//! requests are answered here, from the snapshot the node keeps up to date.
//!
//! A member's libp2p identity is its federation signing key, so its PeerId follows from the
//! public key in the roster.

mod admission;
mod event_loop;
pub mod framing;
mod rate_limit;
mod redial;

use std::collections::HashSet;
use std::time::Duration;

use aiguillage_wire::{PublicKey, WireError};
pub use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::identity;
pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use event_loop::{EventLoop, GRAYLIST_THRESHOLD};
pub use redial::Backoff;

/// The libp2p PeerId of a member's ed25519 public key; fails for bytes that are not a
/// curve point.
pub fn peer_id_of(key: &PublicKey) -> Result<PeerId, WireError> {
    let ed = identity::ed25519::PublicKey::try_from_bytes(&key.0).map_err(|_| WireError::BadKey)?;
    Ok(identity::PublicKey::from(ed).to_peer_id())
}

/// The libp2p keypair for a member's secret key.
pub fn keypair_of(secret: &aiguillage_wire::SigningKey) -> identity::Keypair {
    identity::Keypair::ed25519_from_bytes(secret.to_bytes())
        .expect("a 32-byte ed25519 secret is always a valid libp2p key")
}

/// Which request-response protocol a direct message travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Referral,
    Overflow,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Referral => "referral",
            Channel::Overflow => "overflow",
        }
    }
}

/// Gossip topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    Adverts,
    Roster,
}

/// How to start the network side of a node.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub keypair: identity::Keypair,
    pub listen: Vec<Multiaddr>,
    /// Addresses that end in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses of members learnt before (the node keeps them across restarts): dialled
    /// at start like the bootstrap entries.
    pub known: Vec<(PeerId, Multiaddr)>,
    /// How soon a member that cannot be reached, or whose connection closed, is dialled
    /// again.
    pub redial: Backoff,
    /// Peers allowed to stay connected (the roster's members).
    pub allowed: HashSet<PeerId>,
    /// How long an idle connection to a member is kept; members keep theirs open.
    pub idle_timeout: Duration,
    /// Gossipsub heartbeat; shorter converges faster on small federations.
    pub heartbeat: Duration,
    pub limits: ConnectionLimits,
    /// How many messages each peer may deliver.
    pub peer_rate: PeerRate,
    /// Told of every connection and message the network task refuses itself.
    pub on_refused: OnRefused,
}

/// What the network task refused on its own, before the node saw anything of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `not_rostered`, `handshakes_per_ip`, `connection_limit` or `rate_limited`.
    pub reason: &'static str,
    /// `connection`, or where the message came: `adverts`, `roster`, `referral`,
    /// `overflow` or `sync`.
    pub channel: &'static str,
}

/// Called by the network task for each refusal; it must not block.
#[derive(Clone)]
pub struct OnRefused(pub std::sync::Arc<dyn Fn(Refusal) + Send + Sync>);

impl Default for OnRefused {
    fn default() -> Self {
        OnRefused(std::sync::Arc::new(|_| {}))
    }
}

/// Each peer's token bucket: `burst` messages at once, refilled at `per_s` a second. Every
/// gossip message a peer delivers (its own or relayed), every request and every sync
/// request takes a token; a peer with none left has its message dropped before it is
/// queued for the node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeerRate {
    pub per_s: f64,
    pub burst: f64,
}

impl Default for PeerRate {
    fn default() -> Self {
        PeerRate {
            per_s: 500.0,
            burst: 2_000.0,
        }
    }
}

impl std::fmt::Debug for OnRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnRefused")
    }
}

/// Bounds on connections, applied before a connecting peer costs any cryptography (per
/// address and in all) or once it is known (per peer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Incoming connections from one IP address in their handshake at once.
    pub handshakes_per_ip: u32,
    /// Incoming connections in their handshake at once, from anywhere.
    pub handshakes: u32,
    /// Established connections to one peer, both directions.
    pub connections_per_peer: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        // A devnet puts every member on 127.0.0.1, and a cold start has them all dial at
        // once: 64 handshakes per address leave room for twice the largest devnet.
        ConnectionLimits {
            handshakes_per_ip: 64,
            handshakes: 256,
            connections_per_peer: 4,
        }
    }
}

impl NetConfig {
    pub fn new(keypair: identity::Keypair) -> NetConfig {
        NetConfig {
            keypair,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            known: Vec::new(),
            redial: Backoff::default(),
            allowed: HashSet::new(),
            idle_timeout: Duration::from_secs(3600),
            heartbeat: Duration::from_millis(500),
            limits: ConnectionLimits::default(),
            peer_rate: PeerRate::default(),
            on_refused: OnRefused::default(),
        }
    }
}

/// What the network tells the node.
#[derive(Debug)]
pub enum NetEvent {
    /// A gossip message; the node must answer with [`Client::report`].
    Gossip {
        source: PeerId,
        id: MessageId,
        topic: Topic,
        data: Vec<u8>,
    },
    /// A direct message; the sender waits for the [`Verdict`] given through `reply`.
    Direct {
        from: PeerId,
        channel: Channel,
        data: Vec<u8>,
        reply: Reply,
    },
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// The addresses now known for a member (newest first), when they change: worth
    /// keeping across restarts.
    PeerAddresses {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    },
    /// A dial of a member failed; it is dialled again in `retry_in`. `log` is set for the
    /// first failure and then at most once a minute.
    DialFailed {
        peer: PeerId,
        failures: u32,
        error: String,
        retry_in: Duration,
        log: bool,
    },
    /// Every connected peer's gossipsub score, now and then.
    PeerScores(Vec<(PeerId, f64)>),
    Listening(Multiaddr),
}

/// What a receiver answers a direct message with: admitted, or refused with the reason
/// label of PROTOCOL.md §3 (and, for `rate_limited`, when to try again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    Refused {
        reason: String,
        retry_after_ms: Option<u64>,
    },
}

impl Verdict {
    pub fn refused(reason: impl Into<String>) -> Verdict {
        Verdict::Refused {
            reason: reason.into(),
            retry_after_ms: None,
        }
    }
}

/// Where the node gives its verdict on a direct message. Dropped without one, the sender
/// is told `unavailable`.
#[derive(Debug)]
pub struct Reply(oneshot::Sender<Verdict>);

impl Reply {
    pub fn send(self, verdict: Verdict) {
        let _ = self.0.send(verdict);
    }
}

/// Why a network call failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the network task has stopped")]
    Stopped,
    #[error("{0}")]
    Send(String),
    #[error("the peer refused the message: {reason}")]
    Refused {
        reason: String,
        retry_after_ms: Option<u64>,
    },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Frame(#[serde(with = "serde_bytes")] pub Vec<u8>);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Ack {
    pub accepted: bool,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl From<Verdict> for Ack {
    fn from(v: Verdict) -> Ack {
        match v {
            Verdict::Admitted => Ack {
                accepted: true,
                reason: String::new(),
                retry_after_ms: None,
            },
            Verdict::Refused {
                reason,
                retry_after_ms,
            } => Ack {
                accepted: false,
                reason,
                retry_after_ms,
            },
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SyncAsk {}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SyncAnswer {
    pub envelopes: Vec<Frame>,
}

pub(crate) enum Command {
    Publish {
        topic: Topic,
        data: Vec<u8>,
    },
    Send {
        to: PeerId,
        channel: Channel,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Sync {
        from: PeerId,
        reply: oneshot::Sender<Result<Vec<Vec<u8>>, NetError>>,
    },
    SetSyncEntries(Vec<(String, Option<Vec<u8>>)>),
    Report {
        id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
    },
    SetAllowed(HashSet<PeerId>),
    Dial(Multiaddr),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Connected(oneshot::Sender<Vec<PeerId>>),
}

/// A handle on the network task; cheap to clone.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
}

impl Client {
    async fn command(&self, c: Command) -> Result<(), NetError> {
        self.tx.send(c).await.map_err(|_| NetError::Stopped)
    }

    /// Gossips `data` on `topic`. A publish with no subscribed peer yet is kept and retried
    /// when one subscribes.
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<(), NetError> {
        self.command(Command::Publish { topic, data }).await
    }

    /// Sends one envelope to a peer and waits for its acknowledgement.
    pub async fn send(&self, to: PeerId, channel: Channel, data: Vec<u8>) -> Result<(), NetError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Send {
            to,
            channel,
            data,
            reply,
        })
        .await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Asks a peer for every envelope of its directory (anti-entropy on connect).
    pub async fn sync(&self, from: PeerId) -> Result<Vec<Vec<u8>>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Sync { from, reply }).await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Updates what a peer's sync request is answered with: each entry, under a key of the
    /// caller's choosing (a member id, `roster`), is set to its envelope or removed. Sync
    /// requests that arrive before the first call are held and answered after it.
    pub async fn set_sync_entries(
        &self,
        entries: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), NetError> {
        self.command(Command::SetSyncEntries(entries)).await
    }

    /// Tells gossipsub whether to forward a message it handed us.
    pub async fn report(
        &self,
        id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
    ) -> Result<(), NetError> {
        self.command(Command::Report {
            id,
            source,
            acceptance,
        })
        .await
    }

    /// Replaces the set of peers allowed to stay connected; others are disconnected.
    pub async fn set_allowed(&self, peers: HashSet<PeerId>) -> Result<(), NetError> {
        self.command(Command::SetAllowed(peers)).await
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.command(Command::Dial(addr)).await
    }

    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::ListenAddrs(tx)).await?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    pub async fn connected(&self) -> Result<Vec<PeerId>, NetError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Connected(tx)).await?;
        rx.await.map_err(|_| NetError::Stopped)
    }
}

/// Builds the swarm and returns the client, the event receiver and the loop to spawn.
pub fn start(config: NetConfig) -> Result<(Client, mpsc::Receiver<NetEvent>, EventLoop), NetError> {
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (ev_tx, ev_rx) = mpsc::channel(4096);
    let event_loop = EventLoop::new(config, cmd_rx, ev_tx)?;
    Ok((Client { tx: cmd_tx }, ev_rx, event_loop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_id_of_the_public_key_matches_the_keypair() {
        let secret = aiguillage_wire::SigningKey::from_bytes(&[5u8; 32]);
        let from_keypair = keypair_of(&secret).public().to_peer_id();
        assert_eq!(peer_id_of(&PublicKey::of(&secret)).unwrap(), from_keypair);
        let other = aiguillage_wire::SigningKey::from_bytes(&[6u8; 32]);
        assert_ne!(peer_id_of(&PublicKey::of(&other)).unwrap(), from_keypair);
    }
}
