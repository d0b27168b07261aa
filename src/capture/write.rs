//! The write methods. Each pins the documents it may change (see the module
//! invariants in `capture`), journals them, then runs the driver call.

use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::options::{
    Collation, DeleteOptions, FindOneAndDeleteOptions, FindOneAndReplaceOptions,
    FindOneAndUpdateOptions, FindOneOptions, FindOptions, Hint, InsertManyOptions,
    InsertOneOptions, ReplaceOptions, ReturnDocument, UpdateOptions,
};
use mongodb::results::UpdateResult;

use super::payload::{max_time, Payload, Update};
use super::{new_id, pinned_id, restrict, Target};
use crate::error::SyncError;

/// How many pinned `_id`s one restricted multi-document write carries.
const PIN_CHUNK: usize = 1000;
/// How often a single-document write looks again for its target when the
/// document it found stopped matching before the write.
const RETARGET_TRIES: usize = 3;
/// How often an upsert that found nothing, and then lost the insert to a
/// concurrent write of the same unique key, looks again (see
/// [`lost_upsert_race`]).
const UPSERT_TRIES: usize = 3;

/// Whether an upsert that found no document failed on a unique index: a
/// concurrent upsert of the same key may have inserted it in between.
/// MongoDB retries such an upsert itself when the filter is an equality on
/// the unique index's fields; the `_id` the engine adds to the filter of an
/// upsert (to journal that document before the write) stops the server
/// from doing so, so the engine looks for the document again, and updates
/// the one that is there now. If there is none, the same error comes back.
fn lost_upsert_race(e: &SyncError, attempt: usize) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    attempt + 1 < UPSERT_TRIES
        && matches!(e, SyncError::Mongo(m) if match m.kind.as_ref() {
            ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
            // findAndModify answers with a command error
            ErrorKind::Command(c) => c.code == 11000,
            _ => false,
        })
}

/// Returns the document with its `_id` first (a new ObjectId if it had
/// none), as the server stores it, and that `_id`.
pub fn ensure_id(doc: RawDocumentBuf) -> Result<(RawDocumentBuf, Bson), SyncError> {
    let bad = |e: mongodb::bson::raw::Error| SyncError::invalid(e.to_string());
    let first_is_id = doc
        .iter()
        .next()
        .transpose()
        .map_err(bad)?
        .is_some_and(|(k, _)| k == "_id");
    let id = match doc.get("_id").map_err(bad)? {
        Some(id) => Bson::try_from(id.to_raw_bson()).map_err(bad)?,
        None => new_id(),
    };
    if first_is_id {
        return Ok((doc, id));
    }
    let mut out = RawDocumentBuf::new();
    let raw_id = mongodb::bson::RawBson::try_from(id.clone())
        .map_err(|e| SyncError::invalid(e.to_string()))?;
    out.append("_id", raw_id);
    for el in doc.iter() {
        let (k, v) = el.map_err(bad)?;
        if k != "_id" {
            out.append(k, v.to_raw_bson());
        }
    }
    Ok((out, id))
}

pub async fn insert_one(t: &Target<'_>, p: Payload) -> Result<Document, SyncError> {
    let (doc, id) = ensure_id(p.bytes_doc("doc")?)?;
    let (opts, _) = p.options::<InsertOneOptions>()?;
    let docs = std::slice::from_ref(&doc);
    let r = t
        .journaled_inserts(std::slice::from_ref(&id), docs, true, async {
            t.raw()
                .insert_one(&doc)
                .with_options(opts)
                .await
                .map_err(SyncError::from)
        })
        .await;
    if let Err(SyncError::Mongo(e)) = r {
        return Err(match duplicate_key(t, &doc, &e).await {
            Some(fields) => SyncError::MongoWith(e, Box::new(fields)),
            None => SyncError::Mongo(e),
        });
    }
    r?;
    // JS reports the `_id` it gave the document (see `insert_many`).
    Ok(doc! { "insertedCount": 1 })
}

