//! Collection options, copied to Atlas as a state like indexes: when a
//! collection is marked (created, dropped, indexed through the addon, or a
//! full sync ran), the leader makes Atlas's collection of that name match
//! the local one's kind and the options that decide how it stores documents,
//! before it copies the indexes.
//!
//! What is copied: a view (`viewOn`, `pipeline`, `collation`); for a
//! collection, `capped` (`size`, `max`), `collation`, `clusteredIndex`,
//! `expireAfterSeconds` and `changeStreamPreAndPostImages`. Not copied:
//! validators (the local server validated every document; Atlas stores them
//! as they are, including those written with `bypassDocumentValidation`),
//! storage-engine settings, time series collections (Atlas keeps a plain
//! collection of their documents), and changes made later with `collMod`.
//!
//! Invariants:
//! - a collection Atlas lacks is created with the local options while no
//!   batch of that namespace is being copied (see [`hold`]), so a document
//!   copied meanwhile cannot create a plain one first;
//! - Atlas's collection is re-created (dropped, created with the local
//!   options, then every local `_id` journaled again) only when the local
//!   collection has one of the options that cannot change after creation
//!   (`capped`, `collation`, `clusteredIndex`) and Atlas's does not match
//!   it: a plain local collection never costs Atlas its data. The mark
//!   counts the re-creations, so a server that lists options differently
//!   from how they were given cannot make it drop Atlas's data in a loop,
//!   and flags the documents to journal again before the drop is sent, so a
//!   pass that stops after it still leads to them being copied.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use super::indexes::{self, code_of, Mark};
use crate::error::SyncError;
use crate::journal::Journal;

/// Re-creations of one mark's collection before the copy gives up.
const MAX_RECREATES: u32 = 2;

type Gates = Mutex<HashMap<String, Arc<RwLock<()>>>>;

static GATES: once_cell::sync::Lazy<Gates> = once_cell::sync::Lazy::new(Default::default);

fn gate(ns: &str) -> Arc<RwLock<()>> {
    let mut g = GATES.lock().unwrap_or_else(|p| p.into_inner());
    g.entry(ns.to_string()).or_default().clone()
}

/// Held by the replicator while it copies a batch of `ns`.
pub async fn copying(ns: &str) -> OwnedRwLockReadGuard<()> {
    gate(ns).read_owned().await
}

/// Held while Atlas's collection `ns` is created or re-created: no batch of
/// it is copied meanwhile.
pub(super) async fn hold(ns: &str) -> OwnedRwLockWriteGuard<()> {
    gate(ns).write_owned().await
}

/// One `listCollections` entry: its kind and options.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    pub kind: String,
    pub options: Document,
}

/// `db.coll` as `listCollections` describes it; `None` if it does not exist.
pub async fn info(client: &Client, db: &str, coll: &str) -> mongodb::error::Result<Option<Info>> {
    let reply = client
        .database(db)
        .run_command(doc! { "listCollections": 1, "filter": { "name": coll } })
        .await?;
    let first = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .map_err(|_| mongodb::error::Error::custom("listCollections answered without a cursor"))?
        .iter()
        .find_map(|v| v.as_document().cloned());
    Ok(first.map(|spec| Info {
        kind: spec.get_str("type").unwrap_or("collection").to_string(),
        options: spec.get_document("options").cloned().unwrap_or_default(),
    }))
}

/// Whether collection options make a capped collection.
pub fn is_capped(options: &Document) -> bool {
    options.get("capped").is_some_and(indexes::truthy)
}

/// Options that cannot change once the collection exists.
const FIXED: &[&str] = &["capped", "collation", "clusteredIndex"];

/// Whether a local collection has an option Atlas's can only get when it
/// is created.
pub fn has_fixed(local: &Info) -> bool {
    local.kind == "collection" && FIXED.iter().any(|f| local.options.contains_key(*f))
}

