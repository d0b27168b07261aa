//! Verify: compare local and Atlas per collection (counts, content hash, then
//! the exact differing `_id`s); with `repair`, mark only those dirty.
//!
//! Invariants:
//! - memory is bounded: pass 1 keeps one sum per hash bucket; pass 2 keeps
//!   the ids of a group of differing buckets at a time (at most
//!   `GROUP_DOCS` documents' worth), streaming the collection once per group;
//! - documents are compared by their exact BSON bytes, so a changed type
//!   (Int32 vs Double) is a difference;
//! - `_id`s that are equal as values (1, 1.0) are the same document, as on
//!   the server.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::Client;
use xxhash_rust::xxh3::xxh3_64;

use super::{drained, resolve_scope, Ctx, ATLAS, LOCAL};
use crate::capture::key_of;
use crate::error::SyncError;
use crate::journal::{now_ms, Journal};
use crate::replicate::{canon_id, indexes, options, raw_id, Canon};

const BUCKETS: usize = 4096;
/// Documents whose ids one pass-2 group may hold in memory.
const GROUP_DOCS: u64 = 200_000;
/// Ids listed per kind of difference in a report (all are repaired).
const LIST_CAP: usize = 1000;
/// How long verify waits for the queue to drain before comparing.
const SETTLE: Duration = Duration::from_secs(30);
/// How long a repair waits for the replicator.
const REPAIR_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub collections: Option<Vec<String>>,
    pub repair: bool,
}

fn bucket_of(id: &Canon) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() % BUCKETS as u64) as usize
}

/// Per-bucket document counts and hash sums of one side.
struct Summary {
    count: Vec<u64>,
    sum: Vec<u64>,
}

