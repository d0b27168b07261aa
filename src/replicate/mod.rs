//! Replication: one leader per data directory reads the journal in order,
//! batches dirty documents, and copies their local state to Atlas with
//! `SYNC_WORKERS` batches in flight, retrying with backoff.
//!
//! Invariants:
//! - only the holder of `leader.lock` replicates; a new leader first waits
//!   `SYNC_TAKEOVER_GRACE_MS` past the last heartbeat of the previous one, so
//!   what it sent lands before the new leader's copies (if Atlas runs it
//!   within the grace);
//! - a document is never in flight twice (see `queue`), so Atlas never ends
//!   with an older version of a document than the last one copied; a write
//!   abandoned on a timeout or a lost connection may still land, so its
//!   documents are copied again once it cannot (`Queue::defer`);
//! - an entry is removed from the journal only after Atlas acknowledged the
//!   copy that followed it; transient failures are retried for as long as it
//!   takes, permanent ones are dead-lettered with their reason;
//! - pausing stops new batches; the journal keeps growing on disk;
//! - a batch whose copy panics (a bug) does not strand its documents in
//!   flight: they are copied again from local, like after a write of
//!   unknown outcome.

mod apply;
mod atlas;
mod backoff;
pub mod indexes;
pub mod options;
mod queue;
mod unique;

pub use apply::{apply, canon_id, id_of, missing_in, raw_id, Canon, DocResult, Item, Side};
pub use atlas::Atlas;
pub use backoff::backoff;
pub use queue::{Batch, Queue};

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::options::ClientOptions;
use mongodb::Client;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::error::{disposition, write_error_disposition, Disposition, SyncError};
use crate::journal::{clock, now_ms, DeadLetter, DocKey, Journal, LeaderLock};
use crate::observe::Metrics;

/// How many journal entries one read takes.
const READ_CHUNK: usize = 5000;
/// At most this many documents are held in memory; the rest waits on disk.
const MAX_DIRTY: usize = 50_000;
/// How long the first dirty document of a batch waits for company, counted
/// from when its write was journaled: the time it spent reaching the
/// journal's file (see `journal`, the writer thread commits every few ms
/// under load) counts, so the two waits do not add up.
const LINGER: Duration = Duration::from_millis(5);
/// Once this many documents were copied, the next time the replicator has
/// nothing left to do it gives back the memory a backlog grew (container
/// capacity, and the allocator's free pages), so a process that lived
/// through an outage does not keep its peak (figure 4 of BENCHMARKS.md:
/// about 100 MB after draining 100,000 operations, 36 MB with this).
const TRIM_AFTER: usize = 50_000;

/// Returns the allocator's free pages to the system (glibc keeps them in its
/// arenas otherwise). Runs rarely: once per drained backlog.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How often the journal is polled for other processes' writes.
const POLL: Duration = Duration::from_millis(25);
/// How often the leader writes its heartbeat.
const HEARTBEAT: Duration = Duration::from_millis(1000);
const HEARTBEAT_KEY: &str = "leader_heartbeat_ms";
/// The leader's replication figures (`observe::replication_json`), with
/// the time they were taken, for the other processes of the directory.
const LEADER_STATS_KEY: &str = "leader_stats";
/// Published figures older than this are not the live leader's.
const LEADER_STATS_FRESH_MS: i64 = 5_000;
/// Until when (ms) an Atlas write of unknown outcome may still land: a new
/// leader waits for it too (see `copy_batch`).
const RECOPY_KEY: &str = "recopy_not_before_ms";

/// What the replicator needs.
pub struct Ctx {
    pub config: Arc<Config>,
    pub local: Client,
    pub atlas: Arc<Atlas>,
    pub journal: Arc<Journal>,
    pub metrics: Arc<Metrics>,
    pub secrets: Vec<String>,
}

impl Ctx {
    fn record_error(&self, what: &str, e: &dyn std::fmt::Display) {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let msg = crate::config::scrub(&format!("{what}: {e}"), &secrets);
        tracing::warn!("{msg}");
        self.metrics.record_error(msg);
    }
}

/// This process's last `pause()` or `resume()` while the journal does not
/// have it yet: the shared pause decides once it is committed, whichever
/// process set it last (a resume from another pm2 instance ends a pause
/// taken here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LocalPause {
    /// Counts the requests, so an older request's commit does not end a
    /// newer one's wait.
    gen: u64,
    /// `Some(paused)` until that request is committed.
    pending: Option<bool>,
}

/// Controls a running replicator.
pub struct Handle {
    paused: watch::Sender<LocalPause>,
    stop: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    ctx: Arc<Ctx>,
}

impl Handle {
    /// Pauses or resumes replication for every process of the data
    /// directory: at once for this process's replicator, and for the others
    /// through the journal's shared pause, which decides from its commit on.
    pub fn set_paused(&self, journal: &Arc<Journal>, paused: bool) {
        // Seen at once by the index copier, which reads it between passes:
        // the loop takes the request on its next turn, and an index made
        // right after `pause()` resolved must not be copied meanwhile.
        self.ctx.metrics.paused.store(paused, Relaxed);
        let mut gen = 0;
        self.paused.send_modify(|p| {
            p.gen += 1;
            p.pending = Some(paused);
            gen = p.gen;
        });
        let first = journal.set_shared_pause(paused);
        let (journal, local) = (journal.clone(), self.paused.clone());
        runtime().spawn(async move {
            let superseded = || local.borrow().gen != gen;
            let mut done = first.await;
            // Not recorded (the journal busy past its wait): this process
            // honours the request meanwhile, and tries again until it is
            // recorded, replaced by a newer request, or the journal closed.
            let mut delay = Duration::from_millis(100);
            while let Err(e) = done {
                if matches!(e, crate::error::SyncError::Closed) || superseded() {
                    return;
                }
                tracing::warn!("recording the pause in the journal failed, retrying: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                if superseded() {
                    return;
                }
                done = journal.set_shared_pause(paused).await;
            }
            // The shared pause has it: it decides from now on.
            local.send_if_modified(|p| {
                let current = p.gen == gen;
                if current {
                    p.pending = None;
                }
                current
            });
        });
    }

    /// Pauses this process's replicator only, for good (its engine is
    /// dropped without `close()`).
    pub fn halt(&self) {
        self.paused.send_modify(|p| {
            p.gen += 1;
            p.pending = Some(true);
        });
    }

