//! The operator's command line, run as a real process: keys, roster, profiles, adverts.

mod support;

use std::os::unix::fs::PermissionsExt;

use std::path::Path;

use support::{Run, new_key, repo_root, run_in};

/// `roster new --federation eurohpc --out roster.toml` in `d`.
fn roster_new(d: &Path) {
    run_in(
        d,
        &[
            "roster",
            "new",
            "--federation",
            "eurohpc",
            "--out",
            "roster.toml",
        ],
    )
    .ok();
}

/// `roster add roster.toml --id ID --key-file KEY --role ROLE --country CC EXTRA…` in `d`.
fn roster_add(
    d: &Path,
    id: &str,
    key_file: &str,
    role: &str,
    country: &str,
    extra: &[&str],
) -> Run {
    let mut args = vec![
        "roster",
        "add",
        "roster.toml",
        "--id",
        id,
        "--key-file",
        key_file,
        "--role",
        role,
        "--country",
        country,
    ];
    args.extend_from_slice(extra);
    run_in(d, &args)
}

/// `roster sign roster.toml --authority-key KEY --out OUT` in `d`.
fn roster_sign(d: &Path, authority_key: &str, out: &str) -> Run {
    run_in(
        d,
        &[
            "roster",
            "sign",
            "roster.toml",
            "--authority-key",
            authority_key,
            "--out",
            out,
        ],
    )
}

