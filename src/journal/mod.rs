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

/// Meta key naming the engine that paused replication.
const PAUSED_BY_KEY: &str = "paused_by";

enum Cmd {
    /// Keys, ready at once?, all of them inserts of new documents?
    Append(Vec<DocKey>, bool, bool, Reply<Vec<i64>>),
    /// Seqs whose write finished, each with the document's stored bytes when
    /// the write was an insert that succeeded.
    MarkReady(Vec<(i64, Option<Vec<u8>>)>),
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
        // Processes starting together would race to create the file and
        // switch it to WAL (SQLite answers "locked" without waiting then):
        // one opens at a time.
        let opening =
            locks::exclusive(&dir.join("open.lock")).map_err(|e| SyncError::journal(dir, e))?;
        let writer_conn = store::open(&path, fsync).map_err(|e| SyncError::journal(&path, e))?;
        let reader = store::open(&path, fsync).map_err(|e| SyncError::journal(&path, e))?;
        drop(opening);
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

    async fn append_as(
        &self,
        keys: Vec<DocKey>,
        ready: bool,
        inserts: bool,
    ) -> Result<Vec<i64>, SyncError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|r| Cmd::Append(keys, ready, inserts, r)).await
    }

    /// Commits intents for `keys` (not ready yet: their local write is about
    /// to be sent) and returns their sequence numbers.
    pub async fn append(&self, keys: Vec<DocKey>) -> Result<Vec<i64>, SyncError> {
        self.append_as(keys, false, false).await
    }

    /// [`Journal::append`] for inserts of new documents: the replicator may
    /// send them as inserts (much cheaper than upserts), falling back to a
    /// replace if Atlas has the `_id` already.
    pub async fn append_inserts(&self, keys: Vec<DocKey>) -> Result<Vec<i64>, SyncError> {
        self.append_as(keys, false, true).await
    }

    /// Commits entries that are ready at once (re-queued or repaired work).
    pub async fn append_ready(&self, keys: Vec<DocKey>) -> Result<Vec<i64>, SyncError> {
        self.append_as(keys, true, false).await
    }

    /// [`Journal::append_ready`] for documents Atlas is not expected to have.
    pub async fn append_ready_inserts(&self, keys: Vec<DocKey>) -> Result<Vec<i64>, SyncError> {
        self.append_as(keys, true, true).await
    }

    /// Marks intents ready once their local write finished. Not awaited: if
    /// the process dies first, the entries belong to a dead owner and are
    /// replicated all the same.
    pub fn mark_ready(&self, seqs: Vec<i64>) {
        if !seqs.is_empty() {
            let _ = self.send(Cmd::MarkReady(
                seqs.into_iter().map(|s| (s, None)).collect(),
            ));
        }
    }

    /// [`Journal::mark_ready`] with, for each seq, the bytes of the document
    /// its insert stored (`None` where the insert failed): the replicator can
    /// send those to Atlas without reading them back.
    pub fn mark_inserted(&self, done: Vec<(i64, Option<Vec<u8>>)>) {
        if !done.is_empty() {
            let _ = self.send(Cmd::MarkReady(done));
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
        Ok(match self.get_meta(PAUSED_BY_KEY).await? {
            Some(owner) => owner == self.owner || self.owners.dead_since(&owner).is_none(),
            None => false,
        })
    }

    /// Pauses (or resumes) replication for every process of the directory.
    pub fn set_shared_pause(&self, paused: bool) {
        if paused {
            self.set_meta_nowait(PAUSED_BY_KEY, self.owner.clone());
        } else {
            self.delete_meta_nowait(PAUSED_BY_KEY);
        }
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

/// How long a lone "mark ready" waits to share a commit.
const MARK_READY_COALESCE: std::time::Duration = std::time::Duration::from_millis(2);

fn drain_into(rx: &mpsc::Receiver<Cmd>, batch: &mut Vec<Cmd>) {
    while batch.len() < 4096 {
        match rx.try_recv() {
            Ok(c) => batch.push(c),
            Err(_) => break,
        }
    }
}

/// Commits every queued command in one transaction, then answers them.
fn writer_loop(mut conn: Connection, owner: String, rx: mpsc::Receiver<Cmd>, changed: Arc<Notify>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        drain_into(&rx, &mut batch);
        // Marking intents ready is never awaited: let it wait briefly for
        // the next append, so a sequential writer pays one commit per write.
        if batch.iter().all(|c| matches!(c, Cmd::MarkReady(_))) {
            if let Ok(c) = rx.recv_timeout(MARK_READY_COALESCE) {
                batch.push(c);
                drain_into(&rx, &mut batch);
            }
        }
        let result = store::apply(&mut conn, &owner, &batch);
        let mut notify = false;
        for (cmd, outcome) in batch.into_iter().zip(result) {
            notify |= matches!(
                cmd,
                Cmd::MarkReady(_) | Cmd::Remove(..) | Cmd::DeadLetter(..)
            ) || matches!(cmd, Cmd::Append(_, true, _, _) | Cmd::RequeueDeadLetters(_));
            outcome.answer(cmd);
        }
        if notify {
            changed.notify_waiters();
            changed.notify_one();
        }
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

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dms-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn intents_become_ready_and_leave_only_when_removed() {
        let dir = temp_dir("cycle");
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        let seqs = j.append(vec![key(1), key(2)]).await.unwrap();
        assert_eq!(seqs.len(), 2);
        assert!(seqs[0] < seqs[1], "sequence numbers grow");
        let e = j.read_after(0, 10).await.unwrap();
        assert_eq!(e.len(), 2);
        assert!(
            !e[0].ready,
            "an intent is not ready before its write finished"
        );
        assert_eq!(e[0].owner, "me");
        j.mark_ready(vec![seqs[0]]);
        tokio::time::timeout(Duration::from_secs(5), j.changed.notified())
            .await
            .unwrap();
        assert_eq!(
            j.ready_of(seqs.clone()).await.unwrap(),
            vec![(seqs[0], true), (seqs[1], false)]
        );
        j.remove(vec![seqs[0]]).await.unwrap();
        assert_eq!(j.min_seq().await.unwrap(), Some(seqs[1]));
        assert_eq!(j.max_seq().await.unwrap(), seqs[1]);
        assert_eq!(j.stats().await.unwrap().pending, 1);
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
