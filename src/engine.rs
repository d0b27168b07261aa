//! The engine: one local client, one Atlas client, one journal, one
//! replicator, tied together and shut down together.
//!
//! Invariants:
//! - `open` fails (clear error, nothing started) unless the configuration is
//!   valid, the local server answers and the journal opens;
//! - the app never waits on Atlas: an unreachable Atlas only shows in health;
//! - after `close`, every call fails with `ERR_SYNC_CLOSED`; calls already
//!   running finish first, then the replicator drains until the deadline.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::options::ClientOptions;
use mongodb::Client;
use serde_json::Value;

use crate::capture::{Payload, Writer};
use crate::config::{redact_uri, scrub, Config};
use crate::error::SyncError;
use crate::journal::{now_ms, Journal};
use crate::observe::{self, FullSyncView, Metrics, QueueView};
use crate::reconcile::{self, FullSync, VerifyJob, VerifyOptions};
use crate::replicate::{self, indexes};

/// How often connections are checked for health.
const PING_EVERY: Duration = Duration::from_secs(2);
/// How often an engine that does not lead looks for intent files to move (see `adopt_orphans`).
const ADOPT_EVERY: Duration = Duration::from_secs(5);

struct Inner {
    writer: Writer,
    journal: Option<Arc<Journal>>,
    replicator: Option<replicate::Handle>,
    /// Full sync and verify; `None` while sync is disabled.
    reconcile: Option<Arc<reconcile::Ctx>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// A running dual-mongo-sync instance.
pub struct Engine {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    default_db: String,
    secrets: Vec<String>,
    inner: RwLock<Option<Arc<Inner>>>,
    full_sync: Arc<FullSync>,
    verify_job: Arc<VerifyJob>,
    /// Verify runs of this engine, stopped when it closes.
    verifies: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    /// `socketTimeoutMS` of `MONGODB_URI`: how long one call waits for the
    /// local server.
    socket_timeout: Option<Duration>,
    /// Set once `close()` is done: a `flush()` still waiting ends then.
    closed: tokio::sync::watch::Sender<bool>,
}

fn init_logging(level: &str) {
    static ONCE: once_cell::sync::OnceCell<()> = once_cell::sync::OnceCell::new();
    ONCE.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::new(format!("dual_mongo_sync={level}"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .try_init();
    });
}

/// How long an Atlas operation waits for a reachable server before it fails
/// and is retried with backoff (unless the URI sets serverSelectionTimeoutMS).
const ATLAS_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Client options for `uri`, read as the Node driver reads it (see
/// [`crate::uri`]), and its `socketTimeoutMS`.
async fn options_for(
    var: &'static str,
    name: &str,
    uri: &str,
    secrets: &[&str],
) -> Result<(ClientOptions, Option<Duration>), SyncError> {
    let rust = crate::uri::for_rust(name, uri)?;
    if !rust.not_applied.is_empty() {
        tracing::info!(
            "{name}: options of the Node driver with no effect here: {}",
            scrub(&rust.not_applied.join(", "), secrets)
        );
    }
    let mut opts = ClientOptions::parse(&rust.uri).await.map_err(|e| {
        SyncError::config(
            name,
            &redact_uri(uri),
            &format!(
                "a valid connection string ({})",
                scrub(&e.to_string(), secrets)
            ),
        )
    })?;
    opts.app_name
        .get_or_insert_with(|| "dual-mongo-sync".to_string());
    if var == "MONGODB_ATLAS_URI" {
        opts.server_selection_timeout
            .get_or_insert(ATLAS_SELECTION_TIMEOUT);
    } else {
        read_primary(&mut opts);
    }
    Ok((opts, rust.socket_timeout))
}

/// The error of a call that waited `limit` (`socketTimeoutMS`) for the local
/// server: a network timeout, as the Node driver reports one. The write it
/// carried may still be applied (see [`limited`]).
fn socket_timed_out(limit: Duration) -> SyncError {
    let io = std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "the local server did not answer within socketTimeoutMS ({} ms)",
            limit.as_millis()
        ),
    );
    SyncError::Mongo(mongodb::error::Error::from(io))
}

