//! The local admin HTTP API. Handlers only translate HTTP to [`ApiCall`]s for the node's
//! main loop, which owns the core; every answer is JSON, errors included. Ids and bodies
//! are parsed here, and each call is checked against the caller's role.

use aiguillage_core::project_file::ProjectFile;
use aiguillage_wire::{DeclineReason, JobId, ProgressState, ProjectId, ReferralId, Service};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::access::{Access, Caller, Role};
use crate::job_file::JobFile;

/// What a caller asks the node, parsed and checked at the edge: ids are well formed and
/// bodies have their shape before the node's loop sees them.
#[derive(Debug)]
pub enum ApiCall {
    Status,
    Directory,
    /// The advert this member publishes now.
    OwnAdvert,
    Projects,
    Project(ProjectId),
    FileProject(Box<ProjectFile>),
    /// What filing the project would decide now, without filing it (read-only: a viewer
    /// may ask).
    Preview(Box<ProjectFile>),
    ProjectProgress {
        project: ProjectId,
        report: ProgressReport,
    },
    AdviseAgainst {
        project: ProjectId,
        reason: String,
    },
    Referrals,
    Referral(ReferralId),
    /// The incoming referrals held in memory, each whole (the console's inbox).
    Inbox,
    Decide {
        referral: ReferralId,
        accept: bool,
        /// Why, for a decline: one of [`DECLINE_REASONS`] (`operator_declined` by default).
        reason: Option<DeclineReason>,
        detail: String,
    },
    Withdraw {
        referral: ReferralId,
        detail: String,
    },
    Progress {
        referral: ReferralId,
        report: ProgressReport,
    },
    Jobs,
    Job(JobId),
    SubmitJob(Box<JobFile>),
    CancelJob(JobId),
    /// `POST /jobs/{id}/output`: ask the job's host for the end of its output (or read it
    /// here, for a job that ran here).
    FetchOutput(JobId),
    /// `GET /jobs/{id}/output`: the output last fetched.
    Output(JobId),
    Ledger,
    Kpi,
    Notifications {
        after: u64,
        unread: bool,
    },
    MarkRead {
        up_to: u64,
    },
    PublishAdvert,
    /// The newest `limit` audit entries and whether the whole chain verifies.
    Audit {
        limit: usize,
    },
    /// The Prometheus text, with the gauges brought up to date first.
    Metrics,
}

impl ApiCall {
    /// The least role that may make this call.
    pub fn role(&self) -> Role {
        match self {
            ApiCall::Status
            | ApiCall::Directory
            | ApiCall::OwnAdvert
            | ApiCall::Projects
            | ApiCall::Project(_)
            | ApiCall::Referrals
            | ApiCall::Referral(_)
            | ApiCall::Inbox
            | ApiCall::Preview(_)
            | ApiCall::Jobs
            | ApiCall::Job(_)
            | ApiCall::Output(_)
            | ApiCall::Ledger
            | ApiCall::Kpi
            | ApiCall::Notifications { .. }
            | ApiCall::Audit { .. }
            | ApiCall::Metrics => Role::Viewer,
            ApiCall::FileProject(_)
            | ApiCall::ProjectProgress { .. }
            | ApiCall::AdviseAgainst { .. }
            | ApiCall::Decide { .. }
            | ApiCall::Withdraw { .. }
            | ApiCall::Progress { .. }
            | ApiCall::MarkRead { .. } => Role::Adviser,
            ApiCall::SubmitJob(_)
            | ApiCall::CancelJob(_)
            | ApiCall::FetchOutput(_)
            | ApiCall::PublishAdvert => Role::Operator,
        }
    }
}

/// The reasons an adviser may give for declining; the others are the node's own.
pub const DECLINE_REASONS: [DeclineReason; 5] = [
    DeclineReason::OperatorDeclined,
    DeclineReason::NoCapacity,
    DeclineReason::SectorExcluded,
    DeclineReason::ServiceNotOffered,
    DeclineReason::OutOfConsentScope,
];

