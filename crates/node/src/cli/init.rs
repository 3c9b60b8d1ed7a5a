//! `aiguillage init`: a member's data folder with its key, admin token and node config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aiguillage_wire::{PublicKey, SigningKey, keys};
use anyhow::{Context, Result};
use rand::Rng;

use crate::config::{AdminConfig, NodeConfig};
use crate::{files, profiles};

/// Create a member's data folder: key, admin token and node config.
#[derive(clap::Args)]
pub struct InitOptions {
    /// The member's profile (config/factories/… or config/antennas/…).
    #[arg(long)]
    pub profile: PathBuf,
    /// The folder to create; it holds the key, the token, node.toml, the store and jobs.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The signed roster (ask the federation authority).
    #[arg(long)]
    pub roster: Option<PathBuf>,
    /// The federation authority's public key in hex.
    #[arg(long)]
    pub authority: Option<String>,
    /// libp2p listen address (repeatable); default TCP and QUIC on every interface, port
    /// 4710: /ip4/0.0.0.0/tcp/4710 and /ip4/0.0.0.0/udp/4710/quic-v1.
    #[arg(long)]
    pub listen: Vec<String>,
    /// A member to dial at start, /ip4/…/tcp/…/p2p/<peer id> (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// The admin API's address (loopback unless node.toml says allow_remote).
    #[arg(long, default_value = DEFAULT_ADMIN)]
    pub admin: SocketAddr,
    /// GPUs the local executor may use.
    #[arg(long, default_value_t = 0)]
    pub gpus: u32,
}

/// The member's libp2p port, TCP and QUIC (UDP), unless `--listen` says otherwise.
pub const DEFAULT_P2P_PORT: u16 = 4710;
/// The admin API and the console, on loopback.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:4711";

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

pub fn init(o: InitOptions) -> Result<PathBuf> {
    let profile = profiles::load_one(&o.profile)?;
    for l in &o.listen {
        l.parse::<aiguillage_net::Multiaddr>().with_context(|| {
            format!("--listen {l:?} is not a multiaddr such as /ip4/0.0.0.0/tcp/4710")
        })?;
    }
    for b in &o.bootstrap {
        crate::config::check_bootstrap(b).with_context(|| format!("--bootstrap {b:?}"))?;
    }
    std::fs::create_dir_all(&o.data_dir)
        .with_context(|| format!("creating {}", o.data_dir.display()))?;
    let config_path = o.data_dir.join("node.toml");
    files::refuse_existing(&config_path)?;
    let key_path = o.data_dir.join("key.pem");
    let key = if key_path.exists() {
        files::read_secret_key(&key_path)?
    } else {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let key = SigningKey::from_bytes(&secret);
        files::create_secret(&key_path, keys::secret_key_to_pem(&key).as_bytes())?;
        key
    };
    let token_path = o.data_dir.join("admin.token");
    if !token_path.exists() {
        let mut t = [0u8; 24];
        rand::rng().fill_bytes(&mut t);
        files::create_secret(&token_path, hex::encode(t).as_bytes())?;
    }
    let config = NodeConfig {
        member: profile.id.clone(),
        profile: absolute(&o.profile)?,
        key: "key.pem".into(),
        roster: o
            .roster
            .as_deref()
            .map(absolute)
            .transpose()?
            .unwrap_or_else(|| "roster.cbor".into()),
        authority: o
            .authority
            .clone()
            .unwrap_or_else(|| "SET-ME: the federation authority's public key in hex".into()),
        listen: if o.listen.is_empty() {
            vec![
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}"),
                format!("/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1"),
            ]
        } else {
            o.listen.clone()
        },
        bootstrap: o.bootstrap.clone(),
        data_dir: ".".into(),
        gpus: o.gpus,
        executor: Default::default(),
        limits: Default::default(),
        admin: AdminConfig {
            listen: o.admin,
            token_file: "admin.token".into(),
            tokens_dir: "tokens".into(),
            allow_remote: false,
        },
        core: Default::default(),
    };
    config.save(&config_path)?;
    let public = PublicKey::of(&key);
    let peer_id = aiguillage_net::peer_id_of(&public)?;
    println!("initialised {} in {}", profile.id, o.data_dir.display());
    println!("  key:        {} (public {public})", key_path.display());
    println!("  peer id:    {peer_id}");
    for l in &config.listen {
        let full = format!("{l}/p2p/{peer_id}");
        if l.starts_with("/ip4/0.0.0.0/") || l.starts_with("/ip6/::/") {
            println!("  others dial: {full} (with this host's address for 0.0.0.0)");
        } else {
            println!("  others dial: {full}");
        }
    }
    println!(
        "  admin:      http://{} (token in {})",
        o.admin,
        token_path.display()
    );
    println!("  config:     {}", config_path.display());
    println!("next:");
    if o.roster.is_none() || o.authority.is_none() {
        println!(
            "  - send the public key above to the federation authority; install what it sends:"
        );
        println!(
            "    aiguillage roster install ROSTER --authority AUTHORITY_KEY --config {}",
            config_path.display()
        );
    }
    if o.bootstrap.is_empty() {
        println!("  - add other members' addresses to `bootstrap` in node.toml");
    }
    println!("  - aiguillage run --config {}", config_path.display());
    Ok(config_path)
}
