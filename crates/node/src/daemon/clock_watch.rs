//! How far this node's clock is from the federation's, estimated from the `issued_at` of
//! the members' signed messages.
//!
//! Each member's sample is how far its `issued_at` is ahead of this clock on arrival; the
//! freshest message in a window gives the best figure (transit and re-sent copies only
//! make a message look older), so a member's sample is the largest in the window. The
//! node's offset is the opposite of the median over members: if every peer's messages look
//! ten minutes old, this clock is ten minutes ahead. With an even count the middle value
//! nearer zero is taken, so that one wrong peer among two does not make this node doubt
//! its own clock.

use std::collections::HashMap;

use aiguillage_wire::{MemberId, Timestamp};

/// How long a member's sample counts.
const WINDOW_MS: u64 = 5 * 60_000;
/// An offset past this is logged at WARN (messages past 30 s ahead are refused).
pub const WARN_MS: i64 = 10_000;
/// While the offset stays past the threshold, the warning is repeated this often.
const WARN_EVERY_MS: u64 = 10 * 60_000;
/// A member whose message was refused for its time is verified at most this often.
const WITNESS_EVERY_MS: u64 = 10_000;

#[derive(Clone, Copy, Debug)]
struct Sample {
    /// The member's `issued_at` minus this clock, in ms.
    ahead_ms: i64,
    at: Timestamp,
}

/// The estimate: this clock minus the federation's median, and how many members it rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offset {
    pub ms: i64,
    pub members: usize,
}

/// What the node should log after a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockNews {
    /// The offset is past [`WARN_MS`] (first time, or again after [`WARN_EVERY_MS`]).
    Off(Offset),
    /// The offset came back within the threshold.
    Back(Offset),
}

#[derive(Default)]
pub struct ClockWatch {
    samples: HashMap<MemberId, Sample>,
    witnessed: HashMap<MemberId, Timestamp>,
    warned_at: Option<Timestamp>,
}

impl ClockWatch {
    /// A message signed by `member` at `issued_at` arrived at `now`.
    pub fn sample(
        &mut self,
        member: &MemberId,
        issued_at: Timestamp,
        now: Timestamp,
    ) -> Option<ClockNews> {
        let ahead_ms = issued_at.millis() as i64 - now.millis() as i64;
        let fresh = Sample { ahead_ms, at: now };
        self.samples
            .entry(member.clone())
            .and_modify(|s| {
                if now.millis().saturating_sub(s.at.millis()) > WINDOW_MS || ahead_ms >= s.ahead_ms
                {
                    *s = fresh;
                }
            })
            .or_insert(fresh);
        self.news(now)
    }

    /// Whether a message of `member` refused for its time may be verified now to serve as
    /// a sample; at most one every ten seconds per member, so that old copies cannot make
    /// the node verify signatures at the sender's pace.
    pub fn may_witness(&mut self, member: &MemberId, now: Timestamp) -> bool {
        match self.witnessed.get(member) {
            Some(t) if now.millis().saturating_sub(t.millis()) < WITNESS_EVERY_MS => false,
            _ => {
                self.witnessed.insert(member.clone(), now);
                true
            }
        }
    }

    /// Forgets the members no longer on the roster.
    pub fn retain(&mut self, keep: impl Fn(&MemberId) -> bool) {
        self.samples.retain(|m, _| keep(m));
        self.witnessed.retain(|m, _| keep(m));
    }

    /// The estimate from the members heard in the window, if any.
    pub fn offset(&self, now: Timestamp) -> Option<Offset> {
        let mut ahead: Vec<i64> = self.fresh(now).map(|(_, s)| s.ahead_ms).collect::<Vec<_>>();
        if ahead.is_empty() {
            return None;
        }
        ahead.sort_unstable();
        let n = ahead.len();
        let median = if n % 2 == 1 {
            ahead[n / 2]
        } else {
            let (a, b) = (ahead[n / 2 - 1], ahead[n / 2]);
            if a.abs() <= b.abs() { a } else { b }
        };
        Some(Offset {
            ms: -median,
            members: n,
        })
    }

    /// Each member heard in the window, with how far its clock is ahead of this one (ms).
    pub fn members(&self, now: Timestamp) -> Vec<(MemberId, i64)> {
        let mut out: Vec<_> = self
            .fresh(now)
            .map(|(m, s)| (m.clone(), s.ahead_ms))
            .collect();
        out.sort();
        out
    }

