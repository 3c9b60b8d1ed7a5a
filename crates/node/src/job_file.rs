//! The job file an operator submits (`JOB.toml`, or the same fields as JSON to the API).

use std::collections::BTreeMap;

use aiguillage_wire::{CountryCode, EnvVar, JobRequirements, Timestamp};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub gpus: u32,
    pub time_limit_s: u64,
    #[serde(default)]
    pub accelerator: Option<String>,
    /// The job is only worth running if it starts within this many seconds.
    #[serde(default = "default_start_within")]
    pub start_within_s: u64,
    /// Countries where the job's data may be processed; empty means any.
    #[serde(default)]
    pub residency: Vec<CountryCode>,
    #[serde(default)]
    pub priority: u8,
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_start_within() -> u64 {
    3600
}

impl JobFile {
    pub fn requirements(&self, now: Timestamp) -> JobRequirements {
        JobRequirements {
            gpus: self.gpus,
            time_limit_s: self.time_limit_s,
            accelerator: self.accelerator.clone(),
            latest_start: now.saturating_add_ms(self.start_within_s.saturating_mul(1000)),
            residency: self.residency.clone(),
            priority: self.priority,
        }
    }

    pub fn env(&self) -> Vec<EnvVar> {
        self.env
            .iter()
            .map(|(name, value)| EnvVar {
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    }

    pub fn check(&self) -> Result<(), String> {
        if self.gpus == 0 {
            return Err("gpus must be at least 1".into());
        }
        if self.command.is_empty() {
            return Err("command must name a program".into());
        }
        if self.time_limit_s == 0 {
            return Err("time_limit_s must be at least 1".into());
        }
        Ok(())
    }
}
