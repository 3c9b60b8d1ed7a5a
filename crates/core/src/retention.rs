//! State over a lifetime: a finished project, referral or job leaves memory
//! `retention_ms` after it finished. Its record goes to the caller (the store keeps it in
//! its archive, where the API still finds it), and its id stays behind as a small
//! tombstone until every message about it has expired, so that a late or replayed message
//! cannot bring it back as new.

use aiguillage_wire::{JobId, ReceiptAck, Timestamp};

use crate::Core;
use crate::config::{DAY, HOUR, SECOND};
use crate::state::{HostPhase, InState, JobPhase, JourneyState, OutReferral, Retired, StateKey};
use crate::timers::Deadline;

/// How long a tombstone stays: past the longest lifetime a referral or job message may
/// have (30 days, PROTOCOL.md §4), with a day to spare.
const TOMBSTONE_MS: u64 = 31 * DAY;

impl Core {
    /// When the next retention sweep runs: a quarter of the retention, between a second
    /// and an hour.
    pub(crate) fn schedule_retention(&mut self, now: Timestamp) {
        let every = (self.config.retention_ms / 4).clamp(SECOND, HOUR);
        self.state
            .timers
            .schedule(now.saturating_add_ms(every), Deadline::Retire);
    }

    /// Moves every record that finished more than `retention_ms` ago out of memory, and
    /// forgets the tombstones no message can reach any more.
    pub(crate) fn retire_deadline(&mut self, now: Timestamp) {
        let keep = self.config.retention_ms;
        let due = |finished: Option<Timestamp>| {
            finished.is_some_and(|at| now.millis() >= at.millis().saturating_add(keep))
        };
        let s = &self.state;
        let mut leaving: Vec<(StateKey, Option<(aiguillage_wire::MemberId, u64)>)> = Vec::new();
        for (id, r) in &s.outgoing {
            if due(out_finished(r)) {
                leaving.push((StateKey::Outgoing(id.clone()), None));
            }
        }
        for (id, r) in &s.incoming {
            let finished = matches!(
                r.state,
                InState::Declined { .. }
                    | InState::Completed
                    | InState::Abandoned
                    | InState::Withdrawn
            )
            .then(|| r.history.last().map(|t| t.at))
            .flatten();
            if due(finished) {
                leaving.push((StateKey::Incoming(id.clone()), None));
            }
        }
        let referrals_leaving: std::collections::BTreeSet<StateKey> =
            leaving.iter().map(|(k, _)| k.clone()).collect();
        for (id, p) in &s.projects {
            // A referred project leaves with its referral; one served here once its journey
            // ended and the retention passed.
            let finished = match (&p.referral, &p.journey.state) {
                (Some(r), JourneyState::Referred) if s.outgoing.contains_key(r) => {
                    referrals_leaving.contains(&StateKey::Outgoing(r.clone()))
                }
                (_, JourneyState::Active | JourneyState::Unplaced) => false,
                _ => due(p
                    .journey
                    .history
                    .last()
                    .map_or(Some(p.filed_at), |t| Some(t.at))),
            };
            if finished {
                leaving.push((StateKey::Project(id.clone()), None));
            }
        }
        for (id, j) in &s.jobs {
            let finished = j
                .phase
                .is_final()
                .then(|| j.history.last().map(|t| t.at))
                .flatten();
            if due(finished) {
                let receipt = match &j.phase {
                    JobPhase::Done {
                        host: Some(host), ..
                    } => Some((host.clone(), j.epoch)),
                    _ => None,
                };
                leaving.push((StateKey::Job(id.clone()), receipt));
            }
        }
        for (id, h) in &s.hosted {
            let finished = matches!(
                h.phase,
                HostPhase::Finished { acknowledged: true }
                    | HostPhase::Released
                    | HostPhase::Disowned
            )
            .then(|| h.history.last().map(|t| t.at))
            .flatten();
            if due(finished) {
                leaving.push((
                    StateKey::Hosted(id.clone()),
                    Some((h.origin.clone(), h.epoch)),
                ));
            }
        }
        let subjects: std::collections::BTreeSet<String> = leaving
            .iter()
            .filter_map(|(k, _)| match k {
                StateKey::Outgoing(id) | StateKey::Incoming(id) => Some(id.to_string()),
                StateKey::Job(id) | StateKey::Hosted(id) => Some(id.to_string()),
                _ => None,
            })
            .collect();
        if !subjects.is_empty() {
            let before = self.state.blocked.len();
            self.state.blocked.retain(|(_, _, s)| !subjects.contains(s));
            if self.state.blocked.len() != before {
                self.dirty.insert(StateKey::Meta);
            }
        }
        for (key, placement) in leaving {
            if let Some(bytes) = self.state.record_bytes(&key) {
                self.retired_out.push((key.clone(), bytes));
            }
            match &key {
                StateKey::Outgoing(id) => drop(self.state.outgoing.remove(id)),
                StateKey::Incoming(id) => drop(self.state.incoming.remove(id)),
                StateKey::Project(id) => drop(self.state.projects.remove(id)),
                StateKey::Job(id) => drop(self.state.jobs.remove(id)),
                StateKey::Hosted(id) => drop(self.state.hosted.remove(id)),
                _ => {}
            }
            self.state
                .retired
                .insert(key.path(), Retired { at: now, placement });
            self.dirty.insert(StateKey::Retired);
        }
        let before = self.state.retired.len();
        self.state
            .retired
            .retain(|_, r| now.millis() < r.at.millis().saturating_add(TOMBSTONE_MS));
        if self.state.retired.len() != before {
            self.dirty.insert(StateKey::Retired);
        }
        self.schedule_retention(now);
    }

    /// The records that left memory since the last call, with their last bytes: the store
    /// archives them and removes them from the live records in the same commit.
    pub fn take_retired(&mut self) -> Vec<(StateKey, Vec<u8>)> {
        std::mem::take(&mut self.retired_out)
    }

    /// The tombstone of a record that has left memory, while it is kept.
    pub fn retired(&self, key: &StateKey) -> Option<&Retired> {
        self.state.retired.get(&key.path())
    }

    /// A re-sent receipt for a job that has left memory after it was recorded: acknowledged
    /// again, so that the host stops re-sending it. Returns whether the job had left.
    pub(crate) fn ack_retired_receipt(
        &mut self,
        now: Timestamp,
        from: &aiguillage_wire::MemberId,
        job: &JobId,
        epoch: u64,
    ) -> bool {
        let Some(r) = self.retired(&StateKey::Job(job.clone())) else {
            return false;
        };
        if r.placement.as_ref() == Some(&(from.clone(), epoch)) {
            self.send(
                now,
                from,
                &ReceiptAck {
                    job: job.clone(),
                    epoch,
                },
            );
        }
        true
    }
}

/// When an outgoing referral finished, if it did and owes nothing more: a withdrawal after
/// the hand-over is still re-sent until the target answers.
fn out_finished(r: &OutReferral) -> Option<Timestamp> {
    if !r.state.is_final() || (r.withdrawn_after_hand_over() && !r.hand_over_acked) {
        return None;
    }
    r.history.last().map(|t| t.at)
}
