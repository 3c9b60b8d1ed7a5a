//! The admin API's calls, answered from the core's state or applied to it.

use aiguillage_core::{
    FiledProject, HostedJob, InReferral, InState, Input, Notification, OriginJob, OutReferral,
    Record, StateKey, decode_record,
};
use serde::Serialize;
use serde_json::{Value, json};

use super::Node;
use super::views::{self, JobDetail, JobRow, LedgerRow, ReferralDetail, ReferralRow, Status};
use crate::api::{ApiCall, ApiError, ApiReply};
use crate::clock;

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

    pub(super) fn on_api(&mut self, call: ApiCall) -> ApiReply {
        let s = self.core.state();
        match call {
            ApiCall::Status => {
                let roster = self.core.roster();
                Ok(to_json(&Status {
                    member: self.core.me(),
                    peer_id: &self.run_info.peer_id,
                    listen: &self.run_info.listen,
                    peers_connected: self.peers.connected_count(),
                    directory: s.directory.len(),
                    roster_serial: roster.map(|r| r.serial),
                    roster_members: roster.map(|r| r.members.len()),
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
            ApiCall::Projects => {
                let archived = self.archived_under(&["project/"])?;
                let rows: Vec<&FiledProject> =
                    s.projects.values().chain(&archived.projects).collect();
                Ok(to_json(&rows))
            }
            ApiCall::FileProject(file) => {
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
            ApiCall::Progress { referral, report } => {
                if !s.incoming.contains_key(&referral) {
                    return Err(ApiError::not_found(format!(
                        "no incoming referral {referral}"
                    )));
                }
                self.apply(Input::ReportProgress {
                    referral: referral.clone(),
                    step: report.step,
                    state: report.state,
                    note: report.note,
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
                let notes = self.apply(Input::SubmitJob {
                    requirements: file.requirements(now),
                    command: file.command.clone(),
                    env: file.env(),
                });
                let job = notes.into_iter().find_map(|n| match n {
                    Notification::JobSubmitted { job } => Some(job),
                    _ => None,
                });
                match job.and_then(|id| self.core.state().jobs.get_key_value(&id)) {
                    Some((id, j)) => Ok(json!({ "job": id, "phase": j.phase })),
                    None => Err(ApiError::bad_request(
                        "the job could not be submitted (see the node log)",
                    )),
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
            ApiCall::Kpi => {
                let mut kpis = aiguillage_core::kpi::Kpis::of(s);
                for prefix in ["project/", "out/", "in/", "job/"] {
                    for (key, bytes) in self.store.archived_under(prefix).map_err(internal)? {
                        kpis.add_record(&decode_record(&key, &bytes).map_err(internal)?);
                    }
                }
                Ok(to_json(&kpis))
            }
            ApiCall::Notifications => Ok(to_json(&self.notices.list())),
            ApiCall::Metrics => {
                self.update_gauges();
                Ok(Value::String(crate::metrics::Metrics::render(
                    &self.metrics.registry,
                )))
            }
        }
    }
}
