//! What the admin API answers, as serialisable types built from the core's state: one
//! place for the shape of every answer, which the CLI, devnet and the docs rely on.

use aiguillage_core::{Core, Explanation, HostedJob, InReferral, OriginJob, OutReferral};
use aiguillage_wire::{JobId, MemberId, ReferralId, SectorLevel, Timestamp};
use serde::{Deserialize, Serialize};

/// What a running node publishes about itself for tools (devnet, CLI): `<data_dir>/run.json`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RunInfo {
    pub member: MemberId,
    pub peer_id: String,
    pub admin: std::net::SocketAddr,
    pub listen: Vec<String>,
    pub pid: u32,
    /// When the process started, in clock ticks since boot (`/proc/<pid>/stat`): a pid
    /// reused by another process after a crash is told apart by it.
    #[serde(default)]
    pub start_ticks: Option<u64>,
}

/// `GET /status`.
#[derive(Serialize)]
pub struct Status<'a> {
    pub member: &'a MemberId,
    pub peer_id: &'a str,
    /// The member's signing key (hex), as the roster lists it.
    pub public_key: String,
    pub version: &'static str,
    /// When this process started.
    pub started_at: Timestamp,
    pub listen: &'a [String],
    pub peers_connected: usize,
    /// Rostered members not connected, with their failed dials.
    pub peers_not_connected: Vec<super::peers::NotConnected>,
    /// This clock minus the members' median (s, positive: ahead), once a member was heard.
    pub clock_offset_s: Option<f64>,
    /// How many members the estimate rests on.
    pub clock_members: usize,
    /// Members whose clock differs from this one by more than 10 s: (member, s ahead).
    pub clocks_off: Vec<ClockOff<'a>>,
    pub directory: usize,
    pub roster_serial: Option<u64>,
    pub roster_members: Option<usize>,
    pub roster_expires_at: Option<Timestamp>,
    /// Incoming referrals awaiting an adviser's decision.
    pub decisions_pending: usize,
    pub gpus_total: u32,
    pub gpus_free: u32,
    pub projects: usize,
    pub referrals_out: usize,
    pub referrals_in: usize,
    pub jobs: usize,
    pub jobs_hosted: usize,
}

/// A member whose clock is off from this node's.
#[derive(Serialize)]
pub struct ClockOff<'a> {
    pub member: std::borrow::Cow<'a, str>,
    pub ahead_s: f64,
}

/// One row of `GET /directory`.
#[derive(Serialize)]
pub struct DirectoryRow<'a> {
    pub member: &'a MemberId,
    pub name: &'a str,
    pub role: &'static str,
    pub country: aiguillage_wire::CountryCode,
    pub seq: u64,
    pub expires_at: Timestamp,
    pub issued_at: Timestamp,
    pub received_at: Timestamp,
    pub priority: Vec<&'static str>,
    pub accepted: Vec<&'static str>,
    pub excluded: Vec<&'static str>,
    /// The level of every sector not listed.
    pub other_sectors: &'static str,
    pub services: Vec<&'static str>,
    pub languages: &'a [aiguillage_wire::Language],
    /// Dataset titles.
    pub datasets: Vec<&'a str>,
    pub gpus_total: Option<u32>,
    pub gpus_free: Option<u32>,
    pub takes_overflow: bool,
    pub referral_intake: Option<u32>,
}

pub fn directory(core: &Core, now: Timestamp) -> Vec<DirectoryRow<'_>> {
    core.state()
        .directory
        .fresh(now)
        .map(|l| {
            let a = &l.advert;
            let level = |want: SectorLevel| {
                a.sectors
                    .iter()
                    .filter(|(_, lv)| **lv == want)
                    .map(|(s, _)| s.tag())
                    .collect()
            };
            DirectoryRow {
                member: &a.member,
                name: &a.name,
                role: a.role.tag(),
                country: a.country,
                seq: a.seq,
                expires_at: l.envelope.expires_at,
                issued_at: l.envelope.issued_at,
                received_at: l.received_at,
                priority: level(SectorLevel::Priority),
                accepted: level(SectorLevel::Accepted),
                excluded: level(SectorLevel::Excluded),
                other_sectors: a.other_sectors.tag(),
                services: a.services.iter().map(|s| s.tag()).collect(),
                languages: &a.languages,
                datasets: a.datasets.iter().map(|d| d.title.as_str()).collect(),
                gpus_total: a.gpu.total,
                gpus_free: a.gpu.free,
                takes_overflow: a.gpu.takes_overflow,
                referral_intake: a.referral_intake,
            }
        })
        .collect()
}

