//! Capture: the write path. Runs every Collection method on the local MongoDB
//! and records, before each write, which documents it may change.
//!
//! Invariants:
//! - the journal intent for every document a write may touch is committed
//!   *before* the write is sent to the local server; the intent is marked
//!   ready after the write finished, whatever its outcome;
//! - a write whose filter does not pin one `_id` is pinned first: the engine
//!   looks up the matching `_id`s and restricts the write to them, so a
//!   concurrent insert can never be changed without an intent of its own;
//!   upserts get their `_id` chosen up front for the same reason;
//! - nothing here waits on Atlas;
//! - with sync disabled, or for an excluded collection, calls go straight to
//!   the driver: no lookup, no journal.

mod bulk;
mod canon;
mod indexes;
mod payload;
mod read;
mod stream;
mod write;

use canon::canonical_id;

pub use payload::Payload;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Bson, Document, RawBson, RawDocumentBuf};
use mongodb::{Client, Collection};
use tokio::sync::Notify;

use crate::config::Config;
use crate::error::SyncError;
use crate::journal::{clock, DocKey, Journal};
use crate::observe::Metrics;

/// The write path of one engine.
pub struct Writer {
    pub(crate) local: Client,
    pub(crate) journal: Option<Arc<Journal>>,
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: Arc<Metrics>,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Open `find`/`aggregate` cursors JS reads batch by batch.
    cursors: read::Cursors,
    /// Open change streams (`watch()`).
    streams: stream::Streams,
    /// Whether a collection's default collation compares strings other than
    /// byte by byte, by namespace, and when that was read.
    collations: std::sync::Mutex<std::collections::HashMap<String, (bool, std::time::Instant)>>,
}

/// How long a collection's default collation is taken as read. A collation
/// is set when a collection is created; only a drop and re-create within
/// this time could change it under the cache.
const COLLATION_TTL: Duration = Duration::from_secs(10);

/// The intents of a write while it runs. A call dropped before its write
/// ended (its `socketTimeoutMS` ran out, see `Engine::write`) drops this
/// with it, which settles them as after a write of unknown outcome: the
/// write is counted in the write clock, and its intents are marked ready
/// after `SYNC_TAKEOVER_GRACE_MS`, in case it was sent and still lands. A
/// write that ends takes them back with [`Unsettled::settle`].
struct Unsettled {
    parts: Option<(Arc<Journal>, Vec<i64>, Vec<clock::Slot>)>,
    grace: Duration,
}

impl Unsettled {
    fn settle(mut self) -> (Vec<i64>, Vec<clock::Slot>) {
        self.parts
            .take()
            .map(|(_, seqs, slots)| (seqs, slots))
            .unwrap_or_default()
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        let Some((j, seqs, slots)) = self.parts.take() else {
            return;
        };
        for s in slots {
            j.clock().finished(s, None);
        }
        // Without a runtime the process is ending: the entries are then a
        // dead owner's, released after the same grace by the next engine.
        if let (false, Ok(rt)) = (seqs.is_empty(), tokio::runtime::Handle::try_current()) {
            let wait = self.grace;
            rt.spawn(async move {
                tokio::time::sleep(wait).await;
                j.mark_ready(seqs);
            });
        }
    }
}

/// One collection as the write path sees it.
pub(crate) struct Target<'a> {
    pub w: &'a Writer,
    pub db: &'a str,
    pub coll: &'a str,
    pub ns: String,
    pub replicated: bool,
}

impl<'a> Target<'a> {
    pub fn raw(&self) -> Collection<RawDocumentBuf> {
        self.w.local.database(self.db).collection(self.coll)
    }

    pub fn docs(&self) -> Collection<Document> {
        self.w.local.database(self.db).collection(self.coll)
    }

    pub fn key(&self, id: &Bson) -> DocKey {
        key_of(&self.ns, id)
    }

