//! The discrete-event engine: one virtual clock, one queue of events ordered by (time,
//! sequence number), and one real `aiguillage_core::Core` per member. Everything a core
//! outputs is carried out here: messages travel the simulated network, jobs run on a
//! simulated executor, notifications reach simulated operators, and every output passes the
//! invariant checker on its way.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;

use aiguillage_core::{
    Core, CoreConfig, ExecutorEvent, Input, Notification, Output, State, routing,
};
use aiguillage_wire::{
    Envelope, JobId, MemberId, MessageKind, ProgressState, ProjectId, PublicKey, ReferralId,
    Service, SigningKey, Timestamp,
};

use crate::archive::Archive;
use crate::check::Checker;
use crate::geo;
use crate::members::{self, MemberSetup};
use crate::metrics::{MemberRow, Metrics, PendingJob, SeriesRow};
use crate::rng::Rng;
use crate::scenario::{Dur, Fault, PolicySpec, Scenario};
use crate::workload::MemberWorkload;

/// Virtual time zero: 2026-05-28, so that timestamps look like real ones.
pub const T0: u64 = 1_780_000_000_000;

/// Adverts the shared verification cache holds (a few rounds of every member's advert).
const CACHE_ADVERTS: usize = 16_384;

#[derive(Debug)]
enum Event {
    Deliver {
        from: usize,
        to: usize,
        envelope: Envelope,
    },
    /// A gossiped envelope reaching every member of one country.
    Broadcast {
        from: usize,
        country: usize,
        envelope: Arc<Envelope>,
    },
    Wake {
        member: usize,
    },
    JobDone {
        member: usize,
        run: u64,
    },
    ProjectArrival {
        member: usize,
    },
    JobArrival {
        member: usize,
    },
    Decide {
        member: usize,
        life: u64,
        referral: ReferralId,
        accept: bool,
    },
    Report {
        member: usize,
        life: u64,
        referral: ReferralId,
        state: ProgressState,
    },
    /// The adviser at `member` ends the journey of a project it kept.
    EndJourney {
        member: usize,
        life: u64,
        project: ProjectId,
        state: ProgressState,
    },
    FaultStart(usize),
    FaultEnd(usize),
    Sample,
    Settle,
    End,
}

struct Queued {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // Reversed: BinaryHeap is a max-heap and the earliest event must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A job on a member's simulated executor.
#[derive(Clone, Debug)]
struct Run {
    job: JobId,
    epoch: u64,
    gpus: u32,
    started: u64,
    exit: i32,
    /// Finished while its member was down (jobs that survive a crash).
    finished_while_down: bool,
}

struct Node {
    core: Core,
    up: bool,
    /// Bumped at every crash, so that operator actions planned before it are dropped.
    life: u64,
    skew_ms: i64,
    silent: bool,
    wakes: BTreeSet<u64>,
    workload: MemberWorkload,
    operator: Rng,
    /// The adviser who ends the journeys of projects kept here (its own stream, so that
    /// turning it on leaves every other draw as it was).
    adviser: Rng,
    running: BTreeMap<u64, Run>,
    /// Jobs that vanished with the process, reported failed at restart.
    vanished: Vec<(JobId, u64)>,
    jobs_survive: bool,
}

/// How far a run got, for the progress bar.
pub type Progress<'a> = &'a mut dyn FnMut(f64);

/// The simulator for one scenario, seed and policy.
pub struct Sim<'s> {
    pub scenario: &'s Scenario,
    pub policy_name: String,
    pub seed: u64,
    pub members: Vec<MemberSetup>,
    pub index: BTreeMap<MemberId, usize>,
    nodes: Vec<Node>,
    keys: Vec<SigningKey>,
    authority: PublicKey,
    configs: Vec<CoreConfig>,
    queue: BinaryHeap<Queued>,
    seq: u64,
    pub now: u64,
    end: u64,
    arrivals_open: bool,
    net: Rng,
    /// Distinct member countries, members per country, one-way latency between countries.
    country_of: Vec<usize>,
    by_country: Vec<Vec<usize>>,
    latency_ms: Vec<Vec<u64>>,
    /// Per active partition: the group of each member.
    partitions: BTreeMap<usize, Vec<u32>>,
    loss: f64,
    duplicate: f64,
    cache: aiguillage_core::VerifyCache,
    archive: Archive,
    immediate: VecDeque<(usize, Input)>,
    next_run: u64,
    pub metrics: Metrics,
    pub checker: Checker,
    last_sample: u64,
}

