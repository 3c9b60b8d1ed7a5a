//! Executors run the GPU jobs this member hosts or runs for itself.
//!
//! A [`Backend`] knows one way of running a job: the embedded local-process backend
//! ([`local::Local`]) or a real Slurm cluster ([`slurm::Slurm`]). Its interface is the one a
//! scheduler offers: submit a job and get a handle, ask for the status of handles, cancel a
//! handle, find a job again by its name after a restart, and say how many GPUs it really has.
//!
//! The [`Executor`] drives a backend in its own task, so that slow scheduler commands never
//! hold up the node's event loop. The node sends it `start`/`cancel`/`recover` commands and
//! receives [`Report`]s: a job started, ended (with exit code and usage), or the capacity
//! changed. The driver also owns what every backend needs the same way: a queue when the
//! backend does not queue itself, the time limit, confirming that a cancel took effect, and
//! turning "the job is gone" into an explicit failure rather than silence.

pub mod local;
pub mod slurm;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aiguillage_core::ExecutorEvent;
use aiguillage_wire::{JobId, JobSpec, MemberId};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// Which backend a node runs jobs on (`[executor]` in node.toml).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExecutorConfig {
    /// Child processes on this machine, with the node's `gpus` as slots.
    #[default]
    Local,
    Slurm(slurm::SlurmConfig),
}

/// One job as the executor runs it.
#[derive(Clone, Debug)]
pub struct JobRun {
    pub job: JobId,
    /// The lease epoch (0 for the member's own jobs).
    pub epoch: u64,
    pub spec: JobSpec,
    /// The job's own folder: working directory, stdout, stderr, backend records.
    pub dir: PathBuf,
    /// A name unique to this node's job store, carrying the job id and epoch; Slurm jobs
    /// are found again by it after a restart.
    pub name: String,
}

impl JobRun {
    pub fn gpus(&self) -> u32 {
        self.spec.requirements.gpus
    }
}

/// A backend's reference to a submitted job (a process id, a Slurm job id).
pub type Handle = String;

/// What a backend says about a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting in the backend's queue, with the backend's reason (e.g. Slurm's `Resources`).
    Queued(String),
    Running,
    Ended(End),
    /// The backend has no record of the handle.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    pub how: EndKind,
    /// Wall-clock seconds the job ran.
    pub wall_s: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndKind {
    Exited(i32),
    Cancelled,
    TimedOut,
    /// Killed or lost without an exit status: cancelled if we asked, failed otherwise.
    Killed,
    Failed(String),
}

/// One way of running jobs.
pub trait Backend: Send + 'static {
    /// For logs: "local (4 slots)", "slurm partition debug".
    fn describe(&self) -> String;
    /// How often the driver asks for the status of running jobs.
    fn poll_interval(&self) -> Duration;
    /// Whether the backend queues jobs beyond its capacity itself (a scheduler does).
    fn queues(&self) -> bool;
    /// Signalled when a job may have ended, for backends that learn it before a poll would.
    fn ended_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
    /// GPUs the backend can give jobs now, all running jobs included.
    fn capacity(&mut self) -> impl Future<Output = Result<u32>> + Send;
    fn submit(&mut self, run: &JobRun) -> impl Future<Output = Result<Handle>> + Send;
    /// The status of each handle, in order.
    fn status(
        &mut self,
        jobs: &[(&JobRun, &Handle)],
    ) -> impl Future<Output = Result<Vec<Status>>> + Send;
    /// Asks the job to stop. The driver confirms it through `status`.
    fn cancel(&mut self, run: &JobRun, handle: &Handle) -> impl Future<Output = Result<()>> + Send;
    /// After a restart: the job submitted for `run` before, if the backend still knows it.
    fn find(&mut self, run: &JobRun) -> impl Future<Output = Result<Option<Handle>>> + Send;
    /// The job's end was reported; release what it held.
    fn forget(&mut self, run: &JobRun, handle: &Handle);
}

/// What the executor tells the node.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    Job {
        job: JobId,
        epoch: u64,
        event: ExecutorEvent,
    },
    /// The GPUs the backend really has changed (also sent once at start).
    Capacity(u32),
    /// The end of a hosted job's output, read for `to`, its origin.
    Output {
        to: MemberId,
        output: aiguillage_wire::JobOutput,
    },
}

enum Command {
    Start {
        job: JobId,
        epoch: u64,
        spec: JobSpec,
    },
    Cancel {
        job: JobId,
        epoch: u64,
    },
    /// Jobs the node believed running when it stopped; `started` if it had heard so. The
    /// sender is told once every job is found again and polled once.
    Recover(Vec<(JobId, u64, JobSpec, bool)>, oneshot::Sender<()>),
}

