//! The one error type of the engine, its stable codes, and the one place that
//! decides whether an Atlas failure is retried.
//!
//! Invariants:
//! - every error that reaches JS carries a stable `code`: `ERR_SYNC_*` for the
//!   engine's own errors, the server's numeric code for MongoDB errors;
//! - no message contains a credential: connection strings are redacted where
//!   errors are built, and [`SyncError::to_js_payload`] scrubs once more;
//! - whether to retry is decided only by [`disposition`] and
//!   [`write_error_disposition`], which defer to the driver's error labels.

use mongodb::bson::{Bson, Document};
use mongodb::error::{ErrorKind as MongoKind, WriteFailure, RETRYABLE_WRITE_ERROR};
use serde_json::{json, Value};

/// Engine errors. MongoDB errors of local operations pass through unchanged
/// so the app sees the driver's code and message.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("invalid configuration: {name}={value:?} is not allowed; expected {allowed}")]
    Config {
        name: String,
        value: String,
        allowed: String,
    },
    #[error("this dual-mongo-sync instance is closed; create a new one with createSync()")]
    Closed,
    #[error("{0}")]
    InvalidArgument(String),
    #[error("cannot connect to {which}: {message}")]
    Connect {
        which: &'static str,
        message: String,
    },
    #[error("journal error in {path}: {message}. Check that SYNC_DATA_DIR is writable and has free space")]
    Journal { path: String, message: String },
    #[error("{0}")]
    Timeout(String),
    /// A job (full sync, verify) that runs already, here or in another
    /// process of the data directory, stands in the way.
    #[error("{0}")]
    Conflict(String),
    #[error("{}", describe(.0))]
    Mongo(#[from] mongodb::error::Error),
    /// A MongoDB error with fields of the server's reply the driver's error
    /// dropped, found again by the engine (see `capture::write::insert_one`).
    #[error("{}", describe(.0))]
    MongoWith(mongodb::error::Error, Box<Document>),
    /// A MongoDB error of one of the two servers, named first in the
    /// message (`Atlas: ...`): for work that reads both (verify, full
    /// sync), where the driver's message does not say which one failed.
    #[error("{}: {}", .0, describe(.1))]
    MongoOn(&'static str, mongodb::error::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Coarse classes of [`SyncError`], for callers that branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Config,
    Closed,
    InvalidArgument,
    Connect,
    Journal,
    Timeout,
    Conflict,
    Mongo,
    Internal,
}

impl SyncError {
    pub fn config(name: &str, value: &str, allowed: &str) -> SyncError {
        SyncError::Config {
            name: name.into(),
            value: value.into(),
            allowed: allowed.into(),
        }
    }

    pub fn invalid(msg: impl Into<String>) -> SyncError {
        SyncError::InvalidArgument(msg.into())
    }

    /// A MongoDB error of `server` ("Atlas", "local MongoDB") named as
    /// such ([`SyncError::MongoOn`]); other errors as they are.
    pub fn on(self, server: &'static str) -> SyncError {
        match self {
            SyncError::Mongo(e) => SyncError::MongoOn(server, e),
            other => other,
        }
    }

    pub fn journal(path: &std::path::Path, e: impl std::fmt::Display) -> SyncError {
        SyncError::Journal {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            SyncError::Config { .. } => Kind::Config,
            SyncError::Closed => Kind::Closed,
            SyncError::InvalidArgument(_) => Kind::InvalidArgument,
            SyncError::Connect { .. } => Kind::Connect,
            SyncError::Journal { .. } => Kind::Journal,
            SyncError::Timeout(_) => Kind::Timeout,
            SyncError::Conflict(_) => Kind::Conflict,
            SyncError::Mongo(_) | SyncError::MongoWith(..) | SyncError::MongoOn(..) => Kind::Mongo,
            SyncError::Internal(_) => Kind::Internal,
        }
    }

    /// Whether a failed write may still have been applied: the connection
    /// failed or was cleared while the command may have been on its way (a
    /// server's error reply, or no server to send to, says it was not).
    pub fn outcome_unknown(&self) -> bool {
        let (SyncError::Mongo(e) | SyncError::MongoWith(e, _) | SyncError::MongoOn(_, e)) = self
        else {
            return false;
        };
        may_have_been_sent(e)
    }

    /// The stable JS `code` of engine errors (MongoDB errors use the server's).
    pub fn code(&self) -> &'static str {
        match self.kind() {
            Kind::Config => "ERR_SYNC_CONFIG",
            Kind::Closed => "ERR_SYNC_CLOSED",
            Kind::InvalidArgument => "ERR_SYNC_INVALID_ARGUMENT",
            Kind::Connect => "ERR_SYNC_CONNECT",
            Kind::Journal => "ERR_SYNC_JOURNAL",
            Kind::Timeout => "ERR_SYNC_TIMEOUT",
            Kind::Conflict => "ERR_SYNC_CONFLICT",
            Kind::Mongo => "ERR_SYNC_MONGO",
            Kind::Internal => "ERR_SYNC_INTERNAL",
        }
    }

    /// What the JS wrapper turns into an `Error`: `name`, `code`, `message`,
    /// and for MongoDB errors the driver's fields (`codeName`, `errorLabels`,
    /// `writeErrors`). `secrets` are scrubbed from every string.
    pub fn to_js_payload(&self, secrets: &[&str]) -> Value {
        let scrub = |s: String| crate::config::scrub(&s, secrets);
        let mut v = match self {
            SyncError::Mongo(e) => mongo_payload(e),
            SyncError::MongoWith(e, extra) => {
                let mut v = mongo_payload(e);
                if let (Some(Value::Object(to)), Value::Object(from)) = (
                    v.get_mut("ejson"),
                    Bson::Document((**extra).clone()).into_relaxed_extjson(),
                ) {
                    for (k, x) in from {
                        // In the reply the driver would have kept too.
                        if let Some(Value::Object(r)) = to.get_mut("errorResponse") {
                            r.entry(k.clone()).or_insert(x.clone());
                        }
                        to.entry(k).or_insert(x);
                    }
                }
                v
            }
            SyncError::MongoOn(server, e) => {
                let mut v = mongo_payload(e);
                if let Some(m) = v.get("message").and_then(Value::as_str) {
                    v["message"] = Value::String(format!("{server}: {m}"));
                }
                v
            }
            other => {
                json!({ "name": "SyncError", "code": other.code(), "message": other.to_string() })
            }
        };
        if let Some(m) = v.get("message").and_then(Value::as_str).map(String::from) {
            v["message"] = Value::String(scrub(m));
        }
        v
    }
}

