//! A member's tunable behaviour: deadlines, limits, routing weights.

use serde::{Deserialize, Serialize};

use crate::routing::RoutingPolicy;

pub(crate) const SECOND: u64 = 1000;
pub(crate) const MINUTE: u64 = 60 * SECOND;
pub(crate) const HOUR: u64 = 60 * MINUTE;
pub(crate) const DAY: u64 = 24 * HOUR;

/// Tunable behaviour of a member's core. Defaults suit a production federation; the devnet
/// and the tests shorten the times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoreConfig {
    pub routing: RoutingPolicy,
    /// How long a target has to answer an offer.
    pub offer_ttl_ms: u64,
    /// How long the local operator has to decide on an offer that needs a decision.
    pub decision_ttl_ms: u64,
    /// Targets tried per referral before it is exhausted.
    pub max_attempts: u32,
    /// Referrals this member takes in at once (its advertised intake).
    pub referral_intake: u32,
    /// Re-send interval for messages still owed an answer.
    pub resend_ms: u64,
    /// Lifetime of referral and overflow message envelopes.
    pub message_ttl_ms: u64,
    pub advert_ttl_ms: u64,
    /// Capacity and intake changes are re-advertised at most this often; each advert costs
    /// every member a verification and a write.
    pub advert_min_interval_ms: u64,
    pub bid_window_ms: u64,
    pub max_bidders: usize,
    pub reserve_ttl_ms: u64,
    pub lease_ttl_ms: u64,
    pub heartbeat_ms: u64,
    /// How often a queued job that found no host is offered again.
    pub replace_retry_ms: u64,
    pub ledger_half_life_ms: u64,
    pub behaviour_half_life_ms: u64,
    /// Hosts overflow jobs for other members.
    pub takes_overflow: bool,
    pub accelerator: Option<String>,
    /// Countries whose members may send overflow here; empty means any.
    pub overflow_from: Vec<aiguillage_wire::CountryCode>,
    /// How long a finished project, referral or job stays in memory before only the store
    /// holds it.
    pub retention_ms: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            routing: RoutingPolicy::default(),
            offer_ttl_ms: 2 * DAY,
            decision_ttl_ms: DAY,
            max_attempts: 4,
            referral_intake: 20,
            resend_ms: 5 * SECOND,
            message_ttl_ms: HOUR,
            advert_ttl_ms: 10 * MINUTE,
            advert_min_interval_ms: SECOND,
            bid_window_ms: 2 * SECOND,
            max_bidders: 8,
            reserve_ttl_ms: 10 * SECOND,
            lease_ttl_ms: 30 * SECOND,
            heartbeat_ms: 10 * SECOND,
            replace_retry_ms: 30 * SECOND,
            ledger_half_life_ms: 90 * DAY,
            behaviour_half_life_ms: 30 * DAY,
            takes_overflow: true,
            accelerator: None,
            overflow_from: Vec::new(),
            retention_ms: 7 * DAY,
        }
    }
}
