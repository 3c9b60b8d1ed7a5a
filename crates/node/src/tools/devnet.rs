//! `aiguillage devnet`: the whole federation on one machine. Every member runs as its own
//! `aiguillage run` process on loopback, with its own key, data folder and ports, under a
//! roster signed by a freshly generated authority; GPU capacities come from the labelled
//! assumptions in config/devnet/assumptions.toml. A synthetic workload then goes through
//! the admin APIs, and a summary closes the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aiguillage_core::{CoreConfig, DevnetAssumptions, Profile};
use aiguillage_wire::{
    AUTHORITY_ID, Envelope, MemberId, PublicKey, Role, Roster, RosterEntry, Sector, SigningKey,
    Timestamp, keys,
};
use anyhow::{Context, Result, bail};
use rand::Rng;
use serde_json::{Value, json};

use crate::admin_client::AdminClient;
use crate::config::{AdminConfig, NodeConfig};
use crate::executor::{ExecutorConfig, slurm::SlurmConfig};
use crate::{clock, files, profiles};

pub struct DevnetOptions {
    pub config_dir: PathBuf,
    pub dir: PathBuf,
    pub members: Option<Vec<String>>,
    pub projects: usize,
    pub jobs: usize,
    pub keep_running: bool,
    pub timeout: Duration,
    /// Overrides every member's referral intake (benchmarks need more than the assumptions).
    pub intake: Option<u32>,
    /// How long an adviser has to decide on an offer (the devnet's 10 s by default).
    pub decision_ttl: Option<Duration>,
    /// GPU slots per member, overriding the assumptions (`lu-l-aif=0` makes a full factory).
    pub gpus: Vec<(MemberId, u32)>,
    /// Members that run their jobs on the Slurm cluster of this machine instead of local
    /// processes (start one with scripts/slurm-up.sh).
    pub slurm: Vec<MemberId>,
    /// Write every member's folder (key, token, node.toml) and the signed roster, then stop
    /// without starting anything.
    pub prepare_only: bool,
}

struct Member {
    profile: Profile,
    dir: PathBuf,
    gpus: u32,
    /// Fixed ports, so that a member restarted from its folder is found where it was.
    tcp: u16,
    udp: u16,
    peer_id: String,
}

/// `MEMBER=N` from `--gpus`.
pub fn parse_gpu_override(s: &str) -> Result<(MemberId, u32)> {
    let (id, n) = s
        .split_once('=')
        .with_context(|| format!("--gpus {s:?}: expected MEMBER=N, e.g. lu-l-aif=0"))?;
    let id = MemberId::new(id).map_err(|e| anyhow::anyhow!("--gpus {s:?}: {e}"))?;
    let n = n
        .parse()
        .with_context(|| format!("--gpus {s:?}: {n:?} is not a GPU count"))?;
    Ok((id, n))
}

/// Free loopback ports, held open until all are chosen so that none is picked twice.
/// They are drawn below the kernel's ephemeral range: a member restarted on its port must
/// not find it taken by some process's outgoing connection meanwhile.
fn free_ports(n: usize) -> Result<Vec<(u16, u16)>> {
    use rand::RngExt;
    let (low, _) = ephemeral_range();
    let (from, to) = (10_000u16, low.max(10_001));
    let mut held = Vec::new();
    let mut rng = rand::rng();
    for _ in 0..n {
        let mut found = None;
        for _ in 0..1000 {
            let port = rng.random_range(from..to);
            if let (Ok(t), Ok(u)) = (
                std::net::TcpListener::bind(("127.0.0.1", port)),
                std::net::UdpSocket::bind(("127.0.0.1", port)),
            ) {
                found = Some((t, u));
                break;
            }
        }
        held.push(found.with_context(|| format!("no free port from {from} to {to}"))?);
    }
    held.iter()
        .map(|(t, u)| Ok((t.local_addr()?.port(), u.local_addr()?.port())))
        .collect()
}

/// The kernel's range of ports for outgoing connections (Linux), or the IANA one.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|v| v.parse().ok());
            Some((it.next()?, it.next()?))
        })
        .unwrap_or((49_152, 65_535))
}