#[test]
fn keys_are_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let public = new_key(dir.path(), "a.pem");
    let mode = std::fs::metadata(dir.path().join("a.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(dir.path().join("a.pem")).unwrap();
    let again = run_in(dir.path(), &["keys", "generate", "--out", "a.pem"]).fails();
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(std::fs::read(dir.path().join("a.pem")).unwrap(), before);
    let shown = run_in(dir.path(), &["keys", "show", "a.pem", "--json"])
        .ok()
        .json();
    assert_eq!(shown["public_key"], public.as_str());
    assert!(shown["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
}

#[test]
fn a_roster_signed_by_the_authority_verifies_and_one_signed_by_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let authority = new_key(d, "authority.pem");
    let impostor = new_key(d, "impostor.pem");
    new_key(d, "lu.pem");
    new_key(d, "be.pem");
    roster_new(d);
    roster_add(d, "lu-l-aif", "lu.pem", "factory", "LU", &[]).ok();
    roster_add(
        d,
        "be-be-aifa",
        "be.pem",
        "antenna",
        "BE",
        &["--linked", "lu-l-aif"],
    )
    .ok();
    // The same key twice, and a bad role, are refused with their reason.
    let dup = roster_add(d, "xx-dup", "lu.pem", "factory", "LU", &[]).fails();
    assert!(
        dup.stderr.contains("already belongs to lu-l-aif"),
        "{}",
        dup.stderr
    );
    let role = roster_add(d, "xx-role", "be.pem", "ministry", "LU", &[]).fails();
    assert!(role.stderr.contains("ministry"), "{}", role.stderr);

    roster_sign(d, "authority.pem", "roster.cbor").ok();
    let verified = run_in(
        d,
        &[
            "roster",
            "verify",
            "roster.cbor",
            "--authority",
            &authority,
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(verified["serial"], 3);
    assert_eq!(verified["members"], 2);

    let shown = run_in(
        d,
        &[
            "roster",
            "show",
            "roster.cbor",
            "--authority",
            &authority,
            "--json",
        ],
    )
    .ok()
    .json();
    let ids: Vec<_> = shown["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["lu-l-aif", "be-be-aifa"]);
    assert_eq!(shown["members"][1]["linked_factories"][0], "lu-l-aif");

    roster_sign(d, "impostor.pem", "forged.cbor").ok();
    let refused = run_in(
        d,
        &["roster", "verify", "forged.cbor", "--authority", &authority],
    )
    .fails();
    assert!(
        refused
            .stderr
            .contains("not signed by the pinned federation authority"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains(&impostor), "{}", refused.stderr);

    run_in(
        d,
        &["roster", "remove", "roster.toml", "--id", "be-be-aifa"],
    )
    .ok();
    let draft = run_in(d, &["roster", "show", "roster.toml", "--json"])
        .ok()
        .json();
    assert_eq!(draft["serial"], 4);
    assert_eq!(draft["members"].as_array().unwrap().len(), 1);
}

#[test]
fn every_shipped_profile_validates() {
    let out = run_in(&repo_root(), &["profile", "check", "config"]).ok();
    assert!(
        out.stdout
            .contains("32 profiles valid: 19 factories, 13 antennas"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_bad_sector_tag_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(repo_root().join("config/factories/lu-l-aif.toml")).unwrap();
    let factories = dir.path().join("factories");
    std::fs::create_dir(&factories).unwrap();
    std::fs::write(
        factories.join("lu-l-aif.toml"),
        src.replace("\"cybersecurity\"", "\"cyber\""),
    )
    .unwrap();
    let out = run_in(dir.path(), &["profile", "check", "."]).fails();
    assert!(out.stderr.contains("lu-l-aif.toml"), "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown tag \"cyber\""),
        "{}",
        out.stderr
    );
    let line = src
        .lines()
        .position(|l| l.contains("\"cybersecurity\""))
        .unwrap()
        + 1;
    assert!(
        out.stderr.contains(&format!("line {line}")),
        "{}",
        out.stderr
    );
}

#[test]
fn an_advert_built_from_a_profile_inspects_and_any_flipped_byte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let authority = new_key(d, "authority.pem");
    new_key(d, "lu.pem");
    new_key(d, "outsider.pem");
    roster_new(d);
    roster_add(d, "lu-l-aif", "lu.pem", "factory", "LU", &[]).ok();
    roster_sign(d, "authority.pem", "roster.cbor").ok();
    let profile = repo_root().join("config/factories/lu-l-aif.toml");
    let profile = profile.to_str().unwrap();
    run_in(
        d,
        &[
            "advert",
            "build",
            "--profile",
            profile,
            "--key",
            "lu.pem",
            "--seq",
            "7",
            "--ttl",
            "10m",
            "--out",
            "ad.cbor",
        ],
    )
    .ok();

    let shown = run_in(
        d,
        &[
            "advert",
            "inspect",
            "ad.cbor",
            "--roster",
            "roster.cbor",
            "--authority",
            &authority,
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(shown["member"], "lu-l-aif");
    assert_eq!(shown["seq"], 7);
    assert_eq!(shown["sectors"]["health"], "excluded");
    assert_eq!(shown["sectors"]["space"], "priority");
    // The researched size of MeluXina-AI is not capacity the federation may use: the
    // advert leaves capacity unknown until the member's scheduler reports it.
    assert!(shown["gpu"]["total"].is_null());
    assert!(shown["gpu"]["free"].is_null());

    // Signed by a key outside the roster: the signature is fine, the roster refuses it.
    run_in(
        d,
        &[
            "advert",
            "build",
            "--profile",
            profile,
            "--key",
            "outsider.pem",
            "--seq",
            "8",
            "--out",
            "outsider.cbor",
        ],
    )
    .ok();
    let refused = run_in(
        d,
        &[
            "advert",
            "inspect",
            "outsider.cbor",
            "--roster",
            "roster.cbor",
            "--authority",
            &authority,
        ],
    )
    .fails();
    assert!(
        refused
            .stderr
            .contains("is not the rostered key of lu-l-aif"),
        "{}",
        refused.stderr
    );

    let good = std::fs::read(d.join("ad.cbor")).unwrap();
    // Header, signer id, key, payload and signature: each flip is refused with a named reason.
    for at in [
        1,
        2,
        8,
        20,
        60,
        good.len() / 2,
        good.len() - 70,
        good.len() - 1,
    ] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        std::fs::write(d.join("bad.cbor"), &bad).unwrap();
        let out = run_in(d, &["advert", "inspect", "bad.cbor"]).fails();
        assert!(
            out.stderr.starts_with("error: "),
            "byte {at}: {}",
            out.stderr
        );
        assert!(
            [
                "signature",
                "version",
                "kind",
                "malformed",
                "truncated",
                "trailing",
                "too large",
                "ed25519 point",
                "expired",
                "valid before",
                "lifetime",
                "signer"
            ]
            .iter()
            .any(|w| out.stderr.contains(w)),
            "byte {at}: error does not name the failure: {}",
            out.stderr
        );
    }
}

#[test]
fn route_explains_a_referral_and_a_keep() {
    let root = repo_root();
    let health = run_in(
        &root,
        &[
            "route",
            "--explain",
            "config/examples/project-health-lu.toml",
            "--from",
            "lu-l-aif",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(health["outcome"], "refer");
    assert_eq!(health["rule"], "sector_excluded_here");
    let first = &health["ranked"][0];
    let member = first["member"].as_str().unwrap();
    let profile = std::fs::read_to_string(root.join(format!("config/factories/{member}.toml")))
        .or_else(|_| std::fs::read_to_string(root.join(format!("config/antennas/{member}.toml"))))
        .unwrap();
    let priority_line = profile
        .lines()
        .find(|l| l.starts_with("priority ="))
        .unwrap();
    assert!(
        priority_line.contains("\"health\""),
        "top candidate {member} must have health as a priority: {priority_line}"
    );
    // Every term is reported with weight, value and contribution.
    let terms = first["score"]["terms"].as_array().unwrap();
    assert_eq!(terms.len(), 7);
    let total: f64 = terms
        .iter()
        .map(|t| t["contribution"].as_f64().unwrap())
        .sum();
    assert!((total - first["score"]["total"].as_f64().unwrap()).abs() < 1e-9);

    let finance = run_in(
        &root,
        &[
            "route",
            "--explain",
            "config/examples/project-finance-lu.toml",
            "--from",
            "lu-l-aif",
        ],
    )
    .ok();
    assert!(finance.stdout.starts_with("KEEP: "), "{}", finance.stdout);

    let defence = run_in(
        &root,
        &[
            "route",
            "--explain",
            "config/examples/project-defence-lu.toml",
            "--from",
            "lu-l-aif",
            "--json",
        ],
    )
    .ok()
    .json();
    let ranked: Vec<&str> = defence["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["member"].as_str().unwrap())
        .collect();
    assert!(!ranked.is_empty());
    assert!(
        ranked
            .iter()
            .all(|m| m.starts_with("fr-") || m.starts_with("be-")),
        "consent allows FR and BE only: {ranked:?}"
    );
    assert!(
        defence["ineligible"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["rule"] == "out_of_consent_scope")
    );
}

/// `aiguillage init` of Luxembourg's node in `dir`, with `extra` arguments; its config path.
fn init_lu(dir: &std::path::Path, extra: &[&str]) -> std::path::PathBuf {
    let profile = repo_root().join("config/factories/lu-l-aif.toml");
    let data = dir.join("node");
    let mut args = vec![
        "init",
        "--profile",
        profile.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_in(dir, &args).ok();
    data.join("node.toml")
}

#[test]
fn an_admin_api_on_a_non_loopback_address_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let config = init_lu(dir.path(), &["--admin", "0.0.0.0:0"]);
    let refused = run_in(dir.path(), &["run", "--config", config.to_str().unwrap()]).fails();
    assert!(
        refused.stderr.contains("not a loopback address")
            && refused.stderr.contains("allow_remote"),
        "{}",
        refused.stderr
    );
    // Opting in gets past that check (and stops at the next: no roster was given).
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("allow_remote = false", "allow_remote = true"),
    )
    .unwrap();
    let next = run_in(dir.path(), &["run", "--config", config.to_str().unwrap()]).fails();
    assert!(
        !next.stderr.contains("not a loopback address") && next.stderr.contains("roster"),
        "{}",
        next.stderr
    );
}

#[test]
fn a_limit_of_zero_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = init_lu(dir.path(), &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    for (line, zero) in [
        ("handshakes_per_ip = 64", "handshakes_per_ip = 0"),
        ("peer_burst = 2000.0", "peer_burst = 0.0"),
    ] {
        assert!(text.contains(line), "{text}");
        std::fs::write(&config, text.replace(line, zero)).unwrap();
        let refused = run_in(dir.path(), &["run", "--config", config.to_str().unwrap()]).fails();
        let name = zero.split(' ').next().unwrap();
        assert!(
            refused.stderr.contains("[limits]") && refused.stderr.contains(name),
            "{}",
            refused.stderr
        );
    }
}

#[test]
fn a_devnet_duration_that_does_not_parse_is_refused_naming_its_option() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--decision-ttl", "--timeout"] {
        let net = dir.path().join("net");
        let refused = run_in(
            &support::repo_root(),
            &["devnet", flag, "5x", "--dir", net.to_str().unwrap()],
        )
        .fails();
        assert!(
            refused
                .stderr
                .contains(&format!("{flag}: \"5x\" is not a duration")),
            "{}",
            refused.stderr
        );
        assert!(!net.exists(), "nothing was prepared");
    }
}

#[test]
fn a_sector_only_accepted_at_home_goes_to_a_member_that_has_it_as_a_priority_unless_the_margin_rule_keeps_it()
 {
    // An Austrian space start-up filed at at-aiat, where space is only accepted.
    let root = repo_root();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root.join("config/examples/project-health-lu.toml"))
        .unwrap()
        .replace("sector = \"health\"", "sector = \"space\"")
        .replace(
            "secondary_sectors = [\"life_sciences\"]",
            "secondary_sectors = []",
        )
        .replace("country = \"LU\"", "country = \"AT\"");
    let file = dir.path().join("space-at.toml");
    std::fs::write(&file, text).unwrap();
    let route = |rule: &str| {
        run_in(
            &root,
            &[
                "route",
                "--explain",
                file.to_str().unwrap(),
                "--from",
                "at-aiat",
                "--rule",
                rule,
                "--json",
            ],
        )
        .ok()
        .json()
    };
    let better = route("better_suited");
    assert_eq!(better["outcome"], "refer", "{better}");
    assert_eq!(better["rule"], "better_suited_elsewhere");
    let ranked = better["ranked"].as_array().unwrap();
    assert!(!ranked.is_empty());
    for c in ranked {
        let m = c["member"].as_str().unwrap();
        let profile = std::fs::read_to_string(root.join(format!("config/factories/{m}.toml")))
            .or_else(|_| std::fs::read_to_string(root.join(format!("config/antennas/{m}.toml"))))
            .unwrap();
        let priority = profile
            .lines()
            .find(|l| l.starts_with("priority ="))
            .unwrap();
        assert!(
            priority.contains("\"space\""),
            "{m} is offered it: {priority}"
        );
    }
    // The earlier rule keeps it: home geography outweighs the priority match.
    let margin = route("margin");
    assert_eq!(margin["outcome"], "keep", "{margin}");
    assert_eq!(margin["rule"], "accepted_not_beaten");
    // The table names the rule; a wrong rule is refused with the choices.
    let table = run_in(
        &root,
        &[
            "route",
            "--explain",
            file.to_str().unwrap(),
            "--from",
            "at-aiat",
        ],
    )
    .ok();
    assert!(
        table.stdout.contains("rule: better_suited_elsewhere (this member's policy for accepted sectors: better_suited)"),
        "{}",
        table.stdout
    );
    let wrong = run_in(
        &root,
        &[
            "route",
            "--explain",
            file.to_str().unwrap(),
            "--from",
            "at-aiat",
            "--rule",
            "nearest",
        ],
    );
    assert_ne!(wrong.code, Some(0));
    assert!(
        wrong.stderr.contains("better_suited or margin"),
        "{}",
        wrong.stderr
    );
}

#[test]
fn a_node_config_that_cannot_work_is_refused_before_anything_starts_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let root = repo_root();
    run_in(
        &root,
        &[
            "devnet",
            "--prepare-only",
            "--members",
            "lu-l-aif,de-jaif",
            "--dir",
            net.to_str().unwrap(),
            "--config-dir",
            root.join("config").to_str().unwrap(),
        ],
    )
    .ok();
    let member = net.join("lu-l-aif");
    let base = std::fs::read_to_string(member.join("node.toml")).unwrap();
    let table: toml::Table = toml::from_str(&base).unwrap();
    let listen = table["listen"][0].as_str().unwrap().to_owned();
    let edit = |f: &dyn Fn(&mut toml::Table)| {
        let mut t = table.clone();
        f(&mut t);
        t
    };
    // Sets the value at a dotted path such as `core.routing.weights.sector`.
    fn set_at(t: &mut toml::Table, path: &[&str], v: toml::Value) {
        match path {
            [last] => {
                t.insert((*last).into(), v);
            }
            [first, rest @ ..] => {
                let inner = t
                    .entry(*first)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .unwrap();
                set_at(inner, rest, v);
            }
            [] => {}
        }
    }
    let set = |path: &'static str, v: toml::Value| {
        move |t: &mut toml::Table| {
            let parts: Vec<&str> = path.split('.').collect();
            set_at(t, &parts, v.clone());
        }
    };
    let cases: Vec<(toml::Table, &str)> = vec![
        (
            edit(&set("core.routing.weights.sector", 40.0.into())),
            "core.routing.weights.sector = 40",
        ),
        (
            edit(&set("core.routing.weights.geography", (-0.4).into())),
            "core.routing.weights.geography = -0.4",
        ),
        (
            edit(&set("core.routing.accept_margin", f64::NAN.into())),
            "core.routing.accept_margin = NaN",
        ),
        (edit(&set("core.routing.rule", "nearest".into())), "nearest"),
        (edit(&set("core.resend_ms", 0.into())), "core.resend_ms = 0"),
        (
            edit(&|t| {
                t.insert("gpus".into(), toml::Value::Integer(4_000_000_000));
            }),
            "gpus = 4000000000",
        ),
        (
            edit(&|t| {
                t.insert(
                    "bootstrap".into(),
                    toml::Value::Array(vec!["/ip4/127.0.0.1/tcp/1".into()]),
                );
            }),
            "bootstrap[0] = \"/ip4/127.0.0.1/tcp/1\"",
        ),
    ];
    for (i, (t, expect)) in cases.iter().enumerate() {
        let path = member.join(format!("bad-{i}.toml"));
        std::fs::write(&path, toml::to_string(t).unwrap()).unwrap();
        let out = run_in(&root, &["run", "--config", path.to_str().unwrap()]).fails();
        assert!(
            out.stderr.contains(expect),
            "case {i}: expected {expect:?} in:\n{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("listening"),
            "case {i} started listening:\n{}",
            out.stderr
        );
    }
    // A short admin token, before the network starts.
    std::fs::write(member.join("short.token"), "abc").unwrap();
    let mut t = table.clone();
    let mut admin = t["admin"].as_table().unwrap().clone();
    admin.insert("token_file".into(), "short.token".into());
    t.insert("admin".into(), toml::Value::Table(admin));
    let path = member.join("short.toml");
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    let out = run_in(&root, &["run", "--config", path.to_str().unwrap()]).fails();
    assert!(
        out.stderr.contains("at least 16 characters"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&listen), "{}", out.stderr);
    // Asked for JSON, the fatal error is a JSON line too, its message at the top level.
    let out = run_in(
        &root,
        &[
            "run",
            "--log-format",
            "json",
            "--config",
            path.to_str().unwrap(),
        ],
    )
    .fails();
    let last: serde_json::Value =
        serde_json::from_str(out.stderr.lines().last().unwrap()).expect("a JSON line");
    assert_eq!(last["level"], "ERROR", "{last}");
    assert_eq!(last["exit_code"], 1, "{last}");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("at least 16 characters")),
        "{last}"
    );
}

#[test]
fn a_member_installs_its_signed_roster_with_one_command_and_a_wrong_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let config = init_lu(
        d,
        &["--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0"],
    );
    let authority = new_key(d, "authority.pem");
    let other = new_key(d, "other.pem");
    new_key(d, "stranger.pem");
    // The authority's roster with lu-l-aif under its own key, signed.
    roster_new(d);
    roster_add(d, "lu-l-aif", "node/key.pem", "factory", "LU", &[]).ok();
    roster_add(d, "de-jaif", "stranger.pem", "factory", "DE", &[]).ok();
    roster_sign(d, "authority.pem", "signed.cbor").ok();
    let install = |file: &str, key: &str| {
        run_in(
            d,
            &[
                "roster",
                "install",
                file,
                "--authority",
                key,
                "--config",
                config.to_str().unwrap(),
            ],
        )
    };
    let before = std::fs::read_to_string(&config).unwrap();
    // Signed by another key than the authority's: refused, nothing changed.
    let out = install("signed.cbor", &other).fails();
    assert!(out.stderr.contains("refusing roster"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    assert!(!config.with_file_name("roster.cbor").exists());

    let out = install("signed.cbor", &authority).ok();
    assert!(
        out.stdout
            .contains("installed roster serial 3 of \"eurohpc\" (2 members"),
        "{}",
        out.stdout
    );
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(table["authority"].as_str(), Some(authority.as_str()));
    assert_eq!(table["roster"].as_str(), Some("roster.cbor"));
    assert_eq!(
        std::fs::read(config.with_file_name("roster.cbor")).unwrap(),
        std::fs::read(d.join("signed.cbor")).unwrap()
    );
    // The rest of node.toml is as init wrote it.
    assert_eq!(table["member"].as_str(), Some("lu-l-aif"));
    assert!(
        table["core"]
            .as_table()
            .is_some_and(|c| c.contains_key("offer_ttl_ms"))
    );
    // The node starts on it.
    let mut node = std::process::Command::new(support::bin())
        .args(["run", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let run_json = config.with_file_name("run.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !run_json.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = node.kill();
    let _ = node.wait();
    assert!(
        run_json.exists(),
        "the node started on the installed roster"
    );

    // A roster without this member, and one that has it under another key.
    run_in(d, &["roster", "remove", "roster.toml", "--id", "lu-l-aif"]).ok();
    roster_sign(d, "authority.pem", "without.cbor").ok();
    let out = install("without.cbor", &authority).fails();
    assert!(
        out.stderr.contains("does not list lu-l-aif"),
        "{}",
        out.stderr
    );
    roster_add(d, "lu-l-aif", "other.pem", "factory", "LU", &[]).ok();
    roster_sign(d, "authority.pem", "otherkey.cbor").ok();
    let out = install("otherkey.cbor", &authority).fails();
    assert!(
        out.stderr
            .contains("the authority has another key for this member"),
        "{}",
        out.stderr
    );
}
