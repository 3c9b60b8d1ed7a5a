//! What changed at this node, for the consoles that are open: every committed change to a
//! referral, project, job, listing or the ledger becomes a numbered event. The newest
//! [`Live::KEPT`] are held, so that a console that reconnects with `Last-Event-ID` gets
//! what it missed; one that was away longer is told to refresh everything.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aiguillage_core::StateKey;
use serde::Serialize;
use tokio::sync::watch;

/// One change, as a console receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveEvent {
    pub id: u64,
    /// `referral`, `project`, `job`, `member`, `ledger` or `peers`; `reset` when events
    /// were missed.
    pub topic: &'static str,
    /// The record's id (empty for the ledger and peers).
    pub subject: String,
}

#[derive(Clone)]
pub struct Live {
    ring: Arc<Mutex<Ring>>,
    newest: Arc<watch::Sender<u64>>,
}

#[derive(Default)]
struct Ring {
    next: u64,
    events: VecDeque<LiveEvent>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            ring: Default::default(),
            newest: Arc::new(watch::channel(0).0),
        }
    }
}

impl Live {
    /// Events kept for consoles that reconnect.
    pub const KEPT: usize = 1024;

    /// Records a change; consoles waiting on [`Live::subscribe`] wake.
    pub fn publish(&self, topic: &'static str, subject: impl Into<String>) {
        let id = {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            ring.next += 1;
            let id = ring.next;
            if ring.events.len() == Self::KEPT {
                ring.events.pop_front();
            }
            ring.events.push_back(LiveEvent {
                id,
                topic,
                subject: subject.into(),
            });
            id
        };
        self.newest.send_replace(id);
    }

    /// The events of one commit, from the records it changed.
    pub fn publish_changes<'a>(&self, changed: impl IntoIterator<Item = &'a StateKey>) {
        for key in changed {
            let (topic, subject) = match key {
                StateKey::Outgoing(r) | StateKey::Incoming(r) => ("referral", r.to_string()),
                StateKey::Project(p) => ("project", p.to_string()),
                StateKey::Job(j) | StateKey::Hosted(j) => ("job", j.to_string()),
                StateKey::Listing(m) => ("member", m.to_string()),
                StateKey::Ledger => ("ledger", String::new()),
                StateKey::Meta | StateKey::Roster | StateKey::Directory | StateKey::Retired => {
                    continue;
                }
            };
            self.publish(topic, subject);
        }
    }

    /// The id of the newest event (0 before any).
    pub fn newest(&self) -> u64 {
        *self.newest.borrow()
    }

    /// Wakes whenever an event is published.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// The events after `id`, oldest first; a single `reset` event when some of them are no
    /// longer held.
    pub fn after(&self, id: u64) -> Vec<LiveEvent> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if id == ring.next {
            return Vec::new();
        }
        let oldest = ring.events.front().map_or(ring.next, |e| e.id);
        // Missed events, or an id from before the node restarted (ids start again at 1).
        if id + 1 < oldest || id > ring.next {
            return vec![LiveEvent {
                id: ring.next,
                topic: "reset",
                subject: String::new(),
            }];
        }
        ring.events.iter().filter(|e| e.id > id).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_that_reconnects_gets_what_it_missed_or_is_told_to_refresh() {
        let live = Live::default();
        assert!(live.after(0).is_empty());
        live.publish("referral", "lu-l-aif/1");
        live.publish("job", "lu-l-aif/j1");
        let missed = live.after(1);
        assert_eq!(missed.len(), 1);
        assert_eq!((missed[0].id, missed[0].topic), (2, "job"));
        assert_eq!(live.after(0).len(), 2);
        assert!(live.after(2).is_empty());
        for i in 0..Live::KEPT {
            live.publish("member", format!("m{i}"));
        }
        // Event 3 is gone from the ring: a console that saw only event 1 must refresh.
        let gap = live.after(1);
        assert_eq!(gap.len(), 1);
        assert_eq!(gap[0].topic, "reset");
        assert_eq!(gap[0].id, live.newest());
        // One that saw event 2 misses nothing.
        assert_eq!(live.after(2).len(), Live::KEPT);
        // An id this node never gave (it restarted since) is told to refresh too.
        let stale = live.after(live.newest() + 100);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].topic, "reset");
    }
}
