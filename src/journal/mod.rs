//! The journal: durable pending work, in SQLite (WAL mode) under `SYNC_DATA_DIR`.
//!
//! Invariants:
//! - an intent is in this process's intent log (see `intents`) or committed
//!   to the journal *before* the local write it describes is sent, so a
//!   crash at any later moment leaves a record of it;
//! - an entry is `ready` once its local write finished (or failed); while not
//!   ready, only a dead owner's entries are replicated (see `locks`);
//! - an entry leaves `pending` only after Atlas acknowledged the copy of its
//!   document (or it moved, with its reason, to `dead_letter`);
//! - sequence numbers only grow (`AUTOINCREMENT`), across processes too, so
//!   "everything captured so far" is "every seq up to the current maximum".
//!
//! A write's intent is appended to the intent log (one `write(2)`: what a
//! sequential writer waits for); the writer thread moves logged intents
//! into SQLite with its next commit. With `fsync` there is no intent log.
//! A ready append made while the journal is idle commits on the calling
//! thread. Everything else goes through one writer thread per process,
//! which commits whatever is queued in one transaction (group commit). Marking entries
//! ready and removing copied ones are never awaited: they are buffered and
//! ride along with the next commit, or are committed by the writer thread
//! after a short wait (a removal lost to a crash only means one more
//! idempotent copy). Several processes share the file safely through
//! SQLite's own locking.
//!
//! Document bytes a mark carries are kept in memory instead of the file
//! while this process's replicator leads, runs and reaches Atlas (bounded by
//! `MEMO_MAX_BYTES`; beyond it, and in every other process, they go to the
//! file): the replicator takes them from there. Losing them (crash, lost
//! leadership, pause, Atlas down) only means the replicator reads those
//! documents back from local.

pub mod clock;
mod intents;
mod locks;
mod store;

pub use locks::{LeaderLock, OwnerRegistry};
pub use store::{now_ms, DeadLetter, Entry, Readiness, Stats};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{oneshot, Notify};

use crate::error::SyncError;
use intents::{IntentLog, Marked};

/// A document's identity: its namespace (`db.coll`) and the BSON bytes of
/// `{ "_id": <value> }`, so ids of every type are kept exactly.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocKey {
    pub ns: String,
    pub id: Vec<u8>,
}

type Reply<T> = oneshot::Sender<Result<T, String>>;

/// The wait for the writer's answer to an append. Dropped before the answer
/// was taken (the call was dropped, see `Engine::write`), it closes the
/// channel and marks ready the seqs of an answer that came meanwhile:
/// nobody else would. An answer sent after the close fails, and the writer
/// marks those itself (`store::Outcome::answer`); each append is marked by
/// one of the two.
struct AppendReply<'a> {
    rx: Option<oneshot::Receiver<Result<Vec<i64>, String>>>,
    journal: &'a Journal,
    ready: bool,
}

impl Drop for AppendReply<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        rx.close();
        if let (Ok(Ok(seqs)), false) = (rx.try_recv(), self.ready) {
            self.journal.mark_ready(seqs);
        }
    }
}

/// Meta key naming the engine that paused replication.
const PAUSED_BY_KEY: &str = "paused_by";

enum Cmd {
    /// Keys, ready at once?, all of them inserts of new documents?
    Append(Vec<DocKey>, bool, bool, Reply<Vec<i64>>),
    /// Commit the deferred changes (after a short wait for company).
    Flush,
    /// Commit the deferred changes now, and answer once they are.
    Settle(Reply<()>),
    DeadLetter(Vec<DeadLetter>, Reply<()>),
    RequeueDeadLetters(Reply<u64>),
    SetMeta(String, String, Reply<()>),
    DeleteMeta(String, Reply<()>),
    /// Key, the value it must hold now (`None`: absent), the value to give
    /// it (`None`: delete); answers whether it held the expected value.
    SwapMeta(String, Option<String>, Option<String>, Reply<bool>),
}

/// Handle to the journal of one data directory.
pub struct Journal {
    path: PathBuf,
    owner: String,
    tx: Mutex<Option<mpsc::Sender<Cmd>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Checkpointer,
    shared: Arc<Shared>,
    /// Appends may commit on the calling thread (not with `fsync`: a
    /// synced commit is too slow to run on an async worker).
    inline: bool,
    /// Appends under way in this process.
    appending: AtomicUsize,
    reader: Arc<Mutex<Connection>>,
    /// Signalled after every commit that made entries ready or removed some.
    pub changed: Arc<Notify>,
    pub owners: OwnerRegistry,
    clock: clock::WriteClock,
    /// One adoption of stopped engines' intent files at a time in this
    /// process (the leader's loop and the non-leader task may overlap at a
    /// change of leader, and would import a claimed file twice).
    adopting: Mutex<()>,
}

/// Most intents waiting in the intent log to be moved; beyond it, appends
/// wait for a commit of their own.
const MAX_LOGGED: usize = 100_000;

/// Most document bytes kept in memory for this process's replicator.
const MEMO_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Document bytes of marked entries, by seq, while this process's
/// replicator runs.
#[derive(Default)]
struct Memo {
    on: bool,
    docs: std::collections::HashMap<i64, Vec<u8>>,
    bytes: usize,
}

impl Memo {
    /// Whether a document of `len` bytes would be kept now.
    fn fits(&self, len: usize) -> bool {
        self.on && self.bytes + len <= MEMO_MAX_BYTES
    }

    /// Keeps `doc` if there is room; gives it back otherwise.
    fn keep(&mut self, seq: i64, doc: Vec<u8>) -> Option<Vec<u8>> {
        if !self.fits(doc.len()) {
            return Some(doc);
        }
        self.bytes += doc.len();
        if let Some(old) = self.docs.insert(seq, doc) {
            self.bytes -= old.len();
        }
        None
    }

    fn take(&mut self, seq: i64) -> Option<Vec<u8>> {
        let doc = self.docs.remove(&seq)?;
        self.bytes -= doc.len();
        Some(doc)
    }
}

/// Counts an append as under way until dropped.
struct Appending<'a>(&'a AtomicUsize);

impl<'a> Appending<'a> {
    fn enter(n: &'a AtomicUsize) -> Appending<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        Appending(n)
    }
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the writer thread and inline appends share.
struct Shared {
    conn: Mutex<Connection>,
    owner: String,
    /// Marks and removals not committed yet.
    deferred: Mutex<store::Deferred>,
    /// A `Flush` is on its way to the writer thread.
    flush_sent: AtomicBool,
    changed: Arc<Notify>,
    /// Commits so far, for the checkpoint thread.
    commits: Arc<AtomicU64>,
    /// Document bytes of marked entries, for this process's replicator.
    memo: Mutex<Memo>,
    /// Where intents are logged before their local write (not with
    /// `fsync`: see `Journal::inline`).
    log: Option<IntentLog>,
    /// The writer thread runs (logged intents are moved).
    writer_alive: AtomicBool,
    /// Why the last move of logged intents into the journal failed, while
    /// it keeps failing: new intents are refused meanwhile, as a failed
    /// commit refuses them, instead of piling up.
    move_failed: Mutex<Option<String>>,
}

impl Shared {
    fn memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.memo.lock().expect("journal memo poisoned")
    }

