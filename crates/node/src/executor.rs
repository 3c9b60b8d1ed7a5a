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

/// A running job: the way to cancel it (until used) and the GPU slots it holds.
struct Running {
    cancel: Option<oneshot::Sender<()>>,
    slots: Vec<u32>,
}

pub struct LocalExecutor {
    root: PathBuf,
    events: mpsc::Sender<ExecutorReport>,
    running: HashMap<(JobId, u64), Running>,
    /// GPU slot ids not given to a running job. On a machine without GPUs they are abstract,
    /// but a job still learns its own through CUDA_VISIBLE_DEVICES.
    free_slots: std::collections::BTreeSet<u32>,
}

impl LocalExecutor {
    pub fn new(root: PathBuf, gpus: u32, events: mpsc::Sender<ExecutorReport>) -> LocalExecutor {
        LocalExecutor {
            root,
            events,
            running: HashMap::new(),
            free_slots: (0..gpus).collect(),
        }
    }

    pub fn start(&mut self, job: JobId, epoch: u64, spec: JobSpec) {
        let dir = self
            .root
            .join(format!("{}-{epoch}", job.as_str().replace(['/', ':'], "_")));
        let (cancel_tx, cancel_rx) = oneshot::channel();
        // The core never starts more GPUs than the node has, so the slots are there.
        let slots: Vec<u32> = self
            .free_slots
            .iter()
            .take(spec.requirements.gpus as usize)
            .copied()
            .collect();
        for s in &slots {
            self.free_slots.remove(s);
        }
        let visible = slots
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        self.running.insert(
            (job.clone(), epoch),
            Running {
                cancel: Some(cancel_tx),
                slots,
            },
        );
        let events = self.events.clone();
        tokio::spawn(async move {
            let event = run(&dir, &job, epoch, &spec, &visible, cancel_rx, &events).await;
            let _ = events.send((job, epoch, event)).await;
        });
    }

    pub fn cancel(&mut self, job: &JobId, epoch: u64) {
        // The slots come back when the job reports its end.
        if let Some(r) = self.running.get_mut(&(job.clone(), epoch))
            && let Some(tx) = r.cancel.take()
        {
            let _ = tx.send(());
        }
    }

    /// Forgets a job that reported its end and frees its GPU slots.
    pub fn finished(&mut self, job: &JobId, epoch: u64) {
        if let Some(r) = self.running.remove(&(job.clone(), epoch)) {
            self.free_slots.extend(r.slots);
        }
    }
}

async fn run(
    dir: &std::path::Path,
    job: &JobId,
    epoch: u64,
    spec: &JobSpec,
    visible_devices: &str,
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
        .env("CUDA_VISIBLE_DEVICES", visible_devices)
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

#[cfg(test)]
mod tests {
    use super::*;
    use aiguillage_wire::{JobRequirements, Timestamp};

    fn spec(id: &str, gpus: u32, script: &str) -> JobSpec {
        JobSpec {
            job: JobId::new(id).unwrap(),
            requirements: JobRequirements {
                gpus,
                time_limit_s: 5,
                accelerator: None,
                latest_start: Timestamp(u64::MAX),
                residency: vec![],
                priority: 0,
            },
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![],
        }
    }

    async fn end(
        rx: &mut mpsc::Receiver<ExecutorReport>,
        ex: &mut LocalExecutor,
    ) -> (JobId, ExecutorEvent) {
        loop {
            let (job, epoch, ev) = rx.recv().await.unwrap();
            if !matches!(ev, ExecutorEvent::Started) {
                ex.finished(&job, epoch);
                return (job, ev);
            }
        }
    }

    #[tokio::test]
    async fn jobs_get_distinct_gpu_slots_exit_codes_and_time_limits() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let mut ex = LocalExecutor::new(dir.path().to_path_buf(), 3, tx);
        ex.start(
            JobId::new("a/1").unwrap(),
            0,
            spec("a/1", 2, "echo $CUDA_VISIBLE_DEVICES > gpus; sleep 0.3"),
        );
        ex.start(
            JobId::new("a/2").unwrap(),
            0,
            spec("a/2", 1, "echo $CUDA_VISIBLE_DEVICES > gpus; exit 3"),
        );
        let mut ends = [end(&mut rx, &mut ex).await, end(&mut rx, &mut ex).await];
        ends.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(
            matches!(ends[0].1, ExecutorEvent::Finished { exit_code: 0, .. }),
            "{:?}",
            ends[0]
        );
        assert!(
            matches!(ends[1].1, ExecutorEvent::Finished { exit_code: 3, .. }),
            "{:?}",
            ends[1]
        );
        let read = |j: &str| {
            std::fs::read_to_string(dir.path().join(format!("{j}-0/gpus")))
                .unwrap()
                .trim()
                .to_owned()
        };
        assert_eq!(read("a_1"), "0,1");
        assert_eq!(read("a_2"), "2");
        // Slots come back: a new 3-GPU job gets all of them.
        ex.start(
            JobId::new("a/3").unwrap(),
            0,
            spec("a/3", 3, "echo $CUDA_VISIBLE_DEVICES > gpus; sleep 30"),
        );
        ex.cancel(&JobId::new("a/3").unwrap(), 0);
        let (_, ev) = end(&mut rx, &mut ex).await;
        assert!(matches!(ev, ExecutorEvent::Cancelled { .. }), "{ev:?}");
        ex.start(JobId::new("a/4").unwrap(), 0, {
            let mut s = spec("a/4", 1, "sleep 30");
            s.requirements.time_limit_s = 1;
            s
        });
        let (_, ev) = end(&mut rx, &mut ex).await;
        assert!(matches!(ev, ExecutorEvent::TimedOut { .. }), "{ev:?}");
    }
}
