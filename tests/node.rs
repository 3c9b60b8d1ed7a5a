//! Real nodes: each member is its own `aiguillage run` process on loopback, talking libp2p.

mod support;

use aiguillage_wire::*;
use support::{Devnet, http, repo_root};

fn file_project(d: &Devnet, node: &str, example: &str) -> String {
    let path = repo_root().join("config/examples").join(example);
    let v = d.json(node, &["project", "file", path.to_str().unwrap()]);
    v["referral"]
        .as_str()
        .unwrap_or_else(|| panic!("not referred: {v}"))
        .to_owned()
}

#[test]
fn adverts_converge_and_a_health_project_from_luxembourg_is_referred_accepted_and_handed_over() {
    let d = Devnet::start(&["lu-l-aif", "es-1healthai", "cz-czai"]);
    for m in ["lu-l-aif", "es-1healthai", "cz-czai"] {
        let dir = d.json(m, &["directory"]);
        assert_eq!(
            dir.as_array().unwrap().len(),
            2,
            "{m} sees both other members"
        );
    }
    let id = file_project(&d, "lu-l-aif", "project-health-lu.toml");
    d.wait_for(20, "the hand-over", || {
        d.referral_state("lu-l-aif", &id) == "handed_over"
    });
    let out = d.json("lu-l-aif", &["referral", "show", &id]);
    // es-1healthai has health as a priority and takes it at once; cz-czai only accepts it.
    assert_eq!(out["referral"]["attempts"][0]["target"], "es-1healthai");
    assert!(
        out["explanation"]["text"]
            .as_str()
            .unwrap()
            .contains("excluded here")
    );
    let incoming = d.json("es-1healthai", &["referral", "show", &id]);
    assert_eq!(incoming["direction"], "in");
    assert_eq!(
        incoming["referral"]["dossier"]["company"],
        "Example Diagnostics SARL"
    );
    // What an operator reads: the peers and each transition at INFO, the member on every
    // line, no colour codes in a file.
    let log = log_of(&d, "lu-l-aif");
    assert!(!log.contains('\u{1b}'), "no ANSI codes:\n{log}");
    for line in log.lines().filter(|l| l.starts_with("20")) {
        assert!(
            line.split_whitespace().nth(1) == Some("lu-l-aif"),
            "the member after the time: {line}"
        );
    }
    for needle in [
        "roster serial 1 installed (3 members)",
        "member es-1healthai connected",
        &format!("referral {id} accepted by es-1healthai"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(" INFO ") && l.contains(needle)),
            "an INFO line says {needle:?}:\n{log}"
        );
    }
    d.wait_for(20, "es-1healthai to log the hand-over", || {
        log_of(&d, "es-1healthai")
            .contains(&format!("referral {id}: dossier received from lu-l-aif"))
    });
}

fn log_of(d: &Devnet, member: &str) -> String {
    std::fs::read_to_string(d.member_dir(member).join("node.log")).unwrap_or_default()
}

