//! The state as records: the key each record is stored under, its bytes, and the way back.
//! A store keeps bytes by key and needs to know nothing else of the schema.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use aiguillage_wire::codec::{decode_stored, encode};
use aiguillage_wire::{Envelope, JobId, MemberId, ProjectId, ReferralId, Roster};

use super::{
    FiledProject, HostedJob, InReferral, OriginJob, OutReferral, Retired, State, StateKey,
};
use crate::directory::{Directory, Listing};
use crate::ledger::Ledger;
use crate::timers::Timers;

/// The small, often-changing part of the state.
#[derive(Serialize, Deserialize)]
struct Meta {
    /// Stores written before the roster had its own record kept it here; read, never
    /// written.
    #[serde(default, skip_serializing)]
    roster: Option<(Arc<Roster>, Arc<Envelope>)>,
    timers: Timers,
    advert_seq: u64,
    total_gpus: u32,
    next_id: u64,
    #[serde(default)]
    blocked: BTreeSet<(MemberId, String, String)>,
}

/// A record could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record {key:?} is not one this version knows")]
    UnknownKey { key: String },
    #[error("record {key:?} cannot be decoded: {reason}")]
    Corrupt { key: String, reason: String },
}

/// One record of the state, decoded.
#[derive(Debug)]
pub enum Record {
    Project(FiledProject),
    Outgoing(OutReferral),
    Incoming(InReferral),
    Job(OriginJob),
    Hosted(HostedJob),
    /// The records every state has once (meta, directory, ledger, …) and listings.
    Other,
}

impl StateKey {
    /// The key a store keeps the record under, e.g. `out/lu-l-aif/3`.
    pub fn path(&self) -> String {
        match self {
            StateKey::Meta => "meta".into(),
            StateKey::Roster => "roster".into(),
            StateKey::Directory => "directory".into(),
            StateKey::Listing(m) => format!("listing/{m}"),
            StateKey::Ledger => "ledger".into(),
            StateKey::Retired => "retired".into(),
            StateKey::Project(id) => format!("project/{id}"),
            StateKey::Outgoing(id) => format!("out/{id}"),
            StateKey::Incoming(id) => format!("in/{id}"),
            StateKey::Job(id) => format!("job/{id}"),
            StateKey::Hosted(id) => format!("hosted/{id}"),
        }
    }

