//! Full sync: every document of the chosen collections is put in the journal
//! (copy phase), then every Atlas-only document (extras phase), then the
//! replicator drains them (drain phase).
//!
//! Invariants:
//! - the checkpoint (collection, phase, last `_id`) is committed after each
//!   chunk; after a crash the scan resumes there, re-covering at most a
//!   chunk (re-marking a document dirty is harmless);
//! - one full sync runs per data directory: the checkpoint names the
//!   process running it, and is taken with a compare-and-set; starting one
//!   over the same collections returns the running one's id, over others is
//!   a conflict; one left unfinished by a process that stopped is carried on
//!   (by the next start over its collections, or by the next leader);
//! - a collection that was empty on Atlas when its copy began skips the
//!   extras phase: from then on only the replicator wrote to it, and every
//!   copy it made is of a document the journal still follows.

use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::options::FindOptions;
use serde::{Deserialize, Serialize};

use super::{drained, resolve_scope, Ctx};
use crate::capture::key_of;
use crate::error::SyncError;
use crate::journal::{now_ms, Journal};
use crate::observe::FullSyncView;
use crate::replicate::{indexes, missing_in, options, raw_id};

const CHUNK: usize = 1000;
const CHECKPOINT_KEY: &str = "full_sync";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Phase {
    Copy,
    Extras,
    Drain,
}

/// What survives a crash.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    id: String,
    collections: Vec<(String, String)>,
    index: usize,
    phase: Phase,
    /// BSON bytes of `{ _id: <last id scanned> }` in the current phase.
    last_id: Option<Vec<u8>>,
    documents_done: u64,
    documents_total: u64,
    started_at_ms: i64,
    /// The current collection was empty on Atlas when its copy began (so
    /// no extras scan). Cleared when a run is carried on or resumed: local
    /// deletions not journaled meanwhile (sync disabled) may have left
    /// Atlas-only documents among those already copied.
    #[serde(default)]
    atlas_was_empty: bool,
    /// The journal owner of the process running it (absent in checkpoints
    /// of older versions: nobody).
    #[serde(default)]
    owner: Option<String>,
}

impl Checkpoint {
    fn json(&self) -> Result<String, SyncError> {
        serde_json::to_string(self).map_err(|e| SyncError::Internal(e.to_string()))
    }

    /// The live process, other than this one, that runs it.
    fn run_elsewhere<'a>(&'a self, journal: &Journal) -> Option<&'a str> {
        self.owner
            .as_deref()
            .filter(|o| *o != journal.owner() && journal.owners.dead_since(o).is_none())
    }
}

