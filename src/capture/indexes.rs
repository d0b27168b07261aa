//! The index methods: run on the local server; on a replicated collection a
//! change also marks the collection in the journal, so the leader copies its
//! indexes to Atlas (see `replicate::indexes`). The mark is committed before
//! the command is sent (a crash, or a command that fails on its way back
//! after the server did it, loses nothing) and again after it (the leader
//! may have copied and cleared the first mark before the command ran); the
//! call resolves after both.

use mongodb::bson::{doc, Bson, Document};

use super::payload::Payload;
use super::{Target, Writer};
use crate::error::SyncError;
use crate::replicate::indexes::{self, name_of, ALL};

/// Options the index commands take from the call's options, as the driver
/// passes them.
const COMMAND_OPTIONS: &[&str] = &["maxTimeMS", "commitQuorum", "comment"];

fn with_options(cmd: Document, p: &Payload) -> Result<Document, SyncError> {
    let mut cmd = cmd;
    cmd.extend(command_options(p)?);
    Ok(cmd)
}

fn command_options(p: &Payload) -> Result<Document, SyncError> {
    let mut cmd = Document::new();
    if let Some(opts) = p.opt_doc("options")? {
        for f in COMMAND_OPTIONS {
            if let Some(v) = opts.get(*f) {
                cmd.insert(*f, v.clone());
            }
        }
    }
    Ok(cmd)
}

async fn mark_as(
    t: &Target<'_>,
    dropped: &[String],
    collection: bool,
    rejournal: bool,
) -> Result<(), SyncError> {
    match (&t.w.journal, t.replicated) {
        (Some(j), true) => indexes::mark_as(j, &t.ns, dropped, collection, rejournal).await,
        _ => Ok(()),
    }
}

/// `createIndexes` with the definitions JS built (`{key, name, ...}`);
/// answers the server's reply.
pub async fn create_indexes(t: &Target<'_>, p: Payload) -> Result<Document, SyncError> {
    let defs = p.docs("indexes")?;
    if defs.is_empty() {
        return Err(SyncError::invalid("createIndexes: no index given"));
    }
    let built: Vec<String> = defs
        .iter()
        .filter_map(|d| d.get_str("name").ok().map(String::from))
        .collect();
    let cmd = with_options(doc! { "createIndexes": t.coll, "indexes": defs }, &p)?;
    let db = t.w.local.database(t.db);
    marked_build(t, &[], false, &built, db.run_command(cmd)).await
}

/// `drop` of the collection; answers the server's reply (a missing
/// collection fails with its NamespaceNotFound, as with the driver). Atlas's
/// collection follows (see `replicate::indexes::copy_drop`).
pub async fn drop_collection(t: &Target<'_>, p: Payload) -> Result<Document, SyncError> {
    let cmd = with_options(doc! { "drop": t.coll }, &p)?;
    forget(t.w, &[&t.ns]);
    let drop = async {
        let out = t.w.local.database(t.db).run_command(cmd).await;
        forget(t.w, &[&t.ns]);
        out
    };
    marked(t, &[], true, drop).await
}

/// Around a command that drops or renames collections `namespaces`, before
/// it (for a call dropped while it runs, `socketTimeoutMS`, whose command
/// lands late) and after it whatever its outcome (it may have happened):
/// bytes an insert stored before are no longer its document's state, so no
/// copy sends them; and the collections' collations are read again.
fn forget(w: &Writer, namespaces: &[&str]) {
    if let Some(j) = &w.journal {
        j.clock().bump_all();
    }
    for ns in namespaces {
        w.forget_collation(ns);
    }
}

