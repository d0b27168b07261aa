//! Reconcile: whole-collection work. Full sync marks every document of the
//! chosen collections dirty; verify compares both servers and, with
//! `repair`, marks only the differing documents dirty.
//!
//! Invariants:
//! - neither writes to Atlas itself: both put `_id`s in the journal and let
//!   the replicator copy them, so per-document order, retries and
//!   dead-lettering are the same as for app writes, and a full sync running
//!   while the app writes still ends identical;
//! - memory stays bounded: collections are streamed, never loaded whole;
//! - a full sync keeps a checkpoint in the journal and resumes after a crash.

mod full_sync;
mod scope;
mod verify;

pub use full_sync::{resume_full_sync, unfinished, FullSync};
pub use scope::resolve_scope;
pub use verify::{
    publish as publish_verify, shared_status as shared_verify_status, verify, VerifyJob,
    VerifyOptions,
};

use std::sync::Arc;
use std::time::Duration;

use mongodb::Client;

use crate::config::Config;
use crate::error::SyncError;
use crate::journal::Journal;

/// What full sync and verify need.
pub struct Ctx {
    pub config: Arc<Config>,
    pub local: Client,
    pub atlas: Arc<crate::replicate::Atlas>,
    pub journal: Arc<Journal>,
    pub default_db: String,
}

/// The two servers as errors name them ([`SyncError::on`]).
pub const LOCAL: &str = "local MongoDB";
pub const ATLAS: &str = "Atlas";

/// Pings both servers; the error of one that does not answer names it.
/// Within the clients' own server selection timeouts, as any call.
pub async fn reachable(ctx: &Ctx) -> Result<(), SyncError> {
    let ping = |client: Client, server: &'static str| async move {
        client
            .database("admin")
            .run_command(mongodb::bson::doc! { "ping": 1 })
            .await
            .map(drop)
            .map_err(|e| SyncError::from(e).on(server))
    };
    tokio::try_join!(ping(ctx.local.clone(), LOCAL), ping(ctx.atlas.get(), ATLAS))?;
    Ok(())
}

/// Waits until every journal entry up to `target` left the journal.
pub async fn drained(
    j: &Journal,
    target: i64,
    timeout: Option<Duration>,
) -> Result<bool, SyncError> {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let changed = j.changed.notified();
        match j.min_seq().await? {
            None => return Ok(true),
            Some(min) if min > target => return Ok(true),
            Some(_) => {}
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Ok(false);
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
    }
}
