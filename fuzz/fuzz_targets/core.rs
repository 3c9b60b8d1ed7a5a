//! The federation logic fed with arbitrary, well-signed inputs: the fuzzer's bytes choose a
//! sequence of messages from rostered peers (every kind, with ids, epochs, states and
//! times drawn from small sets so that they hit live referrals and jobs), operator actions,
//! executor reports and clock jumps. Signatures are real, so the inputs get past the
//! envelope and roster checks into the handlers. Any panic is a bug; so is a member
//! holding more GPUs than it has.
#![no_main]

use std::sync::OnceLock;

use aiguillage_core::project_file::ProjectFile;
use aiguillage_core::{Core, CoreConfig, ExecutorEvent, Input, State, profile::Profile};
use aiguillage_wire::*;
use libfuzzer_sys::fuzz_target;

const T0: u64 = 1_780_000_000_000;
const ME: &str = "lu-l-aif";
const PEERS: [&str; 2] = ["de-jaif", "es-1healthai"];

struct Fixed {
    me: Profile,
    authority: SigningKey,
    roster: Envelope,
    adverts: Vec<Envelope>,
    health: ProjectFile,
}

fn key(id: &str) -> SigningKey {
    let mut seed = [7u8; 32];
    for (i, b) in id.bytes().enumerate() {
        seed[i % 32] ^= b;
    }
    SigningKey::from_bytes(&seed)
}

fn profile(id: &str) -> Profile {
    let text = match id {
        "lu-l-aif" => include_str!("../../config/factories/lu-l-aif.toml"),
        "de-jaif" => include_str!("../../config/factories/de-jaif.toml"),
        _ => include_str!("../../config/factories/es-1healthai.toml"),
    };
    Profile::from_toml(text, id).unwrap()
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let authority = SigningKey::from_bytes(&[99; 32]);
        let ids = [ME, PEERS[0], PEERS[1]];
        let members = ids
            .iter()
            .map(|id| {
                let p = profile(id);
                RosterEntry {
                    id: p.id.clone(),
                    key: PublicKey::of(&key(id)),
                    role: p.role,
                    country: p.country,
                    linked_factories: vec![],
                    valid_from: Timestamp(0),
                    valid_until: LATEST_TIME,
                }
            })
            .collect();
        let roster = Envelope::seal(
            &Roster {
                federation: "fuzz".into(),
                serial: 1,
                members,
            },
            &MemberId::new(AUTHORITY_ID).unwrap(),
            &authority,
            Timestamp(T0),
            Timestamp(T0 + 300 * 86_400_000),
        )
        .unwrap();
        // The peers' adverts, as their own cores publish them (4 GPUs each).
        let adverts = PEERS
            .iter()
            .map(|id| {
                let mut c = Core::new(
                    profile(id),
                    key(id),
                    PublicKey::of(&authority),
                    CoreConfig::default(),
                    State::default(),
                );
                c.install_roster(roster.clone(), Timestamp(T0)).unwrap();
                c.handle(Timestamp(T0), Input::Capacity { total_gpus: 4 });
                c.handle(Timestamp(T0), Input::Start)
                    .into_iter()
                    .find_map(|o| match o {
                        aiguillage_core::Output::Publish(e) => Some(e),
                        _ => None,
                    })
                    .unwrap()
            })
            .collect();
        let health = ProjectFile::from_toml(
            include_str!("../../config/examples/project-health-lu.toml"),
            "health",
        )
        .unwrap();
        Fixed {
            me: profile(ME),
            authority,
            roster,
            adverts,
            health,
        }
    })
}