/// The full sync of one engine: its status and whether one runs.
#[derive(Default)]
pub struct FullSync {
    status: Mutex<FullSyncView>,
    /// The collections of the run this engine started or resumed last.
    scope: Mutex<Vec<(String, String)>>,
    /// Held while a run is being started or resumed: one at a time.
    starting: tokio::sync::Mutex<()>,
    /// The run this engine is running, to stop when it closes.
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

/// The status of a run, from its checkpoint.
fn view_of(cp: &Checkpoint) -> FullSyncView {
    let secs = ((now_ms() - cp.started_at_ms).max(1) as f64) / 1000.0;
    FullSyncView {
        id: Some(cp.id.clone()),
        state: "running".into(),
        phase: Some(format!("{:?}", cp.phase).to_lowercase()),
        collections_done: cp.index as u64,
        collections_total: cp.collections.len() as u64,
        documents_done: cp.documents_done,
        documents_total: cp.documents_total,
        rate_per_sec: cp.documents_done as f64 / secs,
        error: None,
        started_at_ms: Some(cp.started_at_ms),
        finished_at_ms: None,
    }
}

/// The checkpoint in the journal, as stored and as read.
async fn load(journal: &Journal) -> Result<Option<(String, Checkpoint)>, SyncError> {
    Ok(load_raw(journal)
        .await?
        .and_then(|(raw, cp)| Some((raw, cp?))))
}

/// The checkpoint as stored, and as read if it can be (an unreadable one is
/// replaced by the next start).
async fn load_raw(journal: &Journal) -> Result<Option<(String, Option<Checkpoint>)>, SyncError> {
    let Some(raw) = journal.get_meta(CHECKPOINT_KEY).await? else {
        return Ok(None);
    };
    match serde_json::from_str(&raw) {
        Ok(cp) => Ok(Some((raw, Some(cp)))),
        Err(e) => {
            tracing::warn!("ignoring an unreadable full-sync checkpoint: {e}");
            Ok(Some((raw, None)))
        }
    }
}

fn names(collections: &[(String, String)]) -> String {
    let shown: Vec<String> = collections
        .iter()
        .take(5)
        .map(|(d, c)| format!("{d}.{c}"))
        .collect();
    let more = collections.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

impl FullSync {
    pub fn status(&self) -> FullSyncView {
        self.status.lock().expect("full sync poisoned").clone()
    }

    fn running_id(&self) -> Option<String> {
        let s = self.status.lock().expect("full sync poisoned");
        (s.state == "running").then(|| s.id.clone()).flatten()
    }

    fn show(&self, cp: &Checkpoint) {
        *self.status.lock().expect("full sync poisoned") = view_of(cp);
    }

    fn finish(&self, result: Result<(), SyncError>) {
        let mut s = self.status.lock().expect("full sync poisoned");
        s.finished_at_ms = Some(now_ms());
        s.phase = None;
        match result {
            Ok(()) => {
                s.state = "done".into();
                s.collections_done = s.collections_total;
            }
            Err(e) => {
                s.state = "failed".into();
                s.error = Some(e.to_string());
            }
        }
    }

    /// The status as the data directory sees it: this engine's run while it
    /// runs one, else the run another live process has in the checkpoint
    /// (its progress as of its last chunk), else this engine's last run.
    pub async fn shared_status(&self, journal: &Journal) -> FullSyncView {
        let mine = self.status();
        if mine.state == "running" {
            return mine;
        }
        match load(journal).await {
            Ok(Some((_, cp))) if cp.run_elsewhere(journal).is_some() => view_of(&cp),
            _ => mine,
        }
    }

    /// Starts a full sync in the background and returns its id. Over the
    /// collections of the one running, here or in another process, that
    /// one's id; over others, a conflict. One that a stopped process left
    /// unfinished over the same collections is carried on.
    pub async fn start(
        self: &Arc<Self>,
        ctx: Arc<Ctx>,
        requested: Option<Vec<String>>,
    ) -> Result<String, SyncError> {
        let _one = self.starting.lock().await;
        // Both servers answer, or the error says which one does not.
        super::reachable(&ctx).await?;
        let collections = resolve_scope(&ctx, requested).await?;
        // Another process may start or take one between the read of the
        // checkpoint and the swap: then look again.
        for _ in 0..3 {
            if let Some(id) = self.try_start(&ctx, &collections).await? {
                return Ok(id);
            }
        }
        Err(SyncError::Conflict(
            "other processes of this data directory keep starting full syncs; try again".into(),
        ))
    }

    /// [`FullSync::start`] once: `None` if another process changed the
    /// checkpoint meanwhile.
    async fn try_start(
        self: &Arc<Self>,
        ctx: &Arc<Ctx>,
        collections: &[(String, String)],
    ) -> Result<Option<String>, SyncError> {
        if let Some(id) = self.running_id() {
            let scope = self.scope.lock().expect("full sync poisoned").clone();
            if scope == collections {
                return Ok(Some(id));
            }
            return Err(SyncError::Conflict(format!(
                "full sync {id} is running over {}; it must end before one over {} starts",
                names(&scope),
                names(collections)
            )));
        }
        let journal = &ctx.journal;
        let (mut expected, found) = match load_raw(journal).await? {
            Some((raw, cp)) => (Some(raw), cp),
            None => (None, None),
        };
        if let Some(mut cp) = found {
            let raw = expected.take().unwrap_or_default();
            if cp.run_elsewhere(journal).is_some() {
                if cp.collections == collections {
                    return Ok(Some(cp.id));
                }
                return Err(SyncError::Conflict(format!(
                    "full sync {} is running in another process of this data directory, over {}; \
                     it must end before one over {} starts",
                    cp.id,
                    names(&cp.collections),
                    names(collections)
                )));
            }
            if cp.collections == collections {
                tracing::info!(
                    "carrying on full sync {}, left unfinished at collection {} ({:?})",
                    cp.id,
                    cp.index,
                    cp.phase
                );
                cp.owner = Some(journal.owner().to_string());
                cp.atlas_was_empty = false;
                return self.take(ctx, Some(raw), cp).await;
            }
            tracing::warn!(
                "full sync {} over {} was left unfinished; a new one over {} replaces it",
                cp.id,
                names(&cp.collections),
                names(collections)
            );
            expected = Some(raw);
        }
        let mut total = 0;
        for (db, coll) in collections {
            total += ctx
                .local
                .database(db)
                .collection::<Document>(coll)
                .count_documents(doc! {})
                .await?;
        }
        let cp = Checkpoint {
            id: format!("full-{:x}-{:04x}", now_ms(), rand::random::<u16>()),
            collections: collections.to_vec(),
            index: 0,
            phase: Phase::Copy,
            last_id: None,
            documents_done: 0,
            documents_total: total,
            started_at_ms: now_ms(),
            atlas_was_empty: false,
            owner: Some(journal.owner().to_string()),
        };
        self.take(ctx, expected, cp).await
    }

    /// Makes `cp` the directory's checkpoint if it still is `expected`, then
    /// runs it here; `None` if another process changed it meanwhile.
    async fn take(
        self: &Arc<Self>,
        ctx: &Arc<Ctx>,
        expected: Option<String>,
        cp: Checkpoint,
    ) -> Result<Option<String>, SyncError> {
        if !ctx
            .journal
            .swap_meta(CHECKPOINT_KEY, expected, Some(cp.json()?))
            .await?
        {
            return Ok(None);
        }
        let id = cp.id.clone();
        *self.scope.lock().expect("full sync poisoned") = cp.collections.clone();
        self.show(&cp);
        self.spawn(ctx.clone(), cp);
        Ok(Some(id))
    }

    /// Stops the run this engine is running, if any (the engine closes: its
    /// checkpoint stays, carried on by the next leader).
    pub fn abort(&self) {
        if let Some(t) = self.task.lock().expect("full sync poisoned").take() {
            t.abort();
        }
    }

    fn spawn(self: &Arc<Self>, ctx: Arc<Ctx>, cp: Checkpoint) {
        let me = self.clone();
        let task = tokio::spawn(async move {
            use futures_util::FutureExt;
            let id = cp.id.clone();
            // A panic (a bug) must not leave it "running" here for good,
            // refusing every later start: it fails, and is carried on later.
            let r = std::panic::AssertUnwindSafe(run(&me, &ctx, cp))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(SyncError::Internal(
                        "the full sync stopped on an unexpected panic".into(),
                    ))
                });
            if let Err(e) = &r {
                tracing::error!("full sync {id} failed: {e}");
                // Unfinished, run by nobody: the next start carries it on.
                if let Err(e) = release(&ctx.journal).await {
                    tracing::warn!("could not release the full-sync checkpoint: {e}");
                }
            } else {
                tracing::info!("full sync {id} done");
            }
            me.finish(r);
        });
        *self.task.lock().expect("full sync poisoned") = Some(task.abort_handle());
    }

