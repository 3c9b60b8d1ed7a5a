//! The admin API's calls, answered from the core's state or applied to it.

use aiguillage_core::{InState, Input, Notification};
use serde::Serialize;
use serde_json::{Value, json};

use super::Node;
use super::views::{self, JobDetail, JobRow, LedgerRow, ReferralDetail, ReferralRow, Status};
use crate::api::{ApiCall, ApiError, ApiReply};
use crate::clock;

fn to_json(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Node {
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
            ApiCall::Projects => Ok(to_json(&s.projects.values().collect::<Vec<_>>())),
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
                let rows: Vec<ReferralRow> = s
                    .outgoing
                    .values()
                    .map(ReferralRow::out)
                    .chain(s.incoming.values().map(ReferralRow::incoming))
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
                let rows: Vec<JobRow> = s
                    .jobs
                    .iter()
                    .map(|(id, j)| JobRow::submitted(id, j))
                    .chain(s.hosted.iter().map(|(id, h)| JobRow::hosted(id, h)))
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
            ApiCall::Kpi => Ok(to_json(&aiguillage_core::kpi::Kpis::of(s))),
            ApiCall::Notifications => Ok(to_json(&self.notices.list())),
        }
    }
}
