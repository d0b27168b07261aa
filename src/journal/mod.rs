//! The journal: durable pending work, in SQLite (WAL mode) under `SYNC_DATA_DIR`.
//!
//! Invariants:
//! - an intent is committed to the journal *before* the local write it
//!   describes is sent, so a crash at any later moment leaves a record of it;
//! - an entry is `ready` once its local write finished (or failed); while not
//!   ready, only a dead owner's entries are replicated (see `locks`);
//! - an entry leaves `pending` only after Atlas acknowledged the copy of its
//!   document (or it moved, with its reason, to `dead_letter`);
//! - sequence numbers only grow (`AUTOINCREMENT`), across processes too, so
//!   "everything captured so far" is "every seq up to the current maximum".
//!
//! Every mutation goes through one writer thread per process, which commits
//! whatever is queued in one transaction (group commit). Several processes
//! share the file safely through SQLite's own locking.

mod locks;
mod store;

pub use locks::{LeaderLock, OwnerRegistry};
pub use store::{now_ms, DeadLetter, Entry, Stats};

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{oneshot, Notify};

use crate::error::SyncError;

/// A document's identity: its namespace (`db.coll`) and the BSON bytes of
/// `{ "_id": <value> }`, so ids of every type are kept exactly.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocKey {
    pub ns: String,
    pub id: Vec<u8>,
}

type Reply<T> = oneshot::Sender<Result<T, String>>;

enum Cmd {
    Append(Vec<DocKey>, bool, Reply<Vec<i64>>),
    MarkReady(Vec<i64>),
    Remove(Vec<i64>, Reply<()>),
    DeadLetter(Vec<DeadLetter>, Reply<()>),
    RequeueDeadLetters(Reply<u64>),
    SetMeta(String, String, Reply<()>),
    DeleteMeta(String, Reply<()>),
}

/// Handle to the journal of one data directory.
pub struct Journal {
    path: PathBuf,
    owner: String,
    tx: Mutex<Option<mpsc::Sender<Cmd>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Arc<Mutex<Connection>>,
    /// Signalled after every commit that made entries ready or removed some.
    pub changed: Arc<Notify>,
    pub owners: OwnerRegistry,
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
        let writer_conn = store::open(&path, fsync).map_err(|e| SyncError::journal(&path, e))?;
        let reader = store::open(&path, fsync).map_err(|e| SyncError::journal(&path, e))?;
        let changed = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel();
        let notify = changed.clone();
        let writer_owner = owner.clone();
        let writer = std::thread::Builder::new()
            .name("dual-sync-journal".into())
            .spawn(move || writer_loop(writer_conn, writer_owner, rx, notify))
            .map_err(|e| SyncError::journal(&path, e))?;
        Ok(Journal {
            path,
            owner,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            reader: Arc::new(Mutex::new(reader)),
            changed,
            owners,
        })
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
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(SyncError::journal(&self.path, e)),
            Err(_) => Err(SyncError::Closed),
        }
    }

    /// Commits intents for `keys` (not ready yet: their local write is about
    /// to be sent) and returns their sequence numbers.
    pub async fn append(&self, keys: Vec<DocKey>) -> Result<Vec<i64>, SyncError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|r| Cmd::Append(keys, false, r)).await
    }

    /// Commits entries that are ready at once (re-queued or repaired work).
    pub async fn append_ready(&self, keys: Vec<DocKey>) -> Result<Vec<i64>, SyncError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|r| Cmd::Append(keys, true, r)).await
    }

    /// Marks intents ready once their local write finished. Not awaited: if
    /// the process dies first, the entries belong to a dead owner and are
    /// replicated all the same.
    pub fn mark_ready(&self, seqs: Vec<i64>) {
        if !seqs.is_empty() {
            let _ = self.send(Cmd::MarkReady(seqs));
        }
    }

    /// Removes entries whose documents Atlas acknowledged.
    pub async fn remove(&self, seqs: Vec<i64>) -> Result<(), SyncError> {
        self.call(|r| Cmd::Remove(seqs, r)).await
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

    /// Up to `limit` entries with `seq > after`, oldest first.
    pub async fn read_after(&self, after: i64, limit: usize) -> Result<Vec<Entry>, SyncError> {
        self.read(move |c| store::read_after(c, after, limit)).await
    }

    /// Which of `seqs` are now ready (missing ones are reported as ready:
    /// they were removed, so nothing waits on them).
    pub async fn ready_of(&self, seqs: Vec<i64>) -> Result<Vec<(i64, bool)>, SyncError> {
        self.read(move |c| store::ready_of(c, &seqs)).await
    }

    pub async fn stats(&self) -> Result<Stats, SyncError> {
        self.read(store::stats).await
    }

    /// The smallest pending seq, if any.
    pub async fn min_seq(&self) -> Result<Option<i64>, SyncError> {
        self.read(store::min_seq).await
    }

    /// The largest seq ever handed out.
    pub async fn max_seq(&self) -> Result<i64, SyncError> {
        self.read(store::max_seq).await
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
        self.owners.release();
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.tx.lock().map(|mut t| t.take()).ok();
    }
}

/// Commits every queued command in one transaction, then answers them.
fn writer_loop(mut conn: Connection, owner: String, rx: mpsc::Receiver<Cmd>, changed: Arc<Notify>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let result = store::apply(&mut conn, &owner, &batch);
        let mut notify = false;
        for (cmd, outcome) in batch.into_iter().zip(result) {
            notify |= matches!(
                cmd,
                Cmd::MarkReady(_) | Cmd::Remove(..) | Cmd::DeadLetter(..)
            ) || matches!(cmd, Cmd::Append(_, true, _) | Cmd::RequeueDeadLetters(_));
            outcome.answer(cmd);
        }
        if notify {
            changed.notify_waiters();
            changed.notify_one();
        }
    }
}
