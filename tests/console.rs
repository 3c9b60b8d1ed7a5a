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

    // The origin's operator, and an adviser at the target (the role advisers have).
    sign_in(&lu, &lu_url, &d.token("lu-l-aif"));
    let jana = d.add_token("cz-czai", "jana", "adviser");
    sign_in(&cz, &cz_url, &jana);
    assert!(cz.text("form.who").contains("jana · adviser"));

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
    // The preview follows the form as it is filled, without a button or a reload.
    mark(&lu);
    lu.wait_for(30, "the live routing preview", || {
        lu.text("#preview")
            .contains("de-jaif (out of consent scope)")
    });
    assert!(still_marked(&lu), "the form was reloaded");
    let preview = lu.text("#preview");
    assert!(
        preview.contains("cz-czai") && preview.contains("refer"),
        "{preview}"
    );
    assert!(
        preview.contains("de-jaif (out of consent scope)"),
        "the client consented to cz-czai only: {preview}"
    );
    lu.exec(
        "document.getElementById('preview').scrollIntoView();",
        json!([]),
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
    let audit = cz.text("main");
    assert!(audit.contains("Chain verified"), "{audit}");
    assert!(
        audit.contains("lu-l-aif/1") && audit.contains("jana"),
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
    let refusal = forged[1].as_str().unwrap();
    assert!(
        refusal.contains("vera is a viewer and this needs an adviser") && !refusal.contains("CSRF"),
        "{forged}"
    );
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

/// A raw HTTP request with cookies and more header lines: (status, headers, body).
fn raw_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    cookies: &str,
    extra: &str,
    body: &str,
) -> (u16, String, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookies}\r\n{extra}\
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

fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    cookies: &str,
    body: &str,
) -> (u16, String, String) {
    raw_with(addr, method, path, cookies, "", body)
}

/// The `name=value` a `Set-Cookie` header in `head` sets for `prefix…`.
fn set_cookie(head: &str, prefix: &str) -> String {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find(|c| c.starts_with(prefix) && !c.contains("Max-Age=0"))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no cookie {prefix} in\n{head}"))
}

/// Signs in to `member`'s console at `addr` with `token`; the session cookie.
fn session(addr: std::net::SocketAddr, member: &str, token: &str) -> String {
    let (_, head, _) = raw(addr, "GET", "/console/sign-in", "", "");
    let nonce_cookie = set_cookie(&head, &format!("aiguillage_sign_in_{member}="));
    let nonce = nonce_cookie.split_once('=').unwrap().1.to_owned();
    let (status, head, _) = raw(
        addr,
        "POST",
        "/console/sign-in",
        &nonce_cookie,
        &format!("csrf={nonce}&token={token}"),
    );
    assert_eq!(status, 303, "{head}");
    set_cookie(&head, &format!("aiguillage_session_{member}="))
}

/// A page's CSRF token (every signed-in page has the sign-out form).
fn csrf_of(addr: std::net::SocketAddr, session: &str) -> String {
    let (status, _, page) = raw(addr, "GET", "/console", session, "");
    assert_eq!(status, 200);
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

/// An open `GET /console/events` (`path` may carry `?last=`), with `Last-Event-ID` when
/// given.
fn open_events(
    addr: std::net::SocketAddr,
    cookie: &str,
    path: &str,
    last: Option<u64>,
) -> BufReader<std::net::TcpStream> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let resume = last
        .map(|l| format!("Last-Event-ID: {l}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n{resume}\
         Accept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    BufReader::new(s)
}

/// The next `n` events of a stream: (id, event name, data).
fn next_events(r: &mut BufReader<std::net::TcpStream>, n: usize) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    let (mut id, mut event) = (0, String::new());
    while out.len() < n {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "the stream ended");
        let line = line.trim_end();
        if let Some(v) = line.strip_prefix("id: ") {
            id = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = v.to_owned();
        } else if let Some(v) = line.strip_prefix("data: ") {
            out.push((id, std::mem::take(&mut event), v.to_owned()));
        }
    }
    out
}

