//! The replicator's in-memory view of the journal: which documents are
//! dirty, which are in flight, and which entries still wait for their write.
//!
//! Invariants:
//! - a document is never in flight twice: `take_batch` skips keys in flight,
//!   and entries that arrive for them wait in `dirty` for the next round;
//! - entries are handed out with every seq they cover, so the journal can
//!   remove exactly those and nothing newer;
//! - memory is bounded: the reader stops reading the journal while
//!   `is_full()`; everything else stays on disk.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashSet};

use crate::journal::{now_ms, DocKey, Entry};

/// Document bytes the queue may hold before it stops reading the journal.
const MAX_HELD_BYTES: usize = 16 * 1024 * 1024;

/// The changes of one document not yet copied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dirty {
    pub seqs: Vec<i64>,
    /// When the newest of them was recorded (for lag).
    pub newest_at_ms: i64,
    /// Every change was the insert of a new document: Atlas most likely
    /// lacks it, so it can be sent as an insert.
    pub insert_only: bool,
    /// The document as the newest change left it, if that entry carries it
    /// (a successful insert, or a full sync's proven scan): then the local
    /// state need not be read back.
    pub doc: Option<Vec<u8>>,
}

/// Documents of one namespace to copy together.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub ns: String,
    pub items: Vec<(DocKey, Dirty)>,
}

impl Batch {
    pub fn seqs(&self) -> Vec<i64> {
        self.items
            .iter()
            .flat_map(|(_, d)| d.seqs.iter().copied())
            .collect()
    }
}

#[derive(Debug)]
pub struct Queue {
    dirty: HashMap<DocKey, Dirty>,
    order: VecDeque<DocKey>,
    in_flight: HashSet<DocKey>,
    /// Entries whose local write has not finished, by seq.
    pub waiting: BTreeMap<i64, Entry>,
    /// The seqs in `waiting`, by document.
    waiting_by_key: HashMap<DocKey, Vec<i64>>,
    /// Waiting seqs for whose document a newer entry was seen: when they
    /// are released, their bytes no longer describe the newest state (the
    /// writes finished out of order).
    superseded: HashSet<i64>,
    /// Copied documents to copy once more when their time comes, with their
    /// entries still pending (see `replicate::copy_batch`).
    deferred: Vec<(Instant, Vec<(DocKey, Dirty)>)>,
    /// Highest seq read from the journal.
    pub cursor: i64,
    max_dirty: usize,
    /// Since when `dirty` has not been empty.
    dirty_since: Option<Instant>,
    /// Bytes of documents held in `dirty`.
    held_bytes: usize,
    /// Namespaces with a batch in flight that must be copied one batch at
    /// a time (capped collections, see `replicate::dispatch`): no other
    /// batch of theirs is taken until it finishes.
    pub one_at_a_time: HashSet<String>,
}

/// When an entry's change was journaled (`at_ms`, wall-clock ms), as an
/// `Instant`: its time in the intent log and the journal's writer thread
/// counts as waiting. A clock that went back counts as now; ages over a
/// second count as a second (all that matters is whether a batch is ripe).
fn made_at(at_ms: i64) -> Instant {
    let now = Instant::now();
    let age = Duration::from_millis((now_ms() - at_ms).clamp(0, 1000) as u64);
    now.checked_sub(age).unwrap_or(now)
}

impl Queue {
    pub fn new(max_dirty: usize) -> Queue {
        Queue {
            dirty: HashMap::default(),
            order: VecDeque::new(),
            in_flight: HashSet::default(),
            waiting: BTreeMap::new(),
            waiting_by_key: HashMap::default(),
            superseded: HashSet::default(),
            deferred: Vec::new(),
            cursor: 0,
            max_dirty,
            dirty_since: None,
            held_bytes: 0,
            one_at_a_time: HashSet::default(),
        }
    }

    /// Whether nothing is queued, waiting or in flight.
    pub fn is_idle(&self) -> bool {
        self.dirty.is_empty()
            && self.in_flight.is_empty()
            && self.waiting.is_empty()
            && self.deferred.is_empty()
    }

    /// Copied documents to copy again from `due` on, keeping their seqs (their
    /// entries stay pending until that copy); their bytes are dropped, the
    /// copy reads them back.
    pub fn defer(&mut self, items: Vec<(DocKey, Dirty)>, due: Instant) {
        if !items.is_empty() {
            let items: Vec<_> = items
                .into_iter()
                .map(|(k, d)| (k, Dirty { doc: None, ..d }))
                .collect();
            self.deferred.push((due, items));
        }
    }