impl<'s> Sim<'s> {
    /// Builds the federation: members, keys, roster, cores, and the first events.
    pub fn new(
        scenario: &'s Scenario,
        seed: u64,
        policy_name: &str,
        policy: &PolicySpec,
    ) -> Result<Sim<'s>, crate::SimError> {
        let members = members::build(scenario, seed)?;
        let keys: Vec<SigningKey> = (0..members.len())
            .map(|i| members::member_key(seed, i))
            .collect();
        let authority_key = members::authority_key(seed);
        let authority = PublicKey::of(&authority_key);
        let end = scenario.duration.ms() + scenario.settle.ms();
        let roster = members::roster(
            &members,
            &keys,
            &authority_key,
            Timestamp(T0),
            end + 24 * 3_600_000,
        )
        .map_err(|e| crate::SimError::Setup(format!("signing the roster: {e}")))?;
        let index: BTreeMap<MemberId, usize> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id().clone(), i))
            .collect();

        let mut countries: Vec<aiguillage_wire::CountryCode> =
            members.iter().map(|m| m.country()).collect();
        countries.sort();
        countries.dedup();
        let country_of: Vec<usize> = members
            .iter()
            .map(|m| countries.binary_search(&m.country()).unwrap_or(0))
            .collect();
        let mut by_country = vec![Vec::new(); countries.len()];
        for (i, c) in country_of.iter().enumerate() {
            by_country[*c].push(i);
        }
        let net = &scenario.network;
        let latency_ms: Vec<Vec<u64>> = countries
            .iter()
            .map(|a| {
                countries
                    .iter()
                    .map(|b| {
                        net.pairs
                            .iter()
                            .find(|p| (p.a == *a && p.b == *b) || (p.a == *b && p.b == *a))
                            .map(|p| p.latency.ms())
                            .unwrap_or_else(|| {
                                net.base_latency.ms()
                                    + (geo::distance_km(*a, *b) / 1000.0
                                        * net.per_1000km.ms() as f64)
                                        .round() as u64
                            })
                    })
                    .collect()
            })
            .collect();

        let cache = aiguillage_core::VerifyCache::new(CACHE_ADVERTS);
        let mut configs = Vec::new();
        let mut nodes = Vec::new();
        let skews: BTreeMap<&MemberId, i64> = scenario
            .faults
            .iter()
            .filter_map(|f| match f {
                Fault::ClockSkew { member, skew_ms } => Some((member, *skew_ms)),
                _ => None,
            })
            .collect();
        for (i, m) in members.iter().enumerate() {
            let cfg = core_config(scenario, policy, m);
            let state = State {
                // As a node restarting with its capacity stored: the first advert already
                // carries it.
                total_gpus: m.gpus,
                ..State::default()
            };
            let mut core = Core::new(
                m.profile.clone(),
                keys[i].clone(),
                authority,
                cfg.clone(),
                state,
            );
            core.set_verify_cache(Some(cache.clone()));
            core.install_roster(roster.clone(), Timestamp(T0))
                .map_err(|e| crate::SimError::Setup(format!("roster at {}: {e}", m.id())))?;
            let _ = core.take_dirty();
            configs.push(cfg);
            nodes.push(Node {
                core,
                up: true,
                life: 0,
                skew_ms: skews.get(m.id()).copied().unwrap_or(0),
                silent: false,
                wakes: BTreeSet::new(),
                workload: MemberWorkload::new(scenario, seed, i, &m.profile),
                operator: Rng::stream(seed, "operator", i as u64),
                adviser: Rng::stream(seed, "adviser", i as u64),
                running: BTreeMap::new(),
                vanished: Vec::new(),
                jobs_survive: false,
            });
        }
        let gpus: Vec<u32> = members.iter().map(|m| m.gpus).collect();
        let archive = Archive::new(members.len()).map_err(|e| {
            crate::SimError::Setup(format!("a temporary file for the archive: {e}"))
        })?;
        let mut sim = Sim {
            scenario,
            policy_name: policy_name.to_owned(),
            seed,
            members,
            index,
            nodes,
            keys,
            authority,
            configs,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            end,
            arrivals_open: true,
            net: Rng::stream(seed, "network", 0),
            country_of,
            by_country,
            latency_ms,
            partitions: BTreeMap::new(),
            loss: scenario.network.loss,
            duplicate: scenario.network.duplicate,
            cache,
            archive,
            immediate: VecDeque::new(),
            next_run: 0,
            metrics: Metrics::new(&gpus),
            checker: Checker::default(),
            last_sample: 0,
        };
        for m in 0..sim.nodes.len() {
            sim.feed(m, Input::Start);
            if let Some(t) = sim.nodes[m].workload.next_project(0) {
                sim.push(t, Event::ProjectArrival { member: m });
            }
            let profile = &sim.members[m].profile;
            if let Some(t) = sim.nodes[m].workload.next_job(0, &scenario.jobs, profile) {
                sim.push(t, Event::JobArrival { member: m });
            }
        }
        for (i, f) in scenario.faults.iter().enumerate() {
            match f {
                Fault::Crash { at, .. }
                | Fault::Partition { at, .. }
                | Fault::Silent { at, .. } => sim.push(at.ms(), Event::FaultStart(i)),
                Fault::ClockSkew { .. } => {}
            }
        }
        sim.push(scenario.sample_every.ms(), Event::Sample);
        sim.push(scenario.duration.ms(), Event::Settle);
        sim.push(end, Event::End);
        Ok(sim)
    }

    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            event,
        });
    }

    fn local_time(&self, m: usize) -> Timestamp {
        let t = (T0 + self.now) as i64 + self.nodes[m].skew_ms;
        Timestamp(t.max(0) as u64)
    }

    /// Runs every event until the end; `progress` hears the share of virtual time done.
    pub fn run(&mut self, mut progress: Option<Progress<'_>>) {
        let mut last_pct = 0u64;
        while let Some(q) = self.queue.pop() {
            self.now = self.now.max(q.at);
            self.metrics.events += 1;
            let done = matches!(q.event, Event::End);
            self.dispatch(q.event);
            self.drain_immediate();
            if let Some(p) = progress.as_mut() {
                let pct = self.now * 1000 / self.end.max(1);
                if pct != last_pct {
                    last_pct = pct;
                    p(pct as f64 / 1000.0);
                }
            }
            if done {
                break;
            }
        }
        for o in &mut self.metrics.occupancy {
            o.finish(self.now);
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, envelope } => self.deliver(from, to, envelope),
            Event::Broadcast {
                from,
                country,
                envelope,
            } => {
                for k in 0..self.by_country[country].len() {
                    let to = self.by_country[country][k];
                    if to == from {
                        continue;
                    }
                    if self.net.chance(self.loss) {
                        self.metrics.dropped_loss += 1;
                        continue;
                    }
                    self.metrics.advert_deliveries += 1;
                    self.deliver(from, to, (*envelope).clone());
                }
            }
            Event::Wake { member } => {
                if !self.nodes[member].wakes.remove(&self.now) {
                    return;
                }
                let due = self.nodes[member]
                    .core
                    .next_deadline()
                    .is_some_and(|d| d <= self.local_time(member));
                if due {
                    self.feed(member, Input::Tick);
                } else {
                    self.arm_wake(member);
                }
            }
            Event::JobDone { member, run } => self.job_done(member, run),
            Event::ProjectArrival { member } => self.project_arrival(member),
            Event::JobArrival { member } => self.job_arrival(member),
            Event::Decide {
                member,
                life,
                referral,
                accept,
            } => {
                let n = &self.nodes[member];
                if n.life == life && n.up && !n.silent {
                    self.metrics.decisions += 1;
                    self.feed(
                        member,
                        Input::Decide {
                            referral,
                            accept,
                            reason: None,
                            detail: "simulated operator".into(),
                            by: "simulated operator".into(),
                        },
                    );
                }
            }
            Event::Report {
                member,
                life,
                referral,
                state,
            } => {
                if self.nodes[member].life == life && self.nodes[member].up {
                    self.feed(
                        member,
                        Input::ReportProgress {
                            referral,
                            step: Service::Production,
                            state,
                            note: "simulated operator".into(),
                            by: "simulated operator".into(),
                        },
                    );
                }
            }
            Event::EndJourney {
                member,
                life,
                project,
                state,
            } => {
                if self.nodes[member].life == life && self.nodes[member].up {
                    self.feed(
                        member,
                        Input::ProjectProgress {
                            project,
                            step: Service::Production,
                            state,
                            note: "simulated adviser".into(),
                            by: "simulated adviser".into(),
                        },
                    );
                }
            }
            Event::FaultStart(i) => self.fault_start(i),
            Event::FaultEnd(i) => self.fault_end(i),
            Event::Sample => self.sample(),
            Event::Settle => self.settle(),
            Event::End => self.finish(),
        }
    }

    fn drain_immediate(&mut self) {
        while let Some((m, input)) = self.immediate.pop_front() {
            self.feed(m, input);
        }
    }

    /// Hands `input` to member `m`'s core and carries out what it outputs.
    fn feed(&mut self, m: usize, input: Input) {
        if let Some(outputs) = self.call(m, input) {
            self.route(m, outputs);
            self.arm_wake(m);
        }
    }

    fn call(&mut self, m: usize, input: Input) -> Option<Vec<Output>> {
        if !self.nodes[m].up {
            return None;
        }
        let now = self.local_time(m);
        let node = &mut self.nodes[m];
        let outputs = node.core.handle(now, input);
        self.metrics.core_calls += 1;
        self.metrics.state_writes += node.core.take_dirty().len() as u64;
        let retired = node.core.take_retired();
        self.metrics.records_retired += retired.len() as u64;
        if let Err(e) = self.archive.keep(m, retired) {
            panic!("the simulator could not write its archive file: {e}");
        }
        Some(outputs)
    }

    fn arm_wake(&mut self, m: usize) {
        let node = &self.nodes[m];
        if !node.up {
            return;
        }
        let Some(d) = node.core.next_deadline() else {
            return;
        };
        let global = (d.millis() as i64 - node.skew_ms - T0 as i64).max(self.now as i64) as u64;
        if node.wakes.first().is_none_or(|f| global < *f) {
            self.nodes[m].wakes.insert(global);
            self.push(global, Event::Wake { member: m });
        }
    }

    fn route(&mut self, m: usize, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Publish(envelope) => {
                    self.metrics.adverts_published += 1;
                    self.metrics
                        .outcome(&format!("{} advert {}", self.now, self.members[m].id()));
                    let size = envelope.payload.len() + 160;
                    let envelope = Arc::new(envelope);
                    for c in 0..self.by_country.len() {
                        let at = self.now + self.delay(self.country_of[m], c, size);
                        self.push(
                            at,
                            Event::Broadcast {
                                from: m,
                                country: c,
                                envelope: envelope.clone(),
                            },
                        );
                    }
                }
                Output::Send { to, envelope } => self.send(m, &to, envelope),
                Output::StartJob { job, epoch, spec } => {
                    let secs: u64 = spec
                        .command
                        .get(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(60);
                    let exit: i32 = spec
                        .command
                        .get(2)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let gpus = spec.requirements.gpus;
                    self.start_run(m, job, epoch, gpus, secs, exit);
                }
                Output::CancelJob { job, epoch } => {
                    let run = self.nodes[m]
                        .running
                        .iter()
                        .find(|(_, r)| r.job == job && r.epoch == epoch)
                        .map(|(id, _)| *id);
                    if let Some(id) = run
                        && let Some(r) = self.nodes[m].running.remove(&id)
                    {
                        let ran = self.now.saturating_sub(r.started);
                        self.metrics.occupancy[m].stop(self.now, r.gpus, ran, epoch > 0);
                        let gpu_seconds = ran / 1000 * u64::from(r.gpus);
                        self.immediate.push_back((
                            m,
                            Input::Executor {
                                job,
                                epoch,
                                event: ExecutorEvent::Cancelled { gpu_seconds },
                            },
                        ));
                    }
                }
                // The simulated jobs write no output.
                Output::ReadOutput { .. } | Output::OutputArrived { .. } => {}
                Output::Notify(n) => self.notified(m, n),
                Output::Refused(r) => {
                    *self.metrics.refusals.entry(r.reason).or_default() += 1;
                }
                Output::Audit(_) => self.metrics.audits += 1,
                Output::SealFailed { .. } => {
                    *self
                        .metrics
                        .refusals
                        .entry("seal_failed".into())
                        .or_default() += 1;
                }
                Output::Wake { .. } => {}
            }
        }
    }

    /// One-way delay from country `a` to `b` for `bytes`, with jitter.
    fn delay(&mut self, a: usize, b: usize, bytes: usize) -> u64 {
        let n = &self.scenario.network;
        let wire = (bytes as f64 * 8.0 / (n.bandwidth_mbps * 1000.0)).ceil() as u64;
        let jitter = if n.jitter.ms() > 0 {
            self.net.range(0, n.jitter.ms())
        } else {
            0
        };
        (self.latency_ms[a][b] + wire + jitter).max(1)
    }

    fn send(&mut self, m: usize, to: &MemberId, envelope: Envelope) {
        let Some(&ti) = self.index.get(to) else {
            self.metrics.dropped_down += 1;
            return;
        };
        let kind = envelope.kind;
        self.metrics
            .message(kind.name(), envelope.payload.len() + 160);
        self.checker.on_send(
            &self.nodes[m].core,
            to,
            ti,
            self.members[ti].country(),
            &envelope,
        );
        if self.nodes[m].silent
            && matches!(
                kind,
                MessageKind::Accept
                    | MessageKind::Decline
                    | MessageKind::Bid
                    | MessageKind::Reserved
            )
        {
            self.metrics.dropped_silent += 1;
            return;
        }
        if self.net.chance(self.loss) {
            self.metrics.dropped_loss += 1;
            return;
        }
        let copies = if self.net.chance(self.duplicate) {
            2
        } else {
            1
        };
        let size = envelope.payload.len() + 160;
        let mut envelopes = vec![envelope.clone(); copies - 1];
        envelopes.push(envelope);
        for envelope in envelopes {
            let at = self.now + self.delay(self.country_of[m], self.country_of[ti], size);
            self.push(
                at,
                Event::Deliver {
                    from: m,
                    to: ti,
                    envelope,
                },
            );
        }
    }

    fn deliver(&mut self, from: usize, to: usize, envelope: Envelope) {
        if !self.nodes[to].up {
            self.metrics.dropped_down += 1;
            return;
        }
        if !self.reachable(from, to) {
            self.metrics.dropped_partition += 1;
            return;
        }
        // Through the door a node uses: admission on the channel the kind travels on.
        let now = self.local_time(to);
        let channel = envelope.kind.channel();
        match self.nodes[to].core.admit(now, channel, envelope) {
            Ok(admitted) => self.feed(to, Input::Received(admitted)),
            Err(r) => {
                *self
                    .metrics
                    .refusals
                    .entry(r.reason.to_owned())
                    .or_default() += 1
            }
        }
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.partitions.values().all(|g| g[a] == g[b])
    }

    fn start_run(&mut self, m: usize, job: JobId, epoch: u64, gpus: u32, secs: u64, exit: i32) {
        self.next_run += 1;
        let run = self.next_run;
        let now = self.now;
        self.metrics.occupancy[m].start(now, gpus);
        if let Some(p) = self.metrics.pending_jobs.remove(job.as_str()) {
            let wait = now.saturating_sub(p.submitted);
            self.metrics.waits_ms.push(wait);
            if epoch == 0 {
                self.metrics.jobs_started_local += 1;
            } else {
                self.metrics.jobs_started_remote += 1;
            }
            self.metrics.outcome(&format!(
                "{now} start {job} {epoch} at {} after {wait}",
                self.members[m].id()
            ));
        }
        if epoch > 0 {
            self.checker
                .on_hosted_start(m, self.members[m].id(), &job, epoch);
        }
        self.nodes[m].running.insert(
            run,
            Run {
                job: job.clone(),
                epoch,
                gpus,
                started: now,
                exit,
                finished_while_down: false,
            },
        );
        self.push(now + secs * 1000, Event::JobDone { member: m, run });
        self.immediate.push_back((
            m,
            Input::Executor {
                job,
                epoch,
                event: ExecutorEvent::Started,
            },
        ));
    }

    fn job_done(&mut self, m: usize, run: u64) {
        if !self.nodes[m].up {
            if let Some(r) = self.nodes[m].running.get_mut(&run) {
                r.finished_while_down = true;
            }
            return;
        }
        let Some(r) = self.nodes[m].running.remove(&run) else {
            return;
        };
        self.finish_run(m, r);
    }

    fn finish_run(&mut self, m: usize, r: Run) {
        let ran = self.now.saturating_sub(r.started);
        self.metrics.occupancy[m].stop(self.now, r.gpus, ran, r.epoch > 0);
        self.metrics.jobs_finished += 1;
        let gpu_seconds = ran / 1000 * u64::from(r.gpus);
        self.feed(
            m,
            Input::Executor {
                job: r.job,
                epoch: r.epoch,
                event: ExecutorEvent::Finished {
                    exit_code: r.exit,
                    gpu_seconds,
                },
            },
        );
    }

    fn project_arrival(&mut self, m: usize) {
        if !self.arrivals_open {
            return;
        }
        if let Some(t) = self.nodes[m].workload.next_project(self.now)
            && t < self.scenario.duration.ms()
        {
            self.push(t, Event::ProjectArrival { member: m });
        }
        for _ in 0..self.scenario.projects.batch {
            self.metrics.projects_arrived += 1;
            let n = self.metrics.projects_arrived;
            let (card, dossier) = self.nodes[m].workload.project(
                &self.scenario.projects,
                &self.members[m].profile,
                n,
            );
            if !self.nodes[m].up {
                self.metrics.projects_lost_down += 1;
                continue;
            }
            self.feed(
                m,
                Input::FileProject {
                    card,
                    dossier,
                    choice: aiguillage_core::FilingChoice::Route,
                    by: "simulated adviser".into(),
                },
            );
            self.drain_immediate();
        }
    }

    fn job_arrival(&mut self, m: usize) {
        if !self.arrivals_open {
            return;
        }
        if let Some(t) =
            self.nodes[m]
                .workload
                .next_job(self.now, &self.scenario.jobs, &self.members[m].profile)
            && t < self.scenario.duration.ms()
        {
            self.push(t, Event::JobArrival { member: m });
        }
        for _ in 0..self.scenario.jobs.batch {
            self.submit_job(m);
        }
    }

    fn submit_job(&mut self, m: usize) {
        self.metrics.jobs_arrived += 1;
        let now = self.local_time(m);
        let draw = self.nodes[m]
            .workload
            .job(&self.scenario.jobs, &self.members[m].profile, now);
        if !self.nodes[m].up {
            self.metrics.jobs_lost_down += 1;
            return;
        }
        let Some(outputs) = self.call(
            m,
            Input::SubmitJob {
                requirements: draw.requirements,
                command: draw.command,
                env: vec![],
            },
        ) else {
            return;
        };
        // The core names the job `<member>/<n>` with its id counter.
        let state = self.nodes[m].core.state();
        let id = JobId::new(format!("{}/{}", self.members[m].id(), state.next_id));
        if let Ok(id) = id
            && state.jobs.contains_key(&id)
        {
            self.metrics.pending_jobs.insert(
                id.to_string(),
                PendingJob {
                    submitted: self.now,
                    missed_at: None,
                },
            );
        }
        self.route(m, outputs);
        self.arm_wake(m);
        self.drain_immediate();
    }

    fn notified(&mut self, m: usize, n: Notification) {
        match n {
            Notification::ProjectFiled {
                project, outcome, ..
            } => {
                self.metrics
                    .outcome(&format!("{} filed {project} {outcome:?}", self.now));
                let ops = &self.scenario.operators;
                if let (Some([fastest, slowest]), routing::Outcome::Keep) =
                    (ops.complete_at_home, outcome)
                {
                    let node = &mut self.nodes[m];
                    let (delay, state) =
                        journey_end(&mut node.adviser, [fastest, slowest], ops.abandon_share);
                    let life = node.life;
                    self.push(
                        self.now + delay,
                        Event::EndJourney {
                            member: m,
                            life,
                            project,
                            state,
                        },
                    );
                }
            }
            Notification::DecisionNeeded { referral, .. } => {
                let ops = &self.scenario.operators;
                let node = &mut self.nodes[m];
                if node.operator.chance(ops.never_decide_share) {
                    return;
                }
                let delay = node.operator.log_uniform(
                    ops.decision_delay[0].ms().max(1) as f64,
                    ops.decision_delay[1].ms().max(1) as f64,
                ) as u64;
                let accept = node.operator.chance(ops.accept_share);
                let life = node.life;
                self.push(
                    self.now + delay,
                    Event::Decide {
                        member: m,
                        life,
                        referral,
                        accept,
                    },
                );
            }
            Notification::DossierReceived { referral, .. } => {
                let ops = &self.scenario.operators;
                let node = &mut self.nodes[m];
                let (delay, state) =
                    journey_end(&mut node.operator, ops.complete_after, ops.abandon_share);
                let life = node.life;
                self.push(
                    self.now + delay,
                    Event::Report {
                        member: m,
                        life,
                        referral,
                        state,
                    },
                );
            }
            Notification::ReferralAccepted { referral, target } => {
                self.checker.on_accepted(&referral, &target);
                self.metrics
                    .outcome(&format!("{} accepted {referral} by {target}", self.now));
            }
            Notification::ReferralExhausted { referral } => {
                self.metrics
                    .outcome(&format!("{} exhausted {referral}", self.now));
            }
            Notification::JobMissed { job, .. } => {
                self.metrics.jobs_missed += 1;
                if let Some(p) = self.metrics.pending_jobs.get_mut(job.as_str()) {
                    p.missed_at = Some(self.now);
                }
                self.metrics.outcome(&format!("{} missed {job}", self.now));
            }
            Notification::JobPlaced { .. } => self.metrics.placements += 1,
            Notification::JobReplaced { job, .. } => {
                self.metrics.lease_replacements += 1;
                self.metrics
                    .outcome(&format!("{} replaced {job}", self.now));
            }
            Notification::JobFinished {
                job, host, state, ..
            } => {
                let host = host.map(|h| h.to_string()).unwrap_or_default();
                self.metrics
                    .outcome(&format!("{} finished {job} {host} {state}", self.now));
            }
            _ => {}
        }
    }

    fn fault_start(&mut self, i: usize) {
        let Some(f) = self.scenario.faults.get(i).cloned() else {
            return;
        };
        match f {
            Fault::Crash {
                member,
                restart_after,
                jobs_survive,
                ..
            } => {
                if let Some(&m) = self.index.get(&member) {
                    self.crash(m, jobs_survive);
                    if let Some(after) = restart_after {
                        self.push(self.now + after.ms(), Event::FaultEnd(i));
                    }
                }
            }
            Fault::Partition {
                heal_after, groups, ..
            } => {
                let rest = groups.len() as u32;
                let mut g = vec![rest; self.members.len()];
                for (gi, group) in groups.iter().enumerate() {
                    for id in group {
                        if let Some(&m) = self.index.get(id) {
                            g[m] = gi as u32;
                        }
                    }
                }
                self.partitions.insert(i, g);
                self.push(self.now + heal_after.ms(), Event::FaultEnd(i));
            }
            Fault::Silent { member, until, .. } => {
                if let Some(&m) = self.index.get(&member) {
                    self.nodes[m].silent = true;
                    self.push(until.ms().max(self.now), Event::FaultEnd(i));
                }
            }
            Fault::ClockSkew { .. } => {}
        }
        self.metrics
            .outcome(&format!("{} fault {i} starts", self.now));
    }

    fn fault_end(&mut self, i: usize) {
        let Some(f) = self.scenario.faults.get(i).cloned() else {
            return;
        };
        match f {
            Fault::Crash { member, .. } => {
                if let Some(&m) = self.index.get(&member) {
                    self.restart(m);
                }
            }
            Fault::Partition { .. } => {
                self.partitions.remove(&i);
            }
            Fault::Silent { member, .. } => {
                if let Some(&m) = self.index.get(&member) {
                    self.nodes[m].silent = false;
                }
            }
            Fault::ClockSkew { .. } => {}
        }
        self.metrics
            .outcome(&format!("{} fault {i} ends", self.now));
    }

    /// The member's process dies: its core keeps only what it persisted (all of its state,
    /// since the store writes every change before outputs leave); its timers, operator
    /// plans and, unless they survive, its jobs are gone.
    fn crash(&mut self, m: usize, jobs_survive: bool) {
        let now = self.now;
        let node = &mut self.nodes[m];
        if !node.up {
            return;
        }
        node.up = false;
        node.life += 1;
        node.wakes.clear();
        node.jobs_survive = jobs_survive;
        if !jobs_survive {
            let runs = std::mem::take(&mut node.running);
            for (_, r) in runs {
                let ran = now.saturating_sub(r.started);
                self.metrics.occupancy[m].stop(now, r.gpus, ran, r.epoch > 0);
                self.nodes[m].vanished.push((r.job, r.epoch));
            }
        }
        self.metrics.crashes += 1;
    }

    /// Brings a member back from its persisted state, as a restarted node would.
    fn restart(&mut self, m: usize) {
        if self.nodes[m].up {
            return;
        }
        let state = self.nodes[m].core.state().clone();
        let mut core = Core::new(
            self.members[m].profile.clone(),
            self.keys[m].clone(),
            self.authority,
            self.configs[m].clone(),
            state,
        );
        core.set_verify_cache(Some(self.cache.clone()));
        let _ = core.take_dirty();
        let node = &mut self.nodes[m];
        node.core = core;
        node.up = true;
        self.metrics.restarts += 1;
        self.feed(m, Input::Start);
        let vanished = std::mem::take(&mut self.nodes[m].vanished);
        for (job, epoch) in vanished {
            self.feed(
                m,
                Input::Executor {
                    job,
                    epoch,
                    event: ExecutorEvent::Failed {
                        reason: "process vanished".into(),
                        gpu_seconds: 0,
                    },
                },
            );
        }
        let finished: Vec<u64> = self.nodes[m]
            .running
            .iter()
            .filter(|(_, r)| r.finished_while_down)
            .map(|(id, _)| *id)
            .collect();
        for id in finished {
            if let Some(r) = self.nodes[m].running.remove(&id) {
                self.finish_run(m, r);
            }
        }
    }

    fn sample(&mut self) {
        let interval = self.now - self.last_sample;
        self.last_sample = self.now;
        let t_hours = self.now as f64 / 3_600_000.0;
        let mut busy_total = 0.0;
        let mut cap_total = 0.0;
        for m in 0..self.members.len() {
            let o = &mut self.metrics.occupancy[m];
            let busy = o.busy;
            let u = o.sample(self.now, interval);
            busy_total += u * f64::from(o.gpus);
            cap_total += f64::from(o.gpus);
            self.metrics.member_series.push(MemberRow {
                t_hours,
                member: m,
                utilisation: u,
                busy_gpus: busy,
            });
        }
        let dropped = self.metrics.dropped_loss
            + self.metrics.dropped_partition
            + self.metrics.dropped_down
            + self.metrics.dropped_silent;
        let row = SeriesRow {
            t_hours,
            projects: self.metrics.projects_arrived,
            jobs: self.metrics.jobs_arrived,
            jobs_started: self.metrics.jobs_started_local + self.metrics.jobs_started_remote,
            jobs_waiting: self.metrics.pending_jobs.len() as u64,
            messages: self.metrics.total_messages(),
            adverts: self.metrics.adverts_published,
            dropped,
            utilisation: if cap_total > 0.0 {
                busy_total / cap_total
            } else {
                0.0
            },
            members_down: self.nodes.iter().filter(|n| !n.up).count() as u64,
        };
        self.metrics.series.push(row);
        if self.scenario.checks.full_state_at_samples {
            self.check_states();
        }
        let next = self.now + self.scenario.sample_every.ms();
        if next <= self.end {
            self.push(next, Event::Sample);
        }
    }

    fn check_states(&mut self) {
        let cores: Vec<&Core> = self.nodes.iter().map(|n| &n.core).collect();
        self.checker.check_states(&cores, &self.index);
    }

    /// Arrivals stop; faults heal; members come back; the network stops losing messages.
    fn settle(&mut self) {
        self.arrivals_open = false;
        self.partitions.clear();
        self.loss = 0.0;
        self.duplicate = 0.0;
        for m in 0..self.nodes.len() {
            self.nodes[m].silent = false;
            if !self.nodes[m].up {
                self.restart(m);
            }
        }
        self.metrics.outcome(&format!("{} settle", self.now));
    }

    fn finish(&mut self) {
        let cores: Vec<&Core> = self.nodes.iter().map(|n| &n.core).collect();
        self.checker.check_states(&cores, &self.index);
        self.checker.check_settled(&cores, &self.index);
    }

    /// Every member's core, in member order.
    pub fn cores(&self) -> impl Iterator<Item = &Core> {
        self.nodes.iter().map(|n| &n.core)
    }

    /// The records that left the cores' memory (a node's store would archive them).
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// Members currently down.
    pub fn down(&self) -> usize {
        self.nodes.iter().filter(|n| !n.up).count()
    }
}

