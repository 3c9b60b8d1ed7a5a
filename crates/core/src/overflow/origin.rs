//! The origin's side of overflow: placing a job (locally, or by bids, reservation and
//! confirmation at a host), following its lease, taking its receipt.

use aiguillage_wire::{
    Bid, CallForBids, Confirm, EnvVar, Heartbeat, JobId, JobRequirements, JobSpec, JobState,
    JobStatus, MemberId, MessageKind, ReceiptAck, Release, Reserve, Reserved, Timestamp,
    UsageReceipt,
};

use crate::ledger::Entry;
use crate::state::{JobPhase, OriginJob, Placement, PlacementOutcome, StateKey, record};
use crate::timers::Deadline;
use crate::{Core, Notification};

impl Core {
    pub(crate) fn submit_job(
        &mut self,
        now: Timestamp,
        requirements: JobRequirements,
        command: Vec<String>,
        env: Vec<EnvVar>,
    ) {
        let n = self.next_id();
        let job = match JobId::new(format!("{}/{n}", self.me)) {
            Ok(j) => j,
            Err(e) => {
                self.audit(now, "submit_failed", "job", e.to_string());
                return;
            }
        };
        let spec = JobSpec {
            job: job.clone(),
            requirements,
            command,
            env,
        };
        let mut j = OriginJob {
            spec,
            submitted_at: now,
            phase: JobPhase::Queued {
                reason: "just submitted".into(),
            },
            epoch: 0,
            placements: Vec::new(),
            receipt: None,
            history: Vec::new(),
        };
        record(&mut j.history, now, "submitted", "");
        self.state.jobs.insert(job.clone(), j);
        self.dirty.insert(StateKey::Job(job.clone()));
        self.audit(now, "job_submitted", job.as_str(), String::new());
        self.notify(Notification::JobSubmitted { job: job.clone() });
        self.place(now, &job);
    }

    /// Runs the job here if it fits, else looks for a host, else queues it with a reason.
    fn place(&mut self, now: Timestamp, job: &JobId) {
        let Some(j) = self.state.jobs.get(job) else {
            return;
        };
        let gpus = j.spec.requirements.gpus;
        if now > j.spec.requirements.latest_start {
            let reason = match &j.phase {
                JobPhase::Queued { reason } => {
                    format!("latest start passed while waiting: {reason}")
                }
                _ => "latest start passed".to_owned(),
            };
            let phase = JobPhase::Missed {
                reason: reason.clone(),
            };
            self.move_job(now, job, "missed", reason.clone(), phase);
            self.notify(Notification::JobMissed {
                job: job.clone(),
                reason,
            });
            return;
        }
        if gpus <= self.free_gpus() {
            self.start_locally(now, job);
            return;
        }
        let requirements = j.spec.requirements.clone();
        let tried: Vec<MemberId> = j
            .placements
            .iter()
            .filter(|p| {
                matches!(
                    p.outcome,
                    Some(PlacementOutcome::LeaseLost | PlacementOutcome::NoAnswer)
                )
            })
            .map(|p| p.host.clone())
            .collect();
        let last_try = j.placements.iter().map(|p| p.at).max();
        let (mut invited, mut reason) = self.eligible_hosts(now, &requirements, &tried);
        if invited.is_empty() && !tried.is_empty() {
            // Every other host that could run it was tried. One that lost it or did not
            // answer is asked again once it has signed an advert since the last attempt
            // (a restarted host advertises at once), or once four re-placement rounds
            // have passed since it: a host that keeps failing is not asked every round.
            let pause = self.config.replace_retry_ms.saturating_mul(4);
            let waited = last_try.is_none_or(|t| now.millis() >= t.millis().saturating_add(pause));
            let back = |h: &MemberId| {
                waited
                    || self
                        .state
                        .directory
                        .get(h)
                        .is_some_and(|l| Some(l.envelope.issued_at) > last_try)
            };
            let still: Vec<MemberId> = tried.iter().filter(|h| !back(h)).cloned().collect();
            if still.len() < tried.len() {
                (invited, reason) = self.eligible_hosts(now, &requirements, &still);
            }
        }
        if invited.is_empty() {
            self.queue(now, job, reason);
            return;
        }
        let bids_by = now.saturating_add_ms(self.config.bid_window_ms);
        let call = CallForBids {
            job: job.clone(),
            requirements,
            bids_by,
        };
        for m in &invited {
            self.send(now, m, &call);
        }
        if let Some(j) = self.state.jobs.get_mut(job) {
            record(
                &mut j.history,
                now,
                "bidding",
                format!("called {} member(s)", invited.len()),
            );
            j.phase = JobPhase::Bidding {
                bids_by,
                invited,
                bids: Vec::new(),
            };
        }
        self.dirty.insert(StateKey::Job(job.clone()));
        self.state
            .timers
            .schedule(bids_by, Deadline::Bids(job.clone()));
    }

