//! The task that owns the swarm.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use aiguillage_wire::{
    Envelope, MAX_ENVELOPE_BYTES, PROTOCOL_KAD, PROTOCOL_OVERFLOW, PROTOCOL_REFERRAL,
    PROTOCOL_SYNC, TOPIC_ADVERTS, TOPIC_ROSTER,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, ValidationMode};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, StreamProtocol, Swarm, connection_limits, identify, kad, noise, ping, tcp, yamux,
};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::admission::{Admission, HandshakeLimit, NotRostered};
use crate::framing;
use crate::rate_limit::RateLimiter;
use crate::redial::Redial;
use crate::{
    Ack, Channel, Command, Frame, NetConfig, NetError, NetEvent, OnRefused, PeerId, Refusal, Reply,
    SyncAnswer, SyncAsk, Topic, Verdict,
};

type Direct = request_response::Behaviour<framing::DirectCodec>;
type Sync = request_response::Behaviour<framing::SyncCodec>;
type SyncReply = oneshot::Sender<Result<Vec<Vec<u8>>, NetError>>;
type PendingAnswer =
    std::pin::Pin<Box<dyn std::future::Future<Output = (ResponseChannel<Ack>, Ack)> + Send>>;

#[derive(NetworkBehaviour)]
struct Behaviour {
    // Admission first: a refused connection costs no other behaviour anything, and none
    // of them keeps a record of it.
    admission: Admission,
    connection_limits: connection_limits::Behaviour,
    gossipsub: gossipsub::Behaviour,
    referral: Direct,
    overflow: Direct,
    sync: Sync,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
}

/// Sync requests held while the node starts: one per member of a large federation.
const MAX_PARKED_SYNCS: usize = 1024;

/// A peer whose gossipsub score falls below this has its gossip ignored until the score
/// recovers.
pub const GRAYLIST_THRESHOLD: f64 = -400.0;

/// Weight of the squared count of invalid messages a peer delivered (P4). With the
/// graylist at -400, a peer is graylisted after 15 invalid messages delivered close
/// together, not after a few.
const INVALID_MESSAGE_WEIGHT: f64 = -2.0;

/// Each second the count of invalid messages decays by a tenth: a peer graylisted after
/// N of them is heard again once N × 0.9^t falls below 15 (about 7 s after 30).
const INVALID_MESSAGE_DECAY: f64 = 0.9;

/// Peer scoring for a small permissioned federation. Only misbehaviour costs: each invalid
/// message (one the node rejected) counts, squared, and decays within seconds; protocol
/// violations count too. Delivery-rate and mesh-time terms are off, and so is the
/// same-IP penalty: in a federation of 13 to 1,000 members they would punish honest peers
/// for the network's size or for sharing a host (as in a devnet), and could leave a node
/// with no peers at all. docs/SECURITY.md explains the thresholds.
fn score_params(
    topics: &[gossipsub::TopicHash],
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        behaviour_penalty_weight: -1.0,
        behaviour_penalty_decay: 0.9,
        decay_interval: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    for t in topics {
        params.topics.insert(
            t.clone(),
            gossipsub::TopicScoreParams {
                topic_weight: 1.0,
                time_in_mesh_weight: 0.0,
                first_message_deliveries_weight: 0.0,
                mesh_message_deliveries_weight: 0.0,
                mesh_failure_penalty_weight: 0.0,
                invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
                invalid_message_deliveries_decay: INVALID_MESSAGE_DECAY,
                ..Default::default()
            },
        );
    }
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -100.0,
        publish_threshold: -200.0,
        graylist_threshold: GRAYLIST_THRESHOLD,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 3.0,
    };
    (params, thresholds)
}

/// How often the peers' scores are reported to the node.
const SCORE_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How often members due for a dial are looked for.
const REDIAL_TICK: std::time::Duration = std::time::Duration::from_millis(250);

pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    allowed: HashSet<PeerId>,
    /// Peers the node was told are connected, so that it is told when each leaves, even
    /// one a roster change has since removed.
    announced: HashSet<PeerId>,
    graylisted: HashSet<PeerId>,
    pending_sends: HashMap<OutboundRequestId, oneshot::Sender<Result<(), NetError>>>,
    pending_syncs: HashMap<OutboundRequestId, SyncReply>,
    /// What a sync request is answered with, kept current by the node.
    sync_entries: BTreeMap<String, Vec<u8>>,
    /// Sync requests that came before the node handed over its first snapshot (it is still
    /// starting), answered once it has; at most `MAX_PARKED_SYNCS`.
    parked_syncs: Option<Vec<ResponseChannel<SyncAnswer>>>,
    limiter: RateLimiter<PeerId>,
    /// Every member with a known address is kept connected.
    redial: Redial,
    /// Direct messages waiting for the node's verdict, answered as each arrives.
    answers: FuturesUnordered<PendingAnswer>,
    /// The latest publish per topic that found no subscribed peer, retried on subscription.
    unpublished: HashMap<Topic, Vec<u8>>,
    topics: [(Topic, IdentTopic); 2],
    dropped_events: u64,
    on_refused: OnRefused,
}