impl Summary {
    fn hash_hex(&self) -> String {
        let mut bytes = Vec::with_capacity(BUCKETS * 16);
        for (c, s) in self.count.iter().zip(&self.sum) {
            bytes.extend_from_slice(&c.to_le_bytes());
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        format!("{:016x}", xxh3_64(&bytes))
    }
}

/// Streams a collection of `server` (named in its errors), calling
/// `f(id, canon, bucket, doc hash)` per document.
async fn stream(
    (server, client): (&'static str, &Client),
    db: &str,
    coll: &str,
    mut f: impl FnMut(Bson, Canon, usize, u64),
) -> Result<(), SyncError> {
    let scan = async {
        let mut cursor = client
            .database(db)
            .collection::<RawDocumentBuf>(coll)
            .find(doc! {})
            .await?;
        while let Some(d) = cursor.try_next().await? {
            let Some(id) = raw_id(&d) else { continue };
            let c = canon_id(&id);
            let b = bucket_of(&c);
            f(id, c, b, xxh3_64(d.as_bytes()));
        }
        Ok::<_, mongodb::error::Error>(())
    };
    scan.await.map_err(|e| SyncError::from(e).on(server))
}

async fn summarize(
    server: (&'static str, &Client),
    db: &str,
    coll: &str,
) -> Result<Summary, SyncError> {
    let mut s = Summary {
        count: vec![0; BUCKETS],
        sum: vec![0; BUCKETS],
    };
    stream(server, db, coll, |_, _, b, h| {
        s.count[b] += 1;
        s.sum[b] = s.sum[b].wrapping_add(h);
    })
    .await?;
    Ok(s)
}

/// The ids that differ, by kind: how many, and the first `LIST_CAP` of
/// each (a collection missing on Atlas entirely must not put all its ids in
/// memory).
#[derive(Default)]
struct Diff {
    missing: Vec<Bson>,
    extra: Vec<Bson>,
    different: Vec<Bson>,
    /// Missing, extra, different.
    counts: [u64; 3],
}

impl Diff {
    fn add(&mut self, kind: usize, ids: &[Bson]) {
        let list = match kind {
            0 => &mut self.missing,
            1 => &mut self.extra,
            _ => &mut self.different,
        };
        let room = LIST_CAP.saturating_sub(list.len());
        list.extend(ids.iter().take(room).cloned());
        self.counts[kind] += ids.len() as u64;
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Pass 2 over the buckets whose summaries differ. A bucket only one side
/// has documents in needs no pairing: one stream of that side lists them
/// (a collection missing on Atlas entirely is one scan, not one per group).
/// The others are paired a group at a time. With `repair`, differing
/// documents are journaled as they are found, so no more than a group's ids
/// (or a chunk's) are held at once.
async fn diff_buckets(
    ctx: &Ctx,
    db: &str,
    coll: &str,
    l: &Summary,
    a: &Summary,
    repair: bool,
) -> Result<Diff, SyncError> {
    let ns = format!("{db}.{coll}");
    let mut diff = Diff::default();
    let only_local: Vec<bool> = (0..BUCKETS)
        .map(|b| l.count[b] > 0 && a.count[b] == 0)
        .collect();
    let only_atlas: Vec<bool> = (0..BUCKETS)
        .map(|b| a.count[b] > 0 && l.count[b] == 0)
        .collect();
    for (kind, server, client, wanted) in [
        (0, LOCAL, ctx.local.clone(), &only_local),
        (1, ATLAS, ctx.atlas.get(), &only_atlas),
    ] {
        if wanted.iter().any(|w| *w) {
            one_sided(ctx, &client, &ns, wanted, repair, |ids| diff.add(kind, ids))
                .await
                .map_err(|e| e.on(server))?;
        }
    }
    let differing: Vec<usize> = (0..BUCKETS)
        .filter(|&b| !only_local[b] && !only_atlas[b])
        .filter(|&b| l.count[b] != a.count[b] || l.sum[b] != a.sum[b])
        .collect();
    let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
    let mut load = 0;
    for b in differing {
        let n = l.count[b].max(a.count[b]);
        if load + n > GROUP_DOCS && !groups.last().is_some_and(Vec::is_empty) {
            groups.push(Vec::new());
            load = 0;
        }
        load += n;
        groups.last_mut().expect("a group").push(b);
    }
    for group in groups.into_iter().filter(|g| !g.is_empty()) {
        let mut wanted = vec![false; BUCKETS];
        group.iter().for_each(|&b| wanted[b] = true);
        let mut local: HashMap<Canon, (Bson, u64)> = HashMap::new();
        stream((LOCAL, &ctx.local), db, coll, |id, c, b, h| {
            if wanted[b] {
                local.insert(c, (id, h));
            }
        })
        .await?;
        let (mut different, mut extra) = (Vec::new(), Vec::new());
        stream((ATLAS, &ctx.atlas.get()), db, coll, |id, c, b, h| {
            if wanted[b] {
                match local.remove(&c) {
                    Some((_, lh)) if lh == h => {}
                    Some((lid, _)) => different.push(lid),
                    None => extra.push(id),
                }
            }
        })
        .await?;
        let missing: Vec<Bson> = local.into_values().map(|(id, _)| id).collect();
        if repair {
            let keys: Vec<_> = missing
                .iter()
                .chain(&extra)
                .chain(&different)
                .map(|id| key_of(&ns, id))
                .collect();
            for chunk in keys.chunks(1000) {
                ctx.journal.append_ready(chunk.to_vec()).await?;
            }
        }
        diff.add(0, &missing);
        diff.add(1, &extra);
        diff.add(2, &different);
    }
    Ok(diff)
}

/// Every `_id` of `client`'s collection `ns` in a `wanted` bucket, a chunk
/// at a time to `found` (and to the journal, with `repair`).
async fn one_sided(
    ctx: &Ctx,
    client: &Client,
    ns: &str,
    wanted: &[bool],
    repair: bool,
    mut found: impl FnMut(&[Bson]),
) -> Result<(), SyncError> {
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    let mut cursor = client
        .database(db)
        .collection::<RawDocumentBuf>(coll)
        .find(doc! {})
        .projection(doc! { "_id": 1 })
        .await?;
    let mut chunk = Vec::with_capacity(1000);
    loop {
        let next = cursor.try_next().await?;
        let end = next.is_none();
        if let Some(id) = next.as_ref().and_then(raw_id) {
            if wanted[bucket_of(&canon_id(&id))] {
                chunk.push(id);
            }
        }
        if chunk.len() >= 1000 || (end && !chunk.is_empty()) {
            if repair {
                let keys = chunk.iter().map(|id| key_of(ns, id)).collect();
                ctx.journal.append_ready(keys).await?;
            }
            found(&chunk);
            chunk.clear();
        }
        if end {
            return Ok(());
        }
    }
}

fn listed(ids: &[Bson]) -> Bson {
    Bson::Array(ids.iter().take(LIST_CAP).cloned().collect())
}

/// Compares the collections in scope; with `repair`, queues the differing
/// documents and waits for the replicator to copy them.
pub async fn verify(ctx: &Ctx, opts: VerifyOptions) -> Result<Document, SyncError> {
    // Not the wait below for a queue that cannot drain, and then an error
    // that does not say which server failed.
    super::reachable(ctx).await?;
    let settled = drained(&ctx.journal, ctx.journal.max_seq().await?, Some(SETTLE)).await?;
    let scope = resolve_scope(ctx, opts.collections).await?;
    let mut reports = Vec::new();
    let (mut differences, mut repaired) = (0u64, 0u64);
    let (mut index_differences, mut indexes_repaired) = (0u64, 0u64);
    let (mut option_differences, mut options_repaired) = (0u64, 0u64);
    for (db, coll) in scope {
        let ns = format!("{db}.{coll}");
        // Options first: fixing them re-creates Atlas's collection and
        // copies its documents again, which the comparison below then sees.
        let mut opt_diff = options::differences(&ctx.local, &ctx.atlas.get(), &db, &coll).await?;
        let opt_n = opt_diff.len() as u64;
        option_differences += opt_n;
        let mut opt_fixed = 0u64;
        if opts.repair && opt_n > 0 {
            indexes::mark(&ctx.journal, &ns, &[], false).await?;
            mark_cleared(ctx, &ns).await?;
            drained(
                &ctx.journal,
                ctx.journal.max_seq().await?,
                Some(REPAIR_WAIT),
            )
            .await?;
            opt_diff = options::differences(&ctx.local, &ctx.atlas.get(), &db, &coll).await?;
            opt_fixed = opt_n.saturating_sub(opt_diff.len() as u64);
            options_repaired += opt_fixed;
        }
        let atlas = ctx.atlas.get();
        let (l, a) = tokio::try_join!(
            summarize((LOCAL, &ctx.local), &db, &coll),
            summarize((ATLAS, &atlas), &db, &coll)
        )?;
        let diff = diff_buckets(ctx, &db, &coll, &l, &a, opts.repair).await?;
        let n = diff.total();
        differences += n;
        let mut fixed = 0u64;
        if opts.repair && n > 0 {
            drained(
                &ctx.journal,
                ctx.journal.max_seq().await?,
                Some(REPAIR_WAIT),
            )
            .await?;
            // Counted, not assumed: a copy Atlas refused (dead-lettered)
            // or one still on its way is no repair.
            let atlas_now = ctx.atlas.get();
            let (l, a) = tokio::try_join!(
                summarize((LOCAL, &ctx.local), &db, &coll),
                summarize((ATLAS, &atlas_now), &db, &coll)
            )?;
            let left = diff_buckets(ctx, &db, &coll, &l, &a, false).await?.total();
            fixed = n.saturating_sub(left);
            repaired += fixed;
        }
        let capped = n > (diff.missing.len() + diff.extra.len() + diff.different.len()) as u64;
        let (mut idx_missing, mut idx_different) = index_diff(ctx, &atlas, &db, &coll).await?;
        let idx_n = (idx_missing.len() + idx_different.len()) as u64;
        index_differences += idx_n;
        let mut idx_fixed = 0u64;
        if opts.repair && idx_n > 0 {
            indexes::mark(&ctx.journal, &ns, &[], false).await?;
            mark_cleared(ctx, &ns).await?;
            let before = idx_n;
            (idx_missing, idx_different) = index_diff(ctx, &ctx.atlas.get(), &db, &coll).await?;
            idx_fixed = before.saturating_sub((idx_missing.len() + idx_different.len()) as u64);
            indexes_repaired += idx_fixed;
        }
        reports.push(doc! {
            "ns": ns,
            "localCount": l.count.iter().sum::<u64>() as i64,
            "atlasCount": a.count.iter().sum::<u64>() as i64,
            "localHash": l.hash_hex(),
            "atlasHash": a.hash_hex(),
            "missing": listed(&diff.missing),
            "extra": listed(&diff.extra),
            "different": listed(&diff.different),
            "missingCount": diff.counts[0] as i64,
            "extraCount": diff.counts[1] as i64,
            "differentCount": diff.counts[2] as i64,
            "truncated": capped,
            "repaired": fixed as i64,
            "indexesMissing": idx_missing,
            "indexesDifferent": idx_different,
            "indexesRepaired": idx_fixed as i64,
            "optionsDifferent": opt_diff,
            "optionsRepaired": opt_fixed as i64,
        });
    }
    Ok(doc! {
        "ok": differences == 0 && index_differences == 0 && option_differences == 0,
        "differences": differences as i64,
        "repaired": repaired as i64,
        "indexDifferences": index_differences as i64,
        "indexesRepaired": indexes_repaired as i64,
        "optionDifferences": option_differences as i64,
        "optionsRepaired": options_repaired as i64,
        "settled": settled,
        "checkedAtMs": now_ms(),
        "collections": reports,
    })
}

/// Waits (up to `REPAIR_WAIT`) until the leader copied the collection and
/// indexes of `ns` and cleared its mark.
async fn mark_cleared(ctx: &Ctx, ns: &str) -> Result<(), SyncError> {
    let deadline = std::time::Instant::now() + REPAIR_WAIT;
    let namespaces = [ns.to_string()];
    indexes::wait_unmarked(
        &ctx.journal,
        &namespaces,
        Duration::from_millis(100),
        Some(deadline),
    )
    .await?;
    Ok(())
}

/// The local indexes of `db.coll` Atlas lacks, and those it has otherwise
/// (see [`indexes::compare`]).
async fn index_diff(
    ctx: &Ctx,
    atlas: &Client,
    db: &str,
    coll: &str,
) -> Result<(Vec<String>, Vec<String>), SyncError> {
    let (l, a) = tokio::try_join!(
        async {
            indexes::list(&ctx.local, db, coll)
                .await
                .map_err(|e| SyncError::from(e).on(LOCAL))
        },
        async {
            indexes::list(atlas, db, coll)
                .await
                .map_err(|e| SyncError::from(e).on(ATLAS))
        },
    )?;
    Ok(indexes::compare(
        &l.unwrap_or_default(),
        &a.unwrap_or_default(),
    ))
}

impl VerifyOptions {
    /// What the run was asked, as a log or an error shows it.
    pub fn describe(&self) -> String {
        let scope = match &self.collections {
            Some(c) => {
                let mut c = c.clone();
                c.sort();
                c.dedup();
                c.join(", ")
            }
            None => "every replicated collection".into(),
        };
        format!("{scope}, repair {}", self.repair)
    }
}

/// One verify run as `GET /verify` shows it.
#[derive(Default)]
struct Run {
    id: Option<String>,
    /// Its options ([`VerifyOptions::describe`]).
    asked: String,
    /// `running`, `done` or `failed` (empty before the first run).
    state: String,
    report: Option<Document>,
    error: Option<String>,
    started_at_ms: Option<i64>,
}

/// The latest verify run of an engine, for `GET /verify`.
#[derive(Default)]
pub struct VerifyJob {
    run: Mutex<Run>,
}

impl VerifyJob {
    /// `{ id, state, report, error }`.
    pub fn status(&self) -> Document {
        let r = self.run.lock().expect("verify poisoned");
        let or_null = |v: Option<Bson>| v.unwrap_or(Bson::Null);
        doc! {
            "id": or_null(r.id.clone().map(Bson::String)),
            "state": if r.state.is_empty() { "idle" } else { r.state.as_str() },
            "report": or_null(r.report.clone().map(Bson::Document)),
            "error": or_null(r.error.clone().map(Bson::String)),
            "startedAtMs": or_null(r.started_at_ms.map(Bson::Int64)),
        }
    }

    /// Marks a run with `opts` started and returns its id. While one runs:
    /// `Err((id, None))` if it was asked the same, `Err((id, Some(what it
    /// was asked)))` if not.
    pub fn begin(&self, opts: &VerifyOptions) -> Result<String, (String, Option<String>)> {
        let mut r = self.run.lock().expect("verify poisoned");
        let asked = opts.describe();
        if r.state == "running" {
            let id = r.id.clone().unwrap_or_default();
            return Err((id, (r.asked != asked).then(|| r.asked.clone())));
        }
        let id = format!("verify-{:x}-{:04x}", now_ms(), rand::random::<u16>());
        *r = Run {
            id: Some(id.clone()),
            asked,
            state: "running".into(),
            started_at_ms: Some(now_ms()),
            ..Run::default()
        };
        Ok(id)
    }

    pub fn end(&self, result: &Result<Document, SyncError>) {
        let mut r = self.run.lock().expect("verify poisoned");
        match result {
            Ok(report) => {
                r.state = "done".into();
                r.report = Some(report.clone());
            }
            Err(e) => {
                r.state = "failed".into();
                r.error = Some(e.to_string());
            }
        }
    }
}

/// Where the status of the latest verify run of the data directory is kept,
/// for the other processes (`GET /verify` may reach any pm2 instance).
const STATUS_KEY: &str = "verify_status";

/// Publishes `job`'s status to the journal, with the process running it.
pub async fn publish(journal: &Journal, job: &VerifyJob) {
    let mut status = job.status();
    status.insert("owner", journal.owner());
    let json = Bson::Document(status).into_canonical_extjson().to_string();
    if let Err(e) = journal.set_meta(STATUS_KEY, json).await {
        tracing::warn!("publishing the verify status failed: {e}");
    }
}

/// The latest verify of the data directory: this engine's while it runs
/// one, else the one published last if it started later than this
/// engine's (one whose process died while it ran shows as failed).
pub async fn shared_status(journal: &Journal, job: &VerifyJob) -> Document {
    let mine = job.status();
    if mine.get_str("state") == Ok("running") {
        return mine;
    }
    let published = async {
        let raw = journal.get_meta(STATUS_KEY).await.ok()??;
        let v: serde_json::Value = serde_json::from_str(&raw).ok()?;
        match Bson::try_from(v).ok()? {
            Bson::Document(d) => Some(d),
            _ => None,
        }
    };
    let Some(mut other) = published.await else {
        return mine;
    };
    let owner = match other.remove("owner") {
        Some(Bson::String(o)) => o,
        _ => String::new(),
    };
    let started = |d: &Document| d.get_i64("startedAtMs").unwrap_or(0);
    if owner == journal.owner() || started(&other) <= started(&mine) {
        return mine;
    }
    if other.get_str("state") == Ok("running") && journal.owners.dead_since(&owner).is_some() {
        other.insert("state", "failed");
        other.insert("error", "the process that ran it stopped before it ended");
    }
    other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_treat_equal_numbers_as_one_id() {
        assert_eq!(
            bucket_of(&canon_id(&Bson::Int32(7))),
            bucket_of(&canon_id(&Bson::Double(7.0)))
        );
    }

    #[test]
    fn summary_hash_changes_with_content() {
        let mut s = Summary {
            count: vec![0; BUCKETS],
            sum: vec![0; BUCKETS],
        };
        let h1 = s.hash_hex();
        s.count[3] = 1;
        s.sum[3] = 42;
        assert_ne!(h1, s.hash_hex());
    }
}