    /// Members that could host `r`, best capacity first, and otherwise why there are none.
    fn eligible_hosts(
        &self,
        now: Timestamp,
        r: &JobRequirements,
        exclude: &[MemberId],
    ) -> (Vec<MemberId>, String) {
        let my_country = self.profile.country;
        let mut fits: Vec<(u32, MemberId)> = Vec::new();
        let mut seen = 0usize;
        let mut residency = 0usize;
        for l in self.state.directory.fresh(now) {
            let a = &l.advert;
            if a.member == self.me || exclude.contains(&a.member) {
                continue;
            }
            seen += 1;
            if !a.gpu.takes_overflow {
                continue;
            }
            if !r.residency.is_empty() && !r.residency.contains(&a.country) {
                residency += 1;
                continue;
            }
            if !a.gpu.overflow_from.is_empty() && !a.gpu.overflow_from.contains(&my_country) {
                continue;
            }
            if let Some(acc) = &r.accelerator
                && a.gpu.accelerator.as_ref() != Some(acc)
            {
                continue;
            }
            if a.gpu.largest_job_gpus.or(a.gpu.total).unwrap_or(0) < r.gpus {
                continue;
            }
            fits.push((a.gpu.free.unwrap_or(0), a.member.clone()));
        }
        fits.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        fits.truncate(self.config.max_bidders);
        let reason = if seen == 0 {
            "no other member is in the directory".to_owned()
        } else if residency == seen {
            format!(
                "the residency rules ({}) exclude every member",
                r.residency
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                "none of {seen} members takes overflow of {} GPU(s){} under these rules ({residency} excluded by residency)",
                r.gpus,
                r.accelerator
                    .as_ref()
                    .map(|a| format!(" of {a}"))
                    .unwrap_or_default()
            )
        };
        (fits.into_iter().map(|(_, m)| m).collect(), reason)
    }

    /// Moves a submitted job to `phase`, noting the step in its history; false if there is
    /// no such job.
    fn move_job(
        &mut self,
        now: Timestamp,
        job: &JobId,
        label: &str,
        detail: String,
        phase: JobPhase,
    ) -> bool {
        let Some(j) = self.state.jobs.get_mut(job) else {
            return false;
        };
        record(&mut j.history, now, label, detail);
        j.phase = phase;
        self.dirty.insert(StateKey::Job(job.clone()));
        true
    }

    fn start_locally(&mut self, now: Timestamp, job: &JobId) {
        if !self.move_job(now, job, "running_locally", String::new(), JobPhase::Local) {
            return;
        }
        let spec = self.state.jobs[job].spec.clone();
        self.advert_stale = true;
        self.out.push(crate::Output::StartJob {
            job: job.clone(),
            epoch: 0,
            spec,
        });
        self.notify(Notification::JobRunningLocally { job: job.clone() });
    }

    /// Queues the job for another placement round. A job already queued for the same
    /// reason keeps its history and is not announced again: only a change is news.
    pub(crate) fn queue(&mut self, now: Timestamp, job: &JobId, reason: String) {
        let Some(j) = self.state.jobs.get(job) else {
            return;
        };
        let unchanged = matches!(&j.phase, JobPhase::Queued { reason: r } if *r == reason);
        if !unchanged {
            let phase = JobPhase::Queued {
                reason: reason.clone(),
            };
            self.move_job(now, job, "queued", reason.clone(), phase);
            self.notify(Notification::JobQueued {
                job: job.clone(),
                reason,
            });
        }
        self.state.timers.schedule(
            now.saturating_add_ms(self.config.replace_retry_ms),
            Deadline::Replace(job.clone()),
        );
    }