/// The metric label for why a connection was refused.
fn refusal_reason(cause: &libp2p::swarm::ConnectionDenied) -> &'static str {
    if cause.downcast_ref::<NotRostered>().is_some() {
        "not_rostered"
    } else if cause.downcast_ref::<HandshakeLimit>().is_some() {
        "handshakes_per_ip"
    } else if cause
        .downcast_ref::<connection_limits::Exceeded>()
        .is_some()
    {
        "connection_limit"
    } else {
        "denied"
    }
}

fn direct(protocol: &'static str) -> Direct {
    request_response::Behaviour::with_codec(
        framing::direct_codec(),
        [(StreamProtocol::new(protocol), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(std::time::Duration::from_secs(10))
            .with_max_concurrent_streams(256),
    )
}

impl EventLoop {
    pub(crate) fn new(
        config: NetConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetEvent>,
    ) -> Result<EventLoop, NetError> {
        let heartbeat = config.heartbeat;
        let limits = config.limits.clone();
        let allowed = config.allowed.clone();
        let err = |e: &dyn std::fmt::Display| NetError::Send(e.to_string());
        let builder = libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| err(&e))?;
        #[cfg(feature = "quic")]
        let builder = builder.with_quic();
        let mut swarm = builder
            .with_behaviour(|key| {
                let gossip_config = gossipsub::ConfigBuilder::default()
                    .heartbeat_interval(heartbeat)
                    .heartbeat_initial_delay(std::time::Duration::from_millis(100))
                    // Envelopes carry their own ed25519 signature, checked by the node
                    // before anything is forwarded; a second gossipsub signature would
                    // double the verification cost of every duplicate copy.
                    .validation_mode(ValidationMode::Anonymous)
                    .validate_messages()
                    .message_id_fn(|m| gossipsub::MessageId::from(Sha256::digest(&m.data).to_vec()))
                    .max_transmit_size(MAX_ENVELOPE_BYTES + 1024)
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut gossipsub =
                    gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)?;
                let (params, thresholds) = score_params(&[
                    IdentTopic::new(TOPIC_ADVERTS).hash(),
                    IdentTopic::new(TOPIC_ROSTER).hash(),
                ]);
                gossipsub.with_peer_score(params, thresholds)?;
                let sync = request_response::Behaviour::with_codec(
                    framing::sync_codec(),
                    [(StreamProtocol::new(PROTOCOL_SYNC), ProtocolSupport::Full)],
                    request_response::Config::default(),
                );
                let mut kad = kad::Behaviour::with_config(
                    key.public().to_peer_id(),
                    kad::store::MemoryStore::new(key.public().to_peer_id()),
                    kad::Config::new(StreamProtocol::new(PROTOCOL_KAD)),
                );
                // Members know each other's addresses from the roster's world, not from
                // AutoNAT: serve the DHT from the start.
                kad.set_mode(Some(kad::Mode::Server));
                Ok(Behaviour {
                    admission: Admission::new(limits.handshakes_per_ip, allowed),
                    connection_limits: connection_limits::Behaviour::new(
                        connection_limits::ConnectionLimits::default()
                            .with_max_pending_incoming(Some(limits.handshakes))
                            .with_max_established_per_peer(Some(limits.connections_per_peer)),
                    ),
                    gossipsub,
                    referral: direct(PROTOCOL_REFERRAL),
                    overflow: direct(PROTOCOL_OVERFLOW),
                    sync,
                    identify: identify::Behaviour::new(identify::Config::new(
                        "/aiguillage/1".into(),
                        key.public(),
                    )),
                    ping: ping::Behaviour::default(),
                    kad,
                })
            })
            .map_err(|e| err(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
            .build();
        let topics = [
            (Topic::Adverts, IdentTopic::new(TOPIC_ADVERTS)),
            (Topic::Roster, IdentTopic::new(TOPIC_ROSTER)),
        ];
        for (_, t) in &topics {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(t)
                .map_err(|e| err(&e))?;
        }
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        let mut redial = Redial::new(config.redial);
        let now = Instant::now();
        for addr in &config.bootstrap {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                redial.learn(peer, addr.clone(), now);
            } else if let Err(e) = swarm.dial(addr.clone()) {
                warn!(%addr, "cannot dial bootstrap address: {e}");
            }
        }
        for (peer, addr) in &config.known {
            redial.learn(*peer, addr.clone(), now);
        }
        Ok(EventLoop {
            swarm,
            commands,
            events,
            allowed: config.allowed,
            announced: HashSet::new(),
            graylisted: HashSet::new(),
            on_refused: config.on_refused,
            pending_sends: HashMap::new(),
            pending_syncs: HashMap::new(),
            sync_entries: BTreeMap::new(),
            parked_syncs: Some(Vec::new()),
            limiter: RateLimiter::new(config.peer_rate.per_s, config.peer_rate.burst),
            redial,
            answers: FuturesUnordered::new(),
            unpublished: HashMap::new(),
            topics,
            dropped_events: 0,
        })
    }

    /// Runs until every [`crate::Client`] is dropped.
    pub async fn run(mut self) {
        let mut scores = tokio::time::interval(SCORE_REPORT_EVERY);
        scores.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut redial = tokio::time::interval(REDIAL_TICK);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = scores.tick() => self.report_scores(),
                _ = redial.tick() => self.dial_due(),
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                Some((channel, ack)) = self.answers.next(), if !self.answers.is_empty() => {
                    // Answering only uses the channel, whichever protocol it came on.
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .referral
                        .send_response(channel, ack);
                }
            }
        }
        debug!("network task stopped");
    }

    /// Tells the node every connected peer's gossipsub score, and logs the peers that fall
    /// below the graylist threshold or recover.
    fn report_scores(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let mut scores = Vec::with_capacity(peers.len());
        for p in peers {
            let Some(score) = self.swarm.behaviour().gossipsub.peer_score(&p) else {
                continue;
            };
            if score < GRAYLIST_THRESHOLD {
                if self.graylisted.insert(p) {
                    warn!(peer = %p, score, "peer graylisted: its gossip is ignored until its score recovers");
                }
            } else if self.graylisted.remove(&p) {
                info!(peer = %p, score, "peer no longer graylisted");
            }
            scores.push((p, score));
        }
        if !scores.is_empty() {
            self.emit(NetEvent::PeerScores(scores));
        }
    }

    /// Dials every member that is due: not connected, with a known address, and past its
    /// backoff.
    fn dial_due(&mut self) {
        let now = Instant::now();
        let swarm = &self.swarm;
        let allowed = &self.allowed;
        let due = self
            .redial
            .due(now, |p| allowed.contains(p) && !swarm.is_connected(p));
        for (peer, addrs) in due {
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            match self.swarm.dial(opts) {
                Ok(()) => {}
                // Already connected or being dialled by another behaviour: look again later.
                Err(DialError::DialPeerConditionFalse(_)) => self.redial.disconnected(peer, now),
                Err(e) => self.dial_failed(peer, e.to_string()),
            }
        }
    }

    fn dial_failed(&mut self, peer: PeerId, error: String) {
        let f = self.redial.failed(peer, Instant::now());
        self.emit(NetEvent::DialFailed {
            peer,
            failures: f.failures,
            error,
            retry_in: f.retry_in,
            log: f.log,
        });
    }

    /// Records an address of a member; tells the node when its addresses changed.
    fn learn_address(&mut self, peer: PeerId, addr: Multiaddr) {
        if !self.allowed.contains(&peer) || !worth_keeping(&addr) {
            return;
        }
        if self.redial.learn(peer, addr, Instant::now()) {
            let addrs = self.redial.addresses(&peer).to_vec();
            self.emit(NetEvent::PeerAddresses { peer, addrs });
        }
    }

    fn emit(&mut self, event: NetEvent) {
        // Never block the swarm on a slow consumer: messages the core still owes are
        // re-sent, and adverts are re-published and pulled on connect.
        if self.events.try_send(event).is_err() {
            self.dropped_events += 1;
            warn!(
                dropped = self.dropped_events,
                "event queue full; dropping a network event"
            );
        }
    }

    fn answer_sync(&mut self, channel: ResponseChannel<SyncAnswer>) {
        let answer = SyncAnswer {
            envelopes: self.sync_entries.values().cloned().map(Frame).collect(),
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(channel, answer);
    }

    fn refused(&self, reason: &'static str, channel: &'static str) {
        (self.on_refused.0)(Refusal { reason, channel });
    }

    /// Takes a token from `peer`'s bucket, or counts the message as `rate_limited`.
    fn within_rate(&mut self, peer: PeerId, channel: &'static str) -> bool {
        if self.limiter.allow(peer, Instant::now()) {
            return true;
        }
        self.refused("rate_limited", channel);
        false
    }

    fn topic_hash(&self, topic: Topic) -> gossipsub::TopicHash {
        self.topics
            .iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, it)| it.hash())
            .expect("both topics are registered")
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data } => self.publish(topic, data),
            Command::Send {
                to,
                channel,
                data,
                reply,
            } => {
                let b = self.swarm.behaviour_mut();
                let id = match channel {
                    Channel::Referral => b.referral.send_request(&to, Frame(data)),
                    Channel::Overflow => b.overflow.send_request(&to, Frame(data)),
                };
                self.pending_sends.insert(id, reply);
            }
            Command::Sync { from, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&from, SyncAsk {});
                self.pending_syncs.insert(id, reply);
            }
            Command::SetSyncEntries(entries) => {
                for (key, bytes) in entries {
                    match bytes {
                        Some(b) => self.sync_entries.insert(key, b),
                        None => self.sync_entries.remove(&key),
                    };
                }
                for channel in self.parked_syncs.take().unwrap_or_default() {
                    self.answer_sync(channel);
                }
            }
            Command::Report {
                id,
                source,
                acceptance,
            } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, acceptance);
            }
            Command::SetAllowed(peers) => {
                self.swarm
                    .behaviour_mut()
                    .admission
                    .set_allowed(peers.clone());
                self.allowed = peers;
                let allowed = &self.allowed;
                self.redial.retain(|p| allowed.contains(p));
                let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                for p in connected {
                    if !self.allowed.contains(&p) {
                        let _ = self.swarm.disconnect_peer_id(p);
                    }
                }
            }
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    warn!(%addr, "dial failed: {e}");
                }
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Connected(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
        }
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) {
        let hash = self.topic_hash(topic);
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(hash, data.clone())
        {
            Ok(_) => {
                self.unpublished.remove(&topic);
            }
            Err(gossipsub::PublishError::Duplicate) => {}
            Err(e) => {
                debug!(?topic, "publish deferred: {e}");
                self.unpublished.insert(topic, data);
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.emit(NetEvent::Listening(address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                // Admission refused peers outside the roster before they got here.
                self.redial.connected(peer_id, Instant::now());
                if endpoint.is_dialer() {
                    let addr = endpoint.get_remote_address().clone();
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                    self.learn_address(peer_id, addr);
                }
                if num_established.get() == 1 {
                    self.announced.insert(peer_id);
                    self.emit(NetEvent::PeerConnected(peer_id));
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if self.announced.remove(&peer_id) => {
                let now = Instant::now();
                self.limiter.forget_refilled(now);
                if self.allowed.contains(&peer_id) {
                    self.redial.disconnected(peer_id, now);
                }
                self.emit(NetEvent::PeerDisconnected(peer_id));
            }
            SwarmEvent::IncomingConnectionError {
                error: libp2p::swarm::ListenError::Denied { cause },
                send_back_addr,
                ..
            } => {
                let reason = refusal_reason(&cause);
                debug!(%send_back_addr, reason, "incoming connection refused");
                // Counted here, not sent to the node: refusals cost an outsider only a
                // connect, and must not crowd real events out of the node's queue.
                self.refused(reason, "connection");
            }
            SwarmEvent::OutgoingConnectionError {
                error: libp2p::swarm::DialError::Denied { cause },
                peer_id,
                ..
            } => {
                let reason = refusal_reason(&cause);
                debug!(?peer_id, reason, "outgoing connection refused");
                self.refused(reason, "connection");
                if let Some(peer) = peer_id {
                    self.dial_failed(peer, format!("refused here: {reason}"));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                error,
                peer_id: Some(peer),
                ..
            } if self.allowed.contains(&peer) => match error {
                DialError::DialPeerConditionFalse(_) | DialError::Aborted => {}
                other => self.dial_failed(peer, dial_error_text(&other)),
            },
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let topic = if message.topic == self.topic_hash(Topic::Roster) {
                    Topic::Roster
                } else {
                    Topic::Adverts
                };
                let channel = match topic {
                    Topic::Roster => "roster",
                    Topic::Adverts => "adverts",
                };
                if !self.within_rate(propagation_source, channel) {
                    // Neither accepted nor held against the relay: it may be passing on
                    // others' valid messages faster than we take them.
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Ignore,
                        );
                    return;
                }
                self.emit(NetEvent::Gossip {
                    source: propagation_source,
                    id: message_id,
                    topic,
                    data: message.data,
                });
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { .. }) => {
                let pending: Vec<(Topic, Vec<u8>)> = self.unpublished.drain().collect();
                for (topic, data) in pending {
                    self.publish(topic, data);
                }
            }
            BehaviourEvent::Referral(e) => self.on_direct(Channel::Referral, e),
            BehaviourEvent::Overflow(e) => self.on_direct(Channel::Overflow, e),
            BehaviourEvent::Sync(e) => self.on_sync(e),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if self.allowed.contains(&peer_id) =>
            {
                for addr in info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                    self.learn_address(peer_id, addr);
                }
            }
            // Members keep a connection to every member they learn of (`dial_due`).
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) if self.allowed.contains(&peer) => {
                for addr in addresses.iter() {
                    self.learn_address(peer, addr.clone());
                }
            }
            _ => {}
        }
    }

    fn on_direct(&mut self, channel: Channel, event: request_response::Event<Frame, Ack>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request,
                        channel: response,
                        ..
                    },
                ..
            } => {
                // Over its rate, or not an envelope within the size limit: answered here. Anything
                // else goes to the node, which answers once it has admitted (or refused) it.
                let now = Instant::now();
                let refused = if !self.within_rate(peer, channel.name()) {
                    let wait = self.limiter.retry_after(&peer, now);
                    Some(Verdict::Refused {
                        reason: "rate_limited".to_owned(),
                        retry_after_ms: Some(wait.as_millis().max(1) as u64),
                    })
                } else if let Err(e) = Envelope::from_bytes(&request.0) {
                    self.refused(e.reason_label(), channel.name());
                    Some(Verdict::refused(e.reason_label()))
                } else {
                    None
                };
                if let Some(verdict) = refused {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .referral
                        .send_response(response, verdict.into());
                    return;
                }
                let (tx, rx) = oneshot::channel();
                self.answers.push(Box::pin(async move {
                    let verdict = rx.await.unwrap_or_else(|_| Verdict::refused("unavailable"));
                    (response, Ack::from(verdict))
                }));
                self.emit(NetEvent::Direct {
                    from: peer,
                    channel,
                    data: request.0,
                    reply: Reply(tx),
                });
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending_sends.remove(&request_id) {
                    let _ = reply.send(if response.accepted {
                        Ok(())
                    } else {
                        Err(NetError::Refused {
                            reason: response.reason,
                            retry_after_ms: response.retry_after_ms,
                        })
                    });
                }
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.pending_sends.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Send(error.to_string())));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "inbound request failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn on_sync(&mut self, event: request_response::Event<SyncAsk, SyncAnswer>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message: Message::Request { channel, .. },
                ..
            } => {
                // Over its rate, the request goes unanswered (the peer sees its stream
                // closed); a dropped channel keeps nothing here.
                if self.within_rate(peer, "sync") {
                    match &mut self.parked_syncs {
                        Some(parked) if parked.len() < MAX_PARKED_SYNCS => parked.push(channel),
                        Some(_) => {}
                        None => self.answer_sync(channel),
                    }
                }
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending_syncs.remove(&request_id) {
                    let _ = reply.send(Ok(response.envelopes.into_iter().map(|f| f.0).collect()));
                }
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.pending_syncs.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Send(error.to_string())));
                }
            }
            Event::InboundFailure { .. } | Event::ResponseSent { .. } => {}
        }
    }
}

/// Addresses worth dialling again later: not unspecified, not relayed.
fn worth_keeping(addr: &Multiaddr) -> bool {
    addr.iter().all(|p| match p {
        Protocol::Ip4(ip) => !ip.is_unspecified(),
        Protocol::Ip6(ip) => !ip.is_unspecified(),
        Protocol::P2pCircuit => false,
        _ => true,
    })
}

/// A dial error in one line: libp2p lists each address tried with its own error.
fn dial_error_text(e: &DialError) -> String {
    match e {
        DialError::Transport(errors) => errors
            .iter()
            .map(|(addr, err)| format!("{addr}: {}", root_cause(err)))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        last = s.to_string();
        cur = s.source();
    }
    last
}
