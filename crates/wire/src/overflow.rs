//! GPU overflow messages: call for bids, bids, the two-phase lease (`reserve → confirm`),
//! heartbeats, status, and the host-signed usage receipt.

use serde::{Deserialize, Serialize};

use crate::referral::{check_not_origin, check_origin};
use crate::{CountryCode, JobId, JobState, MemberId, Message, MessageKind, Timestamp, WireError};

/// What a job needs from a host; enough to bid on, without the command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequirements {
    pub gpus: u32,
    /// Wall-clock limit; the host kills the job after it.
    pub time_limit_s: u64,
    /// Accelerator model, or `None` for any.
    pub accelerator: Option<String>,
    /// The job is only worth placing if it starts by then.
    pub latest_start: Timestamp,
    /// Countries where the job's data may be processed; empty means any.
    pub residency: Vec<CountryCode>,
    pub priority: u8,
}

impl JobRequirements {
    /// GPU-seconds the job may use at most.
    pub fn max_gpu_seconds(&self) -> u64 {
        u64::from(self.gpus).saturating_mul(self.time_limit_s)
    }
}

/// An environment variable set for the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// The full job, sent only to the host being reserved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub job: JobId,
    pub requirements: JobRequirements,
    /// Program and arguments.
    pub command: Vec<String>,
    pub env: Vec<EnvVar>,
}

/// Origin → eligible members: who can run this, and from when?
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallForBids {
    pub job: JobId,
    pub requirements: JobRequirements,
    pub bids_by: Timestamp,
}

/// Member → origin: I can start it at `earliest_start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    pub job: JobId,
    pub earliest_start: Timestamp,
    pub free_gpus: u32,
    pub accelerator: Option<String>,
}

/// Origin → chosen host: hold capacity for this job until `hold_until` (phase one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserve {
    pub spec: JobSpec,
    /// Fencing token: a re-placement always uses a higher epoch.
    pub epoch: u64,
    pub hold_until: Timestamp,
}

/// Host → origin: the answer to a reserve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserved {
    pub job: JobId,
    pub epoch: u64,
    pub granted: bool,
    pub detail: String,
}

/// Origin → host: run it (phase two). The lease lasts `lease_ttl_ms` past each heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    pub job: JobId,
    pub epoch: u64,
    pub lease_ttl_ms: u64,
}

/// Origin → host: drop the reservation or lease for this epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub job: JobId,
    pub epoch: u64,
    pub detail: String,
}

/// Host → origin: the lease is alive and the job is in `state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub job: JobId,
    pub epoch: u64,
    pub state: JobState,
}

/// Host → origin: the job changed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub job: JobId,
    pub epoch: u64,
    pub state: JobState,
    pub exit_code: Option<i32>,
    pub detail: String,
}

/// Host → origin: what the job used, signed by the host. Both ledgers record it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReceipt {
    pub job: JobId,
    pub epoch: u64,
    pub origin: MemberId,
    pub host: MemberId,
    pub gpus: u32,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub gpu_seconds: u64,
    pub state: JobState,
    pub exit_code: Option<i32>,
}

/// The most of each of a job's stdout and stderr one [`JobOutput`] carries: its end.
pub const OUTPUT_TAIL_BYTES: usize = 192 * 1024;

/// Origin → host: send the end of the job's stdout and stderr (at most `max_bytes` of
/// each, itself at most [`OUTPUT_TAIL_BYTES`]). Only the job's origin may ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRequest {
    pub job: JobId,
    pub epoch: u64,
    pub max_bytes: u32,
}

/// Host → origin: the end of the job's output as the host holds it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutput {
    pub job: JobId,
    pub epoch: u64,
    /// The last bytes of stdout; `stdout_size` says how long the whole is.
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    pub stdout_size: u64,
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
    pub stderr_size: u64,
}

/// Origin → host: the receipt was recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptAck {
    pub job: JobId,
    pub epoch: u64,
}