/// `keyPattern` and `keyValue` of an insert's duplicate key error, which
/// the server sends and the Node driver hands on, but the Rust driver drops
/// for inserts: the pattern of the index the message names, and the
/// inserted document's values at its fields. `None` when the error is
/// another one, or the index or a value cannot be told (an array on the
/// way, an index dropped meanwhile).
async fn duplicate_key(
    t: &Target<'_>,
    doc: &RawDocumentBuf,
    e: &mongodb::error::Error,
) -> Option<Document> {
    use futures_util::TryStreamExt;
    use mongodb::error::{ErrorKind, WriteFailure};
    let ErrorKind::Write(WriteFailure::WriteError(w)) = e.kind.as_ref() else {
        return None;
    };
    if w.code != 11000 {
        return None;
    }
    let name = w
        .message
        .split(" index: ")
        .nth(1)?
        .split(" dup key")
        .next()?
        .trim();
    let pattern = if name == "_id_" {
        doc! { "_id": 1 }
    } else {
        let indexes: Vec<_> = t
            .raw()
            .list_indexes()
            .await
            .ok()?
            .try_collect()
            .await
            .ok()?;
        let index = indexes
            .into_iter()
            .find(|i| i.options.as_ref().and_then(|o| o.name.as_deref()) == Some(name))?;
        index.keys
    };
    let doc = Document::try_from(doc.as_ref()).ok()?;
    let mut value = Document::new();
    // A missing field counts as null, as the server reports it.
    static NULL: Bson = Bson::Null;
    let root = Bson::Document(doc);
    for path in pattern.keys() {
        let mut at = &root;
        for part in path.split('.') {
            at = match at {
                Bson::Document(d) => d.get(part).unwrap_or(&NULL),
                Bson::Null => &NULL,
                _ => return None,
            };
        }
        if matches!(at, Bson::Array(_)) {
            return None;
        }
        value.insert(path.clone(), at.clone());
    }
    Some(doc! { "keyPattern": pattern, "keyValue": value })
}

pub async fn insert_many(t: &Target<'_>, p: Payload) -> Result<Document, SyncError> {
    let docs = p.bytes_docs("docs")?;
    if docs.is_empty() {
        return Err(SyncError::invalid(
            "insertMany: 'docs' must be a non-empty array of objects",
        ));
    }
    let (opts, _) = p.options::<InsertManyOptions>()?;
    let mut ids = Vec::with_capacity(docs.len());
    let mut with_ids = Vec::with_capacity(docs.len());
    for d in docs {
        let (d, id) = ensure_id(d)?;
        ids.push(id);
        with_ids.push(d);
    }
    let n = with_ids.len() as i64;
    let ordered = opts.ordered != Some(false);
    t.journaled_inserts(&ids, &with_ids, ordered, async {
        t.raw()
            .insert_many(&with_ids)
            .with_options(opts)
            .await
            .map_err(SyncError::from)
    })
    .await?;
    // The ids are not sent back: JS gave every document its `_id` before
    // the call (as the driver does) and reports those.
    Ok(doc! { "insertedCount": n })
}

/// An update's change: operators/pipeline, or a whole replacement.
enum Change {
    Update(Update),
    Replace(RawDocumentBuf),
}

async fn run_update(
    t: &Target<'_>,
    filter: Document,
    change: &Change,
    o: &UpdateOptions,
    many: bool,
) -> Result<UpdateResult, SyncError> {
    Ok(match change {
        Change::Update(u) if many => {
            t.docs()
                .update_many(filter, u.clone())
                .with_options(o.clone())
                .await?
        }
        Change::Update(u) => {
            t.docs()
                .update_one(filter, u.clone())
                .with_options(o.clone())
                .await?
        }
        Change::Replace(r) => {
            let ro = ReplaceOptions::builder()
                .upsert(o.upsert)
                .bypass_document_validation(o.bypass_document_validation)
                .collation(o.collation.clone())
                .hint(o.hint.clone())
                .let_vars(o.let_vars.clone())
                .comment(o.comment.clone())
                .sort(o.sort.clone())
                .build();
            t.raw().replace_one(filter, r).with_options(ro).await?
        }
    })
}

