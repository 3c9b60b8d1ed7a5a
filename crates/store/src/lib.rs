//! Durable state of a member on sled.
//!
//! The core's [`State`] is stored one record per [`StateKey`], so a call to `Core::handle`
//! costs writes proportional to what it changed; [`Store::commit`] writes those records and
//! the audit entries of the call in one batch and flushes before the caller lets any output
//! leave the node. On start, [`Store::load`] rebuilds the state from the records.
//!
//! The audit log is append-only; each entry carries the SHA-256 of the previous one and the
//! member's signature over its own hash, so a removed, reordered or edited entry shows.

use std::collections::BTreeSet;
use std::path::Path;

use aiguillage_core::{AuditEvent, State, StateKey};
use aiguillage_wire::codec::{decode_stored, encode};
use aiguillage_wire::{PublicKey, SigningKey, Timestamp};
use ed25519_dalek::{Signature, Signer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    #[error("record {key:?} cannot be decoded: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("audit entry {seq}: {reason}")]
    Audit { seq: u64, reason: String },
}

impl StoreError {
    /// Another process (or a crashed one not yet fully gone) holds the database lock.
    pub fn is_locked(&self) -> bool {
        // sled 0.34 reports a held lock as an `Other` I/O error with this message.
        matches!(self, StoreError::Db(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock"))
    }
}

/// The small, often-changing part of the state.
#[derive(Serialize, Deserialize)]
struct Meta {
    roster: Option<(aiguillage_wire::Roster, aiguillage_wire::Envelope)>,
    timers: aiguillage_core::timers::Timers,
    advert_seq: u64,
    total_gpus: u32,
    next_id: u64,
}

/// One audit log entry as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at: Timestamp,
    pub event: String,
    pub subject: String,
    pub detail: String,
    #[serde(with = "serde_bytes")]
    pub prev: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

impl AuditRecord {
    /// The hash the next entry links to, and that the signature covers.
    pub fn hash(&self) -> [u8; 32] {
        let body = (
            self.seq,
            self.at,
            &self.event,
            &self.subject,
            &self.detail,
            serde_bytes::Bytes::new(&self.prev),
        );
        Sha256::digest(encode(&body)).into()
    }
}

pub struct Store {
    db: sled::Db,
    state: sled::Tree,
    audit: sled::Tree,
    last: Option<(u64, [u8; 32])>,
}

fn key_of(k: &StateKey) -> Vec<u8> {
    match k {
        StateKey::Meta => b"meta".to_vec(),
        StateKey::Directory => b"directory".to_vec(),
        StateKey::Listing(m) => format!("listing/{m}").into_bytes(),
        StateKey::Ledger => b"ledger".to_vec(),
        StateKey::Project(id) => format!("project/{id}").into_bytes(),
        StateKey::Outgoing(id) => format!("out/{id}").into_bytes(),
        StateKey::Incoming(id) => format!("in/{id}").into_bytes(),
        StateKey::Job(id) => format!("job/{id}").into_bytes(),
        StateKey::Hosted(id) => format!("hosted/{id}").into_bytes(),
    }
}

fn value_of(state: &State, k: &StateKey) -> Option<Vec<u8>> {
    Some(match k {
        StateKey::Meta => encode(&Meta {
            roster: state.roster.clone(),
            timers: state.timers.clone(),
            advert_seq: state.advert_seq,
            total_gpus: state.total_gpus,
            next_id: state.next_id,
        }),
        StateKey::Directory => encode(&state.directory),
        StateKey::Listing(m) => encode(state.directory.get(m)?),
        StateKey::Ledger => encode(&state.ledger),
        StateKey::Project(id) => encode(state.projects.get(id)?),
        StateKey::Outgoing(id) => encode(state.outgoing.get(id)?),
        StateKey::Incoming(id) => encode(state.incoming.get(id)?),
        StateKey::Job(id) => encode(state.jobs.get(id)?),
        StateKey::Hosted(id) => encode(state.hosted.get(id)?),
    })
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    decode_stored(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// How long `Store::open` waits for a lock that is about to be released.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Store {
    /// Opens (or creates) the store in `dir`. sled releases its file lock from its I/O
    /// threads a moment after a store is dropped, so a store closed and reopened in one
    /// process can find its own lock still held: the lock is retried for up to two seconds
    /// before `StoreError::is_locked` is returned.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_waiting(dir, LOCK_WAIT)
    }

    /// [`Store::open`], waiting up to `wait` for a held lock: after a crash, the old
    /// process may hold it for a moment longer.
    pub fn open_waiting(dir: &Path, wait: std::time::Duration) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match Store::open_once(dir) {
                Err(e) if e.is_locked() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            // The node flushes explicitly before anything leaves; no background timer needed.
            .flush_every_ms(None)
            .cache_capacity(64 * 1024 * 1024)
            .open()?;
        let state = db.open_tree("state")?;
        let audit = db.open_tree("audit")?;
        let last = match audit.last()? {
            Some((_, v)) => {
                let r: AuditRecord = decode(b"audit", &v)?;
                Some((r.seq, r.hash()))
            }
            None => None,
        };
        Ok(Store {
            db,
            state,
            audit,
            last,
        })
    }

    /// Rebuilds the core state from its records.
    pub fn load(&self) -> Result<State, StoreError> {
        let mut s = State::default();
        let mut listings = Vec::new();
        for item in self.state.iter() {
            let (k, v) = item?;
            let key = k.as_ref();
            let text = String::from_utf8_lossy(key);
            match text.split_once('/') {
                None if key == b"meta" => {
                    let m: Meta = decode(key, &v)?;
                    s.roster = m.roster;
                    s.timers = m.timers;
                    s.advert_seq = m.advert_seq;
                    s.total_gpus = m.total_gpus;
                    s.next_id = m.next_id;
                }
                None if key == b"directory" => s.directory = decode(key, &v)?,
                None if key == b"ledger" => s.ledger = decode(key, &v)?,
                Some(("listing", _)) => {
                    listings.push(decode::<aiguillage_core::directory::Listing>(key, &v)?);
                }
                Some(("project", _)) => {
                    let p: aiguillage_core::FiledProject = decode(key, &v)?;
                    s.projects.insert(p.card.project.clone(), p);
                }
                Some(("out", _)) => {
                    let r: aiguillage_core::OutReferral = decode(key, &v)?;
                    s.outgoing.insert(r.id.clone(), r);
                }
                Some(("in", _)) => {
                    let r: aiguillage_core::InReferral = decode(key, &v)?;
                    s.incoming.insert(r.id.clone(), r);
                }
                Some(("job", _)) => {
                    let j: aiguillage_core::OriginJob = decode(key, &v)?;
                    s.jobs.insert(j.spec.job.clone(), j);
                }
                Some(("hosted", _)) => {
                    let h: aiguillage_core::HostedJob = decode(key, &v)?;
                    s.hosted.insert(h.spec.job.clone(), h);
                }
                _ => {
                    return Err(StoreError::Corrupt {
                        key: text.into_owned(),
                        reason: "unknown record".into(),
                    });
                }
            }
        }
        // After the loop: the directory record (behaviour) may come after its listings.
        for l in listings {
            s.directory.restore(l);
        }
        Ok(s)
    }

    /// Writes the records named by `dirty` and the audit events, then flushes to disk.
    pub fn commit(
        &mut self,
        state: &State,
        dirty: &BTreeSet<StateKey>,
        audit: &[AuditEvent],
        key: &SigningKey,
    ) -> Result<(), StoreError> {
        if dirty.is_empty() && audit.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for k in dirty {
            match value_of(state, k) {
                Some(v) => batch.insert(key_of(k), v),
                None => batch.remove(key_of(k)),
            }
        }
        self.state.apply_batch(batch)?;
        let mut audit_batch = sled::Batch::default();
        let mut last = self.last;
        for e in audit {
            let (seq, prev) = match last {
                Some((s, h)) => (s + 1, h),
                None => (1, [0u8; 32]),
            };
            let mut r = AuditRecord {
                seq,
                at: e.at,
                event: e.event.clone(),
                subject: e.subject.clone(),
                detail: e.detail.clone(),
                prev,
                signature: [0; 64],
            };
            let h = r.hash();
            r.signature = key.sign(&h).to_bytes();
            audit_batch.insert(&seq.to_be_bytes(), encode(&r));
            last = Some((seq, h));
        }
        self.audit.apply_batch(audit_batch)?;
        self.db.flush()?;
        self.last = last;
        Ok(())
    }

    /// Every audit entry, oldest first.
    pub fn audit_entries(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit
            .iter()
            .map(|item| {
                let (k, v) = item?;
                decode(&k, &v)
            })
            .collect()
    }

    /// Checks the chain and every signature; returns how many entries verified.
    pub fn audit_verify(&self, member_key: &PublicKey) -> Result<u64, StoreError> {
        let vk = member_key.verifying_key().map_err(|e| StoreError::Audit {
            seq: 0,
            reason: e.to_string(),
        })?;
        let mut prev = [0u8; 32];
        let mut expected = 1u64;
        for r in self.audit_entries()? {
            if r.seq != expected {
                return Err(StoreError::Audit {
                    seq: r.seq,
                    reason: format!(
                        "expected entry {expected}: an entry is missing or out of order"
                    ),
                });
            }
            if r.prev != prev {
                return Err(StoreError::Audit {
                    seq: r.seq,
                    reason: "does not link to the previous entry".into(),
                });
            }
            let h = r.hash();
            vk.verify_strict(&h, &Signature::from_bytes(&r.signature))
                .map_err(|_| StoreError::Audit {
                    seq: r.seq,
                    reason: "signature does not verify".into(),
                })?;
            prev = h;
            expected += 1;
        }
        Ok(expected - 1)
    }

    /// For tests: rewrite one stored audit entry.
    #[doc(hidden)]
    pub fn tamper_audit(&self, seq: u64, detail: &str) -> Result<(), StoreError> {
        if let Some(v) = self.audit.get(seq.to_be_bytes())? {
            let mut r: AuditRecord = decode(b"audit", &v)?;
            r.detail = detail.to_owned();
            self.audit.insert(seq.to_be_bytes(), encode(&r))?;
        }
        Ok(())
    }
}
