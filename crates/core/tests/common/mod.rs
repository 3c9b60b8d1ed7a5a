//! A small in-memory federation: N cores wired by a message queue with a fake clock and a
//! fake executor. Jobs run `["sim", SECONDS, EXIT_CODE]`: they start at once and finish
//! after SECONDS with EXIT_CODE.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aiguillage_core::profile::Profile;
use aiguillage_core::{
    Core, CoreConfig, DevnetAssumptions, ExecutorEvent, Input, Notification, Output, State,
};
use aiguillage_wire::*;

pub const T0: Timestamp = Timestamp(1_780_000_000_000);

pub fn config_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

pub fn profile(id: &str) -> Profile {
    let dir = config_dir();
    for sub in ["factories", "antennas"] {
        let path = dir.join(sub).join(format!("{id}.toml"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Profile::from_toml(&text, &path.display().to_string()).unwrap();
        }
    }
    panic!("no profile {id}");
}

pub fn all_member_ids() -> Vec<String> {
    let mut ids = Vec::new();
    for sub in ["factories", "antennas"] {
        for e in std::fs::read_dir(config_dir().join(sub)).unwrap() {
            let p = e.unwrap().path();
            ids.push(p.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    ids.sort();
    ids
}

fn key_of(id: &str) -> SigningKey {
    let mut seed = [0u8; 32];
    for (i, b) in id.bytes().enumerate() {
        seed[i % 32] ^= b.wrapping_add(i as u8);
    }
    seed[31] ^= 0x5a;
    SigningKey::from_bytes(&seed)
}

/// Test-speed timings: seconds instead of days.
pub fn fast_config() -> CoreConfig {
    CoreConfig {
        offer_ttl_ms: 60_000,
        decision_ttl_ms: 30_000,
        resend_ms: 2_000,
        message_ttl_ms: 600_000,
        advert_ttl_ms: 600_000,
        bid_window_ms: 500,
        reserve_ttl_ms: 5_000,
        lease_ttl_ms: 15_000,
        heartbeat_ms: 5_000,
        replace_retry_ms: 10_000,
        ..CoreConfig::default()
    }
}

/// Decides per message whether it is dropped (true = drop).
pub type DropRule = Box<dyn FnMut(&MemberId, &Envelope) -> bool>;

/// Seeded message faults: loss, duplication and delay jitter (which reorders).
pub struct Chaos {
    pub state: u64,
    pub drop_pct: u64,
    pub dup_pct: u64,
    pub jitter_ms: u64,
}

impl Chaos {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

struct Running {
    member: MemberId,
    job: JobId,
    epoch: u64,
    gpus: u32,
    started: Timestamp,
    finish_at: Timestamp,
    exit: i32,
}

pub struct Net {
    pub now: Timestamp,
    pub cores: BTreeMap<MemberId, Core>,
    /// (deliver at, sequence, to, channel, envelope bytes)
    queue: BTreeSet<(Timestamp, u64, MemberId, Channel, Vec<u8>)>,
    seq: u64,
    pub latency_ms: u64,
    pub down: BTreeSet<MemberId>,
    running: Vec<Running>,
    pub notifications: Vec<(MemberId, Notification)>,
    /// Job output that reached its origin: (origin, host, output).
    pub outputs: Vec<(MemberId, MemberId, JobOutput)>,
    pub refusals: Vec<(MemberId, aiguillage_core::Refusal)>,
    pub started_jobs: Vec<(MemberId, JobId, u64)>,
    pub drop: DropRule,
    pub authority: SigningKey,
    roster: Envelope,
    /// Jobs keep running while their member is down (as under Slurm) instead of dying
    /// with it (as local child processes do).
    pub jobs_survive_crash: bool,
    pub cancelled_jobs: Vec<(MemberId, JobId, u64)>,
    pub chaos: Option<Chaos>,
    /// Every message a member sent (before any drop), in order.
    pub sent: Vec<(MemberId, Envelope)>,
}

impl Net {
    /// Members by id, with capacities from the devnet assumptions (overridden by `gpus`).
    /// Each member starts from `fast_config` with the devnet assumptions applied; `tweak`
    /// then adjusts it per member.
    pub fn new(ids: &[&str], gpus: &[(&str, u32)], tweak: impl Fn(&str, &mut CoreConfig)) -> Net {
        let authority = SigningKey::from_bytes(&[99; 32]);
        let assumptions = DevnetAssumptions::from_toml(
            &std::fs::read_to_string(config_dir().join("devnet/assumptions.toml")).unwrap(),
            "assumptions.toml",
        )
        .unwrap();
        let members: Vec<RosterEntry> = ids
            .iter()
            .map(|id| {
                let p = profile(id);
                RosterEntry {
                    id: p.id.clone(),
                    key: PublicKey::of(&key_of(id)),
                    role: p.role,
                    country: p.country,
                    linked_factories: p.linked_factories.clone(),
                    valid_from: Timestamp(0),
                    valid_until: LATEST_TIME,
                }
            })
            .collect();
        let roster = Roster {
            federation: "test".into(),
            serial: 1,
            members,
        };
        let roster = Envelope::seal(
            &roster,
            &MemberId::new(AUTHORITY_ID).unwrap(),
            &authority,
            T0,
            T0.saturating_add_ms(300 * 86_400_000),
        )
        .unwrap();
        let mut cores = BTreeMap::new();
        for id in ids {
            let p = profile(id);
            let mut cfg = fast_config();
            let cap = assumptions.for_member(&p.id, p.role);
            cfg.takes_overflow = cap.takes_overflow;
            cfg.accelerator = cap.accelerator.clone();
            cfg.referral_intake = cap.referral_intake;
            tweak(id, &mut cfg);
            let total = gpus
                .iter()
                .find(|(m, _)| m == id)
                .map(|(_, g)| *g)
                .unwrap_or(cap.gpus);
            let mut core = Core::new(
                p,
                key_of(id),
                PublicKey::of(&authority),
                cfg,
                State::default(),
            );
            core.install_roster(roster.clone(), T0).unwrap();
            core.handle(T0, Input::Capacity { total_gpus: total });
            cores.insert(MemberId::new(*id).unwrap(), core);
        }
        let mut net = Net {
            now: T0,
            cores,
            queue: BTreeSet::new(),
            seq: 0,
            latency_ms: 5,
            down: BTreeSet::new(),
            running: Vec::new(),
            notifications: Vec::new(),
            outputs: Vec::new(),
            refusals: Vec::new(),
            started_jobs: Vec::new(),
            drop: Box::new(|_, _| false),
            authority,
            roster,
            jobs_survive_crash: false,
            cancelled_jobs: Vec::new(),
            chaos: None,
            sent: Vec::new(),
        };
        let ids: Vec<MemberId> = net.cores.keys().cloned().collect();
        for id in ids {
            net.input(&id, Input::Start);
        }
        net.run_for(1_000);
        net
    }

    pub fn id(s: &str) -> MemberId {
        MemberId::new(s).unwrap()
    }

    pub fn core(&self, id: &str) -> &Core {
        &self.cores[&Net::id(id)]
    }

    /// Feeds one input to a member and routes its outputs.
    pub fn input(&mut self, member: &MemberId, input: Input) {
        if self.down.contains(member) {
            return;
        }
        let now = self.now;
        let outputs = match self.cores.get_mut(member) {
            Some(c) => c.handle(now, input),
            None => return,
        };
        self.route(member, outputs);
    }

    /// Delivers peer bytes to a member as a node would: through admission on `channel`,
    /// then to the core, or counted as refused.
    pub fn receive_bytes(&mut self, to: &MemberId, channel: Channel, bytes: &[u8]) {
        if self.down.contains(to) {
            return;
        }
        let now = self.now;
        let admitted = match self.cores.get(to) {
            Some(c) => c.admit_bytes(now, channel, bytes),
            None => return,
        };
        match admitted {
            Ok(a) => self.input(to, Input::Received(a)),
            Err(r) => self.refusals.push((to.clone(), r.into())),
        }
    }

    /// Delivers an envelope on the channel its kind travels on.
    pub fn receive(&mut self, to: &MemberId, envelope: Envelope) {
        self.receive_bytes(to, envelope.kind.channel(), &envelope.to_bytes());
    }

    fn enqueue(&mut self, to: &MemberId, envelope: &Envelope) {
        if (self.drop)(to, envelope) {
            return;
        }
        let mut copies = 1;
        let mut delays = [self.latency_ms; 2];
        if let Some(c) = &mut self.chaos {
            if c.next() % 100 < c.drop_pct {
                return;
            }
            if c.next() % 100 < c.dup_pct {
                copies = 2;
            }
            for d in &mut delays {
                *d += c.next() % (c.jitter_ms + 1);
            }
        }
        for delay in delays.iter().take(copies) {
            self.seq += 1;
            self.queue.insert((
                self.now.saturating_add_ms(*delay),
                self.seq,
                to.clone(),
                envelope.kind.channel(),
                envelope.to_bytes(),
            ));
        }
    }

    fn route(&mut self, from: &MemberId, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Publish(e) => {
                    let to: Vec<MemberId> =
                        self.cores.keys().filter(|m| *m != from).cloned().collect();
                    for m in to {
                        self.enqueue(&m, &e);
                    }
                }
                Output::Send { to, envelope } => {
                    self.sent.push((from.clone(), envelope.clone()));
                    self.enqueue(&to, &envelope)
                }
                Output::StartJob { job, epoch, spec } => {
                    self.started_jobs.push((from.clone(), job.clone(), epoch));
                    let secs: u64 = spec
                        .command
                        .get(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(10);
                    let exit: i32 = spec
                        .command
                        .get(2)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    self.running.push(Running {
                        member: from.clone(),
                        job: job.clone(),
                        epoch,
                        gpus: spec.requirements.gpus,
                        started: self.now,
                        finish_at: self.now.saturating_add_ms(secs * 1000),
                        exit,
                    });
                    let from = from.clone();
                    self.input(
                        &from,
                        Input::Executor {
                            job,
                            epoch,
                            event: ExecutorEvent::Started,
                        },
                    );
                }
                Output::CancelJob { job, epoch } => {
                    self.cancelled_jobs.push((from.clone(), job.clone(), epoch));
                    if let Some(pos) = self
                        .running
                        .iter()
                        .position(|r| &r.member == from && r.job == job && r.epoch == epoch)
                    {
                        let r = self.running.remove(pos);
                        let used =
                            (self.now.millis() - r.started.millis()) / 1000 * u64::from(r.gpus);
                        let from = from.clone();
                        self.input(
                            &from,
                            Input::Executor {
                                job,
                                epoch,
                                event: ExecutorEvent::Cancelled { gpu_seconds: used },
                            },
                        );
                    }
                }
                // The simulated job's output is its id, repeated.
                Output::ReadOutput {
                    job,
                    epoch,
                    to,
                    max_bytes,
                } => {
                    let text = format!("output of {job}\n").repeat(3);
                    let mut stdout = text.into_bytes();
                    stdout.truncate(max_bytes as usize);
                    let size = stdout.len() as u64;
                    let from = from.clone();
                    self.input(
                        &from,
                        Input::OutputRead {
                            to,
                            output: JobOutput {
                                job,
                                epoch,
                                stdout,
                                stdout_size: size,
                                stderr: b"warning\n".to_vec(),
                                stderr_size: 8,
                            },
                        },
                    );
                }
                Output::OutputArrived { host, output } => {
                    self.outputs.push((from.clone(), host, output))
                }
                Output::Notify(n) => self.notifications.push((from.clone(), n)),
                Output::Refused(r) => self.refusals.push((from.clone(), r)),
                Output::SealFailed {
                    kind,
                    subject,
                    error,
                } => {
                    panic!("{from} could not seal a {kind} about {subject}: {error}")
                }
                Output::Wake { .. } | Output::Audit(_) => {}
            }
        }
    }

    /// The next moment anything happens, if any.
    fn next_event(&self) -> Option<Timestamp> {
        let q = self.queue.first().map(|(t, ..)| *t);
        let d = self
            .cores
            .iter()
            .filter(|(m, _)| !self.down.contains(*m))
            .filter_map(|(_, c)| c.next_deadline())
            .min();
        let r = self
            .running
            .iter()
            .filter(|r| !self.down.contains(&r.member))
            .map(|r| r.finish_at)
            .min();
        [q, d, r].into_iter().flatten().min()
    }

    /// Runs every event up to `now + ms`.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now.saturating_add_ms(ms);
        while let Some(t) = self.next_event() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.step();
        }
        self.now = end;
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(first) = self.queue.first().cloned() {
            if first.0 > now {
                break;
            }
            self.queue.pop_first();
            let (_, _, to, channel, bytes) = first;
            if self.down.contains(&to) {
                continue;
            }
            self.receive_bytes(&to, channel, &bytes);
        }
        let finished: Vec<usize> = self
            .running
            .iter()
            .enumerate()
            .filter(|(_, r)| r.finish_at <= now && !self.down.contains(&r.member))
            .map(|(i, _)| i)
            .collect();
        for i in finished.into_iter().rev() {
            let r = self.running.remove(i);
            let secs = (r.finish_at.millis() - r.started.millis()) / 1000;
            self.input(
                &r.member.clone(),
                Input::Executor {
                    job: r.job,
                    epoch: r.epoch,
                    event: ExecutorEvent::Finished {
                        exit_code: r.exit,
                        gpu_seconds: secs * u64::from(r.gpus),
                    },
                },
            );
        }
        let due: Vec<MemberId> = self
            .cores
            .iter()
            .filter(|(m, c)| !self.down.contains(*m) && c.next_deadline().is_some_and(|d| d <= now))
            .map(|(m, _)| m.clone())
            .collect();
        for m in due {
            self.input(&m, Input::Tick);
        }
    }

    /// Takes a member down: it loses nothing (its core is kept) but hears nothing and its
    /// executor's jobs stop being reported.
    pub fn crash(&mut self, id: &str) {
        self.down.insert(Net::id(id));
    }

    /// Brings a member back from its state, as a restarted node would.
    pub fn restart(&mut self, id: &str) {
        let id = Net::id(id);
        self.down.remove(&id);
        let core = self.cores.remove(&id).unwrap();
        let state = core.state().clone();
        let mut fresh = Core::new(
            core.profile().clone(),
            key_of(id.as_str()),
            PublicKey::of(&self.authority),
            core.config().clone(),
            state,
        );
        // Jobs this member ran before the crash are gone with its processes; the node's
        // executor reports them failed on restart.
        let survive = self.jobs_survive_crash;
        let vanished: Vec<(JobId, u64)> = self
            .running
            .iter()
            .filter(|r| r.member == id && !survive)
            .map(|r| (r.job.clone(), r.epoch))
            .collect();
        self.running.retain(|r| r.member != id || survive);
        let _ = fresh.take_dirty();
        self.cores.insert(id.clone(), fresh);
        self.input(&id, Input::Start);
        for (job, epoch) in vanished {
            let event = ExecutorEvent::Failed {
                reason: "process vanished".into(),
                gpu_seconds: 0,
            };
            self.input(&id, Input::Executor { job, epoch, event });
        }
    }

    /// Seals `message` as member `id` with its rostered key.
    /// `envelope` signed again as `id`, its payload unchanged: a member claiming what it
    /// may not (the honest seal refuses to make such a message).
    pub fn forged_as(&self, id: &str, envelope: Envelope) -> Envelope {
        Envelope::seal_unchecked(
            envelope.kind,
            &Net::id(id),
            &key_of(id),
            envelope.issued_at,
            envelope.expires_at,
            envelope.payload,
        )
    }

    pub fn seal_as<M: Message>(&self, id: &str, message: &M) -> Envelope {
        Envelope::seal(
            message,
            &Net::id(id),
            &key_of(id),
            self.now,
            self.now.saturating_add_ms(60_000),
        )
        .unwrap()
    }

    pub fn file(&mut self, at: &str, card: ProjectCard) -> ReferralIdOrKept {
        self.file_with(at, card, aiguillage_core::FilingChoice::Route)
    }

    /// Files a project at `at` with the adviser's `choice` (route, stay, advise against).
    pub fn file_with(
        &mut self,
        at: &str,
        card: ProjectCard,
        choice: aiguillage_core::FilingChoice,
    ) -> ReferralIdOrKept {
        let before = self.notifications.len();
        self.input(
            &Net::id(at),
            Input::FileProject {
                card,
                dossier: dossier(),
                choice,
                by: "adviser".into(),
            },
        );
        for (m, n) in &self.notifications[before..] {
            if let (
                true,
                Notification::ProjectFiled {
                    project, referral, ..
                },
            ) = (m.as_str() == at, n)
            {
                return ReferralIdOrKept {
                    project: project.clone(),
                    referral: referral.clone(),
                };
            }
        }
        panic!("filing produced no ProjectFiled notification");
    }

    pub fn submit(
        &mut self,
        at: &str,
        gpus: u32,
        secs: u64,
        exit: i32,
        residency: &[&str],
    ) -> JobId {
        let before = self.cores[&Net::id(at)].state().jobs.len();
        let requirements = JobRequirements {
            gpus,
            time_limit_s: secs * 2 + 60,
            accelerator: None,
            latest_start: self.now.saturating_add_ms(3_600_000),
            residency: residency
                .iter()
                .map(|c| CountryCode::new(c).unwrap())
                .collect(),
            priority: 0,
        };
        self.input(
            &Net::id(at),
            Input::SubmitJob {
                requirements,
                command: vec!["sim".into(), secs.to_string(), exit.to_string()],
                env: vec![],
            },
        );
        let jobs = &self.cores[&Net::id(at)].state().jobs;
        assert_eq!(jobs.len(), before + 1);
        jobs.iter()
            .max_by_key(|(_, j)| j.submitted_at)
            .map(|(id, _)| id.clone())
            .unwrap()
    }
}

pub struct ReferralIdOrKept {
    pub project: ProjectId,
    pub referral: Option<ReferralId>,
}

pub fn dossier() -> Dossier {
    Dossier {
        company: "Example SARL".into(),
        contact_name: "A. Client".into(),
        contact_email: "client@example.eu".into(),
        summary: "A project description".into(),
    }
}

pub fn card(sector: Sector, country: &str) -> ProjectCard {
    ProjectCard {
        project: ProjectId::new("unassigned/0").unwrap(),
        sector,
        secondary_sectors: vec![],
        country: CountryCode::new(country).unwrap(),
        company_size: CompanySize::Small,
        stage: Service::Assessment,
        services_needed: vec![Service::Assessment, Service::PocSandbox],
        gpu_hours: 500,
        datasets_wanted: vec![],
        languages: vec![Language::new("en").unwrap()],
        consent: ConsentScope {
            whole_federation: true,
            members: vec![],
            countries: vec![],
        },
    }
}