fn update_result(r: &UpdateResult) -> Document {
    let mut d = doc! {
        "matchedCount": r.matched_count as i64,
        "modifiedCount": r.modified_count as i64,
        "upsertedCount": r.upserted_id.is_some() as i32,
    };
    if let Some(id) = &r.upserted_id {
        d.insert("upsertedId", id.clone());
    }
    d
}

/// How a write picks its documents: the sort, collation, hint and `let`
/// variables its read of their `_id`s must use too (its filter may name
/// `let` variables; a collation changes what matches).
#[derive(Clone, Default)]
struct Targeting {
    sort: Option<Document>,
    collation: Option<Collation>,
    hint: Option<Hint>,
    let_vars: Option<Document>,
}

impl Targeting {
    fn of_update(o: &UpdateOptions) -> Targeting {
        Targeting {
            sort: o.sort.clone(),
            collation: o.collation.clone(),
            hint: o.hint.clone(),
            let_vars: o.let_vars.clone(),
        }
    }

    fn of_delete(o: &DeleteOptions) -> Targeting {
        Targeting {
            sort: None,
            collation: o.collation.clone(),
            hint: o.hint.clone(),
            let_vars: o.let_vars.clone(),
        }
    }
}

/// The `_id` of the document a single-document write would pick now.
async fn target_id(
    t: &Target<'_>,
    filter: &Document,
    how: &Targeting,
) -> Result<Option<Bson>, SyncError> {
    let how = how.clone();
    let opts = FindOneOptions::builder()
        .projection(doc! { "_id": 1 })
        .sort(how.sort)
        .collation(how.collation)
        .hint(how.hint)
        .let_vars(how.let_vars)
        .build();
    let found = t.docs().find_one(filter.clone()).with_options(opts).await?;
    Ok(found.and_then(|d| d.get("_id").cloned()))
}

/// The `_id`s of every document a multi-document write would change now
/// (such a write has no sort).
async fn target_ids(
    t: &Target<'_>,
    filter: &Document,
    how: &Targeting,
) -> Result<Vec<Bson>, SyncError> {
    use futures_util::TryStreamExt;
    let how = how.clone();
    let opts = FindOptions::builder()
        .projection(doc! { "_id": 1 })
        .collation(how.collation)
        .hint(how.hint)
        .let_vars(how.let_vars)
        .build();
    let cursor = t.docs().find(filter.clone()).with_options(opts).await?;
    let docs: Vec<Document> = cursor.try_collect().await?;
    let mut seen = std::collections::HashSet::new();
    Ok(docs
        .into_iter()
        .filter_map(|d| d.get("_id").cloned())
        .filter(|id| seen.insert(crate::capture::key_of("", id).id))
        .collect())
}

fn nothing() -> Bson {
    Bson::Document(doc! { "$in": [] })
}

pub async fn update_one(t: &Target<'_>, p: Payload, replace: bool) -> Result<Document, SyncError> {
    let filter = p.doc("filter")?;
    let change = if replace {
        Change::Replace(p.bytes_doc("replacement")?)
    } else {
        Change::Update(p.update("update")?)
    };
    let (opts, _) = p.options::<UpdateOptions>()?;
    if !t.replicated {
        return Ok(update_result(
            &run_update(t, filter, &change, &opts, false).await?,
        ));
    }
    if let Some(id) = t.pinned(&filter, opts.collation.as_ref()).await? {
        let r = t
            .journaled(&[id], run_update(t, filter, &change, &opts, false))
            .await?;
        return Ok(update_result(&r));
    }
    let mut fixed = opts.clone();
    fixed.upsert = Some(false);
    let how = Targeting::of_update(&opts);
    for attempt in 0.. {
        for _ in 0..RETARGET_TRIES {
            let Some(id) = target_id(t, &filter, &how).await? else {
                break;
            };
            let pinned = restrict(&filter, id.clone());
            let r = t
                .journaled(&[id], run_update(t, pinned, &change, &fixed, false))
                .await?;
            if r.matched_count > 0 {
                return Ok(update_result(&r));
            }
        }
        match none_matched(t, &filter, &change, &opts, false).await {
            Err(e) if lost_upsert_race(&e, attempt) => continue,
            r => return Ok(update_result(&r?)),
        }
    }
    unreachable!("the loop returns")
}