/// `renameCollection` of the collection to `to` in the same database, as
/// the driver's `collection.rename`; answers the server's reply. On Atlas
/// the old name follows as after a drop, and the new name as after a drop
/// and a re-creation whose documents were all written again: Atlas's
/// collection of that name (a `dropTarget` one) keeps none of its own
/// documents, and every local `_id` is journaled again (a rename journals
/// no document; see `replicate::options::rejournal`). Both are marked before
/// and after the command, as a drop is.
pub async fn rename_collection(t: &Target<'_>, p: Payload) -> Result<Document, SyncError> {
    let to = match p.value("to")? {
        Some(Bson::String(to)) => to,
        _ => return Err(SyncError::invalid("rename: the new name must be a string")),
    };
    let target = t.w.target(t.db, &to)?;
    let mut cmd = doc! { "renameCollection": &t.ns, "to": &target.ns, "dropTarget": false };
    if let Some(opts) = p.opt_doc("options")? {
        for k in ["dropTarget", "comment"] {
            if let Some(v) = opts.get(k) {
                cmd.insert(k, v.clone());
            }
        }
    }
    let namespaces = [t.ns.as_str(), target.ns.as_str()];
    let both = [(t, false), (&target, true)];
    // A rename the server will refuse is not marked before: a missing
    // source (a mark would drop Atlas's collection of the target's name,
    // which local never had), or a target that exists without `dropTarget`
    // (a mark would copy that whole collection again for nothing). If it
    // goes through anyway (a collection appeared or went meanwhile), both
    // are marked after it, and after any error that is not one of those
    // refusals.
    let drop_target = cmd.get_bool("dropTarget").unwrap_or(false);
    let names = collection_names(
        &t.w.local,
        t.db,
        doc! { "name": { "$in": [t.coll, target.coll] } },
    )
    .await?;
    let refused = !names.iter().any(|n| n == t.coll)
        || (!drop_target && names.iter().any(|n| n == target.coll));
    forget(t.w, &namespaces);
    let run = async {
        let out = t.w.local.database("admin").run_command(cmd).await;
        forget(t.w, &namespaces);
        out
    };
    if !refused {
        return marked_all(&both, &[], true, &[], run).await;
    }
    let out = run.await;
    let as_refused = out
        .as_ref()
        .err()
        .and_then(indexes::code_of)
        .is_some_and(|c| c == 26 || c == 48);
    if !as_refused {
        for (x, rejournal) in both {
            mark_as(x, &[], true, rejournal).await?;
        }
        indexes::wake();
    }
    Ok(out?)
}

