//! The arguments of one call, as one BSON document from JS
//! (`{ filter, update, doc, docs, options, ... }`).

use mongodb::bson::{Bson, Document, RawBsonRef, RawDocument, RawDocumentBuf};
use serde::de::DeserializeOwned;

use crate::error::SyncError;

/// Arguments nested deeper than this (documents and arrays, the arguments'
/// own document counting as one) are refused before anything reads them:
/// converting BSON recurses once per level, and a stack overflow ends the
/// Node process. MongoDB supports 100 levels in a document; the arguments
/// (`{ docs: [doc] }`, a bulkWrite's `{ ops: [{ updateOne: { filter } }] }`)
/// add a few around their documents, and a filter or pipeline wraps a
/// stored document's values in a few more.
pub const MAX_DEPTH: usize = 200;

/// Whether documents and arrays in the BSON document `doc` nest more than
/// `max` levels deep (a code-with-scope's scope counting as one), walked
/// without recursion. Malformed bytes end the walk with `false`: the
/// reader that meets them reports them.
pub fn nested_deeper(doc: &[u8], max: usize) -> bool {
    let Some(last) = doc.len().checked_sub(1) else {
        return false;
    };
    // Where each open document or array ends (its terminating NUL).
    let mut ends = vec![last];
    let mut at = 4;
    while let Some(&end) = ends.last() {
        if at >= end {
            if at > end {
                return false;
            }
            ends.pop();
            at += 1;
            continue;
        }
        let kind = doc[at];
        let Some(nul) = doc[at + 1..end].iter().position(|&b| b == 0) else {
            return false;
        };
        let v = at + 2 + nul;
        let Some(len) = super::value_len(doc, kind, v) else {
            return false;
        };
        // A document, an array, or a code-with-scope's scope after its code.
        let inner = match kind {
            0x03 | 0x04 => Some(v),
            0x0F => doc
                .get(v + 4..v + 8)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .and_then(|n| usize::try_from(n).ok())
                .map(|n| v + 8 + n),
            _ => None,
        };
        match inner {
            Some(start) if start + 5 <= v + len && v + len <= end => {
                ends.push(v + len - 1);
                if ends.len() > max {
                    return true;
                }
                at = start + 4;
            }
            Some(_) => return false,
            None => at = v + len,
        }
    }
    false
}

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
        if nested_deeper(raw.as_bytes(), MAX_DEPTH) {
            return Err(SyncError::invalid(format!(
                "{method}: the arguments are nested more than {MAX_DEPTH} levels deep \
                 (MongoDB supports 100 levels of nesting in a document)"
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, rawdoc, Bson, JavaScriptCodeWithScope};

    fn nested(levels: usize, array: bool) -> Document {
        let mut d = doc! { "x": 1 };
        for _ in 1..levels {
            d = if array {
                doc! { "a": [Bson::Document(d)] }
            } else {
                doc! { "o": d }
            };
        }
        d
    }

    fn depth_of(d: &Document) -> usize {
        let bytes = mongodb::bson::to_vec(d).unwrap();
        (1..1000).find(|&max| !nested_deeper(&bytes, max)).unwrap()
    }

    #[test]
    fn nesting_counts_documents_arrays_and_scopes() {
        assert_eq!(depth_of(&doc! {}), 1);
        assert_eq!(depth_of(&doc! { "a": 1, "s": "x", "b": [1, 2] }), 2);
        assert_eq!(depth_of(&nested(150, false)), 150);
        // Each level is a document in an array: two levels.
        assert_eq!(depth_of(&nested(50, true)), 99);
        let code = JavaScriptCodeWithScope {
            code: "f()".into(),
            scope: nested(10, false),
        };
        // The scope is the code's value: its 10 levels under the top one.
        assert_eq!(depth_of(&doc! { "c": code, "after": { "y": 1 } }), 11);
        // Siblings after a deep branch are walked at their own level.
        assert_eq!(
            depth_of(&doc! { "d": nested(5, false), "e": { "f": 1 } }),
            6
        );
    }

    #[test]
    fn arguments_nested_too_deep_are_refused_by_name_and_malformed_ones_left_to_the_reader() {
        let ok = mongodb::bson::to_vec(&doc! { "filter": nested(MAX_DEPTH - 1, false) }).unwrap();
        assert!(Payload::from_bytes(ok, "find").is_ok());
        let deep = mongodb::bson::to_vec(&doc! { "filter": nested(MAX_DEPTH, false) }).unwrap();
        let e = Payload::from_bytes(deep, "find").err().unwrap().to_string();
        assert!(
            e.starts_with("find: the arguments are nested more than 200 levels deep"),
            "{e}"
        );
        // A length past the end of its document.
        let mut bad = rawdoc! { "a": { "b": 1 } }.into_bytes();
        bad[7] = 200;
        assert!(!nested_deeper(&bad, 1));
        assert!(!nested_deeper(&[], 1));
    }
}
