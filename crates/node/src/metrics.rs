//! Prometheus metrics served on `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub peers: IntGauge,
    pub adverts_received: IntCounter,
    pub refused: IntCounterVec,
    pub referrals: IntGaugeVec,
    pub offer_answer_seconds: Histogram,
    pub overflow: IntCounterVec,
    pub gpu_seconds: IntGaugeVec,
    /// Inputs made durable by one flush (group commit of network events).
    pub commit_batch: Histogram,
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
        let refused = IntCounterVec::new(
            Opts::new(
                "aiguillage_refused_total",
                "Messages and connections refused, by reason and kind",
            ),
            &["reason", "kind"],
        )
        .expect("valid metric");
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
            Box::new(refused.clone()),
            Box::new(referrals.clone()),
            Box::new(offer_answer_seconds.clone()),
            Box::new(overflow.clone()),
            Box::new(gpu_seconds.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            peers,
            adverts_received,
            refused,
            referrals,
            offer_answer_seconds,
            overflow,
            gpu_seconds,
            commit_batch,
        }
    }

    pub fn render(registry: &Registry) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