/// Whether a failed command may still reach the server and run: its
/// connection failed (or was cleared) while it may have been on its way.
pub fn may_have_been_sent(e: &mongodb::error::Error) -> bool {
    matches!(
        e.kind.as_ref(),
        MongoKind::Io(_) | MongoKind::ConnectionPoolCleared { .. }
    )
}

/// A driver error as an operator reads it: what happened and, where it
/// helps, what to check; not the driver's debug dump.
pub fn describe(e: &mongodb::error::Error) -> String {
    let text = match e.kind.as_ref() {
        MongoKind::Authentication { message, .. } => format!(
            "authentication failed ({message}); check the user, password and authSource of the connection string"
        ),
        MongoKind::ServerSelection { message, .. } => format!("no reachable server: {message}"),
        MongoKind::Io(io) => format!("network error: {io}"),
        MongoKind::Command(c) => format!("{} ({}): {}", c.code_name, c.code, c.message),
        MongoKind::Write(WriteFailure::WriteError(w)) => format!("write error {}: {}", w.code, w.message),
        MongoKind::Write(WriteFailure::WriteConcernError(w)) => {
            format!("write concern error {}: {}", w.code, w.message)
        }
        MongoKind::InvalidTlsConfig { message, .. } => format!("invalid TLS settings: {message}"),
        MongoKind::DnsResolve { message, .. } => format!("DNS lookup failed: {message}"),
        other => other.to_string(),
    };
    const MAX: usize = 600;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// The `writeErrors` entries of the server's reply to a failed write, as
/// the server sent them (the driver's `WriteError` keeps only some fields).
fn server_write_errors(e: &mongodb::error::Error) -> Vec<Document> {
    let Some(reply) = e.server_response() else {
        return Vec::new();
    };
    let Ok(list) = reply.get_array("writeErrors") else {
        return Vec::new();
    };
    list.into_iter()
        .filter_map(|x| Document::try_from(x.ok()?.as_document()?).ok())
        .collect()
}

/// The fields of a write error the official Node driver hands on beside
/// `code` and `errmsg` (`keyValue` and `keyPattern` of a duplicate key,
/// `errInfo` of a validation failure), as relaxed Extended JSON: JS turns
/// them back into BSON values.
fn write_error_fields(entry: Option<&Document>, details: Option<&Document>) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["keyValue", "keyPattern", "errInfo"] {
        if let Some(v) = entry.and_then(|d| d.get(key)) {
            out.insert(key.into(), v.clone().into_relaxed_extjson());
        }
    }
    if let (false, Some(d)) = (out.contains_key("errInfo"), details) {
        out.insert(
            "errInfo".into(),
            Bson::Document(d.clone()).into_relaxed_extjson(),
        );
    }
    Value::Object(out)
}

