//! The console in a real browser (headless Chromium through chromedriver) on a devnet of
//! real nodes: an adviser files a project at one member, the target's adviser sees it
//! arrive and accepts it, both see the lifecycle move on without reloading, and what a
//! user may not do is refused by the node, not only hidden.
//!
//! Screenshots of every page go to `target/tmp/console-screenshots/`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use support::browser::{Browser, Driver};
use support::{Devnet, repo_root};

fn console(d: &Devnet, member: &str) -> String {
    format!("http://{}/console", d.admin_addr(member))
}

fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

fn sign_in(b: &Browser, base: &str, token: &str) {
    b.goto(&format!("{base}/sign-in"));
    b.fill("input[name=token]", token);
    b.click("form button[type=submit]");
    b.wait_for(30, "the overview after signing in", || {
        b.try_find("#member").is_some()
    });
}

/// The page is loaded and its scripts have run (htmx is there and has processed it).
fn settled(b: &Browser) -> bool {
    b.exec(
        "return document.readyState === 'complete' && typeof htmx !== 'undefined';",
        json!([]),
    ) == json!(true)
}

/// Loads a page, checks it logged no problem and asked no host but the node, and keeps a
/// screenshot of it.
fn visit(b: &Browser, base: &str, path: &str, shot: &str) {
    let started = std::time::Instant::now();
    b.goto(&format!("{base}{path}"));
    b.wait_for(30, "the page to load", || {
        b.try_find("main h1").is_some() && settled(b)
    });
    let problems = b.console_problems();
    assert!(problems.is_empty(), "{path} logged: {problems:#?}");
    let origin = base.trim_end_matches("/console");
    for url in b.requested() {
        assert!(
            url.starts_with(origin),
            "{path} asked {url}, not the node at {origin}"
        );
    }
    b.screenshot(&screenshot_dir().join(format!("{shot}.png")));
    eprintln!("{path}: checked in {:?}", started.elapsed());
}

/// Marks the window; the mark is gone if the page is ever reloaded.
fn mark(b: &Browser) {
    b.exec("window.__not_reloaded = true;", json!([]));
}

fn still_marked(b: &Browser) -> bool {
    b.exec("return window.__not_reloaded === true;", json!([])) == json!(true)
}

