//! The command line: one file per verb group, each with its clap types and what it runs.
//! Options shared by several verbs are `Args` structs defined once and flattened where
//! they apply.

mod advert;
mod audit;
pub mod init;
mod keys;
mod node;
mod profile;
pub mod roster;
mod route;
mod token;
mod tools;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "aiguillage",
    version,
    about = "The referral and GPU-overflow network between EuroHPC AI Factories"
)]
pub struct Cli {
    /// Log format for diagnostics on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// `--json`: print the answer as JSON instead of a table.
#[derive(clap::Args, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Member keys (ed25519, PKCS#8 PEM).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The federation roster: who may take part, signed by the federation authority.
    #[command(subcommand)]
    Roster(roster::RosterCommand),
    /// Member profiles under config/.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// Signed adverts.
    #[command(subcommand)]
    Advert(advert::AdvertCommand),
    /// Create a member's data folder: key, admin token and node config.
    Init(init::InitOptions),
    /// Run the node (graceful shutdown on SIGINT/SIGTERM).
    Run {
        /// The node's config, as `init` wrote it.
        #[arg(long)]
        config: PathBuf,
    },
    /// Start every member in config/ as its own process on loopback, drive a workload,
    /// and print a summary.
    Devnet(tools::DevnetArgs),
    /// Benchmarks on real node processes.
    #[command(subcommand)]
    Bench(tools::BenchCommand),
    /// The member's audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Dry-run the routing decision for a project, with the profiles as the directory.
    Route(route::RouteArgs),
    /// The named users of the admin API and console, with their roles.
    #[command(subcommand)]
    Token(token::TokenCommand),
    #[command(flatten)]
    Node(node::NodeCommand),
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

impl Cli {
    pub fn run(self) -> Result<()> {
        match self.command {
            Command::Keys(c) => c.run(),
            Command::Roster(c) => c.run(),
            Command::Profile(c) => c.run(),
            Command::Advert(c) => c.run(),
            Command::Init(o) => init::init(o).map(|_| ()),
            Command::Run { config } => runtime()?.block_on(crate::daemon::run(&config)),
            Command::Devnet(a) => a.run(),
            Command::Bench(c) => c.run(),
            Command::Audit(c) => c.run(),
            Command::Route(a) => a.run(),
            Command::Token(c) => c.run(),
            Command::Node(c) => c.run(),
        }
    }
}
