//! The Slurm backend: jobs go to a real Slurm cluster through its command-line tools.
//!
//! Only text outputs that have stayed stable across Slurm releases are parsed:
//! `sbatch --parsable`, `squeue -h -t all -o`, `scontrol -o show job` and
//! `sacct -X -n -P`. The JSON outputs are avoided on purpose: `squeue --json` ignores its
//! filters and reports a raw wait status, and `sacct --json` reports wrong exit codes in
//! 22.05. `scancel` exits 0 for an unknown id, so a cancel is only believed once squeue or
//! sacct shows the job ended.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::{Backend, End, EndKind, Handle, JobRun, Status, run_command};

/// `[executor]` with `kind = "slurm"` in node.toml.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// The partition jobs go to (`sbatch -p`); Slurm's default when absent.
    #[serde(default)]
    pub partition: Option<String>,
    /// The account jobs are charged to (`sbatch -A`).
    #[serde(default)]
    pub account: Option<String>,
    /// More sbatch flags, one per item (e.g. `"--qos=federation"`).
    #[serde(default)]
    pub sbatch_args: Vec<String>,
    /// At most this many of the partition's GPUs are offered to the federation.
    #[serde(default)]
    pub max_gpus: Option<u32>,
    /// Folder holding sbatch, squeue, scontrol, sacct, scancel and sinfo; PATH when absent.
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// How often running jobs are polled.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_poll_ms() -> u64 {
    500
}

/// Slurm commands take about 9 s to fail when the controller is down.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Slurm {
    config: SlurmConfig,
}

impl Slurm {
    pub fn new(config: SlurmConfig) -> Slurm {
        Slurm { config }
    }

    fn command(&self, name: &str) -> tokio::process::Command {
        let program = match &self.config.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        };
        let mut cmd = tokio::process::Command::new(program);
        // Scheduler output in a fixed language and time format.
        cmd.env("LC_ALL", "C").env_remove("SLURM_TIME_FORMAT");
        cmd
    }

    async fn output(&self, name: &str, args: &[&str]) -> Result<String> {
        let out = run_command(self.command(name).args(args), name, COMMAND_TIMEOUT).await?;
        if !out.status.success() {
            bail!(
                "{name} {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `squeue -t all` for the given ids: id → (state, reason). Jobs Slurm has already
    /// purged from its memory (after MinJobAge) are simply absent.
    async fn squeue(&self, ids: &[&str]) -> Result<HashMap<String, (String, String)>> {
        let list = ids.join(",");
        let out = run_command(
            self.command("squeue")
                .args(["-h", "-t", "all", "-o", "%i|%T|%r", "-j"])
                .arg(&list),
            "squeue",
            COMMAND_TIMEOUT,
        )
        .await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            // Every id unknown: squeue says so and exits 1. Anything else is an error.
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("Invalid job id") {
                return Ok(HashMap::new());
            }
            bail!("squeue failed ({}): {}", out.status, stderr.trim());
        }
        Ok(stdout
            .lines()
            .filter_map(|l| {
                let mut f = l.split('|');
                let id = f.next()?.trim().to_owned();
                let state = f.next()?.trim().to_owned();
                let reason = f.next().unwrap_or("").trim().to_owned();
                Some((id, (state, reason)))
            })
            .collect())
    }

    /// The end of a finished job, from scontrol (while Slurm still holds it) or sacct.
    async fn ended(&self, id: &str, state: &str) -> Result<Option<End>> {
        if let Ok(line) = self.output("scontrol", &["-o", "show", "job", id]).await
            && let Some(fields) = scontrol_fields(&line)
            && let Some(exit) = fields.get("ExitCode")
        {
            let state = fields.get("JobState").map_or(state, |s| s.as_str());
            let wall_s = fields
                .get("RunTime")
                .and_then(|t| parse_duration(t))
                .unwrap_or(0);
            return Ok(Some(End {
                how: end_kind(state, exit, fields.get("Reason").map(String::as_str)),
                wall_s,
            }));
        }
        self.sacct(id).await
    }

    /// The final state as accounting has it, or None if accounting does not know the job
    /// (yet: it lags squeue by about a second; or at all, without slurmdbd).
    async fn sacct(&self, id: &str) -> Result<Option<End>> {
        let Ok(out) = self
            .output(
                "sacct",
                &[
                    "-X",
                    "-n",
                    "-P",
                    "-j",
                    id,
                    "-o",
                    "JobID,State,ExitCode,ElapsedRaw",
                ],
            )
            .await
        else {
            return Ok(None);
        };
        for line in out.lines() {
            let f: Vec<&str> = line.split('|').collect();
            if f.len() < 4 || f[0] != id {
                continue;
            }
            // "CANCELLED by 0" → "CANCELLED".
            let state = f[1].split_whitespace().next().unwrap_or("");
            if !is_final(state) {
                return Ok(None);
            }
            return Ok(Some(End {
                how: end_kind(state, f[2], None),
                wall_s: f[3].parse().unwrap_or(0),
            }));
        }
        Ok(None)
    }

    fn script(run: &JobRun) -> Result<String> {
        let mut s = String::from("#!/bin/sh\n# Written by aiguillage for one federated job.\n");
        let mut export = |name: &str, value: &str| -> Result<()> {
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                bail!("the job's environment variable name {name:?} is not a shell name");
            }
            s.push_str(&format!("export {name}={}\n", shell_quote(value)));
            Ok(())
        };
        export("AIGUILLAGE_JOB", run.job.as_str())?;
        export("AIGUILLAGE_EPOCH", &run.epoch.to_string())?;
        for e in &run.spec.env {
            export(&e.name, &e.value)?;
        }
        let words: Vec<String> = run.spec.command.iter().map(|w| shell_quote(w)).collect();
        if words.is_empty() {
            bail!("the job has an empty command");
        }
        s.push_str("exec ");
        s.push_str(&words.join(" "));
        s.push('\n');
        Ok(s)
    }
}

