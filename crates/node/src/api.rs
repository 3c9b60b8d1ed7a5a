//! The local admin HTTP API. Handlers only translate HTTP to [`ApiCall`]s for the node's
//! main loop, which owns the core; every answer is JSON, errors included.

use std::sync::Arc;

use aiguillage_core::project_file::ProjectFile;
use aiguillage_wire::{JobId, ProgressState, ReferralId, Service};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::job_file::JobFile;
use tokio::sync::{mpsc, oneshot};

/// What an operator asks the node, parsed and checked at the edge: ids are well formed and
/// bodies have their shape before the node's loop sees them.
#[derive(Debug)]
pub enum ApiCall {
    Status,
    Directory,
    Projects,
    FileProject(Box<ProjectFile>),
    Referrals,
    Referral(ReferralId),
    Decide {
        referral: ReferralId,
        accept: bool,
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
    Ledger,
    Kpi,
    Notifications,
    PublishAdvert,
    /// The Prometheus text, with the gauges brought up to date first.
    Metrics,
}

/// The body of `POST /referrals/{id}/progress`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    pub step: Service,
    pub state: ProgressState,
    #[serde(default)]
    pub note: String,
}

fn referral_id(s: &str) -> Result<ReferralId, ApiError> {
    ReferralId::new(s).map_err(|e| ApiError::bad_request(format!("referral id {s:?}: {e}")))
}

fn job_id(s: &str) -> Result<JobId, ApiError> {
    JobId::new(s).map_err(|e| ApiError::bad_request(format!("job id {s:?}: {e}")))
}

/// A JSON body as `T`, or a 400 that names what is wrong (`what: …`).
fn parse_body<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

/// An error answer: HTTP status and a message naming the problem.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

pub type ApiReply = Result<Value, ApiError>;
pub type ApiSender = mpsc::Sender<(ApiCall, oneshot::Sender<ApiReply>)>;

#[derive(Clone)]
struct Shared {
    token: Arc<String>,
    calls: ApiSender,
}

pub fn router(token: String, calls: ApiSender) -> Router {
    let shared = Shared {
        token: Arc::new(token),
        calls,
    };
    Router::new()
        .route("/health", get(|| async { Json(json!({ "ok": true })) }))
        .route("/metrics", get(metrics_text))
        .route(
            "/status",
            get(|s: State<Shared>, h: HeaderMap| call(s, h, ApiCall::Status)),
        )
        .route(
            "/directory",
            get(|s: State<Shared>, h: HeaderMap| call(s, h, ApiCall::Directory)),
        )
        .route(
            "/projects",
            get(|s: State<Shared>, h: HeaderMap| call(s, h, ApiCall::Projects)).post(
                |s: State<Shared>, h: HeaderMap, b: Json<Value>| async move {
                    let file = parse_body::<ProjectFile>("project", b.0)?;
                    call(s, h, ApiCall::FileProject(Box::new(file))).await
                },
            ),
        )
        .route(
            "/referrals",
            get(|s: State<Shared>, h: HeaderMap| call(s, h, ApiCall::Referrals)),
        )
        .route(
            "/referrals/{*rest}",
            get(
                |s: State<Shared>, h: HeaderMap, Path(rest): Path<String>| async move {
                    call(s, h, ApiCall::Referral(referral_id(&rest)?)).await
                },
            )
            .post(referral_action),
        )
        .route(
            "/jobs",
            get(|s: State<Shared>, h: HeaderMap| call(s, h, ApiCall::Jobs)).post(
                |s: State<Shared>, h: HeaderMap, b: Json<Value>| async move {
                    let file = parse_body::<JobFile>("job", b.0)?;
                    file.check()
                        .map_err(|e| ApiError::bad_request(format!("job: {e}")))?;
                    call(s, h, ApiCall::SubmitJob(Box::new(file))).await
                },
            ),
        )
        .route(
            "/jobs/{*rest}",
            get(
                |s: State<Shared>, h: HeaderMap, Path(rest): Path<String>| async move {
                    call(s, h, ApiCall::Job(job_id(&rest)?)).await
                },
            )
            .post(job_action),
        )
        .route(
            "/ledger",
            get(|s: State<Shared>, h: HeaderMap| call(s, h, ApiCall::Ledger)),
        )
        .route(
            "/advert/publish",
            axum::routing::post(|s: State<Shared>, h: HeaderMap| {
                call(s, h, ApiCall::PublishAdvert)
            }),
        )
        .route(
            "/kpi",
            get(|s: State<Shared>, h: HeaderMap| call(s, h, ApiCall::Kpi)),
        )
        .route(
            "/notifications",
            get(|s: State<Shared>, h: HeaderMap| call(s, h, ApiCall::Notifications)),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint; see docs/admin-api.yaml") })
        .with_state(shared)
}

async fn metrics_text(State(s): State<Shared>) -> Result<String, ApiError> {
    match ask(&s, ApiCall::Metrics).await? {
        Value::String(text) => Ok(text),
        other => Ok(other.to_string()),
    }
}

fn authorised(s: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "missing bearer token (Authorization: Bearer <token from the token file>)"
                .into(),
        }),
        // Equal-time comparison: the token guards a local API, but costs nothing.
        Some(t)
            if t.len() == s.token.len()
                && t.bytes()
                    .zip(s.token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0 =>
        {
            Ok(())
        }
        Some(_) => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "wrong bearer token".into(),
        }),
    }
}

async fn call(
    State(s): State<Shared>,
    headers: HeaderMap,
    c: ApiCall,
) -> Result<Json<Value>, ApiError> {
    authorised(&s, &headers)?;
    ask(&s, c).await.map(Json)
}

/// Hands a call to the node's loop and waits for its answer.
async fn ask(s: &Shared, c: ApiCall) -> ApiReply {
    let (tx, rx) = oneshot::channel();
    let stopping = || ApiError::unavailable("the node is shutting down");
    s.calls.send((c, tx)).await.map_err(|_| stopping())?;
    rx.await.map_err(|_| stopping())?
}

#[derive(Deserialize, Default)]
struct Detail {
    #[serde(default)]
    detail: String,
}

/// `POST /referrals/{id}/accept|decline|withdraw|progress` (referral ids contain `/`).
async fn referral_action(
    s: State<Shared>,
    h: HeaderMap,
    Path(rest): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let detail = || {
        serde_json::from_value::<Detail>(body.clone())
            .unwrap_or_default()
            .detail
    };
    let (id, action) = rest.rsplit_once('/').ok_or_else(|| {
        ApiError::not_found("POST /referrals/{id}/accept|decline|withdraw|progress")
    })?;
    let referral = referral_id(id)?;
    let c = match action {
        "accept" => ApiCall::Decide {
            referral,
            accept: true,
            detail: detail(),
        },
        "decline" => ApiCall::Decide {
            referral,
            accept: false,
            detail: detail(),
        },
        "withdraw" => ApiCall::Withdraw {
            referral,
            detail: detail(),
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

/// `POST /jobs/{id}/cancel`.
async fn job_action(
    s: State<Shared>,
    h: HeaderMap,
    Path(rest): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match rest.rsplit_once('/') {
        Some((id, "cancel")) => call(s, h, ApiCall::CancelJob(job_id(id)?)).await,
        _ => Err(ApiError::not_found("POST /jobs/{id}/cancel")),
    }
}
