//! `bulkWrite`: the driver's operation list, run in order through the single
//! methods (so each is pinned and journaled the same way); runs of
//! `insertOne` go to the server as one `insertMany`.

use mongodb::bson::{doc, Document, RawBson, RawBsonRef, RawDocument, RawDocumentBuf};
use mongodb::error::{ErrorKind, WriteFailure};

use super::payload::Payload;
use super::{write, Target};
use crate::error::SyncError;

const OPS: &[&str] = &[
    "insertOne",
    "updateOne",
    "updateMany",
    "replaceOne",
    "deleteOne",
    "deleteMany",
];

/// Totals in the driver's `BulkWriteResult` shape, plus `writeErrors`.
#[derive(Default)]
struct Totals {
    inserted: i64,
    matched: i64,
    modified: i64,
    deleted: i64,
    upserted: i64,
    inserted_ids: Document,
    upserted_ids: Document,
    errors: Vec<Document>,
}

fn invalid(i: usize, msg: &str) -> SyncError {
    SyncError::invalid(format!("bulkWrite: operation {i} {msg}"))
}

/// bulkWrite's own options that hold for each of its operations (the
/// driver sends them with every command of the bulk): `let` and `comment`
/// for all of them, `bypassDocumentValidation` for those that write
/// documents. Inserts take the last two only.
fn shared_options(opts: &Document) -> Result<Vec<(&'static str, RawBson)>, SyncError> {
    let mut out = Vec::new();
    for k in ["let", "comment", "bypassDocumentValidation"] {
        if let Some(v) = opts.get(k) {
            let v = RawBson::try_from(v.clone())
                .map_err(|e| SyncError::invalid(format!("bulkWrite: option '{k}': {e}")))?;
            out.push((k, v));
        }
    }
    Ok(out)
}

/// Splits `{ updateOne: { filter, update, upsert, ... } }` into the method
/// name and a payload `{ filter, update, options: { upsert, ... } }`, with
/// bulkWrite's `shared` options added.
fn to_payload(
    i: usize,
    op: &RawDocument,
    shared: &[(&'static str, RawBson)],
) -> Result<(String, Payload), SyncError> {
    let mut it = op.iter();
    let (name, body) = match (it.next(), it.next()) {
        (Some(Ok((name, RawBsonRef::Document(body)))), None) if OPS.contains(&name) => (name, body),
        _ => {
            return Err(invalid(
                i,
                &format!("must be one of {{ {}: {{...}} }}", OPS.join(" | ")),
            ))
        }
    };
    let mut payload = RawDocumentBuf::new();
    let mut options = RawDocumentBuf::new();
    for el in body.iter() {
        let (k, v) = el.map_err(|e| invalid(i, &e.to_string()))?;
        match k {
            "filter" | "update" | "replacement" => payload.append(k, v.to_raw_bson()),
            "document" => payload.append("doc", v.to_raw_bson()),
            _ => options.append(k, v.to_raw_bson()),
        }
    }
    let deletes = name == "deleteOne" || name == "deleteMany";
    for (k, v) in shared {
        let applies = match *k {
            "let" => name != "insertOne",
            "bypassDocumentValidation" => !deletes,
            _ => true,
        };
        if applies && options.get(k).ok().flatten().is_none() {
            options.append(*k, v.clone());
        }
    }
    payload.append("options", options);
    Ok((
        name.to_string(),
        Payload::from_bytes(payload.into_bytes(), name)?,
    ))
}

fn write_error(index: usize, e: &SyncError) -> Option<Document> {
    let SyncError::Mongo(m) = e else { return None };
    let (code, msg, info) = match m.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => {
            (w.code, w.message.clone(), w.details.clone())
        }
        ErrorKind::Command(c) => (c.code, c.message.clone(), None),
        _ => return None,
    };
    Some(entry(index, code, msg, info))
}

/// One entry of `writeErrors`, with the fields of the driver's.
fn entry(index: usize, code: i32, errmsg: String, info: Option<Document>) -> Document {
    let mut d = doc! { "index": index as i64, "code": code, "errmsg": errmsg };
    if let Some(info) = info {
        d.insert("errInfo", info);
    }
    d
}

pub async fn bulk_write(t: &Target<'_>, p: Payload) -> Result<Document, SyncError> {
    let ops = p.bytes_docs("ops")?;
    if ops.is_empty() {
        return Err(SyncError::invalid(
            "bulkWrite: 'ops' must be a non-empty array of operations",
        ));
    }
    let (opts, _) = p.options::<Document>()?;
    let ordered = opts.get_bool("ordered").unwrap_or(true);
    let shared = shared_options(&opts)?;
    let mut parsed = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        parsed.push(to_payload(i, op, &shared)?);
    }
    let mut tot = Totals::default();
    let mut i = 0;
    while i < parsed.len() {
        // A run of inserts becomes one insertMany.
        let run_end = (i..parsed.len())
            .find(|&j| parsed[j].0 != "insertOne")
            .unwrap_or(parsed.len());
        let stop = if run_end > i {
            let r = insert_run(t, &parsed[i..run_end], i, ordered, &shared, &mut tot).await?;
            i = run_end;
            r
        } else {
            let (name, payload) = &parsed[i];
            let r = single(t, name, payload, i, &mut tot).await?;
            i += 1;
            r
        };
        if stop && ordered {
            break;
        }
    }
    Ok(doc! {
        "insertedCount": tot.inserted,
        "matchedCount": tot.matched,
        "modifiedCount": tot.modified,
        "deletedCount": tot.deleted,
        "upsertedCount": tot.upserted,
        "insertedIds": tot.inserted_ids,
        "upsertedIds": tot.upserted_ids,
        "writeErrors": tot.errors,
    })
}