    /// The `_id` `filter` pins ([`pinned_id`]), asking whether a collation
    /// applies only when that `_id` holds a string.
    pub async fn pinned(
        &self,
        filter: &Document,
        per_call: Option<&mongodb::options::Collation>,
    ) -> Result<Option<Bson>, SyncError> {
        let id = pinned_id(filter, false);
        if id.as_ref().is_some_and(has_string) && self.collated(per_call).await? {
            return Ok(None);
        }
        Ok(id)
    }

    /// Whether a filter's string `_id` may match another spelling: the
    /// call's collation is not `simple`, or without one, the collection's
    /// default collation is not. Then the write looks the stored `_id` up,
    /// so one document always has one journal key.
    pub async fn collated(
        &self,
        per_call: Option<&mongodb::options::Collation>,
    ) -> Result<bool, SyncError> {
        if let Some(c) = per_call {
            return Ok(c.locale != "simple");
        }
        let now = std::time::Instant::now();
        if let Some((c, at)) = self
            .w
            .collations
            .lock()
            .expect("collations poisoned")
            .get(&self.ns)
        {
            if now.duration_since(*at) < COLLATION_TTL {
                return Ok(*c);
            }
        }
        use futures_util::TryStreamExt;
        let specs: Result<Vec<_>, mongodb::error::Error> = async {
            self.w
                .local
                .database(self.db)
                .list_collections()
                .filter(doc! { "name": self.coll })
                .await?
                .try_collect()
                .await
        }
        .await;
        let (collated, kept) = match specs {
            Ok(specs) => match specs.first() {
                Some(spec) => {
                    let c = spec.options.collation.as_ref();
                    (c.is_some_and(|c| c.locale != "simple"), COLLATION_TTL)
                }
                // No collection yet: created simple by the write, unless
                // created otherwise first; kept briefly, so that is seen.
                None => (false, Duration::from_secs(1)),
            },
            // Not allowed to list collections (a role without the action),
            // or a failure: the lookup is right whatever the collation.
            Err(e) => {
                tracing::debug!("reading the collation of {} failed: {e}", self.ns);
                (true, Duration::from_secs(1))
            }
        };
        // Kept until `now + kept`: stored as if read `COLLATION_TTL - kept` ago.
        let at = now
            .checked_sub(COLLATION_TTL.saturating_sub(kept))
            .unwrap_or(now);
        self.w
            .collations
            .lock()
            .expect("collations poisoned")
            .insert(self.ns.clone(), (collated, at));
        Ok(collated)
    }

    /// Commits intents for `ids`, runs `op`, marks the intents ready.
    pub async fn journaled<T>(
        &self,
        ids: &[Bson],
        op: impl std::future::Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        let (seqs, slots) = self.intents(ids, false).await?;
        let unsettled = self.unsettled(seqs, slots);
        let out = op.await;
        let (seqs, slots) = unsettled.settle();
        if let Some(j) = &self.w.journal {
            // Counted before the marks: see `journal::clock`.
            for s in slots {
                j.clock().finished(s, None);
            }
            self.mark_ready(j, seqs, &out);
        }
        out
    }

    /// Holds the intents of a write while it runs; see [`Unsettled`].
    fn unsettled(&self, seqs: Vec<i64>, slots: Vec<clock::Slot>) -> Unsettled {
        Unsettled {
            parts: self.w.journal.clone().map(|j| (j, seqs, slots)),
            grace: Duration::from_millis(self.w.config.takeover_grace_ms),
        }
    }

