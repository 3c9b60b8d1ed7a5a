//! The reciprocity ledger: what this member and each peer gave each other, in exact totals
//! (for reconciliation) and in exponentially decaying balances (for routing and bids).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use aiguillage_wire::{MemberId, Timestamp};

/// A quantity that halves every `half_life_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Decayed {
    value: f64,
    at: Timestamp,
}

impl Decayed {
    pub fn value(&self, now: Timestamp, half_life_ms: u64) -> f64 {
        if half_life_ms == 0 || now <= self.at {
            return self.value;
        }
        let elapsed = (now.millis() - self.at.millis()) as f64;
        self.value * 0.5f64.powf(elapsed / half_life_ms as f64)
    }

    pub fn add(&mut self, amount: f64, now: Timestamp, half_life_ms: u64) {
        let now = now.max(self.at);
        self.value = self.value(now, half_life_ms) + amount;
        self.at = now;
    }
}

/// Exact totals between this member and one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// GPU-seconds we ran for the peer.
    pub gpu_seconds_hosted: u64,
    /// GPU-seconds the peer ran for us.
    pub gpu_seconds_consumed: u64,
    /// Referrals we offered the peer, and how many it accepted.
    pub referrals_sent: u64,
    pub referrals_sent_accepted: u64,
    /// Referrals the peer offered us, and how many we accepted.
    pub referrals_received: u64,
    pub referrals_received_accepted: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerAccount {
    pub totals: Totals,
    /// Decaying: what the peer did for us minus what we did for it, in "favours"
    /// (one accepted referral = one favour, one GPU-hour = one favour).
    given_to_us: Decayed,
    given_by_us: Decayed,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    accounts: BTreeMap<MemberId, PeerAccount>,
    half_life_ms: u64,
}

/// What happened between us and a peer, as the ledger records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Hosted { gpu_seconds: u64 },
    Consumed { gpu_seconds: u64 },
    ReferralSent,
    ReferralSentAccepted,
    ReferralReceived,
    ReferralReceivedAccepted,
}

impl Ledger {
    pub fn new(half_life_ms: u64) -> Self {
        Ledger {
            accounts: BTreeMap::new(),
            half_life_ms,
        }
    }

    pub fn record(&mut self, peer: &MemberId, entry: Entry, now: Timestamp) {
        let hl = self.half_life_ms;
        let a = self.accounts.entry(peer.clone()).or_default();
        match entry {
            Entry::Hosted { gpu_seconds } => {
                a.totals.gpu_seconds_hosted += gpu_seconds;
                a.given_by_us.add(gpu_seconds as f64 / 3600.0, now, hl);
            }
            Entry::Consumed { gpu_seconds } => {
                a.totals.gpu_seconds_consumed += gpu_seconds;
                a.given_to_us.add(gpu_seconds as f64 / 3600.0, now, hl);
            }
            Entry::ReferralSent => a.totals.referrals_sent += 1,
            Entry::ReferralSentAccepted => {
                a.totals.referrals_sent_accepted += 1;
                a.given_by_us.add(1.0, now, hl);
            }
            Entry::ReferralReceived => a.totals.referrals_received += 1,
            Entry::ReferralReceivedAccepted => {
                a.totals.referrals_received_accepted += 1;
                a.given_to_us.add(1.0, now, hl);
            }
        }
    }

    /// Decayed favours the peer gave us minus those we gave it: positive means we owe it.
    pub fn balance(&self, peer: &MemberId, now: Timestamp) -> f64 {
        self.accounts.get(peer).map_or(0.0, |a| {
            a.given_to_us.value(now, self.half_life_ms)
                - a.given_by_us.value(now, self.half_life_ms)
        })
    }

    pub fn totals(&self, peer: &MemberId) -> Totals {
        self.accounts
            .get(peer)
            .map(|a| a.totals)
            .unwrap_or_default()
    }

    pub fn peers(&self) -> impl Iterator<Item = (&MemberId, &Totals)> {
        self.accounts.iter().map(|(m, a)| (m, &a.totals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    #[test]
    fn decayed_values_halve_per_half_life() {
        let mut d = Decayed::default();
        d.add(8.0, Timestamp(0), HOUR);
        assert!((d.value(Timestamp(HOUR), HOUR) - 4.0).abs() < 1e-9);
        assert!((d.value(Timestamp(3 * HOUR), HOUR) - 1.0).abs() < 1e-9);
        d.add(1.0, Timestamp(3 * HOUR), HOUR);
        assert!((d.value(Timestamp(3 * HOUR), HOUR) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn balance_favours_peers_that_gave_more_and_totals_stay_exact() {
        let peer = MemberId::new("de-jaif").unwrap();
        let mut l = Ledger::new(24 * HOUR);
        l.record(&peer, Entry::Consumed { gpu_seconds: 7200 }, Timestamp(0));
        l.record(&peer, Entry::ReferralSentAccepted, Timestamp(0));
        assert!((l.balance(&peer, Timestamp(0)) - 1.0).abs() < 1e-9);
        assert!(
            l.balance(&peer, Timestamp(240 * HOUR)) < 0.01,
            "decays towards zero"
        );
        assert_eq!(l.totals(&peer).gpu_seconds_consumed, 7200);
        assert_eq!(l.totals(&peer).referrals_sent_accepted, 1);
    }
}
