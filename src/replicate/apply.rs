//! Applying one batch: take the current local state of each document, then
//! make Atlas hold exactly that (insert or replace with upsert, or delete if
//! gone).
//!
//! Invariants:
//! - the copy is idempotent: it writes a state, never replays an operation,
//!   so a retry can never apply `$inc` twice;
//! - the state copied is at least as new as every change the batch covers:
//!   it is read from the local server after the entries were ready, or it is
//!   the bytes the newest entry carries (a successful insert's stored
//!   document, or a full sync's scan proven current, see `reconcile`): no
//!   change of that document came after it in the batch, or it would be the
//!   newest;
//! - documents travel as BSON bytes, never re-encoded.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, rawdoc, Bson, Document, RawArrayBuf, RawDocument, RawDocumentBuf};
use mongodb::{Client, Database};

use crate::journal::DocKey;

/// Keeps one Atlas command well under the 48 MB message limit.
const MAX_COMMAND_BYTES: usize = 8 * 1024 * 1024;

/// Which server an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Local,
    Atlas,
}

/// The outcome for one document of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum DocResult {
    Ok,
    /// Atlas refused this document: server code and message.
    Refused(i32, String),
    /// Atlas refused this document for a duplicate key of a secondary
    /// unique index another of its documents holds: the message, and the
    /// index's key pattern and the value (the server's `keyPattern` and
    /// `keyValue`).
    Duplicate(String, Box<(Document, Document)>),
    /// The local server refused to read this document back by its `_id`
    /// (e.g. an `_id` that no query can name, left by an insert the server
    /// refused): server code and message. Nothing was sent to Atlas for it.
    Unreadable(i32, String),
}

/// An `_id` as the server compares it: the bytes of its canonical form
/// (`capture::canonical_id`), so 1, 1L, 1.0 and NumberDecimal("1.0") pair
/// with each other, and a key with the document read back for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Canon(Vec<u8>);

pub fn canon_id(id: &Bson) -> Canon {
    Canon(crate::capture::key_of("", id).id)
}

/// The `_id` value stored in a key.
pub fn id_of(key: &DocKey) -> Option<Bson> {
    let d = mongodb::bson::RawDocument::from_bytes(&key.id).ok()?;
    Bson::try_from(d.get("_id").ok()??.to_raw_bson()).ok()
}

/// The `_id` of a document read as raw BSON.
pub fn raw_id(d: &RawDocumentBuf) -> Option<Bson> {
    d.get("_id")
        .ok()
        .flatten()
        .and_then(|v| Bson::try_from(v.to_raw_bson()).ok())
}

/// One document of a batch.
pub struct Item<'a> {
    pub key: &'a DocKey,
    /// Only inserts of new documents changed it: send it as an insert.
    pub insert_only: bool,
    /// The document as its newest entry left it, when that entry carries
    /// it: no need to read the local state back.
    pub doc: Option<&'a [u8]>,
}

impl Item<'_> {
    fn known_state(&self) -> Option<RawDocumentBuf> {
        RawDocumentBuf::from_bytes(self.doc?.to_vec()).ok()
    }
}

