//! The host's side of overflow: bidding, holding a reservation, running the job under its
//! lease, sending heartbeats and the usage receipt.

use aiguillage_wire::{
    Bid, CallForBids, Confirm, Heartbeat, JobId, JobRequirements, JobSpec, JobState, MemberId,
    ReceiptAck, Release, Reserve, Reserved, Timestamp,
};

use crate::Core;
use crate::ledger::Entry;
use crate::state::{HostPhase, HostedJob, JobPhase, StateKey, record};
use crate::timers::Deadline;

impl Core {
    /// When this member could start `gpus` more GPUs: now if free, else when the first
    /// running allocation reaches its time limit.
    /// When `gpus` GPUs would be free here: now, or when enough of the jobs holding GPUs
    /// have reached their time limits (a job not started yet counts from now). A host short
    /// of GPUs still answers a call for bids with this estimate, so that the origin can
    /// close the bidding as soon as everyone invited has answered.
    pub(crate) fn earliest_start(&self, now: Timestamp, gpus: u32) -> Option<Timestamp> {
        if self.state.total_gpus < gpus {
            return None;
        }
        let mut free = self.free_gpus();
        if free >= gpus {
            return Some(now);
        }
        let limit_ms = |s: &JobSpec| s.requirements.time_limit_s.saturating_mul(1000);
        let mut ends: Vec<(Timestamp, u32)> = self
            .state
            .hosted
            .values()
            .filter(|h| h.holds_gpus())
            .map(|h| {
                let from = match h.phase {
                    HostPhase::Running {
                        started_at: Some(s),
                        ..
                    } => s,
                    HostPhase::Held { until } => until.max(now),
                    _ => now,
                };
                (
                    from.saturating_add_ms(limit_ms(&h.spec)),
                    h.spec.requirements.gpus,
                )
            })
            .chain(
                self.state
                    .jobs
                    .values()
                    .filter(|j| matches!(j.phase, JobPhase::Local))
                    .map(|j| {
                        let from = j.history.last().map_or(now, |t| t.at);
                        (
                            from.saturating_add_ms(limit_ms(&j.spec)),
                            j.spec.requirements.gpus,
                        )
                    }),
            )
            .collect();
        ends.sort();
        for (at, g) in ends {
            free += g;
            if free >= gpus {
                return Some(at.max(now));
            }
        }
        None
    }

    fn can_host(&self, from: &MemberId, r: &JobRequirements) -> bool {
        if !self.config.takes_overflow {
            return false;
        }
        if !r.residency.is_empty() && !r.residency.contains(&self.profile.country) {
            return false;
        }
        if let Some(acc) = &r.accelerator
            && self.config.accelerator.as_ref() != Some(acc)
        {
            return false;
        }
        if !self.config.overflow_from.is_empty() {
            let Some(c) = self.country_of(from) else {
                return false;
            };
            if !self.config.overflow_from.contains(&c) {
                return false;
            }
        }
        true
    }

    pub(crate) fn on_call_for_bids(&mut self, now: Timestamp, from: &MemberId, m: CallForBids) {
        if !self.can_host(from, &m.requirements) {
            return;
        }
        if let Some(start) = self.earliest_start(now, m.requirements.gpus) {
            self.send(
                now,
                from,
                &Bid {
                    job: m.job,
                    earliest_start: start,
                    free_gpus: self.free_gpus(),
                    accelerator: self.config.accelerator.clone(),
                },
            );
        }
    }

    pub(crate) fn on_reserve(&mut self, now: Timestamp, from: &MemberId, m: Reserve) {
        let job = m.spec.job.clone();
        if let Some(r) = self.retired(&StateKey::Hosted(job.clone()))
            && r.placement
                .as_ref()
                .is_some_and(|(origin, epoch)| origin == from && *epoch >= m.epoch)
        {
            // A replayed reservation of a placement that has finished here.
            return;
        }
        if let Some(h) = self.state.hosted.get(&job) {
            if h.epoch > m.epoch || &h.origin != from {
                return;
            }
            if h.epoch == m.epoch {
                // A re-sent reserve gets the same answer.
                let granted = !matches!(h.phase, HostPhase::Released);
                self.send(
                    now,
                    from,
                    &Reserved {
                        job,
                        epoch: m.epoch,
                        granted,
                        detail: String::new(),
                    },
                );
                return;
            }
            // A newer epoch of a job we hold: the origin moved on; let the old one go.
            self.release_hosted(now, &job, "superseded by a newer epoch");
        }
        let fits = self.can_host(from, &m.spec.requirements)
            && self.free_gpus() >= m.spec.requirements.gpus
            && now < m.hold_until;
        if !fits {
            self.send(
                now,
                from,
                &Reserved {
                    job,
                    epoch: m.epoch,
                    granted: false,
                    detail: "no free capacity for it now".into(),
                },
            );
            return;
        }
        let until = m.hold_until;
        let mut h = HostedJob {
            origin: from.clone(),
            epoch: m.epoch,
            spec: m.spec,
            phase: HostPhase::Held { until },
            receipt: None,
            history: Vec::new(),
        };
        record(
            &mut h.history,
            now,
            "held",
            format!("for {from}, epoch {}", m.epoch),
        );
        self.state.hosted.insert(job.clone(), h);
        self.dirty.insert(StateKey::Hosted(job.clone()));
        self.advert_stale = true;
        self.state
            .timers
            .schedule(until, Deadline::Hold(job.clone()));
        self.send(
            now,
            from,
            &Reserved {
                job,
                epoch: m.epoch,
                granted: true,
                detail: String::new(),
            },
        );
    }

