//! Crashes while work flows: real node processes, killed with SIGKILL over and over.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::{Devnet, repo_root};

const ORIGIN: &str = "lu-l-aif";
/// Both have health as a priority and take overflow: each can be target and host.
const VICTIMS: [&str; 2] = ["es-1healthai", "de-jaif"];

fn ledger(d: &Devnet, node: &str) -> BTreeMap<String, Value> {
    d.json(node, &["ledger"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["member"].as_str().unwrap().to_owned(),
                r["totals"].clone(),
            )
        })
        .collect()
}

#[test]
fn twenty_kills_while_referrals_and_jobs_flow_lose_and_duplicate_nothing() {
    let mut d = Devnet::start_with(&[ORIGIN, VICTIMS[0], VICTIMS[1]], &["--gpus", "lu-l-aif=0"]);
    let project = repo_root().join("config/examples/project-health-lu.toml");
    let job = d.dir.path().join("job.toml");
    std::fs::write(
        &job,
        "gpus = 1\ntime_limit_s = 600\ncommand = [\"sh\", \"-c\", \"sleep 1; echo done\"]\n",
    )
    .unwrap();
    let mut referrals = Vec::new();
    let mut jobs = Vec::new();
    for round in 0..20usize {
        let v = d.json(ORIGIN, &["project", "file", project.to_str().unwrap()]);
        referrals.push(v["referral"].as_str().expect("referred").to_owned());
        let v = d.json(ORIGIN, &["job", "submit", job.to_str().unwrap()]);
        jobs.push(v["job"].as_str().unwrap().to_owned());
        // Kill the victim 0 to 20 ms after the filing (offers, acceptances and jobs in
        // flight), then bring it back from its data folder.
        std::thread::sleep(std::time::Duration::from_millis(5 * (round % 5) as u64));
        let victim = VICTIMS[round % 2];
        d.kill9(victim);
        d.restart(victim);
    }

    let pending = || {
        let mut left: Vec<String> = referrals
            .iter()
            .map(|id| {
                (
                    id,
                    support::state_of(&d.json(ORIGIN, &["referral", "show", id])),
                )
            })
            .filter(|(_, s)| s != "handed_over")
            .map(|(id, s)| format!("{id} {s}"))
            .collect();
        left.extend(
            jobs.iter()
                .map(|j| {
                    (
                        j,
                        d.json(ORIGIN, &["job", "show", j])["job"]["phase"].clone(),
                    )
                })
                .filter(|(_, p)| p["phase"] != "done")
                .map(|(j, p)| format!("{j} {p}")),
        );
        left
    };
    d.wait_for_showing(
        120,
        "every referral handed over and every job done",
        || pending().is_empty(),
        || format!("still open: {:?}", pending()),
    );

    // Each referral: accepted by exactly one target, which holds it handed over; the other
    // victim never accepted it.
    for id in &referrals {
        let v = d.json(ORIGIN, &["referral", "show", id]);
        let attempts = v["referral"]["attempts"].as_array().unwrap();
        let accepted: Vec<&Value> = attempts
            .iter()
            .filter(|a| a["outcome"]["outcome"] == "accepted")
            .collect();
        assert_eq!(accepted.len(), 1, "{id}: {attempts:?}");
        let target = accepted[0]["target"].as_str().unwrap();
        let incoming = d.json(target, &["referral", "show", id]);
        assert_eq!(
            incoming["referral"]["state"]["state"], "handed_over",
            "{id}"
        );
        for other in VICTIMS.iter().filter(|v| **v != target) {
            let r = d.cli(other, &["referral", "show", id, "--json"]);
            if r.code == Some(0) {
                let state = r.json()["referral"]["state"]["state"].clone();
                assert!(
                    state != "accepted" && state != "handed_over",
                    "{id} also taken by {other}: {state}"
                );
            }
        }
    }

    // Each job: done once, succeeded, with one receipt; both ledgers agree with the sum.
    let mut consumed: BTreeMap<String, u64> = BTreeMap::new();
    for j in &jobs {
        let v = d.json(ORIGIN, &["job", "show", j]);
        assert_eq!(v["job"]["phase"]["state"], "succeeded", "{j}: {v}");
        let host = v["host"].as_str().unwrap().to_owned();
        let receipt = &v["job"]["receipt"];
        assert_eq!(receipt["host"], host.as_str(), "{j}");
        *consumed.entry(host).or_default() += receipt["gpu_seconds"].as_u64().unwrap();
    }
    // A host enters usage in its ledger when the origin acknowledges the receipt; an
    // acknowledgement lost in a kill comes again after the host re-sends the receipt.
    let host_agrees = |victim: &str| {
        ledger(&d, victim)
            .get(ORIGIN)
            .map_or(0, |t| t["gpu_seconds_hosted"].as_u64().unwrap())
            == consumed.get(victim).copied().unwrap_or(0)
    };
    d.wait_for(30, "the hosts' ledgers to catch up", || {
        VICTIMS.iter().all(|v| host_agrees(v))
    });
    let at_origin = ledger(&d, ORIGIN);
    for victim in VICTIMS {
        let used = consumed.get(victim).copied().unwrap_or(0);
        assert_eq!(
            at_origin
                .get(victim)
                .map_or(0, |t| t["gpu_seconds_consumed"].as_u64().unwrap()),
            used,
            "{ORIGIN}'s ledger for {victim}"
        );
        assert_eq!(
            ledger(&d, victim)
                .get(ORIGIN)
                .map_or(0, |t| t["gpu_seconds_hosted"].as_u64().unwrap()),
            used,
            "{victim}'s own ledger"
        );
    }

    // Forty restarts later, each victim's audit chain still verifies.
    for victim in VICTIMS {
        d.kill9(victim);
        let dir = d.member_dir(victim);
        let out = support::run_in(
            &repo_root(),
            &["audit", "verify", "--data-dir", dir.to_str().unwrap()],
        )
        .ok();
        assert!(
            out.stdout.contains("chain intact"),
            "{victim}: {}",
            out.stdout
        );
    }
}