/// An update that found no document to change: run so that it matches
/// none, or, as an upsert, insert under an `_id` journaled first.
async fn none_matched(
    t: &Target<'_>,
    filter: &Document,
    change: &Change,
    opts: &UpdateOptions,
    many: bool,
) -> Result<UpdateResult, SyncError> {
    if opts.upsert != Some(true) {
        return run_update(t, restrict(filter, nothing()), change, opts, many).await;
    }
    let (id, f) = upsert_target(filter, upsert_id(change)?);
    t.journaled(
        std::slice::from_ref(&id),
        run_update(t, f, change, opts, many),
    )
    .await
}

/// The `_id` an upsert that found nothing inserts, and the filter to run it
/// with: a filter naming one `_id` (not pinned as written because a
/// collation applies, see `pinned_id`) inserts that one, and runs as it is
/// (a second `_id` clause would make the server refuse the upsert);
/// otherwise `id` (see `upsert_id`), added to the filter.
fn upsert_target(filter: &Document, id: Bson) -> (Bson, Document) {
    match pinned_id(filter, false) {
        Some(own) => (own, filter.clone()),
        None => (id.clone(), restrict(filter, id)),
    }
}

/// The `_id` an upsert will insert: the one the change itself sets (a
/// replacement's `_id`, `$setOnInsert` or `$set` of `_id`, a pipeline's
/// `$set`/`$addFields` of `_id` to a value), else a new ObjectId. The engine
/// adds it to the filter before the write runs; a different one there would
/// make the server refuse the change of the immutable `_id`.
fn upsert_id(change: &Change) -> Result<Bson, SyncError> {
    match change {
        Change::Replace(r) => {
            if r.get("_id")
                .map_err(|e| SyncError::invalid(e.to_string()))?
                .is_some()
            {
                return Ok(ensure_id(r.clone())?.1);
            }
        }
        Change::Update(Update::Doc(u)) => {
            for op in ["$setOnInsert", "$set"] {
                if let Ok(fields) = u.get_document(op) {
                    if let Some(id) = fields.get("_id") {
                        return Ok(id.clone());
                    }
                }
            }
        }
        Change::Update(Update::Pipeline(stages)) => {
            let mut set = None;
            for stage in stages {
                for op in ["$set", "$addFields"] {
                    if let Some(id) = stage.get_document(op).ok().and_then(|f| f.get("_id")) {
                        set = Some(literal(id).ok_or_else(|| {
                            SyncError::invalid(
                                "an upsert whose pipeline sets _id with an expression cannot be \
                                 replicated: the engine pins the _id before the write runs; set \
                                 _id to a value (or {$literal: ...}) or put it in the filter",
                            )
                        })?);
                    }
                }
            }
            if let Some(id) = set {
                return Ok(id);
            }
        }
    }
    Ok(new_id())
}

/// The value an aggregation expression stands for when it is a constant:
/// `None` for field paths (`"$a"`), variables and operators.
fn literal(v: &Bson) -> Option<Bson> {
    match v {
        Bson::String(s) if s.starts_with('$') => None,
        Bson::Document(d) => {
            if let (1, Some(l)) = (d.len(), d.get("$literal")) {
                return Some(l.clone());
            }
            let mut out = Document::new();
            for (k, x) in d {
                if k.starts_with('$') {
                    return None;
                }
                out.insert(k.clone(), literal(x)?);
            }
            Some(Bson::Document(out))
        }
        Bson::Array(a) => a
            .iter()
            .map(literal)
            .collect::<Option<Vec<_>>>()
            .map(Bson::Array),
        other => Some(other.clone()),
    }
}

