//! Durable writes (one record per commit, and 64 under one flush) and recovery of a store
//! of 100,000 records, on the machine's real disk (a temporary folder).

use std::collections::BTreeSet;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use aiguillage_core::profile::Profile;
use aiguillage_core::{AuditEvent, Core, CoreConfig, FiledProject, Input, State, StateKey};
use aiguillage_store::{Changes, Store};
use aiguillage_wire::*;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const T0: Timestamp = Timestamp(1_780_000_000_000);

/// A project record as a member files it (card, routing explanation), to copy under new ids.
fn template() -> FiledProject {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/factories/lu-l-aif.toml");
    let profile = Profile::from_toml(&std::fs::read_to_string(&path).unwrap(), "lu").unwrap();
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut core = Core::new(
        profile,
        key,
        PublicKey::of(&SigningKey::from_bytes(&[9; 32])),
        CoreConfig::default(),
        State::default(),
    );
    let file = aiguillage_core::project_file::ProjectFile::from_toml(
        include_str!("../../../config/examples/project-finance-lu.toml"),
        "p",
    )
    .unwrap();
    core.handle(
        T0,
        Input::FileProject {
            card: file.card(),
            dossier: file.dossier.clone().unwrap(),
            choice: aiguillage_core::FilingChoice::Route,
            by: "adviser".into(),
        },
    );
    core.state().projects.values().next().unwrap().clone()
}

fn with_projects(state: &mut State, t: &FiledProject, from: u64, n: u64) -> BTreeSet<StateKey> {
    let mut dirty = BTreeSet::new();
    for i in from..from + n {
        let id = ProjectId::new(format!("lu-l-aif/{i}")).unwrap();
        let mut p = t.clone();
        p.card.project = id.clone();
        state.projects.insert(id.clone(), p);
        dirty.insert(StateKey::Project(id));
    }
    dirty
}

fn audit(n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| AuditEvent {
            at: T0,
            event: "project_filed".into(),
            subject: format!("lu-l-aif/{i}"),
            detail: "kept: finance_insurance is a priority".into(),
        })
        .collect()
}

fn writes(c: &mut Criterion) {
    let t = template();
    let key = SigningKey::from_bytes(&[3; 32]);
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut state = State::default();
    let mut next = 0u64;
    let one_audit = audit(1);
    let mut g = c.benchmark_group("store commit (durable: sled flush)");
    g.throughput(Throughput::Elements(1));
    g.bench_function("1 record + 1 audit entry", |b| {
        b.iter(|| {
            let dirty = with_projects(&mut state, &t, next, 1);
            next += 1;
            store
                .commit(&state, &Changes::of(&dirty, &one_audit), &key)
                .unwrap();
        })
    });
    let many_audit = audit(64);
    g.throughput(Throughput::Elements(64));
    g.bench_function("64 records + 64 audit entries, one flush", |b| {
        b.iter(|| {
            let dirty = with_projects(&mut state, &t, next, 64);
            next += 64;
            store
                .commit(&state, &Changes::of(&dirty, &many_audit), &key)
                .unwrap();
        })
    });
    g.finish();
}

/// `cargo test --benches` (the CI smoke) runs each bench once, without the `--bench` flag
/// `cargo bench` passes: a small store will do there.
fn quick() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

fn recovery(c: &mut Criterion) {
    let records: u64 = if quick() { 1_000 } else { 100_000 };
    let t = template();
    let key = SigningKey::from_bytes(&[3; 32]);
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        let mut state = State::default();
        for chunk in 0..records / 1_000 {
            let dirty = with_projects(&mut state, &t, chunk * 1_000, 1_000);
            store
                .commit(&state, &Changes::of(&dirty, &audit(10)), &key)
                .unwrap();
        }
    }
    let bytes: u64 = walk_size(dir.path());
    println!(
        "store of {records} project records: {:.1} MiB on disk",
        bytes as f64 / 1048576.0
    );
    let mut g = c.benchmark_group("store recovery");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function(format!("open + load {records} records"), |b| {
        b.iter_batched(
            || (),
            |()| {
                let store = Store::open(dir.path()).unwrap();
                let state = store.load().unwrap();
                assert_eq!(state.projects.len() as u64, records);
                black_box(state)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn walk_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

criterion_group!(benches, writes, recovery);
criterion_main!(benches);