    /// Marks the intents of a finished write ready. After an error that
    /// leaves its outcome unknown (the connection failed after the write may
    /// have been sent), the server may still apply it: marked at once, the
    /// replicator could copy the state before it and nothing would copy it
    /// again. The mark then waits `SYNC_TAKEOVER_GRACE_MS`, the time the
    /// engine allows a write sent by a lost connection to land. If the
    /// process ends first, the intents are its dead owner's, released after
    /// the same grace.
    fn mark_ready<T>(&self, j: &Arc<Journal>, seqs: Vec<i64>, out: &Result<T, SyncError>) {
        match out {
            Err(e) if e.outcome_unknown() && !seqs.is_empty() => {
                let j = j.clone();
                let wait = Duration::from_millis(self.w.config.takeover_grace_ms);
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    j.mark_ready(seqs);
                });
            }
            _ => j.mark_ready(seqs),
        }
    }

    /// [`Target::journaled`] for inserts of the new documents `docs` (one
    /// per id): the intents carry an insert hint, and each document that the
    /// server stored is handed to the journal with its bytes, so the
    /// replicator can send it without reading it back (stamped by the write
    /// clock, which tells whether another write of it finished since).
    pub async fn journaled_inserts<T>(
        &self,
        ids: &[Bson],
        docs: &[RawDocumentBuf],
        ordered: bool,
        op: impl std::future::Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        let (seqs, slots) = self.intents(ids, true).await?;
        let Some(j) = &self.w.journal else {
            return op.await;
        };
        let before: Vec<u32> = slots.iter().map(|s| j.clock().before(*s)).collect();
        let unsettled = self.unsettled(seqs, slots);
        let out = op.await;
        let (seqs, slots) = unsettled.settle();
        if matches!(&out, Err(e) if e.outcome_unknown()) {
            for s in slots {
                j.clock().finished(s, None);
            }
            self.mark_ready(j, seqs, &out);
            return out;
        }
        let stored = inserted(&out, docs.len(), ordered);
        let done = seqs
            .into_iter()
            .zip(slots.into_iter().zip(before))
            .zip(docs.iter().zip(stored))
            .map(|((seq, (slot, before)), (d, ok))| {
                let stamp = j.clock().finished(slot, Some(before));
                let bytes = match (ok, stamp) {
                    (true, Some(t)) if !server_fills(d.as_bytes()) => {
                        Some(clock::stamp(d.as_bytes().to_vec(), t))
                    }
                    _ => None,
                };
                (seq, bytes)
            })
            .collect();
        j.mark_inserted(done);
        out
    }

    /// Commits intents for `ids` (none if the collection is not replicated);
    /// returns them with the write-clock slots of their documents.
    async fn intents(
        &self,
        ids: &[Bson],
        inserts: bool,
    ) -> Result<(Vec<i64>, Vec<clock::Slot>), SyncError> {
        match (&self.w.journal, self.replicated) {
            (Some(j), true) if !ids.is_empty() => {
                let keys: Vec<DocKey> = ids.iter().map(|id| self.key(id)).collect();
                let slots = keys.iter().map(|k| j.clock().slot(k)).collect();
                let seqs = if inserts {
                    j.append_inserts(keys).await?
                } else {
                    j.append(keys).await?
                };
                self.w
                    .metrics
                    .captured
                    .fetch_add(ids.len() as u64, Ordering::Relaxed);
                Ok((seqs, slots))
            }
            _ => Ok((Vec::new(), Vec::new())),
        }
    }
}

/// Whether the server stores other bytes than these for an insert: it
/// replaces an empty `Timestamp(0, 0)` in a top-level field other than
/// `_id` with its current time, which Atlas would do with its own time.
/// Such a document is read back instead of sent as it was given. Walks the
/// top-level elements only; anything it does not expect counts as `true`.
pub(crate) fn server_fills(doc: &[u8]) -> bool {
    let mut at = 4;
    loop {
        let Some(&kind) = doc.get(at) else {
            return true;
        };
        if kind == 0 {
            return false;
        }
        let Some(nul) = doc
            .get(at + 1..)
            .and_then(|r| r.iter().position(|&b| b == 0))
        else {
            return true;
        };
        let key = &doc[at + 1..at + 1 + nul];
        let v = at + 2 + nul;
        if kind == 0x11 && key != b"_id" && doc.get(v..v + 8) == Some(&[0u8; 8][..]) {
            return true;
        }
        match value_len(doc, kind, v) {
            Some(n) => at = v + n,
            None => return true,
        }
    }
}

