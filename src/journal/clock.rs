//! The write clock: when may the replicator trust the bytes an insert
//! stored, instead of reading the document back from local?
//!
//! An insert's entry carries the document as the server stored it. Those
//! bytes are the document's current state only if no other write to it
//! finished after the insert did. Seq order cannot tell: a write whose
//! intent came first may finish after the insert, and intents from other
//! processes get their seqs when they are moved, not when they are written.
//! So every process of a data directory counts, in a file they all map
//! (`write-clock`), the finished writes per document, in 2^16 buckets
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
//! yet, so the replicator copies the document again after it. A write whose
//! process died before counting itself is counted by the replicator when it
//! releases that entry (its owner known dead), before it looks at any
//! stamp of the document again. Two documents
//! sharing a bucket only cost a read-back. Buckets hash the `_id` as the
//! server compares it (1, 1L and 1.0 are one document).
//!
//! The counters are not as durable as the stamps in the journal (a power
//! loss, a restored copy of the folder): the first word of the file is a
//! generation, renewed by an engine that opens while no other engine of the
//! directory lives, and stamps carry it, so older stamps are never trusted.
//! An engine that cannot map the file does not open (it could not count).

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use xxhash_rust::xxh3::xxh3_64;

use super::DocKey;

const BUCKETS: usize = 1 << 16;
/// Word 0 is the generation; buckets are words 1..=BUCKETS.
const BYTES: usize = (BUCKETS + 1) * 4;

/// Marks bytes stamped by the clock (BSON documents end in 0x00).
const STAMPED: u8 = 0xA5;

pub struct WriteClock {
    map: Map,
    generation: u32,
}

/// What an insert's bytes are stamped with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    generation: u32,
    count: u32,
}

struct Map {
    ptr: *mut AtomicU32,
}