    /// Queues the deferred documents whose time has come, to be read back
    /// from local (not sent from bytes kept since).
    pub fn release_due(&mut self, now: Instant) {
        if self.deferred.iter().all(|(due, _)| *due > now) {
            return;
        }
        let (ready, later): (Vec<_>, Vec<_>) =
            self.deferred.drain(..).partition(|(due, _)| *due <= now);
        self.deferred = later;
        for (_, items) in ready {
            let fresh = items
                .into_iter()
                .map(|(k, d)| {
                    let again = Dirty {
                        doc: None,
                        insert_only: false,
                        ..d
                    };
                    (k, again)
                })
                .collect();
            self.readmit(fresh);
        }
    }

    /// Gives back the capacity a backlog grew the containers to (hash maps
    /// keep it after they empty); only while idle.
    pub fn shrink(&mut self) {
        if self.is_idle() {
            self.dirty.shrink_to_fit();
            self.order.shrink_to_fit();
            self.in_flight.shrink_to_fit();
            self.waiting_by_key.shrink_to_fit();
            self.superseded.shrink_to_fit();
        }
    }

    /// Records a ready entry; entries of one document come in seq order, so
    /// the last one's bytes (or their absence) describe the newest state.
    pub fn admit(&mut self, key: DocKey, seq: i64, at_ms: i64, insert: bool, doc: Option<Vec<u8>>) {
        self.supersede(&key, seq);
        self.dirty_since.get_or_insert_with(|| made_at(at_ms));
        let d = self.dirty.entry(key.clone()).or_insert_with(|| {
            self.order.push_back(key);
            Dirty {
                insert_only: insert,
                ..Dirty::default()
            }
        });
        d.seqs.push(seq);
        d.newest_at_ms = d.newest_at_ms.max(at_ms);
        d.insert_only &= insert;
        self.held_bytes -= d.doc.as_ref().map_or(0, Vec::len);
        self.held_bytes += doc.as_ref().map_or(0, Vec::len);
        d.doc = doc;
    }

    /// Puts a batch's items back (their copy could not be recorded). Entries
    /// of the same document that arrived meanwhile are newer: their bytes
    /// (or their absence) stay.
    pub fn readmit(&mut self, items: Vec<(DocKey, Dirty)>) {
        // They wait from now, as new company, not from their old writes.
        if !items.is_empty() {
            self.dirty_since.get_or_insert_with(Instant::now);
        }
        for (k, d) in items {
            if let Some(newer) = self.dirty.get_mut(&k) {
                newer.seqs.extend(d.seqs);
                newer.insert_only &= d.insert_only;
                newer.newest_at_ms = newer.newest_at_ms.max(d.newest_at_ms);
                continue;
            }
            for s in d.seqs {
                self.admit(k.clone(), s, d.newest_at_ms, d.insert_only, d.doc.clone());
            }
        }
    }

    /// An entry of `key` with `seq` was seen: older waiting entries of that
    /// document no longer carry its newest state.
    fn supersede(&mut self, key: &DocKey, seq: i64) {
        if let Some(older) = self.waiting_by_key.get(key) {
            self.superseded
                .extend(older.iter().copied().filter(|w| *w < seq));
        }
    }

    /// Holds an entry whose local write has not finished.
    pub fn wait(&mut self, e: Entry) {
        self.supersede(&e.key, e.seq);
        self.waiting_by_key
            .entry(e.key.clone())
            .or_default()
            .push(e.seq);
        self.waiting.insert(e.seq, e);
    }

    /// Moves a waiting entry to dirty once its write is done, with the
    /// bytes its mark stored (read after it was seen ready), unless a newer
    /// entry of the document was seen meanwhile.
    pub fn release_waiting(&mut self, seq: i64, doc: Option<Vec<u8>>) {
        let Some(e) = self.waiting.remove(&seq) else {
            return;
        };
        if let Some(seqs) = self.waiting_by_key.get_mut(&e.key) {
            seqs.retain(|s| *s != seq);
            if seqs.is_empty() {
                self.waiting_by_key.remove(&e.key);
            }
        }
        let doc = doc.filter(|_| !self.superseded.remove(&seq));
        self.admit(e.key, e.seq, e.at_ms, e.insert, doc);
    }

