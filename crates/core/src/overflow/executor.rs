//! What the local executor reports about a job, applied to the job's record: the member's
//! own jobs (epoch 0) and the jobs it hosts.

use aiguillage_wire::{JobId, JobState, JobStatus, Timestamp, UsageReceipt};

use super::RECEIPT_TTL_MS;
use crate::state::{HostPhase, JobPhase, StateKey, record};
use crate::timers::Deadline;
use crate::{Core, ExecutorEvent, Notification};

impl Core {
    pub(crate) fn executor_event(
        &mut self,
        now: Timestamp,
        job: &JobId,
        epoch: u64,
        event: ExecutorEvent,
    ) {
        if epoch == 0 {
            self.local_job_event(now, job, event);
        } else {
            self.hosted_job_event(now, job, epoch, event);
        }
    }

    fn local_job_event(&mut self, now: Timestamp, job: &JobId, event: ExecutorEvent) {
        let Some(j) = self.state.jobs.get_mut(job) else {
            return;
        };
        if !matches!(j.phase, JobPhase::Local | JobPhase::Cancelled) {
            return;
        }
        let Some((state, exit_code, _)) = event.end() else {
            let (label, detail) = match &event {
                ExecutorEvent::Queued { reason } => ("queued", format!("local executor: {reason}")),
                _ => ("running", "local executor".to_owned()),
            };
            record(&mut j.history, now, label, detail);
            self.dirty.insert(StateKey::Job(job.clone()));
            return;
        };
        record(&mut j.history, now, state.tag(), event.describe());
        if j.phase == JobPhase::Local {
            j.phase = JobPhase::Done {
                state,
                exit_code,
                host: None,
            };
        }
        self.dirty.insert(StateKey::Job(job.clone()));
        self.advert_stale = true;
        self.notify(Notification::JobFinished {
            job: job.clone(),
            host: None,
            state,
            exit_code,
        });
        self.start_queued_locally(now);
    }

    fn hosted_job_event(&mut self, now: Timestamp, job: &JobId, epoch: u64, event: ExecutorEvent) {
        let Some(h) = self.state.hosted.get_mut(job) else {
            return;
        };
        if h.epoch != epoch {
            // A stale run of an older epoch: its results are discarded.
            self.out.push(crate::Output::CancelJob {
                job: job.clone(),
                epoch,
            });
            return;
        }
        let HostPhase::Running { started_at, .. } = h.phase else {
            return;
        };
        let detail = event.describe();
        let Some((state, exit_code, gpu_seconds)) = event.end() else {
            let (host_state, status_detail) = match event {
                ExecutorEvent::Queued { reason } => {
                    record(&mut h.history, now, "queued", reason.as_str());
                    (JobState::Queued, reason)
                }
                _ => {
                    h.phase = HostPhase::Running {
                        state: JobState::Running,
                        started_at: Some(now),
                    };
                    record(&mut h.history, now, "running", "");
                    (JobState::Running, "started".to_owned())
                }
            };
            let origin = h.origin.clone();
            self.dirty.insert(StateKey::Hosted(job.clone()));
            // Also a sign of life for the lease.
            self.send(
                now,
                &origin,
                &JobStatus {
                    job: job.clone(),
                    epoch,
                    state: host_state,
                    exit_code: None,
                    detail: status_detail,
                },
            );
            return;
        };
        let origin = h.origin.clone();
        let receipt = UsageReceipt {
            job: job.clone(),
            epoch,
            origin: origin.clone(),
            host: self.me.clone(),
            gpus: h.spec.requirements.gpus,
            started_at: started_at.unwrap_or(now),
            finished_at: now,
            gpu_seconds,
            state,
            exit_code,
        };
        record(&mut h.history, now, state.tag(), detail);
        h.phase = HostPhase::Finished {
            acknowledged: false,
        };
        self.dirty.insert(StateKey::Hosted(job.clone()));
        self.advert_stale = true;
        if let Some(envelope) = self.seal(now, &receipt, RECEIPT_TTL_MS) {
            if let Some(h) = self.state.hosted.get_mut(job) {
                h.receipt = Some((receipt, envelope.clone()));
            }
            self.out.push(crate::Output::Send {
                to: origin.clone(),
                envelope,
            });
            self.state.timers.schedule(
                now.saturating_add_ms(self.config.resend_ms),
                Deadline::Receipt(job.clone()),
            );
        }
        self.audit(
            now,
            "job_hosted_finished",
            job.as_str(),
            format!("for {origin}: {state}"),
        );
    }
}
