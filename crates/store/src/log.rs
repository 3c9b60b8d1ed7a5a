//! Append-only files of checksummed frames, for what the store keeps for ever (the audit
//! log and the archive) and for its newest notifications: kept out of sled, whose memory
//! grows with every key it holds.
//!
//! A frame is `length (u32, little-endian) | CRC-32 of the payload (u32, little-endian) |
//! payload`. A log is only appended to. How much of it is committed is not the file's own
//! length but a length the store records in sled, in the transaction that commits the
//! state: bytes past it (zeros written ahead, or the frames of a commit that did not
//! finish) are never read, and the next commit writes over them.
//!
//! The file is extended ahead of the frames, a mebibyte of zeros at a time, so that an
//! append overwrites blocks the file already has and its sync writes data only: a sync
//! that also changes the file's size costs a journal commit on top (measured: twice the
//! whole store commit).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::StoreError;

/// The largest payload a frame carries.
pub(crate) const MAX_FRAME: usize = 64 * 1024 * 1024;
/// How far ahead of the frames the file is extended with zeros.
const AHEAD: u64 = 1024 * 1024;

pub(crate) struct Log {
    path: PathBuf,
    file: File,
    /// Committed length: what a reader sees.
    len: u64,
    /// The file's length on disk: the committed frames, then zeros or unfinished frames.
    allocated: u64,
}

fn io_error(path: &Path, e: io::Error) -> StoreError {
    StoreError::Log {
        file: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Log {
    /// Opens (or creates) the log at `path`, of which `committed` bytes were committed.
    /// Bytes past that are never read; a file shorter than that lost committed frames,
    /// which is an error.
    pub(crate) fn open(path: &Path, committed: u64) -> Result<Log, StoreError> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            // What is past the committed length is never read; it stays until written over.
            .truncate(false)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        if !existed {
            // The new file's name must be durable before any commit names it.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            let dir = dir.unwrap_or(Path::new("."));
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(dir, e))?;
        }
        let on_disk = file.metadata().map_err(|e| io_error(path, e))?.len();
        if on_disk < committed {
            return Err(StoreError::Log {
                file: path.display().to_string(),
                reason: format!(
                    "{on_disk} bytes on disk, but {committed} were committed: frames were lost"
                ),
            });
        }
        Ok(Log {
            path: path.to_owned(),
            file,
            len: committed,
            allocated: on_disk,
        })
    }

    /// Writes `payloads` as frames at the committed end (over anything an unfinished
    /// commit left there) and makes them durable; returns the length the log has once they
    /// are committed. They are not visible to readers until [`Log::committed`] says so.
    pub(crate) fn append(&mut self, payloads: &[Vec<u8>]) -> Result<u64, StoreError> {
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| p.len() + 8).sum());
        for p in payloads {
            frame(&mut buf, p);
        }
        let end = self.len + buf.len() as u64;
        if end > self.allocated {
            self.extend_to(end.next_multiple_of(AHEAD) + AHEAD);
        }
        self.file
            .write_all_at(&buf, self.len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error(&self.path, e))?;
        self.allocated = self.allocated.max(end);
        Ok(self.len + buf.len() as u64)
    }

    /// The frames appended up to `len` are committed.
    pub(crate) fn committed(&mut self, len: u64) {
        self.len = len;
    }

    /// Writes zeros from the file's end up to `to`. Best effort: on a full disk the file
    /// goes back to its length before, so that the zeros do not take the room the frames
    /// need, and the frames extend it themselves as far as the disk allows.
    fn extend_to(&mut self, to: u64) {
        let zeros = vec![0u8; 64 * 1024];
        // What the file holds now: frames written past a failed extension count too.
        let before = match self.file.metadata() {
            Ok(m) => m.len(),
            Err(_) => return,
        };
        let mut at = before;
        while at < to {
            let n = (to - at).min(zeros.len() as u64) as usize;
            if self.file.write_all_at(&zeros[..n], at).is_err() {
                let _ = self.file.set_len(before);
                break;
            }
            at += n as u64;
        }
        if let Ok(m) = self.file.metadata() {
            self.allocated = m.len();
        }
    }

    /// Replaces the whole log with `payloads` and makes it durable; returns its length.
    /// For the notifications' turn, the store's migration and tests that tamper with a log.
    pub(crate) fn rewrite(&mut self, payloads: &[Vec<u8>]) -> Result<u64, StoreError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error(&self.path, e))?;
        (self.len, self.allocated) = (0, 0);
        let len = self.append(payloads)?;
        self.committed(len);
        Ok(len)
    }

    /// Every committed payload, oldest first.
    pub(crate) fn frames(&self) -> Result<Frames, StoreError> {
        let file = File::open(&self.path).map_err(|e| io_error(&self.path, e))?;
        Ok(Frames {
            path: self.path.clone(),
            reader: BufReader::with_capacity(256 * 1024, file.take(self.len)),
            offset: 0,
        })
    }

    /// The payload of the committed frame that starts at byte `offset`.
    pub(crate) fn read_at(&self, offset: u64) -> Result<Vec<u8>, StoreError> {
        let corrupt = |reason: String| StoreError::Log {
            file: self.path.display().to_string(),
            reason: format!("frame at byte {offset}: {reason}"),
        };
        let mut head = [0u8; 8];
        if offset + 8 > self.len {
            return Err(corrupt(format!("past the committed length {}", self.len)));
        }
        self.file
            .read_exact_at(&mut head, offset)
            .map_err(|e| io_error(&self.path, e))?;
        let (len, crc) = header(&head).map_err(corrupt)?;
        if offset + 8 + len as u64 > self.len {
            return Err(corrupt(format!(
                "runs past the committed length {}",
                self.len
            )));
        }
        let mut payload = vec![0u8; len];
        self.file
            .read_exact_at(&mut payload, offset + 8)
            .map_err(|e| io_error(&self.path, e))?;
        if crc32fast::hash(&payload) != crc {
            return Err(corrupt(CRC_MISMATCH.into()));
        }
        Ok(payload)
    }

    /// The committed length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