/// Runs one non-insert operation; `Ok(true)` if it failed with a write error.
async fn single(
    t: &Target<'_>,
    name: &str,
    p: &Payload,
    i: usize,
    tot: &mut Totals,
) -> Result<bool, SyncError> {
    let p = p.clone_payload()?;
    let r = match name {
        "updateOne" => write::update_one(t, p, false).await,
        "replaceOne" => write::update_one(t, p, true).await,
        "updateMany" => write::update_many(t, p).await,
        "deleteOne" => write::delete(t, p, false).await,
        _ => write::delete(t, p, true).await,
    };
    match r {
        Ok(d) => {
            tot.matched += d.get_i64("matchedCount").unwrap_or(0);
            tot.modified += d.get_i64("modifiedCount").unwrap_or(0);
            tot.deleted += d.get_i64("deletedCount").unwrap_or(0);
            if let Some(id) = d.get("upsertedId") {
                tot.upserted += 1;
                tot.upserted_ids.insert(i.to_string(), id.clone());
            }
            Ok(false)
        }
        Err(e) => match write_error(i, &e) {
            Some(we) => {
                tot.errors.push(we);
                Ok(true)
            }
            None => Err(e),
        },
    }
}

/// Runs consecutive inserts as one insertMany; `Ok(true)` on a write error.
async fn insert_run(
    t: &Target<'_>,
    run: &[(String, Payload)],
    first: usize,
    ordered: bool,
    shared: &[(&'static str, RawBson)],
    tot: &mut Totals,
) -> Result<bool, SyncError> {
    let mut docs = Vec::with_capacity(run.len());
    let mut ids = Vec::with_capacity(run.len());
    for (_, p) in run {
        let (d, id) = write::ensure_id(p.bytes_doc("doc")?)?;
        ids.push(id);
        docs.push(d);
    }
    let mut payload = RawDocumentBuf::new();
    let mut arr = mongodb::bson::RawArrayBuf::new();
    for d in docs {
        arr.push(d);
    }
    payload.append("docs", arr);
    let mut options = mongodb::bson::rawdoc! { "ordered": ordered };
    for (k, v) in shared.iter().filter(|(k, _)| *k != "let") {
        options.append(*k, v.clone());
    }
    payload.append("options", options);
    let p = Payload::from_bytes(payload.into_bytes(), "bulkWrite")?;
    match write::insert_many(t, p).await {
        Ok(_) => {
            for (k, id) in ids.into_iter().enumerate() {
                tot.inserted += 1;
                tot.inserted_ids.insert((first + k).to_string(), id);
            }
            Ok(false)
        }
        Err(SyncError::Mongo(m)) if matches!(m.kind.as_ref(), ErrorKind::InsertMany(_)) => {
            let ErrorKind::InsertMany(im) = m.kind.as_ref() else {
                unreachable!()
            };
            let failed: Vec<usize> = im.write_errors.iter().flatten().map(|w| w.index).collect();
            let cut = if ordered {
                failed.iter().min().copied().unwrap_or(ids.len())
            } else {
                ids.len()
            };
            for (k, id) in ids.into_iter().enumerate().take(cut) {
                if !failed.contains(&k) {
                    tot.inserted += 1;
                    tot.inserted_ids.insert((first + k).to_string(), id);
                }
            }
            for w in im.write_errors.iter().flatten() {
                tot.errors.push(entry(
                    first + w.index,
                    w.code,
                    w.message.clone(),
                    w.details.clone(),
                ));
            }
            Ok(!failed.is_empty())
        }
        Err(e) => Err(e),
    }
}

impl Payload {
    fn clone_payload(&self) -> Result<Payload, SyncError> {
        Payload::from_bytes(self.as_bytes().to_vec(), self.method())
    }
}
