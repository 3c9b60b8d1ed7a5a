//! Whole lifecycles through real cores in an in-memory federation, every message signed,
//! encoded, decoded and verified: a referral from filing to hand-over, and an overflow job
//! from submission through bids, reservation, lease and signed receipt. The clock is
//! virtual, so the figures are the CPU cost of the transitions, not waiting.

#[path = "../tests/common/mod.rs"]
mod common;

use aiguillage_core::{JobPhase, OutState};
use aiguillage_wire::Sector;
use common::{Net, card};
use criterion::{Criterion, criterion_group, criterion_main};

fn federation() -> Net {
    let mut net = Net::new(
        &["lu-l-aif", "es-1healthai", "de-jaif"],
        &[("lu-l-aif", 0), ("de-jaif", 1_000_000)],
        |_, c| {
            c.referral_intake = u32::MAX;
            c.max_attempts = 1;
        },
    );
    net.run_for(2_000);
    net
}

fn referral(c: &mut Criterion) {
    let mut net = federation();
    c.bench_function("referral filed → accepted → handed over", |b| {
        b.iter(|| {
            let id = net
                .file("lu-l-aif", card(Sector::Health, "LU"))
                .referral
                .expect("a health project at lu-l-aif is referred");
            net.run_for(200);
            let state = net.core("lu-l-aif").state().outgoing[&id].state;
            assert!(
                matches!(state, OutState::HandedOver | OutState::InProgress),
                "{state:?}"
            );
        })
    });
}

fn lease(c: &mut Criterion) {
    let mut net = federation();
    c.bench_function(
        "overflow job submitted → leased → run → receipt",
        |b| {
            b.iter(|| {
                let job = net.submit("lu-l-aif", 1, 1, 0, &[]);
                net.run_for(3_000);
                let phase = &net.core("lu-l-aif").state().jobs[&job].phase;
                assert!(matches!(phase, JobPhase::Done { .. }), "{phase:?}");
            })
        },
    );
}

criterion_group!(benches, referral, lease);
criterion_main!(benches);
