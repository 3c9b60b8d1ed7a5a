//! `aiguillage roster`: edit a draft roster (TOML), sign it with the federation authority
//! key, verify and show signed rosters.
//!
//! A draft is human-edited TOML with RFC 3339 times and hex keys; a signed roster is the
//! binary envelope that nodes pin against the authority key. Every edit of a draft raises
//! its serial, so the roster signed from it replaces the previous one.

use std::path::{Path, PathBuf};

use aiguillage_wire::{
    AUTHORITY_ID, CountryCode, Envelope, MemberId, Message, PublicKey, Role, Roster, RosterEntry,
    Timestamp, Verified,
};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::JsonFlag;
use crate::{clock, files};

#[derive(clap::Subcommand)]
pub enum RosterCommand {
    /// Start a new draft roster (TOML).
    New {
        /// The federation's name, e.g. eurohpc-ai-factories.
        #[arg(long)]
        federation: String,
        /// Where to write the draft.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a member to a draft roster; raises its serial.
    Add {
        /// The draft roster.
        draft: PathBuf,
        /// The member's id, e.g. lu-l-aif.
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
        /// factory or antenna.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The member's country (ISO 3166-1 alpha-2).
        #[arg(long)]
        country: CountryCode,
        /// Linked factory of an antenna (repeatable).
        #[arg(long = "linked")]
        linked: Vec<MemberId>,
        /// When the entry becomes valid (RFC 3339, or `now`).
        #[arg(long, default_value = "now")]
        valid_from: String,
        /// When the entry stops being valid (RFC 3339). Default: one year after --valid-from.
        #[arg(long)]
        valid_until: Option<String>,
    },
    /// Remove a member from a draft roster; raises its serial.
    Remove {
        /// The draft roster.
        draft: PathBuf,
        /// The member to remove.
        #[arg(long)]
        id: MemberId,
    },
    /// Sign a draft roster with the federation authority key.
    Sign {
        /// The draft roster.
        draft: PathBuf,
        /// The federation authority's key file.
        #[arg(long)]
        authority_key: PathBuf,
        /// Where to write the signed roster.
        #[arg(long)]
        out: PathBuf,
        /// How long the signed roster stays valid (at most 400 days).
        #[arg(long, default_value = "365days")]
        ttl: String,
    },
    /// Verify a signed roster against the pinned authority public key.
    Verify {
        /// The signed roster.
        file: PathBuf,
        /// The federation authority's public key in hex.
        #[arg(long)]
        authority: PublicKey,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Install the signed roster the authority sent at a member set up by `init`: it is
    /// verified against the authority's key, the member must be in it with its own key,
    /// and it is copied next to node.toml, which then names it and the authority.
    Install {
        /// The signed roster.
        file: PathBuf,
        /// The federation authority's public key in hex (the authority sends it with the
        /// roster).
        #[arg(long)]
        authority: PublicKey,
        /// The member's node.toml, as `init` wrote it.
        #[arg(long)]
        config: PathBuf,
    },
    /// Show a roster (signed or draft) as a table.
    Show {
        /// The roster, signed or draft.
        file: PathBuf,
        /// Verify a signed roster against this authority public key.
        #[arg(long)]
        authority: Option<PublicKey>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}

impl RosterCommand {
    pub fn run(self) -> Result<()> {
        match self {
            RosterCommand::New { federation, out } => new(&federation, &out),
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
                    (None, None) => bail!("give --public-key or --key-file"),
                };
                let valid_until = match valid_until {
                    Some(v) => v,
                    None => clock::format_time(clock::after(
                        clock::parse_time(&valid_from)?,
                        std::time::Duration::from_secs(365 * 24 * 3600),
                    )),
                };
                add(
                    &draft,
                    NewMember {
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
            RosterCommand::Remove { draft, id } => remove(&draft, &id),
            RosterCommand::Sign {
                draft,
                authority_key,
                out,
                ttl,
            } => sign(&draft, &authority_key, &out, clock::parse_duration(&ttl)?),
            RosterCommand::Verify {
                file,
                authority,
                json,
            } => verify(&file, &authority, json.json),
            RosterCommand::Install {
                file,
                authority,
                config,
            } => install(&file, &authority, &config),
            RosterCommand::Show {
                file,
                authority,
                json,
            } => show(&file, authority.as_ref(), json.json),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Draft {
    federation: String,
    serial: u64,
    #[serde(default)]
    members: Vec<DraftMember>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DraftMember {
    id: MemberId,
    key: String,
    role: Role,
    country: CountryCode,
    #[serde(default)]
    linked_factories: Vec<MemberId>,
    valid_from: String,
    valid_until: String,
}

fn load_draft(path: &Path) -> Result<Draft> {
    let text = files::read_to_string(path)?;
    toml::from_str(&text).with_context(|| format!("{} is not a roster draft", path.display()))
}

fn save_draft(path: &Path, draft: &Draft) -> Result<()> {
    let text = toml::to_string(draft).context("encoding the roster draft")?;
    files::write_atomic(path, text.as_bytes())
}

impl Draft {
    fn to_roster(&self, path: &Path) -> Result<Roster> {
        let members = self
            .members
            .iter()
            .map(|m| {
                let ctx = || format!("{}: member {}", path.display(), m.id);
                Ok(RosterEntry {
                    id: m.id.clone(),
                    key: PublicKey::from_hex(&m.key).with_context(ctx)?,
                    role: m.role,
                    country: m.country,
                    linked_factories: m.linked_factories.clone(),
                    valid_from: clock::parse_time(&m.valid_from).with_context(ctx)?,
                    valid_until: clock::parse_time(&m.valid_until).with_context(ctx)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let roster = Roster {
            federation: self.federation.clone(),
            serial: self.serial,
            members,
        };
        roster
            .validate(&MemberId::new(AUTHORITY_ID)?)
            .with_context(|| format!("{} is not a valid roster", path.display()))?;
        Ok(roster)
    }
}

fn new(federation: &str, out: &Path) -> Result<()> {
    files::refuse_existing(out)?;
    if federation.trim().is_empty() {
        bail!("--federation must not be empty");
    }
    save_draft(
        out,
        &Draft {
            federation: federation.to_owned(),
            serial: 1,
            members: vec![],
        },
    )?;
    println!(
        "wrote draft roster {} (serial 1, no members)",
        out.display()
    );
    Ok(())
}

/// What `roster add` needs to know about a member.
struct NewMember<'a> {
    pub id: MemberId,
    pub key: PublicKey,
    pub role: Role,
    pub country: CountryCode,
    pub linked_factories: Vec<MemberId>,
    pub valid_from: &'a str,
    pub valid_until: &'a str,
}

fn add(path: &Path, member: NewMember<'_>) -> Result<()> {
    let mut draft = load_draft(path)?;
    if draft.members.iter().any(|m| m.id == member.id) {
        bail!(
            "{} is already in {}; remove it first to replace it",
            member.id,
            path.display()
        );
    }
    let key = member.key.to_hex();
    if let Some(other) = draft.members.iter().find(|m| m.key == key) {
        bail!(
            "that key already belongs to {} in {}",
            other.id,
            path.display()
        );
    }
    let from = clock::parse_time(member.valid_from)?;
    let until = clock::parse_time(member.valid_until)?;
    if until <= from {
        bail!("--valid-until must be after --valid-from");
    }
    draft.members.push(DraftMember {
        id: member.id.clone(),
        key,
        role: member.role,
        country: member.country,
        linked_factories: member.linked_factories,
        valid_from: clock::format_time(from),
        valid_until: clock::format_time(until),
    });
    draft.serial += 1;
    // Validate the whole roster before saving, so a draft on disk always signs.
    draft.to_roster(path)?;
    save_draft(path, &draft)?;
    println!(
        "added {} to {} (serial {})",
        member.id,
        path.display(),
        draft.serial
    );
    Ok(())
}

fn remove(path: &Path, id: &MemberId) -> Result<()> {
    let mut draft = load_draft(path)?;
    let before = draft.members.len();
    draft.members.retain(|m| &m.id != id);
    if draft.members.len() == before {
        bail!("{id} is not in {}", path.display());
    }
    draft.serial += 1;
    draft.to_roster(path)?;
    save_draft(path, &draft)?;
    println!(
        "removed {id} from {} (serial {})",
        path.display(),
        draft.serial
    );
    Ok(())
}

fn sign(path: &Path, authority_key: &Path, out: &Path, ttl: std::time::Duration) -> Result<()> {
    let roster = load_draft(path)?.to_roster(path)?;
    let key = files::read_secret_key(authority_key)?;
    let now = clock::now();
    let envelope = Envelope::seal(
        &roster,
        &MemberId::new(AUTHORITY_ID)?,
        &key,
        now,
        clock::after(now, ttl),
    )
    .with_context(|| format!("signing {}", path.display()))?;
    files::write_atomic(out, &envelope.to_bytes())?;
    println!(
        "signed {} members, serial {}, as authority {} → {} (valid until {})",
        roster.members.len(),
        roster.serial,
        envelope.key,
        out.display(),
        super::table::local_time(envelope.expires_at)
    );
    Ok(())
}

/// Reads a signed roster and verifies it against the pinned authority at `now`.
pub fn load_signed(path: &Path, authority: &PublicKey, now: Timestamp) -> Result<Verified<Roster>> {
    let bytes = files::read(path)?;
    let envelope = Envelope::from_bytes(&bytes)
        .with_context(|| format!("{} is not a signed roster", path.display()))?;
    Roster::verify_signed(envelope, authority, now)
        .with_context(|| format!("refusing roster {}", path.display()))
}

fn verify(path: &Path, authority: &PublicKey, json: bool) -> Result<()> {
    let verified = load_signed(path, authority, clock::now())?;
    let r = &verified.message;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "valid": true,
                "federation": r.federation,
                "serial": r.serial,
                "members": r.members.len(),
                "expires_at": clock::format_time(verified.envelope.expires_at),
            })
        );
    } else {
        println!(
            "valid: roster of {:?}, serial {}, {} members, signed by the pinned authority, expires {}",
            r.federation,
            r.serial,
            r.members.len(),
            super::table::local_time(verified.envelope.expires_at)
        );
    }
    Ok(())
}

/// `roster install`: checks the roster for this member, copies it beside node.toml and
/// sets node.toml's `roster` and `authority` (the other lines are left as they are).
fn install(file: &Path, authority: &PublicKey, config: &Path) -> Result<()> {
    let verified = load_signed(file, authority, clock::now())?;
    let roster = &verified.message;
    let text = files::read_to_string(config)?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{} is not a node.toml", config.display()))?;
    let field = |name: &str| {
        table
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .with_context(|| format!("{}: no `{name}`", config.display()))
    };
    let member: MemberId = field("member")?
        .parse()
        .with_context(|| format!("{}: member", config.display()))?;
    let base = config.parent().unwrap_or(Path::new("."));
    let key_path = base.join(field("key")?);
    let key = PublicKey::of(&files::read_secret_key(&key_path)?);
    let Some(entry) = roster.member(&member) else {
        bail!(
            "roster serial {} does not list {member}: send its public key ({}) to the authority",
            roster.serial,
            key.to_hex()
        );
    };
    if entry.key != key {
        bail!(
            "roster serial {} lists {member} with key {}, but {} holds {}: the authority has another key for this member",
            roster.serial,
            entry.key.to_hex(),
            key_path.display(),
            key.to_hex()
        );
    }
    let target = match table.get("roster").and_then(|v| v.as_str()) {
        Some(p) if !p.is_empty() => base.join(p),
        _ => base.join("roster.cbor"),
    };
    let relative = target.strip_prefix(base).map_or_else(
        |_| target.display().to_string(),
        |p| p.display().to_string(),
    );
    files::write_atomic(&target, &verified.envelope.to_bytes())?;
    let updated = set_top_level(
        &set_top_level(&text, "roster", &relative),
        "authority",
        &authority.to_hex(),
    );
    let _: toml::Table = toml::from_str(&updated).context("the updated node.toml")?;
    files::write_atomic(config, updated.as_bytes())?;
    println!(
        "installed roster serial {} of {:?} ({} members, expires {}) at {}",
        roster.serial,
        roster.federation,
        roster.members.len(),
        super::table::local_time(verified.envelope.expires_at),
        target.display()
    );
    println!(
        "{} now names it and authority {}; start the node (a running one takes newer rosters from its peers)",
        config.display(),
        authority.to_hex()
    );
    Ok(())
}

/// Sets `key = "value"` among the lines before the first table header, replacing the line
/// that sets it or adding one.
fn set_top_level(text: &str, key: &str, value: &str) -> String {
    let line = format!("{key} = {}", toml::Value::String(value.to_owned()));
    let mut out = Vec::new();
    let mut done = false;
    let mut in_top = true;
    for l in text.lines() {
        if l.trim_start().starts_with('[') {
            if in_top && !done {
                out.push(line.clone());
                done = true;
            }
            in_top = false;
        }
        let sets_key = l.split_once('=').is_some_and(|(k, _)| k.trim() == key);
        if in_top && sets_key {
            if !done {
                out.push(line.clone());
                done = true;
            }
            continue;
        }
        out.push(l.to_owned());
    }
    if !done {
        out.push(line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// Shows a signed roster (verified when `--authority` is given) or a draft.
fn show(path: &Path, authority: Option<&PublicKey>, json: bool) -> Result<()> {
    let bytes = files::read(path)?;
    let (roster, status) = if bytes.first() == Some(&0x88) {
        match authority {
            Some(a) => (
                load_signed(path, a, clock::now())?.message,
                "signed, verified against the pinned authority".to_owned(),
            ),
            None => {
                let env = Envelope::from_bytes(&bytes)
                    .with_context(|| format!("{} is not a signed roster", path.display()))?;
                env.verify(clock::now())
                    .with_context(|| format!("refusing roster {}", path.display()))?;
                let key = env.key;
                (
                    env.open::<Roster>(clock::now())
                        .with_context(|| format!("{} is not a roster", path.display()))?
                        .message,
                    format!(
                        "signed by {key}, NOT checked against a pinned authority (pass --authority)"
                    ),
                )
            }
        }
    } else {
        (
            load_draft(path)?.to_roster(path)?,
            "unsigned draft".to_owned(),
        )
    };
    if json {
        let members: Vec<_> = roster
            .members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id, "key": m.key.to_hex(), "role": m.role.tag(), "country": m.country,
                    "linked_factories": m.linked_factories,
                    "valid_from": clock::format_time(m.valid_from),
                    "valid_until": clock::format_time(m.valid_until),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "federation": roster.federation, "serial": roster.serial,
                "status": status, "members": members,
            })
        );
        return Ok(());
    }
    println!(
        "roster {:?}, serial {}, {} members ({status})",
        roster.federation,
        roster.serial,
        roster.members.len()
    );
    println!(
        "{:<16} {:<8} {:<3} {:<18} {:<21} {:<21} linked",
        "id", "role", "cc", "key", "valid from", "valid until"
    );
    for m in &roster.members {
        let key = m.key.to_hex();
        println!(
            "{:<16} {:<8} {:<3} {:<18} {:<21} {:<21} {}",
            m.id.as_str(),
            m.role.tag(),
            m.country.as_str(),
            format!("{}…", &key[..16]),
            super::table::local_time(m.valid_from),
            super::table::local_time(m.valid_until),
            m.linked_factories
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    Ok(())
}
