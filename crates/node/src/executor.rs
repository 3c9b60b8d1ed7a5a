//! The embedded local-process executor: runs a job's command as a child process in its
//! own folder, enforces its time limit, and reports events back to the node.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aiguillage_core::ExecutorEvent;
use aiguillage_wire::{JobId, JobSpec};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

pub type ExecutorReport = (JobId, u64, ExecutorEvent);

pub struct LocalExecutor {
    root: PathBuf,
    events: mpsc::Sender<ExecutorReport>,
    running: HashMap<(JobId, u64), oneshot::Sender<()>>,
}

impl LocalExecutor {
    pub fn new(root: PathBuf, events: mpsc::Sender<ExecutorReport>) -> LocalExecutor {
        LocalExecutor {
            root,
            events,
            running: HashMap::new(),
        }
    }

    pub fn start(&mut self, job: JobId, epoch: u64, spec: JobSpec) {
        let dir = self
            .root
            .join(format!("{}-{epoch}", job.as_str().replace(['/', ':'], "_")));
        let (cancel_tx, cancel_rx) = oneshot::channel();
        self.running.insert((job.clone(), epoch), cancel_tx);
        let events = self.events.clone();
        tokio::spawn(async move {
            let event = run(&dir, &job, epoch, &spec, cancel_rx, &events).await;
            let _ = events.send((job, epoch, event)).await;
        });
    }

    pub fn cancel(&mut self, job: &JobId, epoch: u64) {
        if let Some(tx) = self.running.remove(&(job.clone(), epoch)) {
            let _ = tx.send(());
        }
    }

    /// Forgets a job that reported its end.
    pub fn finished(&mut self, job: &JobId, epoch: u64) {
        self.running.remove(&(job.clone(), epoch));
    }
}

async fn run(
    dir: &std::path::Path,
    job: &JobId,
    epoch: u64,
    spec: &JobSpec,
    cancel: oneshot::Receiver<()>,
    events: &mpsc::Sender<ExecutorReport>,
) -> ExecutorEvent {
    let gpus = u64::from(spec.requirements.gpus);
    let failed = |reason: String| ExecutorEvent::Failed {
        reason,
        gpu_seconds: 0,
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        return failed(format!("cannot create {}: {e}", dir.display()));
    }
    let Some((program, args)) = spec.command.split_first() else {
        return failed("empty command".into());
    };
    let open = |name: &str| std::fs::File::create(dir.join(name));
    let (Ok(out), Ok(err)) = (open("stdout"), open("stderr")) else {
        return failed(format!("cannot create output files in {}", dir.display()));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("AIGUILLAGE_JOB", job.as_str())
        .env("AIGUILLAGE_EPOCH", epoch.to_string())
        .kill_on_drop(true)
        .process_group(0);
    for e in &spec.env {
        cmd.env(&e.name, &e.value);
    }
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start {program:?}: {e}")),
    };
    let _ = events
        .send((job.clone(), epoch, ExecutorEvent::Started))
        .await;
    let used = |started: Instant| gpus * started.elapsed().as_secs().max(1);
    let limit = Duration::from_secs(spec.requirements.time_limit_s.max(1));
    tokio::select! {
        status = child.wait() => match status {
            Ok(s) => ExecutorEvent::Finished {
                exit_code: s.code().unwrap_or(128),
                gpu_seconds: used(started),
            },
            Err(e) => ExecutorEvent::Failed { reason: e.to_string(), gpu_seconds: used(started) },
        },
        _ = tokio::time::sleep(limit) => {
            kill(&mut child).await;
            ExecutorEvent::TimedOut { gpu_seconds: used(started) }
        }
        _ = cancel => {
            kill(&mut child).await;
            ExecutorEvent::Cancelled { gpu_seconds: used(started) }
        }
    }
}

/// Kills the job's whole process group, then reaps the child.
async fn kill(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // The child leads its own process group (process_group(0)); signal all of it.
        let status = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        if status.is_err() {
            warn!(pid, "could not signal the job's process group");
        }
    }
    let _ = child.kill().await;
}
