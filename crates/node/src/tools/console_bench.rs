//! `aiguillage bench console`: how fast a change at one member shows in another member's
//! open console, what open consoles cost the node, and what each page weighs. Measured on
//! real node processes on loopback, with the console driven as a browser drives it: a
//! signed-in session, its event stream, and the live part fetched again on each event.
//!
//! Latency is read on one clock (one machine): the origin's `offered_at` against the
//! moment the target's console page holds the offer. Its floor, in the same run, is the
//! target's own `received_at` for the offer: what the network and the node take before
//! any console is involved.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aiguillage_core::stats::quantile_of;
use aiguillage_wire::MemberId;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::devnet::{self, DevnetOptions};
use crate::clock;

pub struct ConsoleBenchOptions {
    pub config_dir: PathBuf,
    pub dir: PathBuf,
    pub changes: usize,
    pub consoles: usize,
    pub json: Option<PathBuf>,
}

const ORIGIN: &str = "lu-l-aif";
/// Health is neither excluded nor a priority at cz-czai: its adviser decides.
const TARGET: &str = "cz-czai";

/// One request on a fresh connection, with a cookie: (status, head, body).
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    body: &str,
) -> Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed status line")?;
    Ok((status, head.to_owned(), body.to_owned()))
}

fn cookie_of(head: &str, prefix: &str) -> Result<String> {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find(|c| c.starts_with(prefix) && !c.contains("Max-Age=0"))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .with_context(|| format!("no {prefix} cookie in the answer"))
}

/// Signs in to the console at `addr` as `member`'s operator; returns the session cookie.
fn sign_in(addr: SocketAddr, member: &str, token: &str) -> Result<String> {
    let (_, head, _) = exchange(addr, "GET", "/console/sign-in", "", "")?;
    let nonce = cookie_of(&head, &format!("aiguillage_sign_in_{member}="))?;
    let value = nonce.split_once('=').map(|(_, v)| v).unwrap_or("");
    let (status, head, _) = exchange(
        addr,
        "POST",
        "/console/sign-in",
        &nonce,
        &format!("csrf={value}&token={token}"),
    )?;
    if status != 303 {
        bail!("signing in to {member}'s console: HTTP {status}");
    }
    cookie_of(&head, &format!("aiguillage_session_{member}="))
}

/// Opens the console's event stream and hands each `(event, data)` to `tx`.
fn stream(addr: SocketAddr, cookie: String, tx: mpsc::Sender<(String, String)>) -> Result<()> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET /console/events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\
         Accept: text/event-stream\r\n\r\n"
    )?;
    let mut event = String::new();
    for line in BufReader::new(s).lines() {
        let line = line?;
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_owned();
        } else if let Some(d) = line.strip_prefix("data: ")
            && tx.send((std::mem::take(&mut event), d.to_owned())).is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

fn rss_kib(pid: u64) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

fn project_to_target(n: usize) -> Value {
    json!({
        "sector": "health", "country": "LU", "company_size": "small", "stage": "assessment",
        "services_needed": ["assessment"], "gpu_hours": 0, "languages": ["en"],
        "consent": { "members": [TARGET] },
        "dossier": { "company": format!("Console bench {n}"), "contact_name": "b",
                     "contact_email": "b@bench.invalid", "summary": "bench" }
    })
}

const PAGES: &[&str] = &[
    "/console",
    "/console/federation",
    "/console/inbox",
    "/console/new",
    "/console/referrals",
    "/console/jobs",
    "/console/kpi",
    "/console/audit",
];
const SCRIPTS: &[&str] = &[
    "/console/assets/htmx.min.js",
    "/console/assets/htmx-sse.min.js",
    "/console/assets/console.js",
    "/console/assets/console.css",
    "/console/assets/icon.svg",
];

pub fn run(o: ConsoleBenchOptions) -> Result<()> {
    let dn = DevnetOptions {
        config_dir: o.config_dir.clone(),
        dir: o.dir.clone(),
        members: Some(vec![ORIGIN.into(), TARGET.into()]),
        projects: 0,
        jobs: 0,
        keep_running: false,
        timeout: Duration::from_secs(60),
        intake: Some(1_000_000),
        decision_ttl: Some(Duration::from_secs(3600)),
        gpus: Vec::new(),
        prepare_only: false,
        slurm: Vec::new(),
    };
    let mut fed = devnet::start(&dn)?;
    let result = measure(&o, &fed);
    fed.stop();
    let figures = result?;
    println!("{}", table(&figures));
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&figures)?)?;
    }
    Ok(())
}

