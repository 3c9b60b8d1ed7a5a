//! Per-peer token buckets: how many messages a connected peer may make the node handle.
//! The network task takes a token for every gossip message, request and sync request a
//! peer delivers, before the event is queued for the node, so one peer cannot crowd the
//! others out of the queue.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// One bucket per peer: `burst` tokens at most, refilled at `rate` per second.
pub(crate) struct RateLimiter<P> {
    rate: f64,
    burst: f64,
    /// (tokens, last refill)
    buckets: HashMap<P, (f64, Instant)>,
}

impl<P: Eq + Hash + Copy> RateLimiter<P> {
    pub(crate) fn new(rate: f64, burst: f64) -> RateLimiter<P> {
        RateLimiter {
            rate,
            burst,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token from `peer`'s bucket; false when it has none left.
    pub(crate) fn allow(&mut self, peer: P, now: Instant) -> bool {
        let (tokens, last) = self.buckets.entry(peer).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.rate)
            .min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until `peer` has a token again (zero if it has one now).
    pub(crate) fn retry_after(&self, peer: &P, now: Instant) -> std::time::Duration {
        match self.buckets.get(peer) {
            Some((tokens, last)) => {
                let now_tokens =
                    tokens + now.saturating_duration_since(*last).as_secs_f64() * self.rate;
                if now_tokens >= 1.0 {
                    std::time::Duration::ZERO
                } else {
                    std::time::Duration::from_secs_f64((1.0 - now_tokens) / self.rate)
                }
            }
            None => std::time::Duration::ZERO,
        }
    }

    /// Drops the buckets that have refilled, where holding one is the same as none. Called
    /// when peers disconnect: one that reconnects does not come back with a fresh burst.
    pub(crate) fn forget_refilled(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, (tokens, last)| {
            *tokens + now.saturating_duration_since(*last).as_secs_f64() * rate < burst
        });
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_peer_gets_its_burst_then_its_rate_and_no_fresh_burst_by_reconnecting() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10.0, 5.0);
        assert_eq!((0..8).filter(|_| limiter.allow(1u8, t0)).count(), 5);
        // Another peer has its own bucket.
        assert!(limiter.allow(2u8, t0));
        // 0.3 s at 10/s: three more.
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!((0..8).filter(|_| limiter.allow(1u8, t1)).count(), 3);
        // It disconnects and reconnects at once: its empty bucket is kept.
        limiter.forget_refilled(t1);
        assert!(!limiter.allow(1u8, t1), "a reconnect is no fresh burst");
        // Peer 2 took one token at t0 and has refilled by t1: its bucket went.
        assert_eq!(limiter.tracked(), 1);
        // An empty bucket at 10/s has its next token in a tenth of a second.
        assert_eq!(limiter.retry_after(&1u8, t1), Duration::from_millis(100));
        // Once refilled, forgetting a bucket changes nothing, so it goes.
        let t2 = t1 + Duration::from_secs(1);
        limiter.forget_refilled(t2);
        assert_eq!(limiter.tracked(), 0);
        assert_eq!((0..8).filter(|_| limiter.allow(1u8, t2)).count(), 5);
    }
}