/// The `create` command that makes a collection like `local` (see the
/// module comment for what is copied).
pub fn create_command(coll: &str, local: &Info) -> Document {
    let copied: &[&str] = if local.kind == "view" {
        &["viewOn", "pipeline", "collation"]
    } else {
        &[
            "capped",
            "size",
            "max",
            "collation",
            "clusteredIndex",
            "expireAfterSeconds",
            "changeStreamPreAndPostImages",
        ]
    };
    let mut cmd = doc! { "create": coll };
    for f in copied {
        let Some(v) = local.options.get(*f) else {
            continue;
        };
        let v = match (*f, v) {
            // The listed form carries the index format version; `create`
            // takes the key, `unique` and the name.
            ("clusteredIndex", Bson::Document(c)) => {
                let mut c = c.clone();
                c.remove("v");
                Bson::Document(c)
            }
            // The ICU version belongs to the server that lists it.
            ("collation", Bson::Document(c)) => {
                let mut c = c.clone();
                c.remove("version");
                Bson::Document(c)
            }
            _ => v.clone(),
        };
        cmd.insert(*f, v);
    }
    cmd
}

/// Whether Atlas's collection (`atlas`) lacks a fixed option the local one
/// (`local`) has, or has it otherwise (see [`fixed_differences`]).
pub fn fixed_differ(local: &Document, atlas: &Document) -> bool {
    !fixed_differences(local, atlas).is_empty()
}

/// The fixed options the local collection (`local`) has and Atlas's
/// (`atlas`) lacks or has otherwise. Only what the local collection sets
/// counts, and a collation field only one side lists is no difference (one
/// server lists every default, another only what was given).
pub fn fixed_differences(local: &Document, atlas: &Document) -> Vec<&'static str> {
    let num = |d: &Document, f: &str| -> f64 {
        match d.get(f) {
            Some(Bson::Int32(i)) => f64::from(*i),
            Some(Bson::Int64(i)) => *i as f64,
            Some(Bson::Double(x)) => *x,
            _ => 0.0,
        }
    };
    let flag = |d: &Document, f: &str| d.get(f).is_some_and(indexes::truthy);
    // Older servers list the size rounded up to a multiple of 256, newer
    // ones as given; a cap of documents at or below 0, or at 2^31-1, is
    // no cap (newer servers list 0 as 2^31-1).
    let size = |d: &Document| (num(d, "size") / 256.0).ceil();
    let max = |d: &Document| {
        let m = num(d, "max");
        if m <= 0.0 || m >= f64::from(i32::MAX) {
            0.0
        } else {
            m
        }
    };
    let mut out = Vec::new();
    if flag(local, "capped")
        && (!flag(atlas, "capped") || size(local) != size(atlas) || max(local) != max(atlas))
    {
        out.push("capped");
    }
    if let Ok(want) = local.get_document("collation") {
        let differs = match atlas.get_document("collation") {
            Err(_) => true,
            Ok(have) => {
                want.get("locale") != have.get("locale")
                    || want.iter().any(|(k, v)| {
                        k != "version" && have.get(k).is_some_and(|h| !indexes::same_value(v, h))
                    })
            }
        };
        if differs {
            out.push("collation");
        }
    }
    if let Ok(want) = local.get_document("clusteredIndex") {
        let key = |d: &Document| d.get_document("key").cloned().unwrap_or_default();
        let same = atlas
            .get_document("clusteredIndex")
            .is_ok_and(|have| indexes::same_keys(&key(want), &key(have)));
        if !same {
            out.push("clusteredIndex");
        }
    }
    out
}

/// What verify reports of a local collection with fixed options: the names
/// of those Atlas's lacks or has otherwise, or `type` if Atlas has a view of
/// that name, or nothing.
pub async fn differences(
    local: &Client,
    atlas: &Client,
    db: &str,
    coll: &str,
) -> mongodb::error::Result<Vec<String>> {
    let (want, have) = tokio::try_join!(info(local, db, coll), info(atlas, db, coll))?;
    let Some(want) = want else {
        return Ok(Vec::new());
    };
    if !has_fixed(&want) {
        return Ok(Vec::new());
    }
    Ok(match have {
        Some(h) if h.kind == want.kind => fixed_differences(&want.options, &h.options)
            .into_iter()
            .map(String::from)
            .collect(),
        _ => vec!["type".to_string()],
    })
}

/// What [`copy`] did to Atlas's collection.
#[derive(Debug, PartialEq)]
pub enum Copied {
    /// Nothing to do (it matches, or there is nothing to copy).
    Nothing,
    Created,
    /// A view's definition was changed.
    Modified,
    /// Dropped and created again: the local documents were journaled again.
    Recreated,
    /// A newer call marked the collection meanwhile: the next pass.
    Later,
}