#[test]
fn advisers_refer_and_accept_a_project_in_the_browser_and_see_it_move_live() {
    // Offers wait ten minutes for an adviser: the browser is not racing a deadline.
    let d = Devnet::start_with(
        &["lu-l-aif", "cz-czai", "de-jaif"],
        &["--decision-ttl", "10m"],
    );
    let (lu_url, cz_url) = (console(&d, "lu-l-aif"), console(&d, "cz-czai"));
    let driver = Driver::start();
    let lu = driver.browser();
    let cz = driver.browser();

    // A wrong token is refused and signs nobody in.
    lu.goto(&format!("{lu_url}/sign-in"));
    lu.fill("input[name=token]", "not-the-token-of-anyone");
    lu.click("form button[type=submit]");
    lu.wait_for(30, "the refusal", || {
        lu.try_find("p.error")
            .is_some_and(|_| lu.text("p.error").contains("Wrong token"))
    });
    assert!(lu.try_find("#member").is_none());
    lu.goto(&lu_url);
    lu.wait_for(30, "the sign-in page", || {
        lu.url().ends_with("/console/sign-in")
    });
    // The console's own sign-in page loads clean too (its refusal above logged a 401).
    lu.console_problems();

    sign_in(&lu, &lu_url, &d.token("lu-l-aif"));
    sign_in(&cz, &cz_url, &d.token("cz-czai"));

    // The target's adviser watches the inbox.
    visit(&cz, &cz_url, "/inbox", "inbox-empty");
    assert!(cz.text("#live").contains("Nothing awaits a decision"));
    mark(&cz);

    // The origin's adviser fills the form, previews the routing, then files.
    visit(&lu, &lu_url, "/new", "new-project");
    lu.click("select[name=sector] option[value=health]");
    lu.fill("input[name=country]", "LU");
    lu.click("select[name=company_size] option[value=small]");
    lu.click("select[name=stage] option[value=assessment]");
    lu.click("input[name=services_needed][value=assessment]");
    lu.fill("input[name=gpu_hours]", "2000");
    lu.fill("input[name=languages]", "fr, en");
    lu.click("input[name=consent_scope][value=named]");
    lu.fill("input[name=consent_members]", "cz-czai");
    lu.fill("input[name=company]", "Example Diagnostics SARL");
    lu.fill("input[name=contact_name]", "Client contact");
    lu.fill("input[name=contact_email]", "contact@example.lu");
    lu.fill(
        "textarea[name=summary]",
        "Medical image triage; a proof of concept on GPUs.",
    );
    lu.click("button[name=preview]");
    lu.wait_for(30, "the routing preview", || {
        lu.try_find("#preview").is_some()
    });
    let preview = lu.text("#preview");
    assert!(
        preview.contains("cz-czai") && preview.contains("refer"),
        "{preview}"
    );
    assert!(
        preview.contains("de-jaif (out of consent scope)"),
        "the client consented to cz-czai only: {preview}"
    );
    lu.screenshot(&screenshot_dir().join("new-project-preview.png"));
    // Nothing was filed by the preview.
    assert_eq!(d.json("lu-l-aif", &["status"])["projects"], 0);
    lu.click("button.primary");
    lu.wait_for(30, "the referral page", || lu.try_find("#state").is_some());
    assert!(
        lu.url().contains("/console/referral?id=lu-l-aif%2F1"),
        "{}",
        lu.url()
    );
    mark(&lu);

    // It arrives at the target's open inbox without a reload.
    cz.wait_for(60, "the offer in the inbox", || {
        cz.count("article.offer[data-referral='lu-l-aif/1']") == 1
    });
    assert!(still_marked(&cz), "the inbox was reloaded");
    let offer = cz.text("article.offer");
    for needle in ["health", "small", "assessment", "2000", "cz-czai"] {
        assert!(offer.contains(needle), "{needle}: {offer}");
    }
    // The card, not the dossier, is all the target sees before accepting.
    assert!(!cz.text("#live").contains("Example Diagnostics"), "{offer}");
    cz.screenshot(&screenshot_dir().join("inbox-offer.png"));
    cz.click("article.offer button.accept");
    cz.wait_for(30, "the dossier after the hand-over", || {
        cz.try_find(".dossier")
            .is_some_and(|_| cz.text(".dossier").contains("Example Diagnostics"))
    });

    // The origin's open timeline reaches the hand-over without a reload.
    lu.wait_for(60, "handed over in the origin's timeline", || {
        lu.count("ol.timeline li[data-state=handed_over]") == 1
    });
    assert!(still_marked(&lu), "the referral page was reloaded");
    lu.screenshot(&screenshot_dir().join("referral-handed-over.png"));

    // The operator submits a job from the console and follows it to its output.
    visit(&lu, &lu_url, "/jobs", "jobs-empty");
    lu.click("details.submit summary");
    lu.fill(
        "textarea[name=command]",
        "sh\n-c\necho console job on $CUDA_VISIBLE_DEVICES",
    );
    lu.fill("input[name=time_limit_s]", "60");
    lu.click("details.submit button.primary");
    lu.wait_for(30, "the job page", || lu.url().contains("/console/job?id="));
    mark(&lu);
    lu.wait_for(60, "the job to succeed, live", || {
        lu.count("ol.timeline li[data-state=succeeded]") == 1
    });
    assert!(still_marked(&lu), "the job page was reloaded");
    lu.click("form[action='/console/output'] button");
    lu.wait_for(30, "the job's output", || {
        lu.try_find("pre")
            .is_some_and(|_| lu.text("#live").contains("console job on"))
    });
    lu.screenshot(&screenshot_dir().join("job-output.png"));

    // Every page, at both members.
    for (b, base, who) in [(&lu, &lu_url, "lu"), (&cz, &cz_url, "cz")] {
        for (path, shot) in [
            ("", "overview"),
            ("/federation", "federation"),
            ("/inbox", "inbox"),
            ("/new", "new"),
            ("/referrals", "referrals"),
            ("/referral?id=lu-l-aif%2F1", "referral"),
            ("/jobs", "jobs"),
            ("/kpi", "kpi"),
            ("/audit", "audit"),
        ] {
            visit(b, base, path, &format!("{who}-{shot}"));
        }
    }
    // The decision is in the target's audit log under the user's name, the chain intact.
    visit(&cz, &cz_url, "/audit", "cz-audit");
    let audit = cz.text("#live");
    assert!(audit.contains("Chain verified"), "{audit}");
    assert!(
        audit.contains("lu-l-aif/1") && audit.contains("admin"),
        "{audit}"
    );
    // The federation map draws every member.
    visit(&lu, &lu_url, "/federation", "lu-federation");
    assert_eq!(lu.count("svg.map circle.site"), 3);
    assert_eq!(lu.count("svg.map circle.site.me"), 1);

    // A viewer at the target sees a new offer but no button, and the node refuses the
    // POST that a forged page would send.
    let health =
        std::fs::read_to_string(repo_root().join("config/examples/project-health-lu.toml"))
            .unwrap()
            .replace("whole_federation = true", "members = [\"cz-czai\"]");
    let to_cz = d.dir.path().join("project-health-to-cz.toml");
    std::fs::write(&to_cz, health).unwrap();
    let second = d.json("lu-l-aif", &["project", "file", to_cz.to_str().unwrap()]);
    let second = second["referral"].as_str().unwrap().to_owned();
    let vera = d.add_token("cz-czai", "vera", "viewer");
    let viewer = driver.browser();
    sign_in(&viewer, &cz_url, &vera);
    visit(&viewer, &cz_url, "/inbox", "inbox-viewer");
    viewer.wait_for(60, "the second offer at the viewer", || {
        viewer.count(&format!("article.offer[data-referral='{second}']")) == 1
    });
    assert_eq!(viewer.count("button.accept"), 0);
    assert!(
        viewer
            .text("article.offer")
            .contains("Viewers cannot decide")
    );
    let forged = viewer.exec(
        "const csrf = document.querySelector('input[name=csrf]').value;
         const body = new URLSearchParams({csrf, id: arguments[0], decision: 'accept'});
         return fetch('/console/decide', {method: 'POST', body})
           .then(async r => [r.status, await r.text()]);",
        json!([second]),
    );
    assert_eq!(forged[0], 403, "{forged}");
    assert!(forged[1].as_str().unwrap().contains("viewer"), "{forged}");
    // Without the CSRF token even the adviser's session is refused.
    let no_csrf = cz.exec(
        "const body = new URLSearchParams({id: arguments[0], decision: 'accept'});
         return fetch('/console/decide', {method: 'POST', body})
           .then(async r => [r.status, await r.text()]);",
        json!([second]),
    );
    assert_eq!(no_csrf[0], 403, "{no_csrf}");
    assert!(no_csrf[1].as_str().unwrap().contains("CSRF"), "{no_csrf}");
    assert_eq!(d.referral_state("cz-czai", &second), "awaiting_decision");
}