    /// This process's pause request that the journal does not have yet.
    pub fn pending_pause(&self) -> Option<bool> {
        self.paused.borrow().pending
    }

    /// Stops the replicator; batches in flight get `grace` to finish.
    pub async fn stop(&self, grace: Duration) {
        self.stop.send_replace(true);
        if let Some(mut t) = self.task.lock().await.take() {
            if tokio::time::timeout(grace + Duration::from_secs(1), &mut t)
                .await
                .is_err()
            {
                // Batches may still be on their way to Atlas: recorded
                // before the abort releases the leader lock, so the next
                // leader waits until they cannot land.
                if self.ctx.metrics.is_leader.load(Relaxed) {
                    recopy_not_before(&self.ctx).await;
                }
                t.abort();
            }
        }
    }
}

/// The stack of the runtimes' threads (see `binding::init_runtime`).
pub const STACK_SIZE: usize = 8 * 1024 * 1024;

/// The runtime replication runs on: one worker thread of its own (and its
/// blocking threads), below the application's threads in CPU priority. The
/// addon's calls run on another runtime with one worker; sharing it, a batch
/// being encoded or paired held up the writes queued behind it. Clients the
/// replicator uses are created in its context ([`client`]), so their
/// connections are driven by this runtime too. If it cannot be built,
/// the caller's runtime serves.
pub fn runtime() -> tokio::runtime::Handle {
    static RT: once_cell::sync::Lazy<Option<tokio::runtime::Runtime>> =
        once_cell::sync::Lazy::new(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("dual-sync-replicate")
                .thread_stack_size(STACK_SIZE)
                .on_thread_start(lower_priority)
                .enable_all()
                .build()
                .ok()
        });
    RT.as_ref()
        .map(|rt| rt.handle().clone())
        .unwrap_or_else(tokio::runtime::Handle::current)
}

/// A client whose tasks (pool, monitors) run on the replicator's runtime,
/// whichever runtime asks for it.
pub fn client(options: ClientOptions) -> mongodb::error::Result<Client> {
    let _on = runtime().enter();
    Client::with_options(options)
}

/// How many steps the replicator's threads are niced below the process's
/// main thread. On Linux a nice value belongs to a thread, and a new thread
/// starts with its creator's (the runtime's blocking threads are created by
/// its niced worker), so the value is set from the main thread's, not added.
const NICE: i32 = 5;

fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls; `who` 0 is the calling thread, the pid is
    // the main thread. A nice value above one's own needs no privilege; if
    // a call fails, the thread keeps the priority it has.
    unsafe {
        *libc::__errno_location() = 0;
        let main = libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t);
        if main != -1 || *libc::__errno_location() == 0 {
            libc::setpriority(libc::PRIO_PROCESS, 0, (main + NICE).min(19));
        }
    }
}

/// Starts the replicator task (it waits for leadership by itself).
pub fn spawn(ctx: Arc<Ctx>) -> Handle {
    let (paused, paused_rx) = watch::channel(LocalPause::default());
    let (stop, stop_rx) = watch::channel(false);
    let stopped = stop_rx.clone();
    let (c, p) = (ctx.clone(), ctx.clone());
    let task = runtime().spawn(supervise(
        move || lead(c.clone(), paused_rx.clone(), stop_rx.clone()),
        move |msg| after_panic(p.clone(), msg),
        stopped,
    ));
    Handle {
        paused,
        stop,
        task: tokio::sync::Mutex::new(Some(task)),
        ctx,
    }
}

/// Runs the replicator, and runs it again if it panics (a bug): replication
/// must not stop for good, silently, while the application keeps writing.
/// `after_panic` cleans up first; a restart waits a second, or ends on stop.
async fn supervise<L, LF, P, PF>(mut start: L, mut after_panic: P, mut stop: watch::Receiver<bool>)
where
    L: FnMut() -> LF,
    LF: std::future::Future<Output = ()>,
    P: FnMut(String) -> PF,
    PF: std::future::Future<Output = ()>,
{
    loop {
        let Err(msg) = catch_panic(start()).await else {
            return;
        };
        after_panic(msg).await;
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
        }
    }
}

/// After the replicator panicked: its lock was released as it unwound and
/// its batches were dropped, so an Atlas write of theirs may be on its way;
/// whoever leads next waits until it cannot land.
async fn after_panic(ctx: Arc<Ctx>, msg: String) {
    ctx.metrics.is_leader.store(false, Relaxed);
    ctx.journal.keep_docs(false);
    ctx.record_error("the replicator failed unexpectedly and restarts", &msg);
    recopy_not_before(&ctx).await;
}

async fn lead(ctx: Arc<Ctx>, paused: watch::Receiver<LocalPause>, mut stop: watch::Receiver<bool>) {
    let dir = ctx.config.data_dir.clone();
    let lock = loop {
        match LeaderLock::try_acquire(&dir) {
            Ok(Some(l)) => break l,
            Ok(None) => {}
            Err(e) => ctx.record_error("cannot take the replicator lock", &e),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    };
    ctx.metrics.is_leader.store(true, Relaxed);
    // Wait until what the previous leader sent can no longer land: the
    // takeover grace past the lock's release (its death: the heartbeat is
    // still there when it did not stop cleanly, and may be older than its
    // last writes, since the loop that writes it can wait on the journal
    // while batches go on), and past the time its Atlas writes of unknown
    // outcome expire (see `copy_batch`).
    let grace = ctx.config.takeover_grace_ms as i64;
    // (Bounded: a clock set back must not stall the new leader for long.)
    let longest = grace.max(ctx.config.atlas_timeout_ms as i64);
    let wait = match (
        meta_ms(&ctx, HEARTBEAT_KEY).await,
        meta_ms(&ctx, RECOPY_KEY).await,
    ) {
        (Ok(heartbeat), Ok(recopy)) => {
            let until = [
                heartbeat.map(|hb| (hb + grace).max(now_ms() + grace)),
                recopy,
            ]
            .into_iter()
            .flatten()
            .max();
            until.map_or(0, |t| t - now_ms()).min(longest)
        }
        // Unknown: as long as anything sent before can take to land.
        (Err(e), _) | (_, Err(e)) => {
            ctx.record_error("reading the previous replicator's times failed", &e);
            longest
        }
    };
    if wait > 0 {
        tracing::info!("waiting {wait} ms for what the previous replicator sent to land");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            _ = stop.changed() => return,
        }
    }
    tracing::info!("replicator started (this process leads)");
    // Ends with this function however it ends (a panic, an abort).
    let _index_copier = AbortOnDrop(runtime().spawn(copy_indexes(ctx.clone())));
    // A panic dropped the batches in flight, whose Atlas writes may still
    // land: that is recorded while the lock is held, so no next leader can
    // start copying before it reads it (`supervise` then restarts this).
    let clean = {
        use futures_util::FutureExt;
        match std::panic::AssertUnwindSafe(run(&ctx, paused, stop))
            .catch_unwind()
            .await
        {
            Ok(clean) => clean,
            Err(panic) => {
                recopy_not_before(&ctx).await;
                std::panic::resume_unwind(panic);
            }
        }
    };
    ctx.journal.keep_docs(false);
    if clean {
        let _ = ctx.journal.delete_meta(HEARTBEAT_KEY).await;
    }
    let _ = ctx.journal.delete_meta(LEADER_STATS_KEY).await;
    ctx.metrics.is_leader.store(false, Relaxed);
    drop(lock);
}

