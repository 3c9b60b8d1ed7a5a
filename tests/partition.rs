//! Real partitions: each member in its own network namespace, joined to the others through
//! veth links on a bridge in a namespace of its own; a partition takes a member's link
//! down, healing brings it back up. Needs root and iproute2 (`ip netns`), as in CI; only
//! the namespaces and addresses created here are used (10.201.0.0/24, inside them).

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Run, bin, repo_root};

const ORIGIN: &str = "lu-l-aif";
/// Both have health as a priority and host overflow.
const PEERS: [&str; 2] = ["es-1healthai", "de-jaif"];

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("this test needs iproute2 (`ip`) and root for network namespaces: {e}")
    });
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root for network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces, links and node processes, all removed on drop.
struct Lab {
    tag: String,
    members: Vec<String>,
    net: PathBuf,
    _dir: tempfile::TempDir,
    nodes: Vec<Child>,
}

impl Lab {
    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    fn bridge_ns(&self) -> String {
        format!("{}br", self.tag)
    }

    fn index(&self, member: &str) -> usize {
        self.members.iter().position(|m| m == member).unwrap()
    }

    fn new(members: &[&str]) -> Lab {
        let tag = format!("ag{}", std::process::id() % 100_000);
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("net");
        let lab = Lab {
            tag,
            members: members.iter().map(|m| m.to_string()).collect(),
            net,
            _dir: dir,
            nodes: Vec::new(),
        };
        let br = lab.bridge_ns();
        ip(&["netns", "add", &br]);
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for i in 0..members.len() {
            let ns = lab.ns(i);
            let (inside, outside) = (format!("{}v{i}", lab.tag), format!("{}p{i}", lab.tag));
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &inside, "netns", &ns, "type", "veth", "peer", "name", &outside,
                "netns", &br,
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.201.0.{}/24", i + 1),
                "dev",
                &inside,
            ]);
            ip(&["-n", &ns, "link", "set", &inside, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &br, "link", "set", &outside, "master", "br0"]);
            ip(&["-n", &br, "link", "set", &outside, "up"]);
        }
        lab
    }

    fn addr(&self, member: &str) -> String {
        format!("10.201.0.{}", self.index(member) + 1)
    }

    /// Prepares the devnet folders, moves every address to the member's namespace address
    /// and starts each node inside its namespace.
    fn start(&mut self, extra: &[&str]) {
        let mut args = vec!["devnet", "--prepare-only", "--members"];
        let list = self.members.join(",");
        args.push(&list);
        let net = self.net.to_str().unwrap().to_owned();
        let config = repo_root().join("config");
        args.extend(["--dir", &net, "--config-dir", config.to_str().unwrap()]);
        args.extend_from_slice(extra);
        support::run_in(&repo_root(), &args).ok();
        // Each member's own listen ports name it in the others' bootstrap lists.
        let mut port_owner = Vec::new();
        let configs: Vec<(String, PathBuf, String)> = self
            .members
            .iter()
            .map(|m| {
                let path = self.net.join(m).join("node.toml");
                let text = std::fs::read_to_string(&path).unwrap();
                (m.clone(), path, text)
            })
            .collect();
        for (m, _, text) in &configs {
            let value: toml::Table = toml::from_str(text).unwrap();
            for l in value["listen"].as_array().unwrap() {
                let port = l.as_str().unwrap().split('/').nth(4).unwrap().to_owned();
                port_owner.push((port, m.clone()));
            }
        }
        for (_, path, text) in &configs {
            let mut table: toml::Table = toml::from_str(text).unwrap();
            for key in ["listen", "bootstrap"] {
                let rewritten: Vec<toml::Value> = table[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        let a = a.as_str().unwrap();
                        let port = a.split('/').nth(4).unwrap();
                        let owner = &port_owner.iter().find(|(p, _)| p == port).unwrap().1;
                        toml::Value::String(a.replace("127.0.0.1", &self.addr(owner)))
                    })
                    .collect();
                table.insert(key.into(), toml::Value::Array(rewritten));
            }
            std::fs::write(path, toml::to_string(&table).unwrap()).unwrap();
        }
        for (i, m) in self.members.clone().iter().enumerate() {
            let dir = self.net.join(m);
            let log = std::fs::File::create(dir.join("node.log")).unwrap();
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &self.ns(i)]).arg(bin());
            let child = support::spawn_node(cmd, &dir.join("node.toml"), log);
            self.nodes.push(child);
        }
        self.wait_for(90, "every node to hold both other adverts", || {
            self.members.iter().all(|m| {
                let r = self.cli(m, &["status", "--json"]);
                r.code == Some(0) && r.json()["directory"] == 2
            })
        });
    }

    /// The CLI inside the member's namespace (its admin API listens on its own loopback).
    fn cli(&self, member: &str, args: &[&str]) -> Run {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(self.index(member))])
            .arg(bin())
            .args(args)
            .arg("--devnet-dir")
            .arg(&self.net)
            .args(["--node", member])
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        out.into()
    }

    fn json(&self, member: &str, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        self.cli(member, &a).ok().json()
    }

    fn cut(&self, member: &str) {
        self.set_link(member, "down");
    }

    fn heal(&self, member: &str) {
        self.set_link(member, "up");
    }

    /// The member's port on the bridge, `up` or `down`.
    fn set_link(&self, member: &str, state: &str) {
        let i = self.index(member);
        ip(&[
            "-n",
            &self.bridge_ns(),
            "link",
            "set",
            &format!("{}p{i}", self.tag),
            state,
        ]);
    }

    fn wait_for(&self, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let logs = support::log_tails(
            self.members
                .iter()
                .map(|m| (m.as_str(), self.net.join(m).join("node.log"))),
        );
        panic!("timed out after {secs} s waiting for {what}\n{logs}");
    }

    fn data(&self, member: &str) -> PathBuf {
        self.net.join(member)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for c in &mut self.nodes {
            let _ = c.wait();
        }
        // `ip netns exec` leaves the node as its child; make sure none outlives the test.
        for m in &self.members {
            if let Ok(text) = std::fs::read_to_string(self.net.join(m).join("run.json"))
                && let Ok(v) = serde_json::from_str::<Value>(&text)
                && let Some(pid) = v["pid"].as_u64()
            {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        for i in 0..self.members.len() {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.bridge_ns()])
            .status();
    }
}

