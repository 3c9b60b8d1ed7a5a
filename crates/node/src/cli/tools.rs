//! `aiguillage devnet` and `aiguillage bench`: the whole federation on one machine, and the
//! benchmarks that run on it.

use std::path::PathBuf;

use aiguillage_wire::MemberId;
use anyhow::Result;

use crate::clock;
use crate::tools::{bench, console_bench, devnet, floor};

/// `aiguillage devnet`.
#[derive(clap::Args)]
pub struct DevnetArgs {
    /// Comma-separated member ids (default: every profile).
    #[arg(long, value_delimiter = ',')]
    members: Option<Vec<String>>,
    /// Where the members' data folders go.
    #[arg(long, default_value = "devnet-data")]
    dir: PathBuf,
    /// The folder of member profiles and devnet assumptions.
    #[arg(long, default_value = "config")]
    config_dir: PathBuf,
    /// Projects to file across the members.
    #[arg(long, default_value_t = 52)]
    projects: usize,
    /// GPU jobs to submit at the members with the fewest GPUs.
    #[arg(long, default_value_t = 12)]
    jobs: usize,
    /// Leave the federation up after the workload (Ctrl-C stops it).
    #[arg(long)]
    keep_running: bool,
    /// How long an adviser has to decide on an offer that needs a decision (offers live
    /// at least as long).
    #[arg(long, default_value = "10s")]
    decision_ttl: String,
    /// How long the workload may take to settle.
    #[arg(long, default_value = "120s")]
    timeout: String,
    /// GPU slots for a member, overriding config/devnet/assumptions.toml
    /// (`--gpus lu-l-aif=0` makes Luxembourg a full factory). Repeatable.
    #[arg(long = "gpus", value_name = "MEMBER=N", value_delimiter = ',')]
    gpu_overrides: Vec<String>,
    /// Run this member's jobs on this machine's Slurm (scripts/slurm-up.sh starts one)
    /// instead of local processes. Repeatable.
    #[arg(long, value_name = "MEMBER", value_delimiter = ',')]
    slurm: Vec<String>,
    /// Write every member's key, token and node.toml and the signed roster into --dir,
    /// then stop: start the members yourself (elsewhere, or in network namespaces).
    #[arg(long)]
    prepare_only: bool,
}

impl DevnetArgs {
    pub fn run(self) -> Result<()> {
        let options = devnet::DevnetOptions {
            prepare_only: self.prepare_only,
            config_dir: self.config_dir,
            dir: self.dir,
            members: self.members,
            projects: self.projects,
            jobs: self.jobs,
            keep_running: self.keep_running,
            timeout: clock::parse_duration(&self.timeout)
                .map_err(|e| anyhow::anyhow!("--timeout: {e}"))?,
            intake: None,
            decision_ttl: Some(
                clock::parse_duration(&self.decision_ttl)
                    .map_err(|e| anyhow::anyhow!("--decision-ttl: {e}"))?,
            ),
            gpus: self
                .gpu_overrides
                .iter()
                .map(|g| devnet::parse_gpu_override(g))
                .collect::<Result<_>>()?,
            slurm: self
                .slurm
                .iter()
                .map(|m| MemberId::new(m).map_err(|e| anyhow::anyhow!("--slurm {m}: {e}")))
                .collect::<Result<_>>()?,
        };
        super::runtime()?.block_on(devnet::run(options))
    }
}

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Advert propagation, referral and overflow latency, throughput and idle memory on
    /// loopback; prints a table, and JSON with --json.
    Net {
        /// Members to start.
        #[arg(long, default_value_t = 19)]
        nodes: usize,
        /// Adverts published, one member after another.
        #[arg(long, default_value_t = 40)]
        rounds: usize,
        /// Referrals filed for the throughput figure.
        #[arg(long, default_value_t = 200)]
        referrals: usize,
        /// Referrals in flight at once.
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// Overflow jobs for the lease figure.
        #[arg(long, default_value_t = 20)]
        jobs: usize,
        /// Where the members' data folders go.
        #[arg(long, default_value = "devnet-data/bench")]
        dir: PathBuf,
        /// The folder of member profiles.
        #[arg(long, default_value = "config")]
        config_dir: PathBuf,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Run every host's jobs on this machine's Slurm (scripts/slurm-up.sh) and measure
        /// lease confirmed → running under Slurm too.
        #[arg(long)]
        slurm: bool,
    },
    /// How fast a change at one member shows in another member's open console (p50, p99
    /// and the network's floor), node memory with consoles open, and each page's weight.
    Console {
        /// Changes to time (filings at one member, each an offer in the other's inbox).
        #[arg(long, default_value_t = 100)]
        changes: usize,
        /// Consoles open at once for the memory figure.
        #[arg(long, default_value_t = 5)]
        consoles: usize,
        /// Where the members' data folders go.
        #[arg(long, default_value = "devnet-data/bench-console")]
        dir: PathBuf,
        /// The folder of member profiles.
        #[arg(long, default_value = "config")]
        config_dir: PathBuf,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A bare peer that answers every request at once: the far end of the round-trip
    /// floor `bench net` measures.
    #[command(hide = true)]
    Echo {
        /// The PeerId allowed to connect.
        #[arg(long)]
        allow: String,
    },
}

impl BenchCommand {
    pub fn run(self) -> Result<()> {
        match self {
            BenchCommand::Net {
                nodes,
                rounds,
                referrals,
                in_flight,
                jobs,
                dir,
                config_dir,
                json,
                slurm,
            } => bench::run(bench::BenchOptions {
                slurm,
                config_dir,
                dir,
                nodes,
                rounds,
                referrals,
                in_flight,
                jobs,
                json,
            }),
            BenchCommand::Console {
                changes,
                consoles,
                dir,
                config_dir,
                json,
            } => console_bench::run(console_bench::ConsoleBenchOptions {
                config_dir,
                dir,
                changes,
                consoles,
                json,
            }),
            BenchCommand::Echo { allow } => super::runtime()?.block_on(floor::echo(&allow)),
        }
    }
}
