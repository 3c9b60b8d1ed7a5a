//! Connectivity that heals, on real node processes: a member finds its peers again after a
//! restart with or without a bootstrap entry, says which members it cannot reach, and a
//! second node on a busy port refuses to start.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::{Run, bin, repo_root};

/// Members prepared by `devnet --prepare-only`, each started by hand, with the bootstrap
/// lists the test gives.
struct Fed {
    _dir: tempfile::TempDir,
    net: PathBuf,
    nodes: Vec<(String, Child)>,
}

impl Fed {
    /// `bootstrap` names, for each member, the members it may bootstrap to.
    fn prepare(members: &[&str], bootstrap: &[(&str, &[&str])]) -> Fed {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("net");
        let list = members.join(",");
        let config = repo_root().join("config");
        support::run_in(
            &repo_root(),
            &[
                "devnet",
                "--prepare-only",
                "--members",
                &list,
                "--dir",
                net.to_str().unwrap(),
                "--config-dir",
                config.to_str().unwrap(),
            ],
        )
        .ok();
        // The devnet gives every member all the others; keep only the ones asked for.
        let peer_ids: Vec<(String, String)> = members
            .iter()
            .map(|m| {
                let info = support::run_in(
                    &repo_root(),
                    &[
                        "keys",
                        "show",
                        net.join(m).join("key.pem").to_str().unwrap(),
                    ],
                )
                .ok();
                let id = info
                    .stdout
                    .lines()
                    .find_map(|l| l.split_whitespace().find(|w| w.starts_with("12D3")))
                    .unwrap()
                    .to_owned();
                ((*m).to_owned(), id)
            })
            .collect();
        for (m, allowed) in bootstrap {
            let path = net.join(m).join("node.toml");
            let mut table: toml::Table =
                toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let kept: Vec<toml::Value> = table["bootstrap"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| {
                    let a = a.as_str().unwrap();
                    peer_ids
                        .iter()
                        .any(|(member, id)| allowed.contains(&member.as_str()) && a.ends_with(id))
                })
                .cloned()
                .collect();
            table.insert("bootstrap".into(), toml::Value::Array(kept));
            std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
        }
        Fed {
            _dir: dir,
            net,
            nodes: Vec::new(),
        }
    }

    fn dir(&self, m: &str) -> PathBuf {
        self.net.join(m)
    }

    fn start(&mut self, m: &str) {
        self.start_with_env(m, &[]);
    }

    /// Sets `[core] key = value` in the member's node.toml.
    fn set_core(&self, m: &str, key: &str, value: i64) {
        let path = self.dir(m).join("node.toml");
        let mut table: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let core = table
            .entry("core")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap();
        core.insert(key.into(), toml::Value::Integer(value));
        std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
    }