/// A decline reason an adviser may give, or a 422 that lists them.
pub fn decline_reason(tag: &str) -> Result<DeclineReason, ApiError> {
    tag.parse::<DeclineReason>()
        .ok()
        .filter(|r| DECLINE_REASONS.contains(r))
        .ok_or_else(|| {
            let allowed: Vec<&str> = DECLINE_REASONS.iter().map(|r| r.tag()).collect();
            ApiError::invalid(format!(
                "reason: {tag:?} is not one an adviser gives; one of {}",
                allowed.join(", ")
            ))
        })
}

/// The body of `POST /referrals/{id}/progress` and `POST /projects/{id}/progress`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    pub step: Service,
    pub state: ProgressState,
    #[serde(default)]
    pub note: String,
}

pub fn referral_id(s: &str) -> Result<ReferralId, ApiError> {
    ReferralId::new(s).map_err(|e| ApiError::bad_request(format!("referral id {s:?}: {e}")))
}

pub fn job_id(s: &str) -> Result<JobId, ApiError> {
    JobId::new(s).map_err(|e| ApiError::bad_request(format!("job id {s:?}: {e}")))
}

pub fn project_id(s: &str) -> Result<ProjectId, ApiError> {
    ProjectId::new(s).map_err(|e| ApiError::bad_request(format!("project id {s:?}: {e}")))
}

/// A JSON body as `T`, or a 422 that names what is wrong (`what: …`).
fn parse_body<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("{what}: {e}")))
}

/// An error answer: HTTP status and a message naming the problem.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn with(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::BAD_REQUEST, message)
    }
    /// Well formed, but a value breaks a rule (422).
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
    /// Not allowed in the state it is in (409).
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::CONFLICT, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::FORBIDDEN, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::SERVICE_UNAVAILABLE, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::NOT_FOUND, message)
    }
}

