//! dual-mongo-sync: local-first MongoDB writes for Node.js, replicated to
//! MongoDB Atlas by a Rust/tokio engine.
//!
//! Every write goes to the local MongoDB and resolves as soon as the local
//! write is done. Before it is sent, the documents it may change are recorded
//! in a durable journal; a replicator then copies their current local state to
//! Atlas in ordered, batched, retried, idempotent steps. A crash at any point
//! loses nothing: the journal outlives the process.
//!
//! # Layout
//! - [`config`]: settings from env vars and JS options, defaults, validation.
//! - [`uri`]: connection strings written for the Node driver, read by the Rust one.
//! - [`error`]: the one error type, stable codes, the one retry decision.
//! - [`capture`]: the write path: Collection methods on the local server,
//!   pinning and journaling the documents each write may change.
//! - [`journal`]: durable pending work (SQLite, WAL), leader and owner locks.
//! - [`replicate`]: the leader's loop: batches, workers, backoff, apply to Atlas.
//! - [`observe`]: counters, lag, health checks, Prometheus text.
//! - [`reconcile`]: full sync and verify/repair of whole collections.
//! - [`engine`]: opens and closes all of the above as one instance.
//! - `binding` (feature `napi`): the Node.js surface; the only napi code.

pub mod capture;
pub mod config;
pub mod engine;
pub mod error;
pub mod journal;
pub mod observe;
pub mod reconcile;
pub mod replicate;
pub mod uri;

#[cfg(all(feature = "napi", not(test)))]
mod binding;

pub use config::Config;
pub use engine::Engine;
pub use error::SyncError;
