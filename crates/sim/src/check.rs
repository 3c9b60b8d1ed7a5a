//! The invariant checker. It watches every output of every core as it leaves (a dossier
//! sent, a lease confirmed, a job started, a referral accepted) and inspects the cores'
//! whole states at samples and at the end:
//!
//! - no referral is accepted by two targets;
//! - a dossier leaves only to the target that accepted, and only inside the consent scope;
//! - at most one host is confirmed, and runs, each (job, epoch); a job has at most one live
//!   lease and never reuses an epoch;
//! - once settled, origin and host ledgers agree on receipts and accepted referrals, up to
//!   the acknowledgements still in flight.

use std::collections::BTreeMap;

use aiguillage_core::{AttemptOutcome, Core, HostPhase, JobPhase, StateKey};
use aiguillage_wire::{Confirm, Envelope, HandOver, JobId, MemberId, MessageKind, ReferralId};

/// Violations found, in the order they were found (at most `LIMIT` kept in full).
#[derive(Debug, Default)]
pub struct Checker {
    pub violations: Vec<String>,
    pub count: u64,
    confirmed: BTreeMap<(JobId, u64), usize>,
    started: BTreeMap<(JobId, u64), usize>,
    accepted: BTreeMap<ReferralId, MemberId>,
    pub checks_run: u64,
}

const LIMIT: usize = 50;

impl Checker {
    fn violate(&mut self, what: String) {
        self.count += 1;
        if self.violations.len() < LIMIT {
            self.violations.push(what);
        }
    }

