//! Start-up: the config and everything it names are checked before anything listens; then
//! the store, the core, the network, the admin API and the executor, in that order.

use std::path::Path;
use std::sync::Arc;

use aiguillage_core::{Core, Input};
use aiguillage_net::{Multiaddr, NetConfig, NetEvent};
use aiguillage_store::Store;
use aiguillage_wire::{Envelope, PublicKey, TrustError};
use anyhow::{Context, Result, bail};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::Node;
use super::peers::Peers;
use super::views::RunInfo;
use crate::access::{Access, Caller, MIN_TOKEN_CHARS};
use crate::api::{self, ApiCall, ApiReply};
use crate::config::NodeConfig;
use crate::executor::{Executor, ExecutorConfig, Report, local::Local, slurm::Slurm};
use crate::metrics::Metrics;
use crate::{clock, files, profiles};

/// The channels the node's loop listens on.
pub(super) struct Inbox {
    pub net: mpsc::Receiver<NetEvent>,
    pub api: mpsc::Receiver<(Caller, ApiCall, oneshot::Sender<ApiReply>)>,
    pub executor: mpsc::Receiver<Report>,
    pub sync: mpsc::Receiver<(aiguillage_net::PeerId, Vec<Vec<u8>>)>,
    pub refusals: mpsc::Receiver<(aiguillage_wire::MemberId, Envelope, String)>,
}

/// Opens the store, waiting a little for the lock: after a crash, the old process's
/// threads may hold it for a moment longer.
pub fn open_store(data_dir: &Path) -> Result<Store> {
    Store::open_waiting(&data_dir.join("db"), std::time::Duration::from_secs(10))
        .with_context(|| format!("opening the store in {}", data_dir.display()))
}