pub async fn update_many(t: &Target<'_>, p: Payload) -> Result<Document, SyncError> {
    let filter = p.doc("filter")?;
    let change = Change::Update(p.update("update")?);
    let (opts, _) = p.options::<UpdateOptions>()?;
    if !t.replicated {
        return Ok(update_result(
            &run_update(t, filter, &change, &opts, true).await?,
        ));
    }
    if let Some(id) = t.pinned(&filter, opts.collation.as_ref()).await? {
        let r = t
            .journaled(&[id], run_update(t, filter, &change, &opts, true))
            .await?;
        return Ok(update_result(&r));
    }
    let mut attempt = 0;
    let how = Targeting::of_update(&opts);
    let ids = loop {
        let ids = target_ids(t, &filter, &how).await?;
        if !ids.is_empty() {
            break ids;
        }
        match none_matched(t, &filter, &change, &opts, true).await {
            Err(e) if lost_upsert_race(&e, attempt) => attempt += 1,
            r => return Ok(update_result(&r?)),
        }
    };
    let mut fixed = opts;
    fixed.upsert = Some(false);
    let (mut matched, mut modified) = (0u64, 0u64);
    for chunk in ids.chunks(PIN_CHUNK) {
        let pinned = restrict(&filter, Bson::Document(doc! { "$in": chunk.to_vec() }));
        let r = t
            .journaled(chunk, run_update(t, pinned, &change, &fixed, true))
            .await?;
        matched += r.matched_count;
        modified += r.modified_count;
    }
    Ok(
        doc! { "matchedCount": matched as i64, "modifiedCount": modified as i64, "upsertedCount": 0 },
    )
}

pub async fn delete(t: &Target<'_>, p: Payload, many: bool) -> Result<Document, SyncError> {
    let filter = p.doc("filter")?;
    let (opts, _) = p.options::<DeleteOptions>()?;
    let run = |f: Document| {
        let o = opts.clone();
        async move {
            let c = t.docs();
            let r = if many {
                c.delete_many(f).with_options(o).await?
            } else {
                c.delete_one(f).with_options(o).await?
            };
            Ok::<u64, SyncError>(r.deleted_count)
        }
    };
    let n = if !t.replicated {
        run(filter).await?
    } else if let Some(id) = t.pinned(&filter, opts.collation.as_ref()).await? {
        t.journaled(&[id], run(filter)).await?
    } else if many {
        let ids = target_ids(t, &filter, &Targeting::of_delete(&opts)).await?;
        let mut n = 0;
        for chunk in ids.chunks(PIN_CHUNK) {
            let pinned = restrict(&filter, Bson::Document(doc! { "$in": chunk.to_vec() }));
            n += t.journaled(chunk, run(pinned)).await?;
        }
        n
    } else {
        let mut n = 0;
        let how = Targeting::of_delete(&opts);
        for _ in 0..RETARGET_TRIES {
            let Some(id) = target_id(t, &filter, &how).await? else {
                break;
            };
            n = t
                .journaled(
                    std::slice::from_ref(&id),
                    run(restrict(&filter, id.clone())),
                )
                .await?;
            if n > 0 {
                break;
            }
        }
        n
    };
    Ok(doc! { "deletedCount": n as i64 })
}

/// One findOneAnd* call: the change and the driver's own options struct
/// (deserialized from the Node driver's option names).
enum FamOp {
    Update(Update, FindOneAndUpdateOptions),
    Replace(RawDocumentBuf, FindOneAndReplaceOptions),
    Delete(FindOneAndDeleteOptions),
}

impl FamOp {
    fn parse(p: &Payload, op: &str) -> Result<FamOp, SyncError> {
        Ok(match op {
            "findOneAndUpdate" => {
                let (mut fo, raw) = p.options::<FindOneAndUpdateOptions>()?;
                fo.max_time = max_time(&raw);
                FamOp::Update(p.update("update")?, fo)
            }
            "findOneAndReplace" => {
                let (mut fo, raw) = p.options::<FindOneAndReplaceOptions>()?;
                fo.max_time = max_time(&raw);
                FamOp::Replace(p.bytes_doc("replacement")?, fo)
            }
            _ => {
                let (mut fo, raw) = p.options::<FindOneAndDeleteOptions>()?;
                fo.max_time = max_time(&raw);
                FamOp::Delete(fo)
            }
        })
    }

    fn upsert(&self) -> bool {
        match self {
            FamOp::Update(_, o) => o.upsert == Some(true),
            FamOp::Replace(_, o) => o.upsert == Some(true),
            FamOp::Delete(_) => false,
        }
    }