/// The last `max` bytes of a regular file and its size; nothing for a file not written
/// yet, a symbolic link or anything else. A job runs as the node's user and could replace
/// its output with a link to the node's key: links are never followed.
pub fn tail(path: &Path, max: usize) -> (Vec<u8>, u64) {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    else {
        return (Vec::new(), 0);
    };
    let Ok(meta) = f.metadata() else {
        return (Vec::new(), 0);
    };
    if !meta.file_type().is_file() {
        return (Vec::new(), 0);
    }
    let start = meta.len().saturating_sub(max as u64);
    let mut out = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_ok() {
        let _ = f.take(max as u64).read_to_end(&mut out);
    }
    // A running job may have written more since the size was read.
    let size = meta.len().max(start + out.len() as u64);
    (out, size)
}

/// The end of the stdout and stderr of the job run under `epoch` in folder `root`; empty
/// when the job's folder is not a plain folder (a job replaced it with a link).
pub fn job_output(root: &Path, job: &JobId, epoch: u64, max: usize) -> aiguillage_wire::JobOutput {
    let dir = root.join(job_slug(job, epoch));
    let plain = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_dir());
    let (stdout, stdout_size) = if plain {
        tail(&dir.join("stdout"), max)
    } else {
        (Vec::new(), 0)
    };
    let (stderr, stderr_size) = if plain {
        tail(&dir.join("stderr"), max)
    } else {
        (Vec::new(), 0)
    };
    aiguillage_wire::JobOutput {
        job: job.clone(),
        epoch,
        stdout,
        stdout_size,
        stderr,
        stderr_size,
    }
}

/// The node's handle on its executor task.
#[derive(Clone)]
pub struct Executor {
    commands: mpsc::UnboundedSender<Command>,
    root: PathBuf,
    reports: mpsc::Sender<Report>,
}

impl Executor {
    /// Starts the driver task for `backend`; job folders go under `root`.
    pub fn spawn<B: Backend>(backend: B, root: PathBuf, reports: mpsc::Sender<Report>) -> Executor {
        let (tx, rx) = mpsc::unbounded_channel();
        let instance = instance_id(&root);
        info!(backend = %backend.describe(), "executor ready");
        let handle = Executor {
            commands: tx,
            root: root.clone(),
            reports: reports.clone(),
        };
        tokio::spawn(
            Driver {
                backend,
                root,
                instance,
                reports,
                jobs: BTreeMap::new(),
                waiting: VecDeque::new(),
                capacity: None,
                capacity_checked: None,
            }
            .run(rx),
        );
        handle
    }

    /// The folder jobs run in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads the end of a job's output off the node's loop and reports it for `to`.
    pub fn read_output(&self, job: JobId, epoch: u64, to: MemberId, max_bytes: u32) {
        let root = self.root.clone();
        let reports = self.reports.clone();
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                job_output(&root, &job, epoch, max_bytes as usize)
            })
            .await;
            if let Ok(output) = read {
                let _ = reports.send(Report::Output { to, output }).await;
            }
        });
    }

    pub fn start(&self, job: JobId, epoch: u64, spec: JobSpec) {
        let _ = self.commands.send(Command::Start { job, epoch, spec });
    }

    pub fn cancel(&self, job: JobId, epoch: u64) {
        let _ = self.commands.send(Command::Cancel { job, epoch });
    }

    /// Finds the jobs of an earlier life again. The receiver fires once each has been
    /// found and polled, so their reports (ended while the node was down, say) are queued
    /// before it: a node applies them before it announces itself.
    pub fn recover(&self, jobs: Vec<(JobId, u64, JobSpec, bool)>) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Recover(jobs, tx));
        rx
    }
}

/// A per-store identifier in every job name, so that two nodes sharing one Slurm (or one
/// node's earlier life with another store) never mistake each other's jobs.
fn instance_id(root: &Path) -> String {
    let path = root.join("instance");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if !s.is_empty() {
            return s.to_owned();
        }
    }
    let id = format!("{:08x}", rand::random::<u32>());
    if let Err(e) = std::fs::create_dir_all(root).and_then(|()| std::fs::write(&path, &id)) {
        warn!(
            "cannot record the executor instance in {}: {e}",
            path.display()
        );
    }
    id
}

/// A file-system and scheduler friendly form of a job id.
pub fn job_slug(job: &JobId, epoch: u64) -> String {
    let mut s: String = job
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.push_str(&format!("-e{epoch}"));
    s
}