/// Runs `call` for at most `limit` (`socketTimeoutMS`), then drops it, as
/// the Node driver closes the socket of a call that timed out: a command
/// not sent yet (waiting for a server or a connection) is never sent, one
/// already sent may still be applied. Dropping is safe for the journal: an
/// append whose caller is gone is marked ready by the journal's writer, and
/// a write dropped while it runs settles its entries as after a write of
/// unknown outcome (`capture::Unsettled`). A cursor the call had opened is
/// dropped with it (the driver kills it on the server).
async fn limited<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, SyncError>>,
) -> Result<T, SyncError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(socket_timed_out(limit)))
}

/// The local server is read at its primary whatever the URI's
/// `readPreference`: the engine's own reads (the `_id`s a write pins, the
/// state the replicator copies, full sync's scan, verify) must see every
/// acknowledged write. A secondary behind the primary would make the
/// replicator find a just-written document missing and delete it on Atlas.
fn read_primary(opts: &mut ClientOptions) {
    use mongodb::options::{ReadPreference, SelectionCriteria};
    let primary = SelectionCriteria::ReadPreference(ReadPreference::Primary);
    if let Some(other) = opts.selection_criteria.replace(primary) {
        if !matches!(
            other,
            SelectionCriteria::ReadPreference(ReadPreference::Primary)
        ) {
            tracing::warn!(
                "MONGODB_URI asks for readPreference {other:?}; dual-mongo-sync reads the local primary"
            );
        }
    }
}

fn connect_error<'a>(
    var: &'static str,
    secrets: &'a [&'a str],
) -> impl Fn(mongodb::error::Error) -> SyncError + 'a {
    move |e| SyncError::Connect {
        which: var,
        message: scrub(&e.to_string(), secrets),
    }
}

/// Why a ping failed: an error, or no answer at all (a silent network).
enum PingError {
    Failed(String),
    Silent(Duration),
}

impl std::fmt::Display for PingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PingError::Failed(m) => f.write_str(m),
            PingError::Silent(d) => write!(f, "no answer within {} ms", d.as_millis()),
        }
    }
}

async fn ping(client: &Client, within: Duration) -> Result<(), PingError> {
    let admin = client.database("admin");
    match tokio::time::timeout(within, admin.run_command(doc! { "ping": 1 })).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(PingError::Failed(e.to_string())),
        Err(_) => Err(PingError::Silent(within)),
    }
}

