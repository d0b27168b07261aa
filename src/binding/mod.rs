//! The Node.js binding: the only module that touches napi.
//!
//! Arguments and results cross as BSON bytes (`Buffer`), produced and read by
//! the npm `bson` package in `lib/`, so every BSON type survives exactly.
//! Errors cross as one JSON payload (see `SyncError::to_js_payload`) that
//! `lib/errors.js` turns into `Error` objects with stable `code`s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::config::Config;
use crate::engine::Engine;
use crate::error::SyncError;

/// Marks an error message as a JSON payload for `lib/errors.js`.
const PAYLOAD_MARK: &str = "\u{1}dual-mongo-sync:";

fn js_error(e: SyncError, secrets: &[&str]) -> napi::Error {
    let payload = e.to_js_payload(secrets);
    napi::Error::new(Status::GenericFailure, format!("{PAYLOAD_MARK}{payload}"))
}

/// A running engine, driven by `lib/sync.js`.
#[napi]
pub struct NativeSync {
    engine: Arc<Engine>,
}

/// Opens an engine. `options` is a JSON object of option name to string
/// value (JS options override env vars).
#[napi]
pub async fn open(options: String) -> Result<NativeSync> {
    let overrides: HashMap<String, String> = serde_json::from_str(&options)
        .map_err(|e| js_error(SyncError::invalid(format!("createSync options: {e}")), &[]))?;
    let config = Config::from_env(&overrides).map_err(|e| js_error(e, &[]))?;
    let secrets: Vec<String> = [Some(config.local_uri.clone()), config.atlas_uri.clone()]
        .into_iter()
        .flatten()
        .collect();
    let s: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let engine = Engine::open(config).await.map_err(|e| js_error(e, &s))?;
    Ok(NativeSync {
        engine: Arc::new(engine),
    })
}

#[napi]
impl NativeSync {
    fn err(&self, e: SyncError) -> napi::Error {
        js_error(e, &self.engine.secrets())
    }

    /// Runs a write method; `args` and the result are BSON documents.
    #[napi]
    pub async fn write(
        &self,
        db: String,
        coll: String,
        op: String,
        args: Buffer,
    ) -> Result<Buffer> {
        let out = self
            .engine
            .write(&db, &coll, &op, args.to_vec())
            .await
            .map_err(|e| self.err(e))?;
        Ok(out.into())
    }

    /// Runs a read method; the result is concatenated BSON documents.
    #[napi]
    pub async fn read(&self, db: String, coll: String, op: String, args: Buffer) -> Result<Buffer> {
        let out = self
            .engine
            .read(&db, &coll, &op, args.to_vec())
            .await
            .map_err(|e| self.err(e))?;
        Ok(out.into())
    }

    #[napi]
    pub async fn flush(&self, timeout_ms: u32) -> Result<()> {
        self.engine
            .flush(Duration::from_millis(timeout_ms as u64))
            .await
            .map_err(|e| self.err(e))
    }

    #[napi]
    pub fn pause(&self) -> Result<()> {
        self.engine.pause().map_err(|e| self.err(e))
    }

    #[napi]
    pub fn resume(&self) -> Result<()> {
        self.engine.resume().map_err(|e| self.err(e))
    }

    #[napi]
    pub async fn close(&self, timeout_ms: u32) -> Result<()> {
        self.engine
            .close(Duration::from_millis(timeout_ms as u64))
            .await
            .map_err(|e| self.err(e))
    }

    /// `sync.health()` as JSON.
    #[napi]
    pub async fn health(&self) -> Result<String> {
        let v = self.engine.health_json().await.map_err(|e| self.err(e))?;
        Ok(v.to_string())
    }

    /// `sync.metrics()` as JSON.
    #[napi]
    pub async fn metrics(&self) -> Result<String> {
        let v = self.engine.metrics_json().await.map_err(|e| self.err(e))?;
        Ok(v.to_string())
    }

    /// `sync.metrics()` in Prometheus text format.
    #[napi]
    pub async fn metrics_prometheus(&self) -> Result<String> {
        let v = self.engine.metrics_json().await.map_err(|e| self.err(e))?;
        Ok(crate::observe::to_prometheus(&v))
    }

    #[napi]
    pub async fn retry_dead_letters(&self) -> Result<f64> {
        let n = self
            .engine
            .retry_dead_letters()
            .await
            .map_err(|e| self.err(e))?;
        Ok(n as f64)
    }

    /// The database of `MONGODB_URI` (or `test`).
    #[napi(getter)]
    pub fn default_db(&self) -> String {
        self.engine.default_db().to_string()
    }

    /// Whether replication is enabled.
    #[napi(getter)]
    pub fn enabled(&self) -> bool {
        self.engine.config.enabled
    }
}

/// The JSON options of a full sync or a verify (`lib/sync.js` refuses
/// `repair` for a full sync before it gets here).
fn reconcile_options(
    options: &str,
) -> std::result::Result<crate::reconcile::VerifyOptions, SyncError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct O {
        collections: Option<Vec<String>>,
        repair: Option<bool>,
    }
    let o: O =
        serde_json::from_str(options).map_err(|e| SyncError::invalid(format!("options: {e}")))?;
    Ok(crate::reconcile::VerifyOptions {
        collections: o.collections,
        repair: o.repair.unwrap_or(false),
    })
}

#[napi]
impl NativeSync {
    /// Starts a full sync; `options` is JSON `{ collections? }`. Returns its id.
    #[napi]
    pub async fn start_full_sync(&self, options: String) -> Result<String> {
        let collections = reconcile_options(&options)
            .map_err(|e| self.err(e))?
            .collections;
        self.engine
            .start_full_sync(collections)
            .await
            .map_err(|e| self.err(e))
    }

    /// The current or last full sync, as JSON.
    #[napi]
    pub fn full_sync_status(&self) -> String {
        serde_json::to_string(&self.engine.full_sync_status()).unwrap_or_default()
    }

    /// Waits for the running full sync; returns its final status as JSON.
    #[napi]
    pub async fn wait_full_sync(&self) -> Result<String> {
        let v = self.engine.wait_full_sync().await;
        Ok(serde_json::to_string(&v).unwrap_or_default())
    }

    /// Compares local and Atlas; `options` is JSON `{ collections?, repair? }`.
    /// Returns the report as BSON (its `_id` lists keep their types).
    #[napi]
    pub async fn verify(&self, options: String) -> Result<Buffer> {
        let opts = reconcile_options(&options).map_err(|e| self.err(e))?;
        let report = self.engine.verify(opts).await.map_err(|e| self.err(e))?;
        let bytes = mongodb::bson::to_vec(&report)
            .map_err(|e| self.err(SyncError::Internal(e.to_string())))?;
        Ok(bytes.into())
    }

    /// Starts a verify in the background; returns its id. (async: it spawns
    /// on the tokio runtime, which a sync napi function must not do.)
    #[napi]
    pub async fn start_verify(&self, options: String) -> Result<String> {
        let opts = reconcile_options(&options).map_err(|e| self.err(e))?;
        self.engine.start_verify(opts).map_err(|e| self.err(e))
    }

    /// The current or last verify (`{ id, state, report, error }`) as BSON.
    #[napi]
    pub fn verify_status(&self) -> Result<Buffer> {
        let bytes = mongodb::bson::to_vec(&self.engine.verify_status())
            .map_err(|e| self.err(SyncError::Internal(e.to_string())))?;
        Ok(bytes.into())
    }
}
