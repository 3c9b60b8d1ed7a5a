//! Referrals that keep the programme's promise, on real node processes: nothing is accepted
//! that cannot be delivered, the lifecycle refuses what it does not allow, and every
//! decision, notification and piece of advice is on record across a crash.

mod support;

use support::{Devnet, http, http_with, repo_root};

/// A copy of an example project file with `replace` applied, written into the devnet's
/// folder.
fn project_file(d: &Devnet, example: &str, replace: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text =
        std::fs::read_to_string(repo_root().join("config/examples").join(example)).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from), "{example} has no {from:?}");
        text = text.replace(from, to);
    }
    let path = d.dir.path().join(format!("edited-{example}"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_oversized_dossier_is_refused_at_filing_naming_the_limit_and_nothing_is_sent() {
    let d = Devnet::start(&["lu-l-aif", "es-1healthai"]);
    let summary = "x".repeat(200_000);
    let path = project_file(
        &d,
        "project-health-lu.toml",
        &[(
            "summary = \"Medical image triage model; needs a proof of concept on GPUs.\"",
            &format!("summary = \"{summary}\""),
        )],
    );
    let refused = d
        .cli("lu-l-aif", &["project", "file", path.to_str().unwrap()])
        .fails();
    for needle in ["HTTP 413", "dossier", "131072", "dossier.summary"] {
        assert!(
            refused.stderr.contains(needle),
            "{needle}: {}",
            refused.stderr
        );
    }
    // Nothing was kept, so nothing can go out later.
    let status = d.json("lu-l-aif", &["status"]);
    assert_eq!(status["projects"], 0, "{status}");
    assert_eq!(status["referrals_out"], 0, "{status}");
    assert_eq!(d.json("es-1healthai", &["status"])["referrals_in"], 0);
    // An empty consent is refused too, unless the project stays local.
    let nobody = project_file(
        &d,
        "project-health-lu.toml",
        &[("whole_federation = true", "whole_federation = false")],
    );
    let refused = d
        .cli("lu-l-aif", &["project", "file", nobody.to_str().unwrap()])
        .fails();
    assert!(
        refused.stderr.contains("HTTP 422") && refused.stderr.contains("local_only"),
        "{}",
        refused.stderr
    );
    let local = project_file(
        &d,
        "project-health-lu.toml",
        &[("whole_federation = true", "local_only = true")],
    );
    let kept = d.json("lu-l-aif", &["project", "file", local.to_str().unwrap()]);
    assert_eq!(kept["outcome"], "keep", "{kept}");
    assert!(kept["referral"].is_null());
}

#[test]
fn progress_the_lifecycle_does_not_allow_is_refused_with_the_state() {
    let d = Devnet::start(&["lu-l-aif", "es-1healthai"]);
    let path = repo_root().join("config/examples/project-health-lu.toml");
    let v = d.json("lu-l-aif", &["project", "file", path.to_str().unwrap()]);
    let id = v["referral"].as_str().unwrap().to_owned();
    d.wait_for(30, "the dossier at es-1healthai", || {
        d.referral_state("es-1healthai", &id) == "handed_over"
    });
    let progress = |state: &str, note: &str| {
        http_with(
            d.admin_addr("es-1healthai"),
            "POST",
            &format!("/referrals/{id}/progress"),
            Some(&d.token("es-1healthai")),
            &format!(r#"{{"step": "production", "state": "{state}", "note": "{note}"}}"#),
        )
    };
    // A note far past the progress message's limit is refused at once.
    let (status, body) = progress("in_progress", &"n".repeat(1_000_000));
    assert_eq!(status, 413, "{body}");
    let (status, body) = progress("completed", "in production");
    assert_eq!(status, 200, "{body}");
    let (status, body) = progress("in_progress", "one more");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("completed"), "{body}");
    d.wait_for(20, "the origin to see the completion", || {
        d.referral_state("lu-l-aif", &id) == "completed"
    });
}

#[test]
fn decisions_and_notifications_survive_a_crash_and_advice_is_counted() {
    // Neither has health as a priority: cz-czai's adviser decides.
    let mut d = Devnet::start(&["lu-l-aif", "cz-czai"]);
    let path = repo_root().join("config/examples/project-health-lu.toml");
    let v = d.json("lu-l-aif", &["project", "file", path.to_str().unwrap()]);
    let id = v["referral"].as_str().unwrap().to_owned();
    d.wait_for(30, "the offer at cz-czai", || {
        d.cli("cz-czai", &["referral", "show", &id, "--json"]).code == Some(0)
            && d.referral_state("cz-czai", &id) == "awaiting_decision"
    });
    // A named adviser at cz-czai decides, with a token made for her on the running node.
    let add = |name: &str, role: &str| d.add_token("cz-czai", name, role);
    let jana = add("jana", "adviser");
    let (status, body) = http_with(
        d.admin_addr("cz-czai"),
        "POST",
        &format!("/referrals/{id}/accept"),
        Some(&jana),
        r#"{"detail": "we have imaging experts"}"#,
    );
    assert_eq!(status, 200, "{body}");
    d.wait_for(30, "the dossier at cz-czai", || {
        d.referral_state("cz-czai", &id) == "handed_over"
    });
    // A viewer may read but not decide.
    let vera = add("vera", "viewer");
    let (status, _) = http(d.admin_addr("cz-czai"), "GET", "/referrals", Some(&vera));
    assert_eq!(status, 200);
    let (status, body) = http_with(
        d.admin_addr("cz-czai"),
        "POST",
        &format!("/referrals/{id}/progress"),
        Some(&vera),
        r#"{"step": "assessment", "state": "in_progress"}"#,
    );
    assert_eq!(status, 403, "{body}");
    // Luxembourg's adviser advises against a second project.
    let finance = repo_root().join("config/examples/project-finance-lu.toml");
    let kept = d.json("lu-l-aif", &["project", "file", finance.to_str().unwrap()]);
    let project = kept["project"].as_str().unwrap().to_owned();
    let (status, body) = http_with(
        d.admin_addr("lu-l-aif"),
        "POST",
        &format!("/projects/{project}/advise-against"),
        Some(&d.token("lu-l-aif")),
        r#"{"reason": "an AI recruiting tool for ten hires a year"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let notifications = |d: &Devnet, m: &str| {
        let (_, body) = http(d.admin_addr(m), "GET", "/notifications", Some(&d.token(m)));
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["notifications"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = notifications(&d, "cz-czai");
    assert!(before >= 2, "a decision needed and the dossier received");
    // kill -9 both, restart both.
    for m in ["cz-czai", "lu-l-aif"] {
        d.kill9(m);
        d.restart(m);
    }
    assert_eq!(notifications(&d, "cz-czai"), before);
    let audit = |m: &str| {
        let out = support::run_in(
            &repo_root(),
            &[
                "audit",
                "export",
                "--data-dir",
                d.member_dir(m).to_str().unwrap(),
            ],
        );
        (out.code, out.stdout, out.stderr)
    };
    // The store is locked while the node runs: stop cz-czai to read its log.
    d.kill9("cz-czai");
    let (code, log, err) = audit("cz-czai");
    assert_eq!(code, Some(0), "{err}");
    for needle in [
        "\"event\":\"referral_accepted\"",
        "by jana: we have imaging experts",
        "\"event\":\"hand_over_received\"",
    ] {
        assert!(log.contains(needle), "{needle} missing from:\n{log}");
    }
    let kpi = d.json("lu-l-aif", &["kpi"]);
    assert_eq!(kpi["advised_against"], 1, "{kpi}");
    assert_eq!(
        kpi["advised_against_reasons"]["an AI recruiting tool for ten hires a year"], 1,
        "{kpi}"
    );
}

#[test]
fn an_adviser_follows_a_kept_project_and_the_notifications_from_the_cli() {
    let d = Devnet::start(&["lu-l-aif", "de-jaif"]);
    let finance = repo_root().join("config/examples/project-finance-lu.toml");
    let kept = d.json("lu-l-aif", &["project", "file", finance.to_str().unwrap()]);
    let id = kept["project"].as_str().unwrap().to_owned();
    assert_eq!(kept["outcome"], "keep", "{kept}");

    let moved = d.cli(
        "lu-l-aif",
        &[
            "project",
            "progress",
            &id,
            "--step",
            "training",
            "--note",
            "two analysts trained",
        ],
    );
    assert_eq!(moved.code, Some(0), "{}", moved.stderr);
    assert!(
        moved.stdout.contains("active at training"),
        "{}",
        moved.stdout
    );
    let shown = d.cli("lu-l-aif", &["project", "show", &id]);
    assert!(
        shown.stdout.contains("journey here: active at training"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("two analysts trained"),
        "{}",
        shown.stdout
    );

    // Wrong input is refused at once and says what was wrong.
    let bad = d.cli(
        "lu-l-aif",
        &["project", "progress", &id, "--step", "launch"],
    );
    assert_ne!(bad.code, Some(0));
    assert!(
        bad.stderr.contains("--step") && bad.stderr.contains("poc_sandbox"),
        "{}",
        bad.stderr
    );
    let empty = d.cli(
        "lu-l-aif",
        &["project", "advise-against", &id, "--reason", " "],
    );
    assert_ne!(empty.code, Some(0));
    assert!(
        empty.stderr.contains("422") && empty.stderr.contains("reason"),
        "{}",
        empty.stderr
    );

    let advised = d.cli(
        "lu-l-aif",
        &[
            "project",
            "advise-against",
            &id,
            "--reason",
            "ten hires a year",
        ],
    );
    assert!(
        advised.stdout.contains("advised_against"),
        "{}",
        advised.stdout
    );
    let late = d.cli(
        "lu-l-aif",
        &["project", "progress", &id, "--step", "financing"],
    );
    assert!(
        late.stderr.contains("409") && late.stderr.contains("advised_against"),
        "{}",
        late.stderr
    );

    // Every step left a notification; once read, none is unread.
    let unread = d.cli("lu-l-aif", &["notifications", "list", "--unread"]);
    let lines: Vec<&str> = unread.stdout.lines().filter(|l| l.contains(&id)).collect();
    assert_eq!(
        lines.len(),
        3,
        "filed, training, advised against: {}",
        unread.stdout
    );
    let latest = d.json("lu-l-aif", &["notifications", "list"])["latest"]
        .as_u64()
        .unwrap();
    let read = d.cli("lu-l-aif", &["notifications", "read", &latest.to_string()]);
    assert!(
        read.stdout.contains(&format!("read up to {latest}")),
        "{}",
        read.stdout
    );
    let none = d.cli("lu-l-aif", &["notifications", "list", "--unread"]);
    assert!(
        none.stdout.contains("no notifications unread"),
        "{}",
        none.stdout
    );

    // The figures, for a spreadsheet and for a person.
    let csv = d.cli("lu-l-aif", &["kpi", "--csv"]);
    assert!(csv.stdout.starts_with("measure,value\n"), "{}", csv.stdout);
    assert!(
        csv.stdout.contains("\nadvised_against,1\n"),
        "{}",
        csv.stdout
    );
    assert!(
        csv.stdout
            .contains("\nadvised_against_reasons.ten hires a year,1\n"),
        "{}",
        csv.stdout
    );
    assert!(
        csv.stdout.contains("\ncompanies_by_step.training,1\n"),
        "{}",
        csv.stdout
    );
    let table = d.cli("lu-l-aif", &["kpi"]);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("advised_against ") && l.trim_end().ends_with(" 1")),
        "{}",
        table.stdout
    );
}

#[test]
fn every_cli_verb_answers_people_with_a_table_or_a_sentence_and_json_only_when_asked() {
    let d = Devnet::start_with(&["lu-l-aif", "es-1healthai"], &["--gpus", "lu-l-aif=0"]);
    let health = repo_root().join("config/examples/project-health-lu.toml");
    let job = repo_root().join("config/examples/job-small.toml");
    // Eleven referrals, so that ids 10 and 11 must sort after 2.
    let mut referrals = Vec::new();
    for _ in 0..11 {
        let v = d.json("lu-l-aif", &["project", "file", health.to_str().unwrap()]);
        referrals.push(v["referral"].as_str().unwrap().to_owned());
    }
    let submitted = d
        .cli("lu-l-aif", &["job", "submit", job.to_str().unwrap()])
        .ok();
    assert!(
        submitted.stdout.starts_with("job lu-l-aif/"),
        "{}",
        submitted.stdout
    );
    let job_id = submitted
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let last = referrals.last().unwrap().clone();
    d.wait_for(30, "the last referral handed over", || {
        d.referral_state("lu-l-aif", &last) == "handed_over"
    });
    let human = |node: &str, args: &[&str]| {
        let out = d.cli(node, args).ok().stdout;
        let first = out.trim_start().chars().next();
        assert!(
            !matches!(first, Some('{' | '[')),
            "`{}` printed JSON without --json:\n{out}",
            args.join(" ")
        );
        assert!(
            !out.trim().is_empty(),
            "`{}` printed nothing",
            args.join(" ")
        );
        out
    };
    let header = |out: &str, words: &[&str]| {
        let first = out.lines().next().unwrap_or("");
        for w in words {
            assert!(first.contains(w), "header {first:?} lacks {w:?}:\n{out}");
        }
    };
    header(
        &human("lu-l-aif", &["directory"]),
        &["member", "country", "gpus"],
    );
    header(
        &human("lu-l-aif", &["project", "list"]),
        &["project", "sector", "filed"],
    );
    let list = human("lu-l-aif", &["referral", "list"]);
    header(&list, &["referral", "direction", "state"]);
    let order: Vec<&str> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(order, referrals, "ids in numeric order:\n{list}");
    header(
        &human("lu-l-aif", &["job", "list"]),
        &["job", "phase", "host"],
    );
    header(&human("lu-l-aif", &["ledger"]), &["member", "GPU-h hosted"]);
    header(&human("lu-l-aif", &["kpi"]), &["measure", "value"]);
    let status = human("lu-l-aif", &["status"]);
    assert!(status.contains("roster serial"), "{status}");
    let console = format!("console http://{}/console", d.admin_addr("lu-l-aif"));
    assert!(status.contains(&console), "{status}");
    assert!(human("lu-l-aif", &["job", "show", &job_id]).contains(&format!("job {job_id}")));
    assert!(human("lu-l-aif", &["notifications", "list"]).contains("filed"));
    let project = d.json("lu-l-aif", &["project", "list"])[0]["card"]["project"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(human("lu-l-aif", &["project", "show", &project]).contains("journey here"));
    // The target's view of a referral: the card, and after hand-over the client's contact.
    let shown = human("es-1healthai", &["referral", "show", &referrals[0]]);
    for needle in [
        "from lu-l-aif",
        "health in LU",
        "needs:",
        "client: ",
        "contact ",
    ] {
        assert!(shown.contains(needle), "{needle:?} in:\n{shown}");
    }
    // The origin's view names its state too.
    let origin = human("lu-l-aif", &["referral", "show", &referrals[0]]);
    let line = origin.lines().next().unwrap_or("");
    assert!(
        line.contains("(originated here): ") && !line.ends_with('?'),
        "{origin}"
    );
    // Times are local ISO 8601 with their offset, never epoch milliseconds.
    let tz = d
        .cli("lu-l-aif", &["project", "list"])
        .ok()
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        tz.split_whitespace()
            .any(|w| w.len() == 25 && w.as_bytes()[10] == b'T' && w[19..].contains(':')),
        "{tz}"
    );
    // And --json is JSON.
    let v = d.json("lu-l-aif", &["referral", "list"]);
    assert!(v.is_array());
}

#[test]
fn the_cli_ends_quietly_on_a_closed_pipe_refuses_endless_input_and_a_second_run_names_the_first() {
    let d = Devnet::start(&["lu-l-aif", "es-1healthai"]);
    // The reader has gone before the answer is written: no panic, no message.
    let dir = d.member_dir("lu-l-aif");
    let mut child = std::process::Command::new(support::bin())
        .args(["directory", "--data-dir", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    // An endless input is refused at its limit, not read whole.
    let r = d.cli("lu-l-aif", &["project", "file", "/dev/zero"]).fails();
    assert!(
        r.stderr
            .contains("/dev/zero: a project file may hold at most 1048576 bytes"),
        "{}",
        r.stderr
    );
    // A second node on the same data folder is refused at once, naming the first.
    let pid = d.run_info("lu-l-aif")["pid"].as_u64().unwrap();
    let config = dir.join("node.toml");
    let r = support::run_in(
        &support::repo_root(),
        &["run", "--config", config.to_str().unwrap()],
    )
    .fails();
    assert!(
        r.stderr.contains("a node already runs on") && r.stderr.contains(&format!("as pid {pid}")),
        "{}",
        r.stderr
    );
}