    fn deferred(&self) -> std::sync::MutexGuard<'_, store::Deferred> {
        self.deferred.lock().expect("journal deferred poisoned")
    }

    /// Buffers marks of entries in the journal; their documents go to the
    /// memo if it has room, else with the mark to the file.
    fn defer_marks(&self, done: Vec<(i64, Option<Vec<u8>>)>) {
        let mut memo = self.memo();
        let mut d = self.deferred();
        d.marks.extend(
            done.into_iter()
                .map(|(seq, doc)| (seq, doc.and_then(|b| memo.keep(seq, b)))),
        );
    }

    fn take_deferred(&self) -> store::Deferred {
        std::mem::take(&mut *self.deferred())
    }

    /// Deferred changes whose commit failed wait for the next one.
    fn restore_deferred(&self, d: store::Deferred) {
        if !d.is_empty() {
            self.deferred().prepend(d);
        }
    }

    fn notify(&self) {
        self.changed.notify_waiters();
        self.changed.notify_one();
    }
}

impl Journal {
    /// Opens (creating if needed) `dir/journal.sqlite3` and registers `owner`
    /// as a live writer. Fails with `ERR_SYNC_JOURNAL` if the folder is not
    /// writable or the file is not a healthy journal.
    pub fn open(dir: &Path, fsync: bool, owner: String) -> Result<Journal, SyncError> {
        std::fs::create_dir_all(dir).map_err(|e| SyncError::journal(dir, e))?;
        let path = dir.join("journal.sqlite3");
        let owners =
            OwnerRegistry::register(dir, &owner).map_err(|e| SyncError::journal(dir, e))?;
        // Processes starting together would race to create the file and
        // switch it to WAL (SQLite answers "locked" without waiting then):
        // one opens at a time.
        let opening =
            locks::exclusive(&dir.join("open.lock")).map_err(|e| SyncError::journal(dir, e))?;
        let writer_conn =
            store::open(&path, fsync, true).map_err(|e| SyncError::journal(&path, e))?;
        let reader = store::open(&path, fsync, false).map_err(|e| SyncError::journal(&path, e))?;
        let checkpoint_conn =
            store::open_checkpointer(&path, fsync).map_err(|e| SyncError::journal(&path, e))?;
        let log = if fsync {
            None
        } else {
            Some(IntentLog::open(dir, &owner).map_err(|e| SyncError::journal(dir, e))?)
        };
        // Under `open.lock`: no other engine opens meanwhile.
        let alone = owners.none_alive_but_me();
        let clock = clock::WriteClock::open(dir, alone).map_err(|e| SyncError::journal(dir, e))?;
        drop(opening);
        let changed = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            conn: Mutex::new(writer_conn),
            owner: owner.clone(),
            deferred: Mutex::new(store::Deferred::default()),
            flush_sent: AtomicBool::new(false),
            changed: changed.clone(),
            commits: Arc::new(AtomicU64::new(0)),
            memo: Mutex::new(Memo::default()),
            log,
            move_failed: Mutex::new(None),
            writer_alive: AtomicBool::new(true),
        });
        let checkpointer = Checkpointer::start(checkpoint_conn, shared.commits.clone())
            .map_err(|e| SyncError::journal(&path, e))?;
        let for_writer = shared.clone();
        let writer = std::thread::Builder::new()
            .name("dual-sync-journal".into())
            .spawn(move || writer_loop(for_writer, rx))
            .map_err(|e| SyncError::journal(&path, e))?;
        let journal = Journal {
            path,
            owner,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            checkpointer,
            shared,
            inline: !fsync,
            appending: AtomicUsize::new(0),
            reader: Arc::new(Mutex::new(reader)),
            changed,
            owners,
            clock,
            adopting: Mutex::new(()),
        };
        // Other engines' leftovers must not keep this one from starting: the
        // leader tries again every second.
        if let Err(e) = journal.adopt_orphans() {
            tracing::warn!("moving a stopped engine's intents failed: {e}");
        }
        Ok(journal)
    }

    /// Moves the intents that dead engines logged but never moved into the
    /// journal (not ready, owned by the engine that logged them: copied
    /// after the takeover grace). Returns how many.
    pub fn adopt_orphans(&self) -> Result<u64, SyncError> {
        let _one = self.adopting.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let files =
            intents::claim_orphans(dir, &self.owner, |h| self.owners.dead_since(h).is_some());
        let mut n = 0;
        let mut failed = None;
        for (file, writer) in files {
            // A file that fails stays, under this engine's name: the next
            // round (or, once this engine is gone, another) tries again.
            let done = intents::read_file(&file)
                .map_err(|e| SyncError::journal(&file, e))
                .and_then(|intents| {
                    let n = intents.len() as u64;
                    if n > 0 {
                        let mut conn = self
                            .shared
                            .conn
                            .lock()
                            .expect("journal connection poisoned");
                        store::insert_adopted(&mut conn, &writer, intents)
                            .map_err(|e| SyncError::journal(&self.path, e))?;
                        self.shared.commits.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(n)
                });
            match done {
                Ok(k) => {
                    n += k;
                    let _ = std::fs::remove_file(&file);
                    tracing::info!(
                        "moved {k} intent(s) logged by engine {writer}, which stopped before moving them"
                    );
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if n > 0 {
            self.shared.notify();
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// [`Journal::adopt_orphans`] off the async workers.
    pub async fn adopt_orphans_async(self: &Arc<Self>) -> Result<u64, SyncError> {
        let j = self.clone();
        tokio::task::spawn_blocking(move || j.adopt_orphans())
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?
    }

    /// Finished writes per document, shared by the processes of the data
    /// directory (see `clock`).
    pub fn clock(&self) -> &clock::WriteClock {
        &self.clock
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, cmd: Cmd) -> Result<(), SyncError> {
        let guard = self.tx.lock().expect("journal sender poisoned");
        match guard.as_ref() {
            Some(tx) => tx.send(cmd).map_err(|_| SyncError::Closed),
            None => Err(SyncError::Closed),
        }
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, SyncError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply))?;
        self.answer(rx.await)
    }

    /// The writer thread's answer to a call, as the caller's result.
    fn answer<T>(
        &self,
        got: Result<Result<T, String>, oneshot::error::RecvError>,
    ) -> Result<T, SyncError> {
        match got {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(SyncError::journal(&self.path, e)),
            Err(_) => Err(SyncError::Closed),
        }
    }

    /// `logged`: not ready intents may go to the intent log, and come back
    /// as tickets instead of seqs.
    async fn append_as(
        &self,
        keys: Vec<DocKey>,
        ready: bool,
        inserts: bool,
        logged: bool,
    ) -> Result<Vec<i64>, SyncError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let log = match (&self.shared.log, ready, logged) {
            // A backlog of intents not moved (the journal is slow or busy):
            // new ones wait for a commit instead of piling up in memory.
            (Some(log), false, true) if log.pending_len() < MAX_LOGGED => Some(log),
            _ => None,
        };
        if let Some(log) = log {
            // Held across the append: `close` cannot end the writer thread
            // between the check and the record.
            let open = self.tx.lock().expect("journal sender poisoned");
            if open.is_none() {
                return Err(SyncError::Closed);
            }
            if !self.shared.writer_alive.load(Ordering::SeqCst) {
                return Err(SyncError::journal(
                    &self.path,
                    "the journal's writer thread stopped",
                ));
            }
            if let Some(e) = &*self.shared.move_failed.lock().expect("poisoned") {
                return Err(SyncError::journal(&self.path, e));
            }
            let tickets = log
                .append(keys, inserts, now_ms())
                .map_err(|e| SyncError::journal(&self.path, e))?;
            drop(open);
            self.flush_soon();
            return Ok(tickets);
        }
        let _appending = Appending::enter(&self.appending);
        if let Some(done) = self.append_now(&keys, ready, inserts) {
            return done;
        }
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Append(keys, ready, inserts, reply))?;
        let mut waiting = AppendReply {
            rx: Some(rx),
            journal: self,
            ready,
        };
        let got = waiting.rx.as_mut().expect("set above").await;
        waiting.rx = None;
        self.answer(got)
    }

    /// Commits an append on the calling thread if it is the only append
    /// under way and nothing else is committing (in this process or
    /// another); `None` otherwise. Concurrent appends go to the writer
    /// thread, which commits them together.
    fn append_now(
        &self,
        keys: &[DocKey],
        ready: bool,
        inserts: bool,
    ) -> Option<Result<Vec<i64>, SyncError>> {
        if !self.inline || self.appending.load(Ordering::SeqCst) > 1 {
            return None;
        }
        let open = self.tx.lock().expect("journal sender poisoned").is_some();
        if !open {
            return Some(Err(SyncError::Closed));
        }
        let mut conn = self.shared.conn.try_lock().ok()?;
        let deferred = self.shared.take_deferred();
        // Another process's transaction would make this thread wait: leave
        // that wait to the writer thread.
        let _ = conn.busy_timeout(Duration::ZERO);
        let done = store::append_now(
            &mut conn,
            &self.shared.owner,
            &deferred,
            keys,
            ready,
            inserts,
        );
        let _ = conn.busy_timeout(store::BUSY_TIMEOUT);
        let settled = !deferred.is_empty();
        if !matches!(done, Ok(Some(_))) {
            // Back before the connection is released, so that no commit in
            // between can miss them.
            self.shared.restore_deferred(deferred);
        }
        drop(conn);
        match done {
            Ok(Some(seqs)) => {
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                if ready || settled {
                    self.shared.notify();
                }
                Some(Ok(seqs))
            }
            Ok(None) => None,
            Err(e) => {
                // The marks and removals taken along must not wait for the
                // next write to be committed.
                self.flush_soon();
                Some(Err(SyncError::journal(&self.path, e)))
            }
        }
    }

    /// Makes intents for `keys` durable (not ready yet: their local write is
    /// about to be sent) and returns a handle for each, to mark it ready
    /// with: its seq, or, if it went to the intent log, a ticket (a negative
    /// number) that becomes a seq once the intent is moved into the journal.
    pub async fn append(&self, keys: Vec<DocKey>) -> Result<Vec<i64>, SyncError> {
        self.append_as(keys, false, false, true).await
    }

    /// [`Journal::append`] for inserts of new documents: the replicator may
    /// send them as inserts (much cheaper than upserts), falling back to a
    /// replace if Atlas has the `_id` already.
    pub async fn append_inserts(&self, keys: Vec<DocKey>) -> Result<Vec<i64>, SyncError> {
        self.append_as(keys, false, true, true).await
    }

    /// [`Journal::append`] (`inserts`: [`Journal::append_inserts`]) straight
    /// into the journal, returning seqs: for a caller that compares them
    /// with the seqs of other entries (full sync).
    pub async fn append_committed(
        &self,
        keys: Vec<DocKey>,
        inserts: bool,
    ) -> Result<Vec<i64>, SyncError> {
        self.append_as(keys, false, inserts, false).await
    }

    /// Commits entries that are ready at once (re-queued or repaired work).
    pub async fn append_ready(&self, keys: Vec<DocKey>) -> Result<Vec<i64>, SyncError> {
        self.append_as(keys, true, false, false).await
    }

    /// [`Journal::append_ready`] for documents Atlas is not expected to have.
    pub async fn append_ready_inserts(&self, keys: Vec<DocKey>) -> Result<Vec<i64>, SyncError> {
        self.append_as(keys, true, true, false).await
    }

    /// Marks intents ready once their local write finished. Not awaited: if
    /// the process dies first, the entries belong to a dead owner and are
    /// replicated all the same.
    pub fn mark_ready(&self, seqs: Vec<i64>) {
        self.mark(seqs.into_iter().map(|s| (s, None)));
    }

    /// [`Journal::mark_ready`] with, for each seq, the bytes of the document
    /// its insert stored (`None` where the insert failed): the replicator can
    /// send those to Atlas without reading them back.
    pub fn mark_inserted(&self, done: Vec<(i64, Option<Vec<u8>>)>) {
        self.mark(done.into_iter());
    }

    fn mark(&self, done: impl Iterator<Item = (i64, Option<Vec<u8>>)>) {
        // Tickets of logged intents become seqs once moved; until then the
        // mark goes with the intent.
        let done: Vec<(i64, Option<Vec<u8>>)> = match &self.shared.log {
            Some(log) => done
                .filter_map(|(s, doc)| match s < 0 {
                    false => Some((s, doc)),
                    true => match log.mark(s, doc) {
                        Marked::Seq(seq, doc) => Some((seq, doc)),
                        Marked::Logged | Marked::Held => None,
                    },
                })
                .collect(),
            None => done.collect(),
        };
        self.defer_marks(done);
    }

    fn defer_marks(&self, done: Vec<(i64, Option<Vec<u8>>)>) {
        if !done.is_empty() {
            self.shared.defer_marks(done);
            self.flush_soon();
        }
    }

    /// Makes sure the writer thread commits the deferred changes soon.
    fn flush_soon(&self) {
        if !self.shared.flush_sent.swap(true, Ordering::SeqCst) {
            let _ = self.send(Cmd::Flush);
        }
    }

    /// Removes entries whose documents Atlas acknowledged, and waits until
    /// the removal is committed.
    pub async fn remove(&self, seqs: Vec<i64>) -> Result<(), SyncError> {
        self.shared.deferred().removals.extend(seqs);
        self.call(Cmd::Settle).await
    }

    /// [`Journal::remove`] without waiting: the removal is committed with
    /// the next commit, and kept for the one after if that commit fails.
    /// Until then the entries stay pending (`flush` still waits for them);
    /// if the process dies first they are copied once more, which is
    /// harmless (copies are idempotent).
    pub fn remove_later(&self, seqs: Vec<i64>) {
        if !seqs.is_empty() {
            self.shared.deferred().removals.extend(seqs);
            self.flush_soon();
        }
    }

    /// Moves entries to the dead-letter table with their reason.
    pub async fn dead_letter(&self, items: Vec<DeadLetter>) -> Result<(), SyncError> {
        self.call(|r| Cmd::DeadLetter(items, r)).await
    }

    /// Puts every dead-lettered document back in the queue; returns how many.
    pub async fn requeue_dead_letters(&self) -> Result<u64, SyncError> {
        self.call(Cmd::RequeueDeadLetters).await
    }

    pub async fn set_meta(&self, key: &str, value: String) -> Result<(), SyncError> {
        let key = key.to_string();
        self.call(|r| Cmd::SetMeta(key, value, r)).await
    }

    /// Sets a meta value without waiting for the commit (for sync callers).
    pub fn set_meta_nowait(&self, key: &str, value: String) {
        let (reply, _) = oneshot::channel();
        let _ = self.send(Cmd::SetMeta(key.to_string(), value, reply));
    }

    /// Deletes a meta value without waiting for the commit.
    pub fn delete_meta_nowait(&self, key: &str) {
        let (reply, _) = oneshot::channel();
        let _ = self.send(Cmd::DeleteMeta(key.to_string(), reply));
    }

    /// Whether a live engine paused replication for the whole data
    /// directory (a pause ends with the process that asked for it).
    pub async fn shared_pause(&self) -> Result<bool, SyncError> {
        Ok(self.paused_by(self.get_meta(PAUSED_BY_KEY).await?))
    }

    fn paused_by(&self, owner: Option<String>) -> bool {
        match owner {
            Some(owner) => owner == self.owner || self.owners.dead_since(&owner).is_none(),
            None => false,
        }
    }

    /// How many commits this process has made to the journal. Entries of
    /// this process become visible only with one, so a reader that saw the
    /// count unchanged has nothing of this process's to read again.
    pub fn commit_count(&self) -> u64 {
        self.shared.commits.load(Ordering::SeqCst)
    }

    /// Pauses (or resumes) replication for every process of the directory.
    /// The change is queued at the call, in call order (a `close()` right
    /// after still commits it); the future resolves once it is committed.
    pub fn set_shared_pause(
        &self,
        paused: bool,
    ) -> impl std::future::Future<Output = Result<(), SyncError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let sent = self.send(if paused {
            Cmd::SetMeta(PAUSED_BY_KEY.to_string(), self.owner.clone(), reply)
        } else {
            Cmd::DeleteMeta(PAUSED_BY_KEY.to_string(), reply)
        });
        let path = self.path.clone();
        async move {
            sent?;
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(SyncError::journal(&path, e)),
                Err(_) => Err(SyncError::Closed),
            }
        }
    }

    /// Compare-and-set of a meta value, atomic across the processes of the
    /// directory: sets `key` to `new` (deletes it if `None`) only if it holds
    /// `expected` (is absent if `None`); returns whether it did.
    pub async fn swap_meta(
        &self,
        key: &str,
        expected: Option<String>,
        new: Option<String>,
    ) -> Result<bool, SyncError> {
        let key = key.to_string();
        self.call(|r| Cmd::SwapMeta(key, expected, new, r)).await
    }

    pub async fn delete_meta(&self, key: &str) -> Result<(), SyncError> {
        let key = key.to_string();
        self.call(|r| Cmd::DeleteMeta(key, r)).await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, SyncError> {
        let reader = self.reader.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().expect("journal reader poisoned");
            f(&conn)
        })
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))?
        .map_err(|e| SyncError::journal(&path, e))
    }

    /// Up to `limit` entries with `seq > after`, oldest first (the
    /// replicator uses [`Journal::read_after_then_pause`]).
    #[cfg(test)]
    pub async fn read_after(&self, after: i64, limit: usize) -> Result<Vec<Entry>, SyncError> {
        Ok(self
            .read_after_then_pause(after, limit, usize::MAX)
            .await?
            .0)
    }

    /// [`Journal::read_after`], stopping once the document bytes read from
    /// the file reach `max_bytes` (one entry at least), then
    /// [`Journal::shared_pause`] with the same read (after the entries: a
    /// pause committed before any of them is seen); and whether the read
    /// stopped short of the end.
    pub async fn read_after_then_pause(
        &self,
        after: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool, bool), SyncError> {
        let ((mut entries, short), owner) = self
            .read(move |c| {
                let read = store::read_after_bounded(c, after, limit, max_bytes)?;
                Ok((read, store::get_meta(c, PAUSED_BY_KEY)?))
            })
            .await?;
        // In slices: writes keep documents in the memo meanwhile, from other
        // threads, and should not wait for a whole read's worth.
        for slice in entries.chunks_mut(256) {
            let mut memo = self.shared.memo();
            for e in slice.iter_mut().filter(|e| e.ready && e.doc.is_none()) {
                e.doc = memo.take(e.seq);
            }
        }
        Ok((entries, self.paused_by(owner), short))
    }

    /// Keeps the document bytes of future marks in memory for this
    /// process's replicator (`true` while it leads and runs), or stops and
    /// forgets the ones kept.
    pub fn keep_docs(&self, on: bool) {
        let mut memo = self.shared.memo();
        if memo.on != on {
            *memo = Memo {
                on,
                ..Memo::default()
            };
        }
    }

    /// Gives back the capacity the memo grew to, once it is empty.
    pub fn shrink_memo(&self) {
        let mut memo = self.shared.memo();
        if memo.docs.is_empty() {
            memo.docs.shrink_to_fit();
        }
    }

    /// Which of `seqs` are now ready (missing ones are reported as ready:
    /// they were removed, so nothing waits on them).
    pub async fn ready_of(&self, seqs: Vec<i64>) -> Result<Vec<store::Readiness>, SyncError> {
        let mut found = self.read(move |c| store::ready_of(c, &seqs)).await?;
        let mut memo = self.shared.memo();
        for (seq, ready, doc) in found.iter_mut() {
            if *ready && doc.is_none() {
                *doc = memo.take(*seq);
            }
        }
        Ok(found)
    }

    /// Queue figures; `pending` counts the intents not moved yet too. Those
    /// are counted first: counted after the journal, an intent moved in
    /// between was in neither count.
    pub async fn stats(&self) -> Result<Stats, SyncError> {
        let unmoved = self.shared.log.as_ref().map_or(0, |l| l.unmoved_len());
        let mut stats = self.read(store::stats).await?;
        stats.pending += unmoved as u64;
        Ok(stats)
    }

    /// Waits until every intent logged so far is in the journal.
    async fn move_logged(&self) -> Result<(), SyncError> {
        match &self.shared.log {
            Some(_) => self.call(Cmd::Settle).await,
            None => Ok(()),
        }
    }

    /// The smallest pending seq, if any.
    pub async fn min_seq(&self) -> Result<Option<i64>, SyncError> {
        self.read(store::min_seq).await
    }

    /// The largest seq ever handed out.
    /// (after moving the intents logged so far: they count as handed out).
    pub async fn max_seq(&self) -> Result<i64, SyncError> {
        self.move_logged().await?;
        self.read(store::max_seq).await
    }

    /// How many entries of `ns` wait for their local write to finish.
    pub async fn unready_in(&self, ns: &str) -> Result<u64, SyncError> {
        self.move_logged().await?;
        let ns = ns.to_string();
        self.read(move |c| store::unready_in(c, &ns)).await
    }

    /// The namespaces of the entries still pending between two seqs
    /// (exclusive); entries already removed are not listed.
    pub async fn namespaces_between(
        &self,
        after: i64,
        before: i64,
    ) -> Result<Vec<String>, SyncError> {
        self.read(move |c| store::namespaces_between(c, after, before))
            .await
    }

    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, SyncError> {
        self.read(move |c| store::dead_letters(c, limit)).await
    }

    pub async fn get_meta(&self, key: &str) -> Result<Option<String>, SyncError> {
        let key = key.to_string();
        self.read(move |c| store::get_meta(c, &key)).await
    }

    /// Stops the writer thread after it committed everything queued.
    pub fn close(&self) {
        self.tx.lock().expect("journal sender poisoned").take();
        if let Some(h) = self.writer.lock().expect("journal writer poisoned").take() {
            let _ = h.join();
        }
        self.checkpointer.stop(true);
        self.owners.release();
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.tx.lock().map(|mut t| t.take()).ok();
        self.checkpointer.stop(false);
    }
}