fn mongo_payload(e: &mongodb::error::Error) -> Value {
    let labels: Vec<&String> = e.labels().iter().collect();
    match e.kind.as_ref() {
        MongoKind::Write(WriteFailure::WriteError(w)) => {
            let mut v = json!({
                "name": "MongoServerError",
                "code": w.code,
                "codeName": w.code_name,
                "message": w.message,
                "errmsg": w.message,
                "errorLabels": labels,
            });
            let entry = server_write_errors(e).into_iter().next();
            v["ejson"] = write_error_fields(entry.as_ref(), w.details.as_ref());
            // The driver's error of a one-document write is built from the
            // server's write error entry: its `errorResponse`.
            let response = entry.unwrap_or_else(|| {
                mongodb::bson::doc! { "index": 0, "code": w.code, "errmsg": &w.message }
            });
            v["ejson"]["errorResponse"] = Bson::Document(response).into_relaxed_extjson();
            v
        }
        MongoKind::Write(WriteFailure::WriteConcernError(w)) => json!({
            "name": "MongoWriteConcernError",
            "code": w.code,
            "codeName": w.code_name,
            "message": w.message,
            "errorLabels": labels,
        }),
        MongoKind::Command(c) => {
            let mut v = json!({
                "name": "MongoServerError",
                "code": c.code,
                "codeName": c.code_name,
                "message": c.message,
                "errmsg": c.message,
                "errorLabels": labels,
            });
            // The server's whole reply, as the driver's `errorResponse`.
            let reply = e
                .server_response()
                .and_then(|r| Document::try_from(r.as_ref()).ok())
                .unwrap_or_else(|| {
                    mongodb::bson::doc! {
                        "ok": 0, "errmsg": &c.message, "code": c.code, "codeName": &c.code_name,
                    }
                });
            v["ejson"] = json!({ "errorResponse": Bson::Document(reply).into_relaxed_extjson() });
            v
        }
        MongoKind::InsertMany(im) => {
            let entries = server_write_errors(e);
            let errors: Vec<Value> = im
                .write_errors
                .iter()
                .flatten()
                .map(|w| {
                    // The reply is the last batch's: its indexes are that
                    // batch's, so its entry is found by code and message.
                    let entry = entries.iter().find(|d| {
                        d.get_i32("code").ok() == Some(w.code)
                            && d.get_str("errmsg").ok() == Some(w.message.as_str())
                    });
                    json!({
                        "index": w.index,
                        "code": w.code,
                        "codeName": w.code_name,
                        "errmsg": w.message,
                        "ejson": write_error_fields(entry, w.details.as_ref()),
                    })
                })
                .collect();
            let first = im.write_errors.as_ref().and_then(|v| v.first());
            json!({
                "name": "MongoBulkWriteError",
                "code": first.map(|w| w.code),
                "codeName": first.and_then(|w| w.code_name.clone()),
                "message": first.map(|w| w.message.clone()).unwrap_or_else(|| e.to_string()),
                "writeErrors": errors,
                "errorLabels": labels,
            })
        }
        MongoKind::ServerSelection { message, .. } => json!({
            "name": "MongoServerSelectionError",
            "message": message,
            "errorLabels": labels,
        }),
        MongoKind::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => json!({
            "name": "MongoNetworkTimeoutError",
            "message": describe(e),
            "errorLabels": labels,
        }),
        MongoKind::Io(_) | MongoKind::ConnectionPoolCleared { .. } => json!({
            "name": "MongoNetworkError",
            "message": describe(e),
            "errorLabels": labels,
        }),
        MongoKind::Authentication { .. } => json!({
            "name": "MongoServerError",
            "code": 18,
            "codeName": "AuthenticationFailed",
            "message": describe(e),
            "errorLabels": labels,
        }),
        MongoKind::InvalidArgument { message, .. } => json!({
            "name": "MongoInvalidArgumentError",
            "code": "ERR_SYNC_INVALID_ARGUMENT",
            "message": message,
        }),
        _ => json!({ "name": "MongoError", "message": describe(e), "errorLabels": labels }),
    }
}

