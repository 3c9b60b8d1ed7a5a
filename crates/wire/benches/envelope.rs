//! Advert encode+sign and verify+decode: the per-message cost every node pays on gossip.

use std::collections::BTreeMap;
use std::hint::black_box;

use aiguillage_wire::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const T0: Timestamp = Timestamp(1_780_000_000_000);

/// A full-size advert: every sector levelled, all services, several languages and datasets.
fn advert() -> Advert {
    Advert {
        member: MemberId::new("lu-l-aif").unwrap(),
        seq: 42,
        role: Role::Factory,
        name: "Luxembourg AI Factory".into(),
        country: CountryCode::new("LU").unwrap(),
        sectors: Sector::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, SectorLevel::ALL[i % 3]))
            .collect::<BTreeMap<_, _>>(),
        other_sectors: SectorLevel::Accepted,
        services: Service::ALL.to_vec(),
        languages: ["lb", "fr", "de", "en"]
            .map(|l| Language::new(l).unwrap())
            .to_vec(),
        countries_served: vec![CountryCode::new("LU").unwrap()],
        datasets: (0..4)
            .map(|i| Dataset {
                id: format!("lu-dataset-{i}"),
                title: format!("Open dataset number {i} for finance and space clients"),
                sectors: vec![Sector::FinanceInsurance, Sector::Space],
            })
            .collect(),
        gpu: GpuCapacity {
            total: Some(2100),
            free: Some(300),
            accelerator: Some("devnet-gpu".into()),
            largest_job_gpus: Some(512),
            takes_overflow: true,
            overflow_from: vec![],
        },
        referral_intake: Some(20),
    }
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let member = MemberId::new("lu-l-aif").unwrap();
    let ad = advert();
    let bytes = Envelope::seal(&ad, &member, &key, T0, T0.saturating_add_ms(600_000))
        .unwrap()
        .to_bytes();
    eprintln!("advert envelope: {} bytes", bytes.len());

    let mut group = c.benchmark_group("advert");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_sign", |b| {
        b.iter(|| {
            Envelope::seal(
                black_box(&ad),
                &member,
                &key,
                T0,
                T0.saturating_add_ms(600_000),
            )
            .unwrap()
            .to_bytes()
        })
    });
    group.bench_function("verify_decode", |b| {
        b.iter(|| open::<Advert>(black_box(&bytes), T0).unwrap())
    });
    group.bench_function("decode_only", |b| {
        b.iter(|| {
            Envelope::from_bytes(black_box(&bytes))
                .unwrap()
                .decode_payload::<Advert>()
                .unwrap()
        })
    });
    group.finish();

    // Baseline: the bare ed25519 cost on a message of the same size.
    let msg = vec![0x5a_u8; bytes.len()];
    let sig = ed25519_dalek::Signer::sign(&key, &msg);
    let vk = key.verifying_key();
    c.bench_function("ed25519/verify_strict_1500B", |b| {
        b.iter(|| vk.verify_strict(black_box(&msg), &sig).unwrap())
    });
    c.bench_function("ed25519/sign_1500B", |b| {
        b.iter(|| ed25519_dalek::Signer::sign(&key, black_box(&msg)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