/// `dropDatabase` of `db`, as the driver's `db.dropDatabase`; answers the
/// server's reply. Each replicated collection and view local has is marked
/// dropped before and after the command, as by `drop`, so Atlas's follow;
/// collections only Atlas has, and excluded ones, stay there.
pub async fn drop_database(w: &Writer, db: &str, p: Payload) -> Result<Document, SyncError> {
    let names = collection_names(&w.local, db, doc! {}).await?;
    let targets: Vec<Target<'_>> = names
        .iter()
        .filter(|n| !n.starts_with("system."))
        .filter_map(|n| w.target(db, n).ok())
        .collect();
    let namespaces: Vec<&str> = targets.iter().map(|t| t.ns.as_str()).collect();
    let mut cmd = doc! { "dropDatabase": 1 };
    cmd.extend(command_options(&p)?);
    forget(w, &namespaces);
    let all: Vec<(&Target<'_>, bool)> = targets.iter().map(|t| (t, false)).collect();
    let drop = async {
        let out = w.local.database(db).run_command(cmd).await;
        forget(w, &namespaces);
        out
    };
    marked_all(&all, &[], true, &[], drop).await
}

/// The names of the collections and views of `db` that `filter` matches.
async fn collection_names(
    local: &mongodb::Client,
    db: &str,
    filter: Document,
) -> Result<Vec<String>, SyncError> {
    Ok(local
        .database(db)
        .list_collection_names()
        .filter(filter)
        .await?)
}

/// `create` of the collection (or view) with the options JS passed on, as
/// the driver sends them; answers the server's reply. Atlas's collection is
/// created with the options that decide how it stores documents (see
/// `replicate::options`).
pub async fn create_collection(t: &Target<'_>, p: Payload) -> Result<Document, SyncError> {
    let mut cmd = doc! { "create": t.coll };
    if let Some(opts) = p.opt_doc("options")? {
        cmd.extend(opts);
    }
    marked(t, &[], false, t.w.local.database(t.db).run_command(cmd)).await
}

/// `dropIndexes` of one index (by name or by its keys), of several names,
/// or of all (`"*"`); answers the server's reply.
pub async fn drop_indexes(t: &Target<'_>, p: Payload) -> Result<Document, SyncError> {
    let index = p
        .value("index")?
        .ok_or_else(|| SyncError::invalid("dropIndexes: 'index' is required"))?;
    // The names dropped, for the copy to Atlas (which drops only those).
    let names: Vec<String> = match &index {
        Bson::String(n) => vec![n.clone()],
        Bson::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Bson::Document(keys) => indexes::list(&t.w.local, t.db, t.coll)
            .await?
            .unwrap_or_default()
            .iter()
            .filter(|l| {
                l.get_document("key")
                    .is_ok_and(|k| indexes::same_keys(k, keys))
            })
            .map(|l| name_of(l).to_string())
            .collect(),
        _ => {
            return Err(SyncError::invalid(
                "dropIndexes: 'index' must be a name, an array of names, or a key document",
            ))
        }
    };
    let cmd = with_options(doc! { "dropIndexes": t.coll, "index": index }, &p)?;
    let names: Vec<String> = if names.iter().any(|n| n == ALL) {
        vec![ALL.to_string()]
    } else {
        names
    };
    marked(t, &names, false, t.w.local.database(t.db).run_command(cmd)).await
}

/// Runs `command` between two marks of the collection (see the module
/// comment); answers its reply or its error.
async fn marked(
    t: &Target<'_>,
    dropped: &[String],
    collection: bool,
    command: impl std::future::IntoFuture<Output = mongodb::error::Result<Document>>,
) -> Result<Document, SyncError> {
    marked_build(t, dropped, collection, &[], command).await
}

/// [`marked`] for a command that builds the indexes named `built`.
async fn marked_build(
    t: &Target<'_>,
    dropped: &[String],
    collection: bool,
    built: &[String],
    command: impl std::future::IntoFuture<Output = mongodb::error::Result<Document>>,
) -> Result<Document, SyncError> {
    marked_all(&[(t, false)], dropped, collection, built, command).await
}

/// [`marked`] for a command that changes several collections, each with
/// whether its documents are to be journaled again (`rejournal`).
async fn marked_all(
    targets: &[(&Target<'_>, bool)],
    dropped: &[String],
    collection: bool,
    built: &[String],
    command: impl std::future::IntoFuture<Output = mongodb::error::Result<Document>>,
) -> Result<Document, SyncError> {
    for (t, rejournal) in targets {
        mark_as(t, dropped, collection, *rejournal).await?;
    }
    let mut late: Vec<LateMark> = targets
        .iter()
        .filter_map(|(t, rejournal)| late_mark(t, dropped, collection, *rejournal, built))
        .collect();
    let out = command.await;
    for (t, rejournal) in targets {
        mark_as(t, dropped, collection, *rejournal).await?;
    }
    indexes::wake();
    // Ran to its end and marked twice.
    late.iter_mut().for_each(|l| l.armed = false);
    Ok(out?)
}

/// The [`LateMark`] of a command on `t` (none if `t` is not replicated),
/// armed.
fn late_mark(
    t: &Target<'_>,
    dropped: &[String],
    collection: bool,
    rejournal: bool,
    built: &[String],
) -> Option<LateMark> {
    let journal = t.w.journal.clone().filter(|_| t.replicated)?;
    Some(LateMark {
        armed: true,
        journal,
        ns: t.ns.clone(),
        dropped: dropped.to_vec(),
        collection,
        rejournal,
        grace: std::time::Duration::from_millis(t.w.config.takeover_grace_ms),
        build: (!built.is_empty()).then(|| (t.w.local.clone(), built.to_vec())),
    })
}

/// How long a late mark waits for an index build the server goes on with
/// after its client left (it does not stop a build for that).
const LATE_BUILD_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// The second mark of a command whose call is dropped while it runs (its
/// `socketTimeoutMS` ran out, see `Engine::write`): the command may still
/// run after the leader copied the first mark, so the collection is marked
/// again once `SYNC_TAKEOVER_GRACE_MS` passed, as the call would have. For
/// an index build, once the indexes are listed locally (a build in
/// progress is not, and goes on without its client), or after
/// `LATE_BUILD_WAIT`.
struct LateMark {
    armed: bool,
    journal: std::sync::Arc<crate::journal::Journal>,
    ns: String,
    dropped: Vec<String>,
    collection: bool,
    rejournal: bool,
    grace: std::time::Duration,
    /// The local client and the names of the indexes the command builds.
    build: Option<(mongodb::Client, Vec<String>)>,
}

impl Drop for LateMark {
    fn drop(&mut self) {
        let (true, Ok(rt)) = (self.armed, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let (j, ns, dropped) = (
            self.journal.clone(),
            std::mem::take(&mut self.ns),
            std::mem::take(&mut self.dropped),
        );
        let (collection, rejournal) = (self.collection, self.rejournal);
        let (grace, build) = (self.grace, self.build.take());
        rt.spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some((local, names)) = build {
                let (db, coll) = ns.split_once('.').unwrap_or((&ns, ""));
                let until = std::time::Instant::now() + LATE_BUILD_WAIT;
                while std::time::Instant::now() < until {
                    match indexes::list(&local, db, coll).await {
                        Ok(Some(have))
                            if names.iter().any(|n| !have.iter().any(|h| name_of(h) == n)) => {}
                        // Built, or the collection is gone.
                        Ok(_) => break,
                        Err(e) => tracing::debug!("listing the indexes of {ns} failed: {e}"),
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            let marked = indexes::mark_as(&j, &ns, &dropped, collection, rejournal).await;
            indexes::wake();
            if let Err(e) = marked {
                tracing::warn!("marking {ns} for its indexes failed: {e}");
            }
        });
    }
}

/// The collection's indexes, as concatenated BSON documents (the server's
/// `listIndexes`, every batch); a missing collection fails with the
/// server's error, as with the driver.
pub async fn list_indexes(t: &Target<'_>, p: Payload) -> Result<Vec<u8>, SyncError> {
    let mut out = Vec::new();
    let options = command_options(&p)?;
    for d in indexes::list_or_fail(&t.w.local, t.db, t.coll, options).await? {
        d.to_writer(&mut out)
            .map_err(|e| SyncError::Internal(e.to_string()))?;
    }
    Ok(out)
}