/// The length of the value of BSON type `kind` at `doc[v..]`, from its
/// fixed size or its length prefix; `None` for an unknown type or a value
/// that does not fit in `doc`.
pub(crate) fn value_len(doc: &[u8], kind: u8, v: usize) -> Option<usize> {
    let int = |o: usize| -> Option<usize> {
        let b = doc.get(v + o..v + o + 4)?;
        usize::try_from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    let cstr = |from: usize| doc.get(from..)?.iter().position(|&b| b == 0).map(|n| n + 1);
    let n = match kind {
        0x01 | 0x09 | 0x11 | 0x12 => 8,
        0x02 | 0x0D | 0x0E => 4 + int(0)?,
        0x03 | 0x04 | 0x0F => int(0)?,
        0x05 => 5 + int(0)?,
        0x06 | 0x0A | 0x7F | 0xFF => 0,
        0x07 => 12,
        0x08 => 1,
        0x0B => {
            let a = cstr(v)?;
            a + cstr(v + a)?
        }
        0x0C => 4 + int(0)? + 12,
        0x10 => 4,
        0x13 => 16,
        _ => return None,
    };
    (v + n <= doc.len()).then_some(n)
}

/// Which of `n` inserted documents the server stored: all on success; on
/// an insertMany error, all but the failed ones (and, when ordered, none
/// after the first failure); none on any other error.
fn inserted<T>(out: &Result<T, SyncError>, n: usize, ordered: bool) -> Vec<bool> {
    use mongodb::error::ErrorKind;
    match out {
        Ok(_) => vec![true; n],
        Err(SyncError::Mongo(e)) => match e.kind.as_ref() {
            ErrorKind::InsertMany(im) => {
                let failed: Vec<usize> =
                    im.write_errors.iter().flatten().map(|w| w.index).collect();
                let cut = if ordered {
                    failed.iter().min().copied().unwrap_or(n)
                } else {
                    n
                };
                (0..n).map(|i| i < cut && !failed.contains(&i)).collect()
            }
            _ => vec![false; n],
        },
        Err(_) => vec![false; n],
    }
}

/// The journal key of a document: its namespace and its `_id` in canonical
/// form, so every spelling of one numeric `_id` keys one document.
/// Written with the raw document writer: the same bytes as serializing
/// `{_id: value}` with serde, which for an ObjectId goes through its hex
/// spelling and back; this runs for every document of every write.
pub fn key_of(ns: &str, id: &Bson) -> DocKey {
    let id = RawBson::try_from(canonical_id(id)).expect("an _id always encodes");
    let mut key = RawDocumentBuf::new();
    key.append("_id", id);
    DocKey {
        ns: ns.to_string(),
        id: key.into_bytes(),
    }
}

/// The `_id` a filter pins by plain equality (`{_id: v}` or `{_id: {$eq: v}}`).
///
/// Where a collation other than `simple` applies (`collated`, see
/// [`Target::collated`]), an `_id` holding a string is not pinned as
/// written: `"abc"` may match the stored `"ABC"`, whose journal key would
/// then be missed; the write looks the real `_id` up first.
pub fn pinned_id(filter: &Document, collated: bool) -> Option<Bson> {
    let Some(v) = filter.get("_id") else {
        // `{$and: [..., {_id: v}, ...]}` (what query builders emit) pins
        // `v` as well: it is the one document it can match, and the one an
        // upsert inserts.
        let Some(Bson::Array(clauses)) = filter.get("$and") else {
            return None;
        };
        return clauses.iter().find_map(|c| match c {
            Bson::Document(c) => pinned_id(c, collated),
            _ => None,
        });
    };
    let id = match v {
        Bson::RegularExpression(_) => return None,
        Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
            match (d.len(), d.get("$eq"), d.get("$in")) {
                (1, Some(v), _) => v.clone(),
                // `$in` of one value is that value, for a match and for
                // the `_id` an upsert inserts.
                (1, _, Some(Bson::Array(a))) if a.len() == 1 => match &a[0] {
                    Bson::RegularExpression(_) => return None,
                    // `{$in: [{$gt: 1}]}`: the server refuses it; not pinned,
                    // so nothing is journaled for it.
                    Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
                        return None
                    }
                    v => v.clone(),
                },
                _ => return None,
            }
        }
        v => v.clone(),
    };
    if collated && has_string(&id) {
        None
    } else {
        Some(id)
    }
}