    pub(crate) fn hold_deadline(&mut self, now: Timestamp, job: &JobId) {
        if self
            .state
            .hosted
            .get(job)
            .is_some_and(|h| matches!(h.phase, HostPhase::Held { until } if now >= until))
        {
            self.release_hosted(now, job, "reservation lapsed without a confirm");
        }
    }

    fn release_hosted(&mut self, now: Timestamp, job: &JobId, why: &str) {
        let Some(h) = self.state.hosted.get_mut(job) else {
            return;
        };
        let epoch = h.epoch;
        let was_running = matches!(h.phase, HostPhase::Running { .. });
        if !h.holds_gpus() {
            return;
        }
        h.phase = HostPhase::Released;
        record(&mut h.history, now, "released", why);
        self.dirty.insert(StateKey::Hosted(job.clone()));
        self.advert_stale = true;
        if was_running {
            self.out.push(crate::Output::CancelJob {
                job: job.clone(),
                epoch,
            });
        }
        self.audit(now, "hosted_released", job.as_str(), why.to_owned());
    }

    pub(crate) fn on_confirm(&mut self, now: Timestamp, from: &MemberId, m: Confirm) {
        let Some(h) = self.state.hosted.get_mut(&m.job) else {
            return;
        };
        if &h.origin != from || h.epoch != m.epoch {
            return;
        }
        match h.phase {
            HostPhase::Held { .. } => {
                h.phase = HostPhase::Running {
                    state: JobState::Queued,
                    started_at: None,
                };
                record(&mut h.history, now, "confirmed", "");
                let spec = h.spec.clone();
                self.dirty.insert(StateKey::Hosted(m.job.clone()));
                self.out.push(crate::Output::StartJob {
                    job: m.job.clone(),
                    epoch: m.epoch,
                    spec,
                });
                self.send_heartbeat(now, &m.job);
            }
            // A re-sent confirm: the heartbeat is the acknowledgement.
            HostPhase::Running { .. } => self.send_heartbeat(now, &m.job),
            _ => {}
        }
    }

    fn send_heartbeat(&mut self, now: Timestamp, job: &JobId) {
        let Some(h) = self.state.hosted.get(job) else {
            return;
        };
        let HostPhase::Running { state, .. } = h.phase else {
            return;
        };
        let origin = h.origin.clone();
        let m = Heartbeat {
            job: job.clone(),
            epoch: h.epoch,
            state,
        };
        self.send(now, &origin, &m);
        self.state.timers.schedule(
            now.saturating_add_ms(self.config.heartbeat_ms),
            Deadline::Heartbeat(job.clone()),
        );
    }

    pub(crate) fn heartbeat_deadline(&mut self, now: Timestamp, job: &JobId) {
        self.send_heartbeat(now, job);
    }

    pub(crate) fn on_release(&mut self, now: Timestamp, from: &MemberId, m: Release) {
        let Some(h) = self.state.hosted.get_mut(&m.job) else {
            return;
        };
        if &h.origin != from || h.epoch != m.epoch {
            return;
        }
        if matches!(
            h.phase,
            HostPhase::Finished {
                acknowledged: false
            }
        ) {
            h.phase = HostPhase::Disowned;
            record(&mut h.history, now, "disowned", m.detail);
            self.dirty.insert(StateKey::Hosted(m.job.clone()));
            return;
        }
        self.release_hosted(
            now,
            &m.job,
            &format!("released by the origin: {}", m.detail),
        );
    }

    pub(crate) fn on_receipt_ack(&mut self, now: Timestamp, from: &MemberId, m: ReceiptAck) {
        let Some(h) = self.state.hosted.get_mut(&m.job) else {
            return;
        };
        if &h.origin != from || h.epoch != m.epoch {
            return;
        }
        if let HostPhase::Finished { acknowledged } = &mut h.phase
            && !*acknowledged
        {
            *acknowledged = true;
            // Hosted usage enters the ledger once the origin has recorded the receipt, so
            // both ledgers always hold the same totals.
            let gpu_seconds = h.receipt.as_ref().map_or(0, |(r, _)| r.gpu_seconds);
            let origin = h.origin.clone();
            self.state
                .ledger
                .record(&origin, Entry::Hosted { gpu_seconds }, now);
            self.dirty.insert(StateKey::Ledger);
            self.dirty.insert(StateKey::Hosted(m.job.clone()));
        }
    }

    pub(crate) fn receipt_deadline(&mut self, now: Timestamp, job: &JobId) {
        let Some(h) = self.state.hosted.get(job) else {
            return;
        };
        if let (
            HostPhase::Finished {
                acknowledged: false,
            },
            Some((_, env)),
        ) = (&h.phase, &h.receipt)
        {
            let origin = h.origin.clone();
            let envelope = env.clone();
            self.out.push(crate::Output::Send {
                to: origin,
                envelope,
            });
            self.state.timers.schedule(
                now.saturating_add_ms(self.config.resend_ms),
                Deadline::Receipt(job.clone()),
            );
        }
    }
}