/// Reads choices from the fuzzer's bytes; zeros once they run out.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n.max(1)
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }
    fn small(&mut self) -> u64 {
        u64::from(self.byte() % 4)
    }
    fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }
    fn time(&mut self, now: u64) -> Timestamp {
        Timestamp(
            now.saturating_add(u64::from(self.byte()) * 1_000)
                .saturating_sub(60_000),
        )
    }
    fn text(&mut self) -> String {
        ["", "x", "détail", "a longer note about the project"][self.below(4)].to_owned()
    }
    fn member(&mut self) -> MemberId {
        MemberId::new(self.pick(&[ME, PEERS[0], PEERS[1]])).unwrap()
    }
    fn referral(&mut self) -> ReferralId {
        let origin = self.pick(&[ME, PEERS[0], PEERS[1]]);
        ReferralId::new(format!("{origin}/{}", 1 + self.small())).unwrap()
    }
    fn job(&mut self) -> JobId {
        let origin = self.pick(&[ME, PEERS[0], PEERS[1]]);
        JobId::new(format!("{origin}/{}", 1 + self.small())).unwrap()
    }
    fn requirements(&mut self, now: u64) -> JobRequirements {
        JobRequirements {
            gpus: self.byte() as u32 % 6,
            time_limit_s: 1 + u64::from(self.byte()),
            accelerator: None,
            latest_start: self.time(now + 120_000),
            residency: if self.bool() {
                vec![]
            } else {
                vec![CountryCode::new("LU").unwrap()]
            },
            priority: self.byte(),
        }
    }
    fn spec(&mut self, now: u64) -> JobSpec {
        JobSpec {
            job: self.job(),
            requirements: self.requirements(now),
            command: vec!["true".into()],
            env: vec![],
        }
    }
}

/// A peer's signed message; None when the fields fail the message's own validation (a
/// receiver refuses those before any handler runs, which the envelope target covers).
fn seal<M: Message>(from: &str, m: &M, now: u64) -> Option<Envelope> {
    Envelope::seal(
        m,
        &MemberId::new(from).unwrap(),
        &key(from),
        Timestamp(now),
        Timestamp(now + M::KIND.max_lifetime_ms().min(3_600_000)),
    )
    .ok()
}

