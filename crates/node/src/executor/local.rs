//! The embedded local-process backend: each job is a child process in its own folder and
//! process group, holding some of the node's GPU slots.
//!
//! A job runs under a small `sh` wrapper that writes the command's exit status to
//! `exit_status` (atomically, by rename) when it ends, and `run.json` records the process id,
//! its kernel start time, the start wall time and the GPU slots. Jobs outlive the node:
//! after a restart, a job whose `exit_status` is there is reported with it; a job whose
//! process is still alive (same pid, same start time) is adopted and followed; a job whose
//! process vanished without a status is reported failed.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::warn;

use super::{Backend, End, EndKind, Handle, JobRun, Status};

/// The wrapper: run the command, then publish its status where the node can read it even
/// if the node was not there to see the process end.
const WRAPPER: &str =
    r#""$@"; s=$?; echo $s > exit_status.tmp && mv exit_status.tmp exit_status; exit $s"#;

#[derive(Debug, Serialize, Deserialize)]
struct RunRecord {
    pid: u32,
    /// Field 22 of /proc/PID/stat: tells a reused pid from ours.
    proc_start: u64,
    started_ms: u64,
    slots: Vec<u32>,
}

pub struct Local {
    slots: u32,
    free: BTreeSet<u32>,
    running: HashMap<Handle, RunRecord>,
    /// Signalled when a child this node spawned exits, so that its end is seen at once
    /// rather than at the next poll.
    ended: Arc<Notify>,
}

