//! The store round-trips the core's state and keeps an audit log that shows tampering.

use std::collections::BTreeSet;
use std::path::Path;

use aiguillage_core::profile::Profile;
use aiguillage_core::{AuditEvent, Core, CoreConfig, Input, State, StateKey};
use aiguillage_store::{Changes, Store};
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
            choice: aiguillage_core::FilingChoice::Route,
            by: "adviser".into(),
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
        store
            .commit(c.state(), &Changes::of(&dirty, &[]), &key)
            .unwrap();
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
                &Changes::of(&BTreeSet::new(), &[event(1), event(2)]),
                &key,
            )
            .unwrap();
    }
    // The chain continues across a reopen.
    let mut store = Store::open(dir.path()).unwrap();
    store
        .commit(
            &State::default(),
            &Changes::of(&BTreeSet::new(), &[event(3)]),
            &key,
        )
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

fn profile_of(id: &str) -> Profile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/factories")
        .join(format!("{id}.toml"));
    Profile::from_toml(&std::fs::read_to_string(&path).unwrap(), id).unwrap()
}

#[test]
fn each_advert_is_its_own_record_and_an_expired_one_is_removed() {
    let authority = SigningKey::from_bytes(&[9; 32]);
    let keys = [("lu-l-aif", [3u8; 32]), ("de-jaif", [4; 32])];
    let members = keys
        .iter()
        .map(|(id, k)| {
            let p = profile_of(id);
            RosterEntry {
                id: p.id.clone(),
                key: PublicKey::of(&SigningKey::from_bytes(k)),
                role: p.role,
                country: p.country,
                linked_factories: vec![],
                valid_from: Timestamp(0),
                valid_until: LATEST_TIME,
            }
        })
        .collect();
    let roster = Envelope::seal(
        &Roster {
            federation: "test".into(),
            serial: 1,
            members,
        },
        &MemberId::new(AUTHORITY_ID).unwrap(),
        &authority,
        T0,
        T0.saturating_add_ms(86_400_000),
    )
    .unwrap();
    let mut cores: Vec<Core> = keys
        .iter()
        .map(|(id, k)| {
            let mut c = Core::new(
                profile_of(id),
                SigningKey::from_bytes(k),
                PublicKey::of(&authority),
                CoreConfig::default(),
                State::default(),
            );
            c.install_roster(roster.clone(), T0).unwrap();
            c
        })
        .collect();
    let de_advert = cores[1]
        .handle(T0, Input::Start)
        .into_iter()
        .find_map(|o| match o {
            aiguillage_core::Output::Publish(e) if e.kind == MessageKind::Advert => Some(e),
            _ => None,
        })
        .expect("de-jaif publishes its advert at start");
    let lu = &mut cores[0];
    lu.handle(T0, Input::Start); // arms the directory sweep
    let _ = lu.take_dirty();
    let admitted = lu.admit(T0, Channel::Adverts, de_advert).unwrap();
    lu.handle(T0, Input::Received(admitted));
    let dirty = lu.take_dirty();
    let de = MemberId::new("de-jaif").unwrap();
    assert!(dirty.contains(&StateKey::Listing(de.clone())), "{dirty:?}");
    assert!(
        !dirty.contains(&StateKey::Directory),
        "a new advert rewrites only its own record"
    );
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[3; 32]);
    {
        let mut store = Store::open(dir.path()).unwrap();
        store
            .commit(lu.state(), &Changes::of(&dirty, &[]), &key)
            .unwrap();
        let loaded = store.load().unwrap();
        let listing = loaded.directory.get(&de).expect("the listing reloads");
        assert_eq!(listing.advert.member, de);
        // The advert expires; the sweep removes its record.
        let later = listing.expires_at().saturating_add_ms(1_000);
        lu.handle(later, Input::Tick);
        let dirty = lu.take_dirty();
        assert!(dirty.contains(&StateKey::Listing(de.clone())), "{dirty:?}");
        store
            .commit(lu.state(), &Changes::of(&dirty, &[]), &key)
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert!(store.load().unwrap().directory.get(&de).is_none());
}