/// Makes Atlas's collection `ns` match the local one's kind and options
/// (see the module comment). Atlas's indexes are copied after this.
pub async fn copy(
    journal: &Journal,
    local: &Client,
    atlas: &Client,
    ns: &str,
    mark: &Mark,
) -> Result<Copied, SyncError> {
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    let Some(want) = info(local, db, coll).await? else {
        return Ok(Copied::Nothing);
    };
    if want.kind == "timeseries" {
        return Ok(Copied::Nothing);
    }
    let held = if want.kind == "collection" {
        Some(hold(ns).await)
    } else {
        None
    };
    let have = info(atlas, db, coll).await?;
    let Some(have) = have else {
        create(atlas, db, coll, &want).await?;
        return Ok(Copied::Created);
    };
    if have.kind != want.kind {
        return Err(SyncError::Conflict(format!(
            "Atlas has a {} named {ns} where the local server has a {}; left as it is",
            have.kind, want.kind
        )));
    }
    if want.kind == "view" {
        let def = |o: &Document| (o.get("viewOn").cloned(), o.get("pipeline").cloned());
        if def(&want.options) == def(&have.options) {
            return Ok(Copied::Nothing);
        }
        let mut cmd = doc! { "collMod": coll };
        for f in ["viewOn", "pipeline"] {
            if let Some(v) = want.options.get(f) {
                cmd.insert(f, v.clone());
            }
        }
        atlas.database(db).run_command(cmd).await?;
        return Ok(Copied::Modified);
    }
    if !fixed_differ(&want.options, &have.options) {
        return Ok(Copied::Nothing);
    }
    if mark.recreates >= MAX_RECREATES {
        return Err(SyncError::Conflict(format!(
            "Atlas's collection {ns} still has other options than the local one after \
             re-creating it {MAX_RECREATES} times; left as it is (local: {}, Atlas: {})",
            fixed_of(&want.options),
            fixed_of(&have.options)
        )));
    }
    // Recorded before the drop: the count bounds the drops, and the local
    // documents are journaled again ([`rejournal`]) even if this pass stops
    // after the drop.
    let counted = indexes::update_mark(journal, ns, mark.n, |m| {
        m.recreates += 1;
        m.rejournal = true;
    });
    if !counted.await? {
        return Ok(Copied::Later);
    }
    replace_on_atlas(local, atlas, db, coll).await?;
    drop(held);
    Ok(Copied::Recreated)
}

/// If Atlas's collection `ns` was dropped for a re-creation (by this pass
/// or one that stopped), journals every local `_id` again and clears the
/// flag. Runs after [`copy`], outside its time limit: it scans the whole
/// local collection.
pub async fn rejournal(journal: &Journal, local: &Client, ns: &str) -> Result<(), SyncError> {
    let Some((_, mark)) = indexes::marks(journal)
        .await?
        .into_iter()
        .find(|(m, _)| m == ns)
    else {
        return Ok(());
    };
    if !mark.rejournal {
        return Ok(());
    }
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    indexes::journal_ids(journal, local, ns, db, coll, None).await?;
    // Not cleared if a newer call marked it meanwhile: journaled again then.
    indexes::update_mark(journal, ns, mark.n, |m| m.rejournal = false).await?;
    Ok(())
}

/// Drops Atlas's `db.coll` (gone already is fine), then, if the local one
/// exists, creates it like that one (a time series collection is left for
/// the copies to create); returns the local one as it was then. The caller
/// holds the gate ([`hold`]).
pub(super) async fn replace_on_atlas(
    local: &Client,
    atlas: &Client,
    db: &str,
    coll: &str,
) -> Result<Option<Info>, SyncError> {
    match atlas.database(db).run_command(doc! { "drop": coll }).await {
        Err(e) if code_of(&e) != Some(26) => return Err(e.into()),
        _ => {}
    }
    let now = info(local, db, coll).await?;
    if let Some(l) = now.as_ref().filter(|l| l.kind != "timeseries") {
        create(atlas, db, coll, l).await?;
    }
    Ok(now)
}

/// Creates Atlas's `db.coll` like the local one (see [`create_command`]).
async fn create(atlas: &Client, db: &str, coll: &str, want: &Info) -> Result<(), SyncError> {
    atlas
        .database(db)
        .run_command(create_command(coll, want))
        .await?;
    Ok(())
}

