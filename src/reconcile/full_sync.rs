//! Full sync: every document of the chosen collections is put in the journal
//! (copy phase), then every Atlas-only document (extras phase), then the
//! replicator drains them (drain phase).
//!
//! Invariants:
//! - the checkpoint (collection, phase, last `_id`) is committed after each
//!   chunk; after a crash the scan resumes there, re-covering at most a
//!   chunk (re-marking a document dirty is harmless);
//! - only one full sync runs per engine; starting another returns its id.

use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::FindOptions;
use serde::{Deserialize, Serialize};

use super::{drained, resolve_scope, Ctx};
use crate::capture::key_of;
use crate::error::SyncError;
use crate::journal::now_ms;
use crate::observe::FullSyncView;
use crate::replicate::canon_id;

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
}

/// The full sync of one engine: its status and whether one runs.
#[derive(Default)]
pub struct FullSync {
    status: Mutex<FullSyncView>,
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
        let mut s = self.status.lock().expect("full sync poisoned");
        let secs = ((now_ms() - cp.started_at_ms).max(1) as f64) / 1000.0;
        *s = FullSyncView {
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
        };
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

    /// Starts a full sync in the background and returns its id (the running
    /// one's, if one runs already).
    pub async fn start(
        self: &Arc<Self>,
        ctx: Arc<Ctx>,
        requested: Option<Vec<String>>,
    ) -> Result<String, SyncError> {
        if let Some(id) = self.running_id() {
            return Ok(id);
        }
        let collections = resolve_scope(&ctx, requested).await?;
        let mut total = 0;
        for (db, coll) in &collections {
            total += ctx
                .local
                .database(db)
                .collection::<Document>(coll)
                .count_documents(doc! {})
                .await?;
        }
        let cp = Checkpoint {
            id: format!("full-{:x}-{:04x}", now_ms(), rand::random::<u16>()),
            collections,
            index: 0,
            phase: Phase::Copy,
            last_id: None,
            documents_done: 0,
            documents_total: total,
            started_at_ms: now_ms(),
        };
        save(&ctx, &cp).await?;
        let id = cp.id.clone();
        self.show(&cp);
        self.spawn(ctx, cp);
        Ok(id)
    }

    fn spawn(self: &Arc<Self>, ctx: Arc<Ctx>, cp: Checkpoint) {
        let me = self.clone();
        tokio::spawn(async move {
            let id = cp.id.clone();
            let r = run(&me, &ctx, cp).await;
            if let Err(e) = &r {
                tracing::error!("full sync {id} failed: {e}");
            } else {
                tracing::info!("full sync {id} done");
            }
            me.finish(r);
        });
    }

    /// Waits until the running full sync (if any) ends; returns its status.
    pub async fn wait(&self) -> FullSyncView {
        while self.running_id().is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.status()
    }
}

/// Resumes a full sync that a crashed process left unfinished.
pub async fn resume_full_sync(fs: &Arc<FullSync>, ctx: Arc<Ctx>) -> Result<bool, SyncError> {
    let Some(raw) = ctx.journal.get_meta(CHECKPOINT_KEY).await? else {
        return Ok(false);
    };
    let cp: Checkpoint = match serde_json::from_str(&raw) {
        Ok(cp) => cp,
        Err(e) => {
            tracing::warn!("ignoring an unreadable full-sync checkpoint: {e}");
            return Ok(false);
        }
    };
    if fs.running_id().is_some() {
        return Ok(false);
    }
    tracing::info!(
        "resuming full sync {} at collection {} ({:?})",
        cp.id,
        cp.index,
        cp.phase
    );
    fs.show(&cp);
    fs.spawn(ctx, cp);
    Ok(true)
}

async fn save(ctx: &Ctx, cp: &Checkpoint) -> Result<(), SyncError> {
    let json = serde_json::to_string(cp).map_err(|e| SyncError::Internal(e.to_string()))?;
    ctx.journal.set_meta(CHECKPOINT_KEY, json).await
}