/// Copies the current local state of `items` (all of namespace `ns`) to
/// Atlas, from the bytes their newest entry carries when it does, else read
/// back from local. An insert-only document is sent as an insert (cheaper
/// than an upsert); if Atlas has that `_id` already, it is replaced like the
/// others.
/// `Err` means the whole batch failed (nothing can be said per document).
pub async fn apply(
    local: &Client,
    atlas: &Client,
    ns: &str,
    items: &[Item<'_>],
) -> Result<Vec<DocResult>, (Side, mongodb::error::Error)> {
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    let known: Vec<Option<RawDocumentBuf>> = items.iter().map(Item::known_state).collect();
    let unknown: Vec<&DocKey> = items
        .iter()
        .zip(&known)
        .filter(|(_, k)| k.is_none())
        .map(|(i, _)| i.key)
        .collect();
    let (by_id, unreadable) = read_local(local, db, coll, &unknown)
        .await
        .map_err(|e| (Side::Local, e))?;
    let atlas_db = atlas.database(db);
    let mut results = vec![DocResult::Ok; items.len()];
    let mut inserts: Vec<(usize, RawDocumentBuf)> = Vec::new();
    let mut upserts: Vec<(usize, RawDocumentBuf)> = Vec::new();
    let mut deletes: Vec<(usize, Bson)> = Vec::new();
    // A document to copy: an insert if only inserts of new documents
    // changed it, else a replace.
    let mut send = |i: usize, d: RawDocumentBuf| {
        // A document with an empty timestamp the server would fill goes as
        // a replace (see `replace_docs`), never as an insert.
        if items[i].insert_only && !crate::capture::server_fills(d.as_bytes()) {
            inserts.push((i, d));
        } else {
            upserts.push((i, d));
        }
    };
    let mut paired = std::collections::HashSet::new();
    for (i, (item, known)) in items.iter().zip(known).enumerate() {
        if let Some(d) = known {
            send(i, d);
            continue;
        }
        let Some(id) = id_of(item.key) else {
            results[i] = DocResult::Refused(2, "journal key does not hold an _id".into());
            continue;
        };
        // Not `remove`: two keys of one document (journals written before
        // keys were canonical) may both be in this batch.
        let c = canon_id(&id);
        if let Some((code, msg)) = unreadable.get(&c) {
            // Not "gone": nothing is deleted on Atlas for a read that failed.
            results[i] = DocResult::Unreadable(*code, msg.clone());
            continue;
        }
        match by_id.get(&c).cloned() {
            Some(d) => send(i, d),
            None => deletes.push((i, id)),
        }
        paired.insert(c);
    }
    // The read returned a document no key claims: the server matched one of
    // the keys by an equality this pairing does not model (a collection
    // whose default collation ignores case: `_id: "a"` finds "A"). Nothing
    // is deleted on Atlas on the strength of the pairing then: each
    // unmatched key is looked up alone, and the server says what it is.
    if !deletes.is_empty() && by_id.keys().any(|c| !paired.contains(c)) {
        let docs = local.database(db).collection::<RawDocumentBuf>(coll);
        for (i, id) in std::mem::take(&mut deletes) {
            match docs
                .find_one(doc! { "_id": id.clone() })
                .await
                .map_err(|e| (Side::Local, e))?
            {
                Some(d) => send(i, d),
                None => deletes.push((i, id)),
            }
        }
    }
    // Deletes first: a value of a unique index that a deleted document
    // held may be what an insert or a replace of this batch takes.
    if !deletes.is_empty() {
        if let Some(r) = delete_docs(&atlas_db, coll, &deletes)
            .await
            .map_err(|e| (Side::Atlas, e))?
        {
            for (i, _) in &deletes {
                results[*i] = r.clone();
            }
        }
    }
    for chunk in chunk_by_size(inserts) {
        let refused = insert_docs(&atlas_db, coll, &chunk)
            .await
            .map_err(|e| (Side::Atlas, e))?;
        for (pos, r) in refused {
            match r {
                DocResult::Refused(11000, _) => upserts.push(chunk[pos].clone()),
                r => results[chunk[pos].0] = r,
            }
        }
    }
    for chunk in chunk_by_size(upserts) {
        let refused = replace_docs(&atlas_db, coll, &chunk)
            .await
            .map_err(|e| (Side::Atlas, e))?;
        for (pos, r) in refused {
            results[chunk[pos].0] = r;
        }
    }
    Ok(results)
}

/// Documents read back, and `_id`s the server refused to read (code,
/// message), both by canonical `_id`.
type ReadBack = (
    HashMap<Canon, RawDocumentBuf>,
    HashMap<Canon, (i32, String)>,
);

/// The current local documents of `keys`, by canonical `_id`, read with one
/// `_id: {$in}` query. If the server refuses that query itself (not a
/// network or availability error: a server error that will come back the
/// same, such as "cannot nest $ under $in" for an `_id` like `{$x: 1}`,
/// which an insert the server refused can leave in the journal), each `_id`
/// is read alone, so the ones it cannot read are set aside and the others
/// are still copied.
async fn read_local(
    local: &Client,
    db: &str,
    coll: &str,
    keys: &[&DocKey],
) -> mongodb::error::Result<ReadBack> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let docs = local.database(db).collection::<RawDocumentBuf>(coll);
    let ids: Vec<Bson> = keys.iter().filter_map(|k| id_of(k)).collect();
    let found: Vec<RawDocumentBuf> = match docs.find(doc! { "_id": { "$in": &ids } }).await {
        Ok(cursor) => cursor.try_collect().await?,
        Err(e) if refused_query(&e) => return read_one_by_one(&docs, ids).await,
        Err(e) => return Err(e),
    };
    let mut by_id = HashMap::with_capacity(found.len());
    for d in found {
        if let Some(id) = raw_id(&d) {
            by_id.insert(canon_id(&id), d);
        }
    }
    Ok((by_id, HashMap::new()))
}

