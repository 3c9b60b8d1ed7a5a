//! Durable state of a member: live records in sled; the audit log, the archive and the
//! newest notifications in append-only files beside it.
//!
//! The core's [`State`] is stored one record per [`StateKey`], under the key and in the
//! bytes the core gives it, so a call to `Core::handle` costs writes proportional to what it
//! changed. What is kept for ever (the audit log, and the records that left the core's
//! memory), and the notifications, are appended to files of checksummed frames rather than
//! to sled, whose memory grows with every key it holds: sled then holds only what is live.
//!
//! [`Store::commit`] appends the call's audit entries, retired records and notifications to
//! their files and makes them durable, then writes the changed records and the files' new
//! lengths in one sled transaction, and flushes, before the caller lets any output leave
//! the node. That transaction is the commit point: frames past the recorded lengths belong
//! to a commit that did not finish: never read, and written over later, so a crash keeps
//! all of a commit (records, audit, archive, notifications) or none of it. On start,
//! [`Store::load`] rebuilds the state from the live records; the archive stays on disk,
//! read when asked for.
//!
//! The audit log is append-only; each entry carries the SHA-256 of the previous one and the
//! member's signature over its own hash, so a removed, reordered or edited entry shows.

mod log;
mod notices;

use std::collections::{BTreeMap, BTreeSet};
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
    #[error("{file}: {reason}")]
    Log { file: String, reason: String },
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

/// Where the highest seq marked read is kept.
const NOTICES_READ: &[u8] = b"notices_read";
/// Where the committed lengths of the logs are kept, in the `heads` tree.
const HEADS: &[u8] = b"logs";
const AUDIT_LOG: &str = "audit.log";
const ARCHIVE_LOG: &str = "archive.log";
/// The trees an older store kept the audit log and the archive in.
const OLD_AUDIT_TREE: &str = "audit";
const OLD_ARCHIVE_TREE: &str = "archive";
/// The tree an older store kept its notifications in.
const OLD_NOTICES_TREE: &str = "notices";

/// How far the logs are committed, and the audit chain's end: written in the transaction
/// that commits the state, so the two cannot disagree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Heads {
    audit_len: u64,
    /// The seq of the newest audit entry (0 for none) and its hash.
    audit_seq: u64,
    #[serde(with = "serde_bytes")]
    audit_hash: [u8; 32],
    archive_len: u64,
    /// Which notifications log holds them (0 or 1), and its committed length.
    #[serde(default)]
    notices_file: u8,
    #[serde(default)]
    notices_len: u64,
}

impl Heads {
    fn last(&self) -> Option<(u64, [u8; 32])> {
        (self.audit_seq > 0).then_some((self.audit_seq, self.audit_hash))
    }
}

pub struct Store {
    db: sled::Db,
    state: sled::Tree,
    heads_tree: sled::Tree,
    /// Addresses learnt for members' PeerIds: not federation state, only what lets a
    /// restarted node dial its peers at once.
    peers: sled::Tree,
    audit: log::Log,
    /// Records that left the core's memory: frames of `key length (u16, little-endian) |
    /// key | record bytes`.
    archive: log::Log,
    notices: notices::Notices,
    heads: Heads,
    /// For a test: the next commit stops after appending to the logs, before the
    /// transaction that commits it, as a crash there would.
    #[cfg(test)]
    crash_after_logs: bool,
}

fn archive_frame(path: &str, bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + path.len() + bytes.len());
    v.extend_from_slice(&(path.len() as u16).to_le_bytes());
    v.extend_from_slice(path.as_bytes());
    v.extend_from_slice(bytes);
    v
}

