//! Which collections a full sync or verify covers.

use std::collections::BTreeSet;

use mongodb::bson::doc;
use mongodb::Client;

use super::{Ctx, ATLAS, LOCAL};
use crate::error::SyncError;

/// The collections of `db`, without views (their documents are another
/// collection's, and they have no indexes of their own).
async fn collection_names(client: &Client, db: &str) -> Result<Vec<String>, SyncError> {
    Ok(client
        .database(db)
        .list_collection_names()
        .filter(doc! { "type": "collection" })
        .await?)
}

/// `requested` entries are `coll` (the default database) or `db.coll`.
/// Without any, every replicated collection of the default database that
/// exists locally or on Atlas (so Atlas-only leftovers are emptied too).
pub async fn resolve_scope(
    ctx: &Ctx,
    requested: Option<Vec<String>>,
) -> Result<Vec<(String, String)>, SyncError> {
    let mut out = BTreeSet::new();
    match requested {
        Some(list) if !list.is_empty() => {
            for entry in list {
                let (db, coll) = match entry.split_once('.') {
                    Some((d, c)) => (d.to_string(), c.to_string()),
                    None => (ctx.default_db.clone(), entry.clone()),
                };
                if db.is_empty() || coll.is_empty() {
                    return Err(SyncError::invalid(format!(
                        "collection {entry:?} is not 'coll' or 'db.coll'"
                    )));
                }
                if !ctx.config.is_replicated(&db, &coll) {
                    return Err(SyncError::invalid(format!(
                        "collection {db}.{coll} is excluded from replication (SYNC_EXCLUDED_COLLECTIONS)"
                    )));
                }
                // A view's documents are its source collection's: copied
                // under the view's name they would become a collection.
                let local = crate::replicate::options::info(&ctx.local, &db, &coll).await?;
                if local.is_some_and(|i| i.kind == "view") {
                    return Err(SyncError::invalid(format!(
                        "{db}.{coll} is a view: name the collection it reads instead \
                         (Atlas's view is created from the local definition)"
                    )));
                }
                out.insert((db, coll));
            }
        }
        _ => {
            let db = ctx.default_db.clone();
            let mut names = collection_names(&ctx.local, &db)
                .await
                .map_err(|e| e.on(LOCAL))?;
            names.extend(
                collection_names(&ctx.atlas.get(), &db)
                    .await
                    .map_err(|e| e.on(ATLAS))?,
            );
            for coll in names {
                if !coll.starts_with("system.") && ctx.config.is_replicated(&db, &coll) {
                    out.insert((db.clone(), coll));
                }
            }
        }
    }
    Ok(out.into_iter().collect())
}
