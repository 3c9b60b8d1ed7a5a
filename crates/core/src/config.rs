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

/// A `[core]` setting that cannot work, named by its path in node.toml.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("core.{field} = {value}: {rule}")]
pub struct ConfigError {
    pub field: String,
    pub value: String,
    pub rule: String,
}

impl CoreConfig {
    /// Refuses settings that cannot work: weights that are not fractions, a margin that is
    /// not a number, timings of zero or past what the protocol lets a message live, counts
    /// out of range.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, value: String, rule: &str| ConfigError {
            field: field.to_owned(),
            value,
            rule: rule.to_owned(),
        };
        let r = &self.routing;
        let mut total = 0.0;
        for t in crate::routing::Term::ALL {
            let w = r.weights.get(t);
            if !(w.is_finite() && (0.0..=1.0).contains(&w)) {
                return Err(bad(
                    &format!("routing.weights.{}", t.name()),
                    w.to_string(),
                    "a weight is a number from 0 to 1",
                ));
            }
            total += w;
        }
        if total <= 0.0 {
            return Err(bad(
                "routing.weights",
                "all 0".into(),
                "at least one weight must be above 0",
            ));
        }
        if !(r.accept_margin.is_finite() && (0.0..=1.0).contains(&r.accept_margin)) {
            return Err(bad(
                "routing.accept_margin",
                r.accept_margin.to_string(),
                "a margin is a number from 0 to 1",
            ));
        }
        let count = |field: &str, v: u64, min: u64, max: u64| {
            if v < min || v > max {
                Err(bad(
                    field,
                    v.to_string(),
                    &format!("it must be from {min} to {max}"),
                ))
            } else {
                Ok(())
            }
        };
        count("routing.max_candidates", r.max_candidates as u64, 1, 64)?;
        count("max_attempts", u64::from(self.max_attempts), 1, 64)?;
        count("max_bidders", self.max_bidders as u64, 1, 256)?;
        count(
            "referral_intake",
            u64::from(self.referral_intake),
            0,
            1_000_000,
        )?;
        let timings = [
            ("offer_ttl_ms", self.offer_ttl_ms, SECOND, 30 * DAY),
            ("decision_ttl_ms", self.decision_ttl_ms, SECOND, 30 * DAY),
            ("resend_ms", self.resend_ms, 100, HOUR),
            ("message_ttl_ms", self.message_ttl_ms, SECOND, DAY),
            ("advert_ttl_ms", self.advert_ttl_ms, SECOND, DAY),
            (
                "advert_min_interval_ms",
                self.advert_min_interval_ms,
                1,
                DAY,
            ),
            ("bid_window_ms", self.bid_window_ms, 10, HOUR),
            ("reserve_ttl_ms", self.reserve_ttl_ms, 100, DAY),
            ("lease_ttl_ms", self.lease_ttl_ms, 100, DAY),
            ("heartbeat_ms", self.heartbeat_ms, 10, HOUR),
            ("replace_retry_ms", self.replace_retry_ms, 100, DAY),
            (
                "ledger_half_life_ms",
                self.ledger_half_life_ms,
                SECOND,
                3650 * DAY,
            ),
            (
                "behaviour_half_life_ms",
                self.behaviour_half_life_ms,
                SECOND,
                3650 * DAY,
            ),
            ("retention_ms", self.retention_ms, SECOND, 3650 * DAY),
        ];
        for (field, v, min, max) in timings {
            if v < min || v > max {
                return Err(bad(
                    field,
                    v.to_string(),
                    &format!("it must be from {min} to {max} ms"),
                ));
            }
        }
        if self.heartbeat_ms >= self.lease_ttl_ms {
            return Err(bad(
                "heartbeat_ms",
                self.heartbeat_ms.to_string(),
                &format!(
                    "it must be shorter than lease_ttl_ms ({}), or every lease expires",
                    self.lease_ttl_ms
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;

    #[test]
    fn the_defaults_pass_and_each_setting_that_cannot_work_is_named() {
        assert_eq!(CoreConfig::default().check(), Ok(()));
        type Edit = Box<dyn Fn(&mut CoreConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "routing.weights.sector",
                Box::new(|c| c.routing.weights.sector = 40.0),
            ),
            (
                "routing.weights.geography",
                Box::new(|c| c.routing.weights.geography = -0.4),
            ),
            (
                "routing.weights.datasets",
                Box::new(|c| c.routing.weights.datasets = f64::NAN),
            ),
            (
                "routing.accept_margin",
                Box::new(|c| c.routing.accept_margin = f64::NAN),
            ),
            (
                "routing.max_candidates",
                Box::new(|c| c.routing.max_candidates = 0),
            ),
            ("resend_ms", Box::new(|c| c.resend_ms = 0)),
            ("advert_ttl_ms", Box::new(|c| c.advert_ttl_ms = 2 * DAY)),
            ("max_attempts", Box::new(|c| c.max_attempts = 0)),
            (
                "heartbeat_ms",
                Box::new(|c| c.heartbeat_ms = c.lease_ttl_ms),
            ),
        ];
        for (field, set) in cases {
            let mut c = CoreConfig::default();
            set(&mut c);
            let e = c.check().expect_err(field);
            assert_eq!(e.field, field);
            assert!(
                e.to_string().starts_with(&format!("core.{field} = ")),
                "{e}"
            );
        }
        let mut zero = CoreConfig::default();
        zero.routing.weights = crate::routing::Weights {
            sector: 0.0,
            datasets: 0.0,
            language: 0.0,
            geography: 0.0,
            capacity: 0.0,
            reciprocity: 0.0,
            responsiveness: 0.0,
        };
        assert_eq!(zero.check().unwrap_err().field, "routing.weights");
    }
}
