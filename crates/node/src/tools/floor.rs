//! The floor of each network figure on the machine the benchmark runs on, measured in the
//! same run: what one ed25519 signature and verification cost, what a bare request-response
//! round trip between two processes of this binary costs, and what a bare sled flush
//! costs. A figure is reported with its ratio to its floor, so that runs on different
//! machines (with or without AVX-512 IFMA, on a busy or an idle host) compare.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aiguillage_core::stats::quantile_of;
use aiguillage_net::{Channel, NetConfig, NetEvent, PeerId, Verdict};
use aiguillage_wire::SigningKey;
use anyhow::{Context, Result, bail};
use ed25519_dalek::{Signer, Verifier};
use serde::Serialize;

/// The floors, in microseconds, and the referral ceiling they give.
#[derive(Clone, Debug, Serialize)]
pub struct Floor {
    pub sign_us: f64,
    pub verify_us: f64,
    pub request_rtt_us: f64,
    pub flush_us: f64,
    /// cores × 10⁶ / (4 × (sign_us + verify_us)): the four signed messages of a referral
    /// (offer, accept, hand-over, progress), each signed once and verified once, on every
    /// core of this machine.
    pub referrals_per_s_ceiling: f64,
    pub cores: usize,
}

/// The median of `runs` batches of `per_batch` calls of `f`, in microseconds per call.
fn median_us(runs: usize, per_batch: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / per_batch as f64
        })
        .collect();
    quantile_of(&mut v, 0.5).unwrap_or(f64::NAN)
}

fn crypto() -> (f64, f64) {
    let key = SigningKey::from_bytes(&[9; 32]);
    let message = vec![0x5au8; 1536];
    let signature = key.sign(&message);
    let public = key.verifying_key();
    let sign = median_us(15, 200, || {
        std::hint::black_box(key.sign(std::hint::black_box(&message)));
    });
    let verify = median_us(15, 200, || {
        std::hint::black_box(public.verify(&message, &signature).is_ok());
    });
    (sign, verify)
}

fn flush(dir: &Path) -> Result<f64> {
    let path = dir.join("floor-sled");
    let _ = std::fs::remove_dir_all(&path);
    let db = sled::Config::new()
        .path(&path)
        .flush_every_ms(None)
        .open()
        .context("opening a sled database for the flush floor")?;
    let mut n = 0u64;
    let us = median_us(9, 50, || {
        n += 1;
        let _ = db.insert(n.to_be_bytes(), &[0u8; 256][..]);
        let _ = db.flush();
    });
    drop(db);
    let _ = std::fs::remove_dir_all(&path);
    Ok(us)
}

/// `aiguillage bench echo`: a bare peer that answers every request as admitted, at once.
pub async fn echo(allow: &str) -> Result<()> {
    let allow: PeerId = allow.parse().context("--allow must be a PeerId")?;
    let mut seed = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut seed);
    let key = SigningKey::from_bytes(&seed);
    let mut cfg = NetConfig::new(aiguillage_net::keypair_of(&key));
    cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    cfg.allowed = [allow].into_iter().collect();
    let peer = cfg.keypair.public().to_peer_id();
    let (_client, mut events, event_loop) = aiguillage_net::start(cfg)?;
    tokio::spawn(event_loop.run());
    while let Some(e) = events.recv().await {
        match e {
            NetEvent::Listening(addr) => println!("listening {addr}/p2p/{peer}"),
            NetEvent::Direct { reply, .. } => reply.send(Verdict::Admitted),
            _ => {}
        }
    }
    Ok(())
}

/// A bare request-response round trip to an echo peer in another process.
fn request_rtt() -> Result<f64> {
    let exe = std::env::current_exe().context("locating the aiguillage binary")?;
    let mut seed = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut seed);
    let key = SigningKey::from_bytes(&seed);
    let keypair = aiguillage_net::keypair_of(&key);
    let me = keypair.public().to_peer_id();
    let mut child = Command::new(exe)
        .args(["bench", "echo", "--allow", &me.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the echo peer")?;
    let stdout = child.stdout.take().context("the echo peer's output")?;
    let line = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("listening /ip4/"))
        .context("the echo peer did not say where it listens")?;
    let text = &line["listening ".len()..];
    let addr: aiguillage_net::Multiaddr = text.parse()?;
    let peer: PeerId = text
        .rsplit_once("/p2p/")
        .context("the echo peer's address has no /p2p/")?
        .1
        .parse()?;
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let mut cfg = NetConfig::new(keypair);
        cfg.bootstrap = vec![addr];
        cfg.allowed = [peer].into_iter().collect();
        let (client, _events, event_loop) = aiguillage_net::start(cfg)?;
        tokio::spawn(event_loop.run());
        // An envelope, so that the echo peer's network task hands it over and the answer
        // comes from the peer, as a node's would.
        let now = crate::clock::now();
        let payload = aiguillage_wire::Envelope::seal(
            &aiguillage_wire::Accept {
                referral: aiguillage_wire::ReferralId::new("it-it4lia/1")?,
                attempt: 1,
            },
            &aiguillage_wire::MemberId::new("lu-l-aif")?,
            &key,
            now,
            now.saturating_add_ms(600_000),
        )?
        .to_bytes();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client
            .send(peer, Channel::Referral, payload.clone())
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("no answer from the echo peer");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut v = Vec::new();
        for _ in 0..2000 {
            let t = Instant::now();
            client
                .send(peer, Channel::Referral, payload.clone())
                .await?;
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(quantile_of(&mut v, 0.5).unwrap_or(f64::NAN))
    });
    let _ = child.kill();
    let _ = child.wait();
    result
}

pub fn measure(dir: &Path) -> Result<Floor> {
    std::fs::create_dir_all(dir)?;
    let (sign_us, verify_us) = crypto();
    let flush_us = flush(dir)?;
    let request_rtt_us = request_rtt()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Floor {
        sign_us,
        verify_us,
        request_rtt_us,
        flush_us,
        referrals_per_s_ceiling: cores as f64 * 1e6 / (4.0 * (sign_us + verify_us)),
        cores,
    })
}