/// The key path and the record of an archive frame.
fn archive_entry(frame: &[u8]) -> Result<(&str, &[u8]), StoreError> {
    let corrupt = || StoreError::Corrupt {
        key: ARCHIVE_LOG.into(),
        reason: "an archive frame shorter than its key".into(),
    };
    let n = u16::from_le_bytes(frame.get(..2).ok_or_else(corrupt)?.try_into().expect("2")) as usize;
    let path = frame.get(2..2 + n).ok_or_else(corrupt)?;
    let path = std::str::from_utf8(path).map_err(|_| StoreError::Corrupt {
        key: ARCHIVE_LOG.into(),
        reason: "an archive key that is not UTF-8".into(),
    })?;
    Ok((path, &frame[2 + n..]))
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
        let peers = db.open_tree("peers")?;
        let heads_tree = db.open_tree("heads")?;
        let heads = match heads_tree.get(HEADS)? {
            Some(v) => decode(HEADS, &v)?,
            None => Heads::default(),
        };
        let mut audit = log::Log::open(&dir.join(AUDIT_LOG), heads.audit_len)?;
        let mut archive = log::Log::open(&dir.join(ARCHIVE_LOG), heads.archive_len)?;
        let heads = migrate(&db, &heads_tree, heads, &mut audit, &mut archive)?;
        let mut notices = notices::Notices::open(dir, &heads)?;
        let heads = migrate_notices(&db, &heads_tree, heads, &mut notices)?;
        Ok(Store {
            db,
            state,
            heads_tree,
            peers,
            audit,
            archive,
            notices,
            heads,
            #[cfg(test)]
            crash_after_logs: false,
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

    /// The archived record under `key`: one that left the core's memory (the latest, if
    /// it left more than once). Reads the archive from its start.
    pub fn archived(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StoreError> {
        let wanted = key.path();
        let mut found = None;
        for frame in self.archive.frames()? {
            let frame = frame?;
            let (path, bytes) = archive_entry(&frame)?;
            if path == wanted {
                found = Some(bytes.to_vec());
            }
        }
        Ok(found)
    }

    /// Every archived record whose key starts with `prefix` (`out/`, `job/`, …), in key
    /// order (the latest of a key archived more than once). Reads the archive from its
    /// start.
    pub fn archived_under(&self, prefix: &str) -> Result<Vec<(StateKey, Vec<u8>)>, StoreError> {
        let mut found = BTreeMap::new();
        for frame in self.archive.frames()? {
            let frame = frame?;
            let (path, bytes) = archive_entry(&frame)?;
            let key = path
                .strip_prefix(prefix)
                .and_then(|_| StateKey::from_path(path));
            if let Some(key) = key {
                found.insert(path.to_owned(), (key, bytes.to_vec()));
            }
        }
        Ok(found.into_values().collect())
    }

    /// Appends the audit entries and the retired records to their logs (made durable),
    /// then writes the records named by `changes.dirty`, removes the retired ones, appends
    /// the notifications and records the logs' new lengths, in one transaction; then
    /// flushes to disk. Until that transaction, nothing of the commit is visible, and after
    /// a crash before it, nothing of it is kept.
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
        let mut archived = Vec::with_capacity(retired.len());
        for (k, v) in retired {
            records.remove(k.path().as_bytes());
            archived.push(archive_frame(&k.path(), v));
        }
        let mut entries = Vec::with_capacity(audit.len());
        let mut last = self.heads.last();
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
            entries.push(encode(&r));
            last = Some((seq, h));
        }
        let notes: Vec<Notice> = (self.notices.last() + 1..)
            .zip(notices)
            .map(|(seq, (at, notification))| Notice {
                seq,
                at: *at,
                notification: notification.clone(),
            })
            .collect();
        let mut heads = self.heads;
        if !entries.is_empty() {
            heads.audit_len = self.audit.append(&entries)?;
            (heads.audit_seq, heads.audit_hash) = last.expect("an entry was signed");
        }
        if !archived.is_empty() {
            // Should this fail, the audit frames just written sit past the committed end,
            // where the next commit writes over them.
            heads.archive_len = self.archive.append(&archived)?;
        }
        // Likewise: until the transaction, the log the heads name is as it was.
        let noted = self.notices.write(&notes, &mut heads)?;
        #[cfg(test)]
        if std::mem::take(&mut self.crash_after_logs) {
            return Err(StoreError::Db(sled::Error::Unsupported(
                "stopped after the logs, before the transaction".into(),
            )));
        }
        let written = (&self.state, &self.heads_tree).transaction(|(st, he)| {
            st.apply_batch(&records)?;
            if heads != self.heads {
                he.insert(HEADS, encode(&heads))?;
            }
            Ok::<_, ConflictableTransactionError<std::convert::Infallible>>(())
        });
        if let Err(e) = written {
            // Not committed: what the logs got past their committed ends is written over
            // by the next commit, and never read.
            return Err(match e {
                TransactionError::Storage(e) => StoreError::Db(e),
                TransactionError::Abort(never) => match never {},
            });
        }
        // Committed, though not yet flushed: should the flush fail, the node stops, and the
        // logs, already durable, hold what sled may still write.
        self.audit.committed(heads.audit_len);
        self.archive.committed(heads.archive_len);
        if let Some(noted) = noted {
            self.notices.committed(noted, &heads);
        }
        self.heads = heads;
        self.db.flush()?;
        Ok(())
    }

    /// The notifications after `after`, oldest first, at most `limit`.
    pub fn notices(&self, after: u64, limit: usize) -> Result<Vec<Notice>, StoreError> {
        self.notices.after(after, limit)
    }

    /// The newest notifications, newest first, at most `limit`.
    pub fn latest_notices(&self, limit: usize) -> Result<Vec<Notice>, StoreError> {
        self.notices.latest(limit)
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
        let seq = seq.min(self.notices.last()).max(self.notices_read()?);
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
        self.notices.last()
    }

    /// Every audit entry, oldest first.
    pub fn audit_entries(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit
            .frames()?
            .map(|frame| decode(AUDIT_LOG.as_bytes(), &frame?))
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

    /// For tests: rewrite one stored audit entry, as someone with the files in hand could.
    #[doc(hidden)]
    pub fn tamper_audit(&mut self, seq: u64, detail: &str) -> Result<(), StoreError> {
        let mut entries = self.audit_entries()?;
        for r in entries.iter_mut().filter(|r| r.seq == seq) {
            r.detail = detail.to_owned();
        }
        let frames: Vec<Vec<u8>> = entries.iter().map(encode).collect();
        self.heads.audit_len = self.audit.rewrite(&frames)?;
        self.heads_tree.insert(HEADS, encode(&self.heads))?;
        self.db.flush()?;
        Ok(())
    }
}

/// Moves the audit log and the archive of a store written before they had their own files
/// out of its sled trees. Safe to repeat: until the new lengths are recorded, the files are
/// written again from the trees, which are dropped only after.
fn migrate(
    db: &sled::Db,
    heads_tree: &sled::Tree,
    heads: Heads,
    audit: &mut log::Log,
    archive: &mut log::Log,
) -> Result<Heads, StoreError> {
    let names = db.tree_names();
    let has = |name: &str| names.iter().any(|n| n.as_ref() == name.as_bytes());
    let (had_audit, had_archive) = (has(OLD_AUDIT_TREE), has(OLD_ARCHIVE_TREE));
    if !had_audit && !had_archive {
        return Ok(heads);
    }
    let mut heads = heads;
    if heads_tree.get(HEADS)?.is_none() {
        let old_audit = db.open_tree(OLD_AUDIT_TREE)?;
        let mut frames = Vec::new();
        for item in old_audit.iter() {
            let (k, v) = item?;
            let r: AuditRecord = decode(&k, &v)?;
            (heads.audit_seq, heads.audit_hash) = (r.seq, r.hash());
            frames.push(v.to_vec());
        }
        heads.audit_len = audit.rewrite(&frames)?;
        let old_archive = db.open_tree(OLD_ARCHIVE_TREE)?;
        let mut frames = Vec::new();
        for item in old_archive.iter() {
            let (k, v) = item?;
            frames.push(archive_frame(&String::from_utf8_lossy(&k), &v));
        }
        heads.archive_len = archive.rewrite(&frames)?;
        heads_tree.insert(HEADS, encode(&heads))?;
        db.flush()?;
    }
    for (name, had) in [(OLD_AUDIT_TREE, had_audit), (OLD_ARCHIVE_TREE, had_archive)] {
        if had {
            db.drop_tree(name)?;
        }
    }
    db.flush()?;
    Ok(heads)
}

/// Moves the notifications of a store written before they had their own files out of its
/// sled tree, the same way.
fn migrate_notices(
    db: &sled::Db,
    heads_tree: &sled::Tree,
    heads: Heads,
    notices: &mut notices::Notices,
) -> Result<Heads, StoreError> {
    let had = db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == OLD_NOTICES_TREE.as_bytes());
    if !had {
        return Ok(heads);
    }
    let mut heads = heads;
    if heads.notices_len == 0 {
        let old = db.open_tree(OLD_NOTICES_TREE)?;
        let frames = old
            .iter()
            .values()
            .map(|v| Ok(v?.to_vec()))
            .collect::<Result<Vec<_>, StoreError>>()?;
        notices.replace(&frames, &mut heads)?;
        heads_tree.insert(HEADS, encode(&heads))?;
        db.flush()?;
    }
    db.drop_tree(OLD_NOTICES_TREE)?;
    db.flush()?;
    Ok(heads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> AuditEvent {
        AuditEvent {
            at: Timestamp(n),
            event: "project_filed".into(),
            subject: format!("lu-l-aif/p{n}"),
            detail: String::new(),
        }
    }

    fn project_key(n: u64) -> StateKey {
        StateKey::from_path(&format!("project/lu-l-aif/p{n}")).expect("a project key")
    }

    #[test]
    fn a_commit_cut_short_after_its_logs_keeps_neither_its_records_nor_its_audit_nor_its_archive() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let state = State {
            next_id: 7,
            ..State::default()
        };
        let dirty = BTreeSet::from([StateKey::Meta]);
        let retired = [(project_key(1), b"finished".to_vec())];
        let changes = Changes {
            dirty: &dirty,
            retired: &retired,
            audit: &[event(1)],
            notices: &[],
        };
        {
            let mut store = Store::open(dir.path()).unwrap();
            store.crash_after_logs = true;
            assert!(store.commit(&state, &changes, &key).is_err());
            // As a crash would leave them: the frames are on disk, the commit is not.
            assert!(std::fs::metadata(dir.path().join(AUDIT_LOG)).unwrap().len() > 0);
            assert!(
                std::fs::metadata(dir.path().join(ARCHIVE_LOG))
                    .unwrap()
                    .len()
                    > 0
            );
        }
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.load().unwrap().next_id, 0, "no record of it was kept");
            assert!(store.audit_entries().unwrap().is_empty());
            assert_eq!(store.archived(&project_key(1)).unwrap(), None);
        }
        // The same commit, not cut short, keeps all three, and the chain goes on from it.
        {
            let mut store = Store::open(dir.path()).unwrap();
            store.commit(&state, &changes, &key).unwrap();
            store
                .commit(&state, &Changes::of(&BTreeSet::new(), &[event(2)]), &key)
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap().next_id, 7);
        assert_eq!(store.audit_verify(&PublicKey::of(&key)).unwrap(), 2);
        assert_eq!(
            store.archived(&project_key(1)).unwrap().as_deref(),
            Some(&b"finished"[..])
        );
    }

    #[test]
    fn a_store_that_kept_its_audit_log_and_archive_in_sled_moves_them_to_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        // Two entries chained and signed as the store signs them, in the trees an older
        // store wrote.
        {
            let db = sled::open(dir.path()).unwrap();
            let audit = db.open_tree(OLD_AUDIT_TREE).unwrap();
            let mut prev = [0u8; 32];
            for seq in 1..=2u64 {
                let mut r = AuditRecord {
                    seq,
                    at: Timestamp(seq),
                    event: "project_filed".into(),
                    subject: format!("lu-l-aif/p{seq}"),
                    detail: String::new(),
                    prev,
                    signature: [0; 64],
                };
                prev = r.hash();
                r.signature = key.sign(&prev).to_bytes();
                audit.insert(seq.to_be_bytes(), encode(&r)).unwrap();
            }
            let archive = db.open_tree(OLD_ARCHIVE_TREE).unwrap();
            archive
                .insert(project_key(1).path().as_bytes(), &b"old"[..])
                .unwrap();
            db.flush().unwrap();
        }
        for _ in 0..2 {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.audit_verify(&PublicKey::of(&key)).unwrap(), 2);
            assert_eq!(
                store.archived(&project_key(1)).unwrap().as_deref(),
                Some(&b"old"[..])
            );
            let names = store.db.tree_names();
            assert!(
                !names
                    .iter()
                    .any(|n| n.as_ref() == OLD_AUDIT_TREE.as_bytes()),
                "the old tree is gone"
            );
        }
        // The chain continues from the moved entries.
        let mut store = Store::open(dir.path()).unwrap();
        store
            .commit(
                &State::default(),
                &Changes::of(&BTreeSet::new(), &[event(3)]),
                &key,
            )
            .unwrap();
        assert_eq!(store.audit_verify(&PublicKey::of(&key)).unwrap(), 3);
    }

    #[test]
    fn archived_records_are_read_back_by_key_and_by_prefix_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut store = Store::open(dir.path()).unwrap();
        let job = StateKey::from_path("job/lu-l-aif/j1").expect("a job key");
        let retired = [
            (project_key(2), b"p2".to_vec()),
            (job.clone(), b"j1".to_vec()),
            (project_key(1), b"p1".to_vec()),
        ];
        let changes = Changes {
            dirty: &BTreeSet::new(),
            retired: &retired,
            audit: &[],
            notices: &[],
        };
        store.commit(&State::default(), &changes, &key).unwrap();
        let projects = store.archived_under("project/").unwrap();
        assert_eq!(
            projects,
            vec![
                (project_key(1), b"p1".to_vec()),
                (project_key(2), b"p2".to_vec())
            ]
        );
        assert_eq!(store.archived(&job).unwrap().as_deref(), Some(&b"j1"[..]));
        assert_eq!(store.archived(&project_key(3)).unwrap(), None);
    }

    fn notes(from: u64, n: u64) -> Vec<(Timestamp, Notification)> {
        (from..from + n)
            .map(|i| {
                let referral = aiguillage_wire::ReferralId::new(format!("lu-l-aif/r{i}")).unwrap();
                (Timestamp(i), Notification::ReferralExhausted { referral })
            })
            .collect()
    }

    fn seqs(notices: &[Notice]) -> Vec<u64> {
        notices.iter().map(|n| n.seq).collect()
    }

    fn commit_notes(
        store: &mut Store,
        notes: &[(Timestamp, Notification)],
    ) -> Result<(), StoreError> {
        let key = SigningKey::from_bytes(&[3; 32]);
        let changes = Changes {
            dirty: &BTreeSet::new(),
            retired: &[],
            audit: &[],
            notices: notes,
        };
        store.commit(&State::default(), &changes, &key)
    }

    /// What a store answers about its notifications: the newest seq, the oldest kept, the
    /// three newest, and what comes after a seq, with each notification's own content.
    fn check_notices(store: &Store, last: u64) {
        let first = last - notices::KEPT as u64 + 1;
        assert_eq!(store.last_notice(), last);
        assert_eq!(
            seqs(&store.latest_notices(3).unwrap()),
            [last, last - 1, last - 2]
        );
        assert_eq!(
            seqs(&store.notices(0, 2).unwrap()),
            [first, first + 1],
            "the oldest are gone"
        );
        let tail = store.notices(last - 2, 10).unwrap();
        assert_eq!(seqs(&tail), [last - 1, last]);
        assert!(
            tail.iter()
                .all(|n| n.notification == notes(n.seq, 1)[0].1 && n.at == Timestamp(n.seq))
        );
        assert_eq!(
            store.notices(first - 1, notices::KEPT + 5).unwrap().len(),
            notices::KEPT
        );
    }

    #[test]
    fn the_newest_notifications_are_kept_across_restarts_and_their_files_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        // Eight commits of 3,000: the first log fills to twice the kept number, then the
        // newest 10,000 move to the other log, and so on.
        for b in 0..8 {
            commit_notes(&mut store, &notes(b * 3_000 + 1, 3_000)).unwrap();
        }
        check_notices(&store, 24_000);
        assert_eq!(store.heads.notices_file, 1, "the second log took over");
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        check_notices(&store, 24_000);
        // One commit larger than what is kept keeps only its own newest.
        commit_notes(&mut store, &notes(24_001, 12_000)).unwrap();
        check_notices(&store, 36_000);
        for _ in 0..30 {
            let last = store.last_notice();
            commit_notes(&mut store, &notes(last + 1, 1_000)).unwrap();
        }
        check_notices(&store, 66_000);
        assert!(store.notices(66_000, 10).unwrap().is_empty());
        assert!(
            store.notices(u64::MAX, 10).unwrap().is_empty(),
            "no seq is after the last"
        );
        let bytes_per_notice = encode(&store.latest_notices(1).unwrap()[0]).len() as u64 + 8;
        for f in ["notices.0.log", "notices.1.log"] {
            let len = std::fs::metadata(dir.path().join(f)).unwrap().len();
            assert!(
                len <= 2 * notices::KEPT as u64 * bytes_per_notice + 2 * 1024 * 1024,
                "{f} holds {len} bytes"
            );
        }
        drop(store);
        check_notices(&Store::open(dir.path()).unwrap(), 66_000);
    }

    #[test]
    fn a_commit_cut_short_while_it_moves_the_notifications_to_the_other_log_keeps_them_as_they_were()
     {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = Store::open(dir.path()).unwrap();
            commit_notes(&mut store, &notes(1, 20_000)).unwrap();
            check_notices(&store, 20_000);
            store.crash_after_logs = true;
            // This one would move the newest to the other log.
            assert!(commit_notes(&mut store, &notes(20_001, 5)).is_err());
        }
        let mut store = Store::open(dir.path()).unwrap();
        check_notices(&store, 20_000);
        assert_eq!(store.heads.notices_file, 0);
        commit_notes(&mut store, &notes(20_001, 5)).unwrap();
        check_notices(&store, 20_005);
        drop(store);
        check_notices(&Store::open(dir.path()).unwrap(), 20_005);
    }

    #[test]
    fn a_store_that_kept_its_notifications_in_sled_moves_them_to_their_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let old = db.open_tree(OLD_NOTICES_TREE).unwrap();
            for (seq, (at, notification)) in (1..).zip(notes(1, 3)) {
                let n = Notice {
                    seq,
                    at,
                    notification,
                };
                old.insert(seq.to_be_bytes(), encode(&n)).unwrap();
            }
            db.flush().unwrap();
        }
        for _ in 0..2 {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.last_notice(), 3);
            assert_eq!(seqs(&store.notices(0, 10).unwrap()), [1, 2, 3]);
            assert_eq!(
                store.notices(1, 1).unwrap()[0].notification,
                notes(2, 1)[0].1
            );
            assert!(
                !store
                    .db
                    .tree_names()
                    .iter()
                    .any(|n| n.as_ref() == OLD_NOTICES_TREE.as_bytes()),
                "the old tree is gone"
            );
        }
        let mut store = Store::open(dir.path()).unwrap();
        commit_notes(&mut store, &notes(4, 1)).unwrap();
        assert_eq!(seqs(&store.latest_notices(10).unwrap()), [4, 3, 2, 1]);
    }
}