    fn fresh(&self, now: Timestamp) -> impl Iterator<Item = (&MemberId, &Sample)> {
        self.samples
            .iter()
            .filter(move |(_, s)| now.millis().saturating_sub(s.at.millis()) <= WINDOW_MS)
    }

    fn news(&mut self, now: Timestamp) -> Option<ClockNews> {
        let offset = self.offset(now)?;
        if offset.ms.abs() > WARN_MS {
            let due = self
                .warned_at
                .is_none_or(|t| now.millis().saturating_sub(t.millis()) >= WARN_EVERY_MS);
            if due {
                self.warned_at = Some(now);
                return Some(ClockNews::Off(offset));
            }
        } else if self.warned_at.take().is_some() {
            return Some(ClockNews::Back(offset));
        }
        None
    }
}

/// "600 s ahead", "2.5 s behind": this clock against the others, for a log line.
pub fn describe(offset_ms: i64) -> String {
    let s = offset_ms.unsigned_abs() as f64 / 1000.0;
    if offset_ms >= 0 {
        format!("{s} s ahead")
    } else {
        format!("{s} s behind")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> MemberId {
        MemberId::new(s).unwrap()
    }

    const T: u64 = 1_800_000_000_000;

    #[test]
    fn a_clock_ahead_of_every_peer_is_estimated_warned_once_and_cleared() {
        let mut w = ClockWatch::default();
        let now = Timestamp(T);
        // Our clock is 600 s ahead: every peer's message looks 600 s old.
        let first = w.sample(&m("a"), Timestamp(T - 600_000), now);
        assert_eq!(
            first,
            Some(ClockNews::Off(Offset {
                ms: 600_000,
                members: 1
            }))
        );
        assert_eq!(w.sample(&m("b"), Timestamp(T - 600_200), now), None);
        // Of the middle pair, the one nearer zero.
        assert_eq!(
            w.offset(now),
            Some(Offset {
                ms: 600_000,
                members: 2
            })
        );
        // The freshest message of a member counts; an older copy does not pull it back.
        w.sample(&m("b"), Timestamp(T - 599_900), now);
        w.sample(&m("b"), Timestamp(T - 700_000), now);
        assert_eq!(w.members(now)[1], (m("b"), -599_900));
        // Repeated after ten minutes while it lasts.
        let later = Timestamp(T + WARN_EVERY_MS);
        assert!(matches!(
            w.sample(&m("a"), Timestamp(later.0 - 600_000), later),
            Some(ClockNews::Off(_))
        ));
        // The clock is fixed: once the old samples leave the window, it is back.
        let fixed = Timestamp(later.0 + WINDOW_MS + 1);
        assert_eq!(
            w.sample(&m("a"), Timestamp(fixed.0 - 50), fixed),
            Some(ClockNews::Back(Offset { ms: 50, members: 1 }))
        );
        assert_eq!(w.sample(&m("b"), Timestamp(fixed.0 - 80), fixed), None);
    }

    #[test]
    fn one_wrong_peer_of_two_does_not_make_this_clock_wrong_and_is_named() {
        let mut w = ClockWatch::default();
        let now = Timestamp(T);
        assert_eq!(w.sample(&m("ok"), Timestamp(T - 40), now), None);
        assert_eq!(w.sample(&m("fast"), Timestamp(T + 600_000), now), None);
        assert_eq!(w.offset(now).unwrap().ms, 40);
        assert_eq!(w.members(now), vec![(m("fast"), 600_000), (m("ok"), -40)]);
        w.retain(|x| x.as_str() != "fast");
        assert_eq!(w.members(now), vec![(m("ok"), -40)]);
        assert_eq!(w.offset(Timestamp(T + WINDOW_MS + 1)), None);
    }

    #[test]
    fn time_refused_messages_are_verified_at_most_every_ten_seconds_per_member() {
        let mut w = ClockWatch::default();
        let now = Timestamp(T);
        assert!(w.may_witness(&m("a"), now));
        assert!(!w.may_witness(&m("a"), Timestamp(T + 9_999)));
        assert!(w.may_witness(&m("b"), now));
        assert!(w.may_witness(&m("a"), Timestamp(T + 10_000)));
    }
}