/// A process-unique id for this engine's journal entries.
fn owner_id() -> String {
    let instance = std::env::var("NODE_APP_INSTANCE").unwrap_or_else(|_| "0".into());
    format!(
        "i{instance}-p{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl Engine {
    /// Connects, opens the journal and starts the replicator.
    pub async fn open(config: Config) -> Result<Engine, SyncError> {
        init_logging(&config.log_level);
        let config = Arc::new(config);
        let secrets: Vec<String> = [Some(config.local_uri.clone()), config.atlas_uri.clone()]
            .into_iter()
            .flatten()
            .collect();
        let s: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let (local_opts, socket_timeout) =
            options_for("MONGODB_URI", &config.uri_names.0, &config.local_uri, &s).await?;
        let db = local_opts.default_database.clone();
        let local =
            Client::with_options(local_opts.clone()).map_err(connect_error("MONGODB_URI", &s))?;
        ping(&local, Duration::from_secs(30))
            .await
            .map_err(|m| SyncError::Connect {
                which: "the local MongoDB (MONGODB_URI)",
                message: scrub(&m.to_string(), &s),
            })?;
        let metrics = Arc::new(Metrics::new());
        metrics.local_up.store(true, Relaxed);
        let (atlas, journal, replicator) = if config.enabled {
            let uri = config.atlas_uri.clone().unwrap_or_default();
            let (atlas_opts, atlas_socket_timeout) =
                options_for("MONGODB_ATLAS_URI", &config.uri_names.1, &uri, &s).await?;
            if atlas_socket_timeout.is_some() {
                tracing::info!(
                    "MONGODB_ATLAS_URI: socketTimeoutMS is not applied; each Atlas batch is bounded by SYNC_ATLAS_TIMEOUT_MS ({} ms)",
                    config.atlas_timeout_ms
                );
            }
            let atlas = Arc::new(
                replicate::Atlas::new(atlas_opts)
                    .map_err(connect_error("MONGODB_ATLAS_URI", &s))?,
            );
            // The replicator's own client to the local server.
            let replica_local =
                replicate::client(local_opts).map_err(connect_error("MONGODB_URI", &s))?;
            let dir = config.data_dir.clone();
            let fsync = config.journal_fsync;
            let journal =
                tokio::task::spawn_blocking(move || Journal::open(&dir, fsync, owner_id()))
                    .await
                    .map_err(|e| SyncError::Internal(e.to_string()))??;
            let journal = Arc::new(journal);
            let ctx = Arc::new(replicate::Ctx {
                config: config.clone(),
                local: replica_local,
                atlas: atlas.clone(),
                journal: journal.clone(),
                metrics: metrics.clone(),
                secrets: secrets.clone(),
            });
            (Some(atlas), Some(journal), Some(replicate::spawn(ctx)))
        } else {
            (None, None, None)
        };
        let default_db = db.unwrap_or_else(|| "test".to_string());
        let full_sync = Arc::new(FullSync::default());
        let pinger = watch_connections(
            local.clone(),
            atlas.clone(),
            metrics.clone(),
            secrets.clone(),
        );
        let mut background = vec![tokio::spawn(pinger)];
        let reconcile = match (&atlas, &journal) {
            (Some(a), Some(j)) => {
                let ctx = Arc::new(reconcile::Ctx {
                    config: config.clone(),
                    local: local.clone(),
                    atlas: a.clone(),
                    journal: j.clone(),
                    default_db: default_db.clone(),
                });
                let resume = resume_when_leader(full_sync.clone(), ctx.clone(), metrics.clone());
                background.push(tokio::spawn(resume));
                background.push(tokio::spawn(adopt_orphans(j.clone(), metrics.clone())));
                Some(ctx)
            }
            _ => None,
        };
        tracing::info!(
            "dual-mongo-sync started: local {}, sync {}",
            redact_uri(&config.local_uri),
            if config.enabled {
                "enabled"
            } else {
                "disabled"
            }
        );
        let writer = Writer::new(local, journal.clone(), config.clone(), metrics.clone());
        let inner = Inner {
            writer,
            journal,
            replicator,
            reconcile,
            background,
        };
        Ok(Engine {
            config,
            metrics,
            default_db,
            secrets,
            inner: RwLock::new(Some(Arc::new(inner))),
            full_sync,
            verify_job: Arc::new(VerifyJob::default()),
            verifies: Default::default(),
            socket_timeout,
            closed: tokio::sync::watch::Sender::new(false),
        })
    }

    fn inner(&self) -> Result<Arc<Inner>, SyncError> {
        self.inner
            .read()
            .expect("engine lock poisoned")
            .clone()
            .ok_or(SyncError::Closed)
    }

    /// Connection strings to scrub from anything shown.
    pub fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }

    /// The database `sync.collection(name)` uses: the one in `MONGODB_URI`,
    /// else `test` (as the Node driver).
    pub fn default_db(&self) -> &str {
        &self.default_db
    }

    /// Runs a write method with BSON `args`; its result as BSON.
    pub async fn write(
        &self,
        db: &str,
        coll: &str,
        op: &str,
        args: Vec<u8>,
    ) -> Result<Vec<u8>, SyncError> {
        let inner = self.inner()?;
        let p = Payload::from_bytes(args, op)?;
        let call = inner.writer.write(db, coll, op, p);
        let out: Document = match self.socket_timeout {
            None => call.await?,
            Some(limit) => limited(limit, call).await?,
        };
        mongodb::bson::to_vec(&out).map_err(|e| SyncError::Internal(e.to_string()))
    }

    /// Runs a read method with BSON `args`; its result as BSON.
    pub async fn read(
        &self,
        db: &str,
        coll: &str,
        op: &str,
        args: Vec<u8>,
    ) -> Result<Vec<u8>, SyncError> {
        let inner = self.inner()?;
        let p = Payload::from_bytes(args, op)?;
        let call = inner.writer.read(db, coll, op, p);
        match self.socket_timeout {
            None => call.await,
            Some(limit) => limited(limit, call).await,
        }
    }

    /// Pauses replication for every process of the data directory (pm2
    /// cluster mode: whichever instance leads honours it) until `resume`
    /// from any of them, or until this process ends.
    pub fn pause(&self) -> Result<(), SyncError> {
        self.set_paused(true)
    }

    /// Ends a pause, whichever process of the data directory took it.
    pub fn resume(&self) -> Result<(), SyncError> {
        self.set_paused(false)
    }

    fn set_paused(&self, paused: bool) -> Result<(), SyncError> {
        let inner = self.inner()?;
        if let (Some(r), Some(j)) = (&inner.replicator, &inner.journal) {
            r.set_paused(j, paused);
        }
        Ok(())
    }

    /// Whether replication is paused: this process's last request until the
    /// journal has it, then the shared pause.
    async fn is_paused(&self, inner: &Inner) -> bool {
        match (&inner.replicator, &inner.journal) {
            (Some(r), Some(j)) => match r.pending_pause() {
                Some(p) => p,
                None => j.shared_pause().await.unwrap_or(false),
            },
            _ => false,
        }
    }

    /// Waits until every change captured before the call is on Atlas.
    /// Waits until everything captured so far is on Atlas, or `timeout`.
    /// A `close()` meanwhile ends the wait with `Closed` (its own flush ran
    /// first: what it drained, this one saw drained before).
    pub async fn flush(&self, timeout: Duration) -> Result<(), SyncError> {
        let inner = self.inner()?;
        let Some(j) = &inner.journal else {
            return Ok(());
        };
        let mut closed = self.closed.subscribe();
        tokio::select! {
            r = flush_journal(j, timeout) => r,
            _ = closed.wait_for(|c| *c) => Err(SyncError::Closed),
        }
    }

    fn reconcile_ctx(&self) -> Result<Arc<reconcile::Ctx>, SyncError> {
        self.inner()?.reconcile.clone().ok_or_else(|| {
            SyncError::invalid("full sync and verify need replication on (SYNC_ENABLED=true)")
        })
    }

    /// Starts a full sync (or returns the running one's id).
    pub async fn start_full_sync(
        &self,
        collections: Option<Vec<String>>,
    ) -> Result<String, SyncError> {
        let ctx = self.reconcile_ctx()?;
        self.full_sync.start(ctx, collections).await
    }

    /// The running or last full sync, this process's or, while another
    /// process of the data directory runs one, that one.
    pub async fn full_sync_status(&self) -> FullSyncView {
        match self.inner().ok().and_then(|i| i.journal.clone()) {
            Some(j) => self.full_sync.shared_status(&j).await,
            None => self.full_sync.status(),
        }
    }

    /// Waits for full sync `id` (or this engine's running one) to end, here
    /// or in another process of the data directory.
    pub async fn wait_full_sync(&self, id: Option<&str>) -> FullSyncView {
        match self.inner().ok().and_then(|i| i.journal.clone()) {
            Some(j) => self.full_sync.wait(&j, id).await,
            None => self.full_sync.status(),
        }
    }

    /// Compares local and Atlas (and repairs, if asked); records the run.
    pub async fn verify(&self, opts: VerifyOptions) -> Result<Document, SyncError> {
        let ctx = self.reconcile_ctx()?;
        self.verify_job
            .begin(&opts)
            .map_err(|(id, _)| SyncError::Conflict(format!("verify {id} is already running")))?;
        reconcile::publish_verify(&ctx.journal, &self.verify_job).await;
        let r = reconcile::verify(&ctx, opts).await;
        self.verify_job.end(&r);
        reconcile::publish_verify(&ctx.journal, &self.verify_job).await;
        if let Err(e) = &r {
            self.metrics
                .record_error(scrub(&format!("verify failed: {e}"), &self.secrets()));
        }
        r
    }

    /// Starts a verify in the background; returns its id.
    pub fn start_verify(&self, opts: VerifyOptions) -> Result<String, SyncError> {
        let ctx = self.reconcile_ctx()?;
        let id = match self.verify_job.begin(&opts) {
            Ok(id) => id,
            // The same verify runs already: that one's id.
            Err((running, None)) => return Ok(running),
            Err((running, Some(asked))) => {
                return Err(SyncError::Conflict(format!(
                "verify {running} is running over {asked}; it must end before one over {} starts",
                opts.describe()
            )))
            }
        };
        let job = self.verify_job.clone();
        let task = tokio::spawn(async move {
            reconcile::publish_verify(&ctx.journal, &job).await;
            let r = reconcile::verify(&ctx, opts).await;
            job.end(&r);
            reconcile::publish_verify(&ctx.journal, &job).await;
        });
        let mut verifies = self.verifies.lock().expect("engine lock poisoned");
        verifies.retain(|t| !t.is_finished());
        verifies.push(task.abort_handle());
        Ok(id)
    }

    /// The latest verify of the data directory (this process's or another's).
    pub async fn verify_status(&self) -> Document {
        match self.inner().ok().and_then(|i| i.journal.clone()) {
            Some(j) => reconcile::shared_verify_status(&j, &self.verify_job).await,
            None => self.verify_job.status(),
        }
    }

    /// Puts dead-lettered documents back in the queue; returns how many.
    /// Puts the dead letters back in the queue; the leader (this process or
    /// another) takes them out of its success rate (see
    /// `replicate::note_requeued`).
    pub async fn retry_dead_letters(&self) -> Result<u64, SyncError> {
        match &self.inner()?.journal {
            Some(j) => {
                let n = j.requeue_dead_letters().await?;
                replicate::count_requeued(j, n).await?;
                Ok(n)
            }
            None => Ok(0),
        }
    }

    async fn queue_view(&self, inner: &Inner) -> (QueueView, bool) {
        match &inner.journal {
            None => (QueueView::default(), true),
            Some(j) => match j.stats().await {
                Ok(s) => (
                    QueueView {
                        size: s.pending,
                        oldest_age_ms: s.oldest_at_ms.map(|t| (now_ms() - t).max(0)),
                        dead_letters: s.dead_letters,
                    },
                    true,
                ),
                Err(e) => {
                    self.metrics
                        .record_error(scrub(&e.to_string(), &self.secrets()));
                    (QueueView::default(), false)
                }
            },
        }
    }

    /// The replicator's figures and whose they are: this process's while
    /// it leads (or has no journal), else the ones the leader published
    /// within the last few seconds, else this process's (no live leader).
    async fn replication_view(&self, inner: &Inner) -> (Value, &'static str) {
        let own = || (observe::replication_json(&self.metrics), "this process");
        let Some(j) = &inner.journal else {
            return own();
        };
        if self.metrics.is_leader.load(Relaxed) {
            return own();
        }
        match replicate::leader_stats(j).await {
            Some(v) => (v, "leader"),
            None => own(),
        }
    }

    pub async fn metrics_json(&self) -> Result<Value, SyncError> {
        let inner = self.inner()?;
        let (q, _) = self.queue_view(&inner).await;
        let (replication, from) = self.replication_view(&inner).await;
        let mut v = observe::metrics_json(
            &self.metrics,
            &self.config,
            &q,
            &self.full_sync_status().await,
            &replication,
            from,
        );
        // By this process or another one of the data directory.
        v["paused"] = Value::Bool(self.is_paused(&inner).await);
        Ok(v)
    }

    pub async fn health_json(&self) -> Result<Value, SyncError> {
        let inner = self.inner()?;
        let (q, journal_ok) = self.queue_view(&inner).await;
        let (replication, _) = self.replication_view(&inner).await;
        let rate = replication["successRate"].as_f64().unwrap_or(1.0);
        Ok(observe::health_json(
            &self.metrics,
            &self.config,
            &q,
            journal_ok,
            rate,
        ))
    }

    /// Refuses new calls, lets running ones finish, drains the queue until
    /// `timeout`, then stops everything. What is not on Atlas by then stays
    /// in the journal for the next start.
    pub async fn close(&self, timeout: Duration) -> Result<(), SyncError> {
        let Some(inner) = self.inner.write().expect("engine lock poisoned").take() else {
            return Ok(());
        };
        inner.writer.wait_idle().await;
        if let (Some(j), Some(r)) = (&inner.journal, &inner.replicator) {
            if let Err(e) = flush_journal(j, timeout).await {
                tracing::warn!("closing before everything reached Atlas: {e}");
            }
            r.stop(Duration::from_secs(5)).await;
        }
        inner.background.iter().for_each(|t| t.abort());
        // A full sync or verify still running here would go on polling the
        // closed journal; a full sync's checkpoint stays for the next leader.
        self.full_sync.abort();
        for t in self
            .verifies
            .lock()
            .expect("engine lock poisoned")
            .drain(..)
        {
            t.abort();
        }
        if let Some(j) = inner.journal.clone() {
            let _ = tokio::task::spawn_blocking(move || j.close()).await;
        }
        self.closed.send_replace(true);
        tracing::info!("dual-mongo-sync closed");
        Ok(())
    }
}