fn frame(buf: &mut Vec<u8>, payload: &[u8]) {
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// The committed payloads of a log, read in order.
pub(crate) struct Frames {
    path: PathBuf,
    reader: BufReader<io::Take<File>>,
    offset: u64,
}

impl Frames {
    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Log {
            file: self.path.display().to_string(),
            reason: format!("frame at byte {}: {reason}", self.offset),
        }
    }
}

impl Iterator for Frames {
    type Item = Result<Vec<u8>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut head = [0u8; 8];
        match self.reader.read(&mut head[..1]) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(Err(io_error(&self.path, e))),
        }
        if let Err(e) = self.reader.read_exact(&mut head[1..]) {
            return Some(Err(self.corrupt(format!("cut short in its header: {e}"))));
        }
        let (len, crc) = match header(&head) {
            Ok(h) => h,
            Err(reason) => return Some(Err(self.corrupt(reason))),
        };
        let mut payload = vec![0u8; len];
        if let Err(e) = self.reader.read_exact(&mut payload) {
            return Some(Err(self.corrupt(format!("cut short in its payload: {e}"))));
        }
        if crc32fast::hash(&payload) != crc {
            return Some(Err(self.corrupt(CRC_MISMATCH.into())));
        }
        self.offset += 8 + len as u64;
        Some(Ok(payload))
    }
}

const CRC_MISMATCH: &str = "its checksum does not match";

/// A frame header's payload length and checksum.
fn header(head: &[u8; 8]) -> Result<(usize, u32), String> {
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if len > MAX_FRAME {
        return Err(format!("length {len} is over the limit of {MAX_FRAME}"));
    }
    Ok((len, crc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(log: &Log) -> Vec<Vec<u8>> {
        log.frames().unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn frames_past_the_committed_length_are_never_read_and_a_short_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut log = Log::open(&path, 0).unwrap();
        let len = log.append(&[b"one".to_vec(), b"two".to_vec()]).unwrap();
        assert!(
            payloads(&log).is_empty(),
            "not visible before it is committed"
        );
        log.committed(len);
        assert_eq!(payloads(&log), [b"one".to_vec(), b"two".to_vec()]);
        // Frames of a commit that failed are written over by the next one.
        let _ = log.append(&[b"failed".to_vec()]).unwrap();
        let next = log.append(&[b"next".to_vec()]).unwrap();
        log.committed(next);
        assert_eq!(
            payloads(&log),
            [b"one".to_vec(), b"two".to_vec(), b"next".to_vec()]
        );
        // A commit that wrote its frames and never recorded them: not read after a reopen,
        // and written over by the next commit.
        let _ = log.append(&[b"three".to_vec()]).unwrap();
        drop(log);
        let mut log = Log::open(&path, next).unwrap();
        assert_eq!(
            payloads(&log),
            [b"one".to_vec(), b"two".to_vec(), b"next".to_vec()]
        );
        let four = log.append(&[b"four".to_vec()]).unwrap();
        log.committed(four);
        assert_eq!(
            payloads(&log),
            [
                b"one".to_vec(),
                b"two".to_vec(),
                b"next".to_vec(),
                b"four".to_vec()
            ]
        );
        assert!(
            std::fs::metadata(&path).unwrap().len() > four,
            "the file is extended ahead of its frames"
        );
        drop(log);
        // Committed frames that are gone are an error that names the file.
        let on_disk = std::fs::metadata(&path).unwrap().len();
        let err = Log::open(&path, on_disk + 1).err().unwrap().to_string();
        assert!(err.contains("x.log") && err.contains("were lost"), "{err}");
    }

    #[test]
    fn a_damaged_frame_is_reported_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut log = Log::open(&path, 0).unwrap();
        let len = log.append(&[b"one".to_vec(), b"two".to_vec()]).unwrap();
        log.committed(len);
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[len as usize - 1] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let log = Log::open(&path, len).unwrap();
        let got: Vec<_> = log.frames().unwrap().collect();
        assert_eq!(got[0].as_ref().unwrap(), b"one");
        let err = got[1].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("frame at byte 11") && err.contains("checksum"),
            "{err}"
        );
    }
}
