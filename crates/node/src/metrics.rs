//! Prometheus metrics served on `/metrics`.

use aiguillage_core::{HostPhase, InState, JobPhase, OutState};
use aiguillage_wire::{Channel, MessageKind};

/// The events `aiguillage_overflow_total` counts.
pub const OVERFLOW_EVENTS: [&str; 4] = ["placed", "replaced", "finished", "queued"];
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for times that people take: a second to a week.
const HUMAN_SECONDS: [f64; 14] = [
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3_600.0,
    4.0 * 3_600.0,
    12.0 * 3_600.0,
    86_400.0,
    2.0 * 86_400.0,
    3.0 * 86_400.0,
    5.0 * 86_400.0,
    7.0 * 86_400.0,
    14.0 * 86_400.0,
];

pub struct Metrics {
    pub registry: Registry,
    pub peers: IntGauge,
    /// 1 for each rostered member connected now, 0 for the others.
    pub peer_up: IntGaugeVec,
    pub directory_members: IntGauge,
    /// Age of the least recently issued advert in the directory.
    pub directory_oldest_advert_age: Gauge,
    pub roster_serial: IntGauge,
    pub roster_expiry: Gauge,
    /// Incoming referrals waiting for this member's decision, and the oldest one's age.
    pub decisions_pending: IntGauge,
    pub decision_oldest_age: Gauge,
    /// This member's jobs by phase, and the jobs it hosts by phase.
    pub jobs: IntGaugeVec,
    pub hosted_jobs: IntGaugeVec,
    /// From submission to start (here or at a host).
    pub job_wait_seconds: Histogram,
    /// How long one commit of the store took.
    pub store_flush_seconds: Histogram,
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
    pub gpu_seconds: IntCounterVec,
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
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
            g
        };
        let one_int = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
            g
        };
        let one = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
            g
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("metric names are unique");
            h
        };
        let peer_up = int_gauge(
            "aiguillage_peer_up",
            "1 if the rostered member is connected now, else 0",
            &["member"],
        );
        let directory_members = one_int(
            "aiguillage_directory_members",
            "Members whose advert this node holds",
        );
        let directory_oldest_advert_age = one(
            "aiguillage_directory_oldest_advert_age_seconds",
            "Time since the least recently issued advert in the directory was issued",
        );
        let roster_serial = one_int("aiguillage_roster_serial", "Serial of the installed roster");
        let roster_expiry = one(
            "aiguillage_roster_expiry_timestamp_seconds",
            "When the installed roster expires (Unix time)",
        );
        let decisions_pending = one_int(
            "aiguillage_decisions_pending",
            "Incoming referrals waiting for this member's decision",
        );
        let decision_oldest_age = one(
            "aiguillage_decision_oldest_age_seconds",
            "How long the oldest referral waiting for a decision has waited (0 when none)",
        );
        let referrals = int_gauge(
            "aiguillage_referrals",
            "Referrals held in memory, by direction (out: originated here; in: offered here) and state",
            &["direction", "state"],
        );
        let jobs = int_gauge(
            "aiguillage_jobs",
            "This member's jobs held in memory, by phase (queued: waiting for a host)",
            &["phase"],
        );
        let hosted_jobs = int_gauge(
            "aiguillage_hosted_jobs",
            "Jobs this member hosts for others, held in memory, by phase",
            &["phase"],
        );
        let offer_answer_seconds = histogram(
            "aiguillage_offer_answer_seconds",
            "Time from an offer to its target's answer (the target's decision)",
            HUMAN_SECONDS.to_vec(),
        );
        let job_wait_seconds = histogram(
            "aiguillage_job_wait_seconds",
            "Time from a job's submission to its start, here or at a host",
            HUMAN_SECONDS.to_vec(),
        );
        let store_flush_seconds = histogram(
            "aiguillage_store_flush_seconds",
            "Time one commit of the store (state, audit and notifications, made durable) took",
            vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ],
        );
        let overflow = counter(
            &registry,
            "aiguillage_overflow_total",
            "Overflow jobs by event: placed at a host, replaced after a lost lease, finished at a host, queued (each job once)",
            &["event"],
        );
        let gpu_seconds = counter(
            &registry,
            "aiguillage_gpu_seconds_total",
            "GPU-seconds this member hosted for others and consumed at others, from acknowledged receipts",
            &["direction"],
        );
        let commit_batch = histogram(
            "aiguillage_commit_batch_inputs",
            "Network inputs made durable by one flush",
            vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
        );
        let build_info = int_gauge(
            "aiguillage_build_info",
            "Always 1; the labels say which build runs",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for c in [
            Box::new(peers.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(adverts_received.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("metric names are unique");
        // Every known label set exists from the start, at zero.
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
        for kind in MessageKind::ALL {
            seal_failures.with_label_values(&[kind.name()]);
        }
        for event in OVERFLOW_EVENTS {
            overflow.with_label_values(&[event]);
        }
        for direction in ["hosted", "consumed"] {
            gpu_seconds.with_label_values(&[direction]);
        }
        for state in OutState::ALL {
            referrals.with_label_values(&["out", state.tag()]);
        }
        for state in InState::TAGS {
            referrals.with_label_values(&["in", state]);
        }
        for phase in JobPhase::TAGS {
            jobs.with_label_values(&[phase]);
        }
        for phase in HostPhase::TAGS {
            hosted_jobs.with_label_values(&[phase]);
        }
        Metrics {
            registry,
            peers,
            peer_up,
            directory_members,
            directory_oldest_advert_age,
            roster_serial,
            roster_expiry,
            decisions_pending,
            decision_oldest_age,
            jobs,
            hosted_jobs,
            job_wait_seconds,
            store_flush_seconds,
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

    /// The rostered members other than this one: their per-member series exist at zero.
    pub fn members<'a>(&self, members: impl IntoIterator<Item = &'a str>) {
        for m in members {
            self.dial_failures.with_label_values(&[m]);
            self.peer_up.with_label_values(&[m]);
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