async fn flush_journal(j: &Arc<Journal>, timeout: Duration) -> Result<(), SyncError> {
    let deadline = std::time::Instant::now() + timeout;
    let left_time = || deadline.saturating_duration_since(std::time::Instant::now());
    // Intents of engines that died (a pm2 instance killed right after its
    // writes resolved) into the journal first, or the target below would
    // not cover them: they were captured before this flush.
    if let Err(e) = j.adopt_orphans_async().await {
        tracing::warn!("flush: moving a stopped engine's intents failed: {e}");
    }
    // Index changes and drops made so far too (see `replicate::indexes`).
    let marked: Vec<String> = indexes::marks(j)
        .await?
        .into_iter()
        .map(|(ns, _)| ns)
        .collect();
    let target = j.max_seq().await?;
    if !reconcile::drained(j, target, Some(left_time())).await? {
        return Err(flush_timeout(j, timeout).await);
    }
    if marked.is_empty() {
        return Ok(());
    }
    let left =
        indexes::wait_unmarked(j, &marked, Duration::from_millis(10), Some(deadline)).await?;
    if left > 0 {
        return Err(SyncError::Timeout(format!(
            "flush timed out after {} ms with the index changes of {left} collection(s) \
             still waiting for Atlas; check sync.health() for the Atlas connection",
            timeout.as_millis()
        )));
    }
    // A drop's copy journals the documents Atlas must lose: those too.
    let target = j.max_seq().await?;
    if !reconcile::drained(j, target, Some(left_time())).await? {
        return Err(flush_timeout(j, timeout).await);
    }
    Ok(())
}