    /// Waits until full sync `id` ends, here or in another process of the
    /// data directory (without an id: the one this engine runs, if any);
    /// returns its status.
    pub async fn wait(&self, journal: &Journal, id: Option<&str>) -> FullSyncView {
        // What was seen of it running in another process.
        let mut elsewhere: Option<FullSyncView> = None;
        loop {
            let mine = self.status();
            let is_mine = id.is_none_or(|id| mine.id.as_deref() == Some(id));
            if is_mine {
                if mine.state == "running" {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                return mine;
            }
            let Ok(cp) = load(journal).await.map(|c| c.map(|(_, cp)| cp)) else {
                return mine;
            };
            let cp = cp.filter(|cp| Some(cp.id.as_str()) == id);
            if let Some(cp) = &cp {
                if cp.run_elsewhere(journal).is_some() {
                    elsewhere = Some(view_of(cp));
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            }
            // Not running anywhere: gone from the journal once it finished,
            // left there when it did not.
            let mut last = elsewhere
                .take()
                .or_else(|| cp.as_ref().map(view_of))
                .unwrap_or_else(|| FullSyncView {
                    id: id.map(str::to_string),
                    ..FullSyncView::default()
                });
            last.finished_at_ms = Some(now_ms());
            last.phase = None;
            if cp.is_some() {
                last.state = "failed".into();
                last.error = Some(
                    "the process that ran it failed or stopped (see its logs); \
                     the next start over its collections carries it on"
                        .into(),
                );
            } else {
                last.state = "done".into();
                last.collections_done = last.collections_total;
            }
            return last;
        }
    }
}

/// Leaves this process's unfinished checkpoint to nobody.
async fn release(journal: &Journal) -> Result<(), SyncError> {
    if let Some((raw, mut cp)) = load(journal).await? {
        if cp.owner.as_deref() == Some(journal.owner()) {
            cp.owner = None;
            journal
                .swap_meta(CHECKPOINT_KEY, Some(raw), Some(cp.json()?))
                .await?;
        }
    }
    Ok(())
}

/// Whether a full sync is unfinished (running, or left by a process that
/// stopped or by a run that failed).
pub async fn unfinished(journal: &Journal) -> Result<bool, SyncError> {
    Ok(journal.get_meta(CHECKPOINT_KEY).await?.is_some())
}

/// Resumes a full sync that a process which stopped left unfinished (not
/// one that another live process runs).
pub async fn resume_full_sync(fs: &Arc<FullSync>, ctx: Arc<Ctx>) -> Result<bool, SyncError> {
    let _one = fs.starting.lock().await;
    let Some((raw, mut cp)) = load(&ctx.journal).await? else {
        return Ok(false);
    };
    if fs.running_id().is_some() || cp.run_elsewhere(&ctx.journal).is_some() {
        return Ok(false);
    }
    tracing::info!(
        "resuming full sync {} at collection {} ({:?})",
        cp.id,
        cp.index,
        cp.phase
    );
    cp.owner = Some(ctx.journal.owner().to_string());
    cp.atlas_was_empty = false;
    // `None`: another process took it first, it runs there.
    Ok(fs.take(&ctx, Some(raw), cp).await?.is_some())
}

async fn save(ctx: &Ctx, cp: &Checkpoint) -> Result<(), SyncError> {
    ctx.journal.set_meta(CHECKPOINT_KEY, cp.json()?).await
}

async fn run(fs: &FullSync, ctx: &Ctx, mut cp: Checkpoint) -> Result<(), SyncError> {
    while cp.index < cp.collections.len() && cp.phase != Phase::Drain {
        let (db, coll) = cp.collections[cp.index].clone();
        // Its indexes too: the leader copies them (see `replicate::indexes`).
        indexes::mark(&ctx.journal, &format!("{db}.{coll}"), &[], false).await?;
        // A collection whose Atlas copy needs options fixed at creation
        // (capped, collation, clustered) gets them before its documents:
        // else the first copies create a plain one, which the leader has to
        // drop and fill again.
        if cp.phase == Phase::Copy
            && options::info(&ctx.local, &db, &coll)
                .await?
                .is_some_and(|i| options::has_fixed(&i))
        {
            indexes_copied(ctx, &[(db.clone(), coll.clone())]).await?;
        }
        if cp.phase == Phase::Copy {
            scan(fs, ctx, &mut cp, &db, &coll, false).await?;
            cp.phase = Phase::Extras;
            cp.last_id = None;
            save(ctx, &cp).await?;
        }
        if !cp.atlas_was_empty {
            scan(fs, ctx, &mut cp, &db, &coll, true).await?;
        }
        cp.phase = Phase::Copy;
        cp.last_id = None;
        cp.atlas_was_empty = false;
        cp.index += 1;
        save(ctx, &cp).await?;
    }
    cp.phase = Phase::Drain;
    save(ctx, &cp).await?;
    fs.show(&cp);
    let target = ctx.journal.max_seq().await?;
    drained(&ctx.journal, target, None).await?;
    indexes_copied(ctx, &cp.collections).await?;
    // What a drop's copy journaled meanwhile (see `replicate::indexes`).
    drained(&ctx.journal, ctx.journal.max_seq().await?, None).await?;
    ctx.journal.delete_meta(CHECKPOINT_KEY).await
}

/// Waits until the leader copied (or gave up on) the collection options and
/// indexes of `collections`.
async fn indexes_copied(ctx: &Ctx, collections: &[(String, String)]) -> Result<(), SyncError> {
    let namespaces: Vec<String> = collections
        .iter()
        .map(|(d, c)| format!("{d}.{c}"))
        .collect();
    indexes::wait_unmarked(
        &ctx.journal,
        &namespaces,
        std::time::Duration::from_millis(10),
        None,
    )
    .await?;
    Ok(())
}

/// Where a scan that stopped after `last` goes on: `_id`s after it of the
/// same type bracket, and every `_id` of another type (MongoDB's `$gt` only
/// compares within a type bracket).
fn resume_filter(last: Option<&[u8]>) -> Document {
    let Some(id) = last
        .and_then(|b| mongodb::bson::from_slice::<Document>(b).ok())
        .and_then(|d| d.get("_id").cloned())
    else {
        return doc! {};
    };
    let bracket = match &id {
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => "number",
        Bson::String(_) => "string",
        Bson::ObjectId(_) => "objectId",
        Bson::DateTime(_) => "date",
        Bson::Document(_) => "object",
        Bson::Binary(_) => "binData",
        Bson::Boolean(_) => "bool",
        Bson::Timestamp(_) => "timestamp",
        _ => return doc! {},
    };
    doc! { "$or": [ { "_id": { "$gt": id } }, { "_id": { "$not": { "$type": bracket } } } ] }
}

/// Whether the documents a copy scan read may travel to Atlas as they are,
/// instead of being read back from local by the replicator.
///
/// They may while no write to the collection can have landed between the
/// scan reading a document and the journal recording it: every write
/// commits its intent before it is sent, so it holds if, when the scan
/// starts, no intent of the collection waits for its write, and every seq
/// handed out since then belongs to the scan itself or to another
/// collection, and the collection was not dropped meanwhile (a drop takes
/// no seq: it marks the collection, and the leader drops Atlas's once the
/// entries before the drop were copied, so bytes read before a drop and
/// journaled after it would bring its documents back on Atlas). Once that
/// fails, the rest of the scan goes by `_id` only.
struct Witness {
    ns: String,
    last_seq: i64,
    intact: bool,
    /// The number of the collection's drop mark at the start, if any.
    drop_mark: Option<u64>,
}

impl Witness {
    /// Must run before the scan's first read.
    async fn start(journal: &Journal, ns: &str) -> Result<Witness, SyncError> {
        let drop_mark = drop_mark(journal, ns).await?;
        let last_seq = journal.max_seq().await?;
        let intact = journal.unready_in(ns).await? == 0;
        Ok(Witness {
            ns: ns.to_string(),
            last_seq,
            intact,
            drop_mark,
        })
    }

    /// Whether the chunk that just got `seqs` (one append, so consecutive)
    /// still holds current documents.
    async fn check(&mut self, journal: &Journal, seqs: &[i64]) -> Result<bool, SyncError> {
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(self.intact);
        };
        if self.intact && first != self.last_seq + 1 {
            let others = journal.namespaces_between(self.last_seq, first).await?;
            // Entries already removed cannot be told apart: assume the worst.
            self.intact = others.len() as i64 == first - self.last_seq - 1
                && others.iter().all(|ns| *ns != self.ns);
        }
        // After the append: a drop marked before it is seen here; one marked
        // after it waits for these entries before Atlas's drop.
        if self.intact && drop_mark(journal, &self.ns).await? != self.drop_mark {
            self.intact = false;
        }
        self.last_seq = last;
        Ok(self.intact)
    }
}

/// The number of the mark of a drop of `ns` through the addon, if one waits.
async fn drop_mark(journal: &Journal, ns: &str) -> Result<Option<u64>, SyncError> {
    Ok(indexes::marks(journal)
        .await?
        .into_iter()
        .find(|(m, mark)| m == ns && mark.dropped)
        .map(|(_, mark)| mark.n))
}

/// Copy phase: every local document. Extras phase: every Atlas `_id`
/// missing locally.
async fn scan(
    fs: &FullSync,
    ctx: &Ctx,
    cp: &mut Checkpoint,
    db: &str,
    coll: &str,
    extras: bool,
) -> Result<(), SyncError> {
    let atlas = ctx.atlas.get();
    let source = if extras { &atlas } else { &ctx.local };
    let ns = format!("{db}.{coll}");
    // Into a collection that was empty on Atlas when the copy began, copies
    // can go as inserts (and there are no Atlas-only documents to find).
    if !extras && cp.last_id.is_none() {
        cp.atlas_was_empty = atlas
            .database(db)
            .collection::<Document>(coll)
            .find_one(doc! {})
            .await?
            .is_none();
    }
    let atlas_empty = !extras && cp.atlas_was_empty;
    let mut witness = if extras {
        None
    } else {
        Some(Witness::start(&ctx.journal, &ns).await?)
    };
    let mut opts = FindOptions::builder()
        .sort(doc! { "_id": 1 })
        .batch_size(CHUNK as u32)
        .build();
    if extras {
        opts.projection = Some(doc! { "_id": 1 });
    }
    let mut cursor = source
        .database(db)
        .collection::<RawDocumentBuf>(coll)
        .find(resume_filter(cp.last_id.as_deref()))
        .with_options(opts)
        .await?;
    let mut chunk: Vec<(Bson, RawDocumentBuf)> = Vec::with_capacity(CHUNK);
    loop {
        let next = cursor.try_next().await?;
        let end = next.is_none();
        if let Some(id_and_doc) = next.and_then(|d| Some((raw_id(&d)?, d))) {
            chunk.push(id_and_doc);
        }
        if chunk.len() >= CHUNK || (end && !chunk.is_empty()) {
            let last = chunk.last().map(|(id, _)| key_of("", id).id);
            let docs = std::mem::take(&mut chunk);
            if extras {
                let ids = docs.into_iter().map(|(id, _)| id).collect();
                let ids = missing_in(&ctx.local, db, coll, ids).await?;
                let keys: Vec<_> = ids.iter().map(|id| key_of(&ns, id)).collect();
                ctx.journal.append_ready(keys).await?;
            } else {
                cp.documents_done += docs.len() as u64;
                let keys: Vec<_> = docs.iter().map(|(id, _)| key_of(&ns, id)).collect();
                // Seqs, not tickets: the witness compares them.
                let seqs = ctx.journal.append_committed(keys, atlas_empty).await?;
                let current = match witness.as_mut() {
                    Some(w) => match w.check(&ctx.journal, &seqs).await {
                        Ok(c) => c,
                        Err(e) => {
                            // Not left waiting under this live owner: the
                            // documents are read back from local instead.
                            ctx.journal.mark_ready(seqs);
                            return Err(e);
                        }
                    },
                    None => false,
                };
                ctx.journal.mark_inserted(
                    seqs.into_iter()
                        .zip(docs)
                        .map(|(s, (_, d))| (s, current.then(|| d.into_bytes())))
                        .collect(),
                );
            }
            cp.last_id = last;
            save(ctx, cp).await?;
            fs.show(cp);
        }
        if end {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_filter_keeps_other_type_brackets() {
        assert_eq!(resume_filter(None), doc! {});
        let last = key_of("", &Bson::Int32(5)).id;
        assert_eq!(
            resume_filter(Some(&last)),
            doc! { "$or": [ { "_id": { "$gt": 5 } }, { "_id": { "$not": { "$type": "number" } } } ] }
        );
    }

    fn key(ns: &str, id: i32) -> crate::journal::DocKey {
        key_of(ns, &Bson::Int32(id))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scanned_documents_are_not_current_once_the_collection_was_dropped() {
        let dir = std::env::temp_dir().join(format!("dms-witness-drop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        let mut w = Witness::start(&j, "d.c").await.unwrap();
        // Another collection's drop does not matter.
        indexes::mark(&j, "d.other", &[], true).await.unwrap();
        let s = j
            .append_committed(vec![key("d.c", 1)], false)
            .await
            .unwrap();
        assert!(w.check(&j, &s).await.unwrap());
        // This one's does (it takes no seq: bytes read before it and copied
        // after Atlas's drop would bring its documents back there).
        indexes::mark(&j, "d.c", &[], true).await.unwrap();
        let s = j
            .append_committed(vec![key("d.c", 2)], false)
            .await
            .unwrap();
        assert!(!w.check(&j, &s).await.unwrap());
        // An index change of it is no drop.
        let mut w = Witness::start(&j, "d.x").await.unwrap();
        indexes::mark(&j, "d.x", &["a_1".to_string()], false)
            .await
            .unwrap();
        let s = j
            .append_committed(vec![key("d.x", 1)], false)
            .await
            .unwrap();
        assert!(w.check(&j, &s).await.unwrap());
        drop(j);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scanned_documents_count_as_current_only_while_nothing_wrote_to_the_collection() {
        let dir = std::env::temp_dir().join(format!("dms-witness-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let j = Journal::open(&dir, false, "me".into()).unwrap();

        // Nothing else wrote: intact.
        let mut w = Witness::start(&j, "d.c").await.unwrap();
        let s = j
            .append_committed(vec![key("d.c", 1), key("d.c", 2)], false)
            .await
            .unwrap();
        assert!(w.check(&j, &s).await.unwrap());
        // A write to another collection in between does not matter.
        j.append_committed(vec![key("d.other", 1)], false)
            .await
            .unwrap();
        let s = j
            .append_committed(vec![key("d.c", 3)], false)
            .await
            .unwrap();
        assert!(w.check(&j, &s).await.unwrap());
        // One to this collection does, for the rest of the scan.
        j.append_committed(vec![key("d.c", 9)], false)
            .await
            .unwrap();
        let s = j
            .append_committed(vec![key("d.c", 4)], false)
            .await
            .unwrap();
        assert!(!w.check(&j, &s).await.unwrap());
        let s = j
            .append_committed(vec![key("d.c", 5)], false)
            .await
            .unwrap();
        assert!(!w.check(&j, &s).await.unwrap());

        // A write of this collection still running when the scan starts
        // (its intent still in the intent log: the start moves it).
        let all = j.read_after(0, 100).await.unwrap();
        j.mark_ready(all.iter().map(|e| e.seq).collect());
        j.remove(Vec::new()).await.unwrap();
        let mut w = Witness::start(&j, "d.c").await.unwrap();
        let s = j
            .append_committed(vec![key("d.c", 11)], false)
            .await
            .unwrap();
        assert!(w.check(&j, &s).await.unwrap(), "every write had finished");
        j.mark_ready(s);
        j.append(vec![key("d.c", 10)]).await.unwrap();
        let mut w = Witness::start(&j, "d.c").await.unwrap();
        let s = j
            .append_committed(vec![key("d.c", 6)], false)
            .await
            .unwrap();
        assert!(!w.check(&j, &s).await.unwrap());

        // An entry in between that is gone already cannot be told apart.
        let all: Vec<i64> = j
            .read_after(0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        j.mark_ready(all.clone());
        j.remove(all).await.unwrap();
        let mut w = Witness::start(&j, "d.c").await.unwrap();
        let gone = j
            .append_committed(vec![key("d.other", 2)], false)
            .await
            .unwrap();
        j.mark_ready(gone.clone());
        j.remove(gone).await.unwrap();
        let s = j
            .append_committed(vec![key("d.c", 7)], false)
            .await
            .unwrap();
        assert!(!w.check(&j, &s).await.unwrap());
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn checkpoints_round_trip() {
        let cp = Checkpoint {
            id: "x".into(),
            collections: vec![("a".into(), "b".into())],
            index: 0,
            phase: Phase::Extras,
            last_id: Some(vec![1, 2]),
            documents_done: 3,
            documents_total: 4,
            started_at_ms: 5,
            atlas_was_empty: true,
            owner: Some("o".into()),
        };
        let back: Checkpoint = serde_json::from_str(&serde_json::to_string(&cp).unwrap()).unwrap();
        assert_eq!(back.phase, Phase::Extras);
        assert_eq!(back.last_id, Some(vec![1, 2]));
        assert_eq!(back.owner.as_deref(), Some("o"));
        // A checkpoint of an older version has no owner: nobody runs it.
        let old = r#"{"id":"x","collections":[],"index":0,"phase":"copy","last_id":null,"documents_done":0,"documents_total":0,"started_at_ms":1}"#;
        assert_eq!(serde_json::from_str::<Checkpoint>(old).unwrap().owner, None);
    }
}
