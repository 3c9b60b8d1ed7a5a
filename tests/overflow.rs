//! GPU overflow end to end: real node processes on loopback, a full factory, hosts that run
//! jobs on a real Slurm (scripts/slurm-up.sh) and on local processes.
//!
//! In every test Luxembourg (lu-l-aif) has no GPUs, Jülich (de-jaif) runs its jobs on the
//! machine's Slurm and IT4LIA (it-it4lia) on local processes.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::Devnet;

const A: &str = "lu-l-aif";
const B_SLURM: &str = "de-jaif";
const C_LOCAL: &str = "it-it4lia";

/// The devnet, and on drop, the Slurm jobs its members left behind.
struct Federation(Devnet);

impl std::ops::Deref for Federation {
    type Target = Devnet;
    fn deref(&self) -> &Devnet {
        &self.0
    }
}

impl std::ops::DerefMut for Federation {
    fn deref_mut(&mut self) -> &mut Devnet {
        &mut self.0
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        // Jobs outlive their node by design (a restarted node finds them again); a test's
        // must not outlive the test. Job names start with `aig-<instance>-`.
        let Ok(instance) =
            std::fs::read_to_string(self.0.member_dir(B_SLURM).join("jobs/instance"))
        else {
            return;
        };
        let prefix = format!("aig-{}-", instance.trim());
        let out = std::process::Command::new("squeue")
            .args(["-h", "-o", "%i|%j"])
            .output();
        let Ok(out) = out else { return };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .filter(|(_, name)| name.starts_with(&prefix))
            .map(|(id, _)| id.to_owned())
            .collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("scancel").args(&ids).status();
        }
    }
}

fn federation() -> Federation {
    require_slurm();
    Federation(Devnet::start_with(
        &[A, B_SLURM, C_LOCAL],
        &["--gpus", &format!("{A}=0,{C_LOCAL}=4"), "--slurm", B_SLURM],
    ))
}

fn require_slurm() {
    let up = std::process::Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("UP"));
    assert!(
        up,
        "these tests run jobs on a real Slurm and none answers `scontrol ping`; start one with \
         `sudo scripts/slurm-up.sh`"
    );
}

fn job_file(d: &Federation, name: &str, gpus: u32, script: &str, residency: &[&str]) -> PathBuf {
    let path = d.dir.path().join(format!("{name}.toml"));
    let residency: Vec<String> = residency.iter().map(|r| format!("{r:?}")).collect();
    std::fs::write(
        &path,
        format!(
            "gpus = {gpus}\ntime_limit_s = 600\nresidency = [{}]\ncommand = [\"sh\", \"-c\", {script:?}]\n",
            residency.join(", ")
        ),
    )
    .unwrap();
    path
}

fn submit(d: &Devnet, node: &str, file: &Path) -> String {
    let v = d
        .cli(node, &["job", "submit", file.to_str().unwrap(), "--json"])
        .ok()
        .json();
    v["job"].as_str().unwrap().to_owned()
}

fn show(d: &Devnet, node: &str, job: &str) -> Value {
    d.cli(node, &["job", "show", job, "--json"]).ok().json()
}

/// The job's phase at its origin, and its host and epoch.
fn phase(d: &Devnet, node: &str, job: &str) -> (String, Option<String>, u64) {
    let v = show(d, node, job);
    (
        v["job"]["phase"]["phase"].as_str().unwrap_or("").to_owned(),
        v["host"].as_str().map(str::to_owned),
        v["job"]["epoch"].as_u64().unwrap_or(0),
    )
}

