//! The admin API's calls, answered from the core's state or applied to it.

use aiguillage_core::{
    FiledProject, FilingChoice, HostedJob, InReferral, InState, Input, Notification, OriginJob,
    OutReferral, Record, StateKey, decode_record,
};
use serde::Serialize;
use serde_json::{Value, json};

use super::Node;
use super::views::{self, JobDetail, JobRow, LedgerRow, ReferralDetail, ReferralRow, Status};
use crate::access::Caller;
use crate::api::{ApiCall, ApiError, ApiReply};
use crate::clock;

/// The longest note or reason a person writes in one field; the wire carries more, but a
/// note is a sentence or two, and a record holds many.
const MAX_NOTE: usize = 2_000;

/// A text field within its limit, or a 413 naming it.
fn check_text(field: &str, text: &str, limit: usize) -> Result<(), ApiError> {
    if text.len() > limit {
        return Err(ApiError::too_large(format!(
            "{field}: {} bytes, over the limit of {limit} bytes",
            text.len()
        )));
    }
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("reading the store's archive: {e}"))
}

fn to_json(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Archived records (those that left the core's memory) of one kind.
#[derive(Default)]
struct Archived {
    projects: Vec<FiledProject>,
    outgoing: Vec<OutReferral>,
    incoming: Vec<InReferral>,
    jobs: Vec<OriginJob>,
    hosted: Vec<HostedJob>,
}

impl Archived {
    fn add(&mut self, record: Record) {
        match record {
            Record::Project(p) => self.projects.push(p),
            Record::Outgoing(r) => self.outgoing.push(r),
            Record::Incoming(r) => self.incoming.push(r),
            Record::Job(j) => self.jobs.push(j),
            Record::Hosted(h) => self.hosted.push(h),
            Record::Other => {}
        }
    }
}

impl Node {
    /// The archived record under `key`, if the store holds one.
    fn archived(&self, key: &StateKey) -> Result<Option<Record>, ApiError> {
        match self.store.archived(key).map_err(internal)? {
            Some(bytes) => Ok(Some(decode_record(key, &bytes).map_err(internal)?)),
            None => Ok(None),
        }
    }

    /// Every archived record under these key prefixes (`out/`, `job/`, …).
    fn archived_under(&self, prefixes: &[&str]) -> Result<Archived, ApiError> {
        let mut a = Archived::default();
        for prefix in prefixes {
            for (key, bytes) in self.store.archived_under(prefix).map_err(internal)? {
                a.add(decode_record(&key, &bytes).map_err(internal)?);
            }
        }
        Ok(a)
    }

    pub(super) fn on_api(&mut self, caller: &Caller, call: ApiCall) -> ApiReply {
        let by = caller.name.clone();
        let s = self.core.state();
        match call {
            ApiCall::Status => {
                let roster = self.core.roster();
                let now = clock::now();
                let offset = self.clock.offset(now);
                let clocks_off = self
                    .clock
                    .members(now)
                    .into_iter()
                    .filter(|(_, ahead)| ahead.abs() > super::clock_watch::WARN_MS)
                    .map(|(m, ahead)| views::ClockOff {
                        member: m.as_str().to_owned().into(),
                        ahead_s: ahead as f64 / 1000.0,
                    })
                    .collect();
                Ok(to_json(&Status {
                    member: self.core.me(),
                    peer_id: &self.run_info.peer_id,
                    public_key: hex::encode(self.key.verifying_key().as_bytes()),
                    version: env!("CARGO_PKG_VERSION"),
                    started_at: self.started_at,
                    listen: &self.run_info.listen,
                    peers_connected: self.peers.connected_count(),
                    peers_not_connected: self.peers.not_connected(),
                    clock_offset_s: offset.map(|o| o.ms as f64 / 1000.0),
                    clock_members: offset.map_or(0, |o| o.members),
                    clocks_off,
                    directory: s.directory.len(),
                    roster_serial: roster.map(|r| r.serial),
                    roster_members: roster.map(|r| r.members.len()),
                    roster_expires_at: s.roster.as_ref().map(|(_, e)| e.expires_at),
                    decisions_pending: s
                        .incoming
                        .values()
                        .filter(|r| matches!(r.state, InState::AwaitingDecision { .. }))
                        .count(),
                    gpus_total: s.total_gpus,
                    gpus_free: self.core.free_gpus(),
                    projects: s.projects.len(),
                    referrals_out: s.outgoing.len(),
                    referrals_in: s.incoming.len(),
                    jobs: s.jobs.len(),
                    jobs_hosted: s.hosted.len(),
                }))
            }
            ApiCall::Directory => Ok(to_json(&views::directory(&self.core, clock::now()))),
            ApiCall::OwnAdvert => Ok(to_json(&self.core.own_advert())),
            ApiCall::Inbox => {
                let rows: Vec<ReferralDetail> = s
                    .incoming
                    .values()
                    .map(|referral| ReferralDetail::In { referral })
                    .collect();
                Ok(to_json(&rows))
            }
            ApiCall::Projects => {
                let archived = self.archived_under(&["project/"])?;
                let rows: Vec<&FiledProject> =
                    s.projects.values().chain(&archived.projects).collect();
                Ok(to_json(&rows))
            }
            ApiCall::Project(id) => {
                if let Some(p) = s.projects.get(&id) {
                    return Ok(to_json(p));
                }
                match self.archived(&StateKey::Project(id.clone()))? {
                    Some(Record::Project(p)) => Ok(to_json(&p)),
                    _ => Err(ApiError::not_found(format!("no project {id}"))),
                }
            }
            ApiCall::FileProject(file) => {
                let dossier = file.dossier.clone().ok_or_else(|| {
                    ApiError::invalid("dossier: a dossier is needed to file a project")
                })?;
                let card = file.card();
                let choice = file.choice();
                let stay = match &choice {
                    FilingChoice::Stay { reason } => Some(reason.as_str()),
                    _ => None,
                };
                self.core.check_filing(&card, &dossier, stay)?;
                let notes = self.apply(Input::FileProject {
                    card,
                    dossier,
                    choice,
                    by,
                });
                notes
                    .into_iter()
                    .find(|n| matches!(n, Notification::ProjectFiled { .. }))
                    .map(|n| to_json(&n))
                    .ok_or_else(|| {
                        ApiError::internal("the project could not be filed (see the node log)")
                    })
            }
            ApiCall::Preview(file) => {
                let card = file.card();
                Ok(to_json(&self.core.preview(
                    clock::now(),
                    &card,
                    &file.choice(),
                )))
            }
            ApiCall::ProjectProgress { project, report } => {
                let Some(p) = s.projects.get(&project) else {
                    return Err(ApiError::not_found(format!("no open project {project}")));
                };
                if !p.journey.state.is_open() {
                    let why = match &p.referral {
                        Some(r) if p.journey.state == aiguillage_core::JourneyState::Referred => {
                            format!("the member that took referral {r} reports its progress")
                        }
                        _ => "its journey here has ended".to_owned(),
                    };
                    return Err(ApiError::conflict(format!(
                        "{project} is {}: {why}",
                        p.journey.state.tag()
                    )));
                }
                check_text("note", &report.note, MAX_NOTE)?;
                self.apply(Input::ProjectProgress {
                    project: project.clone(),
                    step: report.step,
                    state: report.state,
                    note: report.note,
                    by,
                });
                Ok(to_json(&self.core.state().projects[&project].journey))
            }
            ApiCall::AdviseAgainst { project, reason } => {
                let Some(p) = s.projects.get(&project) else {
                    return Err(ApiError::not_found(format!("no open project {project}")));
                };
                if !p.journey.state.is_open() {
                    return Err(ApiError::conflict(format!(
                        "{project} is {}: it cannot be advised against now",
                        p.journey.state.tag()
                    )));
                }
                check_text("reason", &reason, MAX_NOTE)?;
                self.apply(Input::AdviseAgainst {
                    project: project.clone(),
                    reason,
                    by,
                });
                Ok(to_json(&self.core.state().projects[&project].journey))
            }
            ApiCall::Referrals => {
                let archived = self.archived_under(&["out/", "in/"])?;
                let rows: Vec<ReferralRow> = s
                    .outgoing
                    .values()
                    .chain(&archived.outgoing)
                    .map(ReferralRow::out)
                    .chain(
                        s.incoming
                            .values()
                            .chain(&archived.incoming)
                            .map(ReferralRow::incoming),
                    )
                    .collect();
                Ok(to_json(&rows))
            }
            ApiCall::Referral(id) => {
                if let Some(r) = s.outgoing.get(&id) {
                    let explanation = s.projects.get(&r.card.project).map(|p| &p.explanation);
                    return Ok(to_json(&ReferralDetail::Out {
                        referral: r,
                        explanation,
                    }));
                }
                if let Some(r) = s.incoming.get(&id) {
                    return Ok(to_json(&ReferralDetail::In { referral: r }));
                }
                if let Some(Record::Outgoing(r)) = self.archived(&StateKey::Outgoing(id.clone()))? {
                    let project = match s.projects.get(&r.card.project) {
                        Some(p) => Some(p.clone()),
                        None => match self.archived(&StateKey::Project(r.card.project.clone()))? {
                            Some(Record::Project(p)) => Some(p),
                            _ => None,
                        },
                    };
                    return Ok(to_json(&ReferralDetail::Out {
                        referral: &r,
                        explanation: project.as_ref().map(|p| &p.explanation),
                    }));
                }
                if let Some(Record::Incoming(r)) = self.archived(&StateKey::Incoming(id.clone()))? {
                    return Ok(to_json(&ReferralDetail::In { referral: &r }));
                }
                Err(ApiError::not_found(format!("no referral {id}")))
            }
            ApiCall::Decide {
                referral,
                accept,
                reason,
                detail,
            } => {
                let awaiting = s
                    .incoming
                    .get(&referral)
                    .map(|r| matches!(r.state, InState::AwaitingDecision { .. }));
                match awaiting {
                    None => {
                        return Err(ApiError::not_found(format!(
                            "no incoming referral {referral}"
                        )));
                    }
                    Some(false) => {
                        return Err(ApiError::conflict(format!(
                            "{referral} is {}: it does not await a decision",
                            s.incoming[&referral].state.tag()
                        )));
                    }
                    Some(true) => {}
                }
                if !accept {
                    self.core.check_decline(&referral, &detail)?;
                }
                self.apply(Input::Decide {
                    referral: referral.clone(),
                    accept,
                    reason,
                    detail,
                    by,
                });
                Ok(to_json(&self.core.state().incoming[&referral].state))
            }
            ApiCall::Withdraw { referral, detail } => {
                if !s.outgoing.contains_key(&referral) {
                    return Err(ApiError::not_found(format!(
                        "no outgoing referral {referral}"
                    )));
                }
                if s.outgoing[&referral].state.is_final() {
                    return Err(ApiError::conflict(format!(
                        "{referral} is {}: it cannot be withdrawn",
                        s.outgoing[&referral].state.tag()
                    )));
                }
                self.core.check_withdraw(&referral, &detail)?;
                self.apply(Input::Withdraw {
                    referral: referral.clone(),
                    detail,
                    by,
                });
                Ok(to_json(&self.core.state().outgoing[&referral].state))
            }
            ApiCall::Progress { referral, report } => {
                if !s.incoming.contains_key(&referral) {
                    return Err(ApiError::not_found(format!(
                        "no incoming referral {referral}"
                    )));
                }
                self.core
                    .check_progress(&referral, report.step, report.state, &report.note)?;
                self.apply(Input::ReportProgress {
                    referral: referral.clone(),
                    step: report.step,
                    state: report.state,
                    note: report.note,
                    by,
                });
                Ok(to_json(&self.core.state().incoming[&referral].state))
            }
            ApiCall::Jobs => {
                let archived = self.archived_under(&["job/", "hosted/"])?;
                let rows: Vec<JobRow> = s
                    .jobs
                    .values()
                    .chain(&archived.jobs)
                    .map(JobRow::submitted)
                    .chain(
                        s.hosted
                            .values()
                            .chain(&archived.hosted)
                            .map(JobRow::hosted),
                    )
                    .collect();
                Ok(to_json(&rows))
            }
            ApiCall::Job(id) => {
                if let Some(j) = s.jobs.get(&id) {
                    return Ok(to_json(&JobDetail::Submitted {
                        job: j,
                        host: j.host(),
                    }));
                }
                if let Some(h) = s.hosted.get(&id) {
                    return Ok(to_json(&JobDetail::Hosted { job: h }));
                }
                if let Some(Record::Job(j)) = self.archived(&StateKey::Job(id.clone()))? {
                    return Ok(to_json(&JobDetail::Submitted {
                        job: &j,
                        host: j.host(),
                    }));
                }
                if let Some(Record::Hosted(h)) = self.archived(&StateKey::Hosted(id.clone()))? {
                    return Ok(to_json(&JobDetail::Hosted { job: &h }));
                }
                Err(ApiError::not_found(format!("no job {id}")))
            }
            ApiCall::SubmitJob(file) => {
                let now = clock::now();
                let (requirements, env) = (file.requirements(now), file.env());
                self.core.check_job(&requirements, &file.command, &env)?;
                let notes = self.apply(Input::SubmitJob {
                    requirements,
                    command: file.command.clone(),
                    env,
                });
                let job = notes.into_iter().find_map(|n| match n {
                    Notification::JobSubmitted { job } => Some(job),
                    _ => None,
                });
                match job.and_then(|id| self.core.state().jobs.get_key_value(&id)) {
                    Some((id, j)) => Ok(json!({ "job": id, "phase": j.phase })),
                    None => Err(ApiError::internal(
                        "the job could not be submitted (see the node log)",
                    )),
                }
            }
            ApiCall::FetchOutput(id) => {
                let Some(j) = s.jobs.get(&id) else {
                    if let Some(h) = s.hosted.get(&id) {
                        return Err(ApiError::forbidden(format!(
                            "job {id} runs here for {}; only its origin may ask for its output",
                            h.origin
                        )));
                    }
                    return Err(ApiError::not_found(format!("no submitted job {id}")));
                };
                let now = clock::now();
                // Where it runs or ran last decides, whatever hosts it had before.
                let ran_here = matches!(j.phase, aiguillage_core::JobPhase::Local)
                    || matches!(&j.phase, aiguillage_core::JobPhase::Done { host: None, .. });
                if ran_here {
                    let out = crate::executor::job_output(
                        self.executor.root(),
                        &id,
                        0,
                        aiguillage_wire::OUTPUT_TAIL_BYTES,
                    );
                    let view = to_json(&views::OutputView::new(&out, "here".into(), now));
                    // Kept like a host's answer, for `GET /jobs/{id}/output` and the console.
                    self.outputs.keep(self.core.me().clone(), now, out);
                    return Ok(view);
                }
                let Some(host) = j
                    .placements
                    .iter()
                    .rev()
                    .find(|p| p.confirmed)
                    .map(|p| p.host.clone())
                else {
                    return Err(ApiError::conflict(format!(
                        "job {id} has not started anywhere yet ({}): no output",
                        j.phase.tag()
                    )));
                };
                self.apply(Input::RequestOutput { job: id.clone() });
                Ok(serde_json::json!({
                    "job": id,
                    "host": host,
                    "requested_at": now,
                }))
            }
            ApiCall::Output(id) => {
                if !s.jobs.contains_key(&id) {
                    return Err(ApiError::not_found(format!("no submitted job {id}")));
                }
                match self.outputs.get(&id) {
                    Some((host, at, o)) => {
                        Ok(to_json(&views::OutputView::new(o, host.to_string(), *at)))
                    }
                    None => Err(ApiError::not_found(format!(
                        "no output fetched for job {id} yet: POST /jobs/{id}/output asks its host"
                    ))),
                }
            }
            ApiCall::CancelJob(id) => {
                if !s.jobs.contains_key(&id) {
                    return Err(ApiError::not_found(format!("no submitted job {id}")));
                }
                self.apply(Input::CancelJob { job: id.clone() });
                Ok(to_json(&self.core.state().jobs[&id].phase))
            }
            ApiCall::Ledger => {
                let now = clock::now();
                let rows: Vec<LedgerRow> = s
                    .ledger
                    .peers()
                    .map(|(m, t)| LedgerRow {
                        member: m,
                        totals: t,
                        balance: s.ledger.balance(m, now),
                    })
                    .collect();
                Ok(to_json(&rows))
            }
            ApiCall::PublishAdvert => {
                self.apply(Input::PublishAdvert);
                Ok(json!({ "seq": self.core.state().advert_seq }))
            }
            ApiCall::Audit { limit } => {
                let key = aiguillage_wire::PublicKey::of(&self.key);
                let verified = match self.store.audit_verify(&key) {
                    Ok(n) => json!({ "ok": true, "entries": n }),
                    Err(e) => json!({ "ok": false, "error": e.to_string() }),
                };
                let entries = self.store.audit_entries().map_err(internal)?;
                let newest: Vec<Value> = entries
                    .iter()
                    .rev()
                    .take(limit)
                    .map(|r| {
                        json!({
                            "seq": r.seq,
                            "at": r.at,
                            "event": r.event,
                            "subject": r.subject,
                            "detail": r.detail,
                        })
                    })
                    .collect();
                Ok(json!({ "chain": verified, "total": entries.len(), "entries": newest }))
            }
            ApiCall::Kpi => {
                let mut archived = Vec::new();
                for prefix in ["project/", "out/", "in/", "job/"] {
                    for (key, bytes) in self.store.archived_under(prefix).map_err(internal)? {
                        archived.push(decode_record(&key, &bytes).map_err(internal)?);
                    }
                }
                Ok(to_json(&aiguillage_core::kpi::Kpis::of(s, &archived)))
            }
            ApiCall::Notifications { after, unread } => {
                let read = self.store.notices_read().map_err(internal)?;
                let after = if unread { after.max(read) } else { after };
                let list = if after == 0 && !unread {
                    let mut newest = self.store.latest_notices(1000).map_err(internal)?;
                    newest.reverse();
                    newest
                } else {
                    self.store.notices(after, 1000).map_err(internal)?
                };
                let rows: Vec<Value> = list
                    .into_iter()
                    .map(|n| {
                        json!({
                            "seq": n.seq, "at": n.at, "read": n.seq <= read,
                            "notification": n.notification,
                        })
                    })
                    .collect();
                Ok(
                    json!({ "notifications": rows, "read_up_to": read, "latest": self.store.last_notice() }),
                )
            }
            ApiCall::MarkRead { up_to } => {
                let read = self.store.mark_notices_read(up_to).map_err(internal)?;
                Ok(json!({ "read_up_to": read }))
            }
            ApiCall::Metrics => {
                self.update_gauges();
                Ok(Value::String(crate::metrics::Metrics::render(
                    &self.metrics.registry,
                )))
            }
        }
    }
}
