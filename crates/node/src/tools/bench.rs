//! `aiguillage bench net`: the network figures, measured on real node processes on
//! loopback. Every latency is read from the nodes' own records (all on one machine, so one
//! clock): an advert's `issued_at` against each receiver's `received_at`, an offer's
//! `offered_at` against its `answered_at` at the origin (both sides persist before they
//! send), a job's submission against its lease.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aiguillage_core::stats::quantile_of;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::devnet::{self, DevnetOptions, Federation};
use crate::profiles;

pub struct BenchOptions {
    pub config_dir: PathBuf,
    pub dir: PathBuf,
    pub nodes: usize,
    pub rounds: usize,
    pub referrals: usize,
    pub in_flight: usize,
    pub jobs: usize,
    pub json: Option<PathBuf>,
    /// Every member but lu-l-aif runs its jobs on this machine's Slurm, and the bench also
    /// measures lease confirmed → job running under Slurm.
    pub slurm: bool,
}

fn ms(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// One advert published at each member in turn; the time until each other member holds it.
fn adverts(fed: &Federation, rounds: usize) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    let ids = &fed.members;
    let mut each = Vec::new();
    let mut all = Vec::new();
    let mut lost = 0;
    for r in 0..rounds {
        let from = &ids[r % ids.len()];
        let seq = ms(&fed.clients[from].post("/advert/publish", &json!({}))?["seq"]);
        std::thread::sleep(Duration::from_millis(150));
        let mut worst: f64 = 0.0;
        for (id, c) in &fed.clients {
            if id == from {
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                let dir = c.get("/directory")?;
                let row = dir
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["member"] == from.as_str())
                    .cloned();
                if let Some(a) = row
                    && ms(&a["seq"]) >= seq
                {
                    let l = ms(&a["received_at"]).saturating_sub(ms(&a["issued_at"])) as f64;
                    each.push(l);
                    worst = worst.max(l);
                    break;
                }
                if Instant::now() > deadline {
                    lost += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        all.push(worst);
    }
    Ok((each, all, lost))
}

fn health_project(n: usize) -> Value {
    json!({
        "sector": "health", "country": "LU", "company_size": "small", "stage": "assessment",
        "services_needed": ["assessment"], "gpu_hours": 0, "languages": ["en"],
        "consent": { "whole_federation": true },
        "dossier": { "company": format!("Bench {n}"), "contact_name": "b", "contact_email": "b@bench.invalid", "summary": "bench" }
    })
}

/// (offer → answer latencies in ms, first offer, last answer) of the given referrals.
fn answers(
    c: &crate::admin_client::AdminClient,
    ids: &[String],
    wait: Duration,
) -> Result<(Vec<f64>, u64, u64)> {
    let deadline = Instant::now() + wait;
    let mut lat = Vec::new();
    let (mut first, mut last) = (u64::MAX, 0);
    for id in ids {
        loop {
            let r = c.get(&format!("/referrals/{id}"))?;
            let a = &r["referral"]["attempts"][0];
            if a["answered_at"].is_u64() {
                let (o, t) = (ms(&a["offered_at"]), ms(&a["answered_at"]));
                lat.push(t.saturating_sub(o) as f64);
                first = first.min(o);
                last = last.max(t);
                break;
            }
            if Instant::now() > deadline {
                bail!("referral {id} got no answer in time");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok((lat, first, last))
}

fn file(c: &crate::admin_client::AdminClient, n: usize) -> Result<String> {
    let v = c.post("/projects", &health_project(n))?;
    v["referral"]
        .as_str()
        .map(str::to_owned)
        .context("a health project at lu-l-aif must be referred")
}

pub fn run(o: BenchOptions) -> Result<()> {
    // The floors first, on a quiet machine, before any node starts.
    let floor = super::floor::measure(&o.dir)?;
    let all = profiles::load_dir(&o.config_dir)?;
    let pair = ["lu-l-aif", "es-1healthai"];
    let mut members: Vec<String> = pair.iter().map(|s| s.to_string()).collect();
    members.extend(
        all.iter()
            .map(|p| p.id.to_string())
            .filter(|id| !pair.contains(&id.as_str())),
    );
    members.truncate(o.nodes.max(2));
    let dn = DevnetOptions {
        config_dir: o.config_dir.clone(),
        dir: o.dir.clone(),
        members: Some(members.clone()),
        projects: 0,
        jobs: 0,
        keep_running: false,
        timeout: Duration::from_secs(60),
        intake: Some(1_000_000),
        decision_ttl: None,
        gpus: Vec::new(),
        prepare_only: false,
        slurm: if o.slurm {
            members
                .iter()
                .filter(|m| m.as_str() != "lu-l-aif")
                .map(aiguillage_wire::MemberId::new)
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        },
    };
    let started = Instant::now();
    let mut fed = devnet::start(&dn)?;
    let cold = started.elapsed().as_secs_f64();
    // Let the gossip mesh settle before measuring the warm network.
    std::thread::sleep(Duration::from_secs(3));

    let (mut each, mut worst, lost) = adverts(&fed, o.rounds)?;
    let lu = fed.clients[&aiguillage_wire::MemberId::new("lu-l-aif")?].clone();
    // Sequential referrals: one in flight.
    let mut seq_ids = Vec::new();
    let mut seq_lat = Vec::new();
    for n in 0..o.referrals {
        let id = file(&lu, n)?;
        let (l, _, _) = answers(&lu, std::slice::from_ref(&id), Duration::from_secs(10))?;
        seq_lat.extend(l);
        seq_ids.push(id);
    }
    // Many in flight: the batch is filed by as many concurrent callers, then collected.
    let batch: Vec<String> = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..o.in_flight)
            .map(|n| {
                let lu = &lu;
                scope.spawn(move || file(lu, 100_000 + n))
            })
            .collect();
        callers
            .into_iter()
            .map(|c| {
                c.join()
                    .unwrap_or_else(|_| bail!("a filing thread panicked"))
            })
            .collect::<Result<_>>()
    })?;
    let (mut par_lat, first, last) = answers(&lu, &batch, Duration::from_secs(30))?;
    let span_s = (last.saturating_sub(first)).max(1) as f64 / 1000.0;
    let throughput = batch.len() as f64 / span_s;
    // Overflow: lu-l-aif has 2 GPUs in the devnet; 3-GPU jobs must go to a peer.
    let mut leases = Vec::new();
    let mut starts = Vec::new();
    for _ in 0..o.jobs {
        let v = lu.post(
            "/jobs",
            &json!({ "gpus": 3, "time_limit_s": 30, "command": ["true"] }),
        )?;
        let job = v["job"].as_str().context("job id")?.to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        let host = loop {
            let j = lu.get(&format!("/jobs/{job}"))?;
            let hist = j["job"]["history"].as_array().cloned().unwrap_or_default();
            let at = |s: &str| hist.iter().find(|h| h["state"] == s).map(|h| ms(&h["at"]));
            if let (Some(a), Some(b)) = (at("submitted"), at("leased")) {
                leases.push(b.saturating_sub(a) as f64);
                break j["host"].as_str().unwrap_or("").to_owned();
            }
            if Instant::now() > deadline {
                bail!("job {job} was not leased in time: {}", j["job"]["phase"]);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if o.slurm {
            // The host's own record: confirm received → its executor saw the job running.
            // Each job is waited for, so that none queues in Slurm behind the one before, and
            // the next is filed 1.5 s later: Slurm starts a job submitted right after another
            // ended only at its next scheduling pass, about 1 s later (measured alone).
            let host = fed.clients[&aiguillage_wire::MemberId::new(&host)?].clone();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let j = host.get(&format!("/jobs/{job}"))?;
                let hist = j["job"]["history"].as_array().cloned().unwrap_or_default();
                let at = |s: &str| hist.iter().find(|h| h["state"] == s).map(|h| ms(&h["at"]));
                if j["job"]["phase"]["phase"] == "finished"
                    && let (Some(a), Some(b)) = (at("confirmed"), at("running"))
                {
                    starts.push(b.saturating_sub(a) as f64);
                    break;
                }
                if Instant::now() > deadline {
                    bail!("job {job} did not finish under Slurm in time: {}", j["job"]);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(1500));
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut rss = Vec::new();
    for m in &fed.members {
        let run: Value = serde_json::from_str(&std::fs::read_to_string(
            o.dir.join(m.as_str()).join("run.json"),
        )?)?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", ms(&run["pid"])))?;
        if let Some(kb) = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
        {
            rss.push(kb / 1024.0);
        }
    }
    fed.stop();

    let n = fed.members.len();
    let report = json!({
        "nodes": n,
        "floor": floor,
        "cold_start_convergence_s": cold,
        "advert_seen_by_all_ms": { "p50": quantile_of(&mut worst, 0.5), "p99": quantile_of(&mut worst, 0.99), "rounds": worst.len(), "lost": lost },
        "advert_each_receiver_ms": { "p50": quantile_of(&mut each, 0.5), "p99": quantile_of(&mut each, 0.99), "samples": each.len() },
        "referral_offer_to_accept_ms_1_in_flight": { "p50": quantile_of(&mut seq_lat, 0.5), "p99": quantile_of(&mut seq_lat, 0.99), "samples": seq_lat.len() },
        "referral_offer_to_accept_ms_batch": { "in_flight": o.in_flight, "p50": quantile_of(&mut par_lat, 0.5), "p99": quantile_of(&mut par_lat, 0.99), "per_second": throughput },
        "overflow_filed_to_lease_ms": { "p50": quantile_of(&mut leases, 0.5), "p99": quantile_of(&mut leases, 0.99), "samples": leases.len() },
        "lease_confirmed_to_running_under_slurm_ms": { "p50": quantile_of(&mut starts, 0.5), "p99": quantile_of(&mut starts, 0.99), "samples": starts.len() },
        "idle_rss_mib": { "median": quantile_of(&mut rss, 0.5), "max": quantile_of(&mut rss, 1.0), "peers_each": n - 1 },
    });
    println!(
        "floor on this machine ({} cores): sign {:.1} µs, verify {:.1} µs, request round trip {:.0} µs, sled flush {:.0} µs; referral ceiling {:.0}/s",
        floor.cores,
        floor.sign_us,
        floor.verify_us,
        floor.request_rtt_us,
        floor.flush_us,
        floor.referrals_per_s_ceiling
    );
    // Latencies against the bare round trip; the ratio says how many floors a figure costs.
    let rtt_ms = floor.request_rtt_us / 1000.0;
    println!(
        "{:<48} {:>10} {:>10} {:>12}",
        "figure", "p50", "p99", "p99 / rtt"
    );
    let row = |name: &str, v: &Value| {
        let p99 = v["p99"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{name:<48} {:>10.2} {:>10.2} {:>12.1}",
            v["p50"].as_f64().unwrap_or(f64::NAN),
            p99,
            p99 / rtt_ms
        )
    };
    row(
        &format!("advert seen by all {} other nodes (ms)", n - 1),
        &report["advert_seen_by_all_ms"],
    );
    row(
        "advert at each receiver (ms)",
        &report["advert_each_receiver_ms"],
    );
    row(
        "offer → durable signed accept, 1 in flight (ms)",
        &report["referral_offer_to_accept_ms_1_in_flight"],
    );
    row(
        &format!(
            "offer → durable signed accept, {} in flight (ms)",
            o.in_flight
        ),
        &report["referral_offer_to_accept_ms_batch"],
    );
    row(
        "overflow job filed → lease confirmed (ms)",
        &report["overflow_filed_to_lease_ms"],
    );
    if o.slurm {
        row(
            "lease confirmed → running under Slurm (ms)",
            &report["lease_confirmed_to_running_under_slurm_ms"],
        );
    }
    println!(
        "referrals/s with {} in flight: {:.0} ({:.2} of the ceiling)",
        o.in_flight,
        throughput,
        throughput / floor.referrals_per_s_ceiling
    );
    println!(
        "idle RSS per node with {} peers: median {:.1} MiB, max {:.1} MiB",
        n - 1,
        report["idle_rss_mib"]["median"].as_f64().unwrap_or(0.0),
        report["idle_rss_mib"]["max"].as_f64().unwrap_or(0.0)
    );
    println!("cold start until every node held every advert: {cold:.1} s; adverts lost: {lost}");
    if let Some(path) = &o.json {
        crate::files::write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