async fn flush_timeout(j: &Journal, timeout: Duration) -> SyncError {
    let left = j.stats().await.map(|s| s.pending).unwrap_or(0);
    SyncError::Timeout(format!(
        "flush timed out after {} ms with {left} change(s) still waiting for Atlas; \
         check sync.health() for the Atlas connection",
        timeout.as_millis()
    ))
}

/// Resumes an unfinished full sync once this process leads replication.
/// While this engine leads, carries on a full sync that nobody runs: left
/// by a process that stopped (this one's predecessor, or another pm2
/// instance that started it and died while this one led), or ended by an
/// error. First at once, then every `RESUME_EVERY`, doubling up to
/// `RESUME_MAX` while resumed runs keep failing.
async fn resume_when_leader(fs: Arc<FullSync>, ctx: Arc<reconcile::Ctx>, metrics: Arc<Metrics>) {
    const RESUME_EVERY: Duration = Duration::from_secs(30);
    const RESUME_MAX: Duration = Duration::from_secs(3600);
    let mut wait = RESUME_EVERY;
    loop {
        while !metrics.is_leader.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        match reconcile::resume_full_sync(&fs, ctx.clone()).await {
            Ok(true) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RESUME_MAX);
                continue;
            }
            Ok(false) => {
                if !reconcile::unfinished(&ctx.journal).await.unwrap_or(true) {
                    wait = RESUME_EVERY;
                }
            }
            Err(e) => tracing::warn!("could not resume the full sync: {e}"),
        }
        tokio::time::sleep(RESUME_EVERY).await;
    }
}