/// How often the leader looks for collections whose indexes to copy.
const INDEX_POLL: Duration = Duration::from_millis(500);

/// The leader's index copier (see [`indexes`]): copies the marked
/// collections' indexes while replication is not paused, retrying failures
/// with backoff; a permanent failure (Atlas refuses the index, say because
/// its data violates a unique index) is given up after `SYNC_MAX_RETRIES`
/// attempts and shows in `metrics().lastError`. Runs until aborted.
async fn copy_indexes(ctx: Arc<Ctx>) {
    let mut attempts: Attempts = Default::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INDEX_POLL) => {}
            _ = indexes::MARKED.notified() => {}
        }
        if ctx.metrics.paused.load(Relaxed) {
            continue;
        }
        // A panic (a bug) must not end index copying for good: full sync
        // and verify's repair wait for the marks to clear.
        if let Err(msg) = catch_panic(copy_marked_indexes(&ctx, &mut attempts)).await {
            ctx.record_error("copying indexes to Atlas failed unexpectedly", &msg);
        }
    }
}

/// Attempts per namespace, and when the next is due.
type Attempts = std::collections::HashMap<String, (u32, Instant)>;

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One pass of [`copy_indexes`] over the marked collections.
async fn copy_marked_indexes(ctx: &Ctx, attempts: &mut Attempts) {
    let marks = match indexes::marks(&ctx.journal).await {
        Ok(m) => m,
        Err(e) => {
            ctx.record_error("reading the index marks failed", &e);
            return;
        }
    };
    attempts.retain(|ns, _| marks.iter().any(|(m, _)| m == ns));
    for (ns, mark) in marks {
        if attempts
            .get(&ns)
            .is_some_and(|(_, due)| Instant::now() < *due)
        {
            continue;
        }
        let Some((db, coll)) = ns.split_once('.') else {
            let _ = indexes::unmark(&ctx.journal, &ns, mark.n).await;
            continue;
        };
        let atlas = ctx.atlas.get();
        // A drop first, without the per-call limit (it scans the collection).
        let mut drops = mark.drop.clone();
        if mark.dropped {
            match indexes::copy_drop(&ctx.journal, &ctx.local, &atlas, &ns, &mark).await {
                // Entries from before the drop still wait: the next pass.
                Ok(false) => continue,
                // The old collection's indexes go too (a TTL or unique
                // index left on Atlas would refuse or expire new documents).
                Ok(true) => drops = vec![indexes::ALL.to_string()],
                Err(e) => {
                    ctx.record_error(
                        &format!("copying the drop of {ns} to Atlas failed, will retry"),
                        &e,
                    );
                    retry_or_give_up(ctx, attempts, &ns, false);
                    continue;
                }
            }
        }
        let limit = Duration::from_millis(ctx.config.atlas_timeout_ms);
        // The collection itself first: its kind and options, which an
        // index build would otherwise fix by creating a plain one.
        let shaped = tokio::time::timeout(
            limit,
            options::copy(&ctx.journal, &ctx.local, &atlas, &ns, &mark),
        )
        .await
        .unwrap_or_else(|_| Err(timed_out(limit).into()));
        let shaped = match shaped {
            Ok(options::Copied::Later) => continue,
            // Documents of a collection Atlas dropped to re-create it.
            other => match options::rejournal(&ctx.journal, &ctx.local, &ns).await {
                Ok(()) => other,
                Err(e) => Err(e),
            },
        };
        match shaped {
            Ok(c) => {
                if c != options::Copied::Nothing {
                    tracing::info!("collection {ns} copied to Atlas: {c:?}");
                }
            }
            Err(e) => {
                let permanent = match &e {
                    SyncError::Mongo(m) => disposition(m) != Disposition::Transient,
                    SyncError::Conflict(_) => true,
                    _ => false,
                };
                let give_up = retry_or_give_up(ctx, attempts, &ns, permanent);
                let what = if give_up {
                    format!("copying the collection {ns} to Atlas failed, given up (its indexes are copied still)")
                } else {
                    format!("copying the collection {ns} to Atlas failed, will retry")
                };
                ctx.record_error(&what, &e);
                if !give_up {
                    continue;
                }
            }
        }
        let copied =
            tokio::time::timeout(limit, indexes::copy(&ctx.local, &atlas, db, coll, &drops))
                .await
                .unwrap_or_else(|_| Err(timed_out(limit)));
        let done = match copied {
            Ok(c) => {
                if !c.created.is_empty() || !c.dropped.is_empty() {
                    tracing::info!(
                        "indexes of {ns} copied to Atlas: created {:?}, dropped {:?}",
                        c.created,
                        c.dropped
                    );
                }
                true
            }
            Err(e) => {
                let permanent = disposition(&e) != Disposition::Transient;
                let give_up = retry_or_give_up(ctx, attempts, &ns, permanent);
                let what = if give_up {
                    format!("copying the indexes of {ns} to Atlas failed, given up")
                } else {
                    format!("copying the indexes of {ns} to Atlas failed, will retry")
                };
                ctx.record_error(&what, &crate::error::describe(&e));
                give_up
            }
        };
        if done {
            attempts.remove(&ns);
            if let Err(e) = indexes::unmark(&ctx.journal, &ns, mark.n).await {
                ctx.record_error("clearing an index mark failed", &e);
            }
        }
    }
}