struct Tracked {
    run: JobRun,
    handle: Option<Handle>,
    /// When the driver first saw the job running, or took it over already running (the
    /// time limit counts from here); `Some` once the job was reported started.
    running_since: Option<Instant>,
    /// Why the driver asked the backend to stop it, and when it last asked.
    stopping: Option<(Stop, Instant)>,
    unknown_polls: u32,
    /// The job was reported queued (once is enough).
    queued_reported: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Cancel,
    TimeLimit,
}

struct Driver<B> {
    backend: B,
    root: PathBuf,
    instance: String,
    reports: mpsc::Sender<Report>,
    jobs: BTreeMap<(JobId, u64), Tracked>,
    /// Jobs waiting for GPUs, for backends that do not queue.
    waiting: VecDeque<(JobId, u64)>,
    capacity: Option<u32>,
    capacity_checked: Option<Instant>,
}

/// A cancel not confirmed by the backend after this long is sent again.
const CANCEL_RETRY: Duration = Duration::from_secs(10);
/// The backend's capacity is read again this often.
const CAPACITY_EVERY: Duration = Duration::from_secs(30);
/// Polls in a row that find no record of a submitted job before it is reported failed.
const UNKNOWN_POLLS: u32 = 3;

impl<B: Backend> Driver<B> {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        self.refresh_capacity().await;
        let mut tick = tokio::time::interval(self.backend.poll_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = self.backend.ended_signal();
        loop {
            let ended_now = async {
                match &ended {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await,
                    None => return, // the node is gone; jobs keep running for its next life
                },
                _ = tick.tick() => self.poll().await,
                () = ended_now => self.poll().await,
            }
        }
    }