/// The core configuration of member `m` under `policy`.
fn core_config(scenario: &Scenario, policy: &PolicySpec, m: &MemberSetup) -> CoreConfig {
    let t = &scenario.core;
    let mut c = CoreConfig::default();
    c.routing.strategy = policy.strategy;
    c.routing.rule = policy.rule;
    if let Some(w) = policy.weights {
        c.routing.weights = w;
    }
    if let Some(a) = policy.accept_margin {
        c.routing.accept_margin = a;
    }
    if let Some(k) = policy.max_candidates {
        c.routing.max_candidates = k;
    }
    let set = |field: &mut u64, v: Option<crate::scenario::Dur>| {
        if let Some(v) = v {
            *field = v.ms();
        }
    };
    set(&mut c.offer_ttl_ms, t.offer_ttl);
    set(&mut c.decision_ttl_ms, t.decision_ttl);
    set(&mut c.resend_ms, t.resend);
    set(&mut c.message_ttl_ms, t.message_ttl);
    set(&mut c.advert_ttl_ms, t.advert_ttl);
    set(&mut c.advert_min_interval_ms, t.advert_min_interval);
    set(&mut c.bid_window_ms, t.bid_window);
    set(&mut c.reserve_ttl_ms, t.reserve_ttl);
    set(&mut c.lease_ttl_ms, t.lease_ttl);
    set(&mut c.heartbeat_ms, t.heartbeat);
    set(&mut c.replace_retry_ms, t.replace_retry);
    set(&mut c.retention_ms, t.retention);
    if let Some(a) = t.max_attempts {
        c.max_attempts = a;
    }
    if let Some(b) = t.max_bidders {
        c.max_bidders = b;
    }
    c.takes_overflow = m.takes_overflow && policy.federate_overflow;
    c.accelerator = m.accelerator.clone();
    c.referral_intake = m.referral_intake;
    c
}

/// When, after `span` (log-uniform), and how a journey ends: abandoned at `abandon_share`,
/// else completed.
fn journey_end(rng: &mut Rng, span: [Dur; 2], abandon_share: f64) -> (u64, ProgressState) {
    let delay = rng.log_uniform(span[0].ms().max(1) as f64, span[1].ms().max(1) as f64) as u64;
    let state = if rng.chance(abandon_share) {
        ProgressState::Abandoned
    } else {
        ProgressState::Completed
    };
    (delay, state)
}