/// After a failed step of copying `ns`: whether it is given up (a
/// `permanent` failure, tried `SYNC_MAX_RETRIES` times already); if not,
/// the next attempt is scheduled with backoff.
fn retry_or_give_up(ctx: &Ctx, attempts: &mut Attempts, ns: &str, permanent: bool) -> bool {
    let n = attempts.get(ns).map_or(0, |(n, _)| *n);
    if permanent && n >= ctx.config.max_retries {
        return true;
    }
    let delay = backoff(n, ctx.config.retry_base_ms, ctx.config.retry_max_ms);
    attempts.insert(ns.to_string(), (n + 1, Instant::now() + delay));
    false
}

/// How many dead letters were put back in the queue, ever, by any process
/// of the data directory.
const REQUEUED_KEY: &str = "dead_letters_requeued";

/// Adds `n` requeued dead letters to the directory's count.
pub async fn count_requeued(journal: &Journal, n: u64) -> Result<(), SyncError> {
    if n == 0 {
        return Ok(());
    }
    loop {
        let cur = journal.get_meta(REQUEUED_KEY).await?;
        let was: u64 = cur.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        if journal
            .swap_meta(REQUEUED_KEY, cur, Some((was + n).to_string()))
            .await?
        {
            return Ok(());
        }
    }
}

/// The leader's part: dead letters requeued since it last looked (by any
/// process) leave its success rate. `seen` is the count it last read;
/// `None` before its first look, which only takes the count.
async fn note_requeued(ctx: &Ctx, seen: &mut Option<u64>) {
    let Ok(cur) = ctx.journal.get_meta(REQUEUED_KEY).await else {
        return;
    };
    let now: u64 = cur.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
    if let Some(before) = *seen {
        ctx.metrics
            .forgive_dead_lettered(now.saturating_sub(before));
    }
    *seen = Some(now);
}

/// The replication figures the live leader of the directory published, if
/// they are fresh.
pub async fn leader_stats(journal: &Journal) -> Option<serde_json::Value> {
    let raw = journal.get_meta(LEADER_STATS_KEY).await.ok().flatten()?;
    let mut v: serde_json::Value = serde_json::from_str(&raw).ok()?;
    let at = v.get("atMs")?.as_i64()?;
    (now_ms() - at < LEADER_STATS_FRESH_MS).then(|| v["stats"].take())
}

/// A time in ms kept in the journal's meta table.
/// A time stored in the journal's meta table; `Err` if it could not be
/// read (the caller assumes the worst).
async fn meta_ms(ctx: &Ctx, key: &str) -> Result<Option<i64>, SyncError> {
    let v = ctx.journal.get_meta(key).await?;
    Ok(v.and_then(|v| v.parse().ok()))
}

/// The leader's loop. Returns whether every batch finished (clean stop).
async fn run(
    ctx: &Arc<Ctx>,
    mut paused: watch::Receiver<LocalPause>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let mut q = Queue::new(MAX_DIRTY);
    let mut tasks: JoinSet<BatchDone> = JoinSet::new();
    let mut last_heartbeat = Instant::now() - HEARTBEAT;
    let mut shared_paused = false;
    // This process paused or resumed since the shared pause was last read.
    let mut reread_pause = true;
    // What the last read of the journal saw; `None`: read at the next turn.
    let mut seen: Option<Seen> = None;
    // Documents copied since memory was last given back (see TRIM_AFTER).
    let mut since_trim = 0usize;
    let mut capped = Capped::default();
    let mut requeued_seen = None;
    note_requeued(ctx, &mut requeued_seen).await;
    loop {
        if *stop.borrow() {
            break;
        }
        if last_heartbeat.elapsed() >= HEARTBEAT {
            last_heartbeat = Instant::now();
            // Queued with the heartbeat: one commit for both.
            let stats = serde_json::json!({
                "atMs": now_ms(),
                "stats": crate::observe::replication_json(&ctx.metrics),
            });
            ctx.journal
                .set_meta_nowait(LEADER_STATS_KEY, stats.to_string());
            let _ = ctx
                .journal
                .set_meta(HEARTBEAT_KEY, now_ms().to_string())
                .await;
            note_requeued(ctx, &mut requeued_seen).await;
            // Intents that engines which died logged but never moved.
            if let Err(e) = ctx.journal.adopt_orphans_async().await {
                ctx.record_error("moving a stopped engine's intents failed", &e);
            }
        }
        q.release_due(Instant::now());
        let changed = ctx.journal.changed.notified();
        // While paused, pending work stays on disk, not in memory.
        let local = paused.borrow().pending;
        let was_paused = local.unwrap_or(shared_paused);
        // Read only if the journal may have changed: this process committed
        // since (its entries, its marks), or POLL passed (other processes'
        // commits, owners that died), or the last read stopped short.
        let commits = ctx.journal.commit_count();
        let stale = seen
            .as_ref()
            .is_none_or(|s| s.commits != commits || !s.complete || s.at.elapsed() >= POLL);
        if !was_paused && stale {
            let at = Instant::now();
            seen = match refill(ctx, &mut q).await {
                Ok((complete, paused)) => Some(Seen {
                    commits,
                    at,
                    complete,
                    paused,
                }),
                Err(e) => {
                    ctx.record_error("reading the journal failed", &e);
                    None
                }
            };
        }
        // A batch goes when it is full or its oldest document has waited
        // LINGER: under load, changes gather into fuller batches.
        let age = q.dirty_age();
        let ripe = q.dirty_len() >= ctx.config.batch_size || age.is_some_and(|a| a >= LINGER);
        // The shared pause is read after the entries, before a batch goes (a
        // pause committed before an entry is seen before that entry is
        // dispatched), and on each wake while paused, to notice a resume.
        // The pause the last read of entries saw was read after them, so it
        // is valid for every entry in the queue; a wake while paused reads
        // it afresh, and that later reading replaces it (a resume is not
        // undone by the older one).
        // After a local pause or resume is committed, the shared pause is
        // read afresh: an older reading would undo it.
        if ripe || was_paused || reread_pause {
            shared_paused = match seen.as_ref().and_then(|s| s.paused) {
                Some(p) if !was_paused && !reread_pause => p,
                _ => {
                    reread_pause = false;
                    let p = ctx.journal.shared_pause().await.unwrap_or(shared_paused);
                    if let Some(s) = seen.as_mut() {
                        s.paused = Some(p);
                    }
                    p
                }
            };
        }
        // A request still pending at the top of this turn holds for the
        // turn: if it was committed during the read above, that read may
        // predate the commit (the next turn reads again).
        let is_paused = paused.borrow().pending.or(local).unwrap_or(shared_paused);
        ctx.metrics.paused.store(is_paused, Relaxed);
        // While paused, or while Atlas is down, nothing takes the bytes
        // soon: they go to the file instead of piling up in memory.
        ctx.journal
            .keep_docs(!is_paused && ctx.metrics.atlas_up.load(Relaxed));
        while !is_paused && ripe && tasks.len() < ctx.config.workers {
            let Some(mut batch) = q.take_batch(ctx.config.batch_size) else {
                break;
            };
            if capped.is(&ctx.local, &batch.ns).await {
                q.one_at_a_time.insert(batch.ns.clone());
                // Every document as a replace-with-upsert, in the batch's
                // order (the journal's): new ones sent by insertMany ahead
                // of changed ones would land in another order than local's.
                for (_, d) in &mut batch.items {
                    d.insert_only = false;
                }
            }
            let (c, s) = (ctx.clone(), stop.clone());
            tasks.spawn(copy_batch_guarded(c, batch, s));
        }
        let nap = match age {
            Some(a) if !ripe => LINGER.saturating_sub(a).min(POLL),
            _ => POLL,
        };
        // A dropped handle (the engine is gone) counts as a stop.
        // New entries matter only when nothing lingers already (they start
        // the clock); otherwise the linger timer reads them all at once.
        let listen = !is_paused && q.dirty_len() == 0;
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                since_trim += finish(&mut q, done);
                // Drained: nothing queued, and the last read found nothing more.
                let drained = q.is_idle() && seen.as_ref().is_some_and(|s| s.complete);
                if since_trim >= TRIM_AFTER && drained {
                    since_trim = 0;
                    q.shrink();
                    ctx.journal.shrink_memo();
                    tokio::task::spawn_blocking(release_free_memory);
                }
            }
            _ = changed, if listen => {}
            _ = tokio::time::sleep(nap) => {}
            r = paused.changed() => {
                if r.is_err() {
                    break;
                }
                reread_pause = true;
            }
            r = stop.changed() => if r.is_err() { break },
        }
    }
    let grace = Duration::from_secs(5);
    let all_done = tokio::time::timeout(grace, async {
        while let Some(done) = tasks.join_next().await {
            finish(&mut q, done);
        }
    })
    .await
    .is_ok();
    if !all_done {
        // The batches still running are dropped with the set: an Atlas
        // write of theirs may be on its way.
        recopy_not_before(ctx).await;
    }
    all_done
}