    fn returns_after(&self) -> bool {
        let r = match self {
            FamOp::Update(_, o) => &o.return_document,
            FamOp::Replace(_, o) => &o.return_document,
            FamOp::Delete(_) => &None,
        };
        matches!(r, Some(ReturnDocument::After))
    }

    /// How it picks its document.
    fn targeting(&self) -> Targeting {
        let (sort, collation, hint, let_vars) = match self {
            FamOp::Update(_, o) => (&o.sort, &o.collation, &o.hint, &o.let_vars),
            FamOp::Replace(_, o) => (&o.sort, &o.collation, &o.hint, &o.let_vars),
            FamOp::Delete(o) => (&o.sort, &o.collation, &o.hint, &o.let_vars),
        };
        Targeting {
            sort: sort.clone(),
            collation: collation.clone(),
            hint: hint.clone(),
            let_vars: let_vars.clone(),
        }
    }

    /// The same call that never inserts (for a write pinned to a found `_id`).
    fn without_upsert(&self) -> FamOp {
        match self {
            FamOp::Update(u, o) => {
                let mut o = o.clone();
                o.upsert = Some(false);
                FamOp::Update(u.clone(), o)
            }
            FamOp::Replace(r, o) => {
                let mut o = o.clone();
                o.upsert = Some(false);
                FamOp::Replace(r.clone(), o)
            }
            FamOp::Delete(o) => FamOp::Delete(o.clone()),
        }
    }

    fn upsert_id(&self) -> Result<Bson, SyncError> {
        match self {
            FamOp::Replace(r, _) => upsert_id(&Change::Replace(r.clone())),
            FamOp::Update(u, _) => upsert_id(&Change::Update(u.clone())),
            FamOp::Delete(_) => Ok(new_id()),
        }
    }

    async fn run(
        &self,
        t: &Target<'_>,
        filter: Document,
    ) -> Result<Option<RawDocumentBuf>, SyncError> {
        let c = t.raw();
        Ok(match self {
            FamOp::Update(u, o) => {
                c.find_one_and_update(filter, u.clone())
                    .with_options(o.clone())
                    .await?
            }
            FamOp::Replace(r, o) => {
                c.find_one_and_replace(filter, r)
                    .with_options(o.clone())
                    .await?
            }
            FamOp::Delete(o) => {
                c.find_one_and_delete(filter)
                    .with_options(o.clone())
                    .await?
            }
        })
    }
}

/// The reply JS turns into the driver's result: `value`, and the server's
/// `lastErrorObject` (`n`; `updatedExisting` for an update or replace;
/// `upserted`, the new `_id`, when one was inserted).
fn fam_result(
    value: Option<RawDocumentBuf>,
    n: bool,
    updated_existing: Option<bool>,
    upserted: Option<Bson>,
) -> Document {
    let mut leo = doc! { "n": n as i32 };
    if let Some(existed) = updated_existing {
        leo.insert("updatedExisting", existed);
    }
    if let Some(id) = upserted {
        leo.insert("upserted", id);
    }
    let value = match value {
        Some(v) => Bson::Document(Document::try_from(v.as_ref()).unwrap_or_default()),
        None => Bson::Null,
    };
    doc! { "value": value, "lastErrorObject": leo, "ok": 1 }
}

