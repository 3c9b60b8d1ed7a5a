//! The console: web pages for the advisers and operators of this member, served on the admin
//! listener under `/console`. Pages are rendered here from the same calls the admin API
//! makes, so the node's loop decides and checks everything once; a page only shows.
//!
//! Sign-in takes a user's admin token (the operator's, or one made with `aiguillage token
//! add`) and opens a session: a random id in an HttpOnly, SameSite=Strict cookie, held in
//! memory for [`SESSION_HOURS`] (a restart signs everyone out). The token is looked up again
//! on every request, so a removed token ends its sessions at once. Every form carries the
//! session's CSRF token; every answer carries a Content-Security-Policy that allows nothing
//! but this node. Pages read without JavaScript; with it, htmx refreshes the live parts
//! when the node's event stream says something changed.

mod forms;
pub mod live;
mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use rand::Rng;
use serde::Deserialize;
use serde_json::Value;

use crate::access::{Access, Caller};
use crate::api::{self, ApiCall, ApiError, ApiSender};
use aiguillage_wire::MemberId;
pub use live::Live;

/// How long a session lasts after sign-in.
pub const SESSION_HOURS: u64 = 8;
/// The most sessions held at once; the oldest goes first.
pub const MAX_SESSIONS: usize = 256;
/// The most sessions one token holds: one user cannot push the others out.
pub const MAX_SESSIONS_PER_TOKEN: usize = 16;
/// The largest form body (a project's dossier, percent-encoded, fits).
pub const MAX_BODY: usize = 1024 * 1024;

/// Everything but this node is refused: no inline script, no other host.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

#[derive(Clone)]
struct Console {
    /// The cookies' names carry the member's id: a browser keeps cookies per host, not
    /// per port, and a devnet runs every member's console on 127.0.0.1.
    session_cookie: Arc<str>,
    sign_in_cookie: Arc<str>,
    access: Access,
    calls: ApiSender,
    live: Live,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

struct Session {
    token: String,
    csrf: String,
    expires: Instant,
}

/// A signed-in user, on one request.
pub struct User {
    pub caller: Caller,
    pub csrf: String,
    /// The newest event when the request came in: the page's event stream starts after
    /// it, so that nothing that changes while the page is on its way is missed.
    pub since: u64,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Console {
    /// The user a request's session cookie belongs to, while the session and its token last.
    fn user(&self, headers: &HeaderMap) -> Option<User> {
        let id = cookie(headers, &self.session_cookie)?;
        let (token, csrf) = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let s = sessions.get(id)?;
            if s.expires <= Instant::now() {
                sessions.remove(id);
                return None;
            }
            (s.token.clone(), s.csrf.clone())
        };
        let since = self.live.newest();
        let caller = self.access.caller(&token)?;
        Some(User {
            caller,
            csrf,
            since,
        })
    }

    /// A new session for `token`, replacing `previous` (the browser's old one, if any).
    fn open_session(&self, token: String, previous: Option<&str>) -> String {
        let id = random_hex();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if let Some(old) = previous {
            sessions.remove(old);
        }
        let oldest = |sessions: &HashMap<String, Session>, of_token: bool| {
            sessions
                .iter()
                .filter(|(_, s)| !of_token || s.token == token)
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        };
        if sessions.values().filter(|s| s.token == token).count() >= MAX_SESSIONS_PER_TOKEN
            && let Some(k) = oldest(&sessions, true)
        {
            sessions.remove(&k);
        }
        if sessions.len() >= MAX_SESSIONS
            && let Some(k) = oldest(&sessions, false)
        {
            sessions.remove(&k);
        }
        sessions.insert(
            id.clone(),
            Session {
                token,
                csrf: random_hex(),
                expires: now + Duration::from_secs(SESSION_HOURS * 3600),
            },
        );
        id
    }

    /// Asks the node's loop, as the user.
    async fn ask(&self, user: &User, c: ApiCall) -> Result<Value, ApiError> {
        api::ask_as(&self.calls, user.caller.clone(), c).await
    }
}

/// A page's answer: the page, a redirect to sign-in, or an error page.
enum Page {
    Html(StatusCode, Markup),
    SignIn,
    Redirect(String),
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self {
            Page::Html(status, markup) => (
                status,
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                markup.into_string(),
            )
                .into_response(),
            Page::SignIn => Redirect::to("/console/sign-in").into_response(),
            Page::Redirect(to) => Redirect::to(&to).into_response(),
        }
    }
}

impl From<(Option<&User>, ApiError)> for Page {
    fn from((user, e): (Option<&User>, ApiError)) -> Page {
        Page::Html(e.status, pages::error(user, e.status, &e.message))
    }
}

type S = State<Console>;