/// Journals that an Atlas write of unknown outcome may land until
/// `SYNC_ATLAS_TIMEOUT_MS` from now: a leader that takes over waits as long.
async fn recopy_not_before(ctx: &Ctx) {
    let until = now_ms() + ctx.config.atlas_timeout_ms as i64;
    if let Err(e) = ctx.journal.set_meta(RECOPY_KEY, until.to_string()).await {
        ctx.record_error("recording a pending Atlas write failed", &e);
    }
}

fn finish(q: &mut Queue, done: Result<BatchDone, tokio::task::JoinError>) -> usize {
    match done {
        Ok(done) => {
            if let Some(k) = done.keys.first() {
                q.one_at_a_time.remove(&k.ns);
            }
            let n = done.keys.len();
            q.finish(done.keys);
            q.readmit(done.unrecorded);
            q.defer(done.again, done.again_at);
            n
        }
        Err(_) => 0,
    }
}

/// Which namespaces are capped collections on the local server, each with
/// when it is read again (after `CAPPED_TTL`). A capped collection keeps the documents inserted last,
/// so Atlas's keeps the same ones only if the copies arrive in the order of
/// the local inserts: its batches go one at a time (`Queue::one_at_a_time`),
/// each in the order its documents were journaled. Batches of two workers
/// could land in either order, and Atlas would keep an older window.
#[derive(Default)]
struct Capped(std::collections::HashMap<String, (bool, Instant)>);

const CAPPED_TTL: Duration = Duration::from_secs(30);
/// How long the loop waits to learn whether a namespace is capped.
const CAPPED_READ: Duration = Duration::from_millis(500);
/// When a namespace whose reading failed is read again.
const CAPPED_RETRY: Duration = Duration::from_secs(5);

impl Capped {
    async fn is(&mut self, local: &Client, ns: &str) -> bool {
        if let Some((c, until)) = self.0.get(ns) {
            if Instant::now() < *until {
                return *c;
            }
        }
        let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
        // Bounded: the loop waits for it (a local server that does not
        // answer must not hold up the other namespaces, or a stop).
        let read = tokio::time::timeout(CAPPED_READ, options::info(local, db, coll)).await;
        let (c, kept) = match read {
            Ok(Ok(info)) => (
                info.is_some_and(|i| options::is_capped(&i.options)),
                CAPPED_TTL,
            ),
            // Unknown (a slow or failing local server): copied one batch at
            // a time, as a capped one, which keeps the order whatever it is
            // (in parallel, a capped collection's batches could land out of
            // order on Atlas), and read again in a while.
            _ => (true, CAPPED_RETRY),
        };
        self.0.insert(ns.to_string(), (c, Instant::now() + kept));
        c
    }
}

/// What a read of the journal saw.
struct Seen {
    /// This process's commit count, taken before the read.
    commits: u64,
    at: Instant,
    /// Everything after the cursor was read (the queue did not fill up).
    complete: bool,
    /// The shared pause, read after the last entries (`None`: no entries
    /// were read, the queue was full).
    paused: Option<bool>,
}