pub async fn find_one_and(t: &Target<'_>, p: Payload, op: &str) -> Result<Document, SyncError> {
    let filter = p.doc("filter")?;
    let fam = FamOp::parse(&p, op)?;
    let is_delete = matches!(fam, FamOp::Delete(_));
    let after = fam.returns_after();
    let updates = |existed: bool| (!is_delete).then_some(existed);
    let how = fam.targeting();
    let pinned = if t.replicated {
        t.pinned(&filter, how.collation.as_ref()).await?
    } else {
        pinned_id(&filter, false)
    };
    if !t.replicated || pinned.is_some() {
        // The driver's reply has no lastErrorObject. The pre-image tells
        // whether a document matched; a returnDocument 'after' upsert
        // returns a document either way, so when the caller asked for the
        // metadata it is looked up first.
        let meta = || -> Result<bool, SyncError> {
            let (_, raw) = p.options::<Document>()?;
            Ok(raw.get_bool("includeResultMetadata").unwrap_or(false))
        };
        let looked = if after && fam.upsert() && meta()? {
            Some(target_id(t, &filter, &how).await?.is_some())
        } else {
            None
        };
        let ids: Vec<Bson> = pinned.iter().cloned().collect();
        let v = t.journaled(&ids, fam.run(t, filter)).await?;
        let existed = looked.unwrap_or(v.is_some() && !(after && fam.upsert()));
        let upserted = if fam.upsert() && !existed {
            let own = v.as_ref().and_then(|d| d.get("_id").ok().flatten());
            own.and_then(|id| Bson::try_from(id.to_raw_bson()).ok())
                .or(pinned)
        } else {
            None
        };
        let n = v.is_some() || fam.upsert();
        return Ok(fam_result(v, n, updates(existed), upserted));
    }
    let pinned_op = fam.without_upsert();
    for attempt in 0.. {
        for _ in 0..RETARGET_TRIES {
            let Some(id) = target_id(t, &filter, &how).await? else {
                break;
            };
            let pinned = restrict(&filter, id.clone());
            let v = t.journaled(&[id], pinned_op.run(t, pinned)).await?;
            if v.is_some() {
                return Ok(fam_result(v, true, updates(true), None));
            }
        }
        if !fam.upsert() {
            return Ok(fam_result(None, false, updates(false), None));
        }
        let (id, pinned) = upsert_target(&filter, fam.upsert_id()?);
        let v = match t
            .journaled(std::slice::from_ref(&id), fam.run(t, pinned))
            .await
        {
            Err(e) if lost_upsert_race(&e, attempt) => continue,
            v => v?,
        };
        let value = if after { v } else { None };
        return Ok(fam_result(value, true, updates(false), Some(id)));
    }
    unreachable!("the loop returns")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::rawdoc;

    #[test]
    fn an_upsert_inserts_the_id_its_change_sets() {
        let id = |c: Change| upsert_id(&c).unwrap();
        let upd = |d: Document| Change::Update(Update::Doc(d));
        let pipe = |v: Vec<Document>| Change::Update(Update::Pipeline(v));
        assert_eq!(
            id(upd(
                doc! { "$setOnInsert": { "_id": "a" }, "$set": { "x": 1 } }
            )),
            Bson::from("a")
        );
        assert_eq!(id(upd(doc! { "$set": { "_id": 5 } })), Bson::Int32(5));
        assert_eq!(
            id(pipe(vec![
                doc! { "$set": { "_id": { "a": [1, "b"] } } },
                doc! { "$addFields": { "_id": { "$literal": "$x" } } }
            ])),
            Bson::from("$x"),
            "the last stage that sets it wins; $literal is its value"
        );
        assert!(matches!(
            id(upd(doc! { "$inc": { "n": 1 } })),
            Bson::ObjectId(_)
        ));
        for computed in [
            Bson::from("$email"),
            Bson::Document(doc! { "$concat": ["a", "$b"] }),
            Bson::Document(doc! { "k": "$b" }),
        ] {
            let e = upsert_id(&pipe(vec![doc! { "$set": { "_id": computed } }])).unwrap_err();
            assert!(e.to_string().contains("expression"), "{e}");
        }
    }

    #[test]
    fn ensure_id_puts_the_id_first_as_the_server_does() {
        let (d, id) = ensure_id(rawdoc! { "a": 1, "_id": "x", "b": 2 }).unwrap();
        assert_eq!(id, Bson::String("x".into()));
        let keys: Vec<&str> = d.iter().map(|e| e.unwrap().0).collect();
        assert_eq!(keys, vec!["_id", "a", "b"]);
        let (d, id) = ensure_id(rawdoc! { "a": 1 }).unwrap();
        assert!(matches!(id, Bson::ObjectId(_)));
        assert_eq!(d.iter().next().unwrap().unwrap().0, "_id");
        let first = rawdoc! { "_id": 7, "a": 1 };
        assert_eq!(
            ensure_id(first.clone()).unwrap().0,
            first,
            "already first: unchanged"
        );
    }
}
