//! The console's pages, rendered from the answers of the calls the admin API makes. What a
//! user may not do is not offered: the buttons follow the role, and the node refuses a
//! forged request all the same.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use aiguillage_wire::{CompanySize, Sector, Service};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use super::forms::Form;
use super::{Console, PageQuery, User};
use crate::access::Role;
use crate::api::{ApiCall, ApiError, DECLINE_REASONS, MAX_AUDIT_ROWS};
use crate::cli::table::{id_order, local_time_of};
use crate::clock;

/// Percent-encoding for a query value (ids hold `/`).
pub fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => a.iter().map(text).collect::<Vec<_>>().join(", "),
        _ => "-".into(),
    }
}

/// A time as `<time>`: the node's local time, machine-readable too.
fn when(v: &Value) -> Markup {
    html! { time datetime=(v.as_u64().unwrap_or(0)) { (local_time_of(v)) } }
}

/// A duration in words: `3 h 12 min`, `40 s`.
fn span_ms(ms: i64) -> String {
    let s = ms.unsigned_abs() / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

/// A countdown to `deadline` (ms), kept ticking by the page's script.
fn countdown(deadline: &Value) -> Markup {
    let now = clock::now().millis() as i64;
    let ms = deadline.as_i64().unwrap_or(now) - now;
    let words = if ms > 0 {
        format!("in {}", span_ms(ms))
    } else {
        format!("{} ago", span_ms(ms))
    };
    html! { span.countdown data-deadline=(deadline.as_i64().unwrap_or(0)) { (words) } }
}

fn state_badge(state: &str) -> Markup {
    let class = match state {
        "accepted" | "handed_over" | "in_progress" | "completed" | "succeeded" | "done" => "ok",
        "declined" | "exhausted" | "withdrawn" | "expired" | "failed" | "abandoned"
        | "cancelled" | "timed_out" | "lost" => "bad",
        "awaiting_decision" | "offered" | "queued" | "placing" => "wait",
        _ => "info",
    };
    html! { span class={"badge " (class)} { (state.replace('_', " ")) } }
}

const PAGES: &[(&str, &str, &str)] = &[
    ("overview", "/console", "Overview"),
    ("federation", "/console/federation", "Federation"),
    ("inbox", "/console/inbox", "Inbox"),
    ("new", "/console/new", "New project"),
    ("referrals", "/console/referrals", "Referrals"),
    ("jobs", "/console/jobs", "Jobs"),
    ("kpi", "/console/kpi", "KPIs and ledger"),
    ("audit", "/console/audit", "Audit"),
];

/// The frame of every page. `live` is the page's own address: the part in `#live` is
/// fetched again from it when the node says something changed.
fn layout(
    user: Option<&User>,
    current: &str,
    title: &str,
    live: Option<&str>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"historyCacheSize":0}"#;
                title { (title) " · Aiguillage" }
                link rel="stylesheet" href="/console/assets/console.css";
                link rel="icon" type="image/svg+xml" href="/console/assets/icon.svg";
                @if user.is_some() {
                    script src="/console/assets/htmx.min.js" defer {}
                    script src="/console/assets/console.js" defer {}
                    script src="/console/assets/htmx-sse.min.js" defer {}
                }
            }
            @if let Some(u) = user {
                // Only a page with a live part holds a stream (a browser has few
                // connections to one host).
                body hx-ext="sse" sse-connect=[live.map(|_| format!("/console/events?last={}", u.since))] {
                    header.top {
                        a.brand href="/console" { "Aiguillage" }
                        nav {
                            @for (name, href, label) in PAGES {
                                a href=(href) aria-current=[(*name == current).then_some("page")] { (label) }
                            }
                        }
                        form.who method="post" action="/console/sign-out" {
                            span { (u.caller.name) " · " (u.caller.role.tag()) }
                            input type="hidden" name="csrf" value=(u.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                    main {
                        h1 { (title) }
                        @match live {
                            Some(url) => {
                                div #live hx-get=(part_url(url)) hx-trigger=(triggers(current)) hx-swap="innerHTML" hx-sync="this:queue last" { (body) }
                            }
                            None => { (body) }
                        }
                    }
                    footer { "Aiguillage " (env!("CARGO_PKG_VERSION")) " · map from Natural Earth (" a href="/console/assets/LICENSE-map" { "licence" } ") · htmx (" a href="/console/assets/LICENSE-htmx" { "licence" } ")" }
                }
            } @else {
                body.plain {
                    main { (body) }
                }
            }
        }
    }
}

