//! A federated job's output for its submitter: the origin asks the host for the end of
//! the job's stdout and stderr, the node at the host reads it from the job's folder, and
//! the host sends it back signed. Only the job's origin may ask (the job id names it, and
//! the host checks it against the lease), and only the job's host may answer.

use aiguillage_wire::{
    JobId, JobOutput, MemberId, MessageKind, OUTPUT_TAIL_BYTES, OutputRequest, Timestamp,
};

use crate::Core;
use crate::io::Output;

impl Core {
    /// The operator asks for the end of a job's output (`Input::RequestOutput`): sent to
    /// the host of its latest placement. A job that never left this member has none to
    /// fetch; its output is in this node's own job folder.
    pub(crate) fn request_output(&mut self, now: Timestamp, job: &JobId) {
        let Some(j) = self.state.jobs.get(job) else {
            return;
        };
        let Some(p) = j.placements.iter().rev().find(|p| p.confirmed) else {
            return;
        };
        let (host, epoch) = (p.host.clone(), p.epoch);
        self.pending_outputs
            .insert(job.clone(), (host.clone(), epoch));
        self.send(
            now,
            &host,
            &OutputRequest {
                job: job.clone(),
                epoch,
                max_bytes: OUTPUT_TAIL_BYTES as u32,
            },
        );
    }

    /// Host side: the origin asks for the output of a job run here for it.
    pub(crate) fn on_output_request(&mut self, _now: Timestamp, from: &MemberId, m: OutputRequest) {
        let Some(h) = self.state.hosted.get(&m.job) else {
            self.refuse_message(
                from,
                MessageKind::OutputRequest,
                "unknown_job",
                m.job.to_string(),
            );
            return;
        };
        if &h.origin != from || h.epoch != m.epoch {
            self.refuse_message(
                from,
                MessageKind::OutputRequest,
                "not_our_job",
                format!("{} epoch {} is not a lease of {from}", m.job, m.epoch),
            );
            return;
        }
        self.out.push(Output::ReadOutput {
            job: m.job,
            epoch: m.epoch,
            to: from.clone(),
            max_bytes: m.max_bytes,
        });
    }

    /// Host side: the node read the output (`Input::OutputRead`); sent if the job is still
    /// the origin's lease here.
    pub(crate) fn send_output(&mut self, now: Timestamp, to: &MemberId, output: JobOutput) {
        let current = self
            .state
            .hosted
            .get(&output.job)
            .is_some_and(|h| &h.origin == to && h.epoch == output.epoch);
        if current {
            self.send(now, to, &output);
        }
    }

    /// Origin side: a host sent the end of a job's output. Taken only as the answer to a
    /// request this member made of that host for that lease; it goes to the node, not into
    /// the job's record.
    pub(crate) fn on_job_output(&mut self, _now: Timestamp, from: &MemberId, m: JobOutput) {
        if !self.state.jobs.contains_key(&m.job) {
            self.refuse_message(
                from,
                MessageKind::JobOutput,
                "unknown_job",
                m.job.to_string(),
            );
            return;
        }
        let asked = self
            .pending_outputs
            .get(&m.job)
            .is_some_and(|(host, epoch)| host == from && *epoch == m.epoch);
        if !asked {
            self.refuse_message(
                from,
                MessageKind::JobOutput,
                "not_our_job",
                format!(
                    "no output of {} epoch {} was asked of {from}",
                    m.job, m.epoch
                ),
            );
            return;
        }
        self.pending_outputs.remove(&m.job);
        self.out.push(Output::OutputArrived {
            host: from.clone(),
            output: m,
        });
    }
}
