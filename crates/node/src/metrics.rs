//! Prometheus metrics served on `/metrics`.

use aiguillage_wire::{Channel, MessageKind};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub peers: IntGauge,
    pub adverts_received: IntCounter,
    /// Messages and connections refused, by reason, kind and channel.
    pub refused_messages: IntCounterVec,
    pub received_messages: IntCounterVec,
    pub received_bytes: IntCounterVec,
    pub sent_messages: IntCounterVec,
    pub sent_bytes: IntCounterVec,
    /// Refusals this node's messages met at their receivers.
    pub sent_refused: IntCounterVec,
    pub peer_last_message: GaugeVec,
    pub peer_score: GaugeVec,
    pub peer_refused: IntCounterVec,
    /// Messages that could not be sealed: a bug, never an input error.
    pub seal_failures: IntCounterVec,
    /// Failed dials of rostered members, by member.
    pub dial_failures: IntCounterVec,
    /// This clock minus the members' median, in seconds.
    pub clock_offset: prometheus::Gauge,
    /// How far each member's clock is ahead of this one, in seconds.
    pub peer_clock_ahead: GaugeVec,
    pub referrals: IntGaugeVec,
    pub offer_answer_seconds: Histogram,
    pub overflow: IntCounterVec,
    pub gpu_seconds: IntGaugeVec,
    /// Inputs made durable by one flush (group commit of network events).
    pub commit_batch: Histogram,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("metric names are unique");
    g
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let peers = IntGauge::new("aiguillage_peers_connected", "Members connected now")
            .expect("valid metric");
        let adverts_received = IntCounter::new(
            "aiguillage_adverts_received_total",
            "Adverts accepted from gossip or sync",
        )
        .expect("valid metric");
        let refused_messages = counter(
            &registry,
            "aiguillage_refused_total",
            "Messages and connections refused, by PROTOCOL.md reason, kind (- before it was read) and channel",
            &["reason", "kind", "channel"],
        );
        let received_messages = counter(
            &registry,
            "aiguillage_messages_received_total",
            "Messages admitted, by channel and kind",
            &["channel", "kind"],
        );
        let received_bytes = counter(
            &registry,
            "aiguillage_message_bytes_received_total",
            "Bytes of admitted messages, by channel",
            &["channel"],
        );
        let sent_messages = counter(
            &registry,
            "aiguillage_messages_sent_total",
            "Messages sent or published, by channel and kind",
            &["channel", "kind"],
        );
        let sent_bytes = counter(
            &registry,
            "aiguillage_message_bytes_sent_total",
            "Bytes of messages sent or published, by channel",
            &["channel"],
        );
        let sent_refused = counter(
            &registry,
            "aiguillage_sent_refused_total",
            "Messages of this node that their receiver refused, by kind and reason",
            &["kind", "reason"],
        );
        let peer_last_message = gauge(
            &registry,
            "aiguillage_peer_last_message_timestamp_seconds",
            "When an admitted message signed by the member last arrived (Unix time)",
            &["member"],
        );
        let peer_score = gauge(
            &registry,
            "aiguillage_peer_score",
            "The member's gossipsub peer score; below the graylist threshold its gossip is ignored",
            &["member"],
        );
        let peer_refused = counter(
            &registry,
            "aiguillage_peer_refused_total",
            "Messages refused, by the member that sent or relayed them and the reason",
            &["member", "reason"],
        );
        let seal_failures = counter(
            &registry,
            "aiguillage_seal_failures_total",
            "Messages that could not be sealed (a bug), by kind; none is sent again",
            &["kind"],
        );
        let dial_failures = counter(
            &registry,
            "aiguillage_dial_failures_total",
            "Failed dials of rostered members, by member; each is dialled again with backoff",
            &["member"],
        );
        let clock_offset = prometheus::Gauge::new(
            "aiguillage_clock_offset_seconds",
            "This node's clock minus the median of the members' (from their messages' issued_at); positive when it is ahead",
        )
        .expect("valid metric");
        registry
            .register(Box::new(clock_offset.clone()))
            .expect("metric names are unique");
        let peer_clock_ahead = gauge(
            &registry,
            "aiguillage_peer_clock_ahead_seconds",
            "How far the member's clock is ahead of this node's, from its freshest message in five minutes",
            &["member"],
        );
        let referrals = IntGaugeVec::new(
            Opts::new("aiguillage_referrals", "Referrals by direction and state"),
            &["direction", "state"],
        )
        .expect("valid metric");
        let offer_answer_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "aiguillage_offer_answer_seconds",
                "Time from an offer to its answer",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 10.0, 60.0, 3600.0,
            ]),
        )
        .expect("valid metric");
        let overflow = IntCounterVec::new(
            Opts::new(
                "aiguillage_overflow_total",
                "Overflow events: placed, replaced, finished, queued",
            ),
            &["event"],
        )
        .expect("valid metric");
        let gpu_seconds = IntGaugeVec::new(
            Opts::new(
                "aiguillage_gpu_seconds",
                "GPU-seconds hosted for and consumed from other members",
            ),
            &["direction"],
        )
        .expect("valid metric");
        let commit_batch = Histogram::with_opts(
            HistogramOpts::new(
                "aiguillage_commit_batch_inputs",
                "Network inputs made durable by one flush",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .expect("valid metric");
        for c in [
            Box::new(peers.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(commit_batch.clone()),
            Box::new(adverts_received.clone()),
            Box::new(referrals.clone()),
            Box::new(offer_answer_seconds.clone()),
            Box::new(overflow.clone()),
            Box::new(gpu_seconds.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // Every channel and the kinds it carries exist from the start, at zero.
        for channel in Channel::ALL {
            received_bytes.with_label_values(&[channel.name()]);
            sent_bytes.with_label_values(&[channel.name()]);
            for kind in MessageKind::ALL {
                if channel.allows(*kind) {
                    received_messages.with_label_values(&[channel.name(), kind.name()]);
                    sent_messages.with_label_values(&[channel.name(), kind.name()]);
                }
            }
        }
        Metrics {
            registry,
            peers,
            adverts_received,
            refused_messages,
            received_messages,
            received_bytes,
            sent_messages,
            sent_bytes,
            sent_refused,
            peer_last_message,
            peer_score,
            peer_refused,
            seal_failures,
            dial_failures,
            clock_offset,
            peer_clock_ahead,
            referrals,
            offer_answer_seconds,
            overflow,
            gpu_seconds,
            commit_batch,
        }
    }

    /// An admitted message.
    pub fn received(&self, channel: Channel, kind: MessageKind, bytes: usize) {
        self.received_messages
            .with_label_values(&[channel.name(), kind.name()])
            .inc();
        self.received_bytes
            .with_label_values(&[channel.name()])
            .inc_by(bytes as u64);
        if kind == MessageKind::Advert {
            self.adverts_received.inc();
        }
    }

    /// A message (or connection, on channel `connection`) refused.
    pub fn refused(&self, reason: &str, kind: &str, channel: &str) {
        self.refused_messages
            .with_label_values(&[reason, kind, channel])
            .inc();
    }

    /// A message sent or published.
    pub fn sent(&self, channel: Channel, kind: MessageKind, bytes: usize) {
        self.sent_messages
            .with_label_values(&[channel.name(), kind.name()])
            .inc();
        self.sent_bytes
            .with_label_values(&[channel.name()])
            .inc_by(bytes as u64);
    }

    pub fn render(registry: &Registry) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