pub fn router(member: &MemberId, access: Access, calls: ApiSender, live: Live) -> Router {
    let console = Console {
        session_cookie: format!("aiguillage_session_{member}").into(),
        sign_in_cookie: format!("aiguillage_sign_in_{member}").into(),
        access,
        calls,
        live,
        sessions: Default::default(),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(overview))
        .route("/console/sign-in", get(sign_in_form).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/events", get(events))
        .route("/console/assets/{name}", get(asset))
        .route("/console/{page}", get(page).post(action))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(console)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: with it a browser sends `Origin: null` on the console's own forms.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// The files the pages use, built into the binary.
async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match name.as_str() {
        "htmx.min.js" => (
            include_bytes!("assets/htmx.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "htmx-sse.min.js" => (
            include_bytes!("assets/htmx-sse.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "console.js" => (
            include_bytes!("assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "console.css" => (
            include_bytes!("assets/console.css"),
            "text/css; charset=utf-8",
        ),
        "europe.svg" => (include_bytes!("assets/europe.svg"), "image/svg+xml"),
        "icon.svg" => (include_bytes!("assets/icon.svg"), "image/svg+xml"),
        "LICENSE-htmx" => (
            include_bytes!("assets/LICENSE-htmx"),
            "text/plain; charset=utf-8",
        ),
        "LICENSE-map" => (
            include_bytes!("assets/LICENSE-map"),
            "text/plain; charset=utf-8",
        ),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// A `Set-Cookie` value for the console's path, ending after `max_age` seconds.
fn set_cookie(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

async fn sign_in_form(State(c): S) -> Response {
    let nonce = random_hex();
    let set = set_cookie(&c.sign_in_cookie, &nonce, 600);
    (
        [(header::SET_COOKIE, set)],
        Page::Html(StatusCode::OK, pages::sign_in(&nonce, None)),
    )
        .into_response()
}

async fn sign_in(State(c): S, headers: HeaderMap, body: Bytes) -> Response {
    let nonce = random_hex();
    let again = |status: StatusCode, message: &str| {
        let set = set_cookie(&c.sign_in_cookie, &nonce, 600);
        (
            status,
            [(header::SET_COOKIE, set)],
            Page::Html(status, pages::sign_in(&nonce, Some(message))),
        )
            .into_response()
    };
    // Nothing of a post without the form's own cookie is read.
    let expected = cookie(&headers, &c.sign_in_cookie);
    let form = match expected.map(|_| forms::Form::parse(&body)) {
        Some(Ok(form)) => form,
        _ => forms::Form::empty(),
    };
    if expected.is_none() || expected != form.one("csrf") {
        return again(
            StatusCode::FORBIDDEN,
            "The sign-in form had expired or did not come from this node; try again.",
        );
    }
    if let Err(e) = form.only(&["token"]) {
        return again(StatusCode::BAD_REQUEST, &e.message);
    }
    let token = form.one("token").unwrap_or("").trim().to_owned();
    if c.access.caller(&token).is_none() {
        return again(StatusCode::UNAUTHORIZED, "Wrong token.");
    }
    let id = c.open_session(token, cookie(&headers, &c.session_cookie));
    let set = set_cookie(&c.session_cookie, &id, SESSION_HOURS * 3600);
    let clear = set_cookie(&c.sign_in_cookie, "", 0);
    let mut r = Redirect::to("/console").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, HeaderValue::from_str(&set).unwrap());
    r.headers_mut()
        .append(header::SET_COOKIE, HeaderValue::from_str(&clear).unwrap());
    r
}

async fn sign_out(State(c): S, headers: HeaderMap, body: Bytes) -> Response {
    let Some(user) = c.user(&headers) else {
        return Page::SignIn.into_response();
    };
    match checked_post(&user, &headers, &body).map(|f| f.only(&[])) {
        Err(refused) => return refused.into_response(),
        Ok(Err(e)) => return Page::from((Some(&user), e)).into_response(),
        Ok(Ok(())) => {}
    }
    if let Some(id) = cookie(&headers, &c.session_cookie) {
        c.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
    let clear = set_cookie(&c.session_cookie, "", 0);
    (
        [(header::SET_COOKIE, clear)],
        Redirect::to("/console/sign-in"),
    )
        .into_response()
}

/// A signed-in user's post, read once it came from one of this node's own pages: the
/// session's CSRF token, and no other origin named by the browser.
fn checked_post(user: &User, headers: &HeaderMap, body: &[u8]) -> Result<forms::Form, Page> {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if origin != format!("http://{host}") && origin != format!("https://{host}") {
            return Err(Page::Html(
                StatusCode::FORBIDDEN,
                pages::error(
                    Some(user),
                    StatusCode::FORBIDDEN,
                    &format!("A page of {origin} may not post to this node's console."),
                ),
            ));
        }
    }
    let form = forms::Form::parse(body).map_err(|e| Page::from((Some(user), e)))?;
    if form.one("csrf") != Some(user.csrf.as_str()) {
        return Err(csrf_refused(user));
    }
    Ok(form)
}

fn csrf_refused(user: &User) -> Page {
    Page::Html(
        StatusCode::FORBIDDEN,
        pages::error(
            Some(user),
            StatusCode::FORBIDDEN,
            "This form's CSRF token is missing or stale: nothing was done. Reload the page \
             and send it again.",
        ),
    )
}

async fn overview(State(c): S, headers: HeaderMap) -> Page {
    let Some(user) = c.user(&headers) else {
        return Page::SignIn;
    };
    render(&c, &user, "overview", &Query(Default::default())).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    id: Option<String>,
    direction: Option<String>,
    state: Option<String>,
    sort: Option<String>,
    /// Only the live part of the page, for htmx.
    #[serde(default)]
    part: bool,
}

async fn page(
    State(c): S,
    headers: HeaderMap,
    Path(name): Path<String>,
    q: Query<PageQuery>,
) -> Response {
    let Some(user) = c.user(&headers) else {
        // htmx refreshing a live part: send the whole window to sign-in, not the part.
        if headers.contains_key("hx-request") {
            return (
                StatusCode::UNAUTHORIZED,
                [("hx-redirect", "/console/sign-in")],
                "signed out",
            )
                .into_response();
        }
        return Page::SignIn.into_response();
    };
    if let Some(table) = name.strip_suffix(".csv") {
        return match pages::csv(&c, &user, table).await {
            Ok((file, body)) => (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{file}\""),
                    ),
                ],
                body,
            )
                .into_response(),
            Err(e) => Page::from((Some(&user), e)).into_response(),
        };
    }
    render(&c, &user, &name, &q).await.into_response()
}

async fn render(c: &Console, user: &User, name: &str, q: &PageQuery) -> Page {
    match pages::render(c, user, name, q).await {
        Ok(markup) => Page::Html(StatusCode::OK, markup),
        Err(e) => Page::from((Some(user), e)),
    }
}

/// Every form post: the CSRF token first, then the action, then back to a page.
async fn action(
    State(c): S,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(user) = c.user(&headers) else {
        return Page::SignIn.into_response();
    };
    let form = match checked_post(&user, &headers, &body) {
        Ok(form) => form,
        Err(refused) => return refused.into_response(),
    };
    match forms::act(&c, &user, &name, &form).await {
        Ok(forms::Done::Redirect(to)) => Page::Redirect(to).into_response(),
        Ok(forms::Done::Page(markup)) => Page::Html(StatusCode::OK, markup).into_response(),
        Ok(forms::Done::Part(status, markup)) => Page::Html(status, markup).into_response(),
        Ok(forms::Done::Refused(status, markup)) => Page::Html(status, markup).into_response(),
        Err(e) => Page::from((Some(&user), e)).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// For a stream opened anew after a lost one: the last event seen.
    last: Option<u64>,
}

/// `GET /console/events`: server-sent events, one per change, resumable with
/// `Last-Event-ID`.
async fn events(State(c): S, headers: HeaderMap, q: Query<EventsQuery>) -> Response {
    let Some(user) = c.user(&headers) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.last);
    let cursor = resume.unwrap_or_else(|| c.live.newest());
    let rx = c.live.subscribe();
    let session = cookie(&headers, &c.session_cookie).map(str::to_owned);
    drop(user);
    let state = (c, rx, cursor, std::collections::VecDeque::new(), session);
    let stream = futures::stream::unfold(
        state,
        |(c, mut rx, mut cursor, mut pending, session)| async move {
            loop {
                if let Some(e) = pending.pop_front() {
                    let e: live::LiveEvent = e;
                    let event = Event::default()
                        .id(e.id.to_string())
                        .event(e.topic)
                        .json_data(&e)
                        .ok()?;
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (c, rx, cursor, pending, session),
                    ));
                }
                let fresh = c.live.after(cursor);
                if let Some(last) = fresh.last() {
                    cursor = last.id;
                    pending.extend(fresh);
                    continue;
                }
                // Woken by a change, or every 15 s to look at the session again.
                if let Ok(changed) =
                    tokio::time::timeout(Duration::from_secs(15), rx.changed()).await
                {
                    changed.ok()?;
                }
                // A session that ended (sign-out, expiry, token removed) ends its stream.
                let mut h = HeaderMap::new();
                if let Some(s) = &session {
                    h.insert(
                        header::COOKIE,
                        HeaderValue::from_str(&format!("{}={s}", c.session_cookie)).ok()?,
                    );
                }
                c.user(&h)?;
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