/// The events that refresh a page's live part.
fn triggers(page: &str) -> String {
    let topics: &[&str] = match page {
        "federation" => &["member", "referral", "job", "peers"],
        "inbox" | "referrals" | "referral" | "project" => &["referral", "project"],
        "jobs" | "job" => &["job"],
        "kpi" => &["referral", "project", "job", "ledger"],
        _ => &["referral", "project", "job", "member", "ledger", "peers"],
    };
    // No throttle: a burst of events runs one refresh and, queued behind it, one more,
    // so that the last change is always shown.
    topics
        .iter()
        .chain(&["reset"])
        .map(|t| format!("sse:{t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn part_url(url: &str) -> String {
    if url.contains('?') {
        format!("{url}&part=true")
    } else {
        format!("{url}?part=true")
    }
}

pub fn sign_in(nonce: &str, message: Option<&str>) -> Markup {
    layout(
        None,
        "",
        "Sign in",
        None,
        html! {
            h1 { "Aiguillage console" }
            p { "Sign in with your token: the operator's is in the node's data folder (" code { "admin.token" } "); an adviser's is made with " code { "aiguillage token add" } "." }
            @if let Some(m) = message { p.error role="alert" { (m) } }
            form method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(nonce);
                label { "Token " input type="password" name="token" autocomplete="current-password" required autofocus; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub fn error(user: Option<&User>, status: axum::http::StatusCode, message: &str) -> Markup {
    layout(
        user,
        "",
        &format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ),
        None,
        html! {
            p.error role="alert" { (message) }
            p { a href="/console" { "Back to the overview" } }
        },
    )
}

/// A page by name, whole or (with `part`) only its live part.
pub async fn render(
    c: &Console,
    user: &User,
    name: &str,
    q: &PageQuery,
) -> Result<Markup, ApiError> {
    check_query(name, q)?;
    let (title, url, body) = match name {
        "overview" => ("Overview", "/console".to_owned(), overview(c, user).await?),
        "federation" => (
            "Federation",
            "/console/federation".into(),
            federation(c, user).await?,
        ),
        "inbox" => ("Inbox", "/console/inbox".into(), inbox(c, user).await?),
        "new" => return new_project(c, user, None, None, None).await,
        "referrals" => {
            let url = format!(
                "/console/referrals?direction={}&state={}&sort={}",
                url_encode(q.direction.as_deref().unwrap_or("")),
                url_encode(q.state.as_deref().unwrap_or("")),
                url_encode(q.sort.as_deref().unwrap_or(""))
            );
            ("Referrals", url, referrals(c, user, q).await?)
        }
        "referral" => {
            let id = q.id.as_deref().unwrap_or("");
            let url = format!("/console/referral?id={}", url_encode(id));
            ("Referral", url, referral(c, user, id).await?)
        }
        "project" => {
            let id = q.id.as_deref().unwrap_or("");
            let url = format!("/console/project?id={}", url_encode(id));
            ("Project", url, project(c, user, id).await?)
        }
        "jobs" => ("Jobs", "/console/jobs".into(), jobs(c, user).await?),
        "job" => {
            let id = q.id.as_deref().unwrap_or("");
            let url = format!("/console/job?id={}", url_encode(id));
            ("Job", url, job(c, user, id).await?)
        }
        "kpi" => (
            "KPIs and ledger",
            "/console/kpi".into(),
            kpi(c, user).await?,
        ),
        // The audit page checks the whole chain: it is not refreshed on every change.
        "audit" => {
            return Ok(layout(
                Some(user),
                "audit",
                "Audit",
                None,
                audit(c, user).await?,
            ));
        }
        other => {
            return Err(ApiError::not_found(format!(
                "the console has no page {other:?}"
            )));
        }
    };
    if q.part {
        return Ok(body);
    }
    let current = match name {
        "referral" | "project" => "referrals",
        "job" => "jobs",
        n => n,
    };
    Ok(layout(Some(user), current, title, Some(&url), body))
}

const DIRECTIONS: [&str; 3] = ["", "out", "in"];
const REFERRAL_STATES: [&str; 12] = [
    "",
    "offered",
    "awaiting_decision",
    "accepted",
    "handed_over",
    "in_progress",
    "completed",
    "declined",
    "exhausted",
    "withdrawn",
    "expired",
    "abandoned",
];
const SORTS: [&str; 3] = ["", "sector", "state"];

/// Refuses a query the page does not read, or a value it does not know: a filter that
/// is ignored would show what was not asked for.
fn check_query(page: &str, q: &PageQuery) -> Result<(), ApiError> {
    let filters = page == "referrals";
    let given = [
        (
            "id",
            q.id.is_some(),
            matches!(page, "referral" | "project" | "job"),
        ),
        ("direction", q.direction.is_some(), filters),
        ("state", q.state.is_some(), filters),
        ("sort", q.sort.is_some(), filters),
    ];
    // Only a page with a live part has a part to give.
    if q.part && matches!(page, "new" | "audit") {
        return Err(ApiError::bad_request(format!(
            "the page {page} has no live part"
        )));
    }
    if let Some((field, _, _)) = given.iter().find(|(_, there, read)| *there && !read) {
        return Err(ApiError::bad_request(format!(
            "the page {page} takes no {field}"
        )));
    }
    for (field, value, known) in [
        ("direction", &q.direction, &DIRECTIONS[..]),
        ("state", &q.state, &REFERRAL_STATES[..]),
        ("sort", &q.sort, &SORTS[..]),
    ] {
        if let Some(v) = value
            && !known.contains(&v.as_str())
        {
            return Err(ApiError::invalid(format!(
                "{field}: {v:?} is not one of {}",
                known[1..].join(", ")
            )));
        }
    }
    Ok(())
}

async fn overview(c: &Console, user: &User) -> Result<Markup, ApiError> {
    let s = c.ask(user, ApiCall::Status).await?;
    let now = clock::now().millis() as i64;
    let uptime = now - s["started_at"].as_i64().unwrap_or(now);
    let rostered = s["roster_members"].as_u64().unwrap_or(0).saturating_sub(1);
    let offset = s["clock_offset_s"].as_f64();
    let key = s["public_key"].as_str().unwrap_or("");
    let fingerprint: Vec<&str> = (0..key.len().min(32))
        .step_by(4)
        .filter_map(|i| key.get(i..i + 4))
        .collect();
    let pending = s["decisions_pending"].as_u64().unwrap_or(0);
    let expires = s["roster_expires_at"].as_i64();
    Ok(html! {
        @if pending > 0 {
            p.notice { a href="/console/inbox" { (pending) " referral" @if pending != 1 { "s" } " await" @if pending == 1 { "s" } " a decision" } }
        }
        @if let Some(o) = offset && o.abs() > 10.0 {
            p.error role="alert" { "This node's clock is " (format!("{o:+.1}")) " s off the members' median: messages it signs may be refused." }
        }
        @for off in s["clocks_off"].as_array().into_iter().flatten() {
            p.warn { (text(&off["member"])) "'s clock is " (format!("{:+.1}", off["ahead_s"].as_f64().unwrap_or(0.0))) " s from this one." }
        }
        dl.facts {
            dt { "Member" } dd #member { (text(&s["member"])) }
            dt { "Peer id" } dd { code { (text(&s["peer_id"])) } }
            dt { "Key fingerprint" } dd { code title=(key) { (fingerprint.join(" ")) } }
            dt { "Roster" } dd {
                "serial " (text(&s["roster_serial"])) ", " (text(&s["roster_members"])) " members"
                @if let Some(e) = expires {
                    ", expires " (when(&Value::from(e)))
                    @if e - now < 7 * 86_400_000 { " " span.badge.bad { "soon" } }
                }
            }
            dt { "Peers connected" } dd #peers { (text(&s["peers_connected"])) " of " (rostered) " rostered" }
            dt { "Clock" } dd {
                @match offset {
                    Some(o) => { (format!("{o:+.1}")) " s from the median of " (text(&s["clock_members"])) " members" }
                    None => { "no member heard yet" }
                }
            }
            dt { "Version" } dd { (text(&s["version"])) }
            dt { "Up for" } dd { (span_ms(uptime)) }
            dt { "GPUs free" } dd { (text(&s["gpus_free"])) " of " (text(&s["gpus_total"])) }
            dt { "Decisions pending" } dd #pending { (pending) }
            dt { "Projects · referrals out · in" } dd { (text(&s["projects"])) " · " (text(&s["referrals_out"])) " · " (text(&s["referrals_in"])) }
            dt { "Jobs submitted · hosted" } dd { (text(&s["jobs"])) " · " (text(&s["jobs_hosted"])) }
        }
        @if let Some(missing) = s["peers_not_connected"].as_array() && !missing.is_empty() {
            h2 { "Not connected" }
            table {
                thead { tr { th { "member" } th { "failed dials" } th { "last error" } } }
                tbody {
                    @for m in missing {
                        tr { td { (text(&m["member"])) } td { (text(&m["failed_dials"])) } td { (text(&m["last_error"])) } }
                    }
                }
            }
        }
    })
}

/// The map's size and each member country's point on it.
struct MapPoints {
    width: f64,
    height: f64,
    countries: BTreeMap<String, (f64, f64)>,
}

/// Where each member country is drawn (scripts/gen-map.py computes the points).
fn map_points() -> &'static MapPoints {
    static POINTS: std::sync::OnceLock<MapPoints> = std::sync::OnceLock::new();
    POINTS.get_or_init(|| {
        let v: Value = serde_json::from_str(include_str!("assets/map-points.json"))
            .expect("map-points.json is valid JSON");
        let mut countries = BTreeMap::new();
        for (code, p) in v["countries"].as_object().into_iter().flatten() {
            countries.insert(
                code.clone(),
                (p[0].as_f64().unwrap_or(0.0), p[1].as_f64().unwrap_or(0.0)),
            );
        }
        MapPoints {
            width: v["width"].as_f64().unwrap_or(1000.0),
            height: v["height"].as_f64().unwrap_or(900.0),
            countries,
        }
    })
}

/// Each member at its country's point, spread around it when several share one.
fn positions(members: &[(String, String)]) -> BTreeMap<String, (f64, f64)> {
    let points = &map_points().countries;
    let mut by_country: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (m, country) in members {
        by_country.entry(country).or_default().push(m);
    }
    let mut out = BTreeMap::new();
    for (country, ms) in by_country {
        let Some(&(x, y)) = points.get(country) else {
            continue;
        };
        let n = ms.len();
        for (i, m) in ms.into_iter().enumerate() {
            let (dx, dy) = if n == 1 {
                (0.0, 0.0)
            } else {
                let a = i as f64 * std::f64::consts::TAU / n as f64;
                (16.0 * a.cos(), 16.0 * a.sin())
            };
            out.insert(m.to_owned(), (x + dx, y + dy));
        }
    }
    out
}

/// This member's advert in the shape of a directory row.
fn own_row(a: &Value) -> Value {
    let level = |want: &str| -> Vec<Value> {
        a["sectors"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, l)| *l == want)
            .map(|(s, _)| Value::from(s.as_str()))
            .collect()
    };
    let titles: Vec<Value> = a["datasets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["title"].clone())
        .collect();
    serde_json::json!({
        "member": a["member"], "name": a["name"], "role": a["role"], "country": a["country"],
        "priority": level("priority"), "accepted": level("accepted"), "excluded": level("excluded"),
        "other_sectors": a["other_sectors"], "services": a["services"], "languages": a["languages"],
        "datasets": titles, "gpus_total": a["gpu"]["total"], "gpus_free": a["gpu"]["free"],
        "issued_at": clock::now().millis(), "own": true,
    })
}

async fn federation(c: &Console, user: &User) -> Result<Markup, ApiError> {
    let status = c.ask(user, ApiCall::Status).await?;
    let dir = c.ask(user, ApiCall::Directory).await?;
    let referrals = c.ask(user, ApiCall::Referrals).await?;
    let jobs = c.ask(user, ApiCall::Jobs).await?;
    let me = text(&status["member"]);
    let mut rows = vec![own_row(&c.ask(user, ApiCall::OwnAdvert).await?)];
    rows.extend(dir.as_array().cloned().unwrap_or_default());
    let members: Vec<(String, String)> = rows
        .iter()
        .map(|r| (text(&r["member"]), text(&r["country"])))
        .collect();
    let at = positions(&members);
    let (w, h) = (map_points().width, map_points().height);
    let now = clock::now().millis() as i64;
    // Open flows between this member and others: referrals and federated jobs.
    let mut arcs: Vec<(String, String, &str)> = Vec::new();
    for r in referrals.as_array().into_iter().flatten() {
        if r["open"].as_bool() != Some(true) {
            continue;
        }
        let (from, to) = if r["direction"] == "out" {
            (me.clone(), text(&r["target"]))
        } else {
            (text(&r["origin"]), me.clone())
        };
        arcs.push((from, to, "referral"));
    }
    for j in jobs.as_array().into_iter().flatten() {
        if j["open"].as_bool() != Some(true) {
            continue;
        }
        match j["direction"].as_str() {
            Some("submitted") if !j["host"].is_null() => {
                arcs.push((me.clone(), text(&j["host"]), "job"))
            }
            Some("hosted") => arcs.push((text(&j["origin"]), me.clone(), "job")),
            _ => {}
        }
    }
    let mut svg = String::new();
    for (from, to, kind) in &arcs {
        if let (Some(a), Some(b)) = (at.get(from), at.get(to)) {
            let (mx, my) = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0 - 40.0);
            let _ = write!(
                svg,
                r#"<path class="arc {kind}" d="M{:.0},{:.0} Q{mx:.0},{my:.0} {:.0},{:.0}"><title>{kind}: {from} → {to}</title></path>"#,
                a.0, a.1, b.0, b.1
            );
        }
    }
    for r in &rows {
        let m = text(&r["member"]);
        let Some((x, y)) = at.get(&m) else { continue };
        let age = now - r["issued_at"].as_i64().unwrap_or(0);
        let fresh = if age < 60_000 {
            "fresh"
        } else if age < 120_000 {
            "aging"
        } else {
            "stale"
        };
        let me_class = if m == me { " me" } else { "" };
        let _ = write!(
            svg,
            r##"<a href="#{m}"><circle class="site {fresh}{me_class}" cx="{x:.0}" cy="{y:.0}" r="7"><title>{m}: advert signed {} ago</title></circle></a>"##,
            span_ms(age)
        );
    }
    Ok(html! {
        div.mapbox {
            svg.map viewBox={"0 0 " (w) " " (h)} role="img" aria-label="Members on a map of Europe" {
                image href="/console/assets/europe.svg" width=(w) height=(h) {}
                (PreEscaped(svg))
            }
            p.legend {
                span.dot.fresh {} " advert under a minute old " span.dot.aging {} " under two " span.dot.stale {} " older · "
                span.line.referral {} " open referral " span.line.job {} " federated job · members are drawn at their country, not their site"
            }
        }
        div.cards {
            @for r in &rows {
                @let m = text(&r["member"]);
                section.card id=(m) {
                    h3 { (text(&r["name"])) " " small { (m) " · " (text(&r["role"])) " · " (text(&r["country"])) } }
                    dl {
                        dt { "Priority" } dd { (list(&r["priority"])) }
                        dt { "Accepted" } dd { (list(&r["accepted"])) }
                        dt { "Excluded" } dd { (list(&r["excluded"])) }
                        dt { "Services" } dd { (list(&r["services"])) }
                        dt { "Languages" } dd { (list(&r["languages"])) }
                        dt { "Datasets" } dd { (list(&r["datasets"])) }
                        dt { "GPUs free" } dd { (text(&r["gpus_free"])) " of " (text(&r["gpus_total"])) }
                        dt { "Other sectors" } dd { (text(&r["other_sectors"])) }
                        @if r["own"] == true { dt { "Advert" } dd { "this member's, as it publishes it now" } }
                        @else { dt { "Advert signed" } dd { (when(&r["issued_at"])) } }
                    }
                }
            }
        }
    })
}

fn card_facts(card: &Value) -> Markup {
    let consent = &card["consent"];
    let scope = if consent["whole_federation"] == true {
        "the whole federation".to_owned()
    } else {
        format!(
            "members {} · countries {}",
            list(&consent["members"]),
            list(&consent["countries"])
        )
    };
    html! {
        dl.facts {
            dt { "Sector" } dd { (text(&card["sector"])) @if card["secondary_sectors"].as_array().is_some_and(|a| !a.is_empty()) { " (also " (list(&card["secondary_sectors"])) ")" } }
            dt { "Company" } dd { (text(&card["company_size"])) ", " (text(&card["country"])) }
            dt { "Stage" } dd { (text(&card["stage"])) }
            dt { "Services needed" } dd { (list(&card["services_needed"])) }
            dt { "GPU-hours" } dd { (text(&card["gpu_hours"])) }
            dt { "Languages" } dd { (list(&card["languages"])) }
            dt { "Datasets wanted" } dd { (list(&card["datasets_wanted"])) }
            dt { "Consent" } dd { (scope) }
        }
    }
}

fn decide_form(user: &User, id: &str) -> Markup {
    html! {
        div.decide {
            form method="post" action="/console/decide" {
                input type="hidden" name="csrf" value=(user.csrf);
                input type="hidden" name="id" value=(id);
                input type="hidden" name="decision" value="accept";
                button.accept type="submit" { "Accept" }
            }
            form method="post" action="/console/decide" {
                input type="hidden" name="csrf" value=(user.csrf);
                input type="hidden" name="id" value=(id);
                input type="hidden" name="decision" value="decline";
                select name="reason" aria-label="reason" {
                    @for r in DECLINE_REASONS { option value=(r.tag()) { (r.tag().replace('_', " ")) } }
                }
                input type="text" name="note" placeholder="note for the referring member" maxlength="1000";
                button.decline type="submit" { "Decline" }
            }
        }
    }
}

fn dossier(d: &Value) -> Markup {
    html! {
        section.dossier {
            h3 { "Dossier" }
            dl.facts {
                dt { "Company" } dd { (text(&d["company"])) }
                dt { "Contact" } dd { (text(&d["contact_name"])) " · " (text(&d["contact_email"])) }
                dt { "Summary" } dd { (text(&d["summary"])) }
            }
        }
    }
}

async fn inbox(c: &Console, user: &User) -> Result<Markup, ApiError> {
    let mut all: Vec<Value> = match c.ask(user, ApiCall::Inbox).await? {
        Value::Array(rows) => rows,
        _ => Vec::new(),
    };
    all.sort_by(|a, b| {
        id_order(&text(&b["referral"]["id"])).cmp(&id_order(&text(&a["referral"]["id"])))
    });
    let (waiting, rest): (Vec<&Value>, Vec<&Value>) = all
        .iter()
        .partition(|v| v["referral"]["state"]["state"] == "awaiting_decision");
    let may_decide = user.caller.role >= Role::Adviser;
    Ok(html! {
        @if waiting.is_empty() { p.empty { "Nothing awaits a decision." } }
        @for v in &waiting {
            @let r = &v["referral"];
            @let id = text(&r["id"]);
            article.offer data-referral=(id) {
                h2 { a href={"/console/referral?id=" (url_encode(&id))} { (id) } " from " (text(&r["origin"])) " · decide " (countdown(&r["state"]["decide_by"])) }
                (card_facts(&r["card"]))
                @if may_decide { (decide_form(user, &id)) } @else { p.note { "Viewers cannot decide." } }
            }
        }
        @if !rest.is_empty() {
            h2 { "Decided" }
            table {
                thead { tr { th { "referral" } th { "from" } th { "sector" } th { "state" } th { "received" } } }
                tbody {
                    @for v in &rest {
                        @let r = &v["referral"];
                        @let id = text(&r["id"]);
                        tr {
                            td { a href={"/console/referral?id=" (url_encode(&id))} { (id) } }
                            td { (text(&r["origin"])) } td { (text(&r["card"]["sector"])) }
                            td { (state_badge(r["state"]["state"].as_str().unwrap_or("?"))) }
                            td { (when(&r["received_at"])) }
                        }
                    }
                }
            }
        }
    })
}

async fn referrals(c: &Console, user: &User, q: &PageQuery) -> Result<Markup, ApiError> {
    let rows = c.ask(user, ApiCall::Referrals).await?;
    let direction = q.direction.as_deref().unwrap_or("");
    let state = q.state.as_deref().unwrap_or("");
    let mut rows: Vec<&Value> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| direction.is_empty() || r["direction"] == direction)
        .filter(|r| state.is_empty() || r["state"] == state)
        .collect();
    match q.sort.as_deref().unwrap_or("") {
        "sector" => rows.sort_by_key(|r| text(&r["sector"])),
        "state" => rows.sort_by_key(|r| text(&r["state"])),
        _ => rows.sort_by_key(|r| std::cmp::Reverse(id_order(&text(&r["referral"])))),
    }
    let states = REFERRAL_STATES;
    Ok(html! {
        form.filters method="get" action="/console/referrals" {
            label { "Direction " select name="direction" {
                @for (v, l) in [("", "both"), ("out", "out"), ("in", "in")] { option value=(v) selected[v == direction] { (l) } }
            } }
            label { "State " select name="state" {
                @for v in states { option value=(v) selected[v == state] { @if v.is_empty() { "any" } @else { (v.replace('_', " ")) } } }
            } }
            label { "Sort by " select name="sort" {
                @for (v, l) in [("", "newest"), ("sector", "sector"), ("state", "state")] { option value=(v) selected[q.sort.as_deref().unwrap_or("") == v] { (l) } }
            } }
            button type="submit" { "Show" }
        }
        @if rows.is_empty() { p.empty { "No referral matches." } } @else {
            table {
                thead { tr { th { "referral" } th { "direction" } th { "with" } th { "sector" } th { "state" } } }
                tbody {
                    @for r in &rows {
                        @let id = text(&r["referral"]);
                        tr {
                            td { a href={"/console/referral?id=" (url_encode(&id))} { (id) } }
                            td { (text(&r["direction"])) }
                            td { @if r["direction"] == "out" { (text(&r["target"])) } @else { (text(&r["origin"])) } }
                            td { (text(&r["sector"])) }
                            td { (state_badge(r["state"].as_str().unwrap_or("?"))) }
                        }
                    }
                }
            }
        }
        p { "Download: " a href="/console/referrals.csv" { "referrals.csv" } }
    })
}

fn timeline(history: &Value) -> Markup {
    html! {
        ol.timeline {
            @for h in history.as_array().into_iter().flatten() {
                li data-state=(text(&h["state"])) { (when(&h["at"])) " " (state_badge(h["state"].as_str().unwrap_or("?"))) " " (text(&h["detail"])) }
            }
        }
    }
}

fn explanation(e: &Value) -> Markup {
    html! {
        section.why {
            h3 { "Why: " (text(&e["outcome"])) }
            @if let Some(t) = e["text"].as_str() { p { (t) } }
            table {
                thead { tr { th { "rank" } th { "member" } th { "score" } @for t in e["local"]["terms"].as_array().into_iter().flatten() { th { (text(&t["term"])) } } } }
                tbody {
                    tr.local { td { "-" } td { "here" } td { (format!("{:.2}", e["local"]["total"].as_f64().unwrap_or(0.0))) }
                        @for t in e["local"]["terms"].as_array().into_iter().flatten() { td { (format!("{:.2}", t["contribution"].as_f64().unwrap_or(0.0))) } } }
                    @for r in e["ranked"].as_array().into_iter().flatten() {
                        tr { td { (text(&r["rank"])) } td { (text(&r["member"])) } td { (format!("{:.2}", r["score"]["total"].as_f64().unwrap_or(0.0))) }
                            @for t in r["score"]["terms"].as_array().into_iter().flatten() { td { (format!("{:.2}", t["contribution"].as_f64().unwrap_or(0.0))) } } }
                    }
                }
            }
            @if let Some(i) = e["ineligible"].as_array() && !i.is_empty() {
                p { "Not eligible: " @for (n, x) in i.iter().enumerate() { @if n > 0 { ", " } (text(&x["member"])) " (" (text(&x["rule"]).replace('_', " ")) @if let Some(sv) = x["service"].as_str() { ": " (sv) } ")" } }
            }
        }
    }
}

async fn referral(c: &Console, user: &User, id: &str) -> Result<Markup, ApiError> {
    let referral = crate::api::referral_id(id)?;
    let v = c.ask(user, ApiCall::Referral(referral)).await?;
    let r = &v["referral"];
    let outgoing = v["direction"] == "out";
    let state = if outgoing {
        text(&r["state"])
    } else {
        text(&r["state"]["state"])
    };
    let state = if outgoing && r["state"].is_object() {
        text(&r["state"]["state"])
    } else {
        state
    };
    let may_act = user.caller.role >= Role::Adviser;
    Ok(html! {
        p.lead #state data-state=(state) {
            (id) ": " (state_badge(&state)) " · "
            @if outgoing { "referred to " (list(&r["candidates"])) " in turn" } @else { "from " (text(&r["origin"])) }
        }
        (card_facts(&r["card"]))
        @if !outgoing && state == "awaiting_decision" {
            p { "Decide " (countdown(&r["state"]["decide_by"])) }
            @if may_act { (decide_form(user, id)) }
        }
        @if !r["dossier"].is_null() && (outgoing || matches!(state.as_str(), "handed_over" | "in_progress" | "completed" | "abandoned")) {
            (dossier(&r["dossier"]))
        }
        h2 { "Timeline" }
        (timeline(&r["history"]))
        @if outgoing {
            @if let Some(att) = r["attempts"].as_array() {
                h2 { "Offers" }
                table {
                    thead { tr { th { "attempt" } th { "to" } th { "offered" } th { "answered" } th { "outcome" } } }
                    tbody { @for a in att { tr { td { (text(&a["attempt"])) } td { (text(&a["target"])) } td { (when(&a["offered_at"])) } td { (when(&a["answered_at"])) }
                        td { (text(&a["outcome"]["outcome"])) @if let Some(reason) = a["outcome"]["reason"].as_str() { " (" (reason) ")" } @if let Some(d) = a["outcome"]["detail"].as_str() && !d.is_empty() { ": " (d) } } } } }
                }
            }
            @if v["explanation"].is_object() { (explanation(&v["explanation"])) }
            @if may_act && !matches!(state.as_str(), "completed" | "abandoned" | "withdrawn" | "exhausted") {
                form.inline method="post" action="/console/withdraw" {
                    input type="hidden" name="csrf" value=(user.csrf);
                    input type="hidden" name="id" value=(id);
                    input type="text" name="note" placeholder="why it is withdrawn";
                    button type="submit" { "Withdraw" }
                }
            }
        } @else if may_act && matches!(state.as_str(), "handed_over" | "in_progress") {
            h2 { "Record progress" }
            form.inline method="post" action="/console/progress" {
                input type="hidden" name="csrf" value=(user.csrf);
                input type="hidden" name="id" value=(id);
                select name="step" aria-label="step" { @for s in Service::ALL { option value=(s.tag()) { (s.tag().replace('_', " ")) } } }
                select name="state" aria-label="state" { @for s in ["in_progress", "completed", "abandoned"] { option value=(s) { (s.replace('_', " ")) } } }
                input type="text" name="note" placeholder="note";
                button type="submit" { "Record" }
            }
        }
    })
}

async fn project(c: &Console, user: &User, id: &str) -> Result<Markup, ApiError> {
    let project = crate::api::project_id(id)?;
    let v = c.ask(user, ApiCall::Project(project)).await?;
    let p = if v["project"].is_object() {
        &v["project"]
    } else {
        &v
    };
    Ok(html! {
        p.lead { (id) " filed " (when(&p["filed_at"])) }
        (card_facts(&p["card"]))
        @if p["explanation"].is_object() { (explanation(&p["explanation"])) }
        @if let Some(h) = p["journey"]["history"].as_array() { h2 { "Journey here" } (timeline(&Value::Array(h.clone()))) }
    })
}

fn options<T: Copy>(all: &[T], tag: fn(T) -> &'static str, chosen: &[String]) -> Markup {
    html! { @for s in all { @let t = tag(*s); option value=(t) selected[chosen.iter().any(|c| c == t)] { (t.replace('_', " ")) } } }
}

/// What routing would decide, for the new-project page.
pub fn preview(e: &Value) -> Markup {
    html! { h2 { "Routing preview (nothing filed)" } (explanation(e)) }
}

pub fn preview_refused(message: &str) -> Markup {
    html! { h2 { "Routing preview" } p.warn { "Not yet: " (message) } }
}

/// The new-project form, filled again from `form` after a preview, with the preview.
pub async fn new_project(
    c: &Console,
    user: &User,
    form: Option<&Form>,
    preview: Option<&Value>,
    refused: Option<&str>,
) -> Result<Markup, ApiError> {
    let status = c.ask(user, ApiCall::Status).await?;
    let f = |name: &str| form.and_then(|f| f.one(name)).unwrap_or("").to_owned();
    let many = |name: &str| -> Vec<String> { form.map(|f| f.all_of(name)).unwrap_or_default() };
    // No consent is chosen for the adviser: the client's has to be asked.
    let scope = f("consent_scope");
    let choice = match f("choice").as_str() {
        "" => "route".to_owned(),
        s => s.to_owned(),
    };
    let can_file = user.caller.role >= Role::Adviser;
    let body = html! {
        p { "A project card goes to the members it is offered to; the dossier goes only to the member that accepts, after it accepts. Filed at " (text(&status["member"])) "." }
        @if let Some(m) = refused { p.error #refused role="alert" { "Not filed: " (m) } }
        form.project method="post" action="/console/projects" hx-post="/console/preview" hx-trigger="change delay:300ms, keyup changed delay:600ms from:textarea" hx-target="#preview" hx-swap="innerHTML" {
            input type="hidden" name="csrf" value=(user.csrf);
            fieldset { legend { "The project" }
                label { "Sector " select name="sector" required { (options(Sector::ALL, Sector::tag, &[f("sector")])) } }
                label { "Also " select name="secondary_sectors" multiple size="4" { (options(Sector::ALL, Sector::tag, &many("secondary_sectors"))) } }
                label { "Country of the company " input type="text" name="country" required pattern="[A-Za-z]{2}" maxlength="2" size="3" value=(f("country")) placeholder="LU"; }
                label { "Company size " select name="company_size" { (options(CompanySize::ALL, CompanySize::tag, &[f("company_size")])) } }
                label { "Journey step now " select name="stage" { (options(Service::ALL, Service::tag, &[f("stage")])) } }
                fieldset.checks { legend { "Services needed" }
                    @for s in Service::ALL { label { input type="checkbox" name="services_needed" value=(s.tag()) checked[many("services_needed").iter().any(|x| x == s.tag())]; (s.tag().replace('_', " ")) } }
                }
                label { "GPU-hours " input type="number" name="gpu_hours" min="0" max="10000000" value=(f("gpu_hours")); }
                label { "Languages (comma-separated codes) " input type="text" name="languages" value=(f("languages")) placeholder="fr, en"; }
                label { "Datasets wanted (comma-separated) " input type="text" name="datasets_wanted" value=(f("datasets_wanted")); }
            }
            fieldset { legend { "The client's consent" }
                @for (v, l) in [("whole_federation", "to every member of the federation"), ("named", "only to the members or countries named below"), ("local_only", "to no other member: the project stays here")] {
                    label.choice { input type="radio" name="consent_scope" value=(v) required checked[scope == v]; (l) }
                }
                label { "Members " input type="text" name="consent_members" value=(f("consent_members")) placeholder="es-1healthai, de-jaif"; }
                label { "Countries " input type="text" name="consent_countries" value=(f("consent_countries")) placeholder="ES, DE"; }
            }
            fieldset { legend { "Dossier (sent only on acceptance)" }
                label { "Company " input type="text" name="company" required value=(f("company")); }
                label { "Contact name " input type="text" name="contact_name" required value=(f("contact_name")); }
                label { "Contact email " input type="email" name="contact_email" required value=(f("contact_email")); }
                label { "Summary " textarea name="summary" rows="4" required { (f("summary")) } }
            }
            fieldset { legend { "What to do" }
                @for (v, l) in [("route", "route it: keep it if it fits here, refer it if another member suits it better"), ("stay", "keep it here: the client chose to stay"), ("advise_against", "advise the company against it: not worth doing")] {
                    label.choice { input type="radio" name="choice" value=(v) checked[choice == v]; (l) }
                }
                label { "Reason (to stay or to advise against) " input type="text" name="reason" value=(f("reason")); }
            }
            // Filled in as the form changes (with JavaScript), or by the preview button.
            div #preview aria-live="polite" { @if let Some(e) = preview { (self::preview(e)) } }
            div.buttons {
                button type="submit" name="preview" value="1" { "Preview routing" }
                @if can_file { button.primary type="submit" { "File the project" } } @else { span.note { "Viewers may preview the routing but not file." } }
            }
        }
    };
    Ok(layout(Some(user), "new", "New project", None, body))
}

async fn jobs(c: &Console, user: &User) -> Result<Markup, ApiError> {
    let rows = c.ask(user, ApiCall::Jobs).await?;
    let mut rows: Vec<&Value> = rows.as_array().into_iter().flatten().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(id_order(&text(&r["job"]))));
    Ok(html! {
        @if user.caller.role >= Role::Operator {
            details.submit {
                summary { "Submit a job" }
                form.project method="post" action="/console/jobs" {
                    input type="hidden" name="csrf" value=(user.csrf);
                    fieldset {
                        label { "GPUs " input type="number" name="gpus" min="1" value="1" required; }
                        label { "Time limit (s) " input type="number" name="time_limit_s" min="1" value="3600" required; }
                        label { "Start within (s) " input type="number" name="start_within_s" min="1" value="3600"; }
                        label { "Data may be processed in (countries, comma-separated; empty: any) " input type="text" name="residency"; }
                        label { "Priority (0-255) " input type="number" name="priority" min="0" max="255" value="0"; }
                        label { "Command, one argument per line " textarea name="command" rows="3" required {} }
                        label { "Environment, one NAME=value per line " textarea name="env" rows="2" {} }
                    }
                    div.buttons { button.primary type="submit" { "Submit" } }
                }
            }
        } @else {
            p.note { "Operators submit jobs." }
        }
        @if rows.is_empty() { p.empty { "No job yet." } } @else {
            table {
                thead { tr { th { "job" } th { "direction" } th { "phase" } th { "GPUs" } th { "epoch" } th { "host / origin" } } }
                tbody {
                    @for r in &rows {
                        @let id = text(&r["job"]);
                        tr {
                            td { a href={"/console/job?id=" (url_encode(&id))} { (id) } }
                            td { (text(&r["direction"])) } td { (state_badge(r["phase"].as_str().unwrap_or("?"))) }
                            td { (text(&r["gpus"])) } td { (text(&r["epoch"])) }
                            td { @if r["direction"] == "hosted" { (text(&r["origin"])) } @else { (text(&r["host"])) } }
                        }
                    }
                }
            }
        }
    })
}

async fn job(c: &Console, user: &User, id: &str) -> Result<Markup, ApiError> {
    let job = crate::api::job_id(id)?;
    let v = c.ask(user, ApiCall::Job(job.clone())).await?;
    let j = &v["job"];
    let output = c.ask(user, ApiCall::Output(job)).await.ok();
    let phase = &j["phase"];
    let operator = user.caller.role >= Role::Operator;
    Ok(html! {
        dl.facts {
            dt { "Direction" } dd { (text(&v["direction"])) }
            dt { "Phase" } dd { (state_badge(phase["phase"].as_str().unwrap_or("?"))) " " (text(&phase["state"])) }
            dt { "Runs at" } dd { (text(&v["host"])) }
            dt { "Epoch" } dd { (text(&j["epoch"])) }
            dt { "Exit code" } dd { (text(&phase["exit_code"])) }
            dt { "GPU-seconds" } dd { (text(&j["receipt"]["gpu_seconds"])) }
            dt { "Command" } dd { code { (list(&j["spec"]["command"])) } }
            dt { "GPUs" } dd { (text(&j["spec"]["requirements"]["gpus"])) }
        }
        @if operator && v["direction"] == "submitted" {
            div.buttons {
                form.inline method="post" action="/console/output" { input type="hidden" name="csrf" value=(user.csrf); input type="hidden" name="id" value=(id); button type="submit" { "Fetch output" } }
                form.inline method="post" action="/console/cancel" { input type="hidden" name="csrf" value=(user.csrf); input type="hidden" name="id" value=(id); button.decline type="submit" { "Cancel" } }
            }
        }
        h2 { "History" }
        (timeline(&j["history"]))
        @if let Some(o) = output {
            h2 { "Output (fetched " (when(&o["fetched_at"])) " from " (text(&o["source"])) ")" }
            h3 { "stdout (" (text(&o["stdout_size"])) " bytes)" } pre { (text(&o["stdout"])) }
            h3 { "stderr (" (text(&o["stderr_size"])) " bytes)" } pre { (text(&o["stderr"])) }
        }
    })
}

/// A horizontal bar chart, as inline SVG.
fn bars(rows: &[(String, f64)], unit: &str) -> Markup {
    let max = rows.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1e-9);
    let h = 22.0 * rows.len() as f64 + 4.0;
    let mut svg = format!(r#"<svg class="bars" viewBox="0 0 600 {h}" role="img">"#);
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 4.0 + 22.0 * i as f64;
        let w = 360.0 * v / max;
        let _ = write!(
            svg,
            r#"<text x="0" y="{:.0}">{}</text><rect x="200" y="{y:.0}" width="{w:.1}" height="16"></rect><text x="{:.0}" y="{:.0}">{} {unit}</text>"#,
            y + 13.0,
            html! { (label) }.into_string(),
            205.0 + w,
            y + 13.0,
            (v * 100.0).round() / 100.0,
        );
    }
    svg.push_str("</svg>");
    PreEscaped(svg)
}