    fn make_run(&self, job: JobId, epoch: u64, spec: JobSpec) -> JobRun {
        let slug = job_slug(&job, epoch);
        JobRun {
            dir: self.root.join(&slug),
            name: format!("aig-{}-{slug}", self.instance),
            job,
            epoch,
            spec,
        }
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Start { job, epoch, spec } => {
                let key = (job.clone(), epoch);
                if self.jobs.contains_key(&key) {
                    return; // already submitted: a repeated start is a no-op
                }
                let run = self.make_run(job, epoch, spec);
                self.track(run, None, false);
                self.waiting.push_back(key);
                self.launch_waiting().await;
            }
            Command::Cancel { job, epoch } => self.cancel(job, epoch).await,
            Command::Recover(jobs, done) => {
                for (job, epoch, spec, started) in jobs {
                    let run = self.make_run(job.clone(), epoch, spec);
                    match self.backend.find(&run).await {
                        Ok(Some(handle)) => {
                            info!(%job, epoch, %handle, "found the job again after a restart");
                            self.track(run, Some(handle), started);
                        }
                        Ok(None) => {
                            // Never submitted (the node stopped between deciding and
                            // submitting): submit it now.
                            self.track(run, None, false);
                            self.waiting.push_back((job, epoch));
                        }
                        Err(e) => {
                            self.report(
                                &job,
                                epoch,
                                ExecutorEvent::Failed {
                                    reason: format!("cannot find the job after a restart: {e:#}"),
                                    gpu_seconds: 0,
                                },
                            )
                            .await;
                        }
                    }
                }
                self.launch_waiting().await;
                self.poll().await;
                let _ = done.send(());
            }
        }
    }

    fn track(&mut self, run: JobRun, handle: Option<Handle>, started: bool) {
        let key = (run.job.clone(), run.epoch);
        self.jobs.insert(
            key,
            Tracked {
                running_since: started.then(Instant::now),
                run,
                handle,
                stopping: None,
                unknown_polls: 0,
                queued_reported: false,
            },
        );
    }

    /// GPUs held by submitted jobs (for backends without their own queue).
    fn gpus_in_use(&self) -> u32 {
        self.jobs
            .values()
            .filter(|t| t.handle.is_some())
            .map(|t| t.run.gpus())
            .sum()
    }

    async fn launch_waiting(&mut self) {
        while let Some(key) = self.waiting.front().cloned() {
            let Some(t) = self.jobs.get(&key) else {
                self.waiting.pop_front();
                continue;
            };
            let in_use = self.gpus_in_use();
            if !self.backend.queues()
                && in_use + t.run.gpus() > self.capacity.unwrap_or(0)
                && in_use > 0
            {
                // FIFO: wait for GPUs to free up.
                if !t.queued_reported {
                    let reason = format!(
                        "waiting for {} GPU(s); {in_use} of {} in use",
                        t.run.gpus(),
                        self.capacity.unwrap_or(0)
                    );
                    if let Some(t) = self.jobs.get_mut(&key) {
                        t.queued_reported = true;
                    }
                    self.report(&key.0, key.1, ExecutorEvent::Queued { reason })
                        .await;
                }
                return;
            }
            self.waiting.pop_front();
            let run = t.run.clone();
            if let Err(e) = std::fs::create_dir_all(&run.dir) {
                self.end(
                    &key,
                    EndKind::Failed(format!("cannot create {}: {e}", run.dir.display())),
                    0,
                )
                .await;
                continue;
            }
            match self.backend.submit(&run).await {
                Ok(handle) => {
                    info!(job = %run.job, epoch = run.epoch, %handle, "job submitted");
                    if let Some(t) = self.jobs.get_mut(&key) {
                        t.handle = Some(handle);
                    }
                }
                Err(e) => {
                    self.end(&key, EndKind::Failed(format!("{e:#}")), 0).await;
                }
            }
        }
    }

    async fn cancel(&mut self, job: JobId, epoch: u64) {
        let key = (job, epoch);
        let Some(t) = self.jobs.get_mut(&key) else {
            return;
        };
        match t.handle.clone() {
            None => {
                self.waiting.retain(|k| k != &key);
                self.end(&key, EndKind::Cancelled, 0).await;
            }
            Some(handle) => {
                t.stopping = Some((Stop::Cancel, Instant::now()));
                let run = t.run.clone();
                if let Err(e) = self.backend.cancel(&run, &handle).await {
                    warn!(job = %run.job, epoch, "cancel failed, will retry: {e:#}");
                }
                self.poll().await;
            }
        }
    }

    async fn poll(&mut self) {
        if self
            .capacity_checked
            .is_none_or(|t| t.elapsed() >= CAPACITY_EVERY)
        {
            self.refresh_capacity().await;
        }
        let keys: Vec<_> = self
            .jobs
            .iter()
            .filter(|(_, t)| t.handle.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return;
        }
        let statuses = {
            let pairs: Vec<(&JobRun, &Handle)> = keys
                .iter()
                .filter_map(|k| self.jobs.get(k))
                .filter_map(|t| t.handle.as_ref().map(|h| (&t.run, h)))
                .collect();
            match self.backend.status(&pairs).await {
                Ok(s) => s,
                Err(e) => {
                    warn!("cannot read job status, will retry: {e:#}");
                    return;
                }
            }
        };
        for (key, status) in keys.into_iter().zip(statuses) {
            self.observe(&key, status).await;
        }
        self.launch_waiting().await;
    }

    async fn observe(&mut self, key: &(JobId, u64), status: Status) {
        let Some(t) = self.jobs.get_mut(key) else {
            return;
        };
        if status != Status::Unknown {
            t.unknown_polls = 0;
        }
        match status {
            Status::Queued(reason) => {
                if !t.queued_reported {
                    t.queued_reported = true;
                    self.report(&key.0, key.1, ExecutorEvent::Queued { reason })
                        .await;
                }
            }
            Status::Running => {
                let since = match t.running_since {
                    Some(since) => since,
                    None => {
                        let now = Instant::now();
                        t.running_since = Some(now);
                        self.report(&key.0, key.1, ExecutorEvent::Started).await;
                        now
                    }
                };
                self.enforce(key, since).await;
            }
            Status::Ended(end) => {
                let how = match (end.how, t.stopping.map(|(s, _)| s)) {
                    // A job we stopped for its time limit ends as timed out, however the
                    // backend words it.
                    (EndKind::Killed | EndKind::Cancelled, Some(Stop::TimeLimit)) => {
                        EndKind::TimedOut
                    }
                    (EndKind::Killed, Some(Stop::Cancel)) => EndKind::Cancelled,
                    (EndKind::Killed, None) => EndKind::Failed(
                        "the job's process ended without an exit status (killed outside the node)"
                            .into(),
                    ),
                    (how, _) => how,
                };
                // A job that ended between two polls still ran: say so first.
                if t.running_since.is_none()
                    && matches!(how, EndKind::Exited(_) | EndKind::TimedOut)
                {
                    self.report(&key.0, key.1, ExecutorEvent::Started).await;
                }
                self.end(key, how, end.wall_s).await;
            }
            Status::Unknown => {
                t.unknown_polls += 1;
                if t.stopping.is_some_and(|(s, _)| s == Stop::Cancel) {
                    self.end(key, EndKind::Cancelled, 0).await;
                } else if t.unknown_polls >= UNKNOWN_POLLS {
                    let reason = format!(
                        "the executor has no record of job {} any more",
                        t.handle.as_deref().unwrap_or("?")
                    );
                    self.end(key, EndKind::Failed(reason), 0).await;
                }
            }
        }
    }

    /// Stops a job past its time limit, and re-sends cancels the backend did not act on.
    async fn enforce(&mut self, key: &(JobId, u64), since: Instant) {
        let Some(t) = self.jobs.get_mut(key) else {
            return;
        };
        let limit = Duration::from_secs(t.run.spec.requirements.time_limit_s.max(1));
        let why = match t.stopping {
            Some((why, at)) if at.elapsed() >= CANCEL_RETRY => why,
            Some(_) => return,
            None if since.elapsed() >= limit => Stop::TimeLimit,
            None => return,
        };
        t.stopping = Some((why, Instant::now()));
        let (run, handle) = (t.run.clone(), t.handle.clone());
        if let Some(handle) = handle
            && let Err(e) = self.backend.cancel(&run, &handle).await
        {
            warn!(job = %run.job, "cannot stop the job, will retry: {e:#}");
        }
    }

    async fn end(&mut self, key: &(JobId, u64), how: EndKind, wall_s: u64) {
        let Some(t) = self.jobs.remove(key) else {
            return;
        };
        if let Some(h) = &t.handle {
            self.backend.forget(&t.run, h);
        }
        let gpu_seconds = u64::from(t.run.gpus()) * wall_s;
        let event = match how {
            EndKind::Exited(exit_code) => ExecutorEvent::Finished {
                exit_code,
                gpu_seconds,
            },
            EndKind::Cancelled | EndKind::Killed => ExecutorEvent::Cancelled { gpu_seconds },
            EndKind::TimedOut => ExecutorEvent::TimedOut { gpu_seconds },
            EndKind::Failed(reason) => ExecutorEvent::Failed {
                reason,
                gpu_seconds,
            },
        };
        info!(job = %key.0, epoch = key.1, ?event, "job ended");
        self.report(&key.0, key.1, event).await;
    }

    async fn report(&mut self, job: &JobId, epoch: u64, event: ExecutorEvent) {
        let _ = self
            .reports
            .send(Report::Job {
                job: job.clone(),
                epoch,
                event,
            })
            .await;
    }

    async fn refresh_capacity(&mut self) {
        self.capacity_checked = Some(Instant::now());
        match self.backend.capacity().await {
            Ok(gpus) if Some(gpus) != self.capacity => {
                info!(gpus, backend = %self.backend.describe(), "executor capacity");
                self.capacity = Some(gpus);
                let _ = self.reports.send(Report::Capacity(gpus)).await;
            }
            Ok(_) => {}
            Err(e) => warn!("cannot read the executor's capacity: {e:#}"),
        }
    }
}