pub(super) async fn start(config_path: &Path) -> Result<(Node, Inbox)> {
    let cfg = NodeConfig::load(config_path)?;
    crate::logging::set_member(cfg.member.as_str());
    if let Some(ms) = clock::skew_from_env()? {
        warn!(
            skew_ms = ms,
            "{} is set: this node runs with its clock {} (for tests)",
            clock::SKEW_VAR,
            super::clock_watch::describe(ms)
        );
    }
    let profile = profiles::load_one(&cfg.profile)?;
    if profile.id != cfg.member {
        bail!(
            "{}: member {} but the profile is {}",
            config_path.display(),
            cfg.member,
            profile.id
        );
    }
    let key = files::read_secret_key(&cfg.key)?;
    let roster_bytes = files::read(&cfg.roster)?;
    let roster_env = Envelope::from_bytes(&roster_bytes)
        .with_context(|| format!("{} is not a signed roster", cfg.roster.display()))?;
    let authority = PublicKey::from_hex(&cfg.authority).with_context(|| {
        format!(
            "{}: authority must be the federation authority's public key in hex (ask the authority; `aiguillage keys show` prints one)",
            config_path.display()
        )
    })?;
    let token = files::read_to_string(&cfg.admin.token_file)?
        .trim()
        .to_owned();
    if token.len() < MIN_TOKEN_CHARS {
        bail!(
            "{}: the admin token must be at least {MIN_TOKEN_CHARS} characters",
            cfg.admin.token_file.display()
        );
    }
    let access = Access::new(token, cfg.admin.tokens_dir.clone())?;
    let mut listen = Vec::new();
    for l in &cfg.listen {
        listen.push(
            l.parse::<Multiaddr>()
                .with_context(|| format!("listen address {l:?}"))?,
        );
    }
    if let Some(pid) = running_node(&cfg.data_dir) {
        let dir: std::path::PathBuf = cfg.data_dir.components().collect();
        bail!(
            "a node already runs on {} as pid {pid} (see {}); stop it first (kill -TERM {pid})",
            dir.display(),
            dir.join("run.json").display()
        );
    }
    for addr in &listen {
        check_free(addr)?;
    }
    let mut bootstrap = Vec::new();
    for b in &cfg.bootstrap {
        bootstrap.push(
            b.parse::<Multiaddr>()
                .with_context(|| format!("bootstrap address {b:?}"))?,
        );
    }

    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let store = open_store(&cfg.data_dir)?;
    let state = store.load().context("loading the stored state")?;
    let mut core = Core::new(profile, key.clone(), authority, cfg.core.clone(), state);
    match core.install_roster(roster_env, clock::now()) {
        Ok(()) => {}
        // The stored roster is the same or newer: keep it.
        Err(TrustError::StaleSerial { .. }) => {}
        Err(e) => bail!("refusing roster {}: {e}", cfg.roster.display()),
    }
    let roster = core.roster().context("no roster")?;
    info!(
        serial = roster.serial,
        members = roster.members.len(),
        "roster serial {} installed ({} members)",
        roster.serial,
        roster.members.len()
    );
    let me = roster
        .member(&cfg.member)
        .with_context(|| format!("{} is not in the roster", cfg.member))?;
    if me.key != PublicKey::of(&key) {
        bail!(
            "{} is not the rostered key of {}",
            cfg.key.display(),
            cfg.member
        );
    }

    let keypair = aiguillage_net::keypair_of(&key);
    let peer_id = keypair.public().to_peer_id();
    let peers = Peers::new(peer_id, core.roster());
    for (i, b) in bootstrap.iter().enumerate() {
        if let Some(aiguillage_net::Protocol::P2p(p)) = b.iter().last() {
            if p == peer_id {
                bail!(
                    "{}: bootstrap[{i}] = {b} is this member itself",
                    config_path.display()
                );
            }
            if peers.member_of(&p).is_none() {
                // Not fatal: a roster that removes a member must not stop the others from
                // starting until their configs are edited.
                warn!(
                    "{}: bootstrap[{i}] = {b}: peer id {p} is no member of roster serial {} (a typo, or a member the roster removed); it is not dialled",
                    config_path.display(),
                    roster.serial
                );
            }
        }
    }
    let mut net = NetConfig::new(keypair);
    net.limits = cfg.limits.connections();
    net.peer_rate = cfg.limits.peer_rate();
    net.allowed = peers.allowed();
    net.listen = listen;
    net.bootstrap = bootstrap;
    net.known = known_addresses(&store, &net.allowed);
    let metrics = Arc::new(Metrics::new());
    let members = peers.rostered_up();
    metrics.members(members.iter().map(|(m, _)| m.as_str()));
    let counted = metrics.clone();
    net.on_refused = aiguillage_net::OnRefused(Arc::new(move |r: aiguillage_net::Refusal| {
        // Refused in the network task, before the kind was read.
        counted.refused(r.reason, "-", r.channel);
    }));
    let (client, net_events, event_loop) =
        aiguillage_net::start(net).context("starting the network")?;
    tokio::spawn(event_loop.run());

    let (api_tx, api_rx) = mpsc::channel(64);
    let listener = tokio::net::TcpListener::bind(cfg.admin.listen)
        .await
        .with_context(|| format!("binding the admin API on {}", cfg.admin.listen))?;
    let admin = listener.local_addr()?;
    let live = crate::console::Live::default();
    let router = api::router(access.clone(), api_tx.clone()).merge(crate::console::router(
        &cfg.member,
        access,
        api_tx,
        live.clone(),
    ));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            error!("admin API stopped: {e}");
        }
    });

    let (exec_tx, mut exec_rx) = mpsc::channel::<Report>(256);
    let jobs_dir = cfg.data_dir.join("jobs");
    let executor = match &cfg.executor {
        ExecutorConfig::Local => Executor::spawn(Local::new(cfg.gpus), jobs_dir, exec_tx),
        ExecutorConfig::Slurm(s) => Executor::spawn(Slurm::new(s.clone()), jobs_dir, exec_tx),
    };
    // The advert's capacity comes from the executor: wait for its first word on it.
    let first_capacity =
        match tokio::time::timeout(std::time::Duration::from_secs(15), exec_rx.recv()).await {
            Ok(Some(Report::Capacity(gpus))) => Some(gpus),
            _ => {
                warn!("the executor did not report its capacity; keeping the stored figure");
                None
            }
        };
    let (sync_tx, sync_rx) = mpsc::channel(64);
    let (refusals, refusals_rx) = mpsc::channel(256);
    let (sync_updates, mut sync_update_rx) = mpsc::unbounded_channel();
    {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(entries) = sync_update_rx.recv().await {
                if client.set_sync_entries(entries).await.is_err() {
                    break;
                }
            }
        });
    }
    let mut node = Node {
        core,
        store,
        key,
        client,
        peers,
        metrics,
        executor,
        sync_tx,
        refusals,
        sync_updates,
        run_info: RunInfo {
            member: cfg.member.clone(),
            peer_id: peer_id.to_string(),
            admin,
            listen: Vec::new(),
            pid: std::process::id(),
            start_ticks: start_ticks(std::process::id()),
        },
        run_path: cfg.data_dir.join("run.json"),
        batch: None,
        stop: None,
        clock: Default::default(),
        refusal_log: Default::default(),
        outputs: Default::default(),
        live,
        started_at: clock::now(),
    };
    if let Some(total_gpus) = first_capacity {
        node.apply(Input::Capacity { total_gpus });
    }
    // Jobs from before a restart are found again, and how those that ended meanwhile
    // ended is applied, before the node announces itself: a stale host's first word is
    // then its late result, which the origin refuses, not a heartbeat.
    if let Some(recovered) = node.recover_jobs()
        && tokio::time::timeout(std::time::Duration::from_secs(60), recovered)
            .await
            .is_err()
    {
        warn!("the executor took over 60 s to find the jobs of before the restart");
    }
    while let Ok(report) = exec_rx.try_recv() {
        node.on_executor(report);
    }
    node.apply(Input::Start);
    node.seed_sync();
    node.write_run_info();
    info!(member = %cfg.member, %peer_id, %admin, "node running");
    let inbox = Inbox {
        net: net_events,
        api: api_rx,
        executor: exec_rx,
        sync: sync_rx,
        refusals: refusals_rx,
    };
    Ok((node, inbox))
}