/// Whether a value holds a string a collation compares (at any depth).
fn has_string(v: &Bson) -> bool {
    match v {
        Bson::String(_) | Bson::Symbol(_) => true,
        Bson::Document(d) => d.values().any(has_string),
        Bson::Array(a) => a.iter().any(has_string),
        _ => false,
    }
}

/// `filter` narrowed to documents whose `_id` matches `id_clause`.
pub fn restrict(filter: &Document, id_clause: Bson) -> Document {
    if filter.contains_key("_id") {
        doc! { "$and": [filter.clone(), { "_id": id_clause }] }
    } else {
        let mut f = filter.clone();
        f.insert("_id", id_clause);
        f
    }
}

/// A fresh `_id` for an upsert whose filter does not pin one.
pub fn new_id() -> Bson {
    Bson::ObjectId(ObjectId::new())
}

impl Writer {
    pub fn new(
        local: Client,
        journal: Option<Arc<Journal>>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
    ) -> Writer {
        Writer {
            local,
            journal,
            config,
            metrics,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            cursors: read::Cursors::default(),
            streams: stream::Streams::default(),
            collations: Default::default(),
        }
    }

    pub(crate) fn target<'a>(
        &'a self,
        db: &'a str,
        coll: &'a str,
    ) -> Result<Target<'a>, SyncError> {
        check_name("database", db)?;
        check_name("collection", coll)?;
        Ok(Target {
            w: self,
            db,
            coll,
            ns: format!("{db}.{coll}"),
            replicated: self.journal.is_some() && self.config.is_replicated(db, coll),
        })
    }

    /// Runs one write method; `op` is the driver's method name.
    pub async fn write(
        &self,
        db: &str,
        coll: &str,
        op: &str,
        p: Payload,
    ) -> Result<Document, SyncError> {
        let _g = self.enter();
        if op == "dropDatabase" {
            check_name("database", db)?;
            return indexes::drop_database(self, db, p).await;
        }
        let t = self.target(db, coll)?;
        match op {
            "insertOne" => write::insert_one(&t, p).await,
            "insertMany" => write::insert_many(&t, p).await,
            "updateOne" | "replaceOne" => write::update_one(&t, p, op == "replaceOne").await,
            "updateMany" => write::update_many(&t, p).await,
            "deleteOne" => write::delete(&t, p, false).await,
            "deleteMany" => write::delete(&t, p, true).await,
            "findOneAndUpdate" | "findOneAndReplace" | "findOneAndDelete" => {
                write::find_one_and(&t, p, op).await
            }
            "bulkWrite" => bulk::bulk_write(&t, p).await,
            "createIndexes" => indexes::create_indexes(&t, p).await,
            "dropIndexes" => indexes::drop_indexes(&t, p).await,
            "drop" => indexes::drop_collection(&t, p).await,
            "rename" => indexes::rename_collection(&t, p).await,
            "create" => indexes::create_collection(&t, p).await,
            other => Err(SyncError::invalid(format!(
                "unknown write method '{other}'"
            ))),
        }
    }

    /// Runs one read method on the local server. Documents come back as
    /// concatenated BSON, exactly as the server sent them; `find`,
    /// `aggregate` and `getMore` put `{cursor: id}` before them (see `read`).
    pub async fn read(
        &self,
        db: &str,
        coll: &str,
        op: &str,
        p: Payload,
    ) -> Result<Vec<u8>, SyncError> {
        let _g = self.enter();
        // Methods of a database, not of one collection.
        match op {
            "listCollections" => {
                check_name("database", db)?;
                return read::list_collections(&self.local, db, p).await;
            }
            "command" => {
                check_name("database", db)?;
                let replicated = self.journal.is_some();
                return read::run_command(&self.local, db, p, replicated).await;
            }
            "watch" => {
                check_name("database", db)?;
                let coll = (!coll.is_empty()).then_some(coll);
                if let Some(c) = coll {
                    check_name("collection", c)?;
                }
                return self.streams.open(&self.local, db, coll, p).await;
            }
            "changeNext" => return self.streams.next(p).await,
            "changeClose" => return self.streams.close(p),
            // `db.aggregate` (`{ aggregate: 1 }`): no collection.
            "aggregate" if coll.is_empty() => {
                check_name("database", db)?;
                return read::aggregate(
                    read::Aggregated::Database(self.local.database(db)),
                    self,
                    p,
                )
                .await;
            }
            // An open cursor's batches, whichever collection (or database) it reads.
            "getMore" => return read::get_more(self, p).await,
            "killCursor" => return read::kill_cursor(self, p),
            _ => {}
        }
        let t = self.target(db, coll)?;
        match op {
            "find" => read::find(&t, p).await,
            "findOne" => read::find_one(&t, p).await,
            "countDocuments" => read::count_documents(&t, p).await,
            "estimatedDocumentCount" => read::estimated_document_count(&t, p).await,
            "aggregate" => read::aggregate(read::Aggregated::Collection(&t.raw()), self, p).await,
            "distinct" => read::distinct(&t, p).await,
            "listIndexes" => indexes::list_indexes(&t, p).await,
            other => Err(SyncError::invalid(format!("unknown read method '{other}'"))),
        }
    }

    /// Forgets what was read of `ns`'s default collation (the collection
    /// was dropped).
    pub(crate) fn forget_collation(&self, ns: &str) {
        self.collations
            .lock()
            .expect("collations poisoned")
            .remove(ns);
    }

    fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self)
    }

    /// Waits until no call is running (used by `close`).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct InFlight<'a>(&'a Writer);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