/// Devnet timings: seconds where production uses hours and days.
fn devnet_core(cap: &aiguillage_core::DevnetCapacity) -> CoreConfig {
    CoreConfig {
        offer_ttl_ms: 30_000,
        decision_ttl_ms: 10_000,
        resend_ms: 2_000,
        message_ttl_ms: 600_000,
        advert_ttl_ms: 120_000,
        bid_window_ms: 300,
        reserve_ttl_ms: 5_000,
        lease_ttl_ms: 10_000,
        heartbeat_ms: 3_000,
        replace_retry_ms: 5_000,
        // Finished records leave memory after ten minutes, so that a long devnet run (the
        // soak) shows memory flat rather than growing with every project filed.
        retention_ms: 600_000,
        takes_overflow: cap.takes_overflow,
        accelerator: cap.accelerator.clone(),
        referral_intake: cap.referral_intake,
        // Refer accepted-sector projects more eagerly than the production default, so that
        // a short devnet run exercises the referral network.
        routing: aiguillage_core::RoutingPolicy {
            accept_margin: 0.05,
            ..Default::default()
        },
        ..CoreConfig::default()
    }
}

fn random_key() -> SigningKey {
    let mut s = [0u8; 32];
    rand::rng().fill_bytes(&mut s);
    SigningKey::from_bytes(&s)
}

/// Writes every member's folder and the signed roster.
fn prepare(o: &DevnetOptions) -> Result<Vec<Member>> {
    let all = profiles::load_dir(&o.config_dir)?;
    let chosen: Vec<Profile> = match &o.members {
        None => all,
        Some(ids) => {
            let mut v = Vec::new();
            for id in ids {
                let p = all.iter().find(|p| p.id.as_str() == id).with_context(|| {
                    format!(
                        "--members: no profile {id} under {}",
                        o.config_dir.display()
                    )
                })?;
                v.push(p.clone());
            }
            v
        }
    };
    if chosen.len() < 2 {
        bail!("a devnet needs at least two members");
    }
    for id in o.gpus.iter().map(|(id, _)| id).chain(&o.slurm) {
        if !chosen.iter().any(|p| &p.id == id) {
            bail!("{id} (given to --gpus or --slurm) is not a member of this devnet");
        }
    }
    let assumptions_path = o.config_dir.join("devnet/assumptions.toml");
    let assumptions = DevnetAssumptions::from_toml(
        &files::read_to_string(&assumptions_path)?,
        &assumptions_path.display().to_string(),
    )?;
    if o.dir.exists() {
        std::fs::remove_dir_all(&o.dir).with_context(|| format!("clearing {}", o.dir.display()))?;
    }
    std::fs::create_dir_all(&o.dir).with_context(|| format!("creating {}", o.dir.display()))?;
    let dir = std::fs::canonicalize(&o.dir)?;
    let authority = random_key();
    files::create_secret(
        &dir.join("authority.pem"),
        keys::secret_key_to_pem(&authority).as_bytes(),
    )?;
    let now = clock::now();
    let ids: Vec<MemberId> = chosen.iter().map(|p| p.id.clone()).collect();
    let mut entries = Vec::new();
    let mut members = Vec::new();
    let ports = free_ports(chosen.len())?;
    for (p, (tcp, udp)) in chosen.iter().zip(ports) {
        let mdir = dir.join(p.id.as_str());
        std::fs::create_dir_all(&mdir)?;
        let key = random_key();
        files::create_secret(
            &mdir.join("key.pem"),
            keys::secret_key_to_pem(&key).as_bytes(),
        )?;
        let mut t = [0u8; 24];
        rand::rng().fill_bytes(&mut t);
        files::create_secret(&mdir.join("admin.token"), hex::encode(t).as_bytes())?;
        entries.push(RosterEntry {
            id: p.id.clone(),
            key: PublicKey::of(&key),
            role: p.role,
            country: p.country,
            // Links to factories outside this devnet are left out.
            linked_factories: p
                .linked_factories
                .iter()
                .filter(|l| {
                    ids.contains(l)
                        && chosen
                            .iter()
                            .any(|q| &q.id == *l && q.role == Role::Factory)
                })
                .cloned()
                .collect(),
            valid_from: Timestamp(now.millis().saturating_sub(60_000)),
            valid_until: now.saturating_add_ms(30 * 86_400_000),
        });
        let cap = assumptions.for_member(&p.id, p.role);
        let gpus = o
            .gpus
            .iter()
            .find(|(id, _)| id == &p.id)
            .map_or(cap.gpus, |(_, n)| *n);
        members.push(Member {
            profile: p.clone(),
            dir: mdir,
            gpus,
            tcp,
            udp,
            peer_id: aiguillage_net::peer_id_of(&PublicKey::of(&key))?.to_string(),
        });
    }
    let roster = Roster {
        federation: "aiguillage-devnet".into(),
        serial: 1,
        members: entries,
    };
    let signed = Envelope::seal(
        &roster,
        &MemberId::new(AUTHORITY_ID)?,
        &authority,
        now,
        now.saturating_add_ms(30 * 86_400_000),
    )
    .context("signing the devnet roster")?;
    files::write_atomic(&dir.join("roster.cbor"), &signed.to_bytes())?;
    let config_dir = std::fs::canonicalize(&o.config_dir)?;
    // Every member dials the first three (other than itself); Kademlia spreads the rest.
    let seeds: Vec<(MemberId, String)> = members
        .iter()
        .take(3)
        .map(|m| {
            (
                m.profile.id.clone(),
                format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", m.tcp, m.peer_id),
            )
        })
        .collect();
    for m in &members {
        let sub = if m.profile.role == Role::Factory {
            "factories"
        } else {
            "antennas"
        };
        let cap = assumptions.for_member(&m.profile.id, m.profile.role);
        let cfg = NodeConfig {
            member: m.profile.id.clone(),
            profile: config_dir.join(sub).join(format!("{}.toml", m.profile.id)),
            key: "key.pem".into(),
            roster: dir.join("roster.cbor"),
            authority: PublicKey::of(&authority).to_hex(),
            listen: vec![
                format!("/ip4/127.0.0.1/tcp/{}", m.tcp),
                format!("/ip4/127.0.0.1/udp/{}/quic-v1", m.udp),
            ],
            bootstrap: seeds
                .iter()
                .filter(|(id, _)| *id != m.profile.id)
                .map(|(_, a)| a.clone())
                .collect(),
            data_dir: ".".into(),
            gpus: m.gpus,
            limits: Default::default(),
            executor: if o.slurm.contains(&m.profile.id) {
                ExecutorConfig::Slurm(SlurmConfig {
                    partition: None,
                    account: None,
                    sbatch_args: Vec::new(),
                    max_gpus: None,
                    bin_dir: None,
                    poll_ms: 100,
                })
            } else {
                ExecutorConfig::Local
            },
            admin: AdminConfig {
                listen: "127.0.0.1:0".parse()?,
                token_file: "admin.token".into(),
                tokens_dir: "tokens".into(),
                allow_remote: false,
            },
            core: {
                let mut c = devnet_core(&cap);
                if let Some(i) = o.intake {
                    c.referral_intake = i;
                }
                if let Some(t) = o.decision_ttl {
                    c.decision_ttl_ms = t.as_millis().try_into().unwrap_or(u64::MAX);
                    // An offer lives at least as long as the adviser may take.
                    c.offer_ttl_ms = c.offer_ttl_ms.max(c.decision_ttl_ms);
                }
                c
            },
        };
        cfg.save(&m.dir.join("node.toml"))?;
    }
    Ok(members)
}