/// What to do with a failed Atlas operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Network trouble, elections, overload, Atlas down: retry with backoff,
    /// for as long as it takes. Never dead-lettered.
    Transient,
    /// The document itself is refused (validation, duplicate key): retrying
    /// cannot help; dead-letter it.
    Permanent,
    /// Neither: retry up to `SYNC_MAX_RETRIES`, then dead-letter.
    Unknown,
}

/// Server codes that mean "try again later" even without a label.
const TRANSIENT_CODES: &[i32] = &[
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 63, 150, 234, 112, 24, 50,
    462, 13, 18,
];

/// Server codes that mean "this document will never be accepted".
const PERMANENT_CODES: &[i32] = &[
    2, 11000, 11001, 12582, 121, 17280, 10334, 16755, 17419, 28, 52, 55, 56, 57, 66, 9, 14, 15974,
];

/// The one retry decision for errors of whole Atlas operations.
pub fn disposition(e: &mongodb::error::Error) -> Disposition {
    if e.contains_label(RETRYABLE_WRITE_ERROR)
        || e.contains_label(mongodb::error::RETRYABLE_ERROR)
        || e.contains_label(mongodb::error::SYSTEM_OVERLOADED_ERROR)
    {
        return Disposition::Transient;
    }
    match e.kind.as_ref() {
        MongoKind::Io(_)
        | MongoKind::ConnectionPoolCleared { .. }
        | MongoKind::ServerSelection { .. }
        | MongoKind::DnsResolve { .. }
        | MongoKind::Authentication { .. } => Disposition::Transient,
        MongoKind::Command(c) => write_error_disposition(c.code),
        MongoKind::Write(WriteFailure::WriteError(w)) => write_error_disposition(w.code),
        MongoKind::Write(WriteFailure::WriteConcernError(_)) => Disposition::Transient,
        // Raised by the replicator itself for a write concern error in a raw
        // command reply: the write may not be durable yet, so copy again.
        MongoKind::Custom(_) => Disposition::Transient,
        _ => Disposition::Unknown,
    }
}

/// The retry decision for one document's write error inside a batch reply.
/// Authentication/authorization failures (13, 18) count as transient: the
/// operator fixes the credentials and the backlog drains, nothing is dropped.
pub fn write_error_disposition(code: i32) -> Disposition {
    if TRANSIENT_CODES.contains(&code) {
        Disposition::Transient
    } else if PERMANENT_CODES.contains(&code) {
        Disposition::Permanent
    } else {
        Disposition::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(SyncError::Closed.code(), "ERR_SYNC_CLOSED");
        assert_eq!(SyncError::config("A", "b", "c").code(), "ERR_SYNC_CONFIG");
        assert_eq!(SyncError::invalid("x").code(), "ERR_SYNC_INVALID_ARGUMENT");
    }

    #[test]
    fn write_errors_are_classified() {
        assert_eq!(write_error_disposition(11000), Disposition::Permanent);
        assert_eq!(write_error_disposition(121), Disposition::Permanent);
        assert_eq!(write_error_disposition(91), Disposition::Transient);
        assert_eq!(write_error_disposition(112), Disposition::Transient);
        assert_eq!(write_error_disposition(123456), Disposition::Unknown);
    }

    #[test]
    fn payload_scrubs_secrets() {
        let e = SyncError::Connect {
            which: "MONGODB_ATLAS_URI",
            message: "auth failed for mongodb://u:topsecret@h".into(),
        };
        let p = e.to_js_payload(&["mongodb://u:topsecret@h"]);
        let m = p["message"].as_str().unwrap();
        assert!(!m.contains("topsecret"), "{m}");
        assert_eq!(p["code"], "ERR_SYNC_CONNECT");
    }
}
