//! The arguments of one call, as one BSON document from JS
//! (`{ filter, update, doc, docs, options, ... }`).

use mongodb::bson::{Bson, Document, RawBsonRef, RawDocument, RawDocumentBuf};
use serde::de::DeserializeOwned;

use crate::error::SyncError;

/// Arguments of one Collection call.
pub struct Payload {
    raw: RawDocumentBuf,
    method: String,
}

fn bad(method: &str, field: &str, what: &str) -> SyncError {
    SyncError::invalid(format!("{method}: '{field}' must be {what}"))
}

impl Payload {
    /// Wraps the bytes JS sent; fails if they are not one BSON document.
    pub fn from_bytes(bytes: Vec<u8>, method: &str) -> Result<Payload, SyncError> {
        let raw = RawDocumentBuf::from_bytes(bytes).map_err(|e| {
            SyncError::invalid(format!("{method}: arguments are not valid BSON: {e}"))
        })?;
        Ok(Payload {
            raw,
            method: method.to_string(),
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.raw.as_bytes()
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    fn get(&self, field: &str) -> Result<Option<RawBsonRef<'_>>, SyncError> {
        self.raw
            .get(field)
            .map_err(|e| SyncError::invalid(format!("{}: malformed '{field}': {e}", self.method)))
    }

    fn raw_doc(&self, field: &str) -> Result<Option<&RawDocument>, SyncError> {
        match self.get(field)? {
            None | Some(RawBsonRef::Null) => Ok(None),
            Some(RawBsonRef::Document(d)) => Ok(Some(d)),
            Some(_) => Err(bad(&self.method, field, "an object")),
        }
    }

    /// A document argument, required.
    pub fn doc(&self, field: &str) -> Result<Document, SyncError> {
        self.opt_doc(field)?
            .ok_or_else(|| bad(&self.method, field, "an object"))
    }

    /// A document argument, optional.
    pub fn opt_doc(&self, field: &str) -> Result<Option<Document>, SyncError> {
        self.raw_doc(field)?
            .map(|d| {
                Document::try_from(d)
                    .map_err(|e| bad(&self.method, field, &format!("valid BSON ({e})")))
            })
            .transpose()
    }

    /// A document argument kept as the exact bytes JS produced.
    pub fn bytes_doc(&self, field: &str) -> Result<RawDocumentBuf, SyncError> {
        self.raw_doc(field)?
            .map(|d| d.to_raw_document_buf())
            .ok_or_else(|| bad(&self.method, field, "an object"))
    }

    /// An array of documents kept as exact bytes.
    pub fn bytes_docs(&self, field: &str) -> Result<Vec<RawDocumentBuf>, SyncError> {
        match self.get(field)? {
            Some(RawBsonRef::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    Ok(RawBsonRef::Document(d)) => Ok(d.to_raw_document_buf()),
                    _ => Err(bad(&self.method, field, "an array of objects")),
                })
                .collect(),
            _ => Err(bad(&self.method, field, "an array of objects")),
        }
    }

    /// An array of documents (pipelines, bulk operations).
    pub fn docs(&self, field: &str) -> Result<Vec<Document>, SyncError> {
        match self.get(field)? {
            Some(RawBsonRef::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    Ok(RawBsonRef::Document(d)) => Document::try_from(d)
                        .map_err(|e| bad(&self.method, field, &format!("valid BSON ({e})"))),
                    _ => Err(bad(&self.method, field, "an array of objects")),
                })
                .collect(),
            _ => Err(bad(&self.method, field, "an array of objects")),
        }
    }

    /// An update: an operator document or an aggregation pipeline.
    pub fn update(&self, field: &str) -> Result<Update, SyncError> {
        match self.get(field)? {
            Some(RawBsonRef::Document(_)) => Ok(Update::Doc(self.doc(field)?)),
            Some(RawBsonRef::Array(_)) => Ok(Update::Pipeline(self.docs(field)?)),
            _ => Err(bad(
                &self.method,
                field,
                "an update document or a pipeline array",
            )),
        }
    }

    pub fn value(&self, field: &str) -> Result<Option<Bson>, SyncError> {
        self.get(field)?
            .map(|v| {
                v.to_raw_bson()
                    .try_into()
                    .map_err(|e| bad(&self.method, field, &format!("valid BSON ({e})")))
            })
            .transpose()
    }

    /// A whole number, however JS encoded it (Int32, Int64, or a Double
    /// without a fraction); `None` if absent or anything else.
    pub fn integer(&self, field: &str) -> Result<Option<i64>, SyncError> {
        Ok(self.value(field)?.as_ref().and_then(whole_number))
    }

    /// The `options` object, deserialized into a driver options struct, and
    /// as it came. `maxTimeMS` is left out of the struct: the driver's
    /// structs read it under other names or as a `Duration` they cannot read
    /// from a number. A method that takes it sets `max_time` from
    /// [`max_time`] of the document.
    pub fn options<T: DeserializeOwned + Default>(&self) -> Result<(T, Document), SyncError> {
        let d = self.opt_doc("options")?.unwrap_or_default();
        let mut fields = d.clone();
        fields.remove("maxTimeMS");
        // JS numbers past 32 bits arrive as doubles (`limit(2 ** 40)`): a
        // whole one is read as the integer it is.
        for (k, v) in fields.iter_mut() {
            if let (false, Bson::Double(x)) = (k == "comment", &*v) {
                if x.fract() == 0.0 && x.abs() < 9.2e18 {
                    *v = Bson::Int64(*x as i64);
                }
            }
        }
        let parsed = mongodb::bson::from_document::<T>(fields.clone()).map_err(|e| {
            // Name the option: the first one that is refused on its own.
            let culprit = fields.iter().find_map(|(k, v)| {
                let one = mongodb::bson::doc! { k: v.clone() };
                mongodb::bson::from_document::<T>(one).err().map(|e| (k, e))
            });
            SyncError::invalid(match culprit {
                Some((k, e)) => format!("{}: option '{k}' is invalid: {e}", self.method),
                None => format!("{}: invalid options: {e}", self.method),
            })
        })?;
        Ok((parsed, d))
    }
}

/// A whole number, however JS encoded it (Int32, Int64, or a Double
/// without a fraction); `None` for anything else.
pub fn whole_number(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(i) => Some((*i).into()),
        Bson::Int64(i) => Some(*i),
        Bson::Double(d) if d.fract() == 0.0 => Some(*d as i64),
        _ => None,
    }
}

/// The two forms an update can take.
#[derive(Clone, Debug)]
pub enum Update {
    Doc(Document),
    Pipeline(Vec<Document>),
}

impl From<Update> for mongodb::options::UpdateModifications {
    fn from(u: Update) -> Self {
        match u {
            Update::Doc(d) => mongodb::options::UpdateModifications::Document(d),
            Update::Pipeline(p) => mongodb::options::UpdateModifications::Pipeline(p),
        }
    }
}

/// `maxTimeMS` of an options document (JS checked it is a whole number >= 0).
pub fn max_time(opts: &Document) -> Option<std::time::Duration> {
    let ms = match opts.get("maxTimeMS")? {
        Bson::Int32(n) => *n as u64,
        Bson::Int64(n) => *n as u64,
        Bson::Double(n) => *n as u64,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(ms))
}
