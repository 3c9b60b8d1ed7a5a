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
pub(crate) mod table;
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
    /// Whether the command prints a bounded answer and ends (every command but the node,
    /// the devnet and the benchmarks, which hold processes and sockets): such a command
    /// may simply end when its reader closes the pipe.
    pub fn ends_quietly_on_a_closed_pipe(&self) -> bool {
        !matches!(
            self.command,
            Command::Run { .. } | Command::Devnet(_) | Command::Bench(_)
        )
    }

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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every option and argument of every command says what it is for, and the options
    /// that choose a node appear only under the commands that talk to one.
    #[test]
    fn every_option_has_help_and_node_options_only_where_they_apply() {
        fn walk(
            cmd: &clap::Command,
            path: &str,
            missing: &mut Vec<String>,
            node: &mut Vec<String>,
        ) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
                if matches!(id, "api" | "token_file" | "data_dir") {
                    node.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing, node);
            }
        }
        let cmd = super::Cli::command();
        let (mut missing, mut node) = (Vec::new(), Vec::new());
        walk(&cmd, "aiguillage", &mut missing, &mut node);
        assert!(missing.is_empty(), "without help: {missing:#?}");
        for offered in &node {
            let top = offered.split_whitespace().nth(1).unwrap_or("");
            assert!(
                !matches!(
                    top,
                    "run" | "keys" | "roster" | "profile" | "advert" | "route" | "devnet" | "bench"
                ),
                "{offered}: a node option under a command that talks to no node"
            );
        }
    }
}
