//! The node configuration file (`node.toml`), written by `aiguillage init`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aiguillage_core::CoreConfig;
use aiguillage_wire::MemberId;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub member: MemberId,
    /// The member's profile (relative paths are relative to this file).
    pub profile: PathBuf,
    /// The member's secret key, PKCS#8 PEM.
    pub key: PathBuf,
    /// The signed roster.
    pub roster: PathBuf,
    /// The federation authority's public key in hex, pinned: rosters must be signed by it.
    pub authority: String,
    /// libp2p listen addresses, e.g. `/ip4/0.0.0.0/tcp/4001`.
    pub listen: Vec<String>,
    /// Members to dial at start, as `/ip4/…/tcp/…/p2p/<peer id>`.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Where the store and job folders live.
    pub data_dir: PathBuf,
    /// GPUs the local executor runs jobs on (slots on a machine without GPUs). The Slurm
    /// executor reads its GPUs from the cluster instead.
    pub gpus: u32,
    /// How jobs run: `kind = "local"` (the default) or `kind = "slurm"` with its settings.
    #[serde(default)]
    pub executor: crate::executor::ExecutorConfig,
    pub admin: AdminConfig,
    #[serde(default)]
    pub core: CoreConfig,
    #[serde(default)]
    pub limits: Limits,
}

/// How much each connected peer may make this node do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Messages a peer may deliver per second, sustained (gossip it relays and direct
    /// messages alike); past it they are dropped before their signature is checked.
    pub peer_messages_per_s: f64,
    /// How many it may deliver at once above that rate.
    pub peer_burst: f64,
    /// Incoming connections from one IP address in their handshake at once (before the
    /// node knows who connects, each costs a noise handshake); more are closed at once.
    pub handshakes_per_ip: u32,
    /// Incoming connections in their handshake at once, from anywhere.
    pub handshakes: u32,
    /// Established connections to one peer, both directions.
    pub connections_per_peer: u32,
}

impl Default for Limits {
    fn default() -> Self {
        let net = aiguillage_net::ConnectionLimits::default();
        let rate = aiguillage_net::PeerRate::default();
        Limits {
            peer_messages_per_s: rate.per_s,
            peer_burst: rate.burst,
            handshakes_per_ip: net.handshakes_per_ip,
            handshakes: net.handshakes,
            connections_per_peer: net.connections_per_peer,
        }
    }
}

impl Limits {
    /// Every limit must let something through: a zero would cut the node off.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("peer_messages_per_s", self.peer_messages_per_s),
            ("peer_burst", self.peer_burst),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v >= 1.0) {
                anyhow::bail!("{name} = {v}: it must be a number of at least 1");
            }
        }
        let counts = [
            ("handshakes_per_ip", self.handshakes_per_ip),
            ("handshakes", self.handshakes),
            ("connections_per_peer", self.connections_per_peer),
        ];
        for (name, v) in counts {
            if v == 0 {
                anyhow::bail!("{name} = 0: it must be at least 1");
            }
        }
        Ok(())
    }

    pub fn peer_rate(&self) -> aiguillage_net::PeerRate {
        aiguillage_net::PeerRate {
            per_s: self.peer_messages_per_s,
            burst: self.peer_burst,
        }
    }

    pub fn connections(&self) -> aiguillage_net::ConnectionLimits {
        aiguillage_net::ConnectionLimits {
            handshakes_per_ip: self.handshakes_per_ip,
            handshakes: self.handshakes,
            connections_per_peer: self.connections_per_peer,
        }
    }
}

/// The most GPUs one member may declare.
pub const MAX_GPUS: u32 = 1_000_000;

/// A bootstrap entry must name the member it reaches: `/ip4/…/tcp/…/p2p/<peer id>`.
pub fn check_bootstrap(entry: &str) -> Result<aiguillage_net::PeerId> {
    let addr: aiguillage_net::Multiaddr = entry
        .parse()
        .map_err(|e| anyhow::anyhow!("not a multiaddr ({e})"))?;
    match addr.iter().last() {
        Some(aiguillage_net::Protocol::P2p(peer)) => Ok(peer),
        _ => anyhow::bail!(
            "it must end with /p2p/<peer id> (the member's PeerId; `aiguillage keys show` prints it)"
        ),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bound to loopback by default; binding elsewhere needs `allow_remote = true`.
    pub listen: SocketAddr,
    pub token_file: PathBuf,
    /// A folder of named users' tokens, one `<name>.toml` each (`aiguillage token add`).
    #[serde(default = "default_tokens_dir")]
    pub tokens_dir: PathBuf,
    #[serde(default)]
    pub allow_remote: bool,
}

fn default_tokens_dir() -> PathBuf {
    "tokens".into()
}

impl NodeConfig {
    /// Loads `path` and resolves relative paths against its folder.
    pub fn load(path: &Path) -> Result<NodeConfig> {
        let text = crate::files::read_to_string(path)?;
        let mut c: NodeConfig = toml::from_str(&text)
            .with_context(|| format!("{} is not a node config", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut c.profile,
            &mut c.key,
            &mut c.roster,
            &mut c.data_dir,
            &mut c.admin.token_file,
            &mut c.admin.tokens_dir,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if !c.admin.listen.ip().is_loopback() && !c.admin.allow_remote {
            anyhow::bail!(
                "{}: admin.listen {} is not a loopback address; set admin.allow_remote = true to expose the admin API",
                path.display(),
                c.admin.listen
            );
        }
        c.limits
            .check()
            .with_context(|| format!("{}: [limits]", path.display()))?;
        c.check()
            .with_context(|| format!("{} is not a config this node can run", path.display()))?;
        Ok(c)
    }

    /// Refuses what cannot work, naming the field: the core's settings, the GPU count,
    /// listen and bootstrap addresses.
    fn check(&self) -> Result<()> {
        self.core.check()?;
        if self.gpus > MAX_GPUS {
            anyhow::bail!("gpus = {}: at most {MAX_GPUS} on one member", self.gpus);
        }
        if self.listen.is_empty() {
            anyhow::bail!("listen is empty: the node needs an address to listen on");
        }
        for (i, l) in self.listen.iter().enumerate() {
            l.parse::<aiguillage_net::Multiaddr>().map_err(|e| {
                anyhow::anyhow!(
                    "listen[{i}] = {l:?}: not a multiaddr such as /ip4/0.0.0.0/tcp/4710 ({e})"
                )
            })?;
        }
        for (i, b) in self.bootstrap.iter().enumerate() {
            check_bootstrap(b).with_context(|| format!("bootstrap[{i}] = {b:?}"))?;
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self).context("encoding the node config")?;
        crate::files::write_atomic(path, text.as_bytes())
    }
}
