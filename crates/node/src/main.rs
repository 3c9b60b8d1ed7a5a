//! `aiguillage`: the command-line entry point of an Aiguillage federation member.

mod advert_cmd;
mod clock;
mod files;
mod keys_cmd;
mod profiles;
mod roster_cmd;
mod route_cmd;

use std::path::PathBuf;

use aiguillage_wire::{CountryCode, MemberId, PublicKey, Role};
use anyhow::Result;
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

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    if let Err(e) = run(cli.command) {
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

fn run(command: Command) -> Result<()> {
    match command {
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