/// Moves intent files that engines which died logged but never moved into
/// the journal, while this engine does not lead (the leader does it every
/// second): a file this engine claimed at start but failed to import (the
/// journal busy, the disk full) is under its name, and no other engine
/// takes it while it lives.
async fn adopt_orphans(journal: Arc<Journal>, metrics: Arc<Metrics>) {
    loop {
        tokio::time::sleep(ADOPT_EVERY).await;
        if metrics.is_leader.load(Relaxed) {
            continue;
        }
        if let Err(e) = journal.adopt_orphans_async().await {
            tracing::warn!("moving a stopped engine's intents failed: {e}");
        }
    }
}

async fn watch_connections(
    local: Client,
    atlas: Option<Arc<replicate::Atlas>>,
    metrics: Arc<Metrics>,
    secrets: Vec<String>,
) {
    // Why a server does not answer goes to `lastError` (and once to the
    // log), also while nothing waits to be copied: the operator's first
    // look for an Atlas that is down or refuses the credentials.
    let report = |server: &str, was_up: bool, r: &Result<(), PingError>| {
        let s: Vec<&str> = secrets.iter().map(String::as_str).collect();
        match r {
            Err(e) => {
                let msg = scrub(&format!("{server} does not answer: {e}"), &s);
                if was_up {
                    tracing::warn!("{msg}");
                }
                metrics.record_error(msg);
            }
            Ok(()) if !was_up => tracing::info!("{server} answers again"),
            Ok(()) => {}
        }
    };
    let (mut atlas_up, mut local_up) = (true, true);
    loop {
        if let Some(a) = &atlas {
            let r = ping(&a.get(), PING_EVERY).await;
            if let Err(PingError::Silent(_)) = r {
                a.recycle();
            }
            report("Atlas (MONGODB_ATLAS_URI)", atlas_up, &r);
            atlas_up = r.is_ok();
            metrics.atlas_up.store(atlas_up, Relaxed);
        }
        tokio::time::sleep(PING_EVERY).await;
        let r = ping(&local, PING_EVERY).await;
        report("the local MongoDB (MONGODB_URI)", local_up, &r);
        local_up = r.is_ok();
        metrics.local_up.store(local_up, Relaxed);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Ok(mut g) = self.inner.write() {
            if let Some(inner) = g.take() {
                inner.background.iter().for_each(|t| t.abort());
                if let Some(r) = &inner.replicator {
                    r.halt();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::options::{ReadPreference, SelectionCriteria};

    #[tokio::test]
    async fn the_local_server_is_read_at_its_primary() {
        let uri = "mongodb://h:1/?replicaSet=rs&readPreference=secondaryPreferred";
        let (local, _) = options_for("MONGODB_URI", "MONGODB_URI", uri, &[])
            .await
            .unwrap();
        assert!(matches!(
            local.selection_criteria,
            Some(SelectionCriteria::ReadPreference(ReadPreference::Primary))
        ));
        let (plain, _) = options_for("MONGODB_URI", "MONGODB_URI", "mongodb://h:1", &[])
            .await
            .unwrap();
        assert!(matches!(
            plain.selection_criteria,
            Some(SelectionCriteria::ReadPreference(ReadPreference::Primary))
        ));
        let (atlas, _) = options_for("MONGODB_ATLAS_URI", "MONGODB_ATLAS_URI", uri, &[])
            .await
            .unwrap();
        assert!(matches!(
            atlas.selection_criteria,
            Some(SelectionCriteria::ReadPreference(
                ReadPreference::SecondaryPreferred { .. }
            ))
        ));
    }

    #[tokio::test]
    async fn a_node_driver_string_is_read_as_the_node_driver_reads_it() {
        let uri = "mongodb://h:1/db?j=true&wtimeout=250&socketTimeoutMS=4500\
                   &family=4&compressors=snappy,zlib&zlibCompressionLevel=6";
        let (o, socket) = options_for("MONGODB_URI", "MONGODB_URI", uri, &[])
            .await
            .unwrap();
        assert_eq!(socket, Some(Duration::from_millis(4500)));
        let wc = o.write_concern.expect("a write concern");
        assert_eq!(wc.journal, Some(true));
        assert_eq!(wc.w_timeout, Some(Duration::from_millis(250)));
        assert_eq!(o.compressors.map(|c| c.len()), Some(2));
        assert_eq!(o.default_database.as_deref(), Some("db"));
    }
}