#[test]
fn a_decline_moves_the_referral_to_the_next_candidate() {
    // Neither has health as a priority: each asks its operator.
    let d = Devnet::start(&["lu-l-aif", "it-it4lia", "cz-czai"]);
    let id = file_project(&d, "lu-l-aif", "project-health-lu.toml");
    let first = {
        let mut t = String::new();
        d.wait_for(10, "the first offer", || {
            let v = d.json("lu-l-aif", &["referral", "show", &id]);
            t = v["referral"]["attempts"][0]["target"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            !t.is_empty() && d.referral_state(&t, &id) == "awaiting_decision"
        });
        t
    };
    d.cli(
        &first,
        &[
            "referral",
            "decline",
            &id,
            "--detail",
            "no capacity this quarter",
        ],
    )
    .ok();
    let second = if first == "it-it4lia" {
        "cz-czai"
    } else {
        "it-it4lia"
    };
    d.wait_for(10, "the second offer", || {
        d.cli(second, &["referral", "show", &id, "--json"]).code == Some(0)
            && d.referral_state(second, &id) == "awaiting_decision"
    });
    d.cli(second, &["referral", "accept", &id]).ok();
    d.wait_for(10, "the hand-over", || {
        d.referral_state("lu-l-aif", &id) == "handed_over"
    });
    let out = d.json("lu-l-aif", &["referral", "show", &id]);
    let attempts = out["referral"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["outcome"]["reason"], "operator_declined");
    assert_eq!(attempts[1]["target"], second);
}

#[test]
fn a_target_killed_while_the_offer_is_open_restarts_with_it_and_the_referral_completes_once() {
    let mut d = Devnet::start(&["lu-l-aif", "it-it4lia"]);
    let id = file_project(&d, "lu-l-aif", "project-health-lu.toml");
    d.wait_for(10, "the offer at it-it4lia", || {
        d.cli("it-it4lia", &["referral", "show", &id, "--json"])
            .code
            == Some(0)
            && d.referral_state("it-it4lia", &id) == "awaiting_decision"
    });
    let before = d.json("it-it4lia", &["referral", "list"]);
    let status_before = d.json("it-it4lia", &["status"]);
    d.kill9("it-it4lia");
    d.restart("it-it4lia");
    // Restarted from its data folder, it holds exactly what it held.
    assert_eq!(d.json("it-it4lia", &["referral", "list"]), before);
    let status_after = d.json("it-it4lia", &["status"]);
    for k in [
        "projects",
        "referrals_in",
        "referrals_out",
        "jobs",
        "roster_serial",
    ] {
        assert_eq!(status_after[k], status_before[k], "{k}");
    }
    d.cli("it-it4lia", &["referral", "accept", &id]).ok();
    d.wait_for(20, "the hand-over after the restart", || {
        d.referral_state("lu-l-aif", &id) == "handed_over"
    });
    let out = d.json("lu-l-aif", &["referral", "show", &id]);
    assert_eq!(
        out["referral"]["attempts"].as_array().unwrap().len(),
        1,
        "no second offer, no duplicate"
    );
    let incoming = d.json("it-it4lia", &["referral", "show", &id]);
    assert_eq!(incoming["referral"]["state"]["state"], "handed_over");
    // Its audit log survived the crash: chain and signatures verify (with the node stopped).
    d.kill9("it-it4lia");
    let dir = d.member_dir("it-it4lia");
    let out = support::run_in(
        &repo_root(),
        &["audit", "verify", "--data-dir", dir.to_str().unwrap()],
    )
    .ok();
    assert!(out.stdout.contains("chain intact"), "{}", out.stdout);
}

#[test]
fn projects_filed_concurrently_each_get_their_own_answer_and_all_survive_a_crash() {
    let mut d = Devnet::start(&["lu-l-aif", "es-1healthai"]);
    // Calls that arrive together are applied under one commit; each caller must still get
    // the referral of its own project, and only once the store holds it.
    // (Fewer than es-1healthai's default intake of 20, so that it accepts them all.)
    const CALLERS: usize = 16;
    let ids: Vec<String> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| s.spawn(|| file_project(&d, "lu-l-aif", "project-health-lu.toml")))
            .collect();
        callers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), CALLERS, "one referral per call: {ids:?}");
    d.kill9("lu-l-aif");
    d.restart("lu-l-aif");
    let listed = listed_referrals(&d, "lu-l-aif");
    for id in &ids {
        assert!(listed.contains(id), "{id} was answered but lost");
    }
    d.wait_for(30, "every referral handed over", || {
        ids.iter()
            .all(|id| d.referral_state("lu-l-aif", id) == "handed_over")
    });
}

#[test]
fn the_admin_api_refuses_requests_without_the_right_token() {
    let d = Devnet::start(&["lu-l-aif", "de-jaif"]);
    let addr = d.admin_addr("lu-l-aif");
    let (code, body) = http(addr, "GET", "/status", None);
    assert_eq!(code, 401);
    assert!(body.contains("missing bearer token"), "{body}");
    let (code, body) = http(addr, "GET", "/status", Some("not-the-token-at-all"));
    assert_eq!(code, 401);
    assert!(body.contains("wrong bearer token"), "{body}");
    let (code, _) = http(addr, "GET", "/status", Some(&d.token("lu-l-aif")));
    assert_eq!(code, 200);
    let (code, body) = http(addr, "GET", "/nowhere", Some(&d.token("lu-l-aif")));
    assert_eq!(code, 404);
    assert!(body.contains("\"error\""), "{body}");
}

