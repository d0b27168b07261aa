//! The read methods: straight to the local server, documents returned as the
//! server's own BSON bytes (concatenated), never re-encoded.
//!
//! `find` and `aggregate` answer in batches, as the driver's cursors do: the
//! first batch, and a cursor id to fetch the next ones with `getMore` (or
//! to drop with `killCursor`), so a large result never has to fit in memory
//! at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Bson, Document, RawBsonRef, RawDocument, RawDocumentBuf};
use mongodb::options::{
    AggregateOptions, CountOptions, DistinctOptions, EstimatedDocumentCountOptions, FindOneOptions,
    FindOptions,
};
use mongodb::Cursor;

use super::payload::{max_time, Payload};
use super::{Target, Writer};
use crate::error::SyncError;

/// Documents per batch when the call sets no `batchSize`.
const BATCH_DOCS: usize = 1000;
/// A batch ends once it holds this many bytes, whatever its count.
const BATCH_BYTES: usize = 8 << 20;
/// How long an open cursor (or change stream) may go unread before it is
/// dropped (and killed on the server): the server's own default idle
/// timeout for cursors.
pub(super) const IDLE: Duration = Duration::from_secs(600);

/// What JS reads between calls (cursors, change streams), by the id it was
/// given. Dropping one kills its cursor on the server (the driver does that
/// in the background). Ones idle for `IDLE` are dropped whenever one is
/// opened or read.
pub(super) struct Held<T> {
    last: AtomicU64,
    open: Mutex<HashMap<u64, (Shared<T>, Instant)>>,
}