    fn start_with_env(&mut self, m: &str, env: &[(&str, &str)]) {
        let dir = self.dir(m);
        let _ = std::fs::remove_file(dir.join("run.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.envs(env.iter().copied());
        let child = support::spawn_node(cmd, &dir.join("node.toml"), log);
        self.nodes.push((m.to_owned(), child));
        self.wait(60, &format!("{m} to answer"), |f| f.status(m).is_some());
    }

    fn kill9(&mut self, m: &str) {
        let i = self.nodes.iter().position(|(n, _)| n == m).unwrap();
        let (_, mut child) = self.nodes.remove(i);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn cli(&self, m: &str, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        let dir = self.dir(m);
        all.extend(["--data-dir", dir.to_str().unwrap()]);
        support::run_in(&repo_root(), &all)
    }

    fn status(&self, m: &str) -> Option<serde_json::Value> {
        let r = self.cli(m, &["status", "--json"]);
        (r.code == Some(0)).then(|| r.json())
    }

    /// The value of the series `series` (name and labels as printed) on `/metrics`.
    fn metric(&self, m: &str, series: &str) -> Option<f64> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port(self, m)));
        let text = support::http(addr, "GET", "/metrics", None).1;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    fn connected(&self, m: &str) -> u64 {
        self.status(m)
            .map_or(0, |s| s["peers_connected"].as_u64().unwrap_or(0))
    }

    fn wait(&self, secs: u64, what: &str, mut f: impl FnMut(&Fed) -> bool) -> Duration {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            if f(self) {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let logs = support::log_tails(
            self.nodes
                .iter()
                .map(|(m, _)| (m.as_str(), self.dir(m).join("node.log"))),
        );
        panic!("timed out after {secs} s waiting for {what}\n{logs}");
    }
}

impl Drop for Fed {
    fn drop(&mut self) {
        for (_, c) in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const MEMBERS: [&str; 3] = ["lu-l-aif", "de-jaif", "fr-ai2f"];
/// lu-l-aif is the first member: it knows nobody; the others know only it.
const STAR: [(&str, &[&str]); 3] = [
    ("lu-l-aif", &[]),
    ("de-jaif", &["lu-l-aif"]),
    ("fr-ai2f", &["lu-l-aif"]),
];

#[test]
fn a_restarted_first_member_without_a_bootstrap_entry_finds_its_peers_again() {
    let mut fed = Fed::prepare(&MEMBERS, &STAR);
    for m in MEMBERS {
        fed.start(m);
    }
    fed.wait(60, "every member connected to both others", |f| {
        MEMBERS.iter().all(|m| f.connected(m) == 2)
    });
    fed.kill9("lu-l-aif");
    let started = Instant::now();
    fed.start("lu-l-aif");
    // Without redialling, nothing would reconnect it before Kademlia's five-minute refresh.
    fed.wait(60, "lu-l-aif connected to both others again", |f| {
        f.connected("lu-l-aif") == 2
    });
    eprintln!(
        "lu-l-aif connected to both others {:.2} s after its process started",
        started.elapsed().as_secs_f64()
    );
    // And it holds their adverts again.
    fed.wait(30, "lu-l-aif's directory", |f| {
        f.status("lu-l-aif").is_some_and(|s| s["directory"] == 2)
    });
    // A member with a bootstrap entry, restarted, finds both again too.
    fed.kill9("de-jaif");
    let started = Instant::now();
    fed.start("de-jaif");
    fed.wait(60, "de-jaif connected to both others again", |f| {
        f.connected("de-jaif") == 2
    });
    eprintln!(
        "de-jaif (bootstrap entry) connected to both others {:.2} s after its process started",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_member_started_before_its_bootstrap_peer_says_it_cannot_reach_it_and_connects_once_it_is_up() {
    let mut fed = Fed::prepare(
        &MEMBERS[..2],
        &[("de-jaif", &["lu-l-aif"]), ("lu-l-aif", &[])],
    );
    fed.start("de-jaif");
    fed.wait(30, "de-jaif to report lu-l-aif unreachable", |f| {
        f.status("de-jaif").is_some_and(|s| {
            s["peers_not_connected"].as_array().is_some_and(|nc| {
                nc.iter().any(|p| {
                    p["member"] == "lu-l-aif"
                        && p["failed_dials"].as_u64().unwrap_or(0) >= 2
                        && p["last_error"].as_str().is_some_and(|e| !e.is_empty())
                })
            })
        })
    });
    let failures = fed
        .metric(
            "de-jaif",
            "aiguillage_dial_failures_total{member=\"lu-l-aif\"}",
        )
        .unwrap_or(0.0);
    assert!(failures >= 2.0, "dial failures counted: {failures}");
    let log = std::fs::read_to_string(fed.dir("de-jaif").join("node.log")).unwrap();
    let warned = log
        .lines()
        .filter(|l| l.contains("cannot reach member"))
        .count();
    assert!(warned >= 1, "the first failure is logged:\n{log}");
    assert!(
        (warned as f64) < failures,
        "later failures within a minute are not logged ({warned} lines, {failures} failures)"
    );
    fed.start("lu-l-aif");
    fed.wait(60, "de-jaif connected to lu-l-aif", |f| {
        f.connected("de-jaif") == 1
    });
    let s = fed.status("de-jaif").unwrap();
    assert_eq!(s["peers_not_connected"].as_array().unwrap().len(), 0, "{s}");
}

#[test]
fn a_member_whose_clock_is_ten_minutes_ahead_reports_it_and_its_peers_name_it() {
    let mut fed = Fed::prepare(&MEMBERS, &STAR);
    // Adverts republished every 3 s, so that gossip carries fresh ones within the test.
    for m in MEMBERS {
        fed.set_core(m, "advert_ttl_ms", 6_000);
    }
    fed.start_with_env("lu-l-aif", &[("AIGUILLAGE_CLOCK_SKEW_MS", "600000")]);
    fed.start("de-jaif");
    fed.start("fr-ai2f");
    let near =
        |v: &serde_json::Value, target: f64| v.as_f64().is_some_and(|x| (x - target).abs() < 15.0);
    // Every peer's message looks ten minutes old at lu-l-aif: refused as expired, but
    // signed by a member, so it still tells the clocks apart.
    fed.wait(
        90,
        "lu-l-aif to find its clock 600 s ahead of both others",
        |f| {
            f.status("lu-l-aif")
                .is_some_and(|s| near(&s["clock_offset_s"], 600.0) && s["clock_members"] == 2)
        },
    );
    let offset = fed.metric("lu-l-aif", "aiguillage_clock_offset_seconds");
    assert!(
        offset.is_some_and(|o| (o - 600.0).abs() < 15.0),
        "the metric says it: {offset:?}"
    );
    let log = std::fs::read_to_string(fed.dir("lu-l-aif").join("node.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("clock is") && l.contains("ahead")),
        "a warning names the offset:\n{log}"
    );
    // de-jaif hears one member far ahead and one in step: its own clock is fine, and it
    // names the member whose clock is not.
    fed.wait(90, "de-jaif to name lu-l-aif's clock", |f| {
        f.status("de-jaif").is_some_and(|s| {
            near(&s["clock_offset_s"], 0.0)
                && s["clocks_off"].as_array().is_some_and(|off| {
                    off.len() == 1
                        && off[0]["member"] == "lu-l-aif"
                        && near(&off[0]["ahead_s"], 600.0)
                })
        })
    });
}

fn admin_port(fed: &Fed, m: &str) -> u16 {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fed.dir(m).join("run.json")).unwrap())
            .unwrap();
    info["admin"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_second_node_on_a_busy_port_refuses_to_start_and_names_the_address() {
    let mut fed = Fed::prepare(&MEMBERS[..2], &[]);
    fed.start("lu-l-aif");
    // A copy of lu-l-aif's folder without its store: only the port is shared.
    let copy = fed.net.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["node.toml", "key.pem", "admin.token"] {
        std::fs::copy(fed.dir("lu-l-aif").join(f), copy.join(f)).unwrap();
    }
    let table: toml::Table =
        toml::from_str(&std::fs::read_to_string(copy.join("node.toml")).unwrap()).unwrap();
    let tcp = table["listen"][0].as_str().unwrap().to_owned();
    let out = Command::new(bin())
        .args(["run", "--config"])
        .arg(copy.join("node.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {tcp}")) && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(
        !copy.join("db").exists(),
        "nothing was started before the check"
    );
    // The first node still answers alone on its port.
    assert!(fed.status("lu-l-aif").is_some());
}