/// The addresses learnt for rostered members before this start, to dial them at once.
fn known_addresses(
    store: &Store,
    allowed: &std::collections::HashSet<aiguillage_net::PeerId>,
) -> Vec<(aiguillage_net::PeerId, Multiaddr)> {
    let stored = match store.peer_addresses() {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot read the peers' addresses: {e}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (peer, addrs) in stored {
        let Ok(peer) = peer.parse::<aiguillage_net::PeerId>() else {
            continue;
        };
        if !allowed.contains(&peer) {
            continue;
        }
        // Oldest first, so that the newest ends up first in the network's list.
        for a in addrs.iter().rev() {
            if let Ok(addr) = a.parse::<Multiaddr>() {
                out.push((peer, addr));
            }
        }
    }
    out
}

/// Refuses a listen address another process holds. libp2p binds its listeners with
/// `SO_REUSEPORT`, so a second node on a busy port would start and share the port with the
/// first; a plain bind fails on it instead.
/// The pid of a live `aiguillage` process that `run.json` in the data folder names, if any:
/// a second node on the same folder is refused at once, naming it.
fn running_node(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("run.json")).ok()?;
    let info: serde_json::Value = serde_json::from_str(&text).ok()?;
    let pid = u32::try_from(info["pid"].as_u64()?).ok()?;
    if pid == std::process::id() {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if stat.contains(") Z ") {
        return None;
    }
    // The same process, not another that got its pid: the start time must match.
    let same = match info["start_ticks"].as_u64() {
        Some(t) => start_ticks(pid) == Some(t),
        None => {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.iter().any(|a| *a == b"run")
                && String::from_utf8_lossy(args.first()?).contains("aiguillage")
        }
    };
    same.then_some(pid)
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count from the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// How long a listen port in use is waited for before the start is refused.
const PORT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn check_free(addr: &Multiaddr) -> Result<()> {
    use aiguillage_net::Protocol;
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(n) => port = Some((n, true)),
            Protocol::Udp(n) => port = Some((n, false)),
            _ => {}
        }
    }
    let (Some(ip), Some((port, tcp))) = (ip, port) else {
        return Ok(());
    };
    if port == 0 {
        return Ok(());
    }
    let sock = std::net::SocketAddr::new(ip, port);
    let bind = || {
        if tcp {
            std::net::TcpListener::bind(sock).map(drop)
        } else {
            std::net::UdpSocket::bind(sock).map(drop)
        }
    };
    // Right after a crash the old process's last threads may hold the port for a moment
    // (as they may hold the store's lock): a port in use is tried again for a while.
    let deadline = std::time::Instant::now() + PORT_WAIT;
    let mut bound = bind();
    while matches!(&bound, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
        bound = bind();
    }
    bound.map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::AddrInUse {
            "it is in use by another process (another node on this port?)".to_owned()
        } else {
            e.to_string()
        };
        anyhow::anyhow!("cannot listen on {addr}: {what}")
    })
}
