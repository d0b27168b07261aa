//! The write clock: when may the replicator trust the bytes an insert
//! stored, instead of reading the document back from local?
//!
//! An insert's entry carries the document as the server stored it. Those
//! bytes are the document's current state only if no other write to it
//! finished after the insert did. Seq order cannot tell: a write whose
//! intent came first may finish after the insert, and intents from other
//! processes get their seqs when they are moved, not when they are written.
//! So every process of a data directory counts, in a file they all map
//! (`write-clock`), the finished writes per document, in 2^20 buckets
//! by hash of the document key:
//!
//! - a write adds one to its documents' buckets after it finished and
//!   before its intents are marked ready;
//! - an insert reads its bucket before it is sent; if, once it finished and
//!   counted itself, the bucket moved by more than its own one, another
//!   write finished meanwhile and the bytes are dropped;
//! - otherwise the bytes are stamped with the bucket's value, and the
//!   replicator sends them only if the bucket still holds that value. If it
//!   does not, it reads the document back.
//!
//! A write that finishes after that check has an entry that is not ready
//! yet, so the replicator copies the document again after it. Two documents
//! sharing a bucket only cost a read-back. Without the mapping, no bytes are
//! carried at all.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use xxhash_rust::xxh3::xxh3_64;

use super::DocKey;

const BUCKETS: usize = 1 << 20;
const BYTES: usize = BUCKETS * 4;

/// Marks bytes stamped with a bucket value (BSON documents end in 0x00).
const STAMPED: u8 = 0xA5;

pub struct WriteClock {
    map: Option<Map>,
}

struct Map {
    ptr: *mut AtomicU32,
}

// The mapping is shared memory of atomics, valid until dropped.
unsafe impl Send for Map {}
unsafe impl Sync for Map {}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from a successful mmap of `BYTES` bytes.
        unsafe {
            libc::munmap(self.ptr.cast(), BYTES);
        }
    }
}

impl WriteClock {
    /// Maps `dir/write-clock`, creating it. If that fails, carried bytes
    /// are never trusted (every copy reads back).
    pub fn open(dir: &Path) -> WriteClock {
        let map = Self::map(dir)
            .map_err(|e| tracing::warn!("write clock unavailable, inserts will be read back: {e}"))
            .ok();
        WriteClock { map }
    }

    fn map(dir: &Path) -> std::io::Result<Map> {
        use std::os::fd::AsRawFd;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join("write-clock"))?;
        if f.metadata()?.len() < BYTES as u64 {
            f.set_len(BYTES as u64)?;
        }
        // SAFETY: a shared read-write mapping of a file of at least `BYTES`
        // bytes; the mapping outlives the file handle.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Map { ptr: ptr.cast() })
    }

    fn bucket(&self, key: &DocKey) -> Option<&AtomicU32> {
        let map = self.map.as_ref()?;
        let mut h = xxh3_64(key.ns.as_bytes());
        h ^= xxh3_64(&key.id).rotate_left(17);
        let i = (h as usize) & (BUCKETS - 1);
        // SAFETY: `i < BUCKETS`, inside the mapping; AtomicU32 has the
        // alignment of u32 and the mapping is page-aligned.
        Some(unsafe { &*map.ptr.add(i) })
    }

    /// Read before an insert is sent.
    pub fn before(&self, key: &DocKey) -> Option<u32> {
        self.bucket(key).map(|b| b.load(Ordering::SeqCst))
    }

    /// Counts a finished write of `key`; with `before` (the insert's own
    /// reading), returns the stamp for its bytes if no other write
    /// finished in between.
    pub fn finished(&self, key: &DocKey, before: Option<u32>) -> Option<u32> {
        let now = self
            .bucket(key)?
            .fetch_add(1, Ordering::SeqCst)
            .wrapping_add(1);
        (before?.wrapping_add(1) == now).then_some(now)
    }

    /// Whether bytes stamped `stamp` are still the document's state.
    pub fn current(&self, key: &DocKey, stamp: u32) -> bool {
        self.bucket(key)
            .is_some_and(|b| b.load(Ordering::SeqCst) == stamp)
    }
}

/// Appends the stamp to a document's bytes, for the journal to carry.
pub fn stamp(mut doc: Vec<u8>, stamp: u32) -> Vec<u8> {
    doc.extend_from_slice(&stamp.to_le_bytes());
    doc.push(STAMPED);
    doc
}

/// Splits carried bytes into the document and its stamp. Bytes without a
/// stamp (a full sync's scan, proven current another way; journals of
/// earlier versions) come back with `None`.
pub fn unstamp(bytes: &[u8]) -> (&[u8], Option<u32>) {
    match bytes.split_last() {
        Some((&STAMPED, rest)) if rest.len() >= 4 => {
            let (doc, s) = rest.split_at(rest.len() - 4);
            (
                doc,
                Some(u32::from_le_bytes(s.try_into().expect("4 bytes"))),
            )
        }
        _ => (bytes, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8) -> DocKey {
        DocKey {
            ns: "db.c".into(),
            id: vec![id],
        }
    }

    #[test]
    fn bytes_are_trusted_only_while_no_other_write_of_the_document_finished() {
        let dir = std::env::temp_dir().join(format!("dms-clock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = WriteClock::open(&dir);
        // Another process of the same directory maps the same counters.
        let b = WriteClock::open(&dir);
        let k = key(1);

        let before = a.before(&k);
        let s = a.finished(&k, before).expect("nothing else finished");
        assert!(a.current(&k, s) && b.current(&k, s));
        // A write elsewhere finishes afterwards: the bytes are stale.
        b.finished(&k, None);
        assert!(!a.current(&k, s));

        // One that finishes while the insert runs: no stamp at all.
        let before = a.before(&k);
        b.finished(&k, None);
        assert_eq!(a.finished(&k, before), None);

        // Other documents do not disturb (unless they share a bucket).
        let before = a.before(&k);
        let s = a.finished(&k, before).unwrap();
        b.finished(&key(2), None);
        assert!(a.current(&k, s));

        let doc = vec![5, 0, 0, 0, 0];
        assert_eq!(unstamp(&stamp(doc.clone(), 7)), (&doc[..], Some(7)));
        assert_eq!(unstamp(&doc), (&doc[..], None), "a plain BSON document");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