/// Runs `cmd` with a deadline: scheduler commands hang for seconds when a controller is down.
pub(crate) async fn run_command(
    cmd: &mut tokio::process::Command,
    what: &str,
    timeout: Duration,
) -> Result<std::process::Output> {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(anyhow::anyhow!("cannot run {what}: {e}")),
        Err(_) => Err(anyhow::anyhow!("{what} did not answer within {timeout:?}")),
    }
}

/// A job running `sh -c script` with `gpus` GPUs, for the executor tests.
#[cfg(test)]
fn test_spec(id: &str, gpus: u32, time_limit_s: u64, script: &str) -> JobSpec {
    JobSpec {
        job: JobId::new(id).unwrap(),
        requirements: aiguillage_wire::JobRequirements {
            gpus,
            time_limit_s,
            accelerator: None,
            latest_start: aiguillage_wire::Timestamp(u64::MAX),
            residency: vec![],
            priority: 0,
        },
        command: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![],
    }
}

#[cfg(test)]
mod output_tests {
    use super::*;

    #[test]
    fn a_jobs_output_is_read_from_its_end_and_links_are_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let job = JobId::new("lu-l-aif/7").unwrap();
        let dir = root.path().join(job_slug(&job, 1));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stdout"), "0123456789").unwrap();
        let secret = root.path().join("key.pem");
        std::fs::write(&secret, "SECRET").unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("stderr")).unwrap();
        let out = job_output(root.path(), &job, 1, 4);
        assert_eq!(out.stdout, b"6789");
        assert_eq!(out.stdout_size, 10);
        assert!(
            out.stderr.is_empty() && out.stderr_size == 0,
            "a link is not read"
        );
        // A folder replaced by a link to elsewhere is not read either.
        let other = JobId::new("lu-l-aif/8").unwrap();
        std::os::unix::fs::symlink(&dir, root.path().join(job_slug(&other, 1))).unwrap();
        let out = job_output(root.path(), &other, 1, 4);
        assert!(out.stdout.is_empty() && out.stdout_size == 0);
    }
}
