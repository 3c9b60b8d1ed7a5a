//! One routing decision over directories of 19, 1,000 and 10,000 members.

use std::collections::BTreeMap;
use std::hint::black_box;

use aiguillage_core::directory::SectorTable;
use aiguillage_core::routing::{self, RoutingPolicy, Standing};
use aiguillage_wire::*;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const COUNTRIES: &[&str] = &[
    "LU", "DE", "FR", "IT", "ES", "PL", "FI", "SE", "AT", "BE", "NL", "GR", "BG", "CZ", "SI", "LT",
    "RO", "HU", "IE", "CH",
];
const LANGS: &[&str] = &["en", "fr", "de", "it", "es", "pl"];

/// A deterministic synthetic member: a few priority sectors, one excluded now and then.
fn member(i: usize) -> Advert {
    let mut sectors = BTreeMap::new();
    for k in 0..4 {
        sectors.insert(
            Sector::ALL[(i * 7 + k * 5) % Sector::ALL.len()],
            SectorLevel::Priority,
        );
    }
    if i.is_multiple_of(5) {
        sectors.insert(
            Sector::ALL[(i * 3 + 1) % Sector::ALL.len()],
            SectorLevel::Excluded,
        );
    }
    Advert {
        member: MemberId::new(format!("m{i:05}")).unwrap(),
        seq: 1,
        role: if i.is_multiple_of(3) {
            Role::Antenna
        } else {
            Role::Factory
        },
        name: format!("Member {i}"),
        country: CountryCode::new(COUNTRIES[i % COUNTRIES.len()]).unwrap(),
        sectors,
        other_sectors: SectorLevel::Accepted,
        services: Service::ALL.to_vec(),
        languages: vec![
            Language::new("en").unwrap(),
            Language::new(LANGS[i % LANGS.len()]).unwrap(),
        ],
        countries_served: vec![CountryCode::new(COUNTRIES[i % COUNTRIES.len()]).unwrap()],
        datasets: vec![],
        gpu: GpuCapacity {
            total: Some(64),
            free: Some((i % 17) as u32),
            takes_overflow: true,
            ..GpuCapacity::default()
        },
        referral_intake: Some(10),
    }
}

fn card() -> ProjectCard {
    ProjectCard {
        project: ProjectId::new("m00000/p1").unwrap(),
        sector: Sector::Health,
        secondary_sectors: vec![Sector::LifeSciences],
        country: CountryCode::new("LU").unwrap(),
        company_size: CompanySize::Small,
        stage: Service::Assessment,
        services_needed: vec![Service::Assessment, Service::PocSandbox],
        gpu_hours: 2000,
        datasets_wanted: vec![],
        languages: vec![Language::new("fr").unwrap(), Language::new("en").unwrap()],
        consent: ConsentScope {
            whole_federation: true,
            members: vec![],
            countries: vec![],
        },
    }
}

fn bench(c: &mut Criterion) {
    let policy = RoutingPolicy::default();
    let card = card();
    let now = Timestamp(1_780_000_000_000);
    let mut group = c.benchmark_group("routing_decision");
    for n in [19usize, 1_000, 10_000] {
        let directory: Vec<(Advert, SectorTable)> = (0..n)
            .map(|i| {
                let a = member(i);
                let t = SectorTable::of(&a);
                (a, t)
            })
            .collect();
        let me = member(0);
        let me_table = SectorTable::of(&me);
        group.bench_with_input(BenchmarkId::from_parameter(n), &directory, |b, dir| {
            b.iter(|| {
                let d = routing::decide(
                    black_box(&card),
                    (&me, &me_table),
                    dir.iter().map(|(a, t)| (a, t)),
                    |_| Standing {
                        reciprocity: 0.3,
                        behaviour: None,
                        now,
                        decline_half_life_ms: 0,
                    },
                    &policy,
                    now,
                );
                black_box(d.ranked.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
