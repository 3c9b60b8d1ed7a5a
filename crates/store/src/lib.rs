//! Durable state of a member on sled.
//!
//! The core's [`State`] is stored one record per [`StateKey`], under the key and in the
//! bytes the core gives it, so a call to `Core::handle` costs writes proportional to what it
//! changed. [`Store::commit`] writes those records, the records that left the core's memory
//! (moved to the archive) and the audit entries of the call in one transaction, and
//! flushes before the caller lets any output leave the node: a crash keeps all of a commit
//! or none of it. On start, [`Store::load`] rebuilds the state from the live records; the
//! archive stays on disk, read by key when asked for.
//!
//! The audit log is append-only; each entry carries the SHA-256 of the previous one and the
//! member's signature over its own hash, so a removed, reordered or edited entry shows.

use std::collections::BTreeSet;
use std::path::Path;

use aiguillage_core::{AuditEvent, Notification, RecordError, State, StateKey};
use aiguillage_wire::codec::{decode_stored, encode};
use aiguillage_wire::{PublicKey, SigningKey, Timestamp};
use ed25519_dalek::{Signature, Signer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    #[error("record {key:?} cannot be decoded: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("audit entry {seq}: {reason}")]
    Audit { seq: u64, reason: String },
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl StoreError {
    /// Another process (or a crashed one not yet fully gone) holds the database lock.
    pub fn is_locked(&self) -> bool {
        // sled 0.34 reports a held lock as an `Other` I/O error with this message.
        matches!(self, StoreError::Db(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock"))
    }
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

/// What one commit writes.
#[derive(Clone, Copy)]
pub struct Changes<'a> {
    /// The records that changed.
    pub dirty: &'a BTreeSet<StateKey>,
    /// Records that left the core's memory, with their last bytes: moved to the archive.
    pub retired: &'a [(StateKey, Vec<u8>)],
    pub audit: &'a [AuditEvent],
    /// Notifications for the operators, with when they happened.
    pub notices: &'a [(Timestamp, Notification)],
}

impl<'a> Changes<'a> {
    /// Records and audit entries only: nothing retired, no notification.
    pub fn of(dirty: &'a BTreeSet<StateKey>, audit: &'a [AuditEvent]) -> Changes<'a> {
        Changes {
            dirty,
            retired: &[],
            audit,
            notices: &[],
        }
    }
}

/// A stored notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub seq: u64,
    pub at: Timestamp,
    pub notification: Notification,
}

/// The newest notifications kept; older ones are removed as new ones come.
const NOTICES_KEPT: u64 = 10_000;
/// Where the highest seq marked read is kept.
const NOTICES_READ: &[u8] = b"notices_read";

pub struct Store {
    db: sled::Db,
    state: sled::Tree,
    audit: sled::Tree,
    /// Records that left the core's memory, by the same keys.
    archive: sled::Tree,
    notices: sled::Tree,
    /// Addresses learnt for members' PeerIds: not federation state, only what lets a
    /// restarted node dial its peers at once.
    peers: sled::Tree,
    last: Option<(u64, [u8; 32])>,
    /// The seq of the newest notification and of the oldest still kept.
    last_notice: u64,
    first_notice: u64,
    /// For a test: the next commit fails after writing its records, before its audit.
    #[cfg(test)]
    fail_before_audit: bool,
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
        let archive = db.open_tree("archive")?;
        let notices = db.open_tree("notices")?;
        let peers = db.open_tree("peers")?;
        let seq_of = |item: Option<(sled::IVec, sled::IVec)>| {
            item.and_then(|(k, _)| k.as_ref().try_into().ok().map(u64::from_be_bytes))
        };
        let last_notice = seq_of(notices.last()?).unwrap_or(0);
        let first_notice = seq_of(notices.first()?).unwrap_or(last_notice + 1);
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
            archive,
            notices,
            peers,
            last,
            last_notice,
            first_notice,
            #[cfg(test)]
            fail_before_audit: false,
        })
    }

    /// Rebuilds the core state from its live records.
    pub fn load(&self) -> Result<State, StoreError> {
        let records = self
            .state
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(State::from_records(records)?)
    }

    /// The archived record under `key`: one that left the core's memory.
    pub fn archived(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.archive.get(key.path())?.map(|v| v.to_vec()))
    }

    /// Every archived record whose key starts with `prefix` (`out/`, `job/`, …), in key
    /// order.
    pub fn archived_under(&self, prefix: &str) -> Result<Vec<(StateKey, Vec<u8>)>, StoreError> {
        self.archive
            .scan_prefix(prefix)
            .filter_map(|item| match item {
                Ok((k, v)) => StateKey::from_path(&String::from_utf8_lossy(&k))
                    .map(|key| Ok((key, v.to_vec()))),
                Err(e) => Some(Err(e.into())),
            })
            .collect()
    }

    /// Writes the records named by `changes.dirty`, moves the retired records to the
    /// archive, appends the audit entries and the notifications, all in one transaction;
    /// then flushes to disk.
    pub fn commit(
        &mut self,
        state: &State,
        changes: &Changes<'_>,
        key: &SigningKey,
    ) -> Result<(), StoreError> {
        let Changes {
            dirty,
            retired,
            audit,
            notices,
        } = *changes;
        if dirty.is_empty() && retired.is_empty() && audit.is_empty() && notices.is_empty() {
            return Ok(());
        }
        let mut records = sled::Batch::default();
        for k in dirty {
            match state.record_bytes(k) {
                Some(v) => records.insert(k.path().as_bytes(), v),
                None => records.remove(k.path().as_bytes()),
            }
        }
        let mut archive = sled::Batch::default();
        for (k, v) in retired {
            records.remove(k.path().as_bytes());
            archive.insert(k.path().as_bytes(), v.as_slice());
        }
        let mut entries = sled::Batch::default();
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
            entries.insert(&seq.to_be_bytes(), encode(&r));
            last = Some((seq, h));
        }
        let mut notes = sled::Batch::default();
        let mut last_notice = self.last_notice;
        for n in notices {
            last_notice += 1;
            let stored = Notice {
                seq: last_notice,
                at: n.0,
                notification: n.1.clone(),
            };
            notes.insert(&last_notice.to_be_bytes(), encode(&stored));
        }
        // The oldest notifications go once more than NOTICES_KEPT are held.
        let first_kept = last_notice.saturating_sub(NOTICES_KEPT);
        for seq in self.first_notice..=first_kept.min(last_notice) {
            if seq > 0 {
                notes.remove(&seq.to_be_bytes());
            }
        }
        #[cfg(test)]
        let fail_before_audit = std::mem::take(&mut self.fail_before_audit);
        #[cfg(not(test))]
        let fail_before_audit = false;
        (&self.state, &self.archive, &self.audit, &self.notices)
            .transaction(|(st, ar, au, no)| {
                st.apply_batch(&records)?;
                ar.apply_batch(&archive)?;
                if fail_before_audit {
                    return Err(ConflictableTransactionError::Abort(()));
                }
                au.apply_batch(&entries)?;
                no.apply_batch(&notes)?;
                Ok(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::Db(e),
                TransactionError::Abort(()) => StoreError::Db(sled::Error::Unsupported(
                    "the commit was aborted before its audit entries".into(),
                )),
            })?;
        self.db.flush()?;
        self.last = last;
        self.last_notice = last_notice;
        self.first_notice = self.first_notice.max(first_kept + 1);
        Ok(())
    }

    /// The notifications after `after`, oldest first, at most `limit`.
    pub fn notices(&self, after: u64, limit: usize) -> Result<Vec<Notice>, StoreError> {
        self.notices
            .range((after + 1).to_be_bytes()..)
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                decode(&k, &v)
            })
            .collect()
    }

    /// The newest notifications, newest first, at most `limit`.
    pub fn latest_notices(&self, limit: usize) -> Result<Vec<Notice>, StoreError> {
        self.notices
            .iter()
            .rev()
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                decode(&k, &v)
            })
            .collect()
    }

    /// The highest notification seq the operators marked read (0 for none).
    pub fn notices_read(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get(NOTICES_READ)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Marks every notification up to `seq` read; flushed before it returns.
    pub fn mark_notices_read(&self, seq: u64) -> Result<u64, StoreError> {
        let seq = seq.min(self.last_notice).max(self.notices_read()?);
        self.db.insert(NOTICES_READ, &seq.to_be_bytes())?;
        self.db.flush()?;
        Ok(seq)
    }

    /// Every PeerId's addresses as learnt, newest first.
    pub fn peer_addresses(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        self.peers
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((String::from_utf8_lossy(&k).into_owned(), decode(&k, &v)?))
            })
            .collect()
    }

    /// Replaces `peer`'s addresses. Not flushed on its own: losing the newest change in a
    /// crash only costs a dial that waits for the peer's own.
    pub fn set_peer_addresses(&self, peer: &str, addrs: &[String]) -> Result<(), StoreError> {
        self.peers.insert(peer.as_bytes(), encode(&addrs))?;
        Ok(())
    }

    /// Forgets the addresses of every PeerId `keep` rejects (members a roster removed).
    pub fn retain_peer_addresses(&self, keep: impl Fn(&str) -> bool) -> Result<(), StoreError> {
        for item in self.peers.iter() {
            let (k, _) = item?;
            if !keep(&String::from_utf8_lossy(&k)) {
                self.peers.remove(k)?;
            }
        }
        Ok(())
    }

    /// The seq of the newest notification (0 for none).
    pub fn last_notice(&self) -> u64 {
        self.last_notice
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_cut_short_before_its_audit_keeps_neither_its_records_nor_its_audit() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let state = State {
            next_id: 7,
            ..State::default()
        };
        let dirty = BTreeSet::from([StateKey::Meta]);
        let event = AuditEvent {
            at: Timestamp(1),
            event: "project_filed".into(),
            subject: "lu-l-aif/p7".into(),
            detail: String::new(),
        };
        {
            let mut store = Store::open(dir.path()).unwrap();
            store.fail_before_audit = true;
            assert!(
                store
                    .commit(
                        &state,
                        &Changes::of(&dirty, std::slice::from_ref(&event)),
                        &key,
                    )
                    .is_err()
            );
        }
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.load().unwrap().next_id, 0, "no record of it was kept");
            assert!(store.audit_entries().unwrap().is_empty());
        }
        // The same commit, not cut short, keeps both.
        {
            let mut store = Store::open(dir.path()).unwrap();
            store
                .commit(
                    &state,
                    &Changes::of(&dirty, std::slice::from_ref(&event)),
                    &key,
                )
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap().next_id, 7);
        assert_eq!(store.audit_entries().unwrap().len(), 1);
    }
}
