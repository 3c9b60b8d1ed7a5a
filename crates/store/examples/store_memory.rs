//! How much heap a store holds as a node's commits go by: each commit files a project,
//! retires the one filed 100 commits before (so that 100 stay live, as in a node whose
//! finished work leaves memory), appends an audit entry and, unless `--no-notices`, a
//! notification. Prints the bytes in use by the allocator every 2,000 commits.
//!
//! `cargo run --release -p aiguillage-store --example store_memory -- [COMMITS] [--no-notices]`

use std::collections::BTreeSet;
use std::path::Path;

use aiguillage_core::State;
use aiguillage_core::profile::Profile;
use aiguillage_core::{AuditEvent, Core, CoreConfig, FilingChoice, Input, Notification, Output};
use aiguillage_core::{StateKey, project_file::ProjectFile};
use aiguillage_store::{Changes, Store};
use aiguillage_wire::{ProjectId, PublicKey, SigningKey, Timestamp};

const T0: Timestamp = Timestamp(1_780_000_000_000);
const LIVE: u64 = 100;

/// Bytes the allocator has handed out and not had back.
fn heap_in_use() -> f64 {
    // SAFETY: mallinfo2 only reads the allocator's own counters.
    unsafe { libc::mallinfo2().uordblks as f64 }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let commits: u64 = match args.iter().find(|a| !a.starts_with("--")) {
        Some(n) => n.parse().expect("COMMITS is a whole number"),
        None => 30_000,
    };
    let with_notices = !args.iter().any(|a| a == "--no-notices");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let profile = std::fs::read_to_string(root.join("config/factories/lu-l-aif.toml")).unwrap();
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut core = Core::new(
        Profile::from_toml(&profile, "lu-l-aif.toml").unwrap(),
        key.clone(),
        PublicKey::of(&SigningKey::from_bytes(&[9; 32])),
        CoreConfig::default(),
        State::default(),
    );
    let example = std::fs::read_to_string(root.join("config/examples/project-finance-lu.toml"));
    let file = ProjectFile::from_toml(&example.unwrap(), "project-finance-lu.toml").unwrap();
    let outputs = core.handle(
        T0,
        Input::FileProject {
            card: file.card(),
            dossier: file.dossier.clone().unwrap(),
            choice: FilingChoice::Route,
            by: "adviser".into(),
        },
    );
    let template = core.state().projects.values().next().unwrap().clone();
    // The filing's own notification, with its routing explanation, as a node stores it.
    let notice = outputs.into_iter().find_map(|o| match o {
        Output::Notify(n) => Some(n),
        _ => None,
    });

    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut state = State::default();
    let id = |i: u64| ProjectId::new(format!("lu-l-aif/p{i}")).unwrap();
    println!("commits  heap in use (MB)");
    for i in 0..commits {
        let mut p = template.clone();
        p.card.project = id(i);
        state.projects.insert(id(i), p);
        let dirty = BTreeSet::from([StateKey::Project(id(i))]);
        let mut retired = Vec::new();
        if i >= LIVE {
            let old = id(i - LIVE);
            let bytes = state.record_bytes(&StateKey::Project(old.clone())).unwrap();
            state.projects.remove(&old);
            retired.push((StateKey::Project(old), bytes));
        }
        let audit = [AuditEvent {
            at: T0,
            event: "project_filed".into(),
            subject: id(i).to_string(),
            detail: "kept: finance_insurance is a priority here".into(),
        }];
        let notices: Vec<(Timestamp, Notification)> = match (&notice, with_notices) {
            (Some(n), true) => vec![(T0, n.clone())],
            _ => Vec::new(),
        };
        let changes = Changes {
            dirty: &dirty,
            retired: &retired,
            audit: &audit,
            notices: &notices,
        };
        store.commit(&state, &changes, &key).unwrap();
        if i % 2_000 == 0 || i + 1 == commits {
            println!("{:>7}  {:.2}", i + 1, heap_in_use() / 1e6);
        }
    }
}