fn referral_state(lab: &Lab, member: &str, id: &str) -> String {
    let r = lab.cli(member, &["referral", "show", id, "--json"]);
    if r.code != Some(0) {
        return String::new();
    }
    support::state_of(&r.json())
}

fn totals(lab: &Lab, member: &str, peer: &str) -> Value {
    support::totals_with(&lab.json(member, &["ledger"]), peer)
}

#[test]
fn a_partitioned_target_and_host_lose_their_offer_and_lease_and_each_outcome_stays_single() {
    let mut lab = Lab::new(&[ORIGIN, PEERS[0], PEERS[1]]);
    lab.start(&["--gpus", "lu-l-aif=0"]);

    // 1. A referral filed while both candidates are cut off. The first offer goes
    //    unanswered; the second candidate's link heals, the offer expires (30 s in the
    //    devnet) and the referral moves on to it. Then the first comes back.
    lab.cut(PEERS[0]);
    lab.cut(PEERS[1]);
    let project = repo_root().join("config/examples/project-health-lu.toml");
    let filed = lab.json(ORIGIN, &["project", "file", project.to_str().unwrap()]);
    let id = filed["referral"].as_str().expect("referred").to_owned();
    let first = lab.json(ORIGIN, &["referral", "show", &id])["referral"]["attempts"][0]["target"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = PEERS.iter().find(|p| **p != first).unwrap().to_string();
    lab.heal(&second);
    lab.wait_for(
        75,
        "the referral to move to the reachable candidate",
        || referral_state(&lab, ORIGIN, &id) == "handed_over",
    );
    lab.heal(&first);
    std::thread::sleep(Duration::from_secs(8)); // re-sends and late answers cross
    let v = lab.json(ORIGIN, &["referral", "show", &id]);
    let attempts = v["referral"]["attempts"].as_array().unwrap();
    let accepted: Vec<&Value> = attempts
        .iter()
        .filter(|a| a["outcome"]["outcome"] == "accepted")
        .collect();
    assert_eq!(accepted.len(), 1, "{attempts:?}");
    assert_eq!(accepted[0]["target"], second.as_str());
    assert_eq!(attempts[0]["target"], first.as_str());
    assert_ne!(attempts[0]["outcome"]["outcome"], "accepted");
    let there = referral_state(&lab, &first, &id);
    assert!(
        there != "accepted" && there != "handed_over",
        "{first} holds the referral as {there}"
    );
    assert_eq!(referral_state(&lab, &second, &id), "handed_over");

    // 2. A job whose host is cut off mid-run: the lease expires (10 s), the job is placed
    //    again with a higher epoch at the other member; when the link heals, the first
    //    host is told to let go, and only the second run counts.
    let job_file = lab.data(ORIGIN).join("job.toml");
    std::fs::write(
        &job_file,
        "gpus = 1\ntime_limit_s = 120\ncommand = [\"sh\", \"-c\", \"sleep 12\"]\n",
    )
    .unwrap();
    let job = lab.json(ORIGIN, &["job", "submit", job_file.to_str().unwrap()])["job"]
        .as_str()
        .unwrap()
        .to_owned();
    let show = |lab: &Lab| lab.json(ORIGIN, &["job", "show", &job]);
    let mut host = String::new();
    lab.wait_for(30, "the job to run at a peer", || {
        let v = show(&lab);
        host = v["host"].as_str().unwrap_or("").to_owned();
        v["job"]["phase"]["host_state"] == "running"
    });
    lab.cut(&host);
    let other = PEERS.iter().find(|p| **p != host).unwrap().to_string();
    lab.wait_for(60, "the job to be placed again at the other member", || {
        let v = show(&lab);
        v["host"] == other.as_str() && v["job"]["epoch"] == 2
    });
    lab.heal(&host);
    lab.wait_for(60, "the job to finish at the other member", || {
        show(&lab)["job"]["phase"]["phase"] == "done"
    });
    let v = show(&lab);
    assert_eq!(v["host"], other.as_str());
    assert_eq!(v["job"]["epoch"], 2);
    assert_eq!(v["job"]["phase"]["state"], "succeeded");
    lab.wait_for(30, "the first host to let its stale run go", || {
        let r = lab.cli(&host, &["job", "show", &job, "--json"]);
        r.code == Some(0) && {
            let p = r.json()["job"]["phase"]["phase"].clone();
            p == "released" || p == "disowned"
        }
    });
    // Both ledgers agree (the host enters usage once the origin acknowledged the receipt),
    // and nothing is owed for the stale run.
    let used = v["job"]["receipt"]["gpu_seconds"].as_u64().unwrap();
    assert_eq!(totals(&lab, ORIGIN, &other)["gpu_seconds_consumed"], used);
    lab.wait_for(20, "the host's ledger to hold the receipt", || {
        totals(&lab, &other, ORIGIN)["gpu_seconds_hosted"] == used
    });
    assert_eq!(
        totals(&lab, ORIGIN, &host)["gpu_seconds_consumed"]
            .as_u64()
            .unwrap_or(0),
        0
    );
    assert_eq!(
        totals(&lab, &host, ORIGIN)["gpu_seconds_hosted"]
            .as_u64()
            .unwrap_or(0),
        0
    );
}