    /// The key a store path names; `None` for a path this version does not know.
    pub fn from_path(path: &str) -> Option<StateKey> {
        Some(match path.split_once('/') {
            None => match path {
                "meta" => StateKey::Meta,
                "roster" => StateKey::Roster,
                "directory" => StateKey::Directory,
                "ledger" => StateKey::Ledger,
                "retired" => StateKey::Retired,
                _ => return None,
            },
            Some(("listing", m)) => StateKey::Listing(MemberId::new(m).ok()?),
            Some(("project", id)) => StateKey::Project(ProjectId::new(id).ok()?),
            Some(("out", id)) => StateKey::Outgoing(ReferralId::new(id).ok()?),
            Some(("in", id)) => StateKey::Incoming(ReferralId::new(id).ok()?),
            Some(("job", id)) => StateKey::Job(JobId::new(id).ok()?),
            Some(("hosted", id)) => StateKey::Hosted(JobId::new(id).ok()?),
            _ => return None,
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &StateKey, bytes: &[u8]) -> Result<T, RecordError> {
    decode_stored(bytes).map_err(|e| RecordError::Corrupt {
        key: key.path(),
        reason: e.to_string(),
    })
}

/// Decodes a record of one project, referral or job (live or archived).
pub fn decode_record(key: &StateKey, bytes: &[u8]) -> Result<Record, RecordError> {
    Ok(match key {
        StateKey::Project(_) => Record::Project(decode(key, bytes)?),
        StateKey::Outgoing(_) => Record::Outgoing(decode(key, bytes)?),
        StateKey::Incoming(_) => Record::Incoming(decode(key, bytes)?),
        StateKey::Job(_) => Record::Job(decode(key, bytes)?),
        StateKey::Hosted(_) => Record::Hosted(decode(key, bytes)?),
        _ => Record::Other,
    })
}

impl State {
    /// The bytes of the record under `key`; `None` when the state no longer holds it.
    pub fn record_bytes(&self, key: &StateKey) -> Option<Vec<u8>> {
        Some(match key {
            StateKey::Meta => encode(&Meta {
                roster: None,
                timers: self.timers.clone(),
                advert_seq: self.advert_seq,
                total_gpus: self.total_gpus,
                next_id: self.next_id,
                blocked: self.blocked.clone(),
            }),
            StateKey::Roster => encode(&self.roster),
            StateKey::Directory => encode(&self.directory),
            StateKey::Listing(m) => encode(self.directory.get(m)?),
            StateKey::Ledger => encode(&self.ledger),
            StateKey::Retired => encode(&self.retired),
            StateKey::Project(id) => encode(self.projects.get(id)?),
            StateKey::Outgoing(id) => encode(self.outgoing.get(id)?),
            StateKey::Incoming(id) => encode(self.incoming.get(id)?),
            StateKey::Job(id) => encode(self.jobs.get(id)?),
            StateKey::Hosted(id) => encode(self.hosted.get(id)?),
        })
    }

    /// Rebuilds a state from its records, in any order.
    pub fn from_records(
        records: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<State, RecordError> {
        let mut s = State::default();
        let mut listings = Vec::new();
        let mut roster = None;
        let mut legacy_roster = None;
        for (path, bytes) in records {
            let key = StateKey::from_path(&path).ok_or(RecordError::UnknownKey { key: path })?;
            match &key {
                StateKey::Meta => {
                    let m: Meta = decode(&key, &bytes)?;
                    legacy_roster = m.roster;
                    s.timers = m.timers;
                    s.advert_seq = m.advert_seq;
                    s.total_gpus = m.total_gpus;
                    s.next_id = m.next_id;
                    s.blocked = m.blocked;
                }
                StateKey::Roster => roster = Some(decode(&key, &bytes)?),
                StateKey::Directory => s.directory = decode::<Directory>(&key, &bytes)?,
                StateKey::Ledger => s.ledger = decode::<Ledger>(&key, &bytes)?,
                StateKey::Retired => {
                    s.retired = decode::<BTreeMap<String, Retired>>(&key, &bytes)?;
                }
                StateKey::Listing(_) => listings.push(decode::<Listing>(&key, &bytes)?),
                StateKey::Project(id) => {
                    s.projects.insert(id.clone(), decode(&key, &bytes)?);
                }
                StateKey::Outgoing(id) => {
                    s.outgoing.insert(id.clone(), decode(&key, &bytes)?);
                }
                StateKey::Incoming(id) => {
                    s.incoming.insert(id.clone(), decode(&key, &bytes)?);
                }
                StateKey::Job(id) => {
                    s.jobs.insert(id.clone(), decode(&key, &bytes)?);
                }
                StateKey::Hosted(id) => {
                    s.hosted.insert(id.clone(), decode(&key, &bytes)?);
                }
            }
        }
        // After the loop: the directory record (behaviour) may come after its listings, and
        // the roster's own record wins over one an older store kept in its meta record.
        for l in listings {
            s.directory.restore(l);
        }
        s.roster = roster.unwrap_or(legacy_roster);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiguillage_wire::{SigningKey, Timestamp};

    fn roster() -> (Arc<Roster>, Arc<Envelope>) {
        let roster = Roster {
            federation: "test".into(),
            serial: 3,
            members: Vec::new(),
        };
        let authority = MemberId::new(aiguillage_wire::AUTHORITY_ID).unwrap();
        let envelope = Envelope::seal(
            &roster,
            &authority,
            &SigningKey::from_bytes(&[9; 32]),
            Timestamp(1_000),
            Timestamp(2_000),
        )
        .unwrap();
        (Arc::new(roster), Arc::new(envelope))
    }

    #[test]
    fn the_roster_has_its_own_record_and_one_an_older_store_kept_in_meta_still_loads() {
        let state = State {
            roster: Some(roster()),
            ..State::default()
        };
        let meta = state.record_bytes(&StateKey::Meta).unwrap();
        let own = state.record_bytes(&StateKey::Roster).unwrap();
        // The meta record, written at nearly every commit, no longer carries the roster.
        let alone = State::from_records([("meta".to_owned(), meta.clone())]).unwrap();
        assert!(alone.roster.is_none());
        let both =
            State::from_records([("roster".to_owned(), own), ("meta".to_owned(), meta)]).unwrap();
        assert_eq!(both.roster, state.roster);
        // A meta record from before, with the roster inside, is read as it was.
        #[derive(Serialize)]
        struct OldMeta {
            roster: Option<(Arc<Roster>, Arc<Envelope>)>,
            timers: Timers,
            advert_seq: u64,
            total_gpus: u32,
            next_id: u64,
        }
        let legacy = encode(&OldMeta {
            roster: state.roster.clone(),
            timers: Timers::default(),
            advert_seq: 7,
            total_gpus: 0,
            next_id: 0,
        });
        let loaded = State::from_records([("meta".to_owned(), legacy)]).unwrap();
        assert_eq!(loaded.roster, state.roster);
        assert_eq!(loaded.advert_seq, 7);
    }
}