fn message(c: &mut Choices, now: u64) -> Option<Envelope> {
    let from = c.pick(&PEERS);
    let f = fixed();
    match c.below(16) {
        0 => {
            let mut card = f.health.card();
            card.project = ProjectId::new(format!("{from}/{}", 1 + c.small())).unwrap();
            card.sector = c.pick(Sector::ALL);
            card.consent.whole_federation = c.bool();
            seal(
                from,
                &Offer {
                    referral: c.referral(),
                    attempt: 1 + c.small() as u32,
                    target: c.member(),
                    card,
                    respond_by: c.time(now + 60_000),
                    rationale: c.text(),
                },
                now,
            )
        }
        1 => seal(
            from,
            &Accept {
                referral: c.referral(),
                attempt: 1 + c.small() as u32,
            },
            now,
        ),
        2 => seal(
            from,
            &Decline {
                referral: c.referral(),
                attempt: 1 + c.small() as u32,
                reason: c.pick(DeclineReason::ALL),
                detail: c.text(),
            },
            now,
        ),
        3 => seal(
            from,
            &Withdraw {
                referral: c.referral(),
                attempt: 1 + c.small() as u32,
                detail: c.text(),
            },
            now,
        ),
        4 => seal(
            from,
            &HandOver {
                referral: c.referral(),
                attempt: 1 + c.small() as u32,
                dossier: f.health.dossier.clone().unwrap(),
            },
            now,
        ),
        5 => seal(
            from,
            &Progress {
                referral: c.referral(),
                attempt: 1 + c.small() as u32,
                seq: c.small() as u32,
                step: c.pick(Service::ALL),
                state: c.pick(ProgressState::ALL),
                note: c.text(),
            },
            now,
        ),
        6 => seal(
            from,
            &CallForBids {
                job: c.job(),
                requirements: c.requirements(now),
                bids_by: c.time(now),
            },
            now,
        ),
        7 => seal(
            from,
            &Bid {
                job: c.job(),
                earliest_start: c.time(now),
                free_gpus: c.byte() as u32 % 8,
                accelerator: None,
            },
            now,
        ),
        8 => seal(
            from,
            &Reserve {
                spec: c.spec(now),
                epoch: c.small(),
                hold_until: c.time(now + 10_000),
            },
            now,
        ),
        9 => seal(
            from,
            &Reserved {
                job: c.job(),
                epoch: c.small(),
                granted: c.bool(),
                detail: c.text(),
            },
            now,
        ),
        10 => seal(
            from,
            &Confirm {
                job: c.job(),
                epoch: c.small(),
                lease_ttl_ms: 1_000 * (1 + c.small()),
            },
            now,
        ),
        11 => seal(
            from,
            &Release {
                job: c.job(),
                epoch: c.small(),
                detail: c.text(),
            },
            now,
        ),
        12 => seal(
            from,
            &Heartbeat {
                job: c.job(),
                epoch: c.small(),
                state: c.pick(JobState::ALL),
            },
            now,
        ),
        13 => seal(
            from,
            &JobStatus {
                job: c.job(),
                epoch: c.small(),
                state: c.pick(JobState::ALL),
                exit_code: if c.bool() {
                    Some(c.byte() as i32 - 128)
                } else {
                    None
                },
                detail: c.text(),
            },
            now,
        ),
        14 => {
            let started = c.time(now);
            seal(
                from,
                &UsageReceipt {
                    job: c.job(),
                    epoch: c.small(),
                    origin: c.member(),
                    host: MemberId::new(from).unwrap(),
                    gpus: c.byte() as u32 % 6,
                    started_at: started,
                    finished_at: Timestamp(started.0 + u64::from(c.byte()) * 1_000),
                    gpu_seconds: u64::from(c.byte()),
                    state: c.pick(JobState::ALL),
                    exit_code: if c.bool() { Some(0) } else { None },
                },
                now,
            )
        }
        _ => seal(
            from,
            &ReceiptAck {
                job: c.job(),
                epoch: c.small(),
            },
            now,
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    let mut c = Choices(data);
    let mut now = T0;
    let cfg = CoreConfig {
        bid_window_ms: 500,
        reserve_ttl_ms: 2_000,
        lease_ttl_ms: 5_000,
        heartbeat_ms: 2_000,
        resend_ms: 1_000,
        ..CoreConfig::default()
    };
    let mut core = Core::new(
        f.me.clone(),
        key(ME),
        PublicKey::of(&f.authority),
        cfg,
        State::default(),
    );
    core.install_roster(f.roster.clone(), Timestamp(T0))
        .unwrap();
    core.handle(Timestamp(now), Input::Capacity { total_gpus: 2 });
    core.handle(Timestamp(now), Input::Start);
    for a in &f.adverts {
        if let Ok(admitted) = core.admit(Timestamp(now), Channel::Adverts, a.clone()) {
            core.handle(Timestamp(now), Input::Received(admitted));
        }
    }
    let mut steps = 0;
    while !c.0.is_empty() && steps < 64 {
        steps += 1;
        let input = match c.below(8) {
            0 => {
                now += u64::from(c.byte()) * 250;
                Input::Tick
            }
            1 => Input::FileProject {
                card: {
                    let mut card = f.health.card();
                    card.sector = c.pick(Sector::ALL);
                    card
                },
                dossier: f.health.dossier.clone().unwrap(),
                choice: aiguillage_core::FilingChoice::Route,
                by: "adviser".into(),
            },
            2 => Input::SubmitJob {
                requirements: c.requirements(now),
                command: vec!["true".into()],
                env: vec![],
            },
            3 => Input::Decide {
                referral: c.referral(),
                accept: c.bool(),
                detail: c.text(),
                by: "operator".into(),
            },
            4 => Input::Executor {
                job: c.job(),
                epoch: c.small(),
                event: match c.below(6) {
                    0 => ExecutorEvent::Started,
                    1 => ExecutorEvent::Queued { reason: c.text() },
                    2 => ExecutorEvent::Finished {
                        exit_code: c.byte() as i32 - 128,
                        gpu_seconds: u64::from(c.byte()),
                    },
                    3 => ExecutorEvent::Failed {
                        reason: c.text(),
                        gpu_seconds: 0,
                    },
                    4 => ExecutorEvent::TimedOut { gpu_seconds: 1 },
                    _ => ExecutorEvent::Cancelled { gpu_seconds: 0 },
                },
            },
            5 => Input::CancelJob { job: c.job() },
            _ => match message(&mut c, now) {
                // Mostly on the channel the kind travels on, sometimes on another one.
                Some(envelope) => {
                    let channel = if c.below(8) == 0 {
                        c.pick(&Channel::ALL)
                    } else {
                        envelope.kind.channel()
                    };
                    match core.admit(Timestamp(now), channel, envelope) {
                        Ok(admitted) => Input::Received(admitted),
                        Err(_) => continue,
                    }
                }
                None => continue,
            },
        };
        core.handle(Timestamp(now), input);
        let _ = core.take_dirty();
        assert!(
            core.free_gpus() <= core.state().total_gpus,
            "more GPUs free than the member has"
        );
    }
});
