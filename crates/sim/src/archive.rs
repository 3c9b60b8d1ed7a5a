//! The records that left the cores' memory, kept on disk the way a node's store archives
//! them: one anonymous temporary file for the whole run (gone when the simulator exits), and
//! in memory only where each member's records start and how long they are.
//!
//! A long run retires hundreds of thousands of projects and jobs; held as bytes in memory
//! they would be most of the simulator's peak. They survive a simulated crash like a store
//! does, and the summary reads them back with the live state.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use aiguillage_core::StateKey;

/// Written to the file once this much is pending.
const FLUSH_AT: usize = 1 << 20;

pub struct Archive {
    file: File,
    /// Bytes already in the file.
    written: u64,
    /// Bytes after `written`, not yet in the file.
    pending: Vec<u8>,
    /// Per member: each record's key, offset and length.
    index: Vec<Vec<(StateKey, u64, u32)>>,
}

impl Archive {
    pub fn new(members: usize) -> io::Result<Archive> {
        Ok(Archive {
            file: tempfile::tempfile()?,
            written: 0,
            pending: Vec::new(),
            index: (0..members).map(|_| Vec::new()).collect(),
        })
    }

    /// Keeps `records`, which left member `m`'s core.
    pub fn keep(&mut self, m: usize, records: Vec<(StateKey, Vec<u8>)>) -> io::Result<()> {
        for (key, bytes) in records {
            let len = u32::try_from(bytes.len())
                .map_err(|_| io::Error::other("an archived record over 4 GiB"))?;
            let at = self.written + self.pending.len() as u64;
            self.pending.extend_from_slice(&bytes);
            self.index[m].push((key, at, len));
        }
        if self.pending.len() >= FLUSH_AT {
            self.file.write_all_at(&self.pending, self.written)?;
            self.written += self.pending.len() as u64;
            self.pending.clear();
        }
        Ok(())
    }

    /// Records member `m` archived, in the order they left.
    pub fn of(&self, m: usize) -> impl Iterator<Item = io::Result<(&StateKey, Vec<u8>)>> + '_ {
        self.index[m].iter().map(|(key, at, len)| {
            let mut bytes = vec![0; *len as usize];
            if *at >= self.written {
                let start = (*at - self.written) as usize;
                bytes.copy_from_slice(&self.pending[start..start + *len as usize]);
            } else {
                self.file.read_exact_at(&mut bytes, *at)?;
            }
            Ok((key, bytes))
        })
    }

    /// Records archived in all.
    pub fn len(&self) -> usize {
        self.index.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiguillage_wire::ProjectId;

    fn key(n: u32) -> StateKey {
        StateKey::Project(ProjectId::new(format!("p-{n}")).unwrap())
    }

    #[test]
    fn records_read_back_per_member_from_the_file_and_from_what_is_pending() {
        let mut a = Archive::new(2).unwrap();
        // Enough to reach the file, then a little more that stays pending.
        let big: Vec<(StateKey, Vec<u8>)> =
            (0..3).map(|n| (key(n), vec![n as u8; 400_000])).collect();
        a.keep(0, big).unwrap();
        a.keep(1, vec![(key(10), b"one".to_vec())]).unwrap();
        a.keep(0, vec![(key(3), b"last".to_vec())]).unwrap();
        assert!(a.written > 0 && !a.pending.is_empty());
        let zero: Vec<_> = a.of(0).map(Result::unwrap).collect();
        assert_eq!(zero.len(), 4);
        for (n, (k, bytes)) in zero.iter().take(3).enumerate() {
            assert_eq!(**k, key(n as u32));
            assert_eq!(*bytes, vec![n as u8; 400_000]);
        }
        assert_eq!(zero[3].1, b"last");
        let one: Vec<_> = a.of(1).map(Result::unwrap).collect();
        assert_eq!((one[0].0, one[0].1.as_slice()), (&key(10), &b"one"[..]));
        assert_eq!(a.len(), 5);
    }
}
