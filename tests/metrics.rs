//! What a Grafana board needs, on real nodes: every listed series exists from the start at
//! zero, the text passes `promtool check metrics`, and a real Prometheus, configured from
//! docs/monitoring/prometheus.yml, scrapes a devnet and answers every query of the shipped
//! dashboard.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Devnet, free_port, repo_root};

/// Series that exist at a node's start with the value 0, as printed on `/metrics`.
const AT_ZERO: &[&str] = &[
    "aiguillage_decisions_pending",
    "aiguillage_decision_oldest_age_seconds",
    "aiguillage_gpu_seconds_total{direction=\"consumed\"}",
    "aiguillage_gpu_seconds_total{direction=\"hosted\"}",
    "aiguillage_overflow_total{event=\"placed\"}",
    "aiguillage_overflow_total{event=\"replaced\"}",
    "aiguillage_overflow_total{event=\"finished\"}",
    "aiguillage_overflow_total{event=\"queued\"}",
    "aiguillage_referrals{direction=\"out\",state=\"offered\"}",
    "aiguillage_referrals{direction=\"out\",state=\"handed_over\"}",
    "aiguillage_referrals{direction=\"out\",state=\"in_progress\"}",
    "aiguillage_referrals{direction=\"out\",state=\"exhausted\"}",
    "aiguillage_referrals{direction=\"in\",state=\"awaiting_decision\"}",
    "aiguillage_referrals{direction=\"in\",state=\"handed_over\"}",
    "aiguillage_referrals{direction=\"in\",state=\"in_progress\"}",
    "aiguillage_jobs{phase=\"queued\"}",
    "aiguillage_jobs{phase=\"leased\"}",
    "aiguillage_jobs{phase=\"local\"}",
    "aiguillage_hosted_jobs{phase=\"running\"}",
    "aiguillage_offer_answer_seconds_count",
    "aiguillage_offer_answer_seconds_bucket{le=\"604800\"}",
    "aiguillage_job_wait_seconds_count",
    "aiguillage_messages_received_total{channel=\"referral\",kind=\"offer\"}",
    "aiguillage_messages_sent_total{channel=\"overflow\",kind=\"usage_receipt\"}",
    "aiguillage_message_bytes_received_total{channel=\"overflow\"}",
    "aiguillage_seal_failures_total{kind=\"offer\"}",
];

/// Series that exist at start with a value set by the node.
const PRESENT: &[&str] = &[
    "aiguillage_build_info{version=",
    "aiguillage_peers_connected",
    "aiguillage_peer_up{member=\"de-jaif\"}",
    // At zero unless lu-l-aif dialled de-jaif before the devnet had started it.
    "aiguillage_dial_failures_total{member=\"de-jaif\"}",
    "aiguillage_directory_members",
    "aiguillage_directory_oldest_advert_age_seconds",
    "aiguillage_roster_serial",
    "aiguillage_roster_expiry_timestamp_seconds",
    "aiguillage_clock_offset_seconds",
    "aiguillage_store_flush_seconds_count",
    "aiguillage_commit_batch_inputs_count",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_start_time_seconds",
];

fn series(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_listed_series_exists_from_the_start_and_a_real_prometheus_answers_the_dashboard() {
    let d = Devnet::start(&["lu-l-aif", "de-jaif"]);
    let lu = d.admin_addr("lu-l-aif");
    let text = support::http(lu, "GET", "/metrics", None).1;
    let found = series(&text);
    for name in AT_ZERO {
        assert_eq!(found.get(*name), Some(&0.0), "{name} at zero:\n{text}");
    }
    for prefix in PRESENT {
        assert!(
            found.keys().any(|k| k.starts_with(prefix)),
            "{prefix} present:\n{text}"
        );
    }
    // Counters end in _total, and no gauge claims to be one.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut words = line.split_whitespace().skip(2);
        let (name, kind) = (words.next().unwrap(), words.next().unwrap());
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{line}: counters, and only counters, end in _total"
        );
    }

    // promtool's lint of the live text.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; .ci/run installs it)");
    use std::io::Write;
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus, from the shipped scrape config with the devnet's two nodes.
    let shipped =
        std::fs::read_to_string(repo_root().join("docs/monitoring/prometheus.yml")).unwrap();
    assert!(shipped.contains("- 127.0.0.1:4711"), "{shipped}");
    let de = d.admin_addr("de-jaif");
    let config = shipped
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace(
            "          - 127.0.0.1:4711",
            &format!("          - {lu}\n          - {de}"),
        );
    let work = d.dir.path().join("prometheus");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("prometheus.yml"), &config).unwrap();
    let web = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                work.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian's prometheus package; .ci/run installs it)"),
    );
    let query = |q: &str| -> serde_json::Value {
        if std::net::TcpStream::connect(web).is_err() {
            return serde_json::json!({ "status": "not listening yet" });
        }
        let path = format!("/api/v1/query?query={}", urlencode(q));
        let (status, body) = get_http10(web, &path);
        if status != 200 {
            return serde_json::json!({ "status": format!("http {status}"), "body": body });
        }
        serde_json::from_str(&body)
            .unwrap_or_else(|e| serde_json::json!({ "status": format!("{e}"), "body": body }))
    };
    let start = Instant::now();
    loop {
        let v = query("aiguillage_peers_connected");
        let results = v["data"]["result"].as_array().cloned().unwrap_or_default();
        if results.len() == 2 && results.iter().all(|r| r["value"][1] == "1") {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let log = std::fs::read_to_string(work.join("prometheus.log")).unwrap_or_default();
            panic!("Prometheus did not report both nodes connected: {v}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Every query of the shipped dashboard is valid PromQL against these series.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("docs/monitoring/grafana-dashboard.json"))
            .unwrap(),
    )
    .unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$instance", ".*");
            let v = query(&expr);
            assert_eq!(
                v["status"], "success",
                "panel {:?}: {expr}: {v}",
                panel["title"]
            );
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} dashboard queries");
    let up = query("aiguillage_peer_up");
    assert_eq!(
        up["data"]["result"].as_array().map(Vec::len),
        Some(2),
        "each node reports the other: {up}"
    );
}

/// A GET in HTTP/1.0, so that the answer comes whole, not chunked: (status, body).
fn get_http10(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