fn check_name(what: &str, name: &str) -> Result<(), SyncError> {
    let bad = name.is_empty()
        || name.contains('\0')
        || (what == "database" && name.contains(['/', '\\', '.', ' ', '"', '$']))
        || (what == "collection" && name.starts_with("system."))
        || (what == "collection" && name.contains('$'));
    if bad {
        return Err(SyncError::invalid(format!("invalid {what} name {name:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys written before the raw writer (with serde) must be the same
    /// bytes, or a document journaled by an older version gets a second key.
    #[test]
    fn keys_are_the_bytes_serde_wrote() {
        use mongodb::bson::spec::BinarySubtype;
        use mongodb::bson::{oid::ObjectId, Binary, DateTime, Regex, Timestamp};
        let ids = [
            Bson::ObjectId(ObjectId::new()),
            Bson::String("a\u{e9}b".into()),
            Bson::Int32(-7),
            Bson::Int64(1 << 40),
            Bson::Double(2.5),
            Bson::Double(f64::NAN),
            Bson::Decimal128("1.10".parse().unwrap()),
            Bson::Boolean(false),
            Bson::Null,
            Bson::MinKey,
            Bson::MaxKey,
            Bson::DateTime(DateTime::from_millis(1_700_000_000_123)),
            Bson::Timestamp(Timestamp {
                time: 5,
                increment: 6,
            }),
            Bson::Binary(Binary {
                subtype: BinarySubtype::Uuid,
                bytes: vec![7; 16],
            }),
            Bson::RegularExpression(Regex {
                pattern: "^a".into(),
                options: "i".into(),
            }),
            Bson::JavaScriptCode("f()".into()),
            Bson::Symbol("s".into()),
            Bson::Undefined,
            Bson::Document(doc! { "b": 1.0, "a": [ObjectId::new(), "x", { "n": 2i64 }] }),
            Bson::Array(vec![Bson::Int32(1), Bson::String("y".into())]),
        ];
        for id in ids {
            let serde = mongodb::bson::to_vec(&doc! { "_id": canonical_id(&id) }).unwrap();
            assert_eq!(key_of("db.c", &id).id, serde, "{id:?}");
        }
    }

    #[test]
    fn an_empty_timestamp_the_server_fills_is_seen() {
        use mongodb::bson::{rawdoc, Binary, Decimal128, Regex, Timestamp};
        let empty = Timestamp {
            time: 0,
            increment: 0,
        };
        let every = rawdoc! {
            "_id": empty, "d": 1.5, "s": "x", "o": { "t": empty }, "a": [empty],
            "b": Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![1, 2] },
            "oid": ObjectId::new(), "t": true, "dt": mongodb::bson::DateTime::now(), "n": RawBson::Null,
            "re": Regex { pattern: "a".into(), options: "i".into() }, "i": 1, "l": 2i64,
            "dec": Decimal128::from_bytes([0; 16]), "ts": Timestamp { time: 1, increment: 0 },
            "min": RawBson::MinKey, "max": RawBson::MaxKey, "js": RawBson::JavaScriptCode("f()".into()),
        };
        assert!(
            !server_fills(every.as_bytes()),
            "only _id and nested empty timestamps"
        );
        let mut top = every.clone();
        top.append("late", empty);
        assert!(server_fills(top.as_bytes()));
        assert!(
            server_fills(&every.as_bytes()[..20]),
            "a cut document is not trusted"
        );
    }

    #[test]
    fn pinned_ids() {
        assert_eq!(pinned_id(&doc! {"_id": 5}, false), Some(Bson::Int32(5)));
        assert_eq!(
            pinned_id(&doc! {"_id": {"$eq": "a"}}, false),
            Some(Bson::String("a".into()))
        );
        assert_eq!(pinned_id(&doc! {"_id": {"$in": [1, 2]}}, false), None);
        assert_eq!(
            pinned_id(&doc! {"_id": {"$in": [50]}}, false),
            Some(Bson::Int32(50))
        );
        assert_eq!(pinned_id(&doc! {"_id": {"$in": [{"$gt": 1}]}}, false), None);
        assert_eq!(
            pinned_id(&doc! {"$and": [{"x": 1}, {"_id": 200}]}, false),
            Some(Bson::Int32(200))
        );
        assert_eq!(pinned_id(&doc! {"$and": [{"x": 1}]}, false), None);
        assert_eq!(pinned_id(&doc! {"$or": [{"_id": 1}]}, false), None);
        assert_eq!(
            pinned_id(&doc! {"_id": {"a": 1}}, false),
            Some(Bson::Document(doc! {"a": 1}))
        );
        assert_eq!(pinned_id(&doc! {"x": 1}, false), None);
        // A collation may match another spelling of a string: not pinned.
        assert_eq!(pinned_id(&doc! {"_id": "a"}, true), None);
        assert_eq!(pinned_id(&doc! {"_id": {"k": ["a"]}}, true), None);
        assert_eq!(pinned_id(&doc! {"_id": 5}, true), Some(Bson::Int32(5)));
        assert_eq!(pinned_id(&doc! {"_id": "a"}, false), Some(Bson::from("a")));
    }

    #[test]
    fn restriction_keeps_the_filter() {
        assert_eq!(
            restrict(&doc! {"x": 1}, Bson::Int32(3)),
            doc! {"x": 1, "_id": 3}
        );
        assert_eq!(
            restrict(&doc! {"_id": {"$gt": 1}}, Bson::Int32(3)),
            doc! {"$and": [{"_id": {"$gt": 1}}, {"_id": 3}]}
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("database", "bomba").is_ok());
        assert!(check_name("database", "a.b").is_err());
        assert!(check_name("collection", "").is_err());
        assert!(check_name("collection", "orders.items").is_ok());
    }
}
