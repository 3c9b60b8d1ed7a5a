//! Deadlines inside the core: an ordered set of (time, what) pairs. The caller learns the
//! earliest one from `Core::next_deadline` and feeds `Input::Tick` when it passes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use aiguillage_wire::{JobId, ReferralId, Timestamp};

/// What a deadline is for. Handling a stale deadline is always harmless: each handler
/// rechecks the state it is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Deadline {
    /// Republish our advert before it expires.
    Republish,
    /// Publish the advert that capacity or intake changes made stale.
    AdvertChanged,
    /// Drop expired adverts from the directory.
    DirectorySweep,
    /// Origin: the current offer's answer is due (or its re-send is).
    Offer(ReferralId),
    /// Origin: re-send the hand-over until the target acknowledges it.
    HandOver(ReferralId),
    /// Target: the operator's decision is due.
    Decision(ReferralId),
    /// Target: re-send an acceptance until the hand-over (or a withdraw) arrives.
    Answer(ReferralId),
    /// Origin: bids are due.
    Bids(JobId),
    /// Origin: the reservation answer (or its re-send) is due.
    Reserve(JobId),
    /// Origin: the lease expires unless a heartbeat arrives.
    Lease(JobId),
    /// Origin: re-send the confirm until the host reports.
    Confirm(JobId),
    /// Origin: retry placing a queued job.
    Replace(JobId),
    /// Host: a reservation lapses unless confirmed.
    Hold(JobId),
    /// Host: send a heartbeat.
    Heartbeat(JobId),
    /// Host: re-send the usage receipt until it is acknowledged.
    Receipt(JobId),
    /// Move finished records out of memory.
    Retire,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Timers {
    set: BTreeSet<(Timestamp, Deadline)>,
    /// The set changed since the core last handed its dirty keys to the store: the timers
    /// must be persisted with the change that scheduled them, or a restart loses them.
    #[serde(skip)]
    changed: bool,
}

impl Timers {
    pub fn schedule(&mut self, at: Timestamp, what: Deadline) {
        if self.set.insert((at, what)) {
            self.changed = true;
        }
    }

    /// Whether the set changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    pub fn next(&self) -> Option<Timestamp> {
        self.set.first().map(|(t, _)| *t)
    }

    /// Removes and returns every deadline at or before `now`, earliest first.
    pub fn due(&mut self, now: Timestamp) -> Vec<Deadline> {
        let mut due = Vec::new();
        while let Some((t, _)) = self.set.first() {
            if *t > now {
                break;
            }
            if let Some((_, d)) = self.set.pop_first() {
                due.push(d);
                self.changed = true;
            }
        }
        due
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}