/// A raw HTTP request with cookies: (status, headers, body).
fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    cookies: &str,
    body: &str,
) -> (u16, String, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nCookie: {cookies}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// The `name=value` a `Set-Cookie` header in `head` sets for `prefix…`.
fn set_cookie(head: &str, prefix: &str) -> String {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find(|c| c.starts_with(prefix) && !c.contains("Max-Age=0"))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no cookie {prefix} in\n{head}"))
}

/// Event ids from `GET /console/events`, read until `n` have come.
fn event_ids(addr: std::net::SocketAddr, cookie: &str, last: Option<u64>, n: usize) -> Vec<u64> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let resume = last
        .map(|l| format!("Last-Event-ID: {l}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /console/events HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n{resume}\
         Accept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut ids = Vec::new();
    for line in BufReader::new(s).lines() {
        let line = line.expect("the stream ended or stalled");
        if let Some(id) = line
            .strip_prefix("id: ")
            .or_else(|| line.strip_prefix("id:"))
        {
            ids.push(id.trim().parse().unwrap());
            if ids.len() == n {
                break;
            }
        }
    }
    ids
}

#[test]
fn the_console_signs_in_with_a_token_only_and_its_event_stream_resumes_where_it_left_off() {
    let d = Devnet::start(&["lu-l-aif", "cz-czai"]);
    let addr = d.admin_addr("lu-l-aif");
    let (status, _, _) = raw(addr, "GET", "/console", "", "");
    assert_eq!(status, 303, "a page without a session sends to sign-in");
    let (status, _, _) = raw(addr, "GET", "/console/events", "", "");
    assert_eq!(status, 401);

    // Sign-in needs the form's own nonce: a post from elsewhere is refused.
    let (_, head, _) = raw(addr, "GET", "/console/sign-in", "", "");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    let nonce_cookie = set_cookie(&head, "aiguillage_sign_in_lu-l-aif=");
    assert!(head.contains("HttpOnly; SameSite=Strict"), "{head}");
    let nonce = nonce_cookie.split_once('=').unwrap().1.to_owned();
    let token = d.token("lu-l-aif");
    let (status, _, body) = raw(
        addr,
        "POST",
        "/console/sign-in",
        "",
        &format!("csrf={nonce}&token={token}"),
    );
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = raw(
        addr,
        "POST",
        "/console/sign-in",
        &nonce_cookie,
        &format!("csrf={nonce}&token=wrong{token}"),
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Wrong token"));
    let (status, head, _) = raw(
        addr,
        "POST",
        "/console/sign-in",
        &nonce_cookie,
        &format!("csrf={nonce}&token={token}"),
    );
    assert_eq!(status, 303, "{head}");
    let session = set_cookie(&head, "aiguillage_session_lu-l-aif=");

    // A page's query may not carry what the page does not take.
    let (status, _, body) = raw(addr, "GET", "/console/referrals?colour=red", &session, "");
    assert_eq!(status, 400, "{body}");

    // A filing publishes events (the project, the referral, the ledger, ...): a console
    // that saw none gets them from the first, and one that saw some resumes after them.
    let health = repo_root().join("config/examples/project-health-lu.toml");
    d.json("lu-l-aif", &["project", "file", health.to_str().unwrap()]);
    let all = event_ids(addr, &session, Some(0), 3);
    assert_eq!(all, vec![1, 2, 3]);
    let resumed = event_ids(addr, &session, Some(2), 1);
    assert_eq!(resumed, vec![3]);

    // A form field the page does not take is refused, not dropped.
    let (_, page_head, page) = raw(addr, "GET", "/console/inbox", &session, "");
    assert!(page_head.starts_with("HTTP/1.1 200"), "{page_head}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let (status, _, body) = raw(
        addr,
        "POST",
        "/console/decide",
        &session,
        &format!("csrf={csrf}&id=lu-l-aif/9&decision=accept&colour=red"),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("colour"), "{body}");

    // A filing the wire could not carry is refused at once, naming the field and the
    // limit, and the form comes back filled in.
    let summary = "x".repeat(200_000);
    let form = format!(
        "csrf={csrf}&sector=health&country=LU&company_size=small&stage=assessment\
         &services_needed=assessment&gpu_hours=10&languages=en&consent_scope=whole_federation\
         &company=Oversized+Ltd&contact_name=c&contact_email=c%40example.lu&summary={summary}\
         &choice=route&reason="
    );
    let (status, _, body) = raw(addr, "POST", "/console/projects", &session, &form);
    assert_eq!(status, 413, "{}", &body[..body.len().min(2000)]);
    for needle in [
        "Not filed",
        "dossier.summary",
        "131072",
        "value=\"Oversized Ltd\"",
    ] {
        assert!(body.contains(needle), "{needle}");
    }
    let projects = d.json("lu-l-aif", &["status"])["projects"]
        .as_u64()
        .unwrap();
    assert_eq!(projects, 1, "only the project filed above");

    // Signing out ends the session at once.
    let (status, _, _) = raw(
        addr,
        "POST",
        "/console/sign-out",
        &session,
        &format!("csrf={csrf}"),
    );
    assert_eq!(status, 303);
    let (status, _, _) = raw(addr, "GET", "/console/inbox", &session, "");
    assert_eq!(status, 303, "signed out, the session no longer opens pages");
}

#[test]
fn the_console_benchmark_measures_every_figure() {
    // A smoke run: it checks that every figure is measured, not how fast it is.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let run = support::run_in(
        &repo_root(),
        &[
            "bench",
            "console",
            "--changes",
            "3",
            "--consoles",
            "2",
            "--dir",
            dir.path().join("net").to_str().unwrap(),
            "--json",
            out.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(run.stdout.contains("open console"), "{}", run.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["changes"], 3);
    for figure in ["console_ms", "floor_ms"] {
        let p50 = v[figure]["p50"].as_f64().unwrap();
        assert!(
            p50 >= 0.0 && v[figure]["p99"].as_f64().unwrap() >= p50,
            "{v}"
        );
    }
    // Shown in the console cannot come before the offer reached the node.
    assert!(
        v["console_ms"]["p50"].as_f64() >= v["floor_ms"]["p50"].as_f64(),
        "{v}"
    );
    assert_eq!(v["rss_kib"]["consoles"], 2);
    assert!(v["rss_kib"]["with_consoles"].as_u64().unwrap() > 0);
    let pages = v["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 8);
    for p in pages {
        assert!(
            p["with_assets_bytes"].as_u64() > p["html_bytes"].as_u64(),
            "{p}"
        );
    }
}
