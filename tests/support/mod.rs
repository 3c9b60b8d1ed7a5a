//! Helpers shared by the workspace integration tests: run the real `aiguillage` binary.
#![allow(dead_code)]

pub mod browser;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_aiguillage"))
}

/// The repository root, where `config/` lives.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A port nothing listens on now (for a helper process that takes its port as an option).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `aiguillage run` on a member's config in `cmd` (the binary, or a wrapper such as
/// `ip netns exec`), its stdout and stderr going to `log`.
pub fn spawn_node(mut cmd: Command, config: &Path, log: std::fs::File) -> std::process::Child {
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The last lines of each named log, for a timeout's message.
pub fn log_tails<'a>(logs: impl IntoIterator<Item = (&'a str, PathBuf)>) -> String {
    logs.into_iter()
        .map(|(name, path)| {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            format!(
                "--- {name}\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect()
}

/// The outcome of one `aiguillage` run, with stdout and stderr as text.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "aiguillage failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The command refused with an error exit code (1, or 2 for a usage error), not by
    /// panicking (101).
    pub fn fails(self) -> Run {
        assert!(
            matches!(self.code, Some(1 | 2)),
            "aiguillage should have refused with exit code 1\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `aiguillage ARGS` in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("starting the aiguillage binary")
        .into()
}

/// A fresh key file in `dir`; returns its public key in hex.
pub fn new_key(dir: &Path, name: &str) -> String {
    run_in(dir, &["keys", "generate", "--out", name]).ok();
    run_in(dir, &["keys", "show", name, "--json"]).ok().json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A devnet of real `aiguillage run` processes, started by `aiguillage devnet
/// --keep-running` in a temporary folder, and stopped (every process) on drop.
pub struct Devnet {
    pub dir: tempfile::TempDir,
    devnet: std::process::Child,
    restarted: Vec<std::process::Child>,
}

impl Devnet {
    pub fn start(members: &[&str]) -> Devnet {
        Devnet::start_with(members, &[])
    }

    /// A devnet with more `aiguillage devnet` flags (`--gpus lu-l-aif=0`, `--slurm de-jaif`).
    pub fn start_with(members: &[&str], extra: &[&str]) -> Devnet {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let mut devnet = Command::new(bin())
            .args([
                "devnet",
                "--projects",
                "0",
                "--jobs",
                "0",
                "--keep-running",
                "--members",
            ])
            .arg(members.join(","))
            .arg("--dir")
            .arg(dir.path().join("net"))
            .arg("--config-dir")
            .arg(repo_root().join("config"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("devnet.stderr")).unwrap())
            .spawn()
            .expect("starting aiguillage devnet");
        let stdout = devnet.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("keeps running") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(std::time::Duration::from_secs(90)).is_err() {
            let _ = devnet.kill();
            let said =
                std::fs::read_to_string(dir.path().join("devnet.stderr")).unwrap_or_default();
            panic!("the devnet did not come up within 90 s; it said:\n{said}");
        }
        Devnet {
            dir,
            devnet,
            restarted: Vec::new(),
        }
    }

    pub fn net_dir(&self) -> PathBuf {
        self.dir.path().join("net")
    }

    pub fn member_dir(&self, id: &str) -> PathBuf {
        self.net_dir().join(id)
    }

    /// `aiguillage ARGS --devnet-dir … --node ID`.
    pub fn cli(&self, node: &str, args: &[&str]) -> Run {
        let net = self.net_dir();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--devnet-dir", net.to_str().unwrap(), "--node", node]);
        run_in(&repo_root(), &all)
    }

    /// `aiguillage … --node ID ARGS --json`, which must succeed, as JSON.
    pub fn json(&self, node: &str, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        self.cli(node, &a).ok().json()
    }

    pub fn run_info(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.member_dir(id).join("run.json")).unwrap(),
        )
        .unwrap()
    }

    pub fn admin_addr(&self, id: &str) -> std::net::SocketAddr {
        self.run_info(id)["admin"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub fn token(&self, id: &str) -> String {
        std::fs::read_to_string(self.member_dir(id).join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `aiguillage token add` for a user of `member`; returns the token it prints once.
    pub fn add_token(&self, member: &str, name: &str, role: &str) -> String {
        let dir = self.member_dir(member);
        let out = run_in(
            &repo_root(),
            &[
                "token",
                "add",
                "--data-dir",
                dir.to_str().unwrap(),
                "--name",
                name,
                "--role",
                role,
            ],
        )
        .ok();
        out.stdout.lines().nth(1).unwrap().trim().to_owned()
    }

    /// Kills a member with SIGKILL, as a crash would.
    pub fn kill9(&self, id: &str) {
        let pid = self.run_info(id)["pid"].as_u64().unwrap();
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // Wait until it is gone: a zombie whose other threads have exited too (until they
        // have, they hold its files and ports).
        for _ in 0..250 {
            let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
            if !Path::new(&format!("/proc/{pid}")).exists()
                || (threads <= 1
                    && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z ")))
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Starts a member again from its data folder and waits until its API answers.
    pub fn restart(&mut self, id: &str) {
        let old = self.run_info(id)["pid"].as_u64().unwrap();
        let dir = self.member_dir(id);
        let log = std::fs::File::create(dir.join("restart.log")).unwrap();
        let child = spawn_node(Command::new(bin()), &dir.join("node.toml"), log);
        self.restarted.push(child);
        for _ in 0..300 {
            if let Ok(text) = std::fs::read_to_string(dir.join("run.json"))
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && v["pid"].as_u64() != Some(old)
                && self.cli(id, &["status", "--json"]).code == Some(0)
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(dir.join("restart.log")).unwrap_or_default();
        panic!("{id} did not come back after a restart; its log:\n{log}");
    }

    /// Polls `f` every 100 ms for up to `secs` seconds.
    /// The state of referral `id` at `node`, or `absent` while the node has none (an offer
    /// still on its way).
    pub fn referral_state(&self, node: &str, id: &str) -> String {
        let r = self.cli(node, &["referral", "show", id, "--json"]);
        if r.code != Some(0) {
            assert!(r.stderr.contains("HTTP 404"), "{}", r.stderr);
            return "absent".into();
        }
        state_of(&r.json())
    }

    pub fn wait_for(&self, secs: u64, what: &str, f: impl FnMut() -> bool) {
        self.wait_for_showing(secs, what, f, String::new);
    }

    /// [`Devnet::wait_for`], saying what `show` finds when it times out.
    pub fn wait_for_showing(
        &self,
        secs: u64,
        what: &str,
        mut f: impl FnMut() -> bool,
        show: impl Fn() -> String,
    ) {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < end {
            if f() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("timed out after {secs} s waiting for {what}; {}", show());
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        for c in &mut self.restarted {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        // SIGINT is the devnet's Ctrl-C: it stops every member it started.
        let _ = Command::new("kill")
            .args(["-INT", &self.devnet.id().to_string()])
            .status();
        let _ = self.devnet.wait();
    }
}

/// A raw HTTP request to a node's admin API: (status, body).
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    http_with(addr, method, path, token, "")
}

/// A raw HTTP request with a JSON body: (status, body).
pub fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let kind = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/json\r\n".to_owned()
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{kind}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (
        head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

/// The totals a `ledger --json` answer holds for `peer` (null when it holds none).
pub fn totals_with(ledger: &serde_json::Value, peer: &str) -> serde_json::Value {
    ledger
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["member"] == peer)
        .map(|r| r["totals"].clone())
        .unwrap_or(serde_json::Value::Null)
}

/// The state name in a `referral show --json` answer (outgoing states are tagged objects,
/// incoming ones plain strings).
pub fn state_of(referral: &serde_json::Value) -> String {
    let s = &referral["referral"]["state"];
    s["state"].as_str().or(s.as_str()).unwrap_or("").to_owned()
}
