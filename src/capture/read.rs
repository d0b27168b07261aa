//! The read methods: straight to the local server, documents returned as the
//! server's own BSON bytes (concatenated), never re-encoded.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::options::{
    AggregateOptions, CountOptions, DistinctOptions, FindOneOptions, FindOptions,
};

use super::payload::Payload;
use super::Target;
use crate::error::SyncError;

fn concat(docs: impl IntoIterator<Item = RawDocumentBuf>) -> Vec<u8> {
    let mut out = Vec::new();
    for d in docs {
        out.extend_from_slice(d.as_bytes());
    }
    out
}

fn one(d: Document) -> Result<Vec<u8>, SyncError> {
    mongodb::bson::to_vec(&d).map_err(|e| SyncError::Internal(e.to_string()))
}

pub async fn find(t: &Target<'_>, p: Payload) -> Result<Vec<u8>, SyncError> {
    let filter = p.opt_doc("filter")?.unwrap_or_default();
    let (opts, _) = p.options::<FindOptions>()?;
    let cursor = t.raw().find(filter).with_options(opts).await?;
    let docs: Vec<RawDocumentBuf> = cursor.try_collect().await?;
    Ok(concat(docs))
}

pub async fn find_one(t: &Target<'_>, p: Payload) -> Result<Vec<u8>, SyncError> {
    let filter = p.opt_doc("filter")?.unwrap_or_default();
    let (opts, _) = p.options::<FindOneOptions>()?;
    let d = t.raw().find_one(filter).with_options(opts).await?;
    Ok(d.map(|d| d.into_bytes()).unwrap_or_default())
}

pub async fn count_documents(t: &Target<'_>, p: Payload) -> Result<Vec<u8>, SyncError> {
    let filter = p.opt_doc("filter")?.unwrap_or_default();
    let (opts, _) = p.options::<CountOptions>()?;
    let n = t.raw().count_documents(filter).with_options(opts).await?;
    one(doc! { "n": n as i64 })
}

pub async fn distinct(t: &Target<'_>, p: Payload) -> Result<Vec<u8>, SyncError> {
    let key = match p.value("key")? {
        Some(Bson::String(k)) => k,
        _ => return Err(SyncError::invalid("distinct: 'key' must be a string")),
    };
    let filter = p.opt_doc("filter")?.unwrap_or_default();
    let (opts, _) = p.options::<DistinctOptions>()?;
    let values = t.raw().distinct(key, filter).with_options(opts).await?;
    one(doc! { "values": values })
}

/// Stages that write: a pipeline with them would change documents behind the
/// journal's back, so they are refused on replicated collections.
const WRITING_STAGES: &[&str] = &["$out", "$merge"];

pub async fn aggregate(t: &Target<'_>, p: Payload) -> Result<Vec<u8>, SyncError> {
    let pipeline = p.docs("pipeline")?;
    if t.w.journal.is_some() {
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
    let (opts, _) = p.options::<AggregateOptions>()?;
    let cursor = t
        .raw()
        .aggregate(pipeline)
        .with_options(opts)
        .with_type::<RawDocumentBuf>()
        .await?;
    let docs: Vec<RawDocumentBuf> = cursor.try_collect().await?;
    Ok(concat(docs))
}