impl Backend for Slurm {
    fn describe(&self) -> String {
        format!(
            "slurm, partition {}",
            self.config.partition.as_deref().unwrap_or("(default)")
        )
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.config.poll_ms.max(50))
    }

    fn queues(&self) -> bool {
        true
    }

    async fn capacity(&mut self) -> Result<u32> {
        let mut args = vec!["-h", "-N", "-o", "%N|%G"];
        if let Some(p) = &self.config.partition {
            args.extend(["-p", p]);
        }
        let out = self.output("sinfo", &args).await?;
        let mut nodes = HashMap::new();
        for line in out.lines() {
            if let Some((node, gres)) = line.split_once('|') {
                nodes.insert(node.trim().to_owned(), gres_gpus(gres));
            }
        }
        let total: u32 = nodes.values().sum();
        Ok(self.config.max_gpus.map_or(total, |m| m.min(total)))
    }

    async fn submit(&mut self, run: &JobRun) -> Result<Handle> {
        let script = Self::script(run)?;
        let path = run.dir.join("job.sh");
        crate::files::write_atomic(&path, script.as_bytes())?;
        let limit = run.spec.requirements.time_limit_s.max(1);
        let mut cmd = self.command("sbatch");
        cmd.arg("--parsable")
            .arg(format!("--job-name={}", run.name))
            .arg(format!("--chdir={}", run.dir.display()))
            .arg(format!("--output={}", run.dir.join("stdout").display()))
            .arg(format!("--error={}", run.dir.join("stderr").display()))
            // minutes:seconds
            .arg(format!("--time={}:{:02}", limit / 60, limit % 60));
        if run.gpus() > 0 {
            cmd.arg(format!("--gres=gpu:{}", run.gpus()));
        }
        if let Some(p) = &self.config.partition {
            cmd.arg(format!("--partition={p}"));
        }
        if let Some(a) = &self.config.account {
            cmd.arg(format!("--account={a}"));
        }
        cmd.args(&self.config.sbatch_args).arg(&path);
        let out = run_command(&mut cmd, "sbatch", COMMAND_TIMEOUT).await?;
        if !out.status.success() {
            bail!(
                "Slurm refused the job: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let id = parse_parsable(&String::from_utf8_lossy(&out.stdout))?;
        crate::files::write_atomic(&run.dir.join("slurm_id"), id.as_bytes())?;
        Ok(id)
    }

    async fn status(&mut self, jobs: &[(&JobRun, &Handle)]) -> Result<Vec<Status>> {
        let ids: Vec<&str> = jobs.iter().map(|(_, h)| h.as_str()).collect();
        let states = self.squeue(&ids).await?;
        let mut out = Vec::with_capacity(jobs.len());
        for id in ids {
            let status = match states.get(id).map(|(s, r)| (s.as_str(), r.as_str())) {
                Some((state, _)) if is_final(state) => match self.ended(id, state).await? {
                    Some(end) => Status::Ended(end),
                    None => Status::Running,
                },
                Some((state, reason)) if is_queued(state) => {
                    Status::Queued(format!("Slurm job {id} {state} ({reason})"))
                }
                Some(_) => Status::Running,
                // Purged from the controller's memory: accounting may still know it.
                None => match self.sacct(id).await? {
                    Some(end) => Status::Ended(end),
                    None => Status::Unknown,
                },
            };
            out.push(status);
        }
        Ok(out)
    }

    async fn cancel(&mut self, _run: &JobRun, handle: &Handle) -> Result<()> {
        // Exits 0 even for an unknown id: the driver confirms the end through `status`.
        self.output("scancel", &[handle]).await.map(drop)
    }

    async fn find(&mut self, run: &JobRun) -> Result<Option<Handle>> {
        if let Ok(id) = std::fs::read_to_string(run.dir.join("slurm_id")) {
            let id = id.trim();
            if !id.is_empty() {
                return Ok(Some(id.to_owned()));
            }
        }
        // Submitted, but the node stopped before it wrote the id down: find it by name.
        let out = self
            .output("squeue", &["-h", "-t", "all", "-n", &run.name, "-o", "%i"])
            .await?;
        if let Some(id) = out.lines().map(str::trim).find(|l| !l.is_empty()) {
            return Ok(Some(id.to_owned()));
        }
        if let Ok(out) = self
            .output(
                "sacct",
                &[
                    "-X",
                    "-n",
                    "-P",
                    "--name",
                    &run.name,
                    "-o",
                    "JobID",
                    "-S",
                    "now-7days",
                ],
            )
            .await
            && let Some(id) = out.lines().map(str::trim).find(|l| !l.is_empty())
        {
            return Ok(Some(id.to_owned()));
        }
        Ok(None)
    }

    fn forget(&mut self, _run: &JobRun, _handle: &Handle) {}
}

/// `sbatch --parsable` prints `<id>` or `<id>;<cluster>`.
fn parse_parsable(stdout: &str) -> Result<String> {
    let line = stdout.lines().next().unwrap_or("").trim();
    let id = line.split(';').next().unwrap_or("");
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
        bail!("sbatch printed {line:?}, not a job id");
    }
    Ok(id.to_owned())
}