fn spawn(member: &Member) -> Result<Child> {
    let config = member.dir.join("node.toml");
    let log = std::fs::File::create(member.dir.join("node.log"))?;
    let exe = std::env::current_exe().context("locating the aiguillage binary")?;
    Command::new(exe)
        .args(["run", "--config"])
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", member.profile.id))
}

/// Waits for a node's run.json to list a listen address.
fn wait_listening(dir: &Path, deadline: Instant) -> Result<String> {
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("run.json"))
            && let Ok(v) = serde_json::from_str::<Value>(&text)
            && let Some(addr) = v["listen"].get(0).and_then(Value::as_str)
        {
            return Ok(addr.to_owned());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not start listening in time (see {}/node.log)",
                dir.display(),
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Federation {
    pub children: Vec<(MemberId, Child)>,
    pub clients: BTreeMap<MemberId, AdminClient>,
    pub members: Vec<MemberId>,
    pub countries: BTreeMap<MemberId, String>,
}

impl Federation {
    pub fn stop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (id, c) in &mut self.children {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        eprintln!("{id} did not stop in time; killing it");
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        self.children.clear();
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Prepares and starts every member; returns once each has every other advert.
pub fn start(o: &DevnetOptions) -> Result<Federation> {
    let members = prepare(o)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut fed = Federation {
        children: Vec::new(),
        clients: BTreeMap::new(),
        members: members.iter().map(|m| m.profile.id.clone()).collect(),
        countries: members
            .iter()
            .map(|m| (m.profile.id.clone(), m.profile.country.to_string()))
            .collect(),
    };
    for m in &members {
        fed.children.push((m.profile.id.clone(), spawn(m)?));
    }
    for m in &members {
        wait_listening(&m.dir, deadline)?;
        fed.clients
            .insert(m.profile.id.clone(), AdminClient::for_data_dir(&m.dir)?);
    }
    let n = members.len();
    let started = Instant::now();
    loop {
        let mut complete = 0;
        for c in fed.clients.values() {
            if c.get("/status").ok().and_then(|s| s["directory"].as_u64()) == Some((n - 1) as u64) {
                complete += 1;
            }
        }
        eprint!(
            "\r{complete}/{n} members hold every advert ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        if complete == n {
            eprintln!();
            break;
        }
        if Instant::now() > deadline {
            eprintln!();
            bail!(
                "adverts did not converge within 60 s; logs are in {}",
                o.dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(fed)
}

fn project(sector: Sector, country: &str, n: usize) -> Value {
    json!({
        "sector": sector.tag(),
        "country": country,
        "company_size": "small",
        "stage": "assessment",
        "services_needed": ["assessment", "poc_sandbox"],
        "gpu_hours": 100 + (n as u32 % 7) * 250,
        "languages": ["en"],
        "consent": { "whole_federation": true },
        "dossier": {
            "company": format!("Devnet client {n}"),
            "contact_name": "Devnet contact",
            "contact_email": format!("client{n}@devnet.invalid"),
            "summary": format!("Synthetic {} project", sector.tag()),
        }
    })
}

/// Drives the workload, plays the operators, and prints the summary.
pub fn workload(fed: &Federation, o: &DevnetOptions) -> Result<()> {
    let ids: Vec<&MemberId> = fed.members.iter().collect();
    let mut filed = 0usize;
    for n in 0..o.projects {
        let at = ids[n % ids.len()];
        // Each member sees every sector in turn.
        let sector = Sector::ALL[(n / ids.len() + n * 3) % Sector::ALL.len()];
        fed.clients[at].post("/projects", &project(sector, &fed.countries[at], n))?;
        filed += 1;
    }
    // Jobs go to the members with the fewest GPUs so that they overflow.
    let mut by_gpus: Vec<(u64, &MemberId)> = fed
        .clients
        .iter()
        .filter_map(|(id, c)| Some((c.get("/status").ok()?["gpus_total"].as_u64()?, id)))
        .filter(|(g, _)| *g > 0)
        .collect();
    by_gpus.sort();
    for n in 0..o.jobs {
        let Some((gpus, at)) = by_gpus.get(n % by_gpus.len().max(1)) else {
            break;
        };
        let job = json!({
            "gpus": gpus + 1,
            "time_limit_s": 60,
            "start_within_s": 120,
            "command": ["sh", "-c", "sleep 1"],
        });
        fed.clients[*at].post("/jobs", &job)?;
    }
    eprintln!(
        "filed {filed} projects and {} jobs; playing the operators…",
        o.jobs
    );
    let started = Instant::now();
    loop {
        let mut open = 0;
        for c in fed.clients.values() {
            for r in c.get("/referrals")?.as_array().cloned().unwrap_or_default() {
                if r["direction"] == "in" && r["state"] == "awaiting_decision" {
                    let id = r["referral"].as_str().unwrap_or_default();
                    // Operators accept most referrals outside their priorities.
                    let accept = !id.ends_with('3');
                    let action = if accept { "accept" } else { "decline" };
                    let _ = c.post(
                        &format!("/referrals/{id}/{action}"),
                        &json!({ "detail": "devnet operator" }),
                    );
                }
                if r["direction"] == "out" && r["open"] == true {
                    open += 1;
                }
            }
            for j in c.get("/jobs")?.as_array().cloned().unwrap_or_default() {
                if j["direction"] == "submitted" && j["open"] == true {
                    open += 1;
                }
            }
        }
        eprint!(
            "\r{open} referrals and jobs still open ({:.0} s)   ",
            started.elapsed().as_secs_f64()
        );
        if open == 0 || started.elapsed() > o.timeout {
            eprintln!();
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    summary(fed)
}

pub fn summary(fed: &Federation) -> Result<()> {
    println!(
        "{:<14} {:>5} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7}",
        "member", "kept", "refer", "acc-out", "decl", "exhst", "acc-in", "jobs", "hosted", "used"
    );
    let mut accept_times = Vec::new();
    let (mut placed, mut completed) = (0, 0);
    for (id, c) in &fed.clients {
        let kpi = c.get("/kpi")?;
        let mut acc_out = 0;
        let mut declined = 0;
        for (_, sectors) in kpi["referrals_out"]
            .as_object()
            .cloned()
            .unwrap_or_default()
        {
            for (_, outcomes) in sectors.as_object().cloned().unwrap_or_default() {
                for (o, n) in outcomes.as_object().cloned().unwrap_or_default() {
                    let n = n.as_u64().unwrap_or(0);
                    if o == "accepted" {
                        acc_out += n;
                    } else if o.starts_with("declined") || o == "expired" {
                        declined += n;
                    }
                }
            }
        }
        let mut acc_in = 0;
        let mut exhausted = 0;
        for r in c.get("/referrals")?.as_array().cloned().unwrap_or_default() {
            if r["direction"] == "in" && r["was_accepted"] == true {
                acc_in += 1;
            }
            if r["direction"] == "out" {
                if r["state"] == "exhausted" {
                    exhausted += 1;
                }
                if let Some(id) = r["referral"].as_str()
                    && let Ok(full) = c.get(&format!("/referrals/{id}"))
                {
                    for a in full["referral"]["attempts"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                    {
                        if a["outcome"]["outcome"] == "accepted"
                            && let (Some(o), Some(t)) =
                                (a["offered_at"].as_u64(), a["answered_at"].as_u64())
                        {
                            accept_times.push((t - o) as f64);
                        }
                    }
                }
            }
        }
        let jobs = c.get("/jobs")?.as_array().cloned().unwrap_or_default();
        let fed_jobs = jobs
            .iter()
            .filter(|j| j["direction"] == "submitted" && j["epoch"].as_u64().unwrap_or(0) > 0)
            .count();
        placed += fed_jobs;
        completed += jobs
            .iter()
            .filter(|j| {
                j["direction"] == "submitted"
                    && j["epoch"].as_u64().unwrap_or(0) > 0
                    && j["phase"] == "done"
            })
            .count();
        println!(
            "{:<14} {:>5} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7.3} {:>7.3}",
            id.as_str(),
            kpi["projects_kept"].as_u64().unwrap_or(0),
            kpi["projects_referred"].as_u64().unwrap_or(0),
            acc_out,
            declined,
            exhausted,
            acc_in,
            fed_jobs,
            kpi["gpu_hours_hosted"].as_f64().unwrap_or(0.0),
            kpi["gpu_hours_consumed"].as_f64().unwrap_or(0.0),
        );
    }
    accept_times.sort_by(f64::total_cmp);
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |ms| format!("{ms:.0} ms"));
    println!(
        "time to acceptance: median {}, p99 {} over {} accepted referrals",
        fmt(aiguillage_core::stats::quantile(&accept_times, 0.5)),
        fmt(aiguillage_core::stats::quantile(&accept_times, 0.99)),
        accept_times.len()
    );
    println!("overflow jobs placed at a peer: {placed}, completed: {completed}");
    println!("(hosted/used: GPU-hours this member ran for others / others ran for it)");
    Ok(())
}

/// Each member's console and the operator token that signs in to it.
fn print_consoles(fed: &Federation, dir: &Path) {
    println!("consoles (sign in with the token; advisers get theirs from `aiguillage token add`):");
    for m in &fed.members {
        let token =
            std::fs::read_to_string(dir.join(m.as_str()).join("admin.token")).unwrap_or_default();
        if let Some(c) = fed.clients.get(m) {
            println!(
                "  {:<16} http://{}/console  token {}",
                m.as_str(),
                c.addr,
                token.trim()
            );
        }
    }
}

pub async fn run(o: DevnetOptions) -> Result<()> {
    if o.prepare_only {
        let members = prepare(&o)?;
        println!(
            "prepared {} members in {}; start each with `aiguillage run --config {}/<member>/node.toml`",
            members.len(),
            o.dir.display(),
            o.dir.display()
        );
        return Ok(());
    }
    let opts = std::sync::Arc::new(o);
    let o2 = opts.clone();
    let work = tokio::task::spawn_blocking(move || -> Result<Federation> {
        let fed = start(&o2)?;
        workload(&fed, &o2)?;
        Ok(fed)
    });
    tokio::select! {
        r = work => {
            let mut fed = r.context("the devnet driver panicked")??;
            if opts.keep_running {
                print_consoles(&fed, &opts.dir);
                println!("the federation keeps running; try `aiguillage status --node {}`. Ctrl-C stops it.", fed.members[0]);
                let _ = tokio::signal::ctrl_c().await;
            }
            fed.stop();
            Ok(())
        }
        _ = tokio::signal::ctrl_c() => {
            // The children got the same Ctrl-C from the terminal; the driver's Drop stops
            // any that did not.
            eprintln!("\ninterrupted; stopping every member");
            Ok(())
        }
    }
}