/// How often the checkpoint thread looks for new commits.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// The thread that checkpoints the WAL (see `store::open_checkpointer`):
/// every `CHECKPOINT_EVERY` if anything was committed since the last time.
struct Checkpointer {
    stopped: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Checkpointer {
    fn start(conn: Connection, commits: Arc<AtomicU64>) -> std::io::Result<Checkpointer> {
        let stopped = Arc::new(AtomicBool::new(false));
        let stop = stopped.clone();
        let thread = std::thread::Builder::new()
            .name("dual-sync-ckpt".into())
            .spawn(move || {
                let mut seen = 0;
                // No lock is held across a checkpoint, so `stop` never waits
                // for its fsync.
                loop {
                    std::thread::park_timeout(CHECKPOINT_EVERY);
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let now = commits.load(Ordering::Relaxed);
                    if now != seen {
                        seen = now;
                        // Busy (another process checkpoints) or failed: the
                        // next round tries again; the WAL only grows meanwhile.
                        if let Err(e) = store::checkpoint(&conn) {
                            tracing::debug!("journal checkpoint skipped: {e}");
                        }
                    }
                }
            })?;
        Ok(Checkpointer {
            stopped,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Ends the thread; `join` waits for it (SQLite checkpoints once more
    /// when the last connection closes).
    fn stop(&self, join: bool) {
        self.stopped.store(true, Ordering::SeqCst);
        let Some(h) = self.thread.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        h.thread().unpark();
        if join {
            let _ = h.join();
        }
    }
}

/// How long deferred changes wait to share a commit with the next append.
const MARK_READY_COALESCE: Duration = Duration::from_millis(2);

/// Under a steady stream of writes, deferred changes and logged intents wait
/// until this long after the previous commit, so the writer thread commits
/// about this often instead of every `MARK_READY_COALESCE`; a write after a
/// quiet spell still waits only `MARK_READY_COALESCE`. Sequential writes
/// measured 10-20 µs less CPU per write on this thread (BENCHMARKS.md); the
/// price is a few ms more replication lag under load, nothing on the write
/// path.
const COMMIT_EVERY_UNDER_LOAD: Duration = Duration::from_millis(8);

/// How long a flush waits for company, `since` the previous commit.
fn coalesce_wait(since: Duration) -> Duration {
    COMMIT_EVERY_UNDER_LOAD
        .saturating_sub(since)
        .max(MARK_READY_COALESCE)
}

/// How long deferred changes whose commit failed wait before the next attempt.
const MARK_RETRY: Duration = Duration::from_millis(100);

fn drain_into(rx: &mpsc::Receiver<Cmd>, batch: &mut Vec<Cmd>) {
    while batch.len() < 4096 {
        match rx.try_recv() {
            Ok(c) => batch.push(c),
            Err(_) => break,
        }
    }
}

/// Commits every queued command and the deferred changes in one transaction,
/// then answers the commands. When the process closes the journal, the
/// deferred changes still buffered are committed before the thread ends.
fn writer_loop(shared: Arc<Shared>, rx: mpsc::Receiver<Cmd>) {
    /// Tells appends when this thread is gone, however it ends.
    struct Alive<'a>(&'a AtomicBool);
    impl Drop for Alive<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let _alive = Alive(&shared.writer_alive);
    let mut open = true;
    // Marks that came while their intents were being moved are committed
    // after `MARK_READY_COALESCE`, as a mark is otherwise.
    let mut immediate = false;
    // After the last command: a few more commits for marks that came during
    // the last move, or after a failed one.
    let mut last_rounds = 3;
    let mut last_commit = std::time::Instant::now();
    while open || last_rounds > 0 {
        let waiting = !shared.deferred().is_empty()
            || shared.log.as_ref().is_some_and(|l| l.pending_len() > 0);
        if !open {
            if !waiting {
                break;
            }
            last_rounds -= 1;
            if !immediate {
                std::thread::sleep(MARK_READY_COALESCE);
            }
        }
        let retrying = waiting && !shared.flush_sent.load(Ordering::SeqCst);
        let first = if immediate || retrying {
            let wait = if immediate {
                MARK_READY_COALESCE
            } else {
                MARK_RETRY
            };
            immediate = false;
            match rx.recv_timeout(wait) {
                Ok(c) => Some(c),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    open = false;
                    None
                }
            }
        } else {
            match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => {
                    open = false;
                    None
                }
            }
        };
        let mut batch: Vec<Cmd> = first.into_iter().collect();
        drain_into(&rx, &mut batch);
        // Deferred changes are never awaited: let them wait briefly for the
        // next append, so a sequential writer pays one commit per write, or
        // per few writes under load (see `COMMIT_EVERY_UNDER_LOAD`).
        if open && !batch.is_empty() && batch.iter().all(|c| matches!(c, Cmd::Flush)) {
            if let Ok(c) = rx.recv_timeout(coalesce_wait(last_commit.elapsed())) {
                batch.push(c);
                drain_into(&rx, &mut batch);
            }
        }
        batch.retain(|c| !matches!(c, Cmd::Flush));
        shared.flush_sent.store(false, Ordering::SeqCst);
        let mut conn = shared.conn.lock().expect("journal connection poisoned");
        let deferred = shared.take_deferred();
        let mut taken = shared.log.as_ref().map(|l| l.take());
        let empty = &mut Vec::new();
        let intents = taken.as_mut().map_or(empty, |t| &mut t.intents);
        if deferred.is_empty() && batch.is_empty() && intents.is_empty() {
            if let (Some(log), Some(t)) = (&shared.log, taken) {
                log.moved(t, &[]);
            }
            continue;
        }
        // Documents of ready intents go to the memo if it has room now,
        // else into the file.
        let to_memo: Vec<bool> = {
            let memo = shared.memo();
            let mut room = 0;
            intents
                .iter()
                .map(|i| match &i.doc {
                    Some(d) if memo.fits(room + d.len()) => {
                        room += d.len();
                        true
                    }
                    _ => false,
                })
                .collect()
        };
        // Into the memo once their seqs are known, before the commit makes
        // the rows visible to the replicator (which takes documents from
        // the memo when it reads the rows).
        let mut kept: Vec<(usize, i64)> = Vec::new();
        let result = store::apply(
            &mut conn,
            &shared.owner,
            &deferred,
            intents,
            &to_memo,
            &batch,
            &mut |intents, seqs| {
                let mut memo = shared.memo();
                for (at, ((i, seq), keep)) in intents.iter_mut().zip(seqs).zip(&to_memo).enumerate()
                {
                    if let (true, Some(doc)) = (*keep, i.doc.take()) {
                        // `Some` back: turned off meanwhile, read back instead.
                        if memo.keep(*seq, doc).is_none() {
                            kept.push((at, *seq));
                        }
                    }
                }
            },
        );
        let moved_any = !intents.is_empty();
        let mut notify = !deferred.is_empty() || moved_any;
        if moved_any {
            *shared.move_failed.lock().expect("poisoned") = result.as_ref().err().cloned();
        }
        if result.is_err() {
            // Back before the connection is released, so that no commit in
            // between can miss them; the seqs of the failed commit may be
            // handed out again, so the memo must not keep documents for them.
            shared.restore_deferred(deferred);
            if let (Some(log), Some(mut t)) = (&shared.log, taken) {
                let mut memo = shared.memo();
                for (at, seq) in &kept {
                    t.intents[*at].doc = memo.take(*seq);
                }
                drop(memo);
                log.restore(t);
            }
        } else if let (Some(log), Some(t), Ok((_, seqs))) = (&shared.log, taken, &result) {
            // Marks that came while the intents were being moved.
            let late = log.moved(t, seqs);
            if !late.is_empty() {
                shared.defer_marks(late);
                immediate = true;
            }
        }
        drop(conn);
        last_commit = std::time::Instant::now();
        match result {
            Ok((outcomes, _)) => {
                shared.commits.fetch_add(1, Ordering::Relaxed);
                let mut orphans = Vec::new();
                for (cmd, outcome) in batch.into_iter().zip(outcomes) {
                    notify |= matches!(cmd, Cmd::DeadLetter(..))
                        || matches!(cmd, Cmd::Append(_, true, _, _) | Cmd::RequeueDeadLetters(_));
                    orphans.extend(outcome.answer(cmd));
                }
                if !orphans.is_empty() {
                    shared.defer_marks(orphans.into_iter().map(|s| (s, None)).collect());
                    immediate = true;
                }
            }
            Err(e) => {
                tracing::warn!("journal commit failed: {e}");
                notify = false;
                for cmd in batch {
                    // A failed commit hands out no seqs: nothing to mark.
                    let _ = store::Outcome::Failed(e.clone()).answer(cmd);
                }
            }
        }
        if notify {
            shared.notify();
        }
    }
    if let Some(log) = &shared.log {
        log.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(id: u8) -> DocKey {
        DocKey {
            ns: "db.c".into(),
            id: vec![id],
        }
    }

    #[test]
    fn a_flush_waits_longer_only_right_after_a_commit() {
        let ms = Duration::from_millis;
        // Just committed (a steady stream): up to the under-load period.
        assert_eq!(coalesce_wait(ms(0)), COMMIT_EVERY_UNDER_LOAD);
        assert_eq!(coalesce_wait(ms(3)), COMMIT_EVERY_UNDER_LOAD - ms(3));
        // After a quiet spell: the short wait, never less.
        assert_eq!(coalesce_wait(COMMIT_EVERY_UNDER_LOAD), MARK_READY_COALESCE);
        assert_eq!(coalesce_wait(ms(500)), MARK_READY_COALESCE);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_answered_as_its_call_is_dropped_is_still_marked_ready() {
        let dir = temp_dir("orphan");
        let j = Journal::open(&dir, true, "me".into()).unwrap();
        async fn ready(j: &Journal, seqs: Vec<i64>) -> bool {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let found = j.ready_of(seqs.clone()).await.unwrap();
                if found.iter().all(|(_, r, _)| *r) {
                    return true;
                }
                if std::time::Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Committed, not ready: the write it announces has not run.
        let seqs = j
            .append_committed(vec![key(1), key(2)], false)
            .await
            .unwrap();
        let found = j.ready_of(seqs.clone()).await.unwrap();
        assert!(found.iter().all(|(_, r, _)| !*r), "the premise: not ready");
        // The writer answered, then the call was dropped unread.
        let (tx, rx) = oneshot::channel();
        tx.send(Ok(seqs.clone())).unwrap();
        drop(AppendReply {
            rx: Some(rx),
            journal: &j,
            ready: false,
        });
        assert!(
            ready(&j, seqs).await,
            "an answer nobody read left its entries not ready"
        );
        // Read: the caller marks them; dropping the wait does nothing.
        let more = j.append_committed(vec![key(3)], false).await.unwrap();
        let (tx, mut rx) = oneshot::channel::<Result<Vec<i64>, String>>();
        tx.send(Ok(more.clone())).unwrap();
        assert_eq!((&mut rx).await.unwrap(), Ok(more.clone()));
        drop(AppendReply {
            rx: None,
            journal: &j,
            ready: false,
        });
        let found = j.ready_of(more).await.unwrap();
        assert!(found.iter().all(|(_, r, _)| !*r));
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    pub(super) fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dms-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn committed_pages_reach_the_database_file_through_the_checkpoint_thread() {
        let dir = temp_dir("checkpoint");
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        let file = dir.join("journal.sqlite3");
        let size = || std::fs::metadata(&file).unwrap().len();
        let before = size();
        for i in 0..3000u32 {
            let k = DocKey {
                ns: "db.c".into(),
                id: i.to_le_bytes().to_vec(),
            };
            let seqs = j.append(vec![k]).await.unwrap();
            j.mark_inserted(vec![(seqs[0], Some(vec![7u8; 200]))]);
        }
        // Commits never checkpoint themselves (`wal_autocheckpoint=0`), so
        // only the checkpoint thread can have copied the rows into the file.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() < before + 256 * 1024 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes (was {before})",
                size()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The seqs of the entries in the journal, after moving logged intents
    /// (read from the file: the memo keeps its documents).
    async fn seqs(j: &Journal) -> Vec<i64> {
        j.max_seq().await.unwrap();
        j.read(|c| store::read_after(c, 0, 1000))
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scattered_marks_and_removals_touch_exactly_their_entries() {
        let dir = temp_dir("runs");
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        let tickets = j.append((1..=10).map(key).collect()).await.unwrap();
        let seqs = seqs(&j).await;
        assert_eq!(seqs.len(), 10);
        // Marked in two runs and a single, one of them with its bytes.
        let marked = [0usize, 1, 2, 5, 7, 8];
        j.mark_ready([0, 1, 2, 7, 8].iter().map(|&i| tickets[i]).collect());
        j.mark_inserted(vec![(tickets[5], Some(vec![7u8; 5]))]);
        j.max_seq().await.unwrap();
        let ready = j.ready_of(seqs.clone()).await.unwrap();
        let want: Vec<(i64, bool, Option<Vec<u8>>)> = (0..10)
            .map(|i| (seqs[i], marked.contains(&i), (i == 5).then(|| vec![7u8; 5])))
            .collect();
        assert_eq!(ready, want);
        let gone = [0usize, 1, 2, 5, 7, 8];
        j.remove(gone.iter().map(|&i| seqs[i]).collect())
            .await
            .unwrap();
        let left: Vec<i64> = (0..10)
            .filter(|i| !gone.contains(i))
            .map(|i| seqs[i])
            .collect();
        assert_eq!(super::tests::seqs(&j).await, left);
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn intents_become_ready_and_leave_only_when_removed() {
        let dir = temp_dir("cycle");
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        let tickets = j.append(vec![key(1), key(2)]).await.unwrap();
        assert_eq!(tickets.len(), 2);
        assert_ne!(tickets[0], tickets[1]);
        assert_eq!(j.stats().await.unwrap().pending, 2, "logged intents count");
        let seqs = seqs(&j).await;
        assert_eq!(seqs.len(), 2, "moved into the journal");
        assert!(seqs[0] < seqs[1], "sequence numbers grow");
        let e = j.read_after(0, 10).await.unwrap();
        assert!(
            !e[0].ready,
            "an intent is not ready before its write finished"
        );
        assert_eq!(e[0].owner, "me");
        assert_eq!(e[0].key, key(1));
        j.mark_ready(vec![tickets[0]]);
        // Moving also commits the marks buffered so far.
        j.max_seq().await.unwrap();
        assert_eq!(
            j.ready_of(seqs.clone()).await.unwrap(),
            vec![(seqs[0], true, None), (seqs[1], false, None)]
        );
        j.remove(vec![seqs[0]]).await.unwrap();
        assert_eq!(j.min_seq().await.unwrap(), Some(seqs[1]));
        assert_eq!(j.max_seq().await.unwrap(), seqs[1]);
        assert_eq!(j.stats().await.unwrap().pending, 1);
        j.close();
        assert!(
            std::fs::read_dir(dir.join(intents::DIR))
                .unwrap()
                .next()
                .is_none(),
            "no intent file is left after a clean close"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn marks_go_with_their_intent_or_the_next_commit_and_closing_commits_the_rest() {
        let dir = temp_dir("marks");
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        let a = j.append(vec![key(1)]).await.unwrap();
        j.mark_inserted(vec![(a[0], Some(vec![7, 7]))]);
        let b = j.append(vec![key(2)]).await.unwrap();
        let moved = seqs(&j).await;
        let e = j.read_after(0, 10).await.unwrap();
        assert!(e[0].ready, "marked before it was moved: moved ready");
        assert_eq!(e[0].doc, Some(vec![7, 7]));
        assert!(!e[1].ready);
        // Marked after it was moved: the mark finds its seq.
        j.mark_ready(b.clone());
        j.close();
        drop(j);
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        let e = j.read_after(0, 10).await.unwrap();
        assert_eq!(e[1].seq, moved[1]);
        assert!(e[1].ready, "a mark buffered at close is not lost");
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_stops_at_its_byte_budget() {
        let dir = temp_dir("budget");
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        j.keep_docs(false); // the bytes go to the file, as while paused
        let keys: Vec<DocKey> = (0..40).map(key).collect();
        let s = j.append(keys).await.unwrap();
        j.mark_inserted(s.iter().map(|&t| (t, Some(vec![7u8; 64 * 1024]))).collect());
        seqs(&j).await;
        let (e, _, short) = j.read_after_then_pause(0, 1000, 1024 * 1024).await.unwrap();
        assert_eq!(e.len(), 16, "1 MiB of 64 KiB documents");
        assert!(short, "stopped short of the end");
        let (e, _, short) = j.read_after_then_pause(0, 1000, 1).await.unwrap();
        assert_eq!(e.len(), 1, "one entry at least");
        assert!(short);
        let (e, _, short) = j.read_after_then_pause(0, 1000, usize::MAX).await.unwrap();
        assert_eq!(e.len(), 40);
        assert!(!short, "read to the end");
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn swap_meta_sets_only_over_the_expected_value() {
        let dir = temp_dir("swap");
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        let other = Journal::open(&dir, false, "other".into()).unwrap();
        let v = |s: &str| Some(s.to_string());
        assert!(
            j.swap_meta("k", None, v("a")).await.unwrap(),
            "absent as expected"
        );
        assert!(
            !other.swap_meta("k", None, v("b")).await.unwrap(),
            "present now"
        );
        assert!(!other.swap_meta("k", v("x"), v("b")).await.unwrap());
        assert_eq!(other.get_meta("k").await.unwrap(), v("a"), "unchanged");
        assert!(other.swap_meta("k", v("a"), v("b")).await.unwrap());
        assert!(
            !j.swap_meta("k", v("a"), None).await.unwrap(),
            "the other process's value"
        );
        assert!(j.swap_meta("k", v("b"), None).await.unwrap());
        assert_eq!(j.get_meta("k").await.unwrap(), None, "deleted");
        // Racing over one value from two processes: exactly one wins.
        let (x, y) = tokio::join!(
            j.swap_meta("r", None, v("j")),
            other.swap_meta("r", None, v("other"))
        );
        assert!(x.unwrap() ^ y.unwrap());
        j.close();
        other.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn document_bytes_stay_in_memory_for_the_replicator_up_to_a_bound() {
        let dir = temp_dir("memo");
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        j.keep_docs(true);
        let s = j.append(vec![key(1), key(2)]).await.unwrap();
        let big = vec![9u8; MEMO_MAX_BYTES];
        j.mark_inserted(vec![(s[0], Some(vec![1, 1])), (s[1], Some(big.clone()))]);
        seqs(&j).await;
        let e = j.read_after(0, 10).await.unwrap();
        assert_eq!(e[0].doc, Some(vec![1, 1]), "from memory");
        assert_eq!(e[1].doc, Some(big), "too big to keep: from the file");
        assert!(j.shared.memo().docs.is_empty(), "taken once read");
        // Waiting entries get theirs when they are seen ready.
        let s = j.append(vec![key(4)]).await.unwrap();
        let seq = *seqs(&j).await.last().unwrap();
        j.mark_inserted(vec![(s[0], Some(vec![4]))]);
        j.append(vec![key(5)]).await.unwrap();
        seqs(&j).await;
        assert_eq!(
            j.ready_of(vec![seq]).await.unwrap(),
            vec![(seq, true, Some(vec![4]))]
        );
        // Not kept while off; turning it off forgets what was kept.
        let s = j.append(vec![key(6)]).await.unwrap();
        let seq = *seqs(&j).await.last().unwrap();
        j.mark_inserted(vec![(s[0], Some(vec![6]))]);
        j.keep_docs(false);
        j.append(vec![key(7)]).await.unwrap();
        seqs(&j).await;
        assert_eq!(
            j.ready_of(vec![seq]).await.unwrap(),
            vec![(seq, true, None)]
        );
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn intents_a_dead_engine_never_moved_are_adopted_as_its_unready_entries() {
        let dir = temp_dir("orphans");
        // An engine that died between logging and moving: its file stays.
        let before = IntentLog::open(&dir, "dead-at-start").unwrap();
        before.append(vec![key(1), key(2)], true, 11).unwrap();
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        let e = j.read_after(0, 10).await.unwrap();
        assert_eq!(e.len(), 2, "adopted when the journal opens");
        assert_eq!((e[0].key.clone(), e[1].key.clone()), (key(1), key(2)));
        assert!(e.iter().all(|e| !e.ready && e.insert && e.at_ms == 11));
        assert!(e.iter().all(|e| e.owner == "dead-at-start"));
        // One that dies while this engine runs: adopted on the next round,
        // but never while its engine lives.
        let later = IntentLog::open(&dir, "dead-later").unwrap();
        later.append(vec![key(3)], false, 12).unwrap();
        let alive = OwnerRegistry::register(&dir, "dead-later").unwrap();
        assert_eq!(j.adopt_orphans().unwrap(), 0, "its engine still lives");
        alive.release();
        // The registry trusts a liveness check for 500 ms.
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(j.adopt_orphans().unwrap(), 1);
        let e = j.read_after(0, 10).await.unwrap();
        assert_eq!((e.len(), e[2].key.clone()), (3, key(3)));
        assert_eq!(e[2].owner, "dead-later");
        assert!(
            std::fs::read_dir(dir.join(intents::DIR))
                .unwrap()
                .next()
                .is_none(),
            "adopted files are deleted"
        );
        j.close();
        drop(j);
        // An engine with `SYNC_JOURNAL_FSYNC` keeps no intent log of its
        // own, and adopts all the same.
        let crashed = IntentLog::open(&dir, "dead-before-fsync").unwrap();
        crashed.append(vec![key(4)], false, 13).unwrap();
        let j = Journal::open(&dir, true, "fsync".into()).unwrap();
        let e = j.read_after(0, 10).await.unwrap();
        assert_eq!(e.last().map(|e| e.key.clone()), Some(key(4)));
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seqs_never_repeat_after_removal_and_reopen() {
        let dir = temp_dir("reopen");
        let j = Journal::open(&dir, false, "a".into()).unwrap();
        let s = j.append_ready(vec![key(1)]).await.unwrap();
        j.remove(s.clone()).await.unwrap();
        j.close();
        drop(j);
        let j = Journal::open(&dir, true, "b".into()).unwrap();
        let t = j.append_ready(vec![key(1)]).await.unwrap();
        assert!(t[0] > s[0], "AUTOINCREMENT keeps seqs growing");
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dead_letters_leave_the_queue_and_come_back_on_request() {
        let dir = temp_dir("dead");
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        let s = j.append_ready(vec![key(1), key(2)]).await.unwrap();
        let letter = DeadLetter {
            key: key(1),
            seqs: vec![s[0]],
            code: Some(11000),
            reason: "dup".into(),
            at_ms: 1,
        };
        j.dead_letter(vec![letter]).await.unwrap();
        let st = j.stats().await.unwrap();
        assert_eq!((st.pending, st.dead_letters), (1, 1));
        assert_eq!(j.dead_letters(10).await.unwrap()[0].reason, "dup");
        assert_eq!(j.requeue_dead_letters().await.unwrap(), 1);
        let st = j.stats().await.unwrap();
        assert_eq!((st.pending, st.dead_letters), (2, 0));
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_writers_share_one_journal() {
        let dir = temp_dir("two");
        let a = Arc::new(Journal::open(&dir, false, "a".into()).unwrap());
        let b = Arc::new(Journal::open(&dir, false, "b".into()).unwrap());
        let mut tasks = Vec::new();
        for (j, n) in [(a.clone(), 0u8), (b.clone(), 100u8)] {
            tasks.push(tokio::spawn(async move {
                for i in 0..50u8 {
                    j.append_ready(vec![key(n + i)]).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let all = a.read_after(0, 1000).await.unwrap();
        assert_eq!(all.len(), 100);
        let mut seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
        seqs.dedup();
        assert_eq!(seqs.len(), 100, "no seq is handed out twice");
        a.close();
        b.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let dir = temp_dir("damaged");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("journal.sqlite3"), vec![0xabu8; 8192]).unwrap();
        let err = Journal::open(&dir, false, "me".into())
            .err()
            .expect("refused");
        assert_eq!(err.code(), "ERR_SYNC_JOURNAL");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
