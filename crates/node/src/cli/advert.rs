//! `aiguillage advert`: build a signed advert from a profile, inspect one from a file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aiguillage_wire::{Advert, Envelope, GpuCapacity, PublicKey, Sector, SectorLevel, Verified};
use anyhow::{Context, Result};

use super::JsonFlag;
use super::roster as roster_cmd;
use crate::{clock, files, profiles};

#[derive(clap::Subcommand)]
pub enum AdvertCommand {
    /// Build and sign the advert of a member from its profile.
    Build {
        /// The member's profile.
        #[arg(long)]
        profile: PathBuf,
        /// The member's key file.
        #[arg(long)]
        key: PathBuf,
        /// The advert's sequence number; a higher one replaces a lower one.
        #[arg(long)]
        seq: u64,
        /// How long the advert stays valid (e.g. 10m).
        #[arg(long, default_value = "10m")]
        ttl: String,
        /// Where to write the signed advert.
        #[arg(long)]
        out: PathBuf,
    },
    /// Decode, verify and print a signed advert.
    Inspect {
        /// The signed advert.
        file: PathBuf,
        /// Also check that the signer is in this signed roster.
        #[arg(long, requires = "authority")]
        roster: Option<PathBuf>,
        /// The federation authority public key that the roster must be signed by.
        #[arg(long, requires = "roster")]
        authority: Option<PublicKey>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

impl AdvertCommand {
    pub fn run(self) -> Result<()> {
        match self {
            AdvertCommand::Build {
                profile,
                key,
                seq,
                ttl,
                out,
            } => build(&profile, &key, seq, clock::parse_duration(&ttl)?, &out),
            AdvertCommand::Inspect {
                file,
                roster,
                authority,
                json,
            } => inspect(&file, roster.as_deref().zip(authority.as_ref()), json.json),
        }
    }
}

fn build(profile: &Path, key: &Path, seq: u64, ttl: Duration, out: &Path) -> Result<()> {
    let profile = profiles::load_one(profile)?;
    let key = files::read_secret_key(key)?;
    // Capacity in an advert comes from the member's scheduler; the researched system sizes
    // in the profile describe whole machines, not what the federation may use.
    let advert = profile.advert(seq, GpuCapacity::default(), None);
    let now = clock::now();
    let envelope = Envelope::seal(&advert, &profile.id, &key, now, clock::after(now, ttl))
        .context("sealing the advert")?;
    let bytes = envelope.to_bytes();
    files::write_atomic(out, &bytes)?;
    println!(
        "wrote advert of {} seq {} ({} bytes, expires {}) to {}",
        profile.id,
        seq,
        bytes.len(),
        super::table::local_time(envelope.expires_at),
        out.display()
    );
    Ok(())
}

fn inspect(path: &Path, roster: Option<(&Path, &PublicKey)>, json: bool) -> Result<()> {
    let bytes = files::read(path)?;
    let now = clock::now();
    let envelope = Envelope::from_bytes(&bytes)
        .with_context(|| format!("{}: not a valid envelope", path.display()))?;
    let verified: Verified<Advert> = envelope
        .open(now)
        .with_context(|| format!("{}: advert refused", path.display()))?;
    let trust = match roster {
        Some((roster_path, authority)) => {
            let roster = roster_cmd::load_signed(roster_path, authority, now)?;
            roster
                .message
                .authorise(&verified.envelope, now)
                .with_context(|| format!("{}: advert refused by the roster", path.display()))?;
            format!("signer is rostered (serial {})", roster.message.serial)
        }
        None => "signature valid; roster membership not checked (pass --roster and --authority)"
            .to_owned(),
    };
    let a = &verified.message;
    if json {
        let sectors: serde_json::Map<String, serde_json::Value> = Sector::ALL
            .iter()
            .map(|s| (s.tag().to_owned(), a.level(*s).tag().into()))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "member": a.member, "seq": a.seq, "role": a.role.tag(), "name": a.name,
                "country": a.country, "sectors": sectors,
                "services": a.services.iter().map(|s| s.tag()).collect::<Vec<_>>(),
                "languages": a.languages, "countries_served": a.countries_served,
                "gpu": {
                    "total": a.gpu.total, "free": a.gpu.free, "accelerator": a.gpu.accelerator,
                    "largest_job_gpus": a.gpu.largest_job_gpus, "takes_overflow": a.gpu.takes_overflow,
                },
                "issued_at": clock::format_time(verified.envelope.issued_at),
                "expires_at": clock::format_time(verified.envelope.expires_at),
                "signer_key": verified.envelope.key.to_hex(),
                "trust": trust,
            })
        );
        return Ok(());
    }
    let list = |level: SectorLevel| {
        let names: Vec<_> = Sector::ALL
            .iter()
            .filter(|s| a.level(**s) == level)
            .map(|s| s.tag())
            .collect();
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    let unknown = |v: Option<u32>| v.map_or("unknown".to_owned(), |n| n.to_string());
    println!("advert of {} ({}), seq {}", a.member, a.name, a.seq);
    println!("  role {}, country {}", a.role, a.country);
    println!("  priority: {}", list(SectorLevel::Priority));
    println!("  excluded: {}", list(SectorLevel::Excluded));
    println!("  other sectors: {}", a.other_sectors);
    println!(
        "  services: {}",
        a.services
            .iter()
            .map(|s| s.tag())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  languages: {}; serves {}",
        a.languages
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        a.countries_served
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  GPUs: total {}, free {}, takes overflow: {}",
        unknown(a.gpu.total),
        unknown(a.gpu.free),
        a.gpu.takes_overflow
    );
    println!(
        "  issued {}, expires {}",
        super::table::local_time(verified.envelope.issued_at),
        super::table::local_time(verified.envelope.expires_at)
    );
    println!("  signer key {}: {trust}", verified.envelope.key);
    Ok(())
}