    /// A message `from` is about to send to `to` (index `to_idx`).
    pub fn on_send(
        &mut self,
        from: &Core,
        to: &MemberId,
        to_idx: usize,
        to_country: aiguillage_wire::CountryCode,
        envelope: &Envelope,
    ) {
        match envelope.kind {
            MessageKind::HandOver => {
                self.checks_run += 1;
                let Ok(m) = envelope.decode_payload::<HandOver>() else {
                    self.violate(format!("{} sent an undecodable hand-over", from.me()));
                    return;
                };
                let Some(r) = from.state().outgoing.get(&m.referral) else {
                    self.violate(format!(
                        "{} sent the dossier of unknown referral {}",
                        from.me(),
                        m.referral
                    ));
                    return;
                };
                let accepted = r.attempts.iter().any(|a| {
                    a.attempt == m.attempt
                        && &a.target == to
                        && a.outcome == Some(AttemptOutcome::Accepted)
                });
                if !accepted {
                    self.violate(format!(
                        "dossier of {} sent to {to}, which had not accepted attempt {}",
                        m.referral, m.attempt
                    ));
                }
                if !r.card.consent.allows(to, to_country) {
                    self.violate(format!(
                        "dossier of {} sent to {to} outside the consent scope",
                        m.referral
                    ));
                }
            }
            MessageKind::Confirm => {
                self.checks_run += 1;
                if let Ok(m) = envelope.decode_payload::<Confirm>() {
                    match self.confirmed.get(&(m.job.clone(), m.epoch)) {
                        Some(h) if *h != to_idx => self.violate(format!(
                            "{} epoch {} confirmed at two hosts (second: {to})",
                            m.job, m.epoch
                        )),
                        Some(_) => {}
                        None => {
                            self.confirmed.insert((m.job, m.epoch), to_idx);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Host `host` starts `job` under `epoch` (> 0: hosted for another member).
    pub fn on_hosted_start(&mut self, host: usize, host_id: &MemberId, job: &JobId, epoch: u64) {
        self.checks_run += 1;
        match self.started.get(&(job.clone(), epoch)) {
            Some(h) if *h != host => self.violate(format!(
                "{job} epoch {epoch} runs at two hosts (second: {host_id})"
            )),
            Some(_) => {}
            None => {
                self.started.insert((job.clone(), epoch), host);
            }
        }
    }

    /// The origin was told `target` accepted `referral`.
    pub fn on_accepted(&mut self, referral: &ReferralId, target: &MemberId) {
        self.checks_run += 1;
        match self.accepted.get(referral) {
            Some(t) if t != target => {
                self.violate(format!("{referral} accepted by {t} and then by {target}"))
            }
            Some(_) => {}
            None => {
                self.accepted.insert(referral.clone(), target.clone());
            }
        }
    }

    /// Safety over every core's state: holds at every moment.
    pub fn check_states(&mut self, cores: &[&Core], index: &BTreeMap<MemberId, usize>) {
        self.checks_run += 1;
        for v in aiguillage_core::invariants::safety(cores, |m| index.get(m).map(|i| cores[*i])) {
            self.violate(v);
        }
    }

    /// Once settled: each referral held by at most the target its origin recorded, and
    /// ledgers that agree pairwise up to acknowledgements still in flight.
    pub fn check_settled(&mut self, cores: &[&Core], index: &BTreeMap<MemberId, usize>) {
        self.checks_run += 1;
        let mut holders: BTreeMap<&ReferralId, Vec<&MemberId>> = BTreeMap::new();
        // (origin, target) -> referrals the target holds whose hand-over the origin has
        // not seen acknowledged yet.
        let mut unacked_referrals: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        // (origin, host) -> GPU-seconds the origin recorded but the host has not yet been
        // told it did.
        let mut unacked_receipts: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        for (ti, core) in cores.iter().enumerate() {
            for (id, r) in &core.state().incoming {
                if r.state.was_accepted() {
                    holders.entry(id).or_default().push(core.me());
                }
                if r.dossier.is_some()
                    && let Some(oi) = index.get(&r.origin)
                    && cores[*oi]
                        .state()
                        .outgoing
                        .get(id)
                        .is_some_and(|o| !o.hand_over_acked)
                {
                    *unacked_referrals.entry((*oi, ti)).or_default() += 1;
                }
            }
            for (job, h) in &core.state().hosted {
                if let (HostPhase::Finished {
                    acknowledged: false,
                }, Some((receipt, _))) = (&h.phase, &h.receipt)
                    && let Some(oi) = index.get(&h.origin)
                    && cores[*oi].state().jobs.get(job).is_some_and(|j| {
                        j.epoch == h.epoch
                            && matches!(&j.phase, JobPhase::Done { host: Some(x), .. } if x == core.me())
                    })
                {
                    *unacked_receipts.entry((*oi, ti)).or_default() += receipt.gpu_seconds;
                }
            }
        }
        for (id, hs) in &holders {
            if hs.len() > 1 {
                self.violate(format!("{id} held by {} targets", hs.len()));
                continue;
            }
            let origin = id
                .origin()
                .and_then(|o| MemberId::new(o).ok())
                .and_then(|o| index.get(&o).copied());
            let retired = origin.is_some_and(|o| {
                cores[o]
                    .retired(&StateKey::Outgoing((*id).clone()))
                    .is_some()
            });
            let recorded = origin
                .and_then(|o| cores[o].state().outgoing.get(*id))
                .and_then(|o| o.accepted_by());
            // The origin's record of a finished referral may have left its memory first.
            if recorded != Some(hs[0]) && !retired {
                self.violate(format!(
                    "{id} held by {} but its origin recorded {recorded:?}",
                    hs[0]
                ));
            }
        }
        let mut pairs = std::collections::BTreeSet::new();
        for (ai, a) in cores.iter().enumerate() {
            for (b, _) in a.state().ledger.peers() {
                if let Some(&bi) = index.get(b) {
                    pairs.insert((ai, bi));
                    pairs.insert((bi, ai));
                }
            }
        }
        for (ai, bi) in pairs {
            let (a, b) = (cores[ai], cores[bi]);
            let ta = a.state().ledger.totals(b.me());
            let tb = b.state().ledger.totals(a.me());
            let in_flight = unacked_receipts.get(&(ai, bi)).copied().unwrap_or(0);
            if ta.gpu_seconds_consumed != tb.gpu_seconds_hosted + in_flight {
                self.violate(format!(
                    "{} consumed {} GPU-s from {}, which hosted {} (+{in_flight} in flight)",
                    a.me(),
                    ta.gpu_seconds_consumed,
                    b.me(),
                    tb.gpu_seconds_hosted
                ));
            }
            let pending = unacked_referrals.get(&(ai, bi)).copied().unwrap_or(0);
            if ta.referrals_sent_accepted + pending != tb.referrals_received_accepted {
                self.violate(format!(
                    "{} counts {} referrals accepted by {}, which counts {} (+{pending} in flight)",
                    a.me(),
                    ta.referrals_sent_accepted,
                    b.me(),
                    tb.referrals_received_accepted
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_accepting_target_or_host_is_a_violation() {
        let mut c = Checker::default();
        let r = ReferralId::new("lu-l-aif/1").unwrap();
        let a = MemberId::new("de-jaif").unwrap();
        let b = MemberId::new("fr-ai2f").unwrap();
        c.on_accepted(&r, &a);
        c.on_accepted(&r, &a);
        assert_eq!(c.count, 0, "a repeated notice is not a second acceptance");
        c.on_accepted(&r, &b);
        assert_eq!(c.count, 1);
        let job = JobId::new("lu-l-aif/2").unwrap();
        c.on_hosted_start(3, &a, &job, 1);
        c.on_hosted_start(3, &a, &job, 2);
        assert_eq!(c.count, 1, "a new epoch may run elsewhere");
        c.on_hosted_start(4, &b, &job, 2);
        assert_eq!(c.count, 2);
        assert_eq!(c.violations.len(), 2);
    }
}