impl From<aiguillage_core::InputError> for ApiError {
    fn from(e: aiguillage_core::InputError) -> ApiError {
        use aiguillage_core::InputError as E;
        match e {
            E::TooLarge { .. } => ApiError::too_large(e.to_string()),
            E::Invalid { .. } => ApiError::invalid(e.to_string()),
            E::Conflict { .. } => ApiError::conflict(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

pub type ApiReply = Result<Value, ApiError>;
pub type ApiSender = mpsc::Sender<(Caller, ApiCall, oneshot::Sender<ApiReply>)>;

#[derive(Clone)]
struct Shared {
    access: Access,
    calls: ApiSender,
}

type S = State<Shared>;

pub fn router(access: Access, calls: ApiSender) -> Router {
    let shared = Shared { access, calls };
    Router::new()
        .route("/health", get(|| async { Json(json!({ "ok": true })) }))
        .route("/metrics", get(metrics_text))
        .route(
            "/status",
            get(|s: S, h: HeaderMap| call(s, h, ApiCall::Status)),
        )
        .route(
            "/directory",
            get(|s: S, h: HeaderMap| call(s, h, ApiCall::Directory)),
        )
        .route(
            "/projects",
            get(|s: S, h: HeaderMap| call(s, h, ApiCall::Projects)).post(
                |s: S, h: HeaderMap, b: Json<Value>| async move {
                    let file = parse_body::<ProjectFile>("project", b.0)?;
                    file.check()?;
                    call(s, h, ApiCall::FileProject(Box::new(file))).await
                },
            ),
        )
        .route(
            "/projects/{*rest}",
            get(|s: S, h: HeaderMap, Path(rest): Path<String>| async move {
                call(s, h, ApiCall::Project(project_id(&rest)?)).await
            })
            .post(project_action),
        )
        .route(
            "/referrals",
            get(|s: S, h: HeaderMap| call(s, h, ApiCall::Referrals)),
        )
        .route(
            "/referrals/{*rest}",
            get(|s: S, h: HeaderMap, Path(rest): Path<String>| async move {
                call(s, h, ApiCall::Referral(referral_id(&rest)?)).await
            })
            .post(referral_action),
        )
        .route(
            "/jobs",
            get(|s: S, h: HeaderMap| call(s, h, ApiCall::Jobs)).post(
                |s: S, h: HeaderMap, b: Json<Value>| async move {
                    let file = parse_body::<JobFile>("job", b.0)?;
                    file.check()
                        .map_err(|e| ApiError::invalid(format!("job: {e}")))?;
                    call(s, h, ApiCall::SubmitJob(Box::new(file))).await
                },
            ),
        )
        .route(
            "/jobs/{*rest}",
            get(|s: S, h: HeaderMap, Path(rest): Path<String>| async move {
                match rest.strip_suffix("/output") {
                    Some(id) => call(s, h, ApiCall::Output(job_id(id)?)).await,
                    None => call(s, h, ApiCall::Job(job_id(&rest)?)).await,
                }
            })
            .post(job_action),
        )
        .route(
            "/ledger",
            get(|s: S, h: HeaderMap| call(s, h, ApiCall::Ledger)),
        )
        .route(
            "/advert/publish",
            post(|s: S, h: HeaderMap| call(s, h, ApiCall::PublishAdvert)),
        )
        .route("/kpi", get(|s: S, h: HeaderMap| call(s, h, ApiCall::Kpi)))
        .route(
            "/audit",
            get(|s: S, h: HeaderMap, q: Query<AuditQuery>| async move {
                let limit = q.limit.unwrap_or(100);
                if !(1..=MAX_AUDIT_ROWS).contains(&limit) {
                    return Err(ApiError::invalid(format!(
                        "limit: {limit} is out of 1..={MAX_AUDIT_ROWS}"
                    )));
                }
                call(s, h, ApiCall::Audit { limit }).await
            }),
        )
        .route(
            "/notifications",
            get(|s: S, h: HeaderMap, q: Query<NoticeQuery>| async move {
                let c = ApiCall::Notifications {
                    after: q.after.unwrap_or(0),
                    unread: q.unread.unwrap_or(false),
                };
                call(s, h, c).await
            }),
        )
        .route(
            "/notifications/read",
            post(|s: S, h: HeaderMap, b: Json<Value>| async move {
                let r: MarkRead = parse_body("read", b.0)?;
                call(s, h, ApiCall::MarkRead { up_to: r.up_to }).await
            }),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint; see docs/admin-api.yaml") })
        .with_state(shared)
}

/// The most audit entries one answer lists.
pub const MAX_AUDIT_ROWS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct NoticeQuery {
    after: Option<u64>,
    unread: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkRead {
    up_to: u64,
}

async fn metrics_text(State(s): State<Shared>) -> Result<String, ApiError> {
    let node = Caller {
        name: "metrics".into(),
        role: Role::Viewer,
    };
    match ask(&s.calls, node, ApiCall::Metrics).await? {
        Value::String(text) => Ok(text),
        other => Ok(other.to_string()),
    }
}

/// The caller a request's bearer token belongs to.
fn authorised(s: &Shared, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let unauthorised = |m: &str| ApiError::with(StatusCode::UNAUTHORIZED, m);
    match given {
        None => Err(unauthorised(
            "missing bearer token (Authorization: Bearer <token from the token file>)",
        )),
        Some(t) => s
            .access
            .caller(t)
            .ok_or_else(|| unauthorised("wrong bearer token")),
    }
}

async fn call(
    State(s): State<Shared>,
    headers: HeaderMap,
    c: ApiCall,
) -> Result<Json<Value>, ApiError> {
    let caller = authorised(&s, &headers)?;
    ask_as(&s.calls, caller, c).await.map(Json)
}

/// Hands a call to the node's loop, if the caller's role allows it, and waits for its
/// answer. The console goes through here too.
pub async fn ask_as(calls: &ApiSender, caller: Caller, c: ApiCall) -> ApiReply {
    if caller.role < c.role() {
        return Err(ApiError::forbidden(format!(
            "{} is a {} and this needs an {}",
            caller.name,
            caller.role.tag(),
            c.role().tag()
        )));
    }
    ask(calls, caller, c).await
}

/// Hands a call to the node's loop and waits for its answer.
async fn ask(calls: &ApiSender, caller: Caller, c: ApiCall) -> ApiReply {
    let (tx, rx) = oneshot::channel();
    let stopping = || ApiError::unavailable("the node is shutting down");
    calls.send((caller, c, tx)).await.map_err(|_| stopping())?;
    rx.await.map_err(|_| stopping())?
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Detail {
    #[serde(default)]
    detail: String,
    /// Only for a decline.
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

/// `POST /referrals/{id}/accept|decline|withdraw|progress` (referral ids contain `/`).
async fn referral_action(
    s: S,
    h: HeaderMap,
    Path(rest): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let parsed = |body: Value| -> Result<Detail, ApiError> {
        if body.is_null() {
            return Ok(Detail::default());
        }
        parse_body::<Detail>("detail", body)
    };
    let detail = |body: Value| -> Result<String, ApiError> {
        let d = parsed(body)?;
        if d.reason.is_some() {
            return Err(ApiError::invalid("reason: only a decline takes a reason"));
        }
        Ok(d.detail)
    };
    let (id, action) = rest.rsplit_once('/').ok_or_else(|| {
        ApiError::not_found("POST /referrals/{id}/accept|decline|withdraw|progress")
    })?;
    let referral = referral_id(id)?;
    let c = match action {
        "accept" => ApiCall::Decide {
            referral,
            accept: true,
            reason: None,
            detail: detail(body)?,
        },
        "decline" => {
            let d = parsed(body)?;
            ApiCall::Decide {
                referral,
                accept: false,
                reason: d.reason.as_deref().map(decline_reason).transpose()?,
                detail: d.detail,
            }
        }
        "withdraw" => ApiCall::Withdraw {
            referral,
            detail: detail(body)?,
        },
        "progress" => ApiCall::Progress {
            referral,
            report: parse_body("progress", body)?,
        },
        other => {
            return Err(ApiError::not_found(format!(
                "unknown referral action {other:?}"
            )));
        }
    };
    call(s, h, c).await
}

/// `POST /projects/{id}/progress|advise-against` (project ids contain `/`), and
/// `POST /projects/preview`.
async fn project_action(
    s: S,
    h: HeaderMap,
    Path(rest): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    if rest == "preview" {
        let file = parse_body::<ProjectFile>("project", body)?;
        file.check()?;
        return call(s, h, ApiCall::Preview(Box::new(file))).await;
    }
    let (id, action) = rest
        .rsplit_once('/')
        .ok_or_else(|| ApiError::not_found("POST /projects/{id}/progress|advise-against"))?;
    let project = project_id(id)?;
    let c = match action {
        "progress" => ApiCall::ProjectProgress {
            project,
            report: parse_body("progress", body)?,
        },
        "advise-against" => {
            let r: Reason = parse_body("advise-against", body)?;
            if r.reason.trim().is_empty() {
                return Err(ApiError::invalid(
                    "reason: say why the project is not worth doing",
                ));
            }
            ApiCall::AdviseAgainst {
                project,
                reason: r.reason,
            }
        }
        other => {
            return Err(ApiError::not_found(format!(
                "unknown project action {other:?}"
            )));
        }
    };
    call(s, h, c).await
}

/// `POST /jobs/{id}/cancel`.
async fn job_action(s: S, h: HeaderMap, Path(rest): Path<String>) -> Result<Json<Value>, ApiError> {
    match rest.rsplit_once('/') {
        Some((id, "cancel")) => call(s, h, ApiCall::CancelJob(job_id(id)?)).await,
        Some((id, "output")) => call(s, h, ApiCall::FetchOutput(job_id(id)?)).await,
        _ => Err(ApiError::not_found(
            "POST /jobs/{id}/cancel or /jobs/{id}/output",
        )),
    }
}