/// One row of `GET /referrals`: the state by its name, whichever the direction.
#[derive(Serialize)]
pub struct ReferralRow<'a> {
    pub referral: &'a ReferralId,
    pub direction: &'static str,
    pub sector: &'static str,
    pub state: &'static str,
    /// Still moving: an offer or an acceptance not yet handed over (out), a decision
    /// not yet taken (in).
    pub open: bool,
    /// This member took the referral in, whatever happened since (in only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub was_accepted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a MemberId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<&'a MemberId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'a MemberId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decide_by: Option<Timestamp>,
}

impl<'a> ReferralRow<'a> {
    pub fn out(r: &'a OutReferral) -> ReferralRow<'a> {
        use aiguillage_core::OutState;
        ReferralRow {
            referral: &r.id,
            direction: "out",
            sector: r.card.sector.tag(),
            state: r.state.tag(),
            open: matches!(r.state, OutState::Offered | OutState::Accepted),
            was_accepted: None,
            target: r.current().map(|a| &a.target),
            accepted_by: r.accepted_by(),
            attempts: Some(r.attempts.len()),
            origin: None,
            decide_by: None,
        }
    }

    pub fn incoming(r: &'a InReferral) -> ReferralRow<'a> {
        use aiguillage_core::InState;
        let decide_by = match r.state {
            InState::AwaitingDecision { decide_by } => Some(decide_by),
            _ => None,
        };
        ReferralRow {
            referral: &r.id,
            direction: "in",
            sector: r.card.sector.tag(),
            state: r.state.tag(),
            open: decide_by.is_some(),
            was_accepted: Some(r.state.was_accepted()),
            target: None,
            accepted_by: None,
            attempts: None,
            origin: Some(&r.origin),
            decide_by,
        }
    }
}

/// `GET /referrals/{id}`: the whole record, and for an outgoing one the routing decision.
#[derive(Serialize)]
#[serde(tag = "direction", rename_all = "snake_case")]
pub enum ReferralDetail<'a> {
    Out {
        referral: &'a OutReferral,
        explanation: Option<&'a Explanation>,
    },
    In {
        referral: &'a InReferral,
    },
}

/// One row of `GET /jobs`.
#[derive(Serialize)]
pub struct JobRow<'a> {
    pub job: &'a JobId,
    pub direction: &'static str,
    pub phase: &'static str,
    pub epoch: u64,
    pub gpus: u32,
    /// Still moving: not yet done, cancelled or missed (submitted only).
    pub open: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<&'a MemberId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'a MemberId>,
}

impl<'a> JobRow<'a> {
    pub fn submitted(j: &'a OriginJob) -> JobRow<'a> {
        JobRow {
            job: &j.spec.job,
            direction: "submitted",
            phase: j.phase.tag(),
            epoch: j.epoch,
            gpus: j.spec.requirements.gpus,
            open: !j.phase.is_final(),
            host: j.host(),
            origin: None,
        }
    }

    pub fn hosted(h: &'a HostedJob) -> JobRow<'a> {
        JobRow {
            job: &h.spec.job,
            direction: "hosted",
            phase: h.phase.tag(),
            epoch: h.epoch,
            gpus: h.spec.requirements.gpus,
            open: h.holds_gpus(),
            host: None,
            origin: Some(&h.origin),
        }
    }
}

/// `GET /jobs/{id}`: the whole record, and where a submitted job runs.
#[derive(Serialize)]
#[serde(tag = "direction", rename_all = "snake_case")]
pub enum JobDetail<'a> {
    Submitted {
        job: &'a OriginJob,
        host: Option<&'a MemberId>,
    },
    Hosted {
        job: &'a HostedJob,
    },
}

/// One row of `GET /ledger`.
#[derive(Serialize)]
pub struct LedgerRow<'a> {
    pub member: &'a MemberId,
    pub totals: &'a aiguillage_core::ledger::Totals,
    pub balance: f64,
}

/// `GET|POST /jobs/{id}/output`: the end of a job's stdout and stderr, as text.
#[derive(Serialize)]
pub struct OutputView {
    pub job: JobId,
    /// Where it ran: `here`, or the host it was fetched from.
    pub source: String,
    pub epoch: u64,
    pub fetched_at: Timestamp,
    pub stdout: String,
    pub stdout_size: u64,
    pub stderr: String,
    pub stderr_size: u64,
}

impl OutputView {
    /// `source` is `here` or the host's id.
    pub fn new(
        o: &aiguillage_wire::JobOutput,
        source: String,
        fetched_at: Timestamp,
    ) -> OutputView {
        OutputView {
            job: o.job.clone(),
            source,
            epoch: o.epoch,
            fetched_at,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stdout_size: o.stdout_size,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            stderr_size: o.stderr_size,
        }
    }
}