/// Reads new journal entries and releases waiting ones whose write is done.
/// Returns whether it read everything there was, and the shared pause read
/// after the entries.
async fn refill(ctx: &Ctx, q: &mut Queue) -> Result<(bool, Option<bool>), crate::error::SyncError> {
    let grace = Duration::from_millis(ctx.config.takeover_grace_ms);
    if !q.waiting.is_empty() {
        let seqs: Vec<i64> = q.waiting.keys().copied().collect();
        for (seq, ready, doc) in ctx.journal.ready_of(seqs).await? {
            let owner_gone = q
                .waiting
                .get(&seq)
                .and_then(|e| ctx.journal.owners.dead_since(&e.owner))
                .is_some_and(|t| t.elapsed() >= grace);
            if ready || owner_gone {
                if !ready {
                    // Its write may have finished on the server without
                    // counting itself in the write clock: an insert of the
                    // document stamped meanwhile must not be trusted.
                    if let Some(e) = q.waiting.get(&seq) {
                        ctx.journal.clock().bump(&e.key);
                    }
                }
                q.release_waiting(seq, doc);
            }
        }
    }
    let mut paused = None;
    while !q.is_full() {
        // Bounded in bytes too: rows whose document bytes are in the file
        // (marked while this process did not keep them in memory: paused,
        // Atlas down, or another process) can be large.
        let (entries, p, short) = ctx
            .journal
            .read_after_then_pause(q.cursor, READ_CHUNK, q.room_bytes())
            .await?;
        paused = Some(p);
        for e in entries {
            q.cursor = q.cursor.max(e.seq);
            if e.ready {
                q.admit(e.key, e.seq, e.at_ms, e.insert, e.doc);
            } else {
                q.wait(e);
            }
        }
        if !short {
            return Ok((true, paused));
        }
    }
    Ok((false, paused))
}

/// What a finished batch hands back to the loop.
struct BatchDone {
    keys: Vec<DocKey>,
    /// Copied, but the journal could not record it: copy again later.
    unrecorded: Vec<(DocKey, queue::Dirty)>,
    /// Copied after an Atlas write of them whose outcome is unknown: copied
    /// again once that write can no longer land (see `copy_batch`).
    again: Vec<(DocKey, queue::Dirty)>,
    /// When `again` is due.
    again_at: Instant,
}

/// [`copy_batch`], but a panic while copying (a bug: in this crate, the
/// driver or BSON) does not strand the batch: its documents would stay in
/// flight, never copied again and never finished, and `flush()` would wait
/// for them until the process restarts. They are read back from local and
/// copied again once a write the panic abandoned can no longer land.
async fn copy_batch_guarded(ctx: Arc<Ctx>, batch: Batch, stop: watch::Receiver<bool>) -> BatchDone {
    let redo = redo_of(&batch);
    match catch_panic(copy_batch(ctx.clone(), batch, stop)).await {
        Ok(done) => done,
        Err(msg) => {
            ctx.metrics.failed.fetch_add(redo.len() as u64, Relaxed);
            ctx.record_error(
                "copying a batch to Atlas failed unexpectedly, its documents will be copied again",
                &msg,
            );
            recopy_not_before(&ctx).await;
            panicked(redo, Duration::from_millis(ctx.config.atlas_timeout_ms))
        }
    }
}

/// What copying `batch` again takes: its keys and every seq they cover,
/// without the bytes (the local state is read back).
fn redo_of(batch: &Batch) -> Vec<(DocKey, queue::Dirty)> {
    batch
        .items
        .iter()
        .map(|(k, d)| {
            let d = queue::Dirty {
                seqs: d.seqs.clone(),
                newest_at_ms: d.newest_at_ms,
                insert_only: false,
                doc: None,
            };
            (k.clone(), d)
        })
        .collect()
}

/// Runs `f`, turning a panic into its message.
async fn catch_panic<T>(f: impl std::future::Future<Output = T>) -> Result<T, String> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(f)
        .catch_unwind()
        .await
        .map_err(|p| {
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string())
        })
}

/// A batch whose copy panicked: finished, and every document copied again
/// after `wait`.
fn panicked(redo: Vec<(DocKey, queue::Dirty)>, wait: Duration) -> BatchDone {
    BatchDone {
        keys: redo.iter().map(|(k, _)| k.clone()).collect(),
        unrecorded: Vec::new(),
        again: redo,
        again_at: Instant::now() + wait,
    }
}