fn hosted_phase(d: &Devnet, node: &str, job: &str) -> String {
    let r = d.cli(node, &["job", "show", job, "--json"]);
    if r.code != Some(0) {
        return String::new();
    }
    r.json()["job"]["phase"]["phase"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// The folder the host's executor gave the job (`<data>/jobs/<job>-e<epoch>`).
fn job_dir(d: &Devnet, host: &str, job: &str, epoch: u64) -> PathBuf {
    d.member_dir(host)
        .join("jobs")
        .join(format!("{}-e{epoch}", job.replace('/', "_")))
}

fn slurm_state(id: &str) -> String {
    let out = std::process::Command::new("squeue")
        .args(["-h", "-t", "all", "-j", id.trim(), "-o", "%T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn ledger_with(d: &Devnet, node: &str, peer: &str) -> Value {
    support::totals_with(&d.json(node, &["ledger"]), peer)
}

#[test]
fn jobs_from_a_full_factory_run_on_slurm_and_on_local_processes_and_come_back_signed() {
    let d = federation();
    // Three of four GPUs each: once one host has the first job, only the other can bid for
    // the second, so both executors run one.
    let ok = job_file(
        &d,
        "ok",
        3,
        "echo ran on $CUDA_VISIBLE_DEVICES; sleep 4",
        &[],
    );
    let first = submit(&d, A, &ok);
    d.wait_for(30, "the first job to be leased", || {
        phase(&d, A, &first).0 == "leased"
    });
    let fails = job_file(
        &d,
        "fails",
        3,
        "echo failing; echo disk quota >&2; sleep 1; exit 3",
        &[],
    );
    let second = submit(&d, A, &fails);
    d.wait_for(90, "both jobs to finish", || {
        phase(&d, A, &first).0 == "done" && phase(&d, A, &second).0 == "done"
    });

    let (v1, v2) = (show(&d, A, &first), show(&d, A, &second));
    let (h1, h2) = (
        v1["host"].as_str().unwrap().to_owned(),
        v2["host"].as_str().unwrap().to_owned(),
    );
    let mut hosts = [h1.clone(), h2.clone()];
    hosts.sort();
    assert_eq!(hosts, [B_SLURM, C_LOCAL], "one job on each host");
    assert_eq!(v1["job"]["phase"]["state"], "succeeded", "{v1}");
    assert_eq!(v1["job"]["phase"]["exit_code"], 0, "{v1}");
    assert_eq!(v2["job"]["phase"]["state"], "failed", "{v2}");
    assert_eq!(v2["job"]["phase"]["exit_code"], 3, "{v2}");

    // Each really ran where A says: under Slurm at Jülich, as a process at IT4LIA.
    for (job, host, v) in [(&first, &h1, &v1), (&second, &h2, &v2)] {
        let dir = job_dir(&d, host, job, v["job"]["epoch"].as_u64().unwrap());
        let stdout = std::fs::read_to_string(dir.join("stdout")).unwrap();
        assert!(
            stdout.contains("ran on") || stdout.contains("failing"),
            "{stdout}"
        );
        if host == B_SLURM {
            let id = std::fs::read_to_string(dir.join("slurm_id")).unwrap();
            let state = slurm_state(&id);
            assert!(
                state == "COMPLETED" || state == "FAILED",
                "Slurm job {id}: {state}"
            );
        } else {
            assert!(dir.join("run.json").exists() && dir.join("exit_status").exists());
        }
    }
    // The origin fetches each job's output from its host over the overflow protocol; the
    // host and the third member may not.
    for (job, host, expect) in [(&first, &h1, "ran on"), (&second, &h2, "failing")] {
        let out = d.cli(A, &["job", "output", job, "--json"]).ok().json();
        assert_eq!(out["source"], host.as_str(), "{out}");
        assert!(out["stdout"].as_str().unwrap().contains(expect), "{out}");
        let human = d.cli(A, &["job", "output", job]).ok().stdout;
        assert!(
            human.starts_with(&format!("--- stdout of job {job} at {host}")),
            "{human}"
        );
        let at_host = d.cli(host, &["job", "output", job]).fails();
        assert!(
            at_host.stderr.contains("only its origin may ask"),
            "{}",
            at_host.stderr
        );
        let other = if host == B_SLURM { C_LOCAL } else { B_SLURM };
        let elsewhere = d.cli(other, &["job", "output", job]).fails();
        assert!(
            elsewhere.stderr.contains("only its origin") || elsewhere.stderr.contains("404"),
            "{}",
            elsewhere.stderr
        );
    }
    let out = d.cli(A, &["job", "output", &second, "--json"]).ok().json();
    assert_eq!(out["stderr"], "disk quota\n", "{out}");
    assert_eq!(out["stderr_size"], 11, "{out}");

    // The first job's GPUs were the host's: three of them, by slot or by Slurm.
    let stdout = std::fs::read_to_string(job_dir(&d, &h1, &first, 1).join("stdout")).unwrap();
    let devices = stdout.trim().trim_start_matches("ran on ").to_owned();
    assert_eq!(devices.split(',').count(), 3, "{stdout}");

    // The signed receipts are in both ledgers.
    for host in [B_SLURM, C_LOCAL] {
        let at_origin = ledger_with(&d, A, host);
        let consumed = at_origin["gpu_seconds_consumed"].as_u64().unwrap_or(0);
        assert!(consumed > 0, "{A}'s ledger for {host}: {at_origin}");
        // The host enters it once the origin's acknowledgement of the receipt arrives.
        d.wait_for(20, "the host's ledger to agree", || {
            ledger_with(&d, host, A)["gpu_seconds_hosted"].as_u64() == Some(consumed)
        });
    }
    // The operator's view at A says where each job ran and how it ended.
    let human = d.cli(A, &["job", "show", &second]).ok().stdout;
    assert!(
        human.contains(&h2) && human.contains("exit code 3"),
        "{human}"
    );
}

#[test]
fn a_job_no_member_may_run_for_residency_stays_queued_with_the_reason() {
    let d = federation();
    // No member of this federation is in Finland.
    let file = job_file(&d, "resident", 1, "true", &["FI"]);
    let job = submit(&d, A, &file);
    d.wait_for(20, "the job to be queued", || {
        phase(&d, A, &job).0 == "queued"
    });
    // It stays so: no host may take it.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let v = show(&d, A, &job);
    assert_eq!(v["job"]["phase"]["phase"], "queued", "{v}");
    let reason = v["job"]["phase"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("residency") || reason.contains("FI"),
        "{reason}"
    );
    for host in [B_SLURM, C_LOCAL] {
        assert_eq!(hosted_phase(&d, host, &job), "", "{host} never saw the job");
    }
}

#[test]
fn a_host_killed_mid_job_loses_the_lease_then_cancels_its_stale_slurm_job_and_its_late_result_is_refused()
 {
    let mut d = federation();
    // Keep IT4LIA busy with a job of its own, so that Jülich (Slurm) takes A's jobs.
    let blocker = job_file(&d, "blocker", 4, "sleep 600", &[]);
    let blocker = submit(&d, C_LOCAL, &blocker);
    d.wait_for(20, "the blocker to run", || {
        phase(&d, C_LOCAL, &blocker).0 == "local"
    });
    // `short` ends while its host is down; `long` is still running when the host returns.
    let short = job_file(&d, "short", 2, "sleep 12; echo short done", &[]);
    let long = job_file(&d, "long", 2, "sleep 600", &[]);
    let short = submit(&d, A, &short);
    let long = submit(&d, A, &long);
    let slurm_id = |job: &str| {
        std::fs::read_to_string(job_dir(&d, B_SLURM, job, 1).join("slurm_id")).unwrap_or_default()
    };
    d.wait_for(40, "both jobs to run under Slurm at Jülich", || {
        [&short, &long]
            .iter()
            .all(|j| slurm_state(&slurm_id(j)) == "RUNNING")
    });
    for j in [&short, &long] {
        assert_eq!(phase(&d, A, j).1.as_deref(), Some(B_SLURM));
    }
    let (short_id, long_id) = (slurm_id(&short), slurm_id(&long));

    d.kill9(B_SLURM);
    d.cli(C_LOCAL, &["job", "cancel", &blocker]).ok();
    // The leases run out (10 s in the devnet) and A places both jobs again, at IT4LIA.
    d.wait_for(
        60,
        "both jobs to be re-placed at IT4LIA with epoch 2",
        || {
            [&short, &long].iter().all(|j| {
                let (_, host, epoch) = phase(&d, A, j);
                host.as_deref() == Some(C_LOCAL) && epoch == 2
            })
        },
    );
    d.wait_for(40, "the orphaned short job to finish under Slurm", || {
        slurm_state(&short_id) == "COMPLETED"
    });
    assert_eq!(slurm_state(&long_id), "RUNNING");

    d.restart(B_SLURM);
    // Jülich finds both Slurm jobs again. The long one's lease is gone: A tells it so and
    // Jülich cancels it in Slurm. The short one's result is for a stale epoch: A refuses it.
    d.wait_for(60, "the stale Slurm job to be cancelled", || {
        slurm_state(&long_id) == "CANCELLED"
    });
    d.wait_for(30, "the late result to be refused", || {
        hosted_phase(&d, B_SLURM, &short) == "disowned"
    });
    // The short job's outcome at A is IT4LIA's run, once.
    d.wait_for(60, "the short job to finish at IT4LIA", || {
        phase(&d, A, &short).0 == "done"
    });
    let v = show(&d, A, &short);
    assert_eq!(v["host"], C_LOCAL, "{v}");
    assert_eq!(v["job"]["epoch"], 2);
    assert_eq!(v["job"]["phase"]["exit_code"], 0);
    assert_eq!(
        ledger_with(&d, A, B_SLURM)["gpu_seconds_consumed"]
            .as_u64()
            .unwrap_or(0),
        0,
        "nothing is owed for the stale run"
    );
    // Stop the long job's second run rather than leave it sleeping.
    d.cli(A, &["job", "cancel", &long]).ok();
    d.wait_for(30, "the long job to be cancelled", || {
        phase(&d, A, &long).0 == "cancelled"
    });
}