async fn run(fs: &FullSync, ctx: &Ctx, mut cp: Checkpoint) -> Result<(), SyncError> {
    while cp.index < cp.collections.len() && cp.phase != Phase::Drain {
        let (db, coll) = cp.collections[cp.index].clone();
        if cp.phase == Phase::Copy {
            scan(fs, ctx, &mut cp, &db, &coll, false).await?;
            cp.phase = Phase::Extras;
            cp.last_id = None;
            save(ctx, &cp).await?;
        }
        scan(fs, ctx, &mut cp, &db, &coll, true).await?;
        cp.phase = Phase::Copy;
        cp.last_id = None;
        cp.index += 1;
        save(ctx, &cp).await?;
    }
    cp.phase = Phase::Drain;
    save(ctx, &cp).await?;
    fs.show(&cp);
    let target = ctx.journal.max_seq().await?;
    drained(&ctx.journal, target, None).await?;
    ctx.journal.delete_meta(CHECKPOINT_KEY).await
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

/// Copy phase: every local `_id`. Extras phase: every Atlas `_id` missing locally.
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
    let opts = FindOptions::builder()
        .projection(doc! { "_id": 1 })
        .sort(doc! { "_id": 1 })
        .batch_size(CHUNK as u32)
        .build();
    let mut cursor = source
        .database(db)
        .collection::<Document>(coll)
        .find(resume_filter(cp.last_id.as_deref()))
        .with_options(opts)
        .await?;
    let ns = format!("{db}.{coll}");
    // Into an empty Atlas collection, copies can go as inserts.
    let atlas_empty = !extras
        && atlas
            .database(db)
            .collection::<Document>(coll)
            .find_one(doc! {})
            .await?
            .is_none();
    let mut chunk: Vec<Bson> = Vec::with_capacity(CHUNK);
    loop {
        let next = cursor.try_next().await?;
        if let Some(id) = next.as_ref().and_then(|d| d.get("_id").cloned()) {
            chunk.push(id);
        }
        if chunk.len() >= CHUNK || (next.is_none() && !chunk.is_empty()) {
            let last = chunk.last().map(|id| key_of("", id).id);
            let ids = if extras {
                missing_locally(ctx, db, coll, std::mem::take(&mut chunk)).await?
            } else {
                std::mem::take(&mut chunk)
            };
            let keys: Vec<_> = ids.iter().map(|id| key_of(&ns, id)).collect();
            if !extras {
                cp.documents_done += keys.len() as u64;
            }
            if atlas_empty {
                ctx.journal.append_ready_inserts(keys).await?;
            } else {
                ctx.journal.append_ready(keys).await?;
            }
            cp.last_id = last;
            save(ctx, cp).await?;
            fs.show(cp);
        }
        if next.is_none() {
            return Ok(());
        }
    }
}

async fn missing_locally(
    ctx: &Ctx,
    db: &str,
    coll: &str,
    ids: Vec<Bson>,
) -> Result<Vec<Bson>, SyncError> {
    let opts = FindOptions::builder().projection(doc! { "_id": 1 }).build();
    let found: Vec<Document> = ctx
        .local
        .database(db)
        .collection::<Document>(coll)
        .find(doc! { "_id": { "$in": ids.clone() } })
        .with_options(opts)
        .await?
        .try_collect()
        .await?;
    let present: std::collections::HashSet<_> = found
        .iter()
        .filter_map(|d| d.get("_id"))
        .map(canon_id)
        .collect();
    Ok(ids
        .into_iter()
        .filter(|id| !present.contains(&canon_id(id)))
        .collect())
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
        };
        let back: Checkpoint = serde_json::from_str(&serde_json::to_string(&cp).unwrap()).unwrap();
        assert_eq!(back.phase, Phase::Extras);
        assert_eq!(back.last_id, Some(vec![1, 2]));
    }
}
