//! `aiguillage run`: the node. One task owns the core and the store; the network task, the
//! admin API and the executor talk to it through channels. Every call to the core is
//! persisted (and flushed) before any of its outputs leaves the node.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aiguillage_core::project_file::ProjectFile;
use aiguillage_core::{Core, Input, Notification, Output};
use aiguillage_net::{
    Channel, Client, MessageAcceptance, Multiaddr, NetConfig, NetEvent, PeerId, Topic,
};
use aiguillage_store::Store;
use aiguillage_wire::{
    Envelope, JobId, MemberId, MessageKind, ProgressState, PublicKey, ReferralId, Service,
    SigningKey, TrustError,
};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::api::{self, ApiCall, ApiError, ApiReply};
use crate::config::NodeConfig;
use crate::executor::{Executor, ExecutorConfig, Report, local::Local, slurm::Slurm};
use crate::job_file::JobFile;
use crate::metrics::Metrics;
use crate::{clock, files, profiles};

/// What a running node publishes about itself for tools (devnet, CLI): `<data_dir>/run.json`.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct RunInfo {
    pub member: MemberId,
    pub peer_id: String,
    pub admin: std::net::SocketAddr,
    pub listen: Vec<String>,
    pub pid: u32,
}

struct Node {
    core: Core,
    authority: PublicKey,
    roster_serial: Option<u64>,
    store: Store,
    key: SigningKey,
    client: Client,
    peers: HashMap<MemberId, PeerId>,
    members: HashMap<PeerId, MemberId>,
    metrics: Arc<Metrics>,
    executor: Executor,
    notifications: VecDeque<(u64, Notification)>,
    own_advert: Option<Envelope>,
    sync_tx: mpsc::Sender<Vec<Vec<u8>>>,
    /// Changes to the sync snapshot, handed to the network task in the order they were made.
    sync_updates: mpsc::UnboundedSender<Vec<(String, Option<Vec<u8>>)>>,
    run_info: RunInfo,
    run_path: PathBuf,
    /// Open group commit: outputs and changed records held until one flush covers them.
    batch: Option<Batch>,
}

#[derive(Default)]
struct Batch {
    inputs: u32,
    outputs: Vec<Output>,
    dirty: std::collections::BTreeSet<aiguillage_core::StateKey>,
}

/// Network events handled under one commit at most.
const MAX_BATCH: usize = 256;

/// The exit status when the store refuses a commit (EX_IOERR).
const EXIT_STORE_FAILED: i32 = 74;

