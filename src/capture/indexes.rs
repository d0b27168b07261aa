//! The index methods: run on the local server; on a replicated collection a
//! change also marks the collection in the journal, before the call
//! resolves, so the leader copies its indexes to Atlas (see
//! `replicate::indexes`).

use mongodb::bson::{doc, Bson, Document};

use super::payload::Payload;
use super::Target;
use crate::error::SyncError;
use crate::replicate::indexes::{self, name_of, ALL};

/// Options the index commands take from the call's options, as the driver
/// passes them.
const COMMAND_OPTIONS: &[&str] = &["maxTimeMS", "commitQuorum", "comment"];

fn with_options(mut cmd: Document, p: &Payload) -> Result<Document, SyncError> {
    if let Some(opts) = p.opt_doc("options")? {
        for f in COMMAND_OPTIONS {
            if let Some(v) = opts.get(*f) {
                cmd.insert(*f, v.clone());
            }
        }
    }
    Ok(cmd)
}

async fn mark(t: &Target<'_>, dropped: &[String]) -> Result<(), SyncError> {
    match (&t.w.journal, t.replicated) {
        (Some(j), true) => indexes::mark(j, &t.ns, dropped).await,
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
    let cmd = with_options(doc! { "createIndexes": t.coll, "indexes": defs }, &p)?;
    let reply = t.w.local.database(t.db).run_command(cmd).await?;
    mark(t, &[]).await?;
    Ok(reply)
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
    let reply = t.w.local.database(t.db).run_command(cmd).await?;
    let names: Vec<String> = if names.iter().any(|n| n == ALL) {
        vec![ALL.to_string()]
    } else {
        names
    };
    mark(t, &names).await?;
    Ok(reply)
}

/// The collection's indexes, as concatenated BSON documents (the server's
/// `listIndexes`, every batch); a missing collection fails with the
/// server's error, as with the driver.
pub async fn list_indexes(t: &Target<'_>, _p: Payload) -> Result<Vec<u8>, SyncError> {
    let mut out = Vec::new();
    for d in indexes::list_or_fail(&t.w.local, t.db, t.coll).await? {
        d.to_writer(&mut out)
            .map_err(|e| SyncError::Internal(e.to_string()))?;
    }
    Ok(out)
}