/// Copies one batch, retrying until every document is acknowledged or
/// dead-lettered, or the replicator stops.
async fn copy_batch(ctx: Arc<Ctx>, batch: Batch, stop: watch::Receiver<bool>) -> BatchDone {
    let keys: Vec<DocKey> = batch.items.iter().map(|(k, _)| k.clone()).collect();
    let ns = batch.ns;
    let mut todo = batch.items;
    let mut unrecorded = Vec::new();
    let mut attempt: u32 = 0;
    // An Atlas write of this batch timed out or lost its connection: it may
    // still land, after a later copy of the same documents.
    let mut unsure = false;
    let mut again = Vec::new();
    while !todo.is_empty() {
        if attempt > 0 {
            ctx.metrics.retried.fetch_add(1, Relaxed);
            let delay = backoff(
                attempt - 1,
                ctx.config.retry_base_ms,
                ctx.config.retry_max_ms,
            );
            let mut stop = stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => {}
            }
        }
        if *stop.borrow() {
            break;
        }
        let items: Vec<Item<'_>> = todo
            .iter()
            .map(|(k, d)| Item {
                key: k,
                insert_only: d.insert_only,
                doc: d.doc.as_deref().and_then(|b| match clock::unstamp(b) {
                    // Another write of it finished since: read it back.
                    (_, Some(t)) if !ctx.journal.clock().current(k, t) => None,
                    (doc, _) => Some(doc),
                }),
            })
            .collect();
        let limit = Duration::from_millis(ctx.config.atlas_timeout_ms);
        // Not while Atlas's collection is being created with its options.
        let _copying = options::copying(&ns).await;
        let attempt_result =
            match tokio::time::timeout(limit, apply(&ctx.local, &ctx.atlas.get(), &ns, &items))
                .await
            {
                Ok(r) => r,
                Err(_) => {
                    ctx.atlas.recycle();
                    Err((Side::Atlas, timed_out(limit)))
                }
            };
        drop(_copying);
        let results = match attempt_result {
            Ok(r) => r,
            Err((Side::Atlas, e))
                if indexes::code_of(&e) == Some(VIEW) && is_local_view(&ctx, &ns).await =>
            {
                views_written(&ctx, &ns, std::mem::take(&mut todo));
                break;
            }
            Err((side, e)) => {
                if side == Side::Atlas && crate::error::may_have_been_sent(&e) {
                    // Journaled at once, not when the batch ends: a stop
                    // before then must not let the next leader copy sooner.
                    recopy_not_before(&ctx).await;
                    unsure = true;
                }
                ctx.metrics.failed.fetch_add(todo.len() as u64, Relaxed);
                let d = if side == Side::Local {
                    Disposition::Transient
                } else {
                    disposition(&e)
                };
                if side == Side::Atlas && d == Disposition::Transient {
                    ctx.metrics.atlas_up.store(false, Relaxed);
                }
                let what = if side == Side::Local {
                    "reading local documents failed"
                } else {
                    "writing to Atlas failed"
                };
                ctx.record_error(what, &crate::error::describe(&e));
                if d != Disposition::Transient && attempt >= ctx.config.max_retries {
                    let secrets: Vec<&str> = ctx.secrets.iter().map(String::as_str).collect();
                    let reason = crate::config::scrub(&crate::error::describe(&e), &secrets);
                    dead_letter(
                        &ctx,
                        std::mem::take(&mut todo),
                        None,
                        &reason,
                        &mut unrecorded,
                    )
                    .await;
                }
                attempt += 1;
                continue;
            }
        };
        ctx.metrics.atlas_up.store(true, Relaxed);
        ctx.metrics.batches.fetch_add(1, Relaxed);
        let mut done = Vec::new();
        let mut retry = Vec::new();
        let mut index_change_pending: Option<bool> = None;
        for (item, r) in todo.into_iter().zip(results) {
            match r {
                DocResult::Ok => done.push(item),
                // Only a refusal with a permanent code is reported per
                // document (`apply::read_local`); any other read error
                // failed the whole batch above and is retried.
                DocResult::Unreadable(code, msg) => {
                    ctx.metrics.failed.fetch_add(1, Relaxed);
                    let msg = format!("reading the local document failed: {msg}");
                    dead_letter(&ctx, vec![item], Some(code), &msg, &mut unrecorded).await
                }
                DocResult::Refused(VIEW, _) if is_local_view(&ctx, &ns).await => {
                    views_written(&ctx, &ns, vec![item])
                }
                DocResult::Refused(code, msg) => {
                    ctx.metrics.failed.fetch_add(1, Relaxed);
                    let d = if code == 11000
                        && index_change(&ctx, &ns, &mut index_change_pending).await
                    {
                        Disposition::Transient
                    } else {
                        write_error_disposition(code)
                    };
                    refused(
                        &ctx,
                        item,
                        (code, msg),
                        d,
                        attempt,
                        &mut retry,
                        &mut unrecorded,
                    )
                    .await
                }
                DocResult::Duplicate(msg, key) => {
                    ctx.metrics.failed.fetch_add(1, Relaxed);
                    let d = if index_change(&ctx, &ns, &mut index_change_pending).await {
                        Disposition::Transient
                    } else {
                        free_unique(&ctx, &ns, &item.0, &key).await
                    };
                    refused(
                        &ctx,
                        item,
                        (11000, msg),
                        d,
                        attempt,
                        &mut retry,
                        &mut unrecorded,
                    )
                    .await
                }
            }
        }
        // After an Atlas write whose outcome is unknown (a timeout, a lost
        // connection), that write may still run, after this newer copy, and
        // leave the older state. These documents are copied once more when
        // it can no longer land; their entries stay pending meanwhile, so
        // `flush()` waits for that copy and a crash keeps them.
        if unsure {
            again.extend(done);
        } else {
            record_done(&ctx, done);
        }
        todo = retry;
        attempt += 1;
    }
    if !again.is_empty() {
        // A leader that takes over before the copy waits as long.
        recopy_not_before(&ctx).await;
        tracing::info!(
            "{} document(s) of {ns} will be copied again in {} ms: an Atlas write of them may still land",
            again.len(),
            ctx.config.atlas_timeout_ms
        );
    }
    BatchDone {
        keys,
        unrecorded,
        again,
        again_at: Instant::now() + Duration::from_millis(ctx.config.atlas_timeout_ms),
    }
}

/// CommandNotSupportedOnView: a write to a view.
const VIEW: i32 = 166;

/// Whether `ns` is a view on the local server.
async fn is_local_view(ctx: &Ctx, ns: &str) -> bool {
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    options::info(&ctx.local, db, coll)
        .await
        .is_ok_and(|i| i.is_some_and(|i| i.kind == "view"))
}

/// Entries of a view's documents: left by writes to the view, which the
/// local server refused (a view has no documents of its own), so there is
/// nothing to copy; Atlas's view refused the copy too. Done, not dead
/// letters.
fn views_written(ctx: &Ctx, ns: &str, items: Vec<(DocKey, queue::Dirty)>) {
    tracing::debug!(
        "{ns} is a view: {} entries with nothing to copy",
        items.len()
    );
    record_done(ctx, items);
}

/// Whether an index change of `ns` is still on its way to Atlas (a unique
/// index dropped locally, not yet on Atlas): a duplicate key is then
/// retried, not dead-lettered. Read once per batch (`pending`).
async fn index_change(ctx: &Ctx, ns: &str, pending: &mut Option<bool>) -> bool {
    if pending.is_none() {
        let p = indexes::marks(&ctx.journal)
            .await
            .is_ok_and(|m| m.iter().any(|(n, _)| n == ns));
        *pending = Some(p);
    }
    pending.unwrap_or(false)
}

/// A document Atlas refused for a unique value another Atlas document
/// holds: retried at once if that holder's copy was stale and is freed
/// (see `unique`), dead-lettered if the holder holds it locally too, and
/// retried up to `SYNC_MAX_RETRIES` times if nothing holds it any more.
async fn free_unique(
    ctx: &Ctx,
    ns: &str,
    key: &DocKey,
    dup: &(mongodb::bson::Document, mongodb::bson::Document),
) -> Disposition {
    let Some(id) = apply::id_of(key) else {
        return Disposition::Permanent;
    };
    match unique::free(
        &ctx.journal,
        &ctx.local,
        &ctx.atlas.get(),
        ns,
        &id,
        (&dup.0, &dup.1),
    )
    .await
    {
        Ok(unique::Holder::Freed(_)) => Disposition::Transient,
        Ok(unique::Holder::Genuine) => Disposition::Permanent,
        Ok(unique::Holder::Gone) => Disposition::Unknown,
        Err(e) => {
            ctx.record_error(
                &format!("freeing a unique value of {ns} on Atlas failed"),
                &e,
            );
            Disposition::Unknown
        }
    }
}

