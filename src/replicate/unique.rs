//! A document Atlas refuses for a duplicate key of a secondary unique index
//! that another Atlas document holds, where that other document no longer
//! holds it locally: the states are copied one document at a time, so Atlas
//! can meet a conflict that local never had. A value moved from one
//! document to another (an email freed by a delete and taken by an insert,
//! two documents that swap values) is refused until the document that held
//! it is copied too, and a swap never is (each copy waits for the other).
//!
//! The holder's Atlas copy is stale then. It is journaled, so its current
//! local state is copied after, and its Atlas copy is deleted if it still
//! holds the value (a copy of its newer state that landed meanwhile does
//! not, and is left alone); then the refused document is copied again. A
//! crash after the journal entry and before the delete loses nothing: the
//! holder's copy then frees the value, or the refused document's retry
//! meets the conflict again.
//!
//! Invariants:
//! - only an Atlas document whose `_id` holds another value locally (or is
//!   gone there) is deleted, and only while its Atlas copy holds the value;
//! - a holder that holds the value locally too is a real conflict (local has
//!   no such unique index): the refused document is dead-lettered.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::{Collation, DeleteOptions, FindOneOptions, FindOptions};
use mongodb::Client;

use super::indexes;
use crate::error::SyncError;
use crate::journal::Journal;

/// What was found holding the value on Atlas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// This many stale holders were journaled and their Atlas copies
    /// deleted: the refused document can be copied again.
    Freed(usize),
    /// A holder holds the value locally too.
    Genuine,
    /// Nothing holds it any more (another copy freed it meanwhile).
    Gone,
}

/// Most holders looked at for one refusal (a unique index holds one).
const MAX_HOLDERS: i64 = 10;

/// Frees `value` of the unique index `pattern` of `ns` on Atlas for the
/// document `id`, where stale copies hold it (see the module comment).
pub async fn free(
    journal: &Journal,
    local: &Client,
    atlas: &Client,
    ns: &str,
    id: &Bson,
    (pattern, value): (&Document, &Document),
) -> Result<Holder, SyncError> {
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    // The index's collation decides which values are equal, and its partial
    // filter which documents it holds.
    let index = indexes::list(atlas, db, coll)
        .await?
        .unwrap_or_default()
        .into_iter()
        .find(|i| i.get_document("key").is_ok_and(|k| k == pattern));
    let collation = index
        .as_ref()
        .and_then(|i| i.get_document("collation").ok())
        .map(|c| mongodb::bson::from_document::<Collation>(c.clone()))
        .transpose()
        .map_err(|e| SyncError::Internal(format!("an index collation: {e}")))?;
    // `$eq`: a value that is a document of `$` fields is not an operator.
    let equal: Document = value
        .iter()
        .map(|(k, v)| (k.clone(), Bson::Document(doc! { "$eq": v.clone() })))
        .collect();
    let mut holds = vec![Bson::Document(equal)];
    if let Some(p) = index
        .as_ref()
        .and_then(|i| i.get_document("partialFilterExpression").ok())
    {
        holds.push(Bson::Document(p.clone()));
    }
    let holding = |id_filter: Bson| {
        let mut all = holds.clone();
        all.push(Bson::Document(doc! { "_id": id_filter }));
        doc! { "$and": all }
    };
    let on_atlas = atlas.database(db).collection::<Document>(coll);
    let on_local = local.database(db).collection::<Document>(coll);
    let holders: Vec<Document> = on_atlas
        .find(holding(Bson::Document(doc! { "$ne": id.clone() })))
        .with_options(
            FindOptions::builder()
                .projection(doc! { "_id": 1 })
                .limit(MAX_HOLDERS)
                .collation(collation.clone())
                .build(),
        )
        .await?
        .try_collect()
        .await?;
    let (mut freed, mut genuine) = (0, false);
    for h in holders {
        let Some(hid) = h.get("_id").cloned() else {
            continue;
        };
        let here = on_local
            .find_one(holding(hid.clone()))
            .with_options(
                FindOneOptions::builder()
                    .collation(collation.clone())
                    .build(),
            )
            .await?;
        if here.is_some() {
            genuine = true;
            continue;
        }
        journal
            .append_ready(vec![crate::capture::key_of(ns, &hid)])
            .await?;
        let gone = on_atlas
            .delete_one(holding(hid.clone()))
            .with_options(
                DeleteOptions::builder()
                    .collation(collation.clone())
                    .build(),
            )
            .await?;
        tracing::info!(
            "{ns}: the Atlas copy of _id {hid} held a unique value it no longer holds locally \
             ({value}); deleted ({} document), its current state is copied next",
            gone.deleted_count
        );
        freed += 1;
    }
    Ok(match (freed, genuine) {
        (0, true) => Holder::Genuine,
        (0, false) => Holder::Gone,
        (n, _) => Holder::Freed(n),
    })
}
