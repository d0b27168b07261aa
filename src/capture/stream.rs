//! Change streams on the local server (`collection.watch()`, `db.watch()`):
//! the driver's own, which resumes by itself after a resumable error. JS
//! reads them one server round trip at a time (`changeNext`: at most one
//! `getMore`, which the server holds for `maxAwaitTimeMS`, 1 s by default),
//! so no call waits on a quiet stream for long and `close()` is never held
//! up by one. Watching only reads: nothing here touches the journal.

use std::time::Duration;

use mongodb::bson::{rawdoc, Bson, Document, RawBson, RawDocumentBuf};
use mongodb::change_stream::event::ResumeToken;
use mongodb::change_stream::ChangeStream;
use mongodb::options::{
    ChangeStreamOptions, Collation, FullDocumentBeforeChangeType, FullDocumentType,
};
use mongodb::Client;

use super::payload::{whole_number, Payload};
use super::read::Held;
use crate::error::SyncError;

/// The open change streams, by the id JS was given; one not read for
/// `IDLE` is dropped (and its cursor killed), as an unread cursor is.
#[derive(Default)]
pub struct Streams(Held<ChangeStream<RawDocumentBuf>>);

impl Streams {
    /// Opens a change stream on collection `coll` of `db`, or on the whole
    /// database when `coll` is `None`; answers as [`Streams::next`] does,
    /// without an event.
    pub async fn open(
        &self,
        local: &Client,
        db: &str,
        coll: Option<&str>,
        p: Payload,
    ) -> Result<Vec<u8>, SyncError> {
        let pipeline = p.docs("pipeline")?;
        let opts = options(&p)?;
        let database = local.database(db);
        let stream = match coll {
            Some(c) => {
                database
                    .collection::<Document>(c)
                    .watch()
                    .pipeline(pipeline)
                    .with_options(opts)
                    .await?
            }
            None => {
                database
                    .watch()
                    .pipeline(pipeline)
                    .with_options(opts)
                    .await?
            }
        }
        .with_type::<RawDocumentBuf>();
        let token = stream.resume_token();
        answer(self.0.keep(stream), token, None)
    }

    /// The next event of stream `id` if one comes within one server round
    /// trip: `{stream, resumeToken, event?}`. `stream` is 0 once the stream
    /// is closed (the server ended it, e.g. its collection was dropped and
    /// an `invalidate` event came), and `{stream: 0, gone: true}` answers a
    /// stream not open here (left unread for `IDLE`, or its last read was
    /// cut short): JS resumes it from its last token, as the driver resumes
    /// a stream whose cursor the server lost.
    pub async fn next(&self, p: Payload) -> Result<Vec<u8>, SyncError> {
        let id = stream_id(&p, "changeNext")?;
        let Some(shared) = self.0.get(id) else {
            return Ok(rawdoc! { "stream": 0_i64, "gone": true }.into_bytes());
        };
        let mut stream = shared.lock().await;
        // A call dropped half-way (socketTimeoutMS) leaves the driver's
        // stream in the middle of a getMore: it is not read again.
        let mut forget = Forget {
            streams: self,
            id: Some(id),
        };
        let event = stream.next_if_any().await?;
        // The server's last batch (cursor id 0) can hold several events, a
        // collection's `drop` and then its `invalidate`: the stream is over
        // only once a read finds nothing more.
        let alive = stream.is_alive() || event.is_some();
        if alive {
            forget.id = None;
        }
        answer(if alive { id } else { 0 }, stream.resume_token(), event)
    }

    /// Closes stream `id` (nothing happens if it is not open).
    pub fn close(&self, p: Payload) -> Result<Vec<u8>, SyncError> {
        let id = stream_id(&p, "changeClose")?;
        self.forget(id);
        answer(0, None, None)
    }

    fn forget(&self, id: u64) {
        self.0.drop_id(id);
    }
}

/// Drops a stream from the map when the call reading it ends without
/// taking this back: a failed read, a closed stream, or a dropped call.
struct Forget<'a> {
    streams: &'a Streams,
    id: Option<u64>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.streams.forget(id);
        }
    }
}

fn stream_id(p: &Payload, method: &str) -> Result<u64, SyncError> {
    p.integer("stream")?
        .and_then(|id| u64::try_from(id).ok())
        .filter(|&id| id > 0)
        .ok_or_else(|| SyncError::invalid(format!("{method}: 'stream' must be a positive integer")))
}

fn answer(
    id: u64,
    token: Option<ResumeToken>,
    event: Option<RawDocumentBuf>,
) -> Result<Vec<u8>, SyncError> {
    let mut out = rawdoc! { "stream": id as i64 };
    let token = match token {
        Some(t) => RawBson::try_from(
            mongodb::bson::to_bson(&t).map_err(|e| SyncError::Internal(e.to_string()))?,
        )
        .map_err(|e| SyncError::Internal(e.to_string()))?,
        None => RawBson::Null,
    };
    out.append("resumeToken", token);
    if let Some(e) = event {
        out.append("event", e);
    }
    Ok(out.into_bytes())
}