/// (member, sector, outcome, count) rows of a nested referral table.
fn referral_rows(v: &Value) -> Vec<(String, String, String, u64)> {
    let mut out = Vec::new();
    for (m, sectors) in v.as_object().into_iter().flatten() {
        for (s, outcomes) in sectors.as_object().into_iter().flatten() {
            for (o, n) in outcomes.as_object().into_iter().flatten() {
                out.push((m.clone(), s.clone(), o.clone(), n.as_u64().unwrap_or(0)));
            }
        }
    }
    out
}

async fn kpi(c: &Console, user: &User) -> Result<Markup, ApiError> {
    let k = c.ask(user, ApiCall::Kpi).await?;
    let ledger = c.ask(user, ApiCall::Ledger).await?;
    let funnel: Vec<(String, f64)> = Service::ALL
        .iter()
        .map(|s| {
            (
                s.tag().replace('_', " "),
                k["companies_by_step"][s.tag()].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let mut by_sector: BTreeMap<String, f64> = BTreeMap::new();
    for (_, s, o, n) in referral_rows(&k["referrals_out"])
        .into_iter()
        .chain(referral_rows(&k["referrals_in"]))
    {
        *by_sector.entry(format!("{s}: {o}")).or_default() += n as f64;
    }
    let mut gpu: Vec<(String, f64)> = Vec::new();
    for row in ledger.as_array().into_iter().flatten() {
        let m = text(&row["member"]);
        let t = &row["totals"];
        gpu.push((
            format!("{m} hosted"),
            t["gpu_seconds_hosted"].as_f64().unwrap_or(0.0) / 3600.0,
        ));
        gpu.push((
            format!("{m} used"),
            t["gpu_seconds_consumed"].as_f64().unwrap_or(0.0) / 3600.0,
        ));
    }
    Ok(html! {
        h2 { "Journey funnel: companies by step" }
        (bars(&funnel, "companies"))
        p { "Kept " (text(&k["projects_kept"])) " · referred " (text(&k["projects_referred"])) " · stayed by choice " (text(&k["stayed_by_choice"])) " · advised against " (text(&k["advised_against"])) " · unplaced " (text(&k["unplaced"])) " · in production " (text(&k["companies_in_production"])) }
        h2 { "Referrals by sector and outcome" }
        @if by_sector.is_empty() { p.empty { "No referral yet." } } @else { (bars(&by_sector.into_iter().collect::<Vec<_>>(), "")) }
        h2 { "GPU-hours with each member" }
        @if gpu.is_empty() { p.empty { "No federated job yet." } } @else { (bars(&gpu, "h")) }
        h2 { "Ledger" }
        table {
            thead { tr { th { "member" } th { "referrals sent (accepted)" } th { "received (accepted)" } th { "GPU-h hosted" } th { "GPU-h used" } th { "balance" } } }
            tbody { @for row in ledger.as_array().into_iter().flatten() { @let t = &row["totals"]; tr {
                td { (text(&row["member"])) }
                td { (text(&t["referrals_sent"])) " (" (text(&t["referrals_sent_accepted"])) ")" }
                td { (text(&t["referrals_received"])) " (" (text(&t["referrals_received_accepted"])) ")" }
                td { (format!("{:.2}", t["gpu_seconds_hosted"].as_f64().unwrap_or(0.0) / 3600.0)) }
                td { (format!("{:.2}", t["gpu_seconds_consumed"].as_f64().unwrap_or(0.0) / 3600.0)) }
                td { (format!("{:.2}", row["balance"].as_f64().unwrap_or(0.0))) }
            } } }
        }
        p { "Download: " a href="/console/funnel.csv" { "funnel.csv" } " · " a href="/console/referrals-by-sector.csv" { "referrals-by-sector.csv" } " · " a href="/console/ledger.csv" { "ledger.csv" } " · " a href="/console/referrals.csv" { "referrals.csv" } }
    })
}

async fn audit(c: &Console, user: &User) -> Result<Markup, ApiError> {
    let a = c
        .ask(
            user,
            ApiCall::Audit {
                limit: 200.min(MAX_AUDIT_ROWS),
            },
        )
        .await?;
    Ok(html! {
        @if a["chain"]["ok"] == true {
            p.ok #chain { "Chain verified: " (text(&a["chain"]["entries"])) " entries, every link and signature valid." }
        } @else {
            p.error #chain role="alert" { "The audit chain does not verify: " (text(&a["chain"]["error"])) }
        }
        p { "The newest " (a["entries"].as_array().map_or(0, Vec::len)) " of " (text(&a["total"])) " entries." }
        table {
            thead { tr { th { "#" } th { "at" } th { "event" } th { "subject" } th { "detail" } } }
            tbody { @for e in a["entries"].as_array().into_iter().flatten() { tr {
                td { (text(&e["seq"])) } td { (when(&e["at"])) } td { (text(&e["event"])) } td { (text(&e["subject"])) } td { (text(&e["detail"])) }
            } } }
        }
    })
}

/// One CSV field, quoted when it must be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_of(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut out = header.join(",");
    out.push('\n');
    for r in rows {
        out.push_str(&r.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// `/console/NAME.csv`: a table of the KPI page as CSV.
pub async fn csv(c: &Console, user: &User, name: &str) -> Result<(String, String), ApiError> {
    let body = match name {
        "ledger" => {
            let l = c.ask(user, ApiCall::Ledger).await?;
            csv_of(
                &[
                    "member",
                    "referrals_sent",
                    "referrals_sent_accepted",
                    "referrals_received",
                    "referrals_received_accepted",
                    "gpu_seconds_hosted",
                    "gpu_seconds_consumed",
                    "balance",
                ],
                l.as_array().into_iter().flatten().map(|r| {
                    let t = &r["totals"];
                    vec![
                        text(&r["member"]),
                        text(&t["referrals_sent"]),
                        text(&t["referrals_sent_accepted"]),
                        text(&t["referrals_received"]),
                        text(&t["referrals_received_accepted"]),
                        text(&t["gpu_seconds_hosted"]),
                        text(&t["gpu_seconds_consumed"]),
                        text(&r["balance"]),
                    ]
                }),
            )
        }
        "funnel" => {
            let k = c.ask(user, ApiCall::Kpi).await?;
            csv_of(
                &["step", "companies"],
                Service::ALL.iter().map(|s| {
                    vec![
                        s.tag().to_owned(),
                        k["companies_by_step"][s.tag()]
                            .as_u64()
                            .unwrap_or(0)
                            .to_string(),
                    ]
                }),
            )
        }
        "referrals-by-sector" => {
            let k = c.ask(user, ApiCall::Kpi).await?;
            let rows = referral_rows(&k["referrals_out"])
                .into_iter()
                .map(|(m, s, o, n)| vec!["out".into(), m, s, o, n.to_string()])
                .chain(
                    referral_rows(&k["referrals_in"])
                        .into_iter()
                        .map(|(m, s, o, n)| vec!["in".into(), m, s, o, n.to_string()]),
                );
            csv_of(
                &["direction", "member", "sector", "outcome", "count"],
                rows.collect::<Vec<_>>(),
            )
        }
        "referrals" => {
            const COLUMNS: [&str; 7] = [
                "referral",
                "direction",
                "sector",
                "state",
                "target",
                "origin",
                "accepted_by",
            ];
            let r = c.ask(user, ApiCall::Referrals).await?;
            csv_of(
                &COLUMNS,
                r.as_array().into_iter().flatten().map(|r| {
                    COLUMNS
                        .iter()
                        .map(|k| {
                            if r[*k].is_null() {
                                String::new()
                            } else {
                                text(&r[*k])
                            }
                        })
                        .collect()
                }),
            )
        }
        other => {
            return Err(ApiError::not_found(format!(
                "the console has no table {other:?}"
            )));
        }
    };
    Ok((format!("{name}.csv"), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_it_must_and_the_map_places_every_member_country() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        let map = map_points();
        let points = &map.countries;
        assert!(points.len() >= 29, "{}", points.len());
        for (code, (x, y)) in points {
            assert!(
                (0.0..=map.width).contains(x) && (0.0..=map.height).contains(y),
                "{code} at {x},{y}"
            );
        }
        // Two members in one country are drawn apart.
        let at = positions(&[
            ("a".into(), "DE".into()),
            ("b".into(), "DE".into()),
            ("c".into(), "LU".into()),
        ]);
        assert_ne!(at["a"], at["b"]);
        assert_eq!(at["c"], points["LU"]);
    }

    #[test]
    fn a_bar_chart_escapes_its_labels() {
        let svg = bars(&[("<script>".into(), 2.0)], "h").into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
    }
}