/// A document's bucket, found once per write (`WriteClock::slot`).
#[derive(Debug, Clone, Copy)]
pub struct Slot(usize);

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
    /// Maps `dir/write-clock`, creating it; `alone`: no other engine of the
    /// directory lives, so the generation is renewed.
    pub fn open(dir: &Path, alone: bool) -> std::io::Result<WriteClock> {
        let map = Self::map(dir)?;
        // SAFETY: word 0 is inside the mapping.
        let word = unsafe { &*map.ptr };
        if alone {
            let old = word.load(Ordering::SeqCst);
            let mut g = rand::random::<u32>();
            while g == old {
                g = rand::random::<u32>();
            }
            word.store(g, Ordering::SeqCst);
        }
        let generation = word.load(Ordering::SeqCst);
        Ok(WriteClock { map, generation })
    }

    fn map(dir: &Path) -> std::io::Result<Map> {
        use std::os::fd::AsRawFd;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join("write-clock"))?;
        // Blocks allocated now: a store into a hole on a full disk would
        // kill the process (SIGBUS) instead of failing here.
        // SAFETY: a valid descriptor.
        let r = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, BYTES as libc::off_t) };
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(r));
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

    /// The bucket of `key`'s document.
    pub fn slot(&self, key: &DocKey) -> Slot {
        let mut h = xxh3_64(key.ns.as_bytes());
        h ^= match canonical_number(&key.id) {
            Some(n) => xxh3_64(&n),
            None => xxh3_64(&key.id),
        }
        .rotate_left(17);
        Slot(1 + ((h as usize) & (BUCKETS - 1)))
    }

    fn bucket(&self, slot: Slot) -> &AtomicU32 {
        // SAFETY: `1 <= slot.0 <= BUCKETS` (only `slot` makes one), inside
        // the mapping; AtomicU32 has the alignment of u32 and the mapping
        // is page-aligned.
        unsafe { &*self.map.ptr.add(slot.0) }
    }

    /// Read before an insert is sent.
    pub fn before(&self, slot: Slot) -> u32 {
        self.bucket(slot).load(Ordering::SeqCst)
    }

    /// Counts a finished write of the document in `slot`; with `before` (an
    /// insert's own reading), returns the stamp for its bytes if no other
    /// write finished in between.
    pub fn finished(&self, slot: Slot, before: Option<u32>) -> Option<Stamp> {
        let now = self
            .bucket(slot)
            .fetch_add(1, Ordering::SeqCst)
            .wrapping_add(1);
        (before?.wrapping_add(1) == now).then_some(Stamp {
            generation: self.generation,
            count: now,
        })
    }

    /// Counts a write of `key`'s document that may have finished without
    /// counting itself (its process died in between), so bytes stamped
    /// before it are not trusted.
    pub fn bump(&self, key: &DocKey) {
        self.bucket(self.slot(key)).fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a write of every document: after a collection was dropped, no
    /// bytes stamped before are trusted (the documents are gone locally).
    pub fn bump_all(&self) {
        for slot in 1..=BUCKETS {
            self.bucket(Slot(slot)).fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Whether bytes stamped `stamp` are still the document's state.
    pub fn current(&self, key: &DocKey, stamp: Stamp) -> bool {
        stamp.generation == self.generation
            && self.bucket(self.slot(key)).load(Ordering::SeqCst) == stamp.count
    }
}

/// A numeric `_id` as the server compares it, by value (1, 1L and 1.0 are
/// one document), read straight from the key's bytes (`{_id: <value>}`):
/// this runs for every document of every write. `None`: not a number.
/// Keys are canonical now (`capture::key_of`), so one value has one key
/// anyway; this keeps Int32, Int64 and Double keys in the buckets where
/// earlier versions put them, for journals they wrote and for an old and a
/// new process sharing the clock during a rolling restart.
fn canonical_number(key: &[u8]) -> Option<[u8; 9]> {
    let value = key.get(9..)?;
    if key.get(5..9)? != b"_id\0" {
        return None;
    }
    let int = |i: i64| {
        let mut out = [1u8; 9];
        out[1..].copy_from_slice(&i.to_le_bytes());
        Some(out)
    };
    match key[4] {
        0x10 => int(i32::from_le_bytes(value.get(..4)?.try_into().ok()?) as i64),
        0x12 => int(i64::from_le_bytes(value.get(..8)?.try_into().ok()?)),
        0x01 => {
            let d = f64::from_le_bytes(value.get(..8)?.try_into().ok()?);
            if d.fract() == 0.0 && d.abs() < 9.0e15 {
                int(d as i64)
            } else {
                let mut out = [2u8; 9];
                out[1..].copy_from_slice(&d.to_bits().to_le_bytes());
                Some(out)
            }
        }
        _ => None,
    }
}

/// Appends the stamp to a document's bytes, for the journal to carry.
pub fn stamp(mut doc: Vec<u8>, stamp: Stamp) -> Vec<u8> {
    doc.extend_from_slice(&stamp.generation.to_le_bytes());
    doc.extend_from_slice(&stamp.count.to_le_bytes());
    doc.push(STAMPED);
    doc
}

/// Splits carried bytes into the document and its stamp. Bytes without a
/// stamp (a full sync's scan, proven current another way; journals of
/// earlier versions) come back with `None`.
pub fn unstamp(bytes: &[u8]) -> (&[u8], Option<Stamp>) {
    match bytes.split_last() {
        Some((&STAMPED, rest)) if rest.len() >= 8 => {
            let (doc, s) = rest.split_at(rest.len() - 8);
            let word = |r: &[u8]| u32::from_le_bytes(r.try_into().expect("4 bytes"));
            let stamp = Stamp {
                generation: word(&s[..4]),
                count: word(&s[4..]),
            };
            (doc, Some(stamp))
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

    fn num_key(id: mongodb::bson::Bson) -> DocKey {
        crate::capture::key_of("db.c", &id)
    }

    #[test]
    fn bytes_are_trusted_only_while_no_other_write_of_the_document_finished() {
        let dir = std::env::temp_dir().join(format!("dms-clock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = WriteClock::open(&dir, true).unwrap();
        // Another process of the same directory maps the same counters.
        let b = WriteClock::open(&dir, false).unwrap();
        let k = key(1);

        let before = a.before(a.slot(&k));
        let s = a
            .finished(a.slot(&k), Some(before))
            .expect("nothing else finished");
        assert!(a.current(&k, s) && b.current(&k, s));
        // A write elsewhere finishes afterwards: the bytes are stale.
        b.finished(b.slot(&k), None);
        assert!(!a.current(&k, s));

        // One that finishes while the insert runs: no stamp at all.
        let before = a.before(a.slot(&k));
        b.finished(b.slot(&k), None);
        assert_eq!(a.finished(a.slot(&k), Some(before)), None);

        // A write whose process died before counting itself is counted
        // when its entry is released: the bytes are no longer trusted.
        let before = a.before(a.slot(&k));
        let s = a.finished(a.slot(&k), Some(before)).unwrap();
        b.bump(&k);
        assert!(!a.current(&k, s));

        // Other documents do not disturb (unless they share a bucket).
        let before = a.before(a.slot(&k));
        let s = a.finished(a.slot(&k), Some(before)).unwrap();
        b.finished(b.slot(&key(2)), None);
        assert!(a.current(&k, s));

        // The same number as another BSON type is the same document.
        let long = num_key(mongodb::bson::Bson::Int64(5));
        let before = a.before(a.slot(&long));
        let s = a.finished(a.slot(&long), Some(before)).unwrap();
        b.finished(b.slot(&num_key(mongodb::bson::Bson::Int32(5))), None);
        assert!(
            !a.current(&long, s),
            "an update by {{_id: 5}} counts for 5L"
        );
        let s = a
            .finished(a.slot(&long), Some(a.before(a.slot(&long))))
            .unwrap();
        b.finished(b.slot(&num_key(mongodb::bson::Bson::Double(5.0))), None);
        assert!(!a.current(&long, s), "and one by {{_id: 5.0}}");
        let s = a
            .finished(a.slot(&long), Some(a.before(a.slot(&long))))
            .unwrap();
        b.finished(b.slot(&num_key(mongodb::bson::Bson::Double(5.5))), None);
        let five = mongodb::bson::Bson::String("5".into());
        b.finished(b.slot(&num_key(five)), None);
        assert!(a.current(&long, s), "5.5 and \"5\" are other documents");

        // An engine opening alone (after a crash, a restore) renews the
        // generation: no stamp from before is trusted.
        let before = a.before(a.slot(&k));
        let s = a.finished(a.slot(&k), Some(before)).unwrap();
        let c = WriteClock::open(&dir, true).unwrap();
        assert!(!c.current(&k, s));

        let doc = vec![5, 0, 0, 0, 0];
        assert_eq!(unstamp(&stamp(doc.clone(), s)), (&doc[..], Some(s)));
        assert_eq!(unstamp(&doc), (&doc[..], None), "a plain BSON document");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