    pub(crate) fn replace_deadline(&mut self, now: Timestamp, job: &JobId) {
        if self
            .state
            .jobs
            .get(job)
            .is_some_and(|j| matches!(j.phase, JobPhase::Queued { .. }))
        {
            self.place(now, job);
        }
    }

    /// Starts queued jobs that now fit locally, oldest first.
    pub(crate) fn start_queued_locally(&mut self, now: Timestamp) {
        let queued: Vec<JobId> = self
            .state
            .jobs
            .iter()
            .filter(|(_, j)| matches!(j.phase, JobPhase::Queued { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        for job in queued {
            let fits = self
                .state
                .jobs
                .get(&job)
                .is_some_and(|j| j.spec.requirements.gpus <= self.free_gpus());
            if fits {
                self.place(now, &job);
            }
        }
    }

    pub(crate) fn on_bid(&mut self, now: Timestamp, from: &MemberId, m: Bid) {
        let Some(j) = self.state.jobs.get_mut(&m.job) else {
            return;
        };
        let JobPhase::Bidding { invited, bids, .. } = &mut j.phase else {
            return;
        };
        if !invited.contains(from) || bids.iter().any(|(b, _)| b == from) {
            return;
        }
        bids.push((from.clone(), m.earliest_start));
        let all_in = bids.len() == invited.len();
        self.dirty.insert(StateKey::Job(m.job.clone()));
        if all_in {
            self.choose_host(now, &m.job);
        }
    }

    pub(crate) fn bids_deadline(&mut self, now: Timestamp, job: &JobId) {
        if self.state.jobs.get(job).is_some_and(
            |j| matches!(&j.phase, JobPhase::Bidding { bids_by, .. } if now >= *bids_by),
        ) {
            self.choose_host(now, job);
        }
    }

    /// Orders the bids (earliest start, then the host we owe least, then id) and reserves
    /// the first.
    fn choose_host(&mut self, now: Timestamp, job: &JobId) {
        let Some(j) = self.state.jobs.get(job) else {
            return;
        };
        let JobPhase::Bidding { bids, .. } = &j.phase else {
            return;
        };
        let latest = j.spec.requirements.latest_start;
        let mut ranked: Vec<(Timestamp, f64, MemberId)> = bids
            .iter()
            .filter(|(_, start)| *start <= latest)
            .map(|(m, start)| (*start, self.state.ledger.balance(m, now), m.clone()))
            .collect();
        ranked.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.total_cmp(&b.1))
                .then_with(|| a.2.cmp(&b.2))
        });
        // Hosts reserve only GPUs that are free now; a bid that starts later says when to
        // ask again, not whom to reserve. "Now" at the host may differ from ours by up to
        // the protocol's clock skew.
        let soonest = ranked.first().map(|(start, _, _)| *start);
        let now_there = now.saturating_add_ms(aiguillage_wire::MAX_CLOCK_SKEW_MS);
        let order: Vec<MemberId> = ranked
            .into_iter()
            .filter(|(start, _, _)| *start <= now_there)
            .map(|(_, _, m)| m)
            .collect();
        if order.is_empty() {
            let n = bids.len();
            let why = match soonest {
                Some(t) => format!(
                    "{n} bid(s), none free now; the soonest expects free GPUs in {} s",
                    t.millis().saturating_sub(now.millis()).div_ceil(1000)
                ),
                None => format!("{n} bid(s), none able to start before the latest start"),
            };
            self.queue(now, job, why);
            return;
        }
        self.reserve_next(now, job, order);
    }

    fn reserve_next(&mut self, now: Timestamp, job: &JobId, mut order: Vec<MemberId>) {
        if order.is_empty() {
            self.queue(
                now,
                job,
                "every bidder refused or did not answer the reservation".into(),
            );
            return;
        }
        let host = order.remove(0);
        let hold_until = now.saturating_add_ms(self.config.reserve_ttl_ms);
        let Some(j) = self.state.jobs.get_mut(job) else {
            return;
        };
        j.epoch += 1;
        let epoch = j.epoch;
        j.placements.push(Placement {
            epoch,
            host: host.clone(),
            at: now,
            confirmed: false,
            outcome: None,
        });
        record(
            &mut j.history,
            now,
            "reserving",
            format!("{host}, epoch {epoch}"),
        );
        j.phase = JobPhase::Reserving {
            host: host.clone(),
            hold_until,
            next: order,
        };
        let reserve = Reserve {
            spec: j.spec.clone(),
            epoch,
            hold_until,
        };
        self.dirty.insert(StateKey::Job(job.clone()));
        self.send(now, &host, &reserve);
        let at = hold_until.min(now.saturating_add_ms(self.config.resend_ms));
        self.state
            .timers
            .schedule(at, Deadline::Reserve(job.clone()));
    }

