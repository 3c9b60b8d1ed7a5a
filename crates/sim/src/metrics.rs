//! What a run records as it goes: counters, job waits, GPU occupancy per member, time-series
//! rows, and a running digest over every outcome in the order it happened.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// One member's executor bookkeeping for utilisation.
#[derive(Clone, Debug, Default)]
pub struct Occupancy {
    pub gpus: u32,
    pub busy: u32,
    last_change: u64,
    /// GPU-milliseconds run so far (own and hosted jobs).
    pub busy_gpu_ms: u128,
    /// GPU-milliseconds of jobs hosted for other members.
    pub hosted_gpu_ms: u128,
    /// `busy_gpu_ms` at the previous sample.
    sampled_gpu_ms: u128,
}

impl Occupancy {
    pub fn new(gpus: u32) -> Self {
        Occupancy {
            gpus,
            ..Default::default()
        }
    }

    fn settle(&mut self, now: u64) {
        self.busy_gpu_ms +=
            u128::from(self.busy) * u128::from(now.saturating_sub(self.last_change));
        self.last_change = now;
    }

    pub fn start(&mut self, now: u64, gpus: u32) {
        self.settle(now);
        self.busy += gpus;
    }

    pub fn stop(&mut self, now: u64, gpus: u32, ran_ms: u64, hosted: bool) {
        self.settle(now);
        self.busy = self.busy.saturating_sub(gpus);
        if hosted {
            self.hosted_gpu_ms += u128::from(gpus) * u128::from(ran_ms);
        }
    }

    /// Utilisation since the previous sample, which ended `interval_ms` ago.
    pub fn sample(&mut self, now: u64, interval_ms: u64) -> f64 {
        self.settle(now);
        let used = self.busy_gpu_ms - self.sampled_gpu_ms;
        self.sampled_gpu_ms = self.busy_gpu_ms;
        if self.gpus == 0 || interval_ms == 0 {
            0.0
        } else {
            used as f64 / (f64::from(self.gpus) * interval_ms as f64)
        }
    }

    pub fn finish(&mut self, now: u64) {
        self.settle(now);
    }
}

/// A job the simulator saw submitted and not yet started.
#[derive(Clone, Debug)]
pub struct PendingJob {
    pub submitted: u64,
    pub missed_at: Option<u64>,
}

/// Counters and samples of a run.
#[derive(Debug, Default)]
pub struct Metrics {
    pub events: u64,
    pub core_calls: u64,
    pub state_writes: u64,
    /// Finished records that left the cores' memory (a node's store would archive them).
    pub records_retired: u64,
    pub messages: BTreeMap<&'static str, u64>,
    pub message_bytes: u64,
    pub adverts_published: u64,
    pub advert_deliveries: u64,
    pub dropped_loss: u64,
    pub dropped_partition: u64,
    pub dropped_down: u64,
    pub dropped_silent: u64,
    pub refusals: BTreeMap<String, u64>,
    pub audits: u64,
    pub projects_arrived: u64,
    pub projects_lost_down: u64,
    pub jobs_arrived: u64,
    pub jobs_lost_down: u64,
    pub jobs_started_local: u64,
    pub jobs_started_remote: u64,
    pub jobs_finished: u64,
    pub jobs_missed: u64,
    pub lease_replacements: u64,
    pub placements: u64,
    pub decisions: u64,
    pub crashes: u64,
    pub restarts: u64,
    /// Wait until first start, per started job (ms).
    pub waits_ms: Vec<u64>,
    pub pending_jobs: BTreeMap<String, PendingJob>,
    pub occupancy: Vec<Occupancy>,
    pub series: Vec<SeriesRow>,
    pub member_series: Vec<MemberRow>,
    digest: Sha256,
}

/// Federation-wide counters at one sample.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SeriesRow {
    pub t_hours: f64,
    pub projects: u64,
    pub jobs: u64,
    pub jobs_started: u64,
    pub jobs_waiting: u64,
    pub messages: u64,
    pub adverts: u64,
    pub dropped: u64,
    pub utilisation: f64,
    pub members_down: u64,
}

/// One member at one sample.
#[derive(Clone, Debug)]
pub struct MemberRow {
    pub t_hours: f64,
    pub member: usize,
    pub utilisation: f64,
    pub busy_gpus: u32,
}

impl Metrics {
    pub fn new(gpus: &[u32]) -> Self {
        Metrics {
            occupancy: gpus.iter().map(|g| Occupancy::new(*g)).collect(),
            digest: Sha256::new(),
            ..Default::default()
        }
    }

    /// Feeds one outcome record into the digest.
    pub fn outcome(&mut self, record: &str) {
        self.digest.update(record.as_bytes());
        self.digest.update(b"\n");
    }

    pub fn message(&mut self, kind: &'static str, bytes: usize) {
        *self.messages.entry(kind).or_default() += 1;
        self.message_bytes += bytes as u64;
    }

    pub fn total_messages(&self) -> u64 {
        self.messages.values().sum()
    }

    /// The digest of every outcome so far, then `tail` (the summary).
    pub fn digest_with(&self, tail: &str) -> String {
        let mut d = self.digest.clone();
        d.update(tail.as_bytes());
        d.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    }
}

pub use aiguillage_core::stats::quantile;

/// Jain's fairness index of `xs`: 1 when all equal, 1/n when one has everything.
pub fn jain(xs: &[f64]) -> Option<f64> {
    let n = xs.len() as f64;
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || sq == 0.0 {
        None
    } else {
        Some(sum * sum / (n * sq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_index() {
        assert!((jain(&[1.0, 1.0, 1.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((jain(&[1.0, 0.0, 0.0, 0.0]).unwrap() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn occupancy_integrates_busy_gpus() {
        let mut o = Occupancy::new(4);
        o.start(0, 2);
        o.start(500, 2);
        o.stop(1000, 2, 1000, true);
        let u = o.sample(1000, 1000);
        assert!((u - 0.75).abs() < 1e-12, "{u}");
        assert_eq!(o.hosted_gpu_ms, 2000);
    }
}