#[test]
fn the_console_signs_in_with_a_token_only_and_its_event_stream_resumes_where_it_left_off() {
    let d = Devnet::start(&["lu-l-aif", "cz-czai"]);
    let addr = d.admin_addr("lu-l-aif");
    let (status, _, _) = raw(addr, "GET", "/console", "", "");
    assert_eq!(status, 303, "a page without a session sends to sign-in");
    let (status, head, _) = raw_with(
        addr,
        "GET",
        "/console/inbox?part=true",
        "",
        "HX-Request: true\r\n",
        "",
    );
    assert_eq!(
        status, 401,
        "a live refresh is told to send the window to sign-in"
    );
    assert!(head.contains("hx-redirect: /console/sign-in"), "{head}");
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
    let admin = session(addr, "lu-l-aif", &token);

    // A page's query may not carry what the page does not read, nor a value it does not
    // know.
    for (query, status) in [
        ("/console/referrals?colour=red", 400),
        ("/console/inbox?state=offered", 400),
        ("/console/referrals?state=sleeping", 422),
        ("/console/new?part=true", 400),
        (
            "/console/referrals?direction=in&state=offered&sort=state",
            200,
        ),
    ] {
        let (got, _, body) = raw(addr, "GET", query, &admin, "");
        assert_eq!(got, status, "{query}: {body}");
    }

    // A stream opened now hears the filing: its project and its referral, after the
    // newest event the stream started from.
    let mut stream = open_events(addr, &admin, "/console/events", None);
    let health = repo_root().join("config/examples/project-health-lu.toml");
    d.json("lu-l-aif", &["project", "file", health.to_str().unwrap()]);
    let mut seen = Vec::new();
    while !(seen
        .iter()
        .any(|(_, e, data): &(u64, String, String)| e == "project" && data.contains("lu-l-aif/p1"))
        && seen
            .iter()
            .any(|(_, e, data)| e == "referral" && data.contains("lu-l-aif/1")))
    {
        seen.extend(next_events(&mut stream, 1));
    }
    drop(stream);
    let ids: Vec<u64> = seen.iter().map(|(id, _, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    // Resumed after the first of them, by header or by the page's query, nothing is lost;
    // the header wins over the query.
    let first = ids[0];
    for (path, header) in [
        ("/console/events".to_owned(), Some(first)),
        (format!("/console/events?last={first}"), None),
        ("/console/events?last=0".to_owned(), Some(first)),
    ] {
        let mut again = open_events(addr, &admin, &path, header);
        let replay = next_events(&mut again, seen.len() - 1);
        assert_eq!(replay, seen[1..].to_vec(), "{path} {header:?}");
    }
    // An id this node never gave (from before a restart) is told to refresh.
    let mut stale = open_events(addr, &admin, "/console/events", Some(1_000_000));
    let reset = next_events(&mut stale, 1);
    assert_eq!(reset[0].1, "reset", "{reset:?}");

    // A form field the page does not take is refused, not dropped; so is one given twice.
    let csrf = csrf_of(addr, &admin);
    for (body, needle) in [
        (
            format!("csrf={csrf}&id=lu-l-aif/9&decision=accept&colour=red"),
            "colour",
        ),
        (
            format!("csrf={csrf}&id=lu-l-aif/9&decision=accept&decision=decline"),
            "twice",
        ),
    ] {
        let (status, _, page) = raw(addr, "POST", "/console/decide", &admin, &body);
        assert_eq!(status, 400, "{page}");
        assert!(page.contains(needle), "{needle}");
    }
    // A post another site's page makes is refused even with the token.
    let (status, _, page) = raw_with(
        addr,
        "POST",
        "/console/decide",
        &admin,
        "Origin: http://elsewhere.example\r\n",
        &format!("csrf={csrf}&id=lu-l-aif/1&decision=accept"),
    );
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("elsewhere.example"));
    // A body larger than any form is refused before it is read.
    let (status, _, _) = raw(
        addr,
        "POST",
        "/console/decide",
        &admin,
        &"a=b&".repeat(600_000),
    );
    assert_eq!(status, 413);

    // The project form: a filing the wire could not carry is refused at once, naming the
    // field and the limit, and the form comes back filled in, the text escaped.
    let project = |extra: &str, summary: &str| {
        format!(
            "csrf={csrf}&sector=health&country=LU&company_size=small&stage=assessment\
             &services_needed=assessment&gpu_hours=10&languages=en\
             &company=%3Cscript%3Ealert(1)%3C%2Fscript%3E&contact_name=c\
             &contact_email=c%40example.lu&summary={summary}&choice=route{extra}"
        )
    };
    let oversized = project("&consent_scope=whole_federation", &"x".repeat(200_000));
    let (status, _, body) = raw(addr, "POST", "/console/projects", &admin, &oversized);
    assert_eq!(status, 413, "{}", &body[..body.len().min(2000)]);
    for needle in [
        "Not filed",
        "dossier.summary",
        "131072",
        "&lt;script&gt;alert(1)",
    ] {
        assert!(body.contains(needle), "{needle}");
    }
    assert!(
        !body.contains("<script>alert"),
        "the company name is escaped"
    );
    // Members named under another consent scope would widen the consent: refused.
    let wider = project(
        "&consent_scope=whole_federation&consent_members=cz-czai",
        "short",
    );
    let (status, _, body) = raw(addr, "POST", "/console/projects", &admin, &wider);
    assert_eq!(status, 422);
    assert!(body.contains("consent"), "{body}");
    let projects = d.json("lu-l-aif", &["status"])["projects"]
        .as_u64()
        .unwrap();
    assert_eq!(projects, 1, "only the project filed above");
    // A viewer may preview the routing (it files nothing) but not file.
    let vera = d.add_token("lu-l-aif", "vera", "viewer");
    let viewer = session(addr, "lu-l-aif", &vera);
    let vcsrf = csrf_of(addr, &viewer);
    let preview = project("&consent_scope=whole_federation", "short").replacen(&csrf, &vcsrf, 1)
        + "&preview=1";
    let (status, _, body) = raw(addr, "POST", "/console/projects", &viewer, &preview);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Routing preview") && body.contains("cz-czai"));
    let file = project("&consent_scope=whole_federation", "short").replacen(&csrf, &vcsrf, 1);
    let (status, _, body) = raw(addr, "POST", "/console/projects", &viewer, &file);
    assert_eq!(status, 403, "{body}");

    // A removed token ends its sessions at once.
    let (status, _, _) = raw(addr, "GET", "/console/inbox", &viewer, "");
    assert_eq!(status, 200);
    let data = d.member_dir("lu-l-aif");
    support::run_in(
        &repo_root(),
        &[
            "token",
            "remove",
            "--data-dir",
            data.to_str().unwrap(),
            "--name",
            "vera",
        ],
    )
    .ok();
    let (status, _, _) = raw(addr, "GET", "/console/inbox", &viewer, "");
    assert_eq!(status, 303, "the removed viewer's session is over");

    // Signing out needs the CSRF token, and ends the session at once.
    let (status, _, _) = raw(addr, "POST", "/console/sign-out", &admin, "");
    assert_eq!(status, 403);
    let (status, _, _) = raw(
        addr,
        "POST",
        "/console/sign-out",
        &admin,
        &format!("csrf={csrf}&everyone=1"),
    );
    assert_eq!(status, 400, "a field sign-out does not take");
    let (status, _, _) = raw(
        addr,
        "POST",
        "/console/sign-out",
        &admin,
        &format!("csrf={csrf}"),
    );
    assert_eq!(status, 303);
    let (status, _, _) = raw(addr, "GET", "/console/inbox", &admin, "");
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