/// One refused document of a batch, by its disposition: dead-lettered, or
/// retried with the batch's next attempt.
async fn refused(
    ctx: &Ctx,
    item: (DocKey, queue::Dirty),
    (code, msg): (i32, String),
    d: Disposition,
    attempt: u32,
    retry: &mut Vec<(DocKey, queue::Dirty)>,
    unrecorded: &mut Vec<(DocKey, queue::Dirty)>,
) {
    match d {
        Disposition::Permanent => dead_letter(ctx, vec![item], Some(code), &msg, unrecorded).await,
        Disposition::Unknown if attempt >= ctx.config.max_retries => {
            dead_letter(ctx, vec![item], Some(code), &msg, unrecorded).await
        }
        _ => {
            ctx.record_error("Atlas refused a document", &format!("code {code}: {msg}"));
            retry.push(item)
        }
    }
}

/// A batch that took longer than `SYNC_ATLAS_TIMEOUT_MS`: retried like a
/// network error, and its documents copied again later (see `copy_batch`:
/// the abandoned write may still land).
fn timed_out(limit: Duration) -> mongodb::error::Error {
    let io = std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "no answer within {} ms (SYNC_ATLAS_TIMEOUT_MS)",
            limit.as_millis()
        ),
    );
    mongodb::error::Error::from(io)
}

/// Copied: the entries leave the journal with its next commit.
fn record_done(ctx: &Ctx, done: Vec<(DocKey, queue::Dirty)>) {
    if done.is_empty() {
        return;
    }
    let seqs: Vec<i64> = done
        .iter()
        .flat_map(|(_, d)| d.seqs.iter().copied())
        .collect();
    let now = now_ms();
    let lags: Vec<u64> = done
        .iter()
        .map(|(_, d)| (now - d.newest_at_ms).max(0) as u64)
        .collect();
    ctx.journal.remove_later(seqs);
    ctx.metrics.record_synced(&lags);
}

async fn dead_letter(
    ctx: &Ctx,
    items: Vec<(DocKey, queue::Dirty)>,
    code: Option<i32>,
    reason: &str,
    unrecorded: &mut Vec<(DocKey, queue::Dirty)>,
) {
    let n = items.len() as u64;
    let letters = items
        .iter()
        .map(|(k, d)| DeadLetter {
            key: k.clone(),
            seqs: d.seqs.clone(),
            code,
            reason: reason.to_string(),
            at_ms: now_ms(),
        })
        .collect();
    let secrets: Vec<&str> = ctx.secrets.iter().map(String::as_str).collect();
    let msg = crate::config::scrub(
        &format!(
            "dead-lettering {n} document(s) of {}: {reason}",
            items.first().map(|(k, _)| k.ns.as_str()).unwrap_or("?")
        ),
        &secrets,
    );
    tracing::error!("{msg}");
    // The reason shows in `metrics.lastError` too, not only in the logs.
    ctx.metrics.record_error(msg);
    // Counted before the journal moves them: `flush()` resolves as soon as
    // they leave the pending entries, and metrics read then must show them.
    ctx.metrics.record_dead_lettered(n);
    if let Err(e) = ctx.journal.dead_letter(letters).await {
        ctx.metrics.dead_lettered.fetch_sub(n, Relaxed);
        ctx.record_error("recording a dead letter failed", &e);
        unrecorded.extend(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8) -> DocKey {
        DocKey {
            ns: "a.b".into(),
            id: vec![id],
        }
    }

    #[tokio::test]
    async fn a_batch_whose_copy_panics_is_copied_again_from_local() {
        let mut q = Queue::new(100);
        q.admit(key(1), 7, 10, true, Some(vec![1, 2]));
        q.admit(key(2), 8, 10, false, None);
        q.admit(key(1), 9, 11, false, None);
        let batch = q.take_batch(10).unwrap();
        let redo = redo_of(&batch);
        let copy = async move {
            let _held = batch;
            panic!("bug in a batch");
        };
        let msg = catch_panic(copy).await.unwrap_err();
        assert_eq!(msg, "bug in a batch");
        assert!(catch_panic(async { 5 }).await == Ok(5));

        finish(&mut q, Ok(panicked(redo, Duration::ZERO)));
        assert!(!q.is_idle(), "the batch's documents are still pending");
        q.release_due(Instant::now());
        let again = q
            .take_batch(10)
            .expect("copied again, not stranded in flight");
        let mut got: Vec<(u8, Vec<i64>, bool, bool)> = again
            .items
            .iter()
            .map(|(k, d)| (k.id[0], d.seqs.clone(), d.doc.is_none(), d.insert_only))
            .collect();
        got.sort();
        // Every seq, so the journal can remove them once copied; read back
        // from local (no bytes), and not trusted to be an insert.
        assert_eq!(
            got,
            vec![(1, vec![7, 9], true, false), (2, vec![8], true, false)]
        );
    }

    #[tokio::test]
    async fn a_replicator_that_panics_is_started_again_until_it_returns() {
        use std::sync::Mutex;
        let (_stop, stop_rx) = watch::channel(false);
        let runs = Arc::new(Mutex::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (r, s) = (runs.clone(), seen.clone());
        supervise(
            move || {
                let r = r.clone();
                async move {
                    let n = {
                        let mut n = r.lock().unwrap();
                        *n += 1;
                        *n
                    };
                    if n < 3 {
                        panic!("replicator bug {n}");
                    }
                }
            },
            move |msg| {
                s.lock().unwrap().push(msg);
                async {}
            },
            stop_rx,
        )
        .await;
        assert_eq!(*runs.lock().unwrap(), 3);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                "replicator bug 1".to_string(),
                "replicator bug 2".to_string()
            ]
        );
    }

    #[tokio::test]
    async fn a_stop_ends_the_restarts() {
        let (stop, stop_rx) = watch::channel(false);
        let stop = Arc::new(stop);
        let st = stop.clone();
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let r = runs.clone();
        supervise(
            move || {
                r.fetch_add(1, Relaxed);
                async { panic!("always") }
            },
            move |_| {
                st.send_replace(true);
                async {}
            },
            stop_rx,
        )
        .await;
        assert_eq!(runs.load(Relaxed), 1, "not started again once stopped");
    }
}