impl Local {
    pub fn new(slots: u32) -> Local {
        Local {
            slots,
            free: (0..slots).collect(),
            running: HashMap::new(),
            ended: Arc::new(Notify::new()),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are split by spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Alive and not a zombie waiting for its parent.
fn alive(pid: u32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let state = stat[close + 2..].chars().next();
    state != Some('Z') && proc_start(pid) == Some(start)
}

fn read_exit(dir: &Path) -> Option<(i32, u64)> {
    let path = dir.join("exit_status");
    let text = std::fs::read_to_string(&path).ok()?;
    let code = text.trim().parse().ok()?;
    let at = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or_else(now_ms, |d| d.as_millis() as u64);
    Some((code, at))
}

fn wall_s(started_ms: u64, ended_ms: u64) -> u64 {
    ended_ms.saturating_sub(started_ms).div_ceil(1000).max(1)
}

impl Backend for Local {
    fn describe(&self) -> String {
        format!("local processes, {} GPU slot(s)", self.slots)
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn queues(&self) -> bool {
        false
    }

    fn ended_signal(&self) -> Option<Arc<Notify>> {
        Some(self.ended.clone())
    }

    async fn capacity(&mut self) -> Result<u32> {
        Ok(self.slots)
    }

    async fn submit(&mut self, run: &JobRun) -> Result<Handle> {
        let Some((program, args)) = run.spec.command.split_first() else {
            bail!("the job has an empty command");
        };
        // On a machine without GPUs the slots are abstract, but a job still learns its own.
        let slots: Vec<u32> = self
            .free
            .iter()
            .take(run.gpus() as usize)
            .copied()
            .collect();
        let visible = slots
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let open = |name: &str| {
            std::fs::File::create(run.dir.join(name))
                .with_context(|| format!("cannot create {}", run.dir.join(name).display()))
        };
        let (out, err) = (open("stdout")?, open("stderr")?);
        let _ = std::fs::remove_file(run.dir.join("exit_status"));
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg("aiguillage-job")
            .arg(program)
            .args(args)
            .current_dir(&run.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env("AIGUILLAGE_JOB", run.job.as_str())
            .env("AIGUILLAGE_EPOCH", run.epoch.to_string())
            .env("CUDA_VISIBLE_DEVICES", &visible)
            // Its own process group: a cancel reaches everything the job started, and a
            // signal to the node's group (Ctrl-C) does not reach the job.
            .process_group(0)
            .kill_on_drop(false);
        for e in &run.spec.env {
            cmd.env(&e.name, &e.value);
        }
        let mut child = cmd.spawn().context("cannot start sh for the job")?;
        let pid = child.id().context("the job's process ended at once")?;
        // Reap the child when it exits and wake the driver.
        let ended = self.ended.clone();
        tokio::spawn(async move {
            let _ = child.wait().await;
            ended.notify_one();
        });
        let record = RunRecord {
            pid,
            proc_start: proc_start(pid).unwrap_or(0),
            started_ms: now_ms(),
            slots,
        };
        let bytes = serde_json::to_vec(&record)?;
        crate::files::write_atomic(&run.dir.join("run.json"), &bytes)?;
        for s in &record.slots {
            self.free.remove(s);
        }
        let handle = pid.to_string();
        self.running.insert(handle.clone(), record);
        Ok(handle)
    }

    async fn status(&mut self, jobs: &[(&JobRun, &Handle)]) -> Result<Vec<Status>> {
        Ok(jobs
            .iter()
            .map(|(run, handle)| {
                let Some(p) = self.running.get(*handle) else {
                    return Status::Unknown;
                };
                if let Some((code, at)) = read_exit(&run.dir) {
                    return Status::Ended(End {
                        how: EndKind::Exited(code),
                        wall_s: wall_s(p.started_ms, at),
                    });
                }
                // Our own children are reaped by their waiter task; a zombie counts as gone.
                if !alive(p.pid, p.proc_start) {
                    // The wrapper writes the status before it exits: check once more.
                    if let Some((code, at)) = read_exit(&run.dir) {
                        return Status::Ended(End {
                            how: EndKind::Exited(code),
                            wall_s: wall_s(p.started_ms, at),
                        });
                    }
                    return Status::Ended(End {
                        how: EndKind::Killed,
                        wall_s: wall_s(p.started_ms, now_ms()),
                    });
                }
                Status::Running
            })
            .collect())
    }

    async fn cancel(&mut self, _run: &JobRun, handle: &Handle) -> Result<()> {
        let Some(p) = self.running.get(handle) else {
            return Ok(());
        };
        if !alive(p.pid, p.proc_start) {
            return Ok(());
        }
        // The wrapper leads the job's process group: signal all of it.
        let status = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", p.pid)])
            .stderr(Stdio::null())
            .status()
            .context("cannot run kill")?;
        if !status.success() && alive(p.pid, p.proc_start) {
            bail!("kill -KILL -{} failed", p.pid);
        }
        Ok(())
    }

    async fn find(&mut self, run: &JobRun) -> Result<Option<Handle>> {
        let path = run.dir.join("run.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let record: RunRecord = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a job record", path.display()))?;
        for s in &record.slots {
            if !self.free.remove(s) {
                warn!(slot = s, job = %run.job, "GPU slot recorded by two jobs");
            }
        }
        let handle = record.pid.to_string();
        self.running.insert(handle.clone(), record);
        Ok(Some(handle))
    }

    fn forget(&mut self, _run: &JobRun, handle: &Handle) {
        if let Some(p) = self.running.remove(handle) {
            self.free
                .extend(p.slots.into_iter().filter(|s| *s < self.slots));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Executor, Report};
    use super::*;
    use aiguillage_core::ExecutorEvent;
    use aiguillage_wire::{JobId, JobSpec};
    use tokio::sync::mpsc;

    fn spec(id: &str, gpus: u32, script: &str) -> JobSpec {
        super::super::test_spec(id, gpus, 5, script)
    }

    async fn next(rx: &mut mpsc::Receiver<Report>) -> (String, ExecutorEvent) {
        loop {
            match tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("an executor report within 20 s")
                .unwrap()
            {
                Report::Job { job, event, .. } => return (job.as_str().to_owned(), event),
                Report::Capacity(_) | Report::Output { .. } => {}
            }
        }
    }

    /// The end of `job`, skipping other reports.
    async fn end_of(rx: &mut mpsc::Receiver<Report>, job: &str) -> ExecutorEvent {
        loop {
            let (j, ev) = next(rx).await;
            if j == job && !matches!(ev, ExecutorEvent::Started | ExecutorEvent::Queued { .. }) {
                return ev;
            }
        }
    }

    fn read(dir: &Path, job: &str, file: &str) -> String {
        let slug = format!("{}-e0", job.replace('/', "_"));
        std::fs::read_to_string(dir.join(slug).join(file))
            .unwrap()
            .trim()
            .to_owned()
    }

    #[tokio::test]
    async fn slots_exit_codes_queue_cancel_and_time_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let ex = Executor::spawn(Local::new(3), dir.path().to_path_buf(), tx);
        let j = |s: &str| JobId::new(s).unwrap();
        ex.start(
            j("a/1"),
            0,
            spec("a/1", 2, "echo $CUDA_VISIBLE_DEVICES > gpus; sleep 0.5"),
        );
        ex.start(
            j("a/2"),
            0,
            spec(
                "a/2",
                1,
                "echo $CUDA_VISIBLE_DEVICES > gpus; sleep 0.2; exit 3",
            ),
        );
        // Needs all three slots: waits in the queue until both are done, and says so.
        ex.start(
            j("a/3"),
            0,
            spec("a/3", 3, "echo $CUDA_VISIBLE_DEVICES > gpus"),
        );
        loop {
            match next(&mut rx).await {
                (_, ExecutorEvent::Started) => continue,
                (job, ExecutorEvent::Queued { reason }) => {
                    assert_eq!(job, "a/3");
                    assert_eq!(reason, "waiting for 3 GPU(s); 3 of 3 in use");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            end_of(&mut rx, "a/2").await,
            ExecutorEvent::Finished {
                exit_code: 3,
                gpu_seconds: 1
            }
        ));
        assert!(
            !dir.path().join("a_3-e0").join("gpus").exists(),
            "a/3 must queue"
        );
        assert!(matches!(
            end_of(&mut rx, "a/1").await,
            ExecutorEvent::Finished {
                exit_code: 0,
                gpu_seconds: 2
            }
        ));
        assert!(matches!(
            end_of(&mut rx, "a/3").await,
            ExecutorEvent::Finished { exit_code: 0, .. }
        ));
        assert_eq!(read(dir.path(), "a/1", "gpus"), "0,1");
        assert_eq!(read(dir.path(), "a/2", "gpus"), "2");
        assert_eq!(read(dir.path(), "a/3", "gpus"), "0,1,2");

        // Cancel kills the whole process group, grandchildren included.
        ex.start(
            j("a/4"),
            0,
            spec("a/4", 1, "sleep 300 & echo $! > child; wait"),
        );
        let (job, ev) = next(&mut rx).await;
        assert_eq!((job.as_str(), &ev), ("a/4", &ExecutorEvent::Started));
        let child_pid = loop {
            if let Ok(s) = std::fs::read_to_string(dir.path().join("a_4-e0/child"))
                && !s.trim().is_empty()
            {
                break s.trim().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        ex.cancel(j("a/4"), 0);
        assert!(matches!(
            end_of(&mut rx, "a/4").await,
            ExecutorEvent::Cancelled { .. }
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stat = std::fs::read_to_string(format!("/proc/{child_pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "the job's grandchild survived the cancel: {stat}"
        );

        ex.start(j("a/5"), 0, {
            let mut s = spec("a/5", 1, "sleep 30");
            s.requirements.time_limit_s = 1;
            s
        });
        assert!(matches!(
            end_of(&mut rx, "a/5").await,
            ExecutorEvent::TimedOut { .. }
        ));
        ex.start(j("a/6"), 0, {
            let mut s = spec("a/6", 0, "");
            s.command = vec!["/nonexistent/program".into()];
            s
        });
        assert!(matches!(
            end_of(&mut rx, "a/6").await,
            ExecutorEvent::Finished { exit_code: 127, .. }
        ));
    }

    #[tokio::test]
    async fn a_new_executor_reconciles_jobs_from_an_earlier_life() {
        let dir = tempfile::tempdir().unwrap();
        let j = |s: &str| JobId::new(s).unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let first = Executor::spawn(Local::new(4), dir.path().to_path_buf(), tx);
        first.start(j("b/1"), 0, spec("b/1", 1, "sleep 0.3; exit 7"));
        first.start(j("b/2"), 0, spec("b/2", 1, "sleep 1; exit 4"));
        first.start(j("b/3"), 0, spec("b/3", 1, "sleep 300"));
        for _ in 0..3 {
            assert_eq!(next(&mut rx).await.1, ExecutorEvent::Started);
        }
        // The node dies: its executor stops following the jobs, which keep running.
        drop(first);
        drop(rx);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // b/3's process vanishes while nobody watches.
        let pid: u32 = serde_json::from_slice::<RunRecord>(
            &std::fs::read(dir.path().join("b_3-e0/run.json")).unwrap(),
        )
        .unwrap()
        .pid;
        std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status()
            .unwrap();

        let (tx, mut rx) = mpsc::channel(64);
        let second = Executor::spawn(Local::new(4), dir.path().to_path_buf(), tx);
        second.recover(vec![
            (j("b/1"), 0, spec("b/1", 1, "exit 7"), true),
            (j("b/2"), 0, spec("b/2", 1, "sleep 1; exit 4"), true),
            (j("b/3"), 0, spec("b/3", 1, "sleep 300"), true),
            // Never started before the restart: started now.
            (j("b/4"), 0, spec("b/4", 1, "exit 0"), false),
        ]);
        let mut ends = BTreeSet::new();
        while ends.len() < 4 {
            let (job, ev) = next(&mut rx).await;
            if ev == ExecutorEvent::Started {
                assert_eq!(job, "b/4", "only the new job starts");
                continue;
            }
            let summary = match ev {
                ExecutorEvent::Finished { exit_code, .. } => format!("{job} exit {exit_code}"),
                ExecutorEvent::Failed { reason, .. } => format!("{job} failed: {reason}"),
                other => format!("{job} {other:?}"),
            };
            ends.insert(summary);
        }
        let ends: Vec<_> = ends.into_iter().collect();
        assert_eq!(ends[0], "b/1 exit 7");
        assert_eq!(ends[1], "b/2 exit 4");
        assert!(ends[2].starts_with("b/3 failed: "), "{}", ends[2]);
        assert_eq!(ends[3], "b/4 exit 0");
    }
}
