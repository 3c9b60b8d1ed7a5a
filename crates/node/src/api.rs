//! The local admin HTTP API. Handlers only translate HTTP to [`ApiCall`]s for the node's
//! main loop, which owns the core; every answer is JSON, errors included.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// What an operator asks the node.
#[derive(Debug)]
pub enum ApiCall {
    Status,
    Directory,
    Projects,
    FileProject(Value),
    Referrals,
    Referral(String),
    Decide {
        referral: String,
        accept: bool,
        detail: String,
    },
    Withdraw {
        referral: String,
        detail: String,
    },
    Progress {
        referral: String,
        body: Value,
    },
    Jobs,
    Job(String),
    SubmitJob(Value),
    CancelJob(String),
    Ledger,
    Kpi,
    Notifications,
    PublishAdvert,
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
    metrics: Arc<dyn Fn() -> String + Send + Sync>,
}

pub fn router(
    token: String,
    calls: ApiSender,
    metrics: Arc<dyn Fn() -> String + Send + Sync>,
) -> Router {
    let shared = Shared {
        token: Arc::new(token),
        calls,
        metrics,
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
                |s: State<Shared>, h: HeaderMap, body: Json<Value>| {
                    call(s, h, ApiCall::FileProject(body.0))
                },
            ),
        )
        .route(
            "/referrals",
            get(|s: State<Shared>, h: HeaderMap| call(s, h, ApiCall::Referrals)),
        )
        .route(
            "/referrals/{*rest}",
            get(|s: State<Shared>, h: HeaderMap, Path(rest): Path<String>| {
                call(s, h, ApiCall::Referral(rest))
            })
            .post(referral_action),
        )
        .route(
            "/jobs",
            get(|s: State<Shared>, h: HeaderMap| call(s, h, ApiCall::Jobs)).post(
                |s: State<Shared>, h: HeaderMap, body: Json<Value>| {
                    call(s, h, ApiCall::SubmitJob(body.0))
                },
            ),
        )
        .route(
            "/jobs/{*rest}",
            get(|s: State<Shared>, h: HeaderMap, Path(rest): Path<String>| {
                call(s, h, ApiCall::Job(rest))
            })
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

async fn metrics_text(State(s): State<Shared>) -> String {
    (s.metrics)()
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
    let (tx, rx) = oneshot::channel();
    s.calls.send((c, tx)).await.map_err(|_| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "the node is shutting down".into(),
    })?;
    let reply = rx.await.map_err(|_| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "the node is shutting down".into(),
    })?;
    reply.map(Json)
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
    let referral = id.to_owned();
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
        "progress" => ApiCall::Progress { referral, body },
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
        Some((id, "cancel")) => call(s, h, ApiCall::CancelJob(id.to_owned())).await,
        _ => Err(ApiError::not_found("POST /jobs/{id}/cancel")),
    }
}