    fn close_placement(&mut self, job: &JobId, epoch: u64, outcome: PlacementOutcome) {
        if let Some(j) = self.state.jobs.get_mut(job)
            && let Some(p) = j.placements.iter_mut().find(|p| p.epoch == epoch)
            && p.outcome.is_none()
        {
            p.outcome = Some(outcome);
        }
    }

    pub(crate) fn reserve_deadline(&mut self, now: Timestamp, job: &JobId) {
        let Some(j) = self.state.jobs.get(job) else {
            return;
        };
        let JobPhase::Reserving {
            host,
            hold_until,
            next,
        } = &j.phase
        else {
            return;
        };
        let (host, hold_until, next, epoch) = (host.clone(), *hold_until, next.clone(), j.epoch);
        if now >= hold_until {
            self.close_placement(job, epoch, PlacementOutcome::NoAnswer);
            self.send(
                now,
                &host,
                &Release {
                    job: job.clone(),
                    epoch,
                    detail: "no answer to the reservation".into(),
                },
            );
            self.reserve_next(now, job, next);
            return;
        }
        let reserve = Reserve {
            spec: j.spec.clone(),
            epoch,
            hold_until,
        };
        self.send(now, &host, &reserve);
        let at = hold_until.min(now.saturating_add_ms(self.config.resend_ms));
        self.state
            .timers
            .schedule(at, Deadline::Reserve(job.clone()));
    }

    /// Tells `host` to drop a placement of ours that is no longer current.
    fn release_stale(
        &mut self,
        now: Timestamp,
        host: &MemberId,
        job: &JobId,
        epoch: u64,
        why: &str,
    ) {
        self.refuse(
            Some(host.clone()),
            None,
            "stale_epoch",
            format!("{job} epoch {epoch}: {why}"),
        );
        self.send(
            now,
            host,
            &Release {
                job: job.clone(),
                epoch,
                detail: why.to_owned(),
            },
        );
    }

    /// The current lease or reservation of `job` is `epoch` at `host`.
    pub(crate) fn is_current(&self, job: &JobId, epoch: u64, host: &MemberId) -> bool {
        self.state.jobs.get(job).is_some_and(|j| {
            j.epoch == epoch
                && matches!(&j.phase,
                    JobPhase::Reserving { host: h, .. } | JobPhase::Leased { host: h, .. } if h == host)
        })
    }

    pub(crate) fn on_reserved(&mut self, now: Timestamp, from: &MemberId, m: Reserved) {
        let reserving = self.state.jobs.get(&m.job).is_some_and(|j| {
            j.epoch == m.epoch
                && matches!(&j.phase, JobPhase::Reserving { host, .. } if host == from)
        });
        if !reserving {
            if m.granted && !self.is_current(&m.job, m.epoch, from) {
                self.release_stale(now, from, &m.job, m.epoch, "reservation no longer wanted");
            }
            return;
        }
        let Some(j) = self.state.jobs.get(&m.job) else {
            return;
        };
        let JobPhase::Reserving { next, .. } = &j.phase else {
            return;
        };
        let next = next.clone();
        if !m.granted {
            self.close_placement(&m.job, m.epoch, PlacementOutcome::Refused);
            self.reserve_next(now, &m.job, next);
            return;
        }
        let lease_until = now.saturating_add_ms(self.config.lease_ttl_ms);
        if let Some(j) = self.state.jobs.get_mut(&m.job) {
            if let Some(p) = j.placements.iter_mut().find(|p| p.epoch == m.epoch) {
                p.confirmed = true;
            }
            record(
                &mut j.history,
                now,
                "leased",
                format!("{from}, epoch {}", m.epoch),
            );
            j.phase = JobPhase::Leased {
                host: from.clone(),
                lease_until,
                acknowledged: false,
                host_state: JobState::Queued,
            };
        }
        self.dirty.insert(StateKey::Job(m.job.clone()));
        self.send(
            now,
            from,
            &Confirm {
                job: m.job.clone(),
                epoch: m.epoch,
                lease_ttl_ms: self.config.lease_ttl_ms,
            },
        );
        self.notify(Notification::JobPlaced {
            job: m.job.clone(),
            host: from.clone(),
            epoch: m.epoch,
        });
        self.audit(
            now,
            "lease_confirmed",
            m.job.as_str(),
            format!("{from} epoch {}", m.epoch),
        );
        self.state
            .timers
            .schedule(lease_until, Deadline::Lease(m.job.clone()));
        self.state.timers.schedule(
            now.saturating_add_ms(self.config.resend_ms),
            Deadline::Confirm(m.job.clone()),
        );
    }

