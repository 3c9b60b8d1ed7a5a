//! `aiguillage`: the command-line entry point of an Aiguillage federation member.

mod admin_client;
mod advert_cmd;
mod api;
mod bench;
mod client_cmd;
mod clock;
mod config;
mod daemon;
mod devnet;
mod executor;
mod files;
mod init_cmd;
mod job_file;
mod keys_cmd;
mod metrics;
mod profiles;
mod roster_cmd;
mod route_cmd;

use std::path::PathBuf;

use aiguillage_wire::{CountryCode, MemberId, PublicKey, Role};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "aiguillage",
    version,
    about = "The referral and GPU-overflow network between EuroHPC AI Factories"
)]
struct Cli {
    /// Log format for diagnostics on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// For the verbs that talk to a node: a devnet member's id.
    #[arg(long, global = true)]
    node: Option<String>,
    /// The devnet folder `--node` looks in.
    #[arg(long, global = true, default_value = "devnet-data")]
    devnet_dir: PathBuf,
    /// For the verbs that talk to a node: its admin API address (with --token-file).
    #[arg(long, global = true)]
    api: Option<std::net::SocketAddr>,
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Member keys (ed25519, PKCS#8 PEM).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The federation roster: who may take part, signed by the federation authority.
    #[command(subcommand)]
    Roster(RosterCommand),
    /// Member profiles under config/.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Signed adverts.
    #[command(subcommand)]
    Advert(AdvertCommand),
    /// Create a member's data folder: key, admin token and node config.
    Init {
        #[arg(long)]
        profile: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        /// The signed roster (ask the federation authority).
        #[arg(long)]
        roster: Option<PathBuf>,
        /// The federation authority's public key in hex.
        #[arg(long)]
        authority: Option<String>,
        /// libp2p listen address (repeatable); default /ip4/127.0.0.1/tcp/0.
        #[arg(long)]
        listen: Vec<String>,
        /// A member to dial at start, /ip4/…/tcp/…/p2p/<peer id> (repeatable).
        #[arg(long)]
        bootstrap: Vec<String>,
        #[arg(long, default_value = "127.0.0.1:0")]
        admin: std::net::SocketAddr,
        /// GPUs the local executor may use.
        #[arg(long, default_value_t = 0)]
        gpus: u32,
    },
    /// Run the node (graceful shutdown on SIGINT/SIGTERM).
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Start every member in config/ as its own process on loopback, drive a workload,
    /// and print a summary.
    Devnet {
        /// Comma-separated member ids (default: every profile).
        #[arg(long, value_delimiter = ',')]
        members: Option<Vec<String>>,
        #[arg(long, default_value = "devnet-data")]
        dir: PathBuf,
        #[arg(long, default_value = "config")]
        config_dir: PathBuf,
        #[arg(long, default_value_t = 52)]
        projects: usize,
        #[arg(long, default_value_t = 12)]
        jobs: usize,
        /// Leave the federation up after the workload (Ctrl-C stops it).
        #[arg(long)]
        keep_running: bool,
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
    },
    /// The member's audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Benchmarks on real node processes.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The node's status.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The node's directory of members.
    Directory {
        #[arg(long)]
        json: bool,
    },
    /// Projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Referrals.
    #[command(subcommand)]
    Referral(ReferralCommand),
    /// GPU jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// The reciprocity ledger.
    Ledger {
        #[arg(long)]
        json: bool,
    },
    /// The figures an AI Factory reports to its funders.
    Kpi {
        #[arg(long)]
        json: bool,
    },
    /// Dry-run the routing decision for a project, with the profiles as the directory.
    Route {
        /// The project file (see config/examples/project-*.toml).
        #[arg(long)]
        explain: PathBuf,
        /// The member where the project is filed.
        #[arg(long)]
        from: MemberId,
        /// Folder of member profiles.
        #[arg(long, default_value = "config")]
        members: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a new key; the file is created with mode 0600 and never overwritten.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key and the libp2p PeerId of a key file.
    Show {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RosterCommand {
    /// Start a new draft roster (TOML).
    New {
        #[arg(long)]
        federation: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a member to a draft roster; raises its serial.
    Add {
        draft: PathBuf,
        #[arg(long)]
        id: MemberId,
        /// The member's public key in hex (see `keys show`).
        #[arg(
            long,
            conflicts_with = "key_file",
            required_unless_present = "key_file"
        )]
        public_key: Option<PublicKey>,
        /// Read the public key from the member's key file instead.
        #[arg(long)]
        key_file: Option<PathBuf>,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        country: CountryCode,
        /// Linked factory of an antenna (repeatable).
        #[arg(long = "linked")]
        linked: Vec<MemberId>,
        #[arg(long, default_value = "now")]
        valid_from: String,
        /// Default: one year after --valid-from.
        #[arg(long)]
        valid_until: Option<String>,
    },
    /// Remove a member from a draft roster; raises its serial.
    Remove {
        draft: PathBuf,
        #[arg(long)]
        id: MemberId,
    },
    /// Sign a draft roster with the federation authority key.
    Sign {
        draft: PathBuf,
        #[arg(long)]
        authority_key: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// How long the signed roster stays valid (at most 400 days).
        #[arg(long, default_value = "365days")]
        ttl: String,
    },
    /// Verify a signed roster against the pinned authority public key.
    Verify {
        file: PathBuf,
        #[arg(long)]
        authority: PublicKey,
        #[arg(long)]
        json: bool,
    },
    /// Show a roster (signed or draft) as a table.
    Show {
        file: PathBuf,
        /// Verify a signed roster against this authority public key.
        #[arg(long)]
        authority: Option<PublicKey>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Validate every member profile under a folder.
    Check {
        #[arg(default_value = "config")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum AdvertCommand {
    /// Build and sign the advert of a member from its profile.
    Build {
        #[arg(long)]
        profile: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        seq: u64,
        #[arg(long, default_value = "10m")]
        ttl: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Decode, verify and print a signed advert.
    Inspect {
        file: PathBuf,
        /// Also check that the signer is in this signed roster.
        #[arg(long, requires = "authority")]
        roster: Option<PathBuf>,
        /// The federation authority public key that the roster must be signed by.
        #[arg(long, requires = "roster")]
        authority: Option<PublicKey>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Advert propagation, referral and overflow latency, throughput and idle memory on
    /// loopback; prints a table, and JSON with --json.
    Net {
        #[arg(long, default_value_t = 19)]
        nodes: usize,
        #[arg(long, default_value_t = 40)]
        rounds: usize,
        #[arg(long, default_value_t = 200)]
        referrals: usize,
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        #[arg(long, default_value_t = 20)]
        jobs: usize,
        #[arg(long, default_value = "devnet-data/bench")]
        dir: PathBuf,
        #[arg(long, default_value = "config")]
        config_dir: PathBuf,
        #[arg(long)]
        json: Option<PathBuf>,
        /// Run every host's jobs on this machine's Slurm (scripts/slurm-up.sh) and measure
        /// lease confirmed → running under Slurm too.
        #[arg(long)]
        slurm: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain and signatures (with the node stopped).
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Write the audit log as JSON lines to stdout.
    Export {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// File a project (see config/examples/project-*.toml).
    File {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List the projects filed here.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ReferralCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    /// A referral with its routing explanation and lifecycle history.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    Accept {
        id: String,
        #[arg(long, default_value = "")]
        detail: String,
        #[arg(long)]
        json: bool,
    },
    Decline {
        id: String,
        #[arg(long, default_value = "")]
        detail: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum JobCommand {
    /// Submit a job (see config/examples/job-small.toml).
    Submit {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Where the job stands, where it ran, its exit code and history.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job this member submitted, wherever it runs.
    Cancel {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let target = client_cmd::Target {
        node: cli.node.clone(),
        devnet_dir: cli.devnet_dir.clone(),
        api: cli.api,
        token_file: cli.token_file.clone(),
    };
    if let Err(e) = run(cli.command, &target) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(command: Command, target: &client_cmd::Target) -> Result<()> {
    match command {
        Command::Init {
            profile,
            data_dir,
            roster,
            authority,
            listen,
            bootstrap,
            admin,
            gpus,
        } => init_cmd::init(init_cmd::InitOptions {
            profile,
            data_dir,
            roster,
            authority,
            listen,
            bootstrap,
            admin,
            gpus,
        })
        .map(|_| ()),
        Command::Run { config } => runtime()?.block_on(daemon::run(&config)),
        Command::Devnet {
            members,
            dir,
            config_dir,
            projects,
            jobs,
            keep_running,
            timeout,
            gpu_overrides,
            slurm,
            prepare_only,
        } => runtime()?.block_on(devnet::run(devnet::DevnetOptions {
            prepare_only,
            config_dir,
            dir,
            members,
            projects,
            jobs,
            keep_running,
            timeout: clock::parse_duration(&timeout)?,
            intake: None,
            gpus: gpu_overrides
                .iter()
                .map(|g| devnet::parse_gpu_override(g))
                .collect::<Result<_>>()?,
            slurm: slurm
                .iter()
                .map(|m| MemberId::new(m).map_err(|e| anyhow::anyhow!("--slurm {m}: {e}")))
                .collect::<Result<_>>()?,
        })),
        Command::Bench(BenchCommand::Net {
            nodes,
            rounds,
            referrals,
            in_flight,
            jobs,
            dir,
            config_dir,
            json,
            slurm,
        }) => bench::run(bench::BenchOptions {
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
        Command::Audit(AuditCommand::Verify { data_dir }) => {
            let store = daemon::open_store(&data_dir).context("is the node still running?")?;
            let key = files::read_secret_key(&data_dir.join("key.pem"))?;
            let n = store.audit_verify(&PublicKey::of(&key))?;
            println!(
                "audit log of {} verified: {n} entries, chain intact, every signature valid",
                data_dir.display()
            );
            Ok(())
        }
        Command::Audit(AuditCommand::Export { data_dir }) => {
            let store = daemon::open_store(&data_dir).context("is the node still running?")?;
            for r in store.audit_entries()? {
                println!(
                    "{}",
                    serde_json::json!({
                        "seq": r.seq, "at": clock::format_time(r.at), "event": r.event,
                        "subject": r.subject, "detail": r.detail,
                        "prev": hex::encode(r.prev), "signature": hex::encode(r.signature),
                    })
                );
            }
            Ok(())
        }
        Command::Status { json } => client_cmd::status(target, json),
        Command::Directory { json } => client_cmd::directory(target, json),
        Command::Project(ProjectCommand::File { file, json }) => {
            client_cmd::project_file(target, &file, json)
        }
        Command::Project(ProjectCommand::List { json }) => {
            client_cmd::get_and_print(target, "/projects", json)
        }
        Command::Referral(ReferralCommand::List { json }) => {
            client_cmd::referral_list(target, json)
        }
        Command::Referral(ReferralCommand::Show { id, json }) => {
            client_cmd::referral_show(target, &id, json)
        }
        Command::Referral(ReferralCommand::Accept { id, detail, json }) => {
            client_cmd::referral_decide(target, &id, true, &detail, json)
        }
        Command::Referral(ReferralCommand::Decline { id, detail, json }) => {
            client_cmd::referral_decide(target, &id, false, &detail, json)
        }
        Command::Job(JobCommand::Submit { file, json }) => {
            client_cmd::job_submit(target, &file, json)
        }
        Command::Job(JobCommand::List { json }) => client_cmd::get_and_print(target, "/jobs", json),
        Command::Job(JobCommand::Show { id, json }) => client_cmd::job_show(target, &id, json),
        Command::Job(JobCommand::Cancel { id, json }) => client_cmd::job_cancel(target, &id, json),
        Command::Ledger { json } => client_cmd::get_and_print(target, "/ledger", json),
        Command::Kpi { json } => client_cmd::get_and_print(target, "/kpi", json),
        Command::Keys(KeysCommand::Generate { out }) => keys_cmd::generate(&out),
        Command::Keys(KeysCommand::Show { file, json }) => keys_cmd::show(&file, json),
        Command::Roster(cmd) => run_roster(cmd),
        Command::Profile(ProfileCommand::Check { dir }) => profiles::check(&dir),
        Command::Route {
            explain,
            from,
            members,
            json,
        } => route_cmd::explain(&explain, &from, &members, json),
        Command::Advert(AdvertCommand::Build {
            profile,
            key,
            seq,
            ttl,
            out,
        }) => advert_cmd::build(&profile, &key, seq, clock::parse_duration(&ttl)?, &out),
        Command::Advert(AdvertCommand::Inspect {
            file,
            roster,
            authority,
            json,
        }) => {
            let pinned = roster.as_deref().zip(authority.as_ref());
            advert_cmd::inspect(&file, pinned, json)
        }
    }
}

fn run_roster(cmd: RosterCommand) -> Result<()> {
    match cmd {
        RosterCommand::New { federation, out } => roster_cmd::new(&federation, &out),
        RosterCommand::Add {
            draft,
            id,
            public_key,
            key_file,
            role,
            country,
            linked,
            valid_from,
            valid_until,
        } => {
            let key = match (public_key, key_file) {
                (Some(k), _) => k,
                (None, Some(path)) => PublicKey::of(&files::read_secret_key(&path)?),
                (None, None) => anyhow::bail!("give --public-key or --key-file"),
            };
            let valid_until = match valid_until {
                Some(v) => v,
                None => clock::format_time(clock::after(
                    clock::parse_time(&valid_from)?,
                    std::time::Duration::from_secs(365 * 24 * 3600),
                )),
            };
            roster_cmd::add(
                &draft,
                roster_cmd::NewMember {
                    id,
                    key,
                    role,
                    country,
                    linked_factories: linked,
                    valid_from: &valid_from,
                    valid_until: &valid_until,
                },
            )
        }
        RosterCommand::Remove { draft, id } => roster_cmd::remove(&draft, &id),
        RosterCommand::Sign {
            draft,
            authority_key,
            out,
            ttl,
        } => roster_cmd::sign(&draft, &authority_key, &out, clock::parse_duration(&ttl)?),
        RosterCommand::Verify {
            file,
            authority,
            json,
        } => roster_cmd::verify(&file, &authority, json),
        RosterCommand::Show {
            file,
            authority,
            json,
        } => roster_cmd::show(&file, authority.as_ref(), json),
    }
}