/// One held thing, read by one call at a time.
type Shared<T> = Arc<tokio::sync::Mutex<T>>;

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held {
            last: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Held<T> {
    /// Keeps `v`; returns its id (never 0).
    pub(super) fn keep(&self, v: T) -> u64 {
        let id = self.last.fetch_add(1, Ordering::Relaxed) + 1;
        let mut open = self.open.lock().expect("held map poisoned");
        open.retain(|_, (_, used)| used.elapsed() < IDLE);
        open.insert(id, (Arc::new(tokio::sync::Mutex::new(v)), Instant::now()));
        id
    }

    /// The one kept as `id`, marked used now; `None` if it is not kept
    /// (dropped, or idle for `IDLE`).
    pub(super) fn get(&self, id: u64) -> Option<Shared<T>> {
        let mut open = self.open.lock().expect("held map poisoned");
        open.retain(|k, (_, used)| *k == id || used.elapsed() < IDLE);
        match open.get_mut(&id) {
            Some((v, used)) if used.elapsed() < IDLE => {
                *used = Instant::now();
                Some(v.clone())
            }
            _ => {
                open.remove(&id);
                None
            }
        }
    }

    /// Drops the one kept as `id` (nothing happens if it is not kept).
    pub(super) fn drop_id(&self, id: u64) {
        self.open.lock().expect("held map poisoned").remove(&id);
    }
}

/// The cursors JS is still reading.
#[derive(Default)]
pub struct Cursors(Held<Cursor<RawDocumentBuf>>);

impl Cursors {
    /// Answers with the first batch of `cursor`; keeps it if there is more.
    async fn first(
        &self,
        mut cursor: Cursor<RawDocumentBuf>,
        n: usize,
    ) -> Result<Vec<u8>, SyncError> {
        let (docs, done) = batch(&mut cursor, n).await?;
        let id = if done { 0 } else { self.0.keep(cursor) };
        Ok(answer(id, docs))
    }

    /// The next batch of cursor `id`.
    async fn more(&self, id: u64, n: usize) -> Result<Vec<u8>, SyncError> {
        let Some(cursor) = self.0.get(id) else {
            return Err(SyncError::invalid(format!(
                "getMore: cursor {id} is not open: it was read to the end, closed, \
                 or left unread for more than {} minutes",
                IDLE.as_secs() / 60
            )));
        };
        let mut guard = cursor.lock().await;
        let result = batch(&mut guard, n).await;
        if !matches!(result, Ok((_, false))) {
            self.0.drop_id(id);
        }
        let (docs, done) = result?;
        Ok(answer(if done { 0 } else { id }, docs))
    }

    /// Drops cursor `id` (nothing happens if it is not open).
    fn kill(&self, id: u64) {
        self.0.drop_id(id);
    }
}

/// Up to `n` documents (and about `BATCH_BYTES`), concatenated; `true` once
/// the cursor has nothing more.
async fn batch(
    cursor: &mut Cursor<RawDocumentBuf>,
    n: usize,
) -> Result<(Vec<u8>, bool), SyncError> {
    let mut out = Vec::new();
    let mut count = 0;
    while count < n && out.len() < BATCH_BYTES {
        if !cursor.advance().await? {
            return Ok((out, true));
        }
        out.extend_from_slice(cursor.current().as_bytes());
        count += 1;
    }
    Ok((out, !cursor.has_next()))
}

/// `{cursor: id}` (0: nothing more), then the batch's documents.
fn answer(id: u64, docs: Vec<u8>) -> Vec<u8> {
    let mut out = mongodb::bson::to_vec(&doc! { "cursor": id as i64 }).expect("a header encodes");
    out.extend_from_slice(&docs);
    out
}

/// The batch size a call asked for, else the default.
fn batch_len(asked: Option<u32>) -> usize {
    match asked {
        Some(n) if n > 0 => n as usize,
        _ => BATCH_DOCS,
    }
}

/// A cursor id sent back by JS.
fn cursor_id(p: &Payload, method: &str) -> Result<u64, SyncError> {
    p.integer("cursor")?
        .and_then(|id| u64::try_from(id).ok())
        .filter(|&id| id > 0)
        .ok_or_else(|| SyncError::invalid(format!("{method}: 'cursor' must be a positive integer")))
}

pub async fn get_more(w: &Writer, p: Payload) -> Result<Vec<u8>, SyncError> {
    let id = cursor_id(&p, "getMore")?;
    let n = p.integer("batchSize")?.and_then(|n| u32::try_from(n).ok());
    w.cursors.more(id, batch_len(n)).await
}

pub fn kill_cursor(w: &Writer, p: Payload) -> Result<Vec<u8>, SyncError> {
    w.cursors.kill(cursor_id(&p, "killCursor")?);
    Ok(answer(0, Vec::new()))
}

fn one(d: Document) -> Result<Vec<u8>, SyncError> {
    mongodb::bson::to_vec(&d).map_err(|e| SyncError::Internal(e.to_string()))
}

pub async fn find(t: &Target<'_>, p: Payload) -> Result<Vec<u8>, SyncError> {
    let filter = p.opt_doc("filter")?.unwrap_or_default();
    let (mut opts, raw) = p.options::<FindOptions>()?;
    opts.max_time = max_time(&raw);
    let n = batch_len(opts.batch_size);
    let cursor = t.raw().find(filter).with_options(opts).await?;
    t.w.cursors.first(cursor, n).await
}

pub async fn find_one(t: &Target<'_>, p: Payload) -> Result<Vec<u8>, SyncError> {
    let filter = p.opt_doc("filter")?.unwrap_or_default();
    let (mut opts, raw) = p.options::<FindOneOptions>()?;
    opts.max_time = max_time(&raw);
    let d = t.raw().find_one(filter).with_options(opts).await?;
    Ok(d.map(|d| d.into_bytes()).unwrap_or_default())
}

pub async fn count_documents(t: &Target<'_>, p: Payload) -> Result<Vec<u8>, SyncError> {
    let filter = p.opt_doc("filter")?.unwrap_or_default();
    let (mut opts, raw) = p.options::<CountOptions>()?;
    opts.max_time = max_time(&raw);
    let n = t.raw().count_documents(filter).with_options(opts).await?;
    one(doc! { "n": n as i64 })
}

/// The count from the collection's metadata (the `count` command without a
/// filter), as the driver's `estimatedDocumentCount`.
pub async fn estimated_document_count(t: &Target<'_>, p: Payload) -> Result<Vec<u8>, SyncError> {
    let (mut opts, raw) = p.options::<EstimatedDocumentCountOptions>()?;
    opts.max_time = max_time(&raw);
    let n = t
        .raw()
        .estimated_document_count()
        .with_options(opts)
        .await?;
    one(doc! { "n": n as i64 })
}

pub async fn distinct(t: &Target<'_>, p: Payload) -> Result<Vec<u8>, SyncError> {
    let key = match p.value("key")? {
        Some(Bson::String(k)) => k,
        _ => return Err(SyncError::invalid("distinct: 'key' must be a string")),
    };
    let filter = p.opt_doc("filter")?.unwrap_or_default();
    let (mut opts, raw) = p.options::<DistinctOptions>()?;
    opts.max_time = max_time(&raw);
    let values = t.raw().distinct(key, filter).with_options(opts).await?;
    one(doc! { "values": values })
}

/// `db.listCollections(filter, options)`: every collection and view of `db`
/// the filter matches, as the server lists them (every batch), concatenated.
pub async fn list_collections(
    local: &mongodb::Client,
    db: &str,
    p: Payload,
) -> Result<Vec<u8>, SyncError> {
    use futures_util::TryStreamExt;
    let mut cmd = doc! { "listCollections": 1, "filter": p.opt_doc("filter")?.unwrap_or_default() };
    if let Some(opts) = p.opt_doc("options")? {
        for k in ["nameOnly", "authorizedCollections", "comment", "maxTimeMS"] {
            if let Some(v) = opts.get(k) {
                cmd.insert(k, v.clone());
            }
        }
    }
    let specs: Vec<Document> = local
        .database(db)
        .run_cursor_command(cmd)
        .await?
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for d in specs {
        d.to_writer(&mut out)
            .map_err(|e| SyncError::Internal(e.to_string()))?;
    }
    Ok(out)
}

/// The commands `db.command()` runs while writes are replicated: ones that
/// read or report and never change data. Any other command could write
/// behind the journal's back (Atlas would never see it), so it is refused.
/// Names as the server takes them, with its lower-case aliases.
const READ_ONLY_COMMANDS: &[&str] = &[
    "aggregate",
    "buildInfo",
    "buildinfo",
    "collStats",
    "connectionStatus",
    "count",
    "currentOp",
    "dataSize",
    "dbHash",
    "dbStats",
    "distinct",
    "explain",
    "find",
    "getCmdLineOpts",
    "getDefaultRWConcern",
    "getLog",
    "getParameter",
    "hello",
    "hostInfo",
    "isMaster",
    "ismaster",
    "listCollections",
    "listCommands",
    "listDatabases",
    "listIndexes",
    "lockInfo",
    "ping",
    "replSetGetConfig",
    "replSetGetStatus",
    "serverStatus",
    "top",
    "whatsmyuri",
];

/// Why `cmd` (its name first) may not run while writes are replicated, if
/// it may not: its name is not a read-only command's, or it is an
/// `aggregate` (or the explain of one) with a writing stage.
fn refusal(cmd: &RawDocument) -> Option<String> {
    let (name, value) = match cmd.iter().next() {
        Some(Ok((name, value))) => (name, value),
        _ => return Some("an empty command".into()),
    };
    if !READ_ONLY_COMMANDS.contains(&name) {
        return Some(format!("'{name}' is not a read-only command"));
    }
    let writing = |c: &RawDocument| {
        let stages = c.get_array("pipeline").ok()?;
        stages.into_iter().flatten().find_map(|s| {
            let key = s.as_document()?.iter().next()?.ok()?.0;
            WRITING_STAGES.contains(&key).then(|| key.to_string())
        })
    };
    let target = match (name, value) {
        ("aggregate", _) => Some(cmd),
        ("explain", RawBsonRef::Document(inner)) => {
            let inner_name = inner.iter().next().and_then(Result::ok).map(|(k, _)| k);
            (inner_name == Some("aggregate")).then_some(inner)
        }
        _ => None,
    };
    let stage = target.and_then(writing)?;
    Some(format!("its pipeline's {stage} stage writes"))
}

/// `db.command(command)`: runs `command` on the local server's database `db`
/// and answers with the server's reply, as the driver's `db.command`. While
/// writes are replicated only commands that never change data run
/// ([`READ_ONLY_COMMANDS`]); others are refused before they are sent, naming
/// the command: a write that way would reach local and never Atlas.
pub async fn run_command(
    local: &mongodb::Client,
    db: &str,
    p: Payload,
    replicated: bool,
) -> Result<Vec<u8>, SyncError> {
    let cmd = p.bytes_doc("command")?;
    if replicated {
        if let Some(why) = refusal(&cmd) {
            return Err(SyncError::invalid(format!(
                "command: {why}, and a command that changes data this way would reach the local \
                 server but never Atlas; use the collection and database methods, which replicate \
                 (insertOne, bulkWrite, createIndex, createCollection, drop, ...)"
            )));
        }
    }
    one(local.database(db).run_raw_command(cmd).await?)
}

/// Stages that write: a pipeline with them would change documents behind the
/// journal's back, so they are refused on replicated collections.
const WRITING_STAGES: &[&str] = &["$out", "$merge"];

/// What an aggregation runs on: a collection, or a database
/// (`db.aggregate`, `{ aggregate: 1 }`).
pub enum Aggregated<'a> {
    Collection(&'a mongodb::Collection<RawDocumentBuf>),
    Database(mongodb::Database),
}

pub async fn aggregate(on: Aggregated<'_>, w: &Writer, p: Payload) -> Result<Vec<u8>, SyncError> {
    let pipeline = p.docs("pipeline")?;
    if w.journal.is_some() {
        if let Some(stage) = pipeline
            .iter()
            .flat_map(|s| s.keys())
            .find(|k| WRITING_STAGES.contains(&k.as_str()))
        {
            return Err(SyncError::invalid(format!(
                "aggregate: the {stage} stage writes without being replicated to Atlas; \
                 read the results with toArray() and write them with insertMany/bulkWrite instead"
            )));
        }
    }
    let (mut opts, raw) = p.options::<AggregateOptions>()?;
    opts.max_time = max_time(&raw);
    let n = batch_len(opts.batch_size);
    let action = match &on {
        Aggregated::Collection(c) => c.aggregate(pipeline),
        Aggregated::Database(d) => d.aggregate(pipeline),
    };
    let cursor = action
        .with_options(opts)
        .with_type::<RawDocumentBuf>()
        .await?;
    w.cursors.first(cursor, n).await
}

#[cfg(test)]
mod tests {
    use super::refusal;
    use mongodb::bson::rawdoc;

    #[test]
    fn read_only_commands_run_and_others_are_refused_by_name() {
        for ok in [
            rawdoc! { "ping": 1 },
            rawdoc! { "dbStats": 1, "scale": 1024 },
            rawdoc! { "count": "c", "query": { "a": 1 } },
            rawdoc! { "aggregate": "c", "pipeline": [{ "$match": {} }], "cursor": {} },
            rawdoc! { "explain": { "update": "c", "updates": [{ "q": {}, "u": { "$set": { "a": 1 } } }] } },
        ] {
            assert_eq!(refusal(&ok), None, "{ok:?}");
        }
        let why = |c: mongodb::bson::RawDocumentBuf| refusal(&c).unwrap();
        assert!(why(rawdoc! { "insert": "c", "documents": [{ "a": 1 }] }).contains("'insert'"));
        assert!(why(rawdoc! { "dropDatabase": 1 }).contains("'dropDatabase'"));
        // Names are case-sensitive, as the server's: a near miss is not let through.
        assert!(why(rawdoc! { "Ping": 1 }).contains("'Ping'"));
        assert!(why(rawdoc! {}).contains("empty"));
        let out = rawdoc! { "aggregate": "c", "pipeline": [{ "$match": {} }, { "$out": "d" }], "cursor": {} };
        assert!(why(out.clone()).contains("$out"));
        assert!(why(rawdoc! { "explain": out }).contains("$out"));
        let merge =
            rawdoc! { "aggregate": 1, "pipeline": [{ "$merge": { "into": "d" } }], "cursor": {} };
        assert!(why(merge).contains("$merge"));
    }
}