    pub(crate) fn confirm_deadline(&mut self, now: Timestamp, job: &JobId) {
        let Some(j) = self.state.jobs.get(job) else {
            return;
        };
        if let JobPhase::Leased {
            host,
            acknowledged: false,
            ..
        } = &j.phase
        {
            let host = host.clone();
            let m = Confirm {
                job: job.clone(),
                epoch: j.epoch,
                lease_ttl_ms: self.config.lease_ttl_ms,
            };
            self.send(now, &host, &m);
            self.state.timers.schedule(
                now.saturating_add_ms(self.config.resend_ms),
                Deadline::Confirm(job.clone()),
            );
        }
    }

    /// A heartbeat or status from the current host renews the lease.
    fn renew(
        &mut self,
        now: Timestamp,
        from: &MemberId,
        job: &JobId,
        epoch: u64,
        state: JobState,
    ) -> bool {
        if !self.is_current(job, epoch, from) {
            // A heartbeat overtaken by the receipt of the same placement is just late.
            let finished_there = self.state.jobs.get(job).is_some_and(|j| {
                j.epoch == epoch
                    && matches!(&j.phase, JobPhase::Done { host: Some(h), .. } if h == from)
            });
            if self.state.jobs.contains_key(job) && !finished_there {
                self.release_stale(now, from, job, epoch, "this placement is no longer current");
            }
            return false;
        }
        let lease_until = now.saturating_add_ms(self.config.lease_ttl_ms);
        if let Some(j) = self.state.jobs.get_mut(job)
            && let JobPhase::Leased {
                lease_until: l,
                acknowledged,
                host_state,
                ..
            } = &mut j.phase
        {
            *l = lease_until;
            *acknowledged = true;
            *host_state = state;
            self.dirty.insert(StateKey::Job(job.clone()));
            self.state
                .timers
                .schedule(lease_until, Deadline::Lease(job.clone()));
        }
        true
    }

    pub(crate) fn on_heartbeat(&mut self, now: Timestamp, from: &MemberId, m: Heartbeat) {
        self.renew(now, from, &m.job, m.epoch, m.state);
    }

    pub(crate) fn on_job_status(&mut self, now: Timestamp, from: &MemberId, m: JobStatus) {
        if self.renew(now, from, &m.job, m.epoch, m.state)
            && let Some(j) = self.state.jobs.get_mut(&m.job)
        {
            record(&mut j.history, now, m.state.tag(), m.detail);
        }
    }

    pub(crate) fn lease_deadline(&mut self, now: Timestamp, job: &JobId) {
        let Some(j) = self.state.jobs.get(job) else {
            return;
        };
        let JobPhase::Leased {
            host, lease_until, ..
        } = &j.phase
        else {
            return;
        };
        if now < *lease_until {
            return;
        }
        let (host, epoch) = (host.clone(), j.epoch);
        self.close_placement(job, epoch, PlacementOutcome::LeaseLost);
        self.state
            .directory
            .record_breach(&host, now, self.config.behaviour_half_life_ms);
        self.dirty.insert(StateKey::Directory);
        self.send(
            now,
            &host,
            &Release {
                job: job.clone(),
                epoch,
                detail: "lease expired without a heartbeat; the job is placed elsewhere".into(),
            },
        );
        if let Some(j) = self.state.jobs.get_mut(job) {
            record(
                &mut j.history,
                now,
                "lease_lost",
                format!("{host}, epoch {epoch}"),
            );
        }
        self.audit(
            now,
            "lease_lost",
            job.as_str(),
            format!("{host} epoch {epoch}"),
        );
        self.notify(Notification::JobReplaced {
            job: job.clone(),
            lost_host: host,
            epoch,
        });
        self.place(now, job);
    }