    /// Document bytes the queue may still take before it is full.
    pub fn room_bytes(&self) -> usize {
        MAX_HELD_BYTES.saturating_sub(self.held_bytes)
    }

    pub fn is_full(&self) -> bool {
        self.dirty.len() + self.waiting.len() + self.deferred_len() >= self.max_dirty
            || self.held_bytes >= MAX_HELD_BYTES
    }

    /// How many documents wait in `deferred` (they count against `max_dirty`).
    fn deferred_len(&self) -> usize {
        self.deferred.iter().map(|(_, items)| items.len()).sum()
    }

    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    /// How long the dirty documents have waited (`None` if none waits):
    /// since the write of the first one admitted while none waited was
    /// journaled.
    pub fn dirty_age(&self) -> Option<Duration> {
        self.dirty_since.map(|t| t.elapsed())
    }

    /// Up to `max` dirty documents of one namespace, none of them in flight;
    /// marks them in flight.
    pub fn take_batch(&mut self, max: usize) -> Option<Batch> {
        let scan = self.order.len().min(max.saturating_mul(4).max(1024));
        let mut ns: Option<String> = None;
        let mut items = Vec::new();
        let mut keep = Vec::new();
        for _ in 0..scan {
            let Some(k) = self.order.pop_front() else {
                break;
            };
            let eligible = items.len() < max
                && !self.in_flight.contains(&k)
                && ns.as_ref().is_none_or(|n| *n == k.ns)
                && !self.one_at_a_time.contains(&k.ns);
            if eligible {
                ns.get_or_insert_with(|| k.ns.clone());
                let d = self.dirty.remove(&k).unwrap_or_default();
                self.held_bytes -= d.doc.as_ref().map_or(0, Vec::len);
                self.in_flight.insert(k.clone());
                items.push((k, d));
            } else {
                keep.push(k);
            }
        }
        for k in keep.into_iter().rev() {
            self.order.push_front(k);
        }
        if self.dirty.is_empty() {
            self.dirty_since = None;
        }
        ns.map(|ns| Batch { ns, items })
    }