/// Starts a libp2p client of our own with `key`, connected to `target`'s node.
async fn rogue_client(
    d: &Devnet,
    key: &SigningKey,
    target: &str,
) -> (aiguillage_net::Client, aiguillage_net::PeerId) {
    let addr: aiguillage_net::Multiaddr = d.run_info(target)["listen"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let peer: aiguillage_net::PeerId = d.run_info(target)["peer_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut cfg = aiguillage_net::NetConfig::new(aiguillage_net::keypair_of(key));
    cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    cfg.bootstrap = vec![addr];
    cfg.allowed = [peer].into_iter().collect();
    let (client, _events, event_loop) = aiguillage_net::start(cfg).unwrap();
    tokio::spawn(event_loop.run());
    (client, peer)
}

fn metric(d: &Devnet, node: &str, needle: &str) -> u64 {
    let (_, text) = http(d.admin_addr(node), "GET", "/metrics", None);
    text.lines()
        .find(|l| l.starts_with("aiguillage_refused_total") && l.contains(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_input_is_refused_and_counted_while_the_node_keeps_serving() {
    let d = Devnet::start(&["lu-l-aif", "de-jaif", "fr-ai2f"]);
    // fr-ai2f goes down; its rostered key is used to speak to lu-l-aif directly.
    d.kill9("fr-ai2f");
    let fr_key = aiguillage_wire::keys::secret_key_from_pem(
        &std::fs::read_to_string(d.member_dir("fr-ai2f").join("key.pem")).unwrap(),
    )
    .unwrap();
    let outsider = SigningKey::from_bytes(&[42; 32]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // A key outside the roster is disconnected as soon as it connects.
        let (stranger, peer) = rogue_client(&d, &outsider, "lu-l-aif").await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(
            stranger
                .send(peer, aiguillage_net::Channel::Referral, vec![0x80])
                .await
                .is_err()
        );

        let (client, peer) = rogue_client(&d, &fr_key, "lu-l-aif").await;
        for _ in 0..50 {
            if client.connected().await.unwrap().contains(&peer) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // An advert claiming to be de-jaif, signed with fr-ai2f's key.
        let profile = aiguillage_core::Profile::from_toml(
            &std::fs::read_to_string(repo_root().join("config/factories/de-jaif.toml")).unwrap(),
            "de-jaif",
        )
        .unwrap();
        let mut forged = profile.advert(u64::MAX / 2, GpuCapacity::default(), None);
        forged.name = "forged".into();
        let now = now_ms();
        let env = Envelope::seal(
            &forged,
            &MemberId::new("de-jaif").unwrap(),
            &fr_key,
            now,
            now.saturating_add_ms(60_000),
        )
        .unwrap();
        // On the referral protocol an advert is the wrong kind, whoever signed it.
        match client
            .send(peer, aiguillage_net::Channel::Referral, env.to_bytes())
            .await
        {
            Err(aiguillage_net::NetError::Refused { reason, .. }) => {
                assert_eq!(reason, "wrong_kind")
            }
            other => panic!("an advert on the referral protocol answered {other:?}"),
        }
        // On the adverts topic, it is refused for its key.
        client
            .publish(aiguillage_net::Topic::Adverts, env.to_bytes())
            .await
            .unwrap();
        // A malformed frame gets an error answer naming the problem.
        let err = client
            .send(peer, aiguillage_net::Channel::Overflow, vec![0x88, 0x01])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // An oversized frame is cut off by the codec limit.
        let big = vec![0u8; MAX_ENVELOPE_BYTES + 4096];
        assert!(
            client
                .send(peer, aiguillage_net::Channel::Overflow, big)
                .await
                .is_err()
        );
    });
    d.wait_for(10, "the refusals on /metrics", || {
        metric(&d, "lu-l-aif", "reason=\"key_mismatch\"") >= 1
            && metric(&d, "lu-l-aif", "reason=\"not_rostered\"") >= 1
    });
    // The forged advert did not replace the real one, and the node still serves.
    let dir = d.json("lu-l-aif", &["directory"]);
    let de = dir
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["member"] == "de-jaif")
        .unwrap();
    assert_ne!(de["seq"].as_u64(), Some(u64::MAX / 2));
    let id = file_project(&d, "lu-l-aif", "project-health-lu.toml");
    d.wait_for(20, "a referral after the attack", || {
        d.referral_state("lu-l-aif", &id) == "handed_over"
    });
}

/// `m` signed by `signer` with `key`, valid for a minute from `now`.
fn signed<M: Message>(m: &M, signer: &MemberId, key: &SigningKey, now: Timestamp) -> Envelope {
    Envelope::seal(m, signer, key, now, now.saturating_add_ms(60_000)).unwrap()
}

fn now_ms() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    )
}

#[test]
fn a_rostered_member_cannot_replay_adverts_decide_for_others_or_claim_receipts() {
    let d = Devnet::start_with(
        &["lu-l-aif", "de-jaif", "fr-ai2f"],
        &["--gpus", "lu-l-aif=0"],
    );
    // Real work first: a referral and a job that some member takes.
    let id = file_project(&d, "lu-l-aif", "project-health-lu.toml");
    d.wait_for(20, "the hand-over", || {
        d.referral_state("lu-l-aif", &id) == "handed_over"
    });
    let job_file = d.dir.path().join("job.toml");
    std::fs::write(
        &job_file,
        "gpus = 1\ntime_limit_s = 60\ncommand = [\"true\"]\n",
    )
    .unwrap();
    let job = d.json("lu-l-aif", &["job", "submit", job_file.to_str().unwrap()])["job"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_for(20, "the job to finish", || {
        d.json("lu-l-aif", &["job", "show", &job])["job"]["phase"]["phase"] == "done"
    });
    let referral = d.json("lu-l-aif", &["referral", "show", &id]);
    let target = referral["referral"]["attempts"][0]["target"]
        .as_str()
        .unwrap()
        .to_owned();
    // The rogue is the member that was not offered the referral; its node goes down and
    // its rostered key speaks to Luxembourg directly.
    let rogue = if target == "de-jaif" {
        "fr-ai2f"
    } else {
        "de-jaif"
    };
    let listing = |d: &Devnet| {
        d.json("lu-l-aif", &["directory"])
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["member"] == rogue)
            .cloned()
            .unwrap()
    };
    let listing_before = listing(&d);
    let totals = |d: &Devnet| -> Vec<serde_json::Value> {
        d.json("lu-l-aif", &["ledger"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| serde_json::json!([r["member"], r["totals"]]))
            .collect()
    };
    let ledger_before = totals(&d);
    d.kill9(rogue);
    let key = keys::secret_key_from_pem(
        &std::fs::read_to_string(d.member_dir(rogue).join("key.pem")).unwrap(),
    )
    .unwrap();
    let rogue_id = MemberId::new(rogue).unwrap();
    let now = now_ms();
    let profile = aiguillage_core::Profile::from_toml(
        &std::fs::read_to_string(repo_root().join(format!("config/factories/{rogue}.toml")))
            .unwrap(),
        rogue,
    )
    .unwrap();
    let seq = listing_before["seq"].as_u64().unwrap();
    let mut replayed = profile.advert(seq, GpuCapacity::default(), None);
    replayed.name = "replayed with the same seq".into();
    let messages = [
        signed(&replayed, &rogue_id, &key, now),
        signed(
            &Accept {
                referral: ReferralId::new(&id).unwrap(),
                attempt: 1,
            },
            &rogue_id,
            &key,
            now,
        ),
        signed(
            &Decline {
                referral: ReferralId::new(&id).unwrap(),
                attempt: 1,
                reason: DeclineReason::NoCapacity,
                detail: "not mine".into(),
            },
            &rogue_id,
            &key,
            now,
        ),
        signed(
            &UsageReceipt {
                job: JobId::new("lu-l-aif/999").unwrap(),
                epoch: 1,
                origin: MemberId::new("lu-l-aif").unwrap(),
                host: rogue_id.clone(),
                gpus: 8,
                started_at: now.saturating_sub_ms(3_600_000),
                finished_at: now,
                gpu_seconds: 8 * 3_600,
                state: JobState::Succeeded,
                exit_code: Some(0),
            },
            &rogue_id,
            &key,
            now,
        ),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, peer) = rogue_client(&d, &key, "lu-l-aif").await;
        for _ in 0..50 {
            if client.connected().await.unwrap().contains(&peer) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // The advert goes out on gossip; the decisions and the receipt are refused, and the
        // answer says why.
        client
            .publish(aiguillage_net::Topic::Adverts, messages[0].to_bytes())
            .await
            .unwrap();
        for (m, expected) in
            messages[1..]
                .iter()
                .zip(["not_the_target", "not_the_target", "unknown_job"])
        {
            let channel = if m.kind == MessageKind::UsageReceipt {
                aiguillage_net::Channel::Overflow
            } else {
                aiguillage_net::Channel::Referral
            };
            match client.send(peer, channel, m.to_bytes()).await {
                Err(aiguillage_net::NetError::Refused { reason, .. }) => {
                    assert_eq!(reason, expected, "{}", m.kind)
                }
                other => panic!("{} answered {other:?}", m.kind),
            }
        }
    });
    d.wait_for(10, "the refusals on /metrics", || {
        metric(&d, "lu-l-aif", "kind=\"accept\",reason=\"not_the_target\"") >= 1
            && metric(&d, "lu-l-aif", "kind=\"decline\",reason=\"not_the_target\"") >= 1
            && metric(
                &d,
                "lu-l-aif",
                "kind=\"usage_receipt\",reason=\"unknown_job\"",
            ) >= 1
    });
    // Nothing moved: the listing, the referral and the ledger are as they were.
    assert_eq!(listing(&d)["name"], listing_before["name"]);
    let after = d.json("lu-l-aif", &["referral", "show", &id]);
    assert_eq!(
        after["referral"]["attempts"],
        referral["referral"]["attempts"]
    );
    assert_eq!(d.referral_state("lu-l-aif", &id), "handed_over");
    assert_eq!(
        totals(&d),
        ledger_before,
        "no GPU-seconds for a job never hosted"
    );
}

#[test]
fn a_flooding_member_is_rate_limited_while_the_node_keeps_serving_the_others() {
    // Luxembourg lets each peer deliver 50 messages at once, then one a second: small and
    // explicit, so that the limit engages however fast or slow the flood arrives.
    const BURST: usize = 50;
    const PER_S: f64 = 1.0;
    const FLOOD: usize = 1_000;
    let mut d = Devnet::start(&["lu-l-aif", "es-1healthai", "fr-ai2f"]);
    d.kill9("fr-ai2f");
    d.kill9("lu-l-aif");
    let config = d.member_dir("lu-l-aif").join("node.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let limited = text
        .replace(
            "peer_messages_per_s = 500.0",
            &format!("peer_messages_per_s = {PER_S:?}"),
        )
        .replace("peer_burst = 2000.0", &format!("peer_burst = {BURST}.0"));
    assert_ne!(limited, text, "the devnet writes the default limits");
    std::fs::write(&config, limited).unwrap();
    d.restart("lu-l-aif");

    let key = keys::secret_key_from_pem(
        &std::fs::read_to_string(d.member_dir("fr-ai2f").join("key.pem")).unwrap(),
    )
    .unwrap();
    let fr = MemberId::new("fr-ai2f").unwrap();
    let now = now_ms();
    // Valid, signed, rostered: each would cost a signature check and a lookup.
    let flood: Vec<Vec<u8>> = (0..FLOOD as u64)
        .map(|n| {
            let m = Heartbeat {
                job: JobId::new(format!("lu-l-aif/{}", 1_000 + n)).unwrap(),
                epoch: 1,
                state: JobState::Running,
            };
            Envelope::seal(&m, &fr, &key, now, now.saturating_add_ms(600_000))
                .unwrap()
                .to_bytes()
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (admitted, refused, other, elapsed) = rt.block_on(async {
        let (client, peer) = rogue_client(&d, &key, "lu-l-aif").await;
        for _ in 0..100 {
            if client.connected().await.unwrap().contains(&peer) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let started = std::time::Instant::now();
        let (mut admitted, mut refused, mut other) = (0, 0, Vec::new());
        for chunk in flood.chunks(100) {
            let sends = chunk.iter().map(|bytes| {
                let client = client.clone();
                let bytes = bytes.clone();
                async move {
                    client
                        .send(peer, aiguillage_net::Channel::Overflow, bytes)
                        .await
                }
            });
            for answer in futures::future::join_all(sends).await {
                match answer {
                    Ok(()) => admitted += 1,
                    Err(aiguillage_net::NetError::Refused { reason, .. })
                        if reason == "rate_limited" =>
                    {
                        refused += 1
                    }
                    Err(e) => other.push(e.to_string()),
                }
            }
        }
        (admitted, refused, other, started.elapsed())
    });
    // Every message was answered, and the bucket let through its burst and its refill: no
    // more (the refill is bounded by the time the flood took), no fewer.
    assert!(
        other.is_empty(),
        "{} failed otherwise: {:?}",
        other.len(),
        &other[..other.len().min(3)]
    );
    assert_eq!(admitted + refused, FLOOD);
    let refill = (elapsed.as_secs_f64() * PER_S).ceil() as usize;
    assert!(
        (BURST..=BURST + refill).contains(&admitted),
        "{admitted} admitted in {elapsed:?} with a burst of {BURST} at {PER_S}/s"
    );
    // Each refusal was counted once, by the network task, before it reached the node.
    assert_eq!(
        metric(&d, "lu-l-aif", "reason=\"rate_limited\"") as usize,
        refused
    );
    // Luxembourg still serves the others: a referral goes through, its peer stays.
    let id = file_project(&d, "lu-l-aif", "project-health-lu.toml");
    d.wait_for(30, "a referral after the flood", || {
        d.referral_state("lu-l-aif", &id) == "handed_over"
    });
    let status = d.json("lu-l-aif", &["status"]);
    assert!(status["peers_connected"].as_u64().unwrap() >= 1, "{status}");
    // Its memory stayed bounded.
    let pid = d.run_info("lu-l-aif")["pid"].as_u64().unwrap();
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(rss_kib < 256 * 1024, "RSS {rss_kib} KiB after the flood");
}

/// Whether the node has closed `conn` (end of stream or reset) rather than holding it open
/// in its handshake. Refused connections are closed at once; give them a moment first.
fn closed_by_node(mut conn: &std::net::TcpStream) -> bool {
    use std::io::Read;
    conn.set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 256];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            // The node's side of the protocol negotiation, if it speaks first.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// `n` TCP connections to `target` from 127.0.0.2, an address no member uses, that never
/// start their handshake.
fn silent_connections(target: std::net::SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (0..n)
        .map(|_| {
            let conn = rt.block_on(async {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                socket.connect(target).await.unwrap()
            });
            let conn = conn.into_std().unwrap();
            conn.set_nonblocking(false).unwrap();
            conn
        })
        .collect()
}

#[test]
fn an_address_holding_handshakes_open_is_refused_past_its_limit_while_members_carry_on() {
    let mut d = Devnet::start(&["lu-l-aif", "es-1healthai"]);
    d.kill9("lu-l-aif");
    let config = d.member_dir("lu-l-aif").join("node.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("handshakes_per_ip = 64"), "{text}");
    std::fs::write(
        &config,
        text.replace("handshakes_per_ip = 64", "handshakes_per_ip = 4"),
    )
    .unwrap();
    d.restart("lu-l-aif");
    d.wait_for(20, "es-1healthai connected again", || {
        d.json("lu-l-aif", &["status"])["peers_connected"].as_u64() == Some(1)
    });
    // "/ip4/127.0.0.1/tcp/<port>/p2p/<peer id>" (the node also listens on QUIC).
    let info = d.run_info("lu-l-aif");
    let listen = info["listen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .find(|a| a.contains("/tcp/"))
        .unwrap();
    let port: u16 = listen.split('/').nth(4).unwrap().parse().unwrap();
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Twelve connections from one address that never start their handshake.
    let held = silent_connections(target, 12);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let closed = held.iter().filter(|c| closed_by_node(c)).count();
    assert_eq!(
        closed, 8,
        "four handshakes may run at once, the rest are closed"
    );
    d.wait_for(10, "the refusals on /metrics", || {
        metric(&d, "lu-l-aif", "reason=\"handshakes_per_ip\"") == 8
    });
    // The member already connected is not affected.
    let id = file_project(&d, "lu-l-aif", "project-health-lu.toml");
    d.wait_for(20, "a referral while the address is at its limit", || {
        d.referral_state("lu-l-aif", &id) == "handed_over"
    });
    // Handshakes that end free their places.
    drop(held);
    d.wait_for(10, "the four places given back", || {
        let again = silent_connections(target, 4);
        std::thread::sleep(std::time::Duration::from_millis(300));
        again.iter().all(|c| !closed_by_node(c))
    });
}

#[test]
fn a_newer_roster_spreads_and_cuts_off_the_member_it_removes() {
    let mut d = Devnet::start(&["lu-l-aif", "de-jaif", "fr-ai2f"]);
    let roster_path = d.net_dir().join("roster.cbor");
    let authority = keys::secret_key_from_pem(
        &std::fs::read_to_string(d.net_dir().join("authority.pem")).unwrap(),
    )
    .unwrap();
    let now = Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    let old = Envelope::from_bytes(&std::fs::read(&roster_path).unwrap())
        .unwrap()
        .open::<Roster>(now)
        .unwrap()
        .message;
    let mut new = old.clone();
    new.serial += 1;
    new.members.retain(|m| m.id.as_str() != "fr-ai2f");
    let signed = Envelope::seal(
        &new,
        &MemberId::new(AUTHORITY_ID).unwrap(),
        &authority,
        now,
        now.saturating_add_ms(86_400_000),
    )
    .unwrap();
    std::fs::write(&roster_path, signed.to_bytes()).unwrap();
    // lu-l-aif picks the new roster up on restart and spreads it; de-jaif never reads the file.
    d.kill9("lu-l-aif");
    d.restart("lu-l-aif");
    let statuses = || {
        ["lu-l-aif", "de-jaif", "fr-ai2f"]
            .map(|m| format!("{m}: {}", d.json(m, &["status"])))
            .join("; ")
    };
    d.wait_for_showing(
        20,
        "de-jaif to hold roster serial 2",
        || d.json("de-jaif", &["status"])["roster_serial"] == new.serial,
        statuses,
    );
    for m in ["lu-l-aif", "de-jaif"] {
        let status = d.json(m, &["status"]);
        assert_eq!(status["roster_members"], 2, "{m}");
        let dir = d.json(m, &["directory"]);
        assert!(
            dir.as_array()
                .unwrap()
                .iter()
                .all(|a| a["member"] != "fr-ai2f"),
            "{m} still lists fr-ai2f"
        );
    }
    // fr-ai2f, still on the old roster, is disconnected by both, and de-jaif, which was
    // connected to it, no longer counts it.
    d.wait_for_showing(
        20,
        "fr-ai2f to lose its peers",
        || d.json("fr-ai2f", &["status"])["peers_connected"] == 0,
        statuses,
    );
    d.wait_for_showing(
        10,
        "de-jaif to count one peer",
        || d.json("de-jaif", &["status"])["peers_connected"] == 1,
        statuses,
    );
    let (_, text) = http(d.admin_addr("de-jaif"), "GET", "/metrics", None);
    assert!(
        text.lines().any(|l| l == "aiguillage_peers_connected 1"),
        "{text}"
    );
}

#[test]
fn the_network_benchmark_harness_measures_every_figure() {
    // A smoke run: it checks that every figure is measured, not how fast it is.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let run = support::run_in(
        &repo_root(),
        &[
            "bench",
            "net",
            "--nodes",
            "3",
            "--rounds",
            "3",
            "--referrals",
            "2",
            "--in-flight",
            "4",
            "--jobs",
            "1",
            "--dir",
            dir.path().join("net").to_str().unwrap(),
            "--json",
            out.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(
        run.stdout.contains("offer → durable signed accept"),
        "{}",
        run.stdout
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["nodes"], 3);
    assert_eq!(v["advert_seen_by_all_ms"]["rounds"], 3);
    assert_eq!(v["advert_seen_by_all_ms"]["lost"], 0);
    assert_eq!(v["advert_each_receiver_ms"]["samples"], 6);
    assert_eq!(v["referral_offer_to_accept_ms_1_in_flight"]["samples"], 2);
    assert_eq!(v["overflow_filed_to_lease_ms"]["samples"], 1);
    assert!(
        v["referral_offer_to_accept_ms_batch"]["per_second"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(v["idle_rss_mib"]["median"].as_f64().unwrap() > 1.0);
    // Each floor is measured in the same run, and the ceiling follows from them.
    let floor = &v["floor"];
    for k in ["sign_us", "verify_us", "request_rtt_us", "flush_us"] {
        assert!(floor[k].as_f64().unwrap() > 0.0, "{k}: {floor}");
    }
    let ceiling = floor["cores"].as_f64().unwrap() * 1e6
        / (4.0 * (floor["sign_us"].as_f64().unwrap() + floor["verify_us"].as_f64().unwrap()));
    assert!((floor["referrals_per_s_ceiling"].as_f64().unwrap() - ceiling).abs() < 1e-6);
    assert!(run.stdout.contains("of the ceiling"), "{}", run.stdout);
}

/// A tmpfs of `size` mounted at `at` for as long as it lives (root only, as in CI).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (as in CI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(&self.0)
            .status();
    }
}

fn listed_referrals(d: &Devnet, node: &str) -> Vec<String> {
    d.json(node, &["referral", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["referral"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_node_whose_disk_fills_stops_and_resumes_with_everything_it_answered() {
    let mut d = Devnet::start(&["lu-l-aif", "es-1healthai"]);
    d.kill9("lu-l-aif");
    // Luxembourg's store moves onto a small disk of its own.
    let dir = d.member_dir("lu-l-aif");
    let disk = SmallDisk::mount(&d.net_dir().join("lu-disk"), "16m");
    let db = disk.0.join("db");
    let status = std::process::Command::new("cp")
        .args(["-a"])
        .arg(dir.join("db"))
        .arg(&db)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(dir.join("db")).unwrap();
    std::os::unix::fs::symlink(&db, dir.join("db")).unwrap();
    d.restart("lu-l-aif");
    let pid = d.run_info("lu-l-aif")["pid"].as_u64().unwrap();
    // Fill the disk, then give the store a little room back.
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(disk.0.join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while filler.write_all(&chunk).is_ok() {}
        let _ = filler.sync_all();
        let full = filler.metadata().unwrap().len();
        filler.set_len(full.saturating_sub(256 * 1024)).unwrap();
        filler.sync_all().unwrap();
    }
    // File projects until the node stops answering.
    let mut answered = Vec::new();
    for _ in 0..2_000 {
        let path = repo_root().join("config/examples/project-health-lu.toml");
        let out = d.cli(
            "lu-l-aif",
            &["project", "file", path.to_str().unwrap(), "--json"],
        );
        if out.code != Some(0) {
            break;
        }
        // The project, and its referral if it was referred (one es-1healthai has no
        // room for stays here).
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        answered.push((
            v["project"].as_str().unwrap().to_owned(),
            v["referral"].as_str().map(str::to_owned),
        ));
    }
    d.wait_for(10, "the node to stop", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    let log = std::fs::read_to_string(dir.join("restart.log")).unwrap();
    assert!(log.contains("cannot persist state"), "{log}");
    assert!(!answered.is_empty(), "the store had room for some projects");
    // With room again, it restarts holding every project it had answered for.
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    d.restart("lu-l-aif");
    let referrals = listed_referrals(&d, "lu-l-aif");
    let projects: Vec<String> = d
        .json("lu-l-aif", &["project", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["card"]["project"].as_str().map(str::to_owned))
        .collect();
    for (project, referral) in &answered {
        assert!(
            projects.contains(project),
            "{project} was answered but lost"
        );
        if let Some(id) = referral {
            assert!(referrals.contains(id), "{id} was answered but lost");
        }
    }
    d.kill9("lu-l-aif");
}

#[test]
fn a_finished_referral_leaves_memory_after_its_retention_and_is_still_shown() {
    let mut d = Devnet::start(&["lu-l-aif", "es-1healthai"]);
    // Luxembourg keeps finished records in memory for one second.
    d.kill9("lu-l-aif");
    let config = d.member_dir("lu-l-aif").join("node.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("retention_ms = "))
        .unwrap_or_else(|| panic!("no retention in {text}"))
        .to_owned();
    std::fs::write(&config, text.replace(&line, "retention_ms = 1000")).unwrap();
    d.restart("lu-l-aif");
    let id = file_project(&d, "lu-l-aif", "project-health-lu.toml");
    d.wait_for(30, "the dossier at es-1healthai", || {
        d.referral_state("es-1healthai", &id) == "handed_over"
    });
    // es-1healthai reports the project completed.
    let (status, body) = support::http_with(
        d.admin_addr("es-1healthai"),
        "POST",
        &format!("/referrals/{id}/progress"),
        Some(&d.token("es-1healthai")),
        r#"{"step": "production", "state": "completed", "note": "in production"}"#,
    );
    assert_eq!(status, 200, "{body}");
    d.wait_for(30, "the referral to leave Luxembourg's memory", || {
        d.json("lu-l-aif", &["status"])["referrals_out"] == 0
    });
    let shown = |d: &Devnet| {
        let v = d.json("lu-l-aif", &["referral", "show", &id]);
        assert_eq!(v["direction"], "out", "{v}");
        assert_eq!(support::state_of(&v), "completed", "{v}");
        assert!(v["explanation"]["text"].as_str().is_some(), "{v}");
        assert!(listed_referrals(d, "lu-l-aif").contains(&id));
    };
    shown(&d);
    // And after a restart, from the store alone.
    d.kill9("lu-l-aif");
    d.restart("lu-l-aif");
    assert_eq!(d.json("lu-l-aif", &["status"])["referrals_out"], 0);
    shown(&d);
}

/// The value of the first line of `/metrics` at `node` that starts with `name` and holds
/// `needle` (0 when there is none).
fn metric_line(d: &Devnet, node: &str, name: &str, needle: &str) -> u64 {
    let (_, text) = http(d.admin_addr(node), "GET", "/metrics", None);
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// fr-ai2f's key, with fr-ai2f stopped: a rostered member that misbehaves.
fn stop_and_take_fr(d: &Devnet) -> SigningKey {
    d.kill9("fr-ai2f");
    keys::secret_key_from_pem(
        &std::fs::read_to_string(d.member_dir("fr-ai2f").join("key.pem")).unwrap(),
    )
    .unwrap()
}

async fn connected_rogue(
    d: &Devnet,
    key: &SigningKey,
    target: &str,
) -> (aiguillage_net::Client, aiguillage_net::PeerId) {
    let (client, peer) = rogue_client(d, key, target).await;
    for _ in 0..100 {
        if client.connected().await.unwrap().contains(&peer) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    (client, peer)
}

#[test]
fn an_offer_published_on_the_adverts_topic_reaches_no_one_and_creates_no_referral() {
    let d = Devnet::start(&["lu-l-aif", "es-1healthai", "fr-ai2f"]);
    let key = stop_and_take_fr(&d);
    let fr = MemberId::new("fr-ai2f").unwrap();
    let now = now_ms();
    let card = aiguillage_core::project_file::ProjectFile::from_toml(
        &std::fs::read_to_string(repo_root().join("config/examples/project-health-lu.toml"))
            .unwrap(),
        "health",
    )
    .unwrap();
    let offer = Offer {
        referral: ReferralId::new("fr-ai2f/1").unwrap(),
        attempt: 1,
        target: MemberId::new("es-1healthai").unwrap(),
        card: card.card(),
        respond_by: now.saturating_add_ms(3_600_000),
        rationale: String::new(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The client lives to the end of the test: its network task must go on sending.
    let _client = rt.block_on(async {
        let (client, _) = connected_rogue(&d, &key, "lu-l-aif").await;
        client
            .publish(
                aiguillage_net::Topic::Adverts,
                signed(&offer, &fr, &key, now).to_bytes(),
            )
            .await
            .unwrap();
        client
    });
    d.wait_for(
        20,
        "Luxembourg to refuse the offer on the adverts topic",
        || {
            metric(
                &d,
                "lu-l-aif",
                "channel=\"adverts\",kind=\"offer\",reason=\"wrong_kind\"",
            ) == 1
        },
    );
    // Refused, it was not forwarded: es-1healthai, connected to Luxembourg, never saw it,
    // and no member holds a referral from it.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(metric(&d, "es-1healthai", "kind=\"offer\""), 0);
    for m in ["lu-l-aif", "es-1healthai"] {
        assert!(
            !listed_referrals(&d, m).contains(&"fr-ai2f/1".to_owned()),
            "{m} holds the referral"
        );
        assert_eq!(d.json(m, &["status"])["referrals_in"], 0, "{m}");
    }
}

#[test]
fn a_request_with_a_bad_signature_is_answered_bad_signature() {
    let d = Devnet::start(&["lu-l-aif", "es-1healthai", "fr-ai2f"]);
    let key = stop_and_take_fr(&d);
    let fr = MemberId::new("fr-ai2f").unwrap();
    let mut env = signed(
        &Accept {
            referral: ReferralId::new("lu-l-aif/1").unwrap(),
            attempt: 1,
        },
        &fr,
        &key,
        now_ms(),
    );
    env.signature[10] ^= 0x40;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answer = rt.block_on(async {
        let (client, peer) = connected_rogue(&d, &key, "lu-l-aif").await;
        client
            .send(peer, aiguillage_net::Channel::Referral, env.to_bytes())
            .await
    });
    match answer {
        Err(aiguillage_net::NetError::Refused { reason, .. }) => {
            assert_eq!(reason, "bad_signature")
        }
        other => panic!("answered {other:?}"),
    }
    assert_eq!(
        metric(
            &d,
            "lu-l-aif",
            "channel=\"referral\",kind=\"accept\",reason=\"bad_signature\""
        ),
        1
    );
    d.wait_for(10, "the refusal in lu-l-aif's log", || {
        log_of(&d, "lu-l-aif").lines().any(|l| {
            l.contains("refused a message from fr-ai2f (bad_signature)")
                && l.contains("summarised each minute")
        })
    });
}

#[test]
fn a_member_that_sent_a_few_invalid_adverts_gets_its_next_valid_advert_through() {
    const INVALID: u64 = 10;
    let d = Devnet::start(&["lu-l-aif", "es-1healthai", "fr-ai2f"]);
    let key = stop_and_take_fr(&d);
    let fr = MemberId::new("fr-ai2f").unwrap();
    let profile = aiguillage_core::Profile::from_toml(
        &std::fs::read_to_string(repo_root().join("config/factories/fr-ai2f.toml")).unwrap(),
        "fr-ai2f",
    )
    .unwrap();
    let seq_before = d
        .json("lu-l-aif", &["directory"])
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["member"] == "fr-ai2f")
        .and_then(|a| a["seq"].as_u64())
        .unwrap();
    let now = now_ms();
    let advert = |seq: u64| {
        signed(
            &profile.advert(seq, GpuCapacity::default(), Some(3)),
            &fr,
            &key,
            now,
        )
    };
    let refused = |d: &Devnet| {
        metric_line(
            d,
            "lu-l-aif",
            "aiguillage_peer_refused_total",
            "member=\"fr-ai2f\",reason=\"bad_signature\"",
        )
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The client lives to the end of the test: its network task must go on sending.
    let _client = rt.block_on(async {
        let (client, _) = connected_rogue(&d, &key, "lu-l-aif").await;
        // A few adverts whose signature does not verify, each refused before the next goes.
        for n in 1..=INVALID {
            let mut bad = advert(seq_before + n);
            bad.signature[0] ^= 1;
            client
                .publish(aiguillage_net::Topic::Adverts, bad.to_bytes())
                .await
                .unwrap();
            for _ in 0..200 {
                if refused(&d) >= n {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert_eq!(refused(&d), n, "invalid advert {n}");
        }
        // Then a valid one.
        client
            .publish(
                aiguillage_net::Topic::Adverts,
                advert(seq_before + 100).to_bytes(),
            )
            .await
            .unwrap();
        client
    });
    d.wait_for(20, "the valid advert in Luxembourg's directory", || {
        d.json("lu-l-aif", &["directory"])
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["member"] == "fr-ai2f" && a["seq"].as_u64() == Some(seq_before + 100))
    });
    assert_eq!(
        metric(
            &d,
            "lu-l-aif",
            "channel=\"adverts\",kind=\"advert\",reason=\"bad_signature\""
        ),
        INVALID
    );
}