fn measure(o: &ConsoleBenchOptions, fed: &devnet::Federation) -> Result<Value> {
    let origin = fed.clients[&MemberId::new(ORIGIN)?].clone();
    let target = fed.clients[&MemberId::new(TARGET)?].clone();
    let token = std::fs::read_to_string(o.dir.join(TARGET).join("admin.token"))?;
    let token = token.trim();
    let pid = target.get("/status").ok().and_then(|_| {
        std::fs::read_to_string(o.dir.join(TARGET).join("run.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["pid"].as_u64())
    });
    let pid = pid.context("the target's pid")?;

    // Page weight, on the idle federation before the changes.
    let session = sign_in(target.addr, TARGET, token)?;
    let mut weights = Vec::new();
    let scripts: usize = SCRIPTS
        .iter()
        .map(|p| exchange(target.addr, "GET", p, &session, "").map(|(_, _, b)| b.len()))
        .sum::<Result<usize>>()?;
    let map = exchange(
        target.addr,
        "GET",
        "/console/assets/europe.svg",
        &session,
        "",
    )?
    .2
    .len();
    for page in PAGES {
        let (status, _, body) = exchange(target.addr, "GET", page, &session, "")?;
        if status != 200 {
            bail!("{page}: HTTP {status}");
        }
        let with_assets = body.len() + scripts + if page.ends_with("federation") { map } else { 0 };
        weights.push(
            json!({ "page": page, "html_bytes": body.len(), "with_assets_bytes": with_assets }),
        );
    }

    // Change → console: the target's console waits on its stream; each filing at the
    // origin is one change.
    let (tx, rx) = mpsc::channel();
    {
        let (addr, session) = (target.addr, session.clone());
        std::thread::spawn(move || stream(addr, session, tx));
    }
    let mut console_ms = Vec::new();
    let mut floor_ms = Vec::new();
    for n in 0..o.changes {
        let filed = origin.post("/projects", &project_to_target(n))?;
        let id = filed["referral"]
            .as_str()
            .context("the project must be referred to the target")?
            .to_owned();
        let seen = format!("data-referral=\"{id}\"");
        let deadline = Instant::now() + Duration::from_secs(30);
        let visible = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (event, data) = rx
                .recv_timeout(left)
                .with_context(|| format!("{id} never showed in the console"))?;
            if event != "referral" || !data.contains(&id) {
                continue;
            }
            // What htmx does on the event: fetch the live part again.
            let (_, _, part) =
                exchange(target.addr, "GET", "/console/inbox?part=true", &session, "")?;
            if part.contains(&seen) {
                break clock::now().millis();
            }
        };
        let out = origin.get(&format!("/referrals/{id}"))?;
        let offered = out["referral"]["attempts"][0]["offered_at"]
            .as_u64()
            .context("offered_at")?;
        let inc = target.get(&format!("/referrals/{id}"))?;
        let received = inc["referral"]["received_at"]
            .as_u64()
            .context("received_at")?;
        console_ms.push(visible.saturating_sub(offered) as f64);
        floor_ms.push(received.saturating_sub(offered) as f64);
        // The adviser answers, so that the inbox stays the size a working inbox has.
        target.post(
            &format!("/referrals/{id}/decline"),
            &json!({ "detail": "bench" }),
        )?;
    }

    // Memory: the target with no console open, then with `consoles` signed in, each with
    // its stream open and every page loaded once.
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_kib(pid)?;
    // Kept until the second reading: dropping a receiver ends its stream.
    let mut open = Vec::new();
    for _ in 0..o.consoles {
        let s = sign_in(target.addr, TARGET, token)?;
        for page in PAGES {
            exchange(target.addr, "GET", page, &s, "")?;
        }
        let (tx, rx) = mpsc::channel();
        let (addr, s2) = (target.addr, s.clone());
        std::thread::spawn(move || stream(addr, s2, tx));
        open.push(rx);
    }
    std::thread::sleep(Duration::from_secs(2));
    let with_consoles = rss_kib(pid)?;
    let q = |v: &[f64], p: f64| quantile_of(&mut v.to_vec(), p).unwrap_or(f64::NAN);
    Ok(json!({
        "changes": o.changes,
        "console_ms": { "p50": q(&console_ms, 0.5), "p99": q(&console_ms, 0.99), "max": q(&console_ms, 1.0) },
        "floor_ms": { "p50": q(&floor_ms, 0.5), "p99": q(&floor_ms, 0.99), "max": q(&floor_ms, 1.0) },
        "rss_kib": { "no_console": idle, "consoles": o.consoles, "with_consoles": with_consoles },
        "pages": weights,
        "assets": { "scripts_and_style_bytes": scripts, "map_bytes": map },
    }))
}

fn table(f: &Value) -> String {
    let mut out = String::new();
    let n = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.0}"));
    out.push_str(&format!(
        "change at {ORIGIN} → visible in {TARGET}'s open console, over {} changes:\n  \
         console p50 {} ms, p99 {} ms, max {} ms\n  floor (offer recorded at {TARGET}) \
         p50 {} ms, p99 {} ms\n",
        f["changes"],
        n(&f["console_ms"]["p50"]),
        n(&f["console_ms"]["p99"]),
        n(&f["console_ms"]["max"]),
        n(&f["floor_ms"]["p50"]),
        n(&f["floor_ms"]["p99"]),
    ));
    let r = &f["rss_kib"];
    out.push_str(&format!(
        "node RSS: {:.1} MiB with no console, {:.1} MiB with {} open\n",
        r["no_console"].as_f64().unwrap_or(0.0) / 1024.0,
        r["with_consoles"].as_f64().unwrap_or(0.0) / 1024.0,
        r["consoles"]
    ));
    out.push_str("page weight (HTML, then with scripts, style and map):\n");
    for p in f["pages"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<22} {:>7} B {:>8} B\n",
            p["page"].as_str().unwrap_or(""),
            p["html_bytes"],
            p["with_assets_bytes"]
        ));
    }
    out
}