fn is_queued(state: &str) -> bool {
    matches!(
        state,
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD"
    )
}

fn is_final(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "DEADLINE"
            | "NODE_FAIL"
            | "BOOT_FAIL"
            | "OUT_OF_MEMORY"
            | "PREEMPTED"
            | "REVOKED"
            | "SPECIAL_EXIT"
    )
}

/// Slurm's `ExitCode=<exit>:<signal>` and the job state, as an end.
fn end_kind(state: &str, exit: &str, reason: Option<&str>) -> EndKind {
    let (code, signal) = exit
        .split_once(':')
        .map(|(c, s)| (c.parse::<i32>().ok(), s.parse::<i32>().ok()))
        .unwrap_or((exit.parse().ok(), None));
    match state {
        "CANCELLED" => EndKind::Cancelled,
        "TIMEOUT" | "DEADLINE" => EndKind::TimedOut,
        "COMPLETED" | "FAILED" => match (code, signal) {
            (Some(c), _) if c != 0 => EndKind::Exited(c),
            (Some(0), Some(s)) if s != 0 => EndKind::Failed(format!(
                "Slurm ended the job {state} with signal {s}{}",
                reason.map(|r| format!(" ({r})")).unwrap_or_default()
            )),
            (Some(0), _) if state == "COMPLETED" => EndKind::Exited(0),
            _ => EndKind::Failed(format!(
                "Slurm ended the job {state}, exit code {exit}{}",
                reason.map(|r| format!(" ({r})")).unwrap_or_default()
            )),
        },
        other => EndKind::Failed(format!("Slurm ended the job {other}, exit code {exit}")),
    }
}

