//! Safety properties of a federation that hold at every moment, checked over the cores of
//! all its members at once. The property tests and the simulator run them after every
//! step; a node cannot (it sees only its own state).

use aiguillage_wire::MemberId;

use crate::{AttemptOutcome, Core, StateKey};

/// Every violation among `cores`, one line each: a referral accepted by two targets, a job
/// with two live leases or a reused epoch, a dossier held by a member that was not the
/// accepting target or that the client's consent does not cover. `find` gives the core of
/// a member (the origin of a referral).
pub fn safety<'a>(cores: &[&'a Core], find: impl Fn(&MemberId) -> Option<&'a Core>) -> Vec<String> {
    let mut out = Vec::new();
    for core in cores {
        for (id, r) in &core.state().outgoing {
            let n = r
                .attempts
                .iter()
                .filter(|a| a.outcome == Some(AttemptOutcome::Accepted))
                .count();
            if n > 1 {
                out.push(format!("{id} accepted by {n} targets at {}", core.me()));
            }
        }
        for (job, j) in &core.state().jobs {
            let live = j
                .placements
                .iter()
                .filter(|p| p.confirmed && p.outcome.is_none())
                .count();
            if live > 1 {
                out.push(format!("{job} has {live} live leases"));
            }
            let mut epochs: Vec<u64> = j.placements.iter().map(|p| p.epoch).collect();
            epochs.sort_unstable();
            epochs.dedup();
            if epochs.len() != j.placements.len() {
                out.push(format!("{job} reused an epoch"));
            }
        }
        for (id, r) in &core.state().incoming {
            if r.dossier.is_none() {
                continue;
            }
            let Some(origin) = find(&r.origin) else {
                out.push(format!("{id} held from unknown origin {}", r.origin));
                continue;
            };
            let Some(sent) = origin.state().outgoing.get(id) else {
                // The origin's record of a finished referral may have left its memory first.
                if origin.retired(&StateKey::Outgoing(id.clone())).is_none() {
                    out.push(format!("{} holds the dossier of unknown {id}", core.me()));
                }
                continue;
            };
            if sent.accepted_by() != Some(core.me()) {
                out.push(format!(
                    "{} holds the dossier of {id} but was not the accepting target",
                    core.me()
                ));
            }
            if !sent.card.consent.allows(core.me(), core.profile().country) {
                out.push(format!(
                    "dossier of {id} reached {} outside the consent scope",
                    core.me()
                ));
            }
        }
    }
    out
}
