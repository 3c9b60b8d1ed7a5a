//! The store round-trips the core's state and keeps an audit log that shows tampering.

use std::collections::BTreeSet;
use std::path::Path;

use aiguillage_core::profile::Profile;
use aiguillage_core::{AuditEvent, Core, CoreConfig, Input, State, StateKey};
use aiguillage_store::Store;
use aiguillage_wire::*;

const T0: Timestamp = Timestamp(1_780_000_000_000);

fn profile() -> Profile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/factories/lu-l-aif.toml");
    Profile::from_toml(&std::fs::read_to_string(&path).unwrap(), "lu").unwrap()
}

fn core(state: State) -> Core {
    let key = SigningKey::from_bytes(&[3; 32]);
    Core::new(
        profile(),
        key,
        PublicKey::of(&SigningKey::from_bytes(&[9; 32])),
        CoreConfig::default(),
        state,
    )
}

#[test]
fn state_written_by_keys_reloads_equal() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut c = core(State::default());
    c.handle(T0, Input::Capacity { total_gpus: 0 });
    c.handle(T0, Input::Start);
    let card = aiguillage_core::project_file::ProjectFile::from_toml(
        include_str!("../../../config/examples/project-health-lu.toml"),
        "p",
    )
    .unwrap();
    c.handle(
        T0,
        Input::FileProject {
            card: card.card(),
            dossier: card.dossier.clone().unwrap(),
        },
    );
    c.handle(
        T0,
        Input::SubmitJob {
            requirements: JobRequirements {
                gpus: 1,
                time_limit_s: 60,
                accelerator: None,
                latest_start: T0.saturating_add_ms(60_000),
                residency: vec![],
                priority: 0,
            },
            command: vec!["true".into()],
            env: vec![],
        },
    );
    let dirty = c.take_dirty();
    assert!(dirty.contains(&StateKey::Meta));
    assert!(dirty.iter().any(|k| matches!(k, StateKey::Project(_))));
    assert!(dirty.iter().any(|k| matches!(k, StateKey::Job(_))));
    {
        let mut store = Store::open(dir.path()).unwrap();
        store.commit(c.state(), &dirty, &[], &key).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.projects, c.state().projects);
    assert_eq!(loaded.jobs, c.state().jobs);
    assert_eq!(loaded.next_id, c.state().next_id);
    assert_eq!(loaded.advert_seq, c.state().advert_seq);
    assert_eq!(loaded.timers.next(), c.state().timers.next());
    // A core restarted from the loaded state carries on where it was.
    let restarted = core(loaded);
    assert_eq!(restarted.own_advert().gpu.total, Some(0));
}

fn event(n: u32) -> AuditEvent {
    AuditEvent {
        at: T0,
        event: "test".into(),
        subject: format!("s{n}"),
        detail: format!("d{n}"),
    }
}

#[test]
fn the_audit_chain_verifies_and_shows_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[3; 32]);
    {
        let mut store = Store::open(dir.path()).unwrap();
        store
            .commit(
                &State::default(),
                &BTreeSet::new(),
                &[event(1), event(2)],
                &key,
            )
            .unwrap();
    }
    // The chain continues across a reopen.
    let mut store = Store::open(dir.path()).unwrap();
    store
        .commit(&State::default(), &BTreeSet::new(), &[event(3)], &key)
        .unwrap();
    assert_eq!(store.audit_verify(&PublicKey::of(&key)).unwrap(), 3);
    let other = SigningKey::from_bytes(&[4; 32]);
    assert!(
        store.audit_verify(&PublicKey::of(&other)).is_err(),
        "signed by another key"
    );
    store.tamper_audit(2, "rewritten").unwrap();
    let err = store
        .audit_verify(&PublicKey::of(&key))
        .unwrap_err()
        .to_string();
    assert!(err.contains("audit entry 2"), "{err}");
}