    pub(crate) fn on_receipt(
        &mut self,
        now: Timestamp,
        from: &MemberId,
        m: UsageReceipt,
        envelope: aiguillage_wire::Envelope,
    ) {
        let _ = envelope;
        if m.origin != self.me {
            self.refuse_message(
                from,
                MessageKind::UsageReceipt,
                "not_our_job",
                m.job.to_string(),
            );
            return;
        }
        if self.ack_retired_receipt(now, from, &m.job, m.epoch) {
            return;
        }
        let Some(j) = self.state.jobs.get(&m.job) else {
            self.refuse_message(
                from,
                MessageKind::UsageReceipt,
                "unknown_job",
                m.job.to_string(),
            );
            return;
        };
        let done_here = matches!(&j.phase, JobPhase::Done { host: Some(h), .. } if h == from)
            && j.epoch == m.epoch;
        if done_here {
            // A re-sent receipt: acknowledge again.
            self.send(
                now,
                from,
                &ReceiptAck {
                    job: m.job.clone(),
                    epoch: m.epoch,
                },
            );
            return;
        }
        if !self.is_current(&m.job, m.epoch, from) {
            self.release_stale(
                now,
                from,
                &m.job,
                m.epoch,
                "late result for a placement that is no longer current",
            );
            return;
        }
        self.state.ledger.record(
            from,
            Entry::Consumed {
                gpu_seconds: m.gpu_seconds,
            },
            now,
        );
        self.dirty.insert(StateKey::Ledger);
        self.close_placement(&m.job, m.epoch, PlacementOutcome::Completed);
        if let Some(j) = self.state.jobs.get_mut(&m.job) {
            record(
                &mut j.history,
                now,
                m.state.tag(),
                format!(
                    "on {from}, {}, {} GPU-s",
                    m.exit_code
                        .map_or("no exit code".into(), |c| format!("exit {c}")),
                    m.gpu_seconds
                ),
            );
            j.phase = JobPhase::Done {
                state: m.state,
                exit_code: m.exit_code,
                host: Some(from.clone()),
            };
            j.receipt = Some(m.clone());
        }
        self.dirty.insert(StateKey::Job(m.job.clone()));
        self.send(
            now,
            from,
            &ReceiptAck {
                job: m.job.clone(),
                epoch: m.epoch,
            },
        );
        self.notify(Notification::JobFinished {
            job: m.job.clone(),
            host: Some(from.clone()),
            state: m.state,
            exit_code: m.exit_code,
        });
        self.audit(
            now,
            "receipt_recorded",
            m.job.as_str(),
            format!("{from} {} GPU-s", m.gpu_seconds),
        );
    }

    pub(crate) fn cancel_job(&mut self, now: Timestamp, job: &JobId) {
        let Some(j) = self.state.jobs.get(job) else {
            self.audit(now, "cancel_ignored", job.as_str(), "no such job".into());
            return;
        };
        let epoch = j.epoch;
        match j.phase.clone() {
            JobPhase::Local => self.out.push(crate::Output::CancelJob {
                job: job.clone(),
                epoch: 0,
            }),
            JobPhase::Reserving { host, .. } | JobPhase::Leased { host, .. } => {
                self.close_placement(job, epoch, PlacementOutcome::Released);
                self.send(
                    now,
                    &host,
                    &Release {
                        job: job.clone(),
                        epoch,
                        detail: "cancelled by the origin".into(),
                    },
                );
            }
            JobPhase::Done { .. } | JobPhase::Cancelled | JobPhase::Missed { .. } => return,
            JobPhase::Queued { .. } | JobPhase::Bidding { .. } => {}
        }
        self.move_job(
            now,
            job,
            "cancelled",
            "by the operator".into(),
            JobPhase::Cancelled,
        );
        self.advert_stale = true;
    }
}
