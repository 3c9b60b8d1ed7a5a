//! The newest notifications, in two logs that take turns: kept out of sled, whose memory
//! holds every key it has, so that ten thousand notifications cost the node a few hundred
//! kilobytes of offsets instead of megabytes of cached pages.
//!
//! Notifications are appended to the current log. Once it holds twice as many frames as
//! are kept, a commit writes the newest ones into the other log instead, and the same sled
//! transaction that commits the state makes that one current: until then the current log
//! is untouched, so a crash while the other is written loses nothing. Each frame is a
//! [`Notice`], which carries its own seq; the seqs in a log are consecutive.

use std::collections::VecDeque;
use std::path::Path;

use aiguillage_wire::codec::encode;

use crate::log::Log;
use crate::{Heads, Notice, StoreError, decode};

/// The newest notifications kept; older ones are dropped as new ones come.
pub(crate) const KEPT: usize = 10_000;
const FILES: [&str; 2] = ["notices.0.log", "notices.1.log"];

pub(crate) struct Notices {
    logs: [Log; 2],
    /// Which of `logs` the committed heads name.
    current: usize,
    /// Where each kept notification's frame starts in the current log, oldest first.
    offsets: VecDeque<u64>,
    /// Frames in the current log, kept or not.
    frames: usize,
    /// The seq of the newest notification (0 for none).
    last: u64,
}

/// Notifications written by a commit that has not committed yet.
pub(crate) struct Pending {
    /// The frames went into the other log, which holds exactly `offsets`.
    switched: bool,
    offsets: Vec<u64>,
    last: u64,
}

impl Notices {
    pub(crate) fn open(dir: &Path, heads: &Heads) -> Result<Notices, StoreError> {
        let current = usize::from(heads.notices_file == 1);
        // The other log's content is never read: it is written over when its turn comes.
        let committed = |i: usize| if i == current { heads.notices_len } else { 0 };
        let mut notices = Notices {
            logs: [
                Log::open(&dir.join(FILES[0]), committed(0))?,
                Log::open(&dir.join(FILES[1]), committed(1))?,
            ],
            current,
            offsets: VecDeque::new(),
            frames: 0,
            last: 0,
        };
        let log = &notices.logs[current];
        let mut offset = 0;
        let mut newest = None;
        for frame in log.frames()? {
            let frame = frame?;
            notices.offsets.push_back(offset);
            if notices.offsets.len() > KEPT {
                notices.offsets.pop_front();
            }
            offset += 8 + frame.len() as u64;
            notices.frames += 1;
            newest = Some(frame);
        }
        if let Some(frame) = newest {
            let n: Notice = decode(FILES[current].as_bytes(), &frame)?;
            notices.last = n.seq;
        }
        Ok(notices)
    }

    /// The seq of the newest notification (0 for none).
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    /// The seq of the oldest notification kept (`last() + 1` for none).
    fn first(&self) -> u64 {
        self.last + 1 - self.offsets.len() as u64
    }

    /// Writes `new` (numbered from `last() + 1`) durably, and sets in `heads` where they
    /// are once committed. Nothing changes here until [`Notices::committed`].
    pub(crate) fn write(
        &mut self,
        new: &[Notice],
        heads: &mut Heads,
    ) -> Result<Option<Pending>, StoreError> {
        if new.is_empty() {
            return Ok(None);
        }
        let last = new.last().expect("not empty").seq;
        let frames: Vec<Vec<u8>> = new.iter().map(encode).collect();
        if self.frames + frames.len() <= 2 * KEPT {
            let log = &mut self.logs[self.current];
            let offsets = starts(log.len(), &frames);
            heads.notices_len = log.append(&frames)?;
            return Ok(Some(Pending {
                switched: false,
                offsets,
                last,
            }));
        }
        // The newest KEPT of those held and the new ones, into the other log.
        let from_new = frames.len().min(KEPT);
        let from_old = (KEPT - from_new).min(self.offsets.len());
        let log = &self.logs[self.current];
        let mut kept = Vec::with_capacity(from_old + from_new);
        for &o in self.offsets.iter().skip(self.offsets.len() - from_old) {
            kept.push(log.read_at(o)?);
        }
        kept.extend(frames.into_iter().skip(new.len() - from_new));
        let offsets = starts(0, &kept);
        let other = 1 - self.current;
        heads.notices_len = self.logs[other].rewrite(&kept)?;
        heads.notices_file = other as u8;
        Ok(Some(Pending {
            switched: true,
            offsets,
            last,
        }))
    }

    /// What `write` wrote is committed.
    pub(crate) fn committed(&mut self, p: Pending, heads: &Heads) {
        if p.switched {
            self.current = 1 - self.current;
            self.frames = p.offsets.len();
            self.offsets = p.offsets.into();
        } else {
            self.frames += p.offsets.len();
            self.offsets.extend(p.offsets);
            while self.offsets.len() > KEPT {
                self.offsets.pop_front();
            }
        }
        self.logs[self.current].committed(heads.notices_len);
        self.last = p.last;
    }

    fn get(&self, seq: u64) -> Result<Notice, StoreError> {
        let i = (seq - self.first()) as usize;
        let frame = self.logs[self.current].read_at(self.offsets[i])?;
        decode(FILES[self.current].as_bytes(), &frame)
    }

    /// The notifications after `after`, oldest first, at most `limit`.
    pub(crate) fn after(&self, after: u64, limit: usize) -> Result<Vec<Notice>, StoreError> {
        let from = after.saturating_add(1).max(self.first());
        (from..=self.last)
            .take(limit)
            .map(|s| self.get(s))
            .collect()
    }

    /// The newest notifications, newest first, at most `limit`.
    pub(crate) fn latest(&self, limit: usize) -> Result<Vec<Notice>, StoreError> {
        (self.first()..=self.last)
            .rev()
            .take(limit)
            .map(|s| self.get(s))
            .collect()
    }

    /// For a migration: the log holds exactly `old`, and `heads` says so.
    pub(crate) fn replace(&mut self, old: &[Vec<u8>], heads: &mut Heads) -> Result<(), StoreError> {
        let first = old.len().saturating_sub(KEPT);
        let old = &old[first..];
        heads.notices_len = self.logs[0].rewrite(old)?;
        heads.notices_file = 0;
        self.current = 0;
        self.offsets = starts(0, old).into();
        self.frames = old.len();
        self.last = match old.last() {
            Some(f) => decode::<Notice>(FILES[0].as_bytes(), f)?.seq,
            None => 0,
        };
        Ok(())
    }
}

/// Where each of `frames` starts when they are written one after another from `at`.
fn starts(mut at: u64, frames: &[Vec<u8>]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| {
            let start = at;
            at += 8 + f.len() as u64;
            start
        })
        .collect()
}
