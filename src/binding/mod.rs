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

    /// Runs a write (`write`) or read method with a copy of `args`.
    ///
    /// A plain function that copies `args` and returns a promise, rather than
    /// an `async fn` taking a `Buffer`: a `Buffer` moved into the future is
    /// dropped on a runtime thread, and napi then has to wake the JS thread a
    /// second time to release its reference. The result is copied into a new
    /// buffer on the JS thread, which for these small documents is cheaper
    /// than an external buffer with a finalizer.
    fn call<'env>(
        &self,
        env: &'env Env,
        write: bool,
        [db, coll, op]: [String; 3],
        args: BufferSlice,
    ) -> Result<PromiseRaw<'env, BufferSlice<'env>>> {
        let engine = self.engine.clone();
        let args = args.to_vec();
        env.spawn_future_with_callback(
            async move {
                let out = if write {
                    engine.write(&db, &coll, &op, args).await
                } else {
                    engine.read(&db, &coll, &op, args).await
                };
                out.map_err(|e| js_error(e, &engine.secrets()))
            },
            BufferSlice::copy_from,
        )
    }

    /// Runs a write method; `args` and the result are BSON documents.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn write<'env>(
        &self,
        env: &'env Env,
        db: String,
        coll: String,
        op: String,
        args: BufferSlice,
    ) -> Result<PromiseRaw<'env, BufferSlice<'env>>> {
        self.call(env, true, [db, coll, op], args)
    }

    /// Runs a read method; the result is concatenated BSON documents.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn read<'env>(
        &self,
        env: &'env Env,
        db: String,
        coll: String,
        op: String,
        args: BufferSlice,
    ) -> Result<PromiseRaw<'env, BufferSlice<'env>>> {
        self.call(env, false, [db, coll, op], args)
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
    pub async fn full_sync_status(&self) -> String {
        serde_json::to_string(&self.engine.full_sync_status().await).unwrap_or_default()
    }

    /// Waits for full sync `id` (default: this process's running one), here
    /// or in another process of the data directory; returns its final
    /// status as JSON.
    #[napi]
    pub async fn wait_full_sync(&self, id: Option<String>) -> Result<String> {
        let v = self.engine.wait_full_sync(id.as_deref()).await;
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
    pub async fn verify_status(&self) -> Result<Buffer> {
        let bytes = mongodb::bson::to_vec(&self.engine.verify_status().await)
            .map_err(|e| self.err(SyncError::Internal(e.to_string())))?;
        Ok(bytes.into())
    }
}

/// Builds the runtime every call runs on, with `SYNC_RUNTIME_THREADS` workers
/// (default 1). With one worker, an operation and the driver's own tasks it
/// waits on (connection pool, topology updates) run on the same thread, so a
/// write does not pay a cross-thread wake-up for each of them: sequential
/// writes measured 25-45 µs faster than on two workers (BENCHMARKS.md). A
/// value `createSync` would refuse leaves the default here; `createSync` then
/// fails with the error that names it.
#[napi_derive::module_init]
fn init_runtime() {
    let threads =
        crate::config::runtime_threads(std::env::var("SYNC_RUNTIME_THREADS").ok().as_deref())
            .unwrap_or(crate::config::DEFAULT_RUNTIME_THREADS);
    if let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        // Named so `top -H` tells it from the replicator's thread.
        .thread_name("dual-sync-calls")
        // Room for documents nested as deep as `Payload` lets through, in
        // a debug build too (tokio's default is 2 MiB); only what is used
        // is ever backed by memory.
        .thread_stack_size(crate::replicate::STACK_SIZE)
        .enable_all()
        .build()
    {
        napi::bindgen_prelude::create_custom_tokio_runtime(rt);
    }
}