/// The fields of one `scontrol -o show job` line. Values never hold spaces except in a few
/// free-text fields at known positions, which are not read here.
fn scontrol_fields(line: &str) -> Option<HashMap<String, String>> {
    let map: HashMap<String, String> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    map.contains_key("JobId").then_some(map)
}

/// `[D-]HH:MM:SS`, `MM:SS` → seconds.
fn parse_duration(s: &str) -> Option<u64> {
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, s),
    };
    let mut secs = 0u64;
    for part in rest.split(':') {
        secs = secs * 60 + part.parse::<u64>().ok()?;
    }
    Some(days * 86_400 + secs)
}

/// GPUs in an sinfo `%G` field such as `gpu:fake:4(S:0)`, `gpu:4,mps:100` or `(null)`.
fn gres_gpus(gres: &str) -> u32 {
    gres.split(',')
        .filter(|g| g.starts_with("gpu"))
        .filter_map(|g| {
            let g = g.split('(').next().unwrap_or(g);
            g.rsplit(':').next()?.parse::<u32>().ok()
        })
        .sum()
}

/// Quotes `s` for sh with single quotes.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_stable_text_outputs() {
        assert_eq!(parse_parsable("57\n").unwrap(), "57");
        assert_eq!(parse_parsable("57;ci\n").unwrap(), "57");
        assert!(parse_parsable("sbatch: error: nope").is_err());
        assert_eq!(parse_duration("00:01:05"), Some(65));
        assert_eq!(parse_duration("2-01:00:00"), Some(2 * 86_400 + 3600));
        assert_eq!(parse_duration("01:05"), Some(65));
        assert_eq!(gres_gpus("gpu:fake:4(S:0)"), 4);
        assert_eq!(gres_gpus("gpu:2,mps:100"), 2);
        assert_eq!(gres_gpus("(null)"), 0);
        let line = "JobId=3 JobName=t3 UserId=root(0) JobState=FAILED Reason=NonZeroExitCode \
                    Dependency=(null) ExitCode=3:0 RunTime=00:00:02 TimeLimit=00:01:00";
        let f = scontrol_fields(line).unwrap();
        assert_eq!(f["ExitCode"], "3:0");
        assert_eq!(parse_duration(&f["RunTime"]), Some(2));
    }

    #[test]
    fn exit_codes_and_states_map_to_ends() {
        assert_eq!(end_kind("FAILED", "3:0", None), EndKind::Exited(3));
        assert_eq!(end_kind("COMPLETED", "0:0", None), EndKind::Exited(0));
        assert_eq!(end_kind("CANCELLED", "0:15", None), EndKind::Cancelled);
        assert_eq!(end_kind("TIMEOUT", "0:0", None), EndKind::TimedOut);
        // Could not open its output: no exit code, a signal-like status.
        assert!(matches!(end_kind("FAILED", "0:53", None), EndKind::Failed(r) if r.contains("53")));
        assert!(matches!(
            end_kind("NODE_FAIL", "0:0", None),
            EndKind::Failed(_)
        ));
    }

    #[test]
    fn the_script_quotes_every_word() {
        let spec = aiguillage_wire::JobSpec {
            job: aiguillage_wire::JobId::new("a/1").unwrap(),
            requirements: aiguillage_wire::JobRequirements {
                gpus: 1,
                time_limit_s: 60,
                accelerator: None,
                latest_start: aiguillage_wire::Timestamp(0),
                residency: vec![],
                priority: 0,
            },
            command: vec!["echo".into(), "it's $HOME".into()],
            env: vec![aiguillage_wire::EnvVar {
                name: "X".into(),
                value: "a b'c".into(),
            }],
        };
        let run = JobRun {
            job: spec.job.clone(),
            epoch: 2,
            spec: spec.clone(),
            dir: PathBuf::from("/tmp"),
            name: "n".into(),
        };
        let s = Slurm::script(&run).unwrap();
        assert!(s.contains("export X='a b'\\''c'\n"), "{s}");
        assert!(s.ends_with("exec 'echo' 'it'\\''s $HOME'\n"), "{s}");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&s)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's $HOME\n");
        let mut bad = run;
        bad.spec.env[0].name = "X;rm".into();
        assert!(Slurm::script(&bad).is_err());
    }

    /// The real-Slurm tests need a running cluster; they fail (never skip) without one.
    pub(crate) fn require_slurm() {
        let ok = std::process::Command::new("scontrol")
            .arg("ping")
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP"));
        assert!(
            ok,
            "no Slurm controller answers `scontrol ping`. The Slurm executor is tested against a \
             real Slurm: start a single-node cluster with fake GPUs with `sudo scripts/slurm-up.sh` \
             (Debian; installs slurm-wlm and munge), then run the tests again."
        );
    }

    mod real {
        use super::super::super::{Executor, Report};
        use super::*;
        use aiguillage_core::ExecutorEvent;
        use aiguillage_wire::{JobId, JobSpec};
        use tokio::sync::mpsc;

        fn spec(id: &str, gpus: u32, script: &str) -> JobSpec {
            super::super::super::test_spec(id, gpus, 120, script)
        }

        fn slurm() -> Slurm {
            Slurm::new(SlurmConfig {
                partition: None,
                account: None,
                sbatch_args: vec![],
                max_gpus: None,
                bin_dir: None,
                poll_ms: 200,
            })
        }

        async fn next(rx: &mut mpsc::Receiver<Report>) -> Report {
            tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("an executor report within 60 s")
                .unwrap()
        }

        async fn end_of(rx: &mut mpsc::Receiver<Report>, job: &str) -> ExecutorEvent {
            loop {
                if let Report::Job { job: j, event, .. } = next(rx).await
                    && j.as_str() == job
                    && !matches!(event, ExecutorEvent::Started | ExecutorEvent::Queued { .. })
                {
                    return event;
                }
            }
        }

        async fn started(rx: &mut mpsc::Receiver<Report>, job: &str) {
            loop {
                if let Report::Job { job: j, event, .. } = next(rx).await
                    && j.as_str() == job
                    && !matches!(event, ExecutorEvent::Queued { .. })
                {
                    assert_eq!(event, ExecutorEvent::Started, "{job}");
                    return;
                }
            }
        }

        fn squeue_state(id: &str) -> String {
            let out = std::process::Command::new("squeue")
                .args(["-h", "-t", "all", "-j", id, "-o", "%T"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }

        #[tokio::test]
        async fn jobs_run_on_slurm_with_gpus_exit_codes_cancel_and_limits() {
            require_slurm();
            let dir = tempfile::tempdir().unwrap();
            let (tx, mut rx) = mpsc::channel(64);
            let ex = Executor::spawn(slurm(), dir.path().to_path_buf(), tx);
            let Report::Capacity(gpus) = next(&mut rx).await else {
                panic!("the first report is the capacity")
            };
            assert!(gpus >= 2, "the test cluster has fake GPUs (got {gpus})");
            let j = |s: &str| JobId::new(s).unwrap();
            ex.start(
                j("s/1"),
                1,
                spec(
                    "s/1",
                    2,
                    "echo \"$CUDA_VISIBLE_DEVICES $AIGUILLAGE_JOB\"; exit 3",
                ),
            );
            assert!(matches!(
                end_of(&mut rx, "s/1").await,
                ExecutorEvent::Finished { exit_code: 3, .. }
            ));
            let out = std::fs::read_to_string(dir.path().join("s_1-e1/stdout")).unwrap();
            let (devices, job) = out.trim().split_once(' ').unwrap();
            assert_eq!(devices.split(',').count(), 2, "two GPUs visible: {out}");
            assert_eq!(job, "s/1");

            ex.start(j("s/2"), 1, spec("s/2", 1, "sleep 300"));
            started(&mut rx, "s/2").await;
            let id = std::fs::read_to_string(dir.path().join("s_2-e1/slurm_id")).unwrap();
            ex.cancel(j("s/2"), 1);
            assert!(matches!(
                end_of(&mut rx, "s/2").await,
                ExecutorEvent::Cancelled { .. }
            ));
            assert_eq!(
                squeue_state(&id),
                "CANCELLED",
                "Slurm itself shows the cancel"
            );

            // The node stops a job at its time limit without waiting for Slurm's own sweep.
            ex.start(j("s/3"), 1, {
                let mut s = spec("s/3", 0, "sleep 300");
                s.requirements.time_limit_s = 2;
                s
            });
            assert!(matches!(
                end_of(&mut rx, "s/3").await,
                ExecutorEvent::TimedOut { .. }
            ));

            // Refused by Slurm: more GPUs than any node has.
            ex.start(j("s/4"), 1, spec("s/4", 99, "true"));
            match end_of(&mut rx, "s/4").await {
                ExecutorEvent::Failed { reason, .. } => {
                    assert!(reason.contains("Slurm refused"), "{reason}")
                }
                other => panic!("{other:?}"),
            }
        }

        #[tokio::test]
        async fn a_restarted_executor_finds_its_jobs_by_record_and_by_name() {
            require_slurm();
            let dir = tempfile::tempdir().unwrap();
            let j = |s: &str| JobId::new(s).unwrap();
            let (tx, mut rx) = mpsc::channel(64);
            let first = Executor::spawn(slurm(), dir.path().to_path_buf(), tx);
            first.start(j("r/1"), 1, spec("r/1", 0, "sleep 2; exit 5"));
            first.start(j("r/2"), 1, spec("r/2", 1, "sleep 300"));
            started(&mut rx, "r/1").await;
            started(&mut rx, "r/2").await;
            drop(first);
            drop(rx);
            // As if the node died between sbatch and writing the id down.
            std::fs::remove_file(dir.path().join("r_2-e1/slurm_id")).unwrap();

            let (tx, mut rx) = mpsc::channel(64);
            let second = Executor::spawn(slurm(), dir.path().to_path_buf(), tx);
            second.recover(vec![
                (j("r/1"), 1, spec("r/1", 0, "sleep 2; exit 5"), true),
                (j("r/2"), 1, spec("r/2", 1, "sleep 300"), true),
            ]);
            assert!(matches!(
                end_of(&mut rx, "r/1").await,
                ExecutorEvent::Finished { exit_code: 5, .. }
            ));
            // The stale job is found by name and really cancelled.
            second.cancel(j("r/2"), 1);
            assert!(matches!(
                end_of(&mut rx, "r/2").await,
                ExecutorEvent::Cancelled { .. }
            ));
            let out = std::process::Command::new("squeue")
                .args(["-h", "-t", "all", "-o", "%T|%j"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let instance = std::fs::read_to_string(dir.path().join("instance")).unwrap();
            let line = text
                .lines()
                .find(|l| l.ends_with(&format!("aig-{instance}-r_2-e1")))
                .expect("the job is in squeue");
            assert!(line.starts_with("CANCELLED|"), "{line}");
        }
    }
}