/// The driver's `ChangeStreamOptions` from the JS options (names as the Node
/// driver's; JS refused unknown ones).
fn options(p: &Payload) -> Result<ChangeStreamOptions, SyncError> {
    let d = p.opt_doc("options")?.unwrap_or_default();
    let bad =
        |k: &str, want: &str| SyncError::invalid(format!("watch: option '{k}' must be {want}"));
    let mut o = ChangeStreamOptions::default();
    for (k, v) in &d {
        match (k.as_str(), v) {
            // The Rust driver sends a value it has no name for as an object
            // (`{other: "x"}`), which the server refuses as the wrong type:
            // only MongoDB's values are taken, `default` as none given.
            ("fullDocument", Bson::String(s)) => {
                o.full_document = match s.as_str() {
                    "default" => None,
                    "updateLookup" => Some(FullDocumentType::UpdateLookup),
                    "whenAvailable" => Some(FullDocumentType::WhenAvailable),
                    "required" => Some(FullDocumentType::Required),
                    _ => {
                        return Err(bad(
                            k,
                            &format!(
                        "one of 'default', 'updateLookup', 'whenAvailable', 'required', got {s:?}"
                    ),
                        ))
                    }
                }
            }
            ("fullDocumentBeforeChange", Bson::String(s)) => {
                o.full_document_before_change = Some(match s.as_str() {
                    "whenAvailable" => FullDocumentBeforeChangeType::WhenAvailable,
                    "required" => FullDocumentBeforeChangeType::Required,
                    "off" => FullDocumentBeforeChangeType::Off,
                    _ => {
                        return Err(bad(
                            k,
                            &format!("one of 'off', 'whenAvailable', 'required', got {s:?}"),
                        ))
                    }
                })
            }
            ("resumeAfter", Bson::Document(t)) => o.resume_after = Some(token(t)?),
            ("startAfter", Bson::Document(t)) => o.start_after = Some(token(t)?),
            ("startAtOperationTime", Bson::Timestamp(t)) => o.start_at_operation_time = Some(*t),
            ("maxAwaitTimeMS", v) => {
                let ms = whole_number(v)
                    .filter(|&n| n >= 0)
                    .ok_or_else(|| bad(k, "a whole number of milliseconds >= 0"))?;
                o.max_await_time = Some(Duration::from_millis(ms as u64));
            }
            ("batchSize", v) => {
                let n = whole_number(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad(k, "a whole number >= 0"))?;
                o.batch_size = Some(n);
            }
            ("collation", Bson::Document(c)) => {
                o.collation = Some(
                    mongodb::bson::from_document::<Collation>(c.clone()).map_err(|e| {
                        SyncError::invalid(format!("watch: invalid collation: {e}"))
                    })?,
                )
            }
            ("showExpandedEvents", Bson::Boolean(b)) => o.show_expanded_events = Some(*b),
            ("comment", v) => o.comment = Some(v.clone()),
            ("fullDocument" | "fullDocumentBeforeChange", _) => return Err(bad(k, "a string")),
            ("resumeAfter" | "startAfter" | "collation", _) => return Err(bad(k, "an object")),
            ("startAtOperationTime", _) => return Err(bad(k, "a Timestamp")),
            ("showExpandedEvents", _) => return Err(bad(k, "a boolean")),
            (other, _) => {
                return Err(SyncError::invalid(format!(
                    "watch: unknown option '{other}'"
                )))
            }
        }
    }
    Ok(o)
}

/// A resume token (an event's `_id`) as the driver takes it.
fn token(t: &Document) -> Result<ResumeToken, SyncError> {
    #[derive(serde::Deserialize)]
    struct Holder {
        t: ResumeToken,
    }
    let raw = RawDocumentBuf::from_document(&mongodb::bson::doc! { "t": t.clone() })
        .map_err(|e| SyncError::invalid(format!("watch: invalid resume token: {e}")))?;
    mongodb::bson::from_slice::<Holder>(raw.as_bytes())
        .map(|h| h.t)
        .map_err(|e| SyncError::invalid(format!("watch: invalid resume token: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, Timestamp};

    fn payload(options: Document) -> Payload {
        let d = doc! { "pipeline": [], "options": options };
        Payload::from_bytes(mongodb::bson::to_vec(&d).unwrap(), "watch").unwrap()
    }

    #[test]
    fn options_are_read_with_the_node_driver_names() {
        let o = options(&payload(doc! {
            "fullDocument": "updateLookup",
            "fullDocumentBeforeChange": "whenAvailable",
            "resumeAfter": { "_data": "8263" },
            "startAtOperationTime": Timestamp { time: 5, increment: 1 },
            "maxAwaitTimeMS": 250,
            "batchSize": 10.0,
            "showExpandedEvents": true,
        }))
        .unwrap();
        assert!(matches!(
            o.full_document,
            Some(FullDocumentType::UpdateLookup)
        ));
        assert!(matches!(
            o.full_document_before_change,
            Some(FullDocumentBeforeChangeType::WhenAvailable)
        ));
        // The token goes back to the server as the document it was.
        let sent = mongodb::bson::to_bson(&o.resume_after.unwrap()).unwrap();
        assert_eq!(sent, Bson::Document(doc! { "_data": "8263" }));
        assert_eq!(o.max_await_time, Some(Duration::from_millis(250)));
        assert_eq!(o.batch_size, Some(10));
        assert_eq!(o.show_expanded_events, Some(true));
        assert_eq!(
            o.start_at_operation_time,
            Some(Timestamp {
                time: 5,
                increment: 1
            })
        );
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        let why = |d: Document| options(&payload(d)).unwrap_err().to_string();
        assert!(why(doc! { "maxAwaitTimeMS": -1 }).contains("'maxAwaitTimeMS'"));
        assert!(why(doc! { "resumeAfter": "x" }).contains("'resumeAfter' must be an object"));
        assert!(why(doc! { "fullDocument": 1 }).contains("'fullDocument' must be a string"));
        assert!(why(doc! { "fullDocument": "sometimes" })
            .contains("must be one of 'default', 'updateLookup'"));
        assert!(why(doc! { "fullDocumentBeforeChange": "x" }).contains("must be one of 'off'"));
        assert!(why(doc! { "session": {} }).contains("unknown option 'session'"));
    }
}