pub async fn run(config_path: &Path) -> Result<()> {
    let cfg = NodeConfig::load(config_path)?;
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
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let store = open_store(&cfg.data_dir)?;
    let state = store.load().context("loading the stored state")?;
    let authority = PublicKey::from_hex(&cfg.authority).with_context(|| {
        format!(
            "{}: authority must be the federation authority's public key in hex (ask the authority; `aiguillage keys show` prints one)",
            config_path.display()
        )
    })?;
    let mut core = Core::new(profile, key.clone(), authority, cfg.core.clone(), state);
    match core.install_roster(roster_env, clock::now()) {
        Ok(()) => {}
        // The stored roster is the same or newer: keep it.
        Err(TrustError::StaleSerial { .. }) => {}
        Err(e) => bail!("refusing roster {}: {e}", cfg.roster.display()),
    }
    let roster = core.roster().context("no roster")?.clone();
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
    let mut peers = HashMap::new();
    let mut members = HashMap::new();
    for m in &roster.members {
        if let Ok(p) = aiguillage_net::peer_id_of(&m.key) {
            peers.insert(m.id.clone(), p);
            members.insert(p, m.id.clone());
        }
    }

    let keypair = aiguillage_net::keypair_of(&key);
    let peer_id = keypair.public().to_peer_id();
    let mut net = NetConfig::new(keypair);
    net.limits = cfg.limits.connections();
    net.peer_rate = cfg.limits.peer_rate();
    net.allowed = members.keys().copied().filter(|p| *p != peer_id).collect();
    for l in &cfg.listen {
        net.listen
            .push(l.parse().with_context(|| format!("listen address {l:?}"))?);
    }
    for b in &cfg.bootstrap {
        let addr: Multiaddr = b
            .parse()
            .with_context(|| format!("bootstrap address {b:?}"))?;
        net.bootstrap.push(addr);
    }
    let metrics = Arc::new(Metrics::new());
    let refused = metrics.refused.clone();
    net.on_refused = aiguillage_net::OnRefused(Arc::new(move |r: aiguillage_net::Refusal| {
        // A message refused for its rate was not opened: its kind is unknown.
        let kind = if r.channel == "connection" {
            "connection"
        } else {
            "-"
        };
        refused.with_label_values(&[r.reason, kind]).inc();
    }));
    let (client, mut net_events, event_loop) =
        aiguillage_net::start(net).context("starting the network")?;
    tokio::spawn(event_loop.run());

    let token = files::read_to_string(&cfg.admin.token_file)?
        .trim()
        .to_owned();
    if token.len() < 16 {
        bail!(
            "{}: the admin token must be at least 16 characters",
            cfg.admin.token_file.display()
        );
    }
    let registry = metrics.registry.clone();
    let (api_tx, mut api_rx) = mpsc::channel(64);
    let listener = tokio::net::TcpListener::bind(cfg.admin.listen)
        .await
        .with_context(|| format!("binding the admin API on {}", cfg.admin.listen))?;
    let admin = listener.local_addr()?;
    let router = api::router(token, api_tx, Arc::new(move || Metrics::render(&registry)));
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
    let (sync_tx, mut sync_rx) = mpsc::channel(64);
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
    let run_path = cfg.data_dir.join("run.json");
    let roster_serial = core.roster().map(|r| r.serial);
    let mut node = Node {
        core,
        authority,
        roster_serial,
        store,
        key,
        client,
        peers,
        members,
        metrics,
        executor,
        notifications: VecDeque::new(),
        own_advert: None,
        sync_tx,
        sync_updates,
        run_info: RunInfo {
            member: cfg.member.clone(),
            peer_id: peer_id.to_string(),
            admin,
            listen: Vec::new(),
            pid: std::process::id(),
        },
        run_path,
        batch: None,
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

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let deadline = node.core.next_deadline();
        let sleep = async {
            match deadline {
                Some(at) => {
                    let ms = at.millis().saturating_sub(clock::now().millis());
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await
                }
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            Some(ev) = net_events.recv() => {
                // Group commit: whatever else the network has delivered is handled too, and
                // all of it is made durable with one flush before any output leaves.
                node.begin_batch();
                node.on_net(ev);
                for _ in 1..MAX_BATCH {
                    match net_events.try_recv() {
                        Ok(ev) => node.on_net(ev),
                        Err(_) => break,
                    }
                }
                node.end_batch();
            }
            Some((call, reply)) = api_rx.recv() => {
                // Admin calls that arrive together share one commit too. Each answer waits
                // for the flush: a caller is never told of a change the store has not kept.
                node.begin_batch();
                let mut answered = vec![(node.on_api(call), reply)];
                for _ in 1..MAX_BATCH {
                    match api_rx.try_recv() {
                        Ok((call, reply)) => answered.push((node.on_api(call), reply)),
                        Err(_) => break,
                    }
                }
                node.end_batch();
                for (answer, reply) in answered {
                    let _ = reply.send(answer);
                }
            }
            Some(report) = exec_rx.recv() => node.on_executor(report),
            Some(envelopes) = sync_rx.recv() => {
                node.begin_batch();
                for bytes in envelopes {
                    node.receive(&bytes);
                }
                node.end_batch();
            }
            () = sleep => {
                node.apply(Input::Tick);
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    info!("shutting down");
    Ok(())
}

/// Opens the store, waiting a little for the lock: after a crash, the old process's
/// threads may hold it for a moment longer.
pub fn open_store(data_dir: &Path) -> Result<Store> {
    Store::open_waiting(&data_dir.join("db"), std::time::Duration::from_secs(10))
        .with_context(|| format!("opening the store in {}", data_dir.display()))
}

/// Where an envelope sits in the snapshot that answers peers' sync requests: one entry per
/// advertising member and one for the roster.
fn sync_key(envelope: &Envelope) -> String {
    if envelope.kind == MessageKind::Roster {
        "roster".to_owned()
    } else {
        envelope.signer.to_string()
    }
}

fn channel_for(kind: MessageKind) -> Channel {
    match kind {
        MessageKind::Offer
        | MessageKind::Accept
        | MessageKind::Decline
        | MessageKind::Withdraw
        | MessageKind::HandOver
        | MessageKind::Progress => Channel::Referral,
        _ => Channel::Overflow,
    }
}

impl Node {
    /// Hands the executor every job the core believes running, so that it finds each again
    /// (or reports how it ended while the node was down, or that it vanished).
    fn recover_jobs(&mut self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let state = self.core.state();
        let mut jobs: Vec<_> = state
            .jobs
            .iter()
            .filter(|(_, j)| matches!(j.phase, aiguillage_core::JobPhase::Local))
            .map(|(id, j)| (id.clone(), 0, j.spec.clone(), true))
            .collect();
        jobs.extend(state.hosted.iter().filter_map(|(id, h)| match h.phase {
            aiguillage_core::HostPhase::Running { started_at, .. } => {
                Some((id.clone(), h.epoch, h.spec.clone(), started_at.is_some()))
            }
            _ => None,
        }));
        if jobs.is_empty() {
            return None;
        }
        info!(jobs = jobs.len(), "following jobs from before the restart");
        Some(self.executor.recover(jobs))
    }

    fn on_executor(&mut self, report: Report) {
        match report {
            Report::Job { job, epoch, event } => {
                self.apply(Input::Executor { job, epoch, event });
            }
            Report::Capacity(total_gpus) => {
                self.apply(Input::Capacity { total_gpus });
            }
        }
    }

    /// Hands the network task everything a sync request is answered with; commits keep it
    /// current from then on.
    fn seed_sync(&self) {
        let mut entries: Vec<(String, Option<Vec<u8>>)> = self
            .core
            .directory_envelopes()
            .iter()
            .map(|e| (sync_key(e), Some(e.to_bytes())))
            .collect();
        if let Some(own) = &self.own_advert {
            entries.push((sync_key(own), Some(own.to_bytes())));
        }
        let _ = self.sync_updates.send(entries);
    }

    fn write_run_info(&self) {
        match serde_json::to_vec_pretty(&self.run_info) {
            Ok(bytes) => {
                if let Err(e) = files::write_atomic(&self.run_path, &bytes) {
                    warn!("cannot write {}: {e:#}", self.run_path.display());
                }
            }
            Err(e) => warn!("cannot encode run info: {e}"),
        }
    }

    /// Inputs from here to `end_batch` are committed together.
    fn begin_batch(&mut self) {
        self.batch.get_or_insert_with(Batch::default);
    }

    /// Persists everything the batch changed with one flush, then acts on its outputs.
    /// A batch of reads only has nothing to keep.
    fn end_batch(&mut self) {
        if let Some(b) = self.batch.take()
            && b.inputs > 0
        {
            self.metrics.commit_batch.observe(b.inputs as f64);
            self.commit_and_act(b.outputs, b.dirty);
        }
    }

    /// Feeds one input to the core, persists what changed, then acts on the outputs (or,
    /// inside a batch, leaves both to `end_batch`; nothing leaves the node before that).
    /// Returns the input's notifications.
    fn apply(&mut self, input: Input) -> Vec<Notification> {
        let outputs = self.core.handle(clock::now(), input);
        let dirty = self.core.take_dirty();
        if let Some(b) = &mut self.batch {
            let notes = outputs
                .iter()
                .filter_map(|o| match o {
                    Output::Notify(n) => Some(n.clone()),
                    _ => None,
                })
                .collect();
            b.inputs += 1;
            b.outputs.extend(outputs);
            b.dirty.extend(dirty);
            return notes;
        }
        self.commit_and_act(outputs, dirty)
    }

    /// Persists, then acts. A store that refuses the commit stops the node.
    fn commit_and_act(
        &mut self,
        outputs: Vec<Output>,
        dirty: std::collections::BTreeSet<aiguillage_core::StateKey>,
    ) -> Vec<Notification> {
        let audit: Vec<_> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Audit(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        if let Err(e) = self
            .store
            .commit(self.core.state(), &dirty, &audit, &self.key)
        {
            // The core's memory already holds changes the store refused; carrying on would
            // let them out later through re-sends. Stop instead: nothing of them has left,
            // and a restart resumes from what the store kept.
            error!(
                "cannot persist state: {e}. Stopping with {} output(s) unsent; restart the \
                 node once its store is writable",
                outputs.len()
            );
            std::process::exit(EXIT_STORE_FAILED);
        }
        let mut notes = Vec::new();
        let mut sync_entries: Vec<(String, Option<Vec<u8>>)> = dirty
            .iter()
            .filter_map(|k| match k {
                aiguillage_core::StateKey::Listing(m) => Some((
                    m.to_string(),
                    self.core
                        .state()
                        .directory
                        .get(m)
                        .map(|l| l.envelope.to_bytes()),
                )),
                _ => None,
            })
            .collect();
        for o in outputs {
            match o {
                Output::Publish(envelope) => {
                    let topic = if envelope.kind == MessageKind::Roster {
                        Topic::Roster
                    } else {
                        sync_entries.push((sync_key(&envelope), Some(envelope.to_bytes())));
                        self.own_advert = Some(envelope.clone());
                        Topic::Adverts
                    };
                    let client = self.client.clone();
                    let bytes = envelope.to_bytes();
                    tokio::spawn(async move {
                        let _ = client.publish(topic, bytes).await;
                    });
                }
                Output::Send { to, envelope } => {
                    let Some(peer) = self.peers.get(&to).copied() else {
                        warn!(%to, "no peer id for member");
                        continue;
                    };
                    let client = self.client.clone();
                    let channel = channel_for(envelope.kind);
                    let kind = envelope.kind;
                    let bytes = envelope.to_bytes();
                    tokio::spawn(async move {
                        if let Err(e) = client.send(peer, channel, bytes).await {
                            debug!(%to, %kind, "send failed (the core re-sends what is owed): {e}");
                        }
                    });
                }
                Output::StartJob { job, epoch, spec } => self.executor.start(job, epoch, spec),
                Output::CancelJob { job, epoch } => self.executor.cancel(job, epoch),
                Output::Notify(n) => {
                    self.count(&n);
                    notes.push(n.clone());
                    let seq = self.notifications.back().map_or(1, |(s, _)| s + 1);
                    self.notifications.push_back((seq, n));
                    if self.notifications.len() > 1000 {
                        self.notifications.pop_front();
                    }
                }
                Output::Refused(r) => {
                    debug!(from = ?r.from, reason = %r.reason, "refused: {}", r.detail);
                    self.metrics
                        .refused
                        .with_label_values(&[r.reason.as_str(), r.kind.as_deref().unwrap_or("-")])
                        .inc();
                }
                Output::Audit(_) | Output::Wake { .. } => {}
            }
        }
        self.update_gauges();
        if self.follow_roster()
            && let Some((_, roster)) = &self.core.state().roster
        {
            sync_entries.push((sync_key(roster), Some(roster.to_bytes())));
        }
        if !sync_entries.is_empty() {
            let _ = self.sync_updates.send(sync_entries);
        }
        notes
    }

    /// After a newer roster was installed: who may connect, and which peer is which member.
    /// Returns whether the roster changed.
    fn follow_roster(&mut self) -> bool {
        let serial = self.core.roster().map(|r| r.serial);
        if serial == self.roster_serial {
            return false;
        }
        self.roster_serial = serial;
        let Some(roster) = self.core.roster() else {
            return true;
        };
        self.peers.clear();
        self.members.clear();
        for m in &roster.members {
            if let Ok(p) = aiguillage_net::peer_id_of(&m.key) {
                self.peers.insert(m.id.clone(), p);
                self.members.insert(p, m.id.clone());
            }
        }
        let me: Option<PeerId> = self.run_info.peer_id.parse().ok();
        let allowed = self
            .members
            .keys()
            .copied()
            .filter(|p| Some(*p) != me)
            .collect();
        info!(serial = ?serial, members = roster.members.len(), "roster updated");
        let client = self.client.clone();
        tokio::spawn(async move {
            let _ = client.set_allowed(allowed).await;
        });
        true
    }

    fn count(&self, n: &Notification) {
        let m = &self.metrics;
        match n {
            Notification::ReferralAccepted { referral, .. }
            | Notification::ReferralDeclined { referral, .. } => {
                if let Some(a) = self
                    .core
                    .state()
                    .outgoing
                    .get(referral)
                    .and_then(|r| r.attempts.last())
                    && let Some(at) = a.answered_at
                {
                    m.offer_answer_seconds.observe(
                        (at.millis().saturating_sub(a.offered_at.millis())) as f64 / 1000.0,
                    );
                }
            }
            Notification::JobPlaced { .. } => m.overflow.with_label_values(&["placed"]).inc(),
            Notification::JobReplaced { .. } => m.overflow.with_label_values(&["replaced"]).inc(),
            Notification::JobQueued { .. } => m.overflow.with_label_values(&["queued"]).inc(),
            Notification::JobFinished { host: Some(_), .. } => {
                m.overflow.with_label_values(&["finished"]).inc()
            }
            _ => {}
        }
    }

    fn update_gauges(&self) {
        let s = self.core.state();
        let m = &self.metrics;
        m.referrals.reset();
        for r in s.outgoing.values() {
            m.referrals
                .with_label_values(&["out", &format!("{:?}", r.state).to_lowercase()])
                .inc();
        }
        for r in s.incoming.values() {
            let state = serde_json::to_value(&r.state)
                .ok()
                .and_then(|v| v.get("state").and_then(|s| s.as_str().map(str::to_owned)))
                .unwrap_or_default();
            m.referrals.with_label_values(&["in", &state]).inc();
        }
        let (mut hosted, mut consumed) = (0u64, 0u64);
        for (_, t) in s.ledger.peers() {
            hosted += t.gpu_seconds_hosted;
            consumed += t.gpu_seconds_consumed;
        }
        m.gpu_seconds
            .with_label_values(&["hosted"])
            .set(hosted as i64);
        m.gpu_seconds
            .with_label_values(&["consumed"])
            .set(consumed as i64);
    }

    /// Checks peer bytes up to roster membership; returns the envelope if it may go on.
    fn check(&self, bytes: &[u8]) -> Result<Envelope, (String, String)> {
        let envelope = Envelope::from_bytes(bytes)
            .map_err(|e| (e.reason_label().to_owned(), "-".to_owned()))?;
        let kind = envelope.kind.name().to_owned();
        envelope
            .verify(clock::now())
            .map_err(|e| (e.reason_label().to_owned(), kind.clone()))?;
        if envelope.kind == MessageKind::Roster {
            aiguillage_wire::Roster::verify_signed(envelope.clone(), &self.authority, clock::now())
                .map_err(|e| (e.reason_label().to_owned(), kind.clone()))?;
        } else {
            let roster = self
                .core
                .roster()
                .ok_or(("not_rostered".to_owned(), kind.clone()))?;
            roster
                .authorise(&envelope, clock::now())
                .map_err(|e| (e.reason_label().to_owned(), kind.clone()))?;
        }
        Ok(envelope)
    }

    /// Hands checked peer bytes to the core; returns whether they were acceptable.
    fn receive(&mut self, bytes: &[u8]) -> bool {
        match self.check(bytes) {
            Ok(envelope) => {
                if envelope.kind == MessageKind::Advert {
                    self.metrics.adverts_received.inc();
                }
                self.apply(Input::Received(envelope));
                true
            }
            Err((reason, kind)) => {
                self.metrics
                    .refused
                    .with_label_values(&[reason.as_str(), kind.as_str()])
                    .inc();
                false
            }
        }
    }

    fn on_net(&mut self, event: NetEvent) {
        match event {
            NetEvent::Gossip {
                source, id, data, ..
            } => {
                let ok = self.receive(&data);
                let acceptance = if ok {
                    MessageAcceptance::Accept
                } else {
                    MessageAcceptance::Reject
                };
                let client = self.client.clone();
                tokio::spawn(async move {
                    let _ = client.report(id, source, acceptance).await;
                });
            }
            NetEvent::Direct { data, .. } => {
                self.receive(&data);
            }
            NetEvent::PeerConnected(peer) => {
                self.metrics.peers.inc();
                debug!(member = ?self.members.get(&peer), "peer connected");
                let client = self.client.clone();
                let tx = self.sync_tx.clone();
                tokio::spawn(async move {
                    match client.sync(peer).await {
                        Ok(envelopes) => {
                            let _ = tx.send(envelopes).await;
                        }
                        Err(e) => debug!(%peer, "directory sync failed: {e}"),
                    }
                });
            }
            NetEvent::PeerDisconnected(_) => {
                self.metrics.peers.dec();
            }
            NetEvent::Listening(addr) => {
                self.run_info
                    .listen
                    .push(format!("{addr}/p2p/{}", self.run_info.peer_id));
                self.write_run_info();
            }
        }
    }

    fn on_api(&mut self, call: ApiCall) -> ApiReply {
        let s = self.core.state();
        let to_json = |v: &dyn erased::Ser| v.json();
        match call {
            ApiCall::Status => {
                let roster = self.core.roster();
                Ok(json!({
                    "member": self.core.me(),
                    "peer_id": self.run_info.peer_id,
                    "listen": self.run_info.listen,
                    "peers_connected": self.metrics.peers.get(),
                    "directory": s.directory.len(),
                    "roster_serial": roster.map(|r| r.serial),
                    "roster_members": roster.map(|r| r.members.len()),
                    "gpus_total": s.total_gpus,
                    "gpus_free": self.core.free_gpus(),
                    "projects": s.projects.len(),
                    "referrals_out": s.outgoing.len(),
                    "referrals_in": s.incoming.len(),
                    "jobs": s.jobs.len(),
                    "jobs_hosted": s.hosted.len(),
                }))
            }
            ApiCall::Directory => {
                let rows: Vec<Value> = s
                    .directory
                    .fresh(clock::now())
                    .map(|l| {
                        let a = &l.advert;
                        json!({
                            "member": a.member, "name": a.name, "role": a.role.tag(), "country": a.country,
                            "seq": a.seq, "expires_at": l.envelope.expires_at,
                            "issued_at": l.envelope.issued_at, "received_at": l.received_at,
                            "priority": a.sectors.iter().filter(|(_, lv)| **lv == aiguillage_wire::SectorLevel::Priority).map(|(s, _)| s.tag()).collect::<Vec<_>>(),
                            "excluded": a.sectors.iter().filter(|(_, lv)| **lv == aiguillage_wire::SectorLevel::Excluded).map(|(s, _)| s.tag()).collect::<Vec<_>>(),
                            "gpus_total": a.gpu.total, "gpus_free": a.gpu.free, "takes_overflow": a.gpu.takes_overflow,
                            "referral_intake": a.referral_intake,
                        })
                    })
                    .collect();
                Ok(json!(rows))
            }
            ApiCall::Projects => Ok(to_json(&s.projects.values().collect::<Vec<_>>())),
            ApiCall::FileProject(body) => {
                let file: ProjectFile = serde_json::from_value(body)
                    .map_err(|e| ApiError::bad_request(format!("project: {e}")))?;
                let dossier = file.dossier.clone().ok_or_else(|| {
                    ApiError::bad_request("project: a dossier is needed to file a project")
                })?;
                let notes = self.apply(Input::FileProject {
                    card: file.card(),
                    dossier,
                });
                notes
                    .into_iter()
                    .find(|n| matches!(n, Notification::ProjectFiled { .. }))
                    .map(|n| to_json(&n))
                    .ok_or_else(|| {
                        ApiError::bad_request("the project could not be filed (see the node log)")
                    })
            }
            ApiCall::Referrals => {
                let out: Vec<Value> = s
                    .outgoing
                    .values()
                    .map(|r| {
                        json!({
                            "referral": r.id, "direction": "out", "sector": r.card.sector.tag(),
                            "state": r.state, "target": r.current().map(|a| &a.target),
                            "accepted_by": r.accepted_by(), "attempts": r.attempts.len(),
                        })
                    })
                    .chain(s.incoming.values().map(|r| {
                        json!({
                            "referral": r.id, "direction": "in", "sector": r.card.sector.tag(),
                            "state": r.state, "origin": r.origin,
                        })
                    }))
                    .collect();
                Ok(json!(out))
            }
            ApiCall::Referral(id) => {
                let id = ReferralId::new(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
                if let Some(r) = s.outgoing.get(&id) {
                    let explanation = s.projects.get(&r.card.project).map(|p| &p.explanation);
                    return Ok(
                        json!({ "direction": "out", "referral": to_json(r), "explanation": explanation.map(|e| to_json(e)) }),
                    );
                }
                if let Some(r) = s.incoming.get(&id) {
                    return Ok(json!({ "direction": "in", "referral": to_json(r) }));
                }
                Err(ApiError::not_found(format!("no referral {id}")))
            }
            ApiCall::Decide {
                referral,
                accept,
                detail,
            } => {
                let referral =
                    ReferralId::new(referral).map_err(|e| ApiError::bad_request(e.to_string()))?;
                let awaiting = s
                    .incoming
                    .get(&referral)
                    .map(|r| matches!(r.state, aiguillage_core::InState::AwaitingDecision { .. }));
                match awaiting {
                    None => {
                        return Err(ApiError::not_found(format!(
                            "no incoming referral {referral}"
                        )));
                    }
                    Some(false) => {
                        return Err(ApiError::bad_request(format!(
                            "{referral} does not await a decision"
                        )));
                    }
                    Some(true) => {}
                }
                self.apply(Input::Decide {
                    referral: referral.clone(),
                    accept,
                    detail,
                });
                Ok(to_json(&self.core.state().incoming[&referral].state))
            }
            ApiCall::Withdraw { referral, detail } => {
                let referral =
                    ReferralId::new(referral).map_err(|e| ApiError::bad_request(e.to_string()))?;
                if !s.outgoing.contains_key(&referral) {
                    return Err(ApiError::not_found(format!(
                        "no outgoing referral {referral}"
                    )));
                }
                self.apply(Input::Withdraw {
                    referral: referral.clone(),
                    detail,
                });
                Ok(to_json(&self.core.state().outgoing[&referral].state))
            }
            ApiCall::Progress { referral, body } => {
                #[derive(serde::Deserialize)]
                struct P {
                    step: Service,
                    state: ProgressState,
                    #[serde(default)]
                    note: String,
                }
                let p: P = serde_json::from_value(body)
                    .map_err(|e| ApiError::bad_request(format!("progress: {e}")))?;
                let referral =
                    ReferralId::new(referral).map_err(|e| ApiError::bad_request(e.to_string()))?;
                if !s.incoming.contains_key(&referral) {
                    return Err(ApiError::not_found(format!(
                        "no incoming referral {referral}"
                    )));
                }
                self.apply(Input::ReportProgress {
                    referral: referral.clone(),
                    step: p.step,
                    state: p.state,
                    note: p.note,
                });
                Ok(to_json(&self.core.state().incoming[&referral].state))
            }
            ApiCall::Jobs => {
                let rows: Vec<Value> = s
                    .jobs
                    .iter()
                    .map(|(id, j)| json!({ "job": id, "phase": j.phase, "epoch": j.epoch, "host": j.host(), "gpus": j.spec.requirements.gpus, "direction": "submitted" }))
                    .chain(s.hosted.iter().map(|(id, h)| json!({ "job": id, "phase": h.phase, "epoch": h.epoch, "origin": h.origin, "gpus": h.spec.requirements.gpus, "direction": "hosted" })))
                    .collect();
                Ok(json!(rows))
            }
            ApiCall::Job(id) => {
                let id = JobId::new(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
                if let Some(j) = s.jobs.get(&id) {
                    return Ok(
                        json!({ "direction": "submitted", "job": to_json(j), "host": j.host() }),
                    );
                }
                if let Some(h) = s.hosted.get(&id) {
                    return Ok(json!({ "direction": "hosted", "job": to_json(h) }));
                }
                Err(ApiError::not_found(format!("no job {id}")))
            }
            ApiCall::SubmitJob(body) => {
                let file: JobFile = serde_json::from_value(body)
                    .map_err(|e| ApiError::bad_request(format!("job: {e}")))?;
                file.check()
                    .map_err(|e| ApiError::bad_request(format!("job: {e}")))?;
                let before: std::collections::BTreeSet<JobId> = s.jobs.keys().cloned().collect();
                let now = clock::now();
                self.apply(Input::SubmitJob {
                    requirements: file.requirements(now),
                    command: file.command.clone(),
                    env: file.env(),
                });
                let new = self
                    .core
                    .state()
                    .jobs
                    .iter()
                    .find(|(id, _)| !before.contains(*id));
                match new {
                    Some((id, j)) => Ok(json!({ "job": id, "phase": j.phase })),
                    None => Err(ApiError::bad_request(
                        "the job could not be submitted (see the node log)",
                    )),
                }
            }
            ApiCall::CancelJob(id) => {
                let id = JobId::new(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
                if !s.jobs.contains_key(&id) {
                    return Err(ApiError::not_found(format!("no submitted job {id}")));
                }
                self.apply(Input::CancelJob { job: id.clone() });
                Ok(to_json(&self.core.state().jobs[&id].phase))
            }
            ApiCall::Ledger => {
                let rows: Vec<Value> = s
                    .ledger
                    .peers()
                    .map(|(m, t)| json!({ "member": m, "totals": t, "balance": s.ledger.balance(m, clock::now()) }))
                    .collect();
                Ok(json!(rows))
            }
            ApiCall::PublishAdvert => {
                self.apply(Input::PublishAdvert);
                Ok(json!({ "seq": self.core.state().advert_seq }))
            }
            ApiCall::Kpi => Ok(to_json(&aiguillage_core::kpi::Kpis::of(s))),
            ApiCall::Notifications => Ok(json!(
                self.notifications
                    .iter()
                    .map(|(seq, n)| json!({ "seq": seq, "notification": n }))
                    .collect::<Vec<_>>()
            )),
        }
    }
}

/// Serialising any state item to JSON for the API.
mod erased {
    pub trait Ser {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize + ?Sized> Ser for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}