/// [`read_local`] one `_id` at a time, after the server refused the query
/// for all of them.
async fn read_one_by_one(
    docs: &mongodb::Collection<RawDocumentBuf>,
    ids: Vec<Bson>,
) -> mongodb::error::Result<ReadBack> {
    let mut out: ReadBack = Default::default();
    for id in ids {
        match docs.find_one(doc! { "_id": { "$in": [id.clone()] } }).await {
            Ok(Some(d)) => {
                out.0.insert(canon_id(&id), d);
            }
            Ok(None) => {}
            Err(e) if refused_query(&e) => {
                let code = match e.kind.as_ref() {
                    mongodb::error::ErrorKind::Command(c) => c.code,
                    _ => 0,
                };
                out.1
                    .insert(canon_id(&id), (code, crate::error::describe(&e)));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The server refused the query itself with an error that asking again
/// will not change (a code known to be permanent, such as BadValue). Any
/// other error (a lost connection, a stepdown, an interrupted or killed
/// query, a code not classified) leaves the whole read to be retried, as
/// every local read error was before: a good document is never set aside
/// for a passing error.
fn refused_query(e: &mongodb::error::Error) -> bool {
    matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(_))
        && crate::error::disposition(e) == crate::error::Disposition::Permanent
}

fn chunk_by_size(docs: Vec<(usize, RawDocumentBuf)>) -> Vec<Vec<(usize, RawDocumentBuf)>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for (i, d) in docs {
        let n = d.as_bytes().len() + 64;
        if !cur.is_empty() && bytes + n > MAX_COMMAND_BYTES {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += n;
        cur.push((i, d));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn with_write_concern(db: &Database, mut cmd: RawDocumentBuf) -> RawDocumentBuf {
    if let Some(wc) = db.write_concern() {
        if let Ok(d) = mongodb::bson::to_document(wc) {
            if !d.is_empty() {
                if let Ok(raw) = RawDocumentBuf::from_document(&d) {
                    cmd.append("writeConcern", raw);
                }
            }
        }
    }
    cmd
}

/// Per-statement errors of a write command reply, by statement index.
fn write_errors(reply: &Document) -> Result<Vec<(usize, DocResult)>, mongodb::error::Error> {
    if let Ok(wce) = reply.get_document("writeConcernError") {
        return Err(mongodb::error::Error::custom(format!(
            "write concern error: {wce}"
        )));
    }
    let mut out = Vec::new();
    if let Ok(errs) = reply.get_array("writeErrors") {
        for e in errs.iter().filter_map(Bson::as_document) {
            let idx = match e.get("index") {
                Some(Bson::Int32(i)) => *i as usize,
                Some(Bson::Int64(i)) => *i as usize,
                _ => continue,
            };
            let code = e.get_i32("code").unwrap_or(0);
            let msg = e.get_str("errmsg").unwrap_or("write error").to_string();
            let key = (e.get_document("keyPattern"), e.get_document("keyValue"));
            out.push(match key {
                (Ok(pattern), Ok(value)) if code == 11000 && !pattern.contains_key("_id") => (
                    idx,
                    DocResult::Duplicate(msg, Box::new((pattern.clone(), value.clone()))),
                ),
                _ => (idx, DocResult::Refused(code, msg)),
            });
        }
    }
    Ok(out)
}

/// Whether `d` cannot go to Atlas as a replacement document, and goes as
/// `[{$replaceWith: {$literal: d}}]`, which stores it as it is:
/// - an empty `Timestamp(0, 0)` at its top level (one an update left
///   locally: an insert's was filled by the local server), which MongoDB
///   fills with its own time in an insert or a replacement document, not
///   in the result of a pipeline;
/// - a top-level field name that starts with `$`, which MongoDB stores from
///   an insert (since 5.0) but refuses in a replacement document.
fn needs_literal(d: &RawDocument) -> bool {
    crate::capture::server_fills(d.as_bytes())
        || d.iter().any(|e| e.is_ok_and(|(k, _)| k.starts_with('$')))
}

/// Sends `docs` as one `update` command of replace-with-upsert statements;
/// returns per-document refusals by position in `docs`. Some documents go
/// as the pipeline `[{$replaceWith: {$literal: doc}}]` ([`needs_literal`]).
/// (The SecantusDB test server puts the fields of a pipeline upsert's new
/// document in another order; MongoDB keeps the literal's.)
async fn replace_docs(
    db: &Database,
    coll: &str,
    docs: &[(usize, RawDocumentBuf)],
) -> Result<Vec<(usize, DocResult)>, mongodb::error::Error> {
    let mut list = RawArrayBuf::new();
    for (_, d) in docs {
        let id = d
            .get("_id")
            .ok()
            .flatten()
            .map(|v| v.to_raw_bson())
            .ok_or_else(|| {
                mongodb::error::Error::custom("a local document without _id".to_string())
            })?;
        let mut q = RawDocumentBuf::new();
        q.append("_id", id);
        if needs_literal(d) {
            let mut pipeline = RawArrayBuf::new();
            pipeline.push(rawdoc! { "$replaceWith": { "$literal": d.clone() } });
            list.push(rawdoc! { "q": q, "u": pipeline, "upsert": true });
        } else {
            list.push(rawdoc! { "q": q, "u": d.clone(), "upsert": true });
        }
    }
    let cmd = rawdoc! { "update": coll, "updates": list, "ordered": false };
    let reply = db.run_raw_command(with_write_concern(db, cmd)).await?;
    write_errors(&reply)
}

/// The driver's `insertMany` (unordered): it sends the documents as an
/// OP_MSG document sequence, which the server takes in without parsing one
/// large command document (half the server CPU of an `insert` command run
/// as a plain command, measured on the test server). Returns per-document
/// refusals by position in `docs`.
async fn insert_docs(
    db: &Database,
    coll: &str,
    docs: &[(usize, RawDocumentBuf)],
) -> Result<Vec<(usize, DocResult)>, mongodb::error::Error> {
    let result = db
        .collection::<RawDocumentBuf>(coll)
        .insert_many(docs.iter().map(|(_, d)| d))
        .ordered(false)
        .await;
    let e = match result {
        Ok(_) => return Ok(Vec::new()),
        Err(e) => e,
    };
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
            Ok(failure
                .write_errors
                .iter()
                .flatten()
                .map(|w| (w.index, DocResult::Refused(w.code, w.message.clone())))
                .collect())
        }
        _ => Err(e),
    }
}

async fn delete_docs(
    db: &Database,
    coll: &str,
    ids: &[(usize, Bson)],
) -> Result<Option<DocResult>, mongodb::error::Error> {
    let list: Vec<Bson> = ids.iter().map(|(_, id)| id.clone()).collect();
    let stmt = doc! { "q": { "_id": { "$in": list } }, "limit": 0 };
    let cmd = doc! { "delete": coll, "deletes": [stmt], "ordered": false };
    let cmd = RawDocumentBuf::from_document(&cmd)
        .map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
    let reply = db.run_raw_command(with_write_concern(db, cmd)).await?;
    Ok(write_errors(&reply)?.into_iter().next().map(|(_, r)| r))
}

/// Those of `ids` that `db.coll` on `client` does not have (`_id`s equal as
/// values, 1 and 1.0, are the same document).
pub async fn missing_in(
    client: &Client,
    db: &str,
    coll: &str,
    ids: Vec<Bson>,
) -> mongodb::error::Result<Vec<Bson>> {
    let found: Vec<Document> = client
        .database(db)
        .collection::<Document>(coll)
        .find(doc! { "_id": { "$in": ids.clone() } })
        .projection(doc! { "_id": 1 })
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
    fn a_key_gives_back_its_canonical_id() {
        let oid = mongodb::bson::oid::ObjectId::new();
        for (id, back) in [
            (Bson::ObjectId(oid), Bson::ObjectId(oid)),
            (Bson::Int64(3), Bson::Int32(3)),
            (Bson::String("a".into()), Bson::String("a".into())),
            (
                Bson::Document(doc! { "x": 2.0 }),
                Bson::Document(doc! { "x": 2 }),
            ),
        ] {
            assert_eq!(id_of(&crate::capture::key_of("db.c", &id)), Some(back));
        }
        let not_a_key = DocKey {
            ns: "db.c".into(),
            id: vec![1, 2, 3],
        };
        assert_eq!(id_of(&not_a_key), None);
    }

    #[test]
    fn a_top_level_dollar_field_or_an_empty_timestamp_goes_as_a_literal() {
        use mongodb::bson::{rawdoc, Timestamp};
        let empty = Timestamp {
            time: 0,
            increment: 0,
        };
        assert!(!needs_literal(
            &rawdoc! { "_id": 1, "a": { "$x": 1 }, "b.c": 2 }
        ));
        assert!(needs_literal(&rawdoc! { "_id": 1, "$price": 10 }));
        assert!(needs_literal(&rawdoc! { "_id": 1, "t": empty }));
    }

    #[test]
    fn numeric_ids_compare_by_value() {
        assert_eq!(canon_id(&Bson::Int32(1)), canon_id(&Bson::Double(1.0)));
        assert_eq!(canon_id(&Bson::Int64(1)), canon_id(&Bson::Int32(1)));
        assert_ne!(canon_id(&Bson::Double(1.5)), canon_id(&Bson::Int32(1)));
        assert_ne!(
            canon_id(&Bson::String("1".into())),
            canon_id(&Bson::Int32(1))
        );
        let dec = |s: &str| Bson::Decimal128(s.parse().unwrap());
        assert_eq!(canon_id(&dec("1.0")), canon_id(&Bson::Int32(1)));
        assert_eq!(canon_id(&dec("1.50")), canon_id(&Bson::Double(1.5)));
    }

    #[test]
    fn write_errors_are_read_per_statement() {
        let reply = doc! { "ok": 1, "n": 1, "writeErrors": [{ "index": 1, "code": 11000, "errmsg": "dup" }] };
        assert_eq!(
            write_errors(&reply).unwrap(),
            vec![(1, DocResult::Refused(11000, "dup".into()))]
        );
        assert!(write_errors(&doc! { "ok": 1, "writeConcernError": { "code": 64 } }).is_err());
        let dup = doc! { "index": 0, "code": 11000, "errmsg": "dup", "keyPattern": { "email": 1 }, "keyValue": { "email": "x" } };
        assert_eq!(
            write_errors(&doc! { "ok": 1, "writeErrors": [dup] }).unwrap(),
            vec![(
                0,
                DocResult::Duplicate(
                    "dup".into(),
                    Box::new((doc! { "email": 1 }, doc! { "email": "x" }))
                )
            )]
        );
    }

    #[test]
    fn chunks_respect_the_byte_limit() {
        let big =
            RawDocumentBuf::from_document(&doc! { "s": "x".repeat(3 * 1024 * 1024) }).unwrap();
        let chunks = chunk_by_size((0..5).map(|i| (i, big.clone())).collect());
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
    }
}