impl Message for CallForBids {
    const KIND: MessageKind = MessageKind::CallForBids;
    fn subject(&self) -> Option<&str> {
        Some(self.job.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_origin("job", self.job.as_str(), signer)?;
        check_gpus(self.requirements.gpus)
    }
}

impl Message for Bid {
    const KIND: MessageKind = MessageKind::Bid;
    fn subject(&self) -> Option<&str> {
        Some(self.job.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_not_origin("job", self.job.as_str(), signer)
    }
}

impl Message for Reserve {
    const KIND: MessageKind = MessageKind::Reserve;
    fn subject(&self) -> Option<&str> {
        Some(self.spec.job.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_origin("job", self.spec.job.as_str(), signer)?;
        check_gpus(self.spec.requirements.gpus)?;
        check_epoch(self.epoch)?;
        if self.spec.command.is_empty() {
            return Err(WireError::invalid("spec.command", "must name a program"));
        }
        Ok(())
    }
}

impl Message for Reserved {
    const KIND: MessageKind = MessageKind::Reserved;
    fn subject(&self) -> Option<&str> {
        Some(self.job.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_not_origin("job", self.job.as_str(), signer)?;
        check_epoch(self.epoch)
    }
}

impl Message for Confirm {
    const KIND: MessageKind = MessageKind::Confirm;
    fn subject(&self) -> Option<&str> {
        Some(self.job.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_origin("job", self.job.as_str(), signer)?;
        check_epoch(self.epoch)
    }
}

impl Message for Release {
    const KIND: MessageKind = MessageKind::Release;
    fn subject(&self) -> Option<&str> {
        Some(self.job.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_origin("job", self.job.as_str(), signer)?;
        check_epoch(self.epoch)
    }
}

impl Message for Heartbeat {
    const KIND: MessageKind = MessageKind::Heartbeat;
    fn subject(&self) -> Option<&str> {
        Some(self.job.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_not_origin("job", self.job.as_str(), signer)?;
        check_epoch(self.epoch)
    }
}

impl Message for JobStatus {
    const KIND: MessageKind = MessageKind::JobStatus;
    fn subject(&self) -> Option<&str> {
        Some(self.job.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_not_origin("job", self.job.as_str(), signer)?;
        check_epoch(self.epoch)
    }
}

impl Message for UsageReceipt {
    const KIND: MessageKind = MessageKind::UsageReceipt;
    fn subject(&self) -> Option<&str> {
        Some(self.job.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_epoch(self.epoch)?;
        if &self.host != signer {
            return Err(WireError::SignerMismatch {
                signer: signer.to_string(),
                field: "host",
                claimed: self.host.to_string(),
            });
        }
        if self.job.origin() != Some(self.origin.as_str()) {
            return Err(WireError::invalid(
                "origin",
                format!("{} did not mint job {}", self.origin, self.job),
            ));
        }
        if self.origin == self.host {
            return Err(WireError::invalid(
                "host",
                "a member does not host for itself",
            ));
        }
        if self.finished_at < self.started_at {
            return Err(WireError::invalid("finished_at", "before started_at"));
        }
        // GPU-seconds cannot exceed GPUs × wall time (rounded up to the second).
        let wall_s = (self.finished_at.millis() - self.started_at.millis()).div_ceil(1000);
        let most = u64::from(self.gpus).saturating_mul(wall_s + 1);
        if self.gpu_seconds > most {
            return Err(WireError::invalid(
                "gpu_seconds",
                format!(
                    "{} exceeds {} GPUs over {wall_s} s",
                    self.gpu_seconds, self.gpus
                ),
            ));
        }
        if !self.state.is_final() {
            return Err(WireError::invalid(
                "state",
                "a receipt is for a finished job",
            ));
        }
        Ok(())
    }
}

impl Message for ReceiptAck {
    const KIND: MessageKind = MessageKind::ReceiptAck;
    fn subject(&self) -> Option<&str> {
        Some(self.job.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_origin("job", self.job.as_str(), signer)?;
        check_epoch(self.epoch)
    }
}

fn check_gpus(gpus: u32) -> Result<(), WireError> {
    if gpus == 0 {
        return Err(WireError::invalid("gpus", "a job needs at least one GPU"));
    }
    Ok(())
}

fn check_epoch(epoch: u64) -> Result<(), WireError> {
    if epoch == 0 {
        return Err(WireError::invalid("epoch", "epochs count from 1"));
    }
    Ok(())
}

impl Message for OutputRequest {
    const KIND: MessageKind = MessageKind::OutputRequest;
    fn subject(&self) -> Option<&str> {
        Some(self.job.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_origin("job", self.job.as_str(), signer)?;
        check_epoch(self.epoch)?;
        if self.max_bytes == 0 || self.max_bytes as usize > OUTPUT_TAIL_BYTES {
            return Err(WireError::invalid(
                "max_bytes",
                "must be 1 to 196608 (OUTPUT_TAIL_BYTES)",
            ));
        }
        Ok(())
    }
}

impl Message for JobOutput {
    const KIND: MessageKind = MessageKind::JobOutput;
    fn subject(&self) -> Option<&str> {
        Some(self.job.as_str())
    }
    fn validate(&self, signer: &MemberId) -> Result<(), WireError> {
        check_not_origin("job", self.job.as_str(), signer)?;
        check_epoch(self.epoch)?;
        for (field, bytes, size) in [
            ("stdout", &self.stdout, self.stdout_size),
            ("stderr", &self.stderr, self.stderr_size),
        ] {
            if bytes.len() > OUTPUT_TAIL_BYTES {
                return Err(WireError::invalid(
                    field,
                    "holds more than OUTPUT_TAIL_BYTES",
                ));
            }
            if (bytes.len() as u64) > size {
                return Err(WireError::invalid(field, "is longer than its stated size"));
            }
        }
        Ok(())
    }
}