/// The fixed options of a listing, for a message.
fn fixed_of(options: &Document) -> Document {
    FIXED
        .iter()
        .chain(&["size", "max"])
        .filter_map(|f| options.get(*f).map(|v| (f.to_string(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coll(options: Document) -> Info {
        Info {
            kind: "collection".into(),
            options,
        }
    }

    #[test]
    fn the_create_command_copies_what_decides_storage_and_no_validator() {
        let local = coll(doc! {
            "capped": true, "size": 4096, "max": 5,
            "validator": { "a": { "$type": "int" } }, "validationLevel": "strict",
            "collation": { "locale": "fr", "strength": 2, "version": "57.1" },
            "storageEngine": { "wiredTiger": {} },
        });
        assert_eq!(
            create_command("c", &local),
            doc! { "create": "c", "capped": true, "size": 4096, "max": 5,
            "collation": { "locale": "fr", "strength": 2 } }
        );
        let clustered = coll(doc! {
            "clusteredIndex": { "v": 2, "key": { "_id": 1 }, "name": "_id_", "unique": true },
            "expireAfterSeconds": 60_i64,
        });
        assert_eq!(
            create_command("k", &clustered),
            doc! { "create": "k",
            "clusteredIndex": { "key": { "_id": 1 }, "name": "_id_", "unique": true },
            "expireAfterSeconds": 60_i64 }
        );
        let view = Info {
            kind: "view".into(),
            options: doc! { "viewOn": "c", "pipeline": [{ "$match": { "a": 1 } }] },
        };
        assert_eq!(
            create_command("v", &view),
            doc! { "create": "v", "viewOn": "c", "pipeline": [{ "$match": { "a": 1 } }] }
        );
    }

    #[test]
    fn only_a_fixed_option_the_local_collection_has_can_differ() {
        let plain = doc! {};
        let capped = doc! { "capped": true, "size": 4096 };
        assert!(fixed_differ(&capped, &plain));
        assert!(!fixed_differ(
            &capped,
            &doc! { "capped": 1, "size": 4096_i64 }
        ));
        assert!(fixed_differ(
            &capped,
            &doc! { "capped": true, "size": 8192 }
        ));
        // Rounded up to a multiple of 256 by older servers.
        let odd = doc! { "capped": true, "size": 1000 };
        assert!(!fixed_differ(&odd, &doc! { "capped": true, "size": 1024 }));
        assert!(fixed_differ(&odd, &doc! { "capped": true, "size": 1280 }));
        // No cap on the number of documents, however it is listed.
        let no_max = doc! { "capped": true, "size": 4096, "max": i32::MAX };
        assert!(!fixed_differ(&capped, &no_max));
        assert!(!fixed_differ(
            &no_max,
            &doc! { "capped": true, "size": 4096, "max": 0 }
        ));
        assert!(fixed_differ(
            &doc! { "capped": true, "size": 4096, "max": 5 },
            &capped
        ));
        // A plain local collection never asks for Atlas's to be re-created.
        assert!(!fixed_differ(&plain, &capped));
        assert!(!fixed_differ(
            &plain,
            &doc! { "collation": { "locale": "fr" } }
        ));

        let fr = doc! { "collation": { "locale": "fr", "strength": 2 } };
        let fr_listed = doc! { "collation": {
        "locale": "fr", "caseLevel": false, "strength": 2, "version": "57.1" } };
        assert!(!fixed_differ(&fr, &fr_listed), "defaults one server lists");
        let mut other_version = fr_listed.clone();
        other_version.insert(
            "collation",
            doc! { "locale": "fr", "strength": 2, "version": "64" },
        );
        assert!(!fixed_differ(&fr_listed, &other_version));
        assert!(fixed_differ(
            &fr,
            &doc! { "collation": { "locale": "de", "strength": 2 } }
        ));
        assert!(fixed_differ(
            &fr,
            &doc! { "collation": { "locale": "fr", "strength": 3 } }
        ));
        assert!(fixed_differ(&fr, &plain));

        let clustered = doc! { "clusteredIndex": { "key": { "_id": 1 }, "unique": true } };
        assert!(fixed_differ(&clustered, &plain));
        assert!(!fixed_differ(
            &clustered,
            &doc! { "clusteredIndex": { "v": 2, "key": { "_id": 1 }, "name": "_id_", "unique": true } }
        ));
    }
}