    /// The batch's documents are no longer in flight.
    pub fn finish(&mut self, keys: impl IntoIterator<Item = DocKey>) {
        for k in keys {
            self.in_flight.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, id: u8) -> DocKey {
        DocKey {
            ns: ns.into(),
            id: vec![id],
        }
    }

    #[test]
    fn a_namespace_copied_one_batch_at_a_time_waits_for_its_batch_in_flight() {
        let mut q = Queue::new(100);
        for i in 1..=4u8 {
            q.admit(key("db.capped", i), i64::from(i), 10, true, None);
        }
        q.admit(key("db.other", 9), 9, 10, true, None);
        let first = q.take_batch(2).unwrap();
        assert_eq!(first.ns, "db.capped");
        let ids = |b: &Batch| b.items.iter().map(|(k, _)| k.id[0]).collect::<Vec<_>>();
        assert_eq!(ids(&first), vec![1, 2], "in the order journaled");
        q.one_at_a_time.insert(first.ns.clone());
        // Its next batch waits; other namespaces go on.
        let other = q.take_batch(2).unwrap();
        assert_eq!(other.ns, "db.other");
        assert!(q.take_batch(2).is_none());
        q.finish(first.items.iter().map(|(k, _)| k.clone()));
        q.one_at_a_time.remove("db.capped");
        assert_eq!(ids(&q.take_batch(2).unwrap()), vec![3, 4]);
    }

    #[test]
    fn a_drained_queue_gives_back_its_capacity() {
        let mut q = Queue::new(10_000);
        for i in 0..2000u16 {
            let k = DocKey {
                ns: "a.b".into(),
                id: i.to_le_bytes().to_vec(),
            };
            q.admit(k, i64::from(i) + 1, 10, true, Some(vec![0; 8]));
        }
        let b = q.take_batch(2000).unwrap();
        q.shrink();
        assert!(q.in_flight.capacity() >= 2000, "not idle: nothing shrinks");
        assert!(!q.is_idle());
        q.finish(b.items.iter().map(|(k, _)| k.clone()));
        assert!(q.is_idle());
        assert!(q.dirty.capacity() >= 2000 && q.in_flight.capacity() >= 2000);
        q.shrink();
        assert_eq!((q.dirty.capacity(), q.in_flight.capacity()), (0, 0));
        assert_eq!(q.order.capacity(), 0);
    }

    #[test]
    fn a_deferred_copy_keeps_its_seqs_and_comes_back_read_from_local() {
        let mut q = Queue::new(100);
        q.admit(key("a.b", 1), 7, 10, true, Some(vec![1, 2]));
        let b = q.take_batch(10).unwrap();
        q.finish(b.items.iter().map(|(k, _)| k.clone()));
        let due = Instant::now() + Duration::from_millis(50);
        q.defer(b.items, due);
        assert!(!q.is_idle(), "a deferred copy is pending work");
        assert_eq!(q.deferred_len(), 1);
        q.release_due(Instant::now());
        assert!(q.take_batch(10).is_none(), "not before it is due");
        q.release_due(due);
        let again = q.take_batch(10).unwrap();
        let (k, d) = &again.items[0];
        assert_eq!((k, &d.seqs), (&key("a.b", 1), &vec![7]));
        assert_eq!((d.doc.as_ref(), d.insert_only), (None, false));
    }

    #[test]
    fn a_key_is_never_in_flight_twice() {
        let mut q = Queue::new(100);
        q.admit(key("a.b", 1), 1, 10, false, None);
        let b1 = q.take_batch(10).unwrap();
        assert_eq!(b1.items.len(), 1);
        q.admit(key("a.b", 1), 2, 20, false, None);
        assert!(q.take_batch(10).is_none(), "key 1 is in flight");
        q.finish(b1.items.iter().map(|(k, _)| k.clone()));
        let b2 = q.take_batch(10).unwrap();
        assert_eq!(b2.items[0].1.seqs, vec![2]);
    }

    #[test]
    fn entries_of_one_key_merge_and_batches_keep_one_namespace() {
        let mut q = Queue::new(100);
        q.admit(key("a.b", 1), 1, 10, false, None);
        q.admit(key("a.c", 2), 2, 11, false, None);
        q.admit(key("a.b", 1), 3, 12, false, None);
        q.admit(key("a.b", 3), 4, 13, false, None);
        let b = q.take_batch(10).unwrap();
        assert_eq!(b.ns, "a.b");
        assert_eq!(b.items.len(), 2);
        assert_eq!(
            b.items[0].1,
            Dirty {
                seqs: vec![1, 3],
                newest_at_ms: 12,
                insert_only: false,
                doc: None
            }
        );
        assert_eq!(b.seqs(), vec![1, 3, 4]);
        let b = q.take_batch(10).unwrap();
        assert_eq!(b.ns, "a.c");
        assert!(q.take_batch(10).is_none());
    }

    #[test]
    fn batch_size_is_respected_and_order_kept() {
        let mut q = Queue::new(100);
        for i in 0..5 {
            q.admit(key("a.b", i), i as i64, 0, false, None);
        }
        let b = q.take_batch(2).unwrap();
        assert_eq!(
            b.items.iter().map(|(k, _)| k.id[0]).collect::<Vec<_>>(),
            vec![0, 1]
        );
        let b = q.take_batch(2).unwrap();
        assert_eq!(
            b.items.iter().map(|(k, _)| k.id[0]).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(!q.is_full());
    }

    #[test]
    fn dirty_age_starts_with_the_first_dirty_document_and_ends_when_none_waits() {
        let mut q = Queue::new(100);
        assert!(q.dirty_age().is_none());
        q.admit(key("a.b", 1), 1, 0, false, None);
        assert!(q.dirty_age().is_some());
        q.take_batch(10).unwrap();
        assert!(q.dirty_age().is_none());
    }

    #[test]
    fn dirty_age_counts_from_when_the_write_was_journaled() {
        let mut q = Queue::new(100);
        q.admit(key("a.b", 1), 1, now_ms() - 30, false, None);
        assert!(q.dirty_age().unwrap() >= Duration::from_millis(30));
        // Later company does not make the oldest younger.
        q.admit(key("a.b", 2), 2, now_ms(), false, None);
        assert!(q.dirty_age().unwrap() >= Duration::from_millis(30));
        q.take_batch(10).unwrap();

        // A wall clock that went back: the entry counts as new.
        q.admit(key("a.b", 3), 3, now_ms() + 60_000, false, None);
        assert!(q.dirty_age().unwrap() < Duration::from_millis(30));
        let b = q.take_batch(10).unwrap();

        // Put back after a failed copy: it waits again from now.
        q.readmit(b.items);
        assert!(q.dirty_age().unwrap() < Duration::from_millis(30));
    }

    #[test]
    fn readmitted_items_come_back() {
        let mut q = Queue::new(100);
        q.admit(key("a.b", 1), 7, 0, true, None);
        let b = q.take_batch(5).unwrap();
        q.finish(b.items.iter().map(|(k, _)| k.clone()));
        q.readmit(b.items);
        let again = q.take_batch(5).unwrap();
        assert_eq!(again.seqs(), vec![7]);
        assert!(again.items[0].1.insert_only, "the insert hint survives");
    }

    #[test]
    fn a_readmitted_item_keeps_the_state_of_entries_that_came_meanwhile() {
        let mut q = Queue::new(100);
        q.admit(key("a.b", 1), 7, 0, false, Some(vec![1]));
        let b = q.take_batch(5).unwrap();
        // While the batch was out, an update of the document (no bytes).
        q.admit(key("a.b", 1), 9, 0, false, None);
        q.finish(b.items.iter().map(|(k, _)| k.clone()));
        q.readmit(b.items);
        let again = q.take_batch(5).unwrap();
        let mut seqs = again.seqs();
        seqs.sort();
        assert_eq!(seqs, vec![7, 9]);
        assert_eq!(again.items[0].1.doc, None, "the older bytes must not win");
    }

    #[test]
    fn the_newest_change_decides_the_bytes_and_bytes_are_counted() {
        let mut q = Queue::new(100);
        q.admit(key("a.b", 1), 1, 0, true, Some(vec![1; 10]));
        assert_eq!(q.held_bytes, 10);
        q.admit(key("a.b", 1), 2, 0, true, None);
        assert_eq!(
            q.held_bytes, 0,
            "a newer change without bytes drops the older bytes"
        );
        q.admit(key("a.b", 2), 3, 0, true, Some(vec![2; 5]));
        let b = q.take_batch(5).unwrap();
        assert_eq!(b.items[0].1.doc, None);
        assert_eq!(b.items[1].1.doc, Some(vec![2; 5]));
        assert_eq!(q.held_bytes, 0);
    }

    fn entry(id: u8, seq: i64) -> Entry {
        Entry {
            seq,
            key: key("a.b", id),
            owner: "o".into(),
            ready: false,
            at_ms: 0,
            insert: true,
            doc: None,
        }
    }

    #[test]
    fn a_released_entry_keeps_its_bytes_unless_a_newer_change_was_seen() {
        let mut q = Queue::new(100);
        q.wait(entry(1, 5));
        q.release_waiting(5, Some(vec![5]));
        assert_eq!(q.take_batch(5).unwrap().items[0].1.doc, Some(vec![5]));

        // Write 7 finished before write 6 on the same document: 6's bytes
        // may be older than what the server holds.
        q.wait(entry(2, 6));
        q.admit(key("a.b", 2), 7, 0, false, None);
        q.release_waiting(6, Some(vec![6]));
        let b = q.take_batch(5).unwrap();
        assert_eq!(b.items[0].1.seqs, vec![7, 6]);
        assert_eq!(b.items[0].1.doc, None, "read back instead");

        // Two waiting writes of one document, the newer released first.
        q.wait(entry(3, 8));
        q.wait(entry(3, 9));
        q.release_waiting(9, Some(vec![9]));
        q.release_waiting(8, Some(vec![8]));
        assert_eq!(q.take_batch(5).unwrap().items[0].1.doc, None);
        assert!(q.waiting.is_empty() && q.waiting_by_key.is_empty() && q.superseded.is_empty());
    }

    #[test]
    fn a_document_is_insert_only_while_every_change_was_an_insert() {
        let mut q = Queue::new(100);
        q.admit(key("a.b", 1), 1, 0, true, None);
        q.admit(key("a.b", 2), 2, 0, true, None);
        q.admit(key("a.b", 2), 3, 0, false, None);
        let b = q.take_batch(5).unwrap();
        assert!(b.items[0].1.insert_only);
        assert!(!b.items[1].1.insert_only);
    }
}
