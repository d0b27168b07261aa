//! SQLite schema and statements of the journal. Only `journal` calls these.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

use super::intents::Intent;
use super::{Cmd, DocKey};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pending (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    ns    TEXT    NOT NULL,
    id    BLOB    NOT NULL,
    owner TEXT    NOT NULL,
    ready INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    hint  INTEGER NOT NULL DEFAULT 0,
    doc   BLOB
);
CREATE TABLE IF NOT EXISTS dead_letter (
    ns       TEXT    NOT NULL,
    id       BLOB    NOT NULL,
    code     INTEGER,
    reason   TEXT    NOT NULL,
    at_ms    INTEGER NOT NULL,
    PRIMARY KEY (ns, id)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// One pending entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: i64,
    pub key: DocKey,
    pub owner: String,
    pub ready: bool,
    pub at_ms: i64,
    /// The change was the insert of a new document.
    pub insert: bool,
    /// The bytes that insert stored, once it succeeded.
    pub doc: Option<Vec<u8>>,
}

/// A document Atlas refused for good, with the reason.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub key: DocKey,
    pub seqs: Vec<i64>,
    pub code: Option<i32>,
    pub reason: String,
    pub at_ms: i64,
}

/// Queue figures.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub pending: u64,
    pub oldest_at_ms: Option<i64>,
    pub dead_letters: u64,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

/// Opens the file in WAL mode. `fsync` chooses `synchronous=FULL` (survives
/// power loss) over `NORMAL` (survives any process crash: a commit is in the
/// OS before the call returns).
/// How long a commit waits for another process's transaction.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the WAL file is cut back to once a checkpoint emptied it: a
/// backlog (an Atlas outage) grows it to the size of what it held, and
/// without a limit it keeps that size on disk for good.
pub const WAL_LIMIT: i64 = 64 * 1024 * 1024;

/// Opens a connection to the journal; `check` runs SQLite's `quick_check`
/// first (once per process is enough: it reads the whole file).
pub fn open(path: &Path, fsync: bool, check: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "journal_size_limit", WAL_LIMIT)?;
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
    // A damaged file must stop the engine, never be silently replaced.
    let verdict: String = if check {
        conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?
    } else {
        "ok".into()
    };
    if verdict != "ok" {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(format!("the journal is damaged ({verdict}); keep the file for inspection and move it aside to start an empty journal")),
        ));
    }
    conn.execute_batch(SCHEMA)?;
    add_column(&conn, "hint", "INTEGER NOT NULL DEFAULT 0")?;
    add_column(&conn, "doc", "BLOB")?;
    // No checkpoint inside a commit: the journal's checkpoint thread does
    // them (see `open_checkpointer`).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// The connection of the checkpoint thread. A checkpoint copies committed
/// pages from the WAL into the database file and ends with an fsync; run
/// inside a commit (SQLite's default, every 1000 pages), that fsync would
/// stall whatever thread committed, the runtime's worker included.
pub fn open_checkpointer(path: &Path, fsync: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_millis(100))?;
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "journal_size_limit", WAL_LIMIT)?;
    Ok(conn)
}

/// Checkpoints what it can without waiting for anyone (`PASSIVE`).
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

/// Journals made by earlier versions get the columns added since.
fn add_column(conn: &Connection, name: &str, decl: &str) -> rusqlite::Result<()> {
    let has: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('pending') WHERE name = ?1",
        [name],
        |r| r.get(0),
    )?;
    if has == 0 {
        conn.execute_batch(&format!("ALTER TABLE pending ADD COLUMN {name} {decl}"))?;
    }
    Ok(())
}

/// The result of one command inside a group commit.
pub(super) enum Outcome {
    Seqs(Vec<i64>),
    Unit,
    Count(u64),
    Failed(String),
}

impl Outcome {
    /// Answers `cmd`. Returns the seqs of an append of not-ready entries
    /// whose caller is gone (its call was cancelled, see `Engine::write`):
    /// nobody will mark them, so the writer marks them ready itself (the
    /// write they announce was never sent, or its outcome is unknown either
    /// way; the replicator copies what local holds).
    pub(super) fn answer(self, cmd: Cmd) -> Vec<i64> {
        let err = |o: &Outcome| match o {
            Outcome::Failed(e) => e.clone(),
            _ => "unexpected journal answer".to_string(),
        };
        match cmd {
            Cmd::Append(_, ready, _, r) => {
                let sent = r.send(match self {
                    Outcome::Seqs(s) => Ok(s),
                    o => Err(err(&o)),
                });
                if let (Err(Ok(seqs)), false) = (sent, ready) {
                    return seqs;
                }
            }
            Cmd::Settle(r)
            | Cmd::DeadLetter(_, r)
            | Cmd::SetMeta(_, _, r)
            | Cmd::DeleteMeta(_, r) => {
                let _ = r.send(match self {
                    Outcome::Unit => Ok(()),
                    o => Err(err(&o)),
                });
            }
            Cmd::RequeueDeadLetters(r) => {
                let _ = r.send(match self {
                    Outcome::Count(n) => Ok(n),
                    o => Err(err(&o)),
                });
            }
            Cmd::SwapMeta(_, _, _, r) => {
                let _ = r.send(match self {
                    Outcome::Count(n) => Ok(n == 1),
                    o => Err(err(&o)),
                });
            }
            Cmd::Flush => {}
        }
        Vec::new()
    }
}

/// Changes nobody waits for, committed with whatever commits next.
#[derive(Default)]
pub(super) struct Deferred {
    /// Entries whose local write finished, each with the document's bytes
    /// when the entry carries them.
    pub marks: Vec<(i64, Option<Vec<u8>>)>,
    /// Entries whose document Atlas acknowledged.
    pub removals: Vec<i64>,
}

impl Deferred {
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty() && self.removals.is_empty()
    }

    /// Puts `older` before what is here.
    pub fn prepend(&mut self, mut older: Deferred) {
        older.marks.append(&mut self.marks);
        older.removals.append(&mut self.removals);
        *self = older;
    }
}

/// Runs `deferred` and a group of commands in one transaction. If the
/// commit fails, every command of the group fails with the reason (and the
/// caller keeps `deferred` for the next commit).
/// Logged intents (see `intents`) are moved in the same transaction, each
/// with its document unless `to_memo` says it goes to memory; their seqs
/// come back with the outcomes. `before_commit` gets the intents and their
/// seqs just before the commit (to hand documents to memory before any
/// reader can see the rows).
pub(super) fn apply(
    conn: &mut Connection,
    owner: &str,
    deferred: &Deferred,
    intents: &mut [Intent],
    to_memo: &[bool],
    batch: &[Cmd],
    before_commit: &mut dyn FnMut(&mut [Intent], &[i64]),
) -> Result<(Vec<Outcome>, Vec<i64>), String> {
    apply_tx(
        conn,
        owner,
        deferred,
        intents,
        to_memo,
        batch,
        before_commit,
    )
    .map_err(|e| e.to_string())
}

/// Inserts logged intents; returns their seqs.
fn insert_intents(
    tx: &rusqlite::Transaction<'_>,
    owner: &str,
    intents: &[Intent],
    to_memo: &[bool],
) -> rusqlite::Result<Vec<i64>> {
    if intents.is_empty() {
        return Ok(Vec::new());
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO pending (ns, id, owner, ready, at_ms, hint, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut seqs = Vec::with_capacity(intents.len());
    for (i, memo) in intents.iter().zip(to_memo) {
        let doc = if *memo { None } else { i.doc.as_deref() };
        stmt.execute(params![
            i.key.ns,
            i.key.id,
            owner,
            i.ready as i64,
            i.at_ms,
            i.insert as i64,
            doc
        ])?;
        seqs.push(tx.last_insert_rowid());
    }
    Ok(seqs)
}

/// Commits intents a dead engine logged but never moved, as not ready and
/// owned by `writer`.
pub(super) fn insert_adopted(
    conn: &mut Connection,
    writer: &str,
    intents: Vec<(DocKey, bool, i64)>,
) -> rusqlite::Result<()> {
    let intents: Vec<Intent> = intents
        .into_iter()
        .map(|(key, insert, at_ms)| Intent {
            ticket: 0,
            key,
            insert,
            at_ms,
            ready: false,
            doc: None,
        })
        .collect();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    insert_intents(&tx, writer, &intents, &vec![false; intents.len()])?;
    tx.commit()
}

/// Inserts intents for `keys` and commits them with `deferred`, without
/// waiting for another process's transaction: `Ok(None)` if the journal is
/// busy (the caller queues the append for the writer thread instead).
pub(super) fn append_now(
    conn: &mut Connection,
    owner: &str,
    deferred: &Deferred,
    keys: &[DocKey],
    ready: bool,
    insert: bool,
) -> rusqlite::Result<Option<Vec<i64>>> {
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    settle(&tx, deferred)?;
    let seqs = append(&tx, owner, keys, ready, insert, now_ms())?;
    tx.commit()?;
    Ok(Some(seqs))
}

/// Marks first: an entry is removed only after it was seen ready.
fn settle(tx: &rusqlite::Transaction<'_>, deferred: &Deferred) -> rusqlite::Result<()> {
    if !deferred.marks.is_empty() {
        let mut stmt =
            tx.prepare_cached("UPDATE pending SET ready = 1, doc = ?2 WHERE seq = ?1")?;
        for (seq, doc) in &deferred.marks {
            stmt.execute(params![seq, doc])?;
        }
    }
    if !deferred.removals.is_empty() {
        // A batch's seqs are mostly consecutive: one statement per run.
        let mut stmt = tx.prepare_cached("DELETE FROM pending WHERE seq BETWEEN ?1 AND ?2")?;
        for (first, last) in runs(&deferred.removals) {
            stmt.execute([first, last])?;
        }
    }
    Ok(())
}

/// `seqs` as runs of consecutive numbers, `(first, last)`, in order: every
/// number in a run is in `seqs`, so deleting the runs deletes nothing else.
fn runs(seqs: &[i64]) -> Vec<(i64, i64)> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == s => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

fn append(
    tx: &rusqlite::Transaction<'_>,
    owner: &str,
    keys: &[DocKey],
    ready: bool,
    insert: bool,
    now: i64,
) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO pending (ns, id, owner, ready, at_ms, hint) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut seqs = Vec::with_capacity(keys.len());
    for k in keys {
        stmt.execute(params![k.ns, k.id, owner, ready as i64, now, insert as i64])?;
        seqs.push(tx.last_insert_rowid());
    }
    Ok(seqs)
}

fn apply_tx(
    conn: &mut Connection,
    owner: &str,
    deferred: &Deferred,
    intents: &mut [Intent],
    to_memo: &[bool],
    batch: &[Cmd],
    before_commit: &mut dyn FnMut(&mut [Intent], &[i64]),
) -> rusqlite::Result<(Vec<Outcome>, Vec<i64>)> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let seqs = insert_intents(&tx, owner, intents, to_memo)?;
    settle(&tx, deferred)?;
    let mut out = Vec::with_capacity(batch.len());
    let now = now_ms();
    for cmd in batch {
        out.push(match cmd {
            Cmd::Append(keys, ready, insert, _) => {
                Outcome::Seqs(append(&tx, owner, keys, *ready, *insert, now)?)
            }
            Cmd::Flush => Outcome::Unit,
            // The deferred changes, settled above, are all it asks for.
            Cmd::Settle(_) => Outcome::Unit,
            Cmd::DeadLetter(items, _) => {
                let mut ins = tx.prepare_cached(
                    "INSERT OR REPLACE INTO dead_letter (ns, id, code, reason, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let mut del = tx.prepare_cached("DELETE FROM pending WHERE seq = ?1")?;
                for d in items {
                    ins.execute(params![d.key.ns, d.key.id, d.code, d.reason, d.at_ms])?;
                    for s in &d.seqs {
                        del.execute([s])?;
                    }
                }
                Outcome::Unit
            }
            Cmd::RequeueDeadLetters(_) => {
                let n = tx.execute(
                    "INSERT INTO pending (ns, id, owner, ready, at_ms)
                     SELECT ns, id, ?1, 1, ?2 FROM dead_letter",
                    params![owner, now],
                )?;
                tx.execute("DELETE FROM dead_letter", [])?;
                Outcome::Count(n as u64)
            }
            Cmd::SetMeta(k, v, _) => {
                tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![k, v])?;
                Outcome::Unit
            }
            Cmd::DeleteMeta(k, _) => {
                tx.execute("DELETE FROM meta WHERE key = ?1", [k])?;
                Outcome::Unit
            }
            Cmd::SwapMeta(k, expected, new, _) => {
                let now = get_meta(&tx, k)?;
                if now == *expected {
                    match new {
                        Some(v) => tx.execute(
                            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                            params![k, v],
                        )?,
                        None => tx.execute("DELETE FROM meta WHERE key = ?1", [k])?,
                    };
                    Outcome::Count(1)
                } else {
                    Outcome::Count(0)
                }
            }
        });
    }
    before_commit(intents, &seqs);
    tx.commit()?;
    Ok((out, seqs))
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        seq: r.get(0)?,
        key: DocKey {
            ns: r.get(1)?,
            id: r.get(2)?,
        },
        owner: r.get(3)?,
        ready: r.get::<_, i64>(4)? != 0,
        at_ms: r.get(5)?,
        insert: r.get::<_, i64>(6)? != 0,
        doc: r.get(7)?,
    })
}

const READ_AFTER: &str =
    "SELECT seq, ns, id, owner, ready, at_ms, hint, doc FROM pending WHERE seq > ?1 ORDER BY seq";

/// Up to `limit` entries with `seq > after`, oldest first.
/// The limit is applied while stepping, not as `LIMIT ?`: SQLite plans a
/// bound `LIMIT` with its value, so a cached statement with one is parsed and
/// planned again on every call (one per replication batch). Rows come in
/// `seq` order straight from the table's b-tree, so stopping early reads no
/// more than a `LIMIT` would.
#[cfg(test)]
pub fn read_after(c: &Connection, after: i64, limit: usize) -> rusqlite::Result<Vec<Entry>> {
    Ok(read_after_bounded(c, after, limit, usize::MAX)?.0)
}

/// Up to `limit` entries with `seq > after`, oldest first, stopping once
/// the document bytes read reach `max_bytes` (one entry at least), and
/// whether the read stopped short of the end (at either bound).
pub fn read_after_bounded(
    c: &Connection,
    after: i64,
    limit: usize,
    max_bytes: usize,
) -> rusqlite::Result<(Vec<Entry>, bool)> {
    let mut stmt = c.prepare_cached(READ_AFTER)?;
    let mut rows = stmt.query_map(params![after], entry)?;
    let (mut out, mut bytes) = (Vec::new(), 0usize);
    while out.len() < limit && (out.is_empty() || bytes < max_bytes) {
        match rows.next() {
            Some(e) => {
                let e = e?;
                bytes += e.doc.as_ref().map_or(0, Vec::len);
                out.push(e);
            }
            None => return Ok((out, false)),
        }
    }
    Ok((out, true))
}

/// Whether each seq is ready, with the document bytes its mark stored.
///
/// One read transaction for all of them: outside one, every lookup is a
/// transaction of its own, taking and releasing the WAL's read lock
/// (`fcntl` calls) each time, which cost a quarter of the replicator's CPU
/// with hundreds of writes in flight.
pub fn ready_of(c: &Connection, seqs: &[i64]) -> rusqlite::Result<Vec<Readiness>> {
    let tx = c.unchecked_transaction()?;
    let found = {
        let mut stmt = tx.prepare_cached("SELECT ready, doc FROM pending WHERE seq = ?1")?;
        seqs.iter()
            .map(|s| {
                let row: Option<(i64, Option<Vec<u8>>)> = stmt
                    .query_row([s], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                Ok(match row {
                    Some((ready, doc)) => (*s, ready != 0, doc),
                    None => (*s, true, None),
                })
            })
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    tx.commit()?;
    Ok(found)
}

/// A seq, whether its write finished, and the bytes its mark stored.
pub type Readiness = (i64, bool, Option<Vec<u8>>);

pub fn stats(c: &Connection) -> rusqlite::Result<Stats> {
    let (pending, oldest): (i64, Option<i64>) =
        c.query_row("SELECT COUNT(*), MIN(at_ms) FROM pending", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let dead: i64 = c.query_row("SELECT COUNT(*) FROM dead_letter", [], |r| r.get(0))?;
    Ok(Stats {
        pending: pending as u64,
        oldest_at_ms: oldest,
        dead_letters: dead as u64,
    })
}

pub fn min_seq(c: &Connection) -> rusqlite::Result<Option<i64>> {
    c.query_row("SELECT MIN(seq) FROM pending", [], |r| r.get(0))
}

pub fn max_seq(c: &Connection) -> rusqlite::Result<i64> {
    let v: Option<i64> = c
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'pending'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.unwrap_or(0))
}

/// Pending entries of `ns` whose local write has not been marked finished.
pub fn unready_in(c: &Connection, ns: &str) -> rusqlite::Result<u64> {
    c.query_row(
        "SELECT COUNT(*) FROM pending WHERE ready = 0 AND ns = ?1",
        [ns],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
}

/// The namespaces of the pending entries with `after < seq < before`.
pub fn namespaces_between(
    c: &Connection,
    after: i64,
    before: i64,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare_cached("SELECT ns FROM pending WHERE seq > ?1 AND seq < ?2")?;
    let rows = stmt.query_map(params![after, before], |r| r.get(0))?;
    rows.collect()
}

pub fn dead_letters(c: &Connection, limit: usize) -> rusqlite::Result<Vec<DeadLetter>> {
    let mut stmt = c.prepare_cached(
        "SELECT ns, id, code, reason, at_ms FROM dead_letter ORDER BY at_ms LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(DeadLetter {
            key: DocKey {
                ns: r.get(0)?,
                id: r.get(1)?,
            },
            seqs: Vec::new(),
            code: r.get(2)?,
            reason: r.get(3)?,
            at_ms: r.get(4)?,
        })
    })?;
    rows.collect()
}

pub fn get_meta(c: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn an_append_whose_caller_is_gone_hands_its_seqs_back_to_be_marked() {
        let append = |ready: bool| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Cmd::Append(Vec::new(), ready, false, tx), rx)
        };
        // The caller waits: it gets the seqs and marks them itself.
        let (cmd, mut rx) = append(false);
        assert!(Outcome::Seqs(vec![5, 6]).answer(cmd).is_empty());
        assert_eq!(rx.try_recv().unwrap(), Ok(vec![5, 6]));
        // The caller's call was dropped: nobody would mark them.
        let (cmd, rx) = append(false);
        drop(rx);
        assert_eq!(Outcome::Seqs(vec![7, 8]).answer(cmd), vec![7, 8]);
        // Entries appended ready need no mark; a failed commit has no seqs.
        let (cmd, rx) = append(true);
        drop(rx);
        assert!(Outcome::Seqs(vec![9]).answer(cmd).is_empty());
        let (cmd, rx) = append(false);
        drop(rx);
        assert!(Outcome::Failed("disk full".into()).answer(cmd).is_empty());
    }

    #[test]
    fn removals_go_in_runs_of_consecutive_seqs() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[7]), vec![(7, 7)]);
        assert_eq!(
            runs(&[5, 3, 4, 9, 10, 12, 4, 1]),
            vec![(1, 1), (3, 5), (9, 10), (12, 12)]
        );
    }

    /// A fresh journal file in a directory of its own, with ten ready
    /// entries: the file's path, the connection, the keys and their seqs.
    fn journal_of_ten(name: &str) -> (PathBuf, Connection, Vec<DocKey>, Vec<i64>) {
        let dir = crate::journal::tests::temp_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal.sqlite3");
        let mut c = open(&path, false, true).unwrap();
        let keys: Vec<DocKey> = (0..10u8)
            .map(|i| DocKey {
                ns: "db.c".into(),
                id: vec![i],
            })
            .collect();
        let tx = c.transaction().unwrap();
        let seqs = append(&tx, "me", &keys, true, false, 1).unwrap();
        tx.commit().unwrap();
        (path, c, keys, seqs)
    }

    #[test]
    fn the_wal_a_backlog_grew_is_cut_back_once_checkpointed() {
        let dir = crate::journal::tests::temp_dir("store-wal-limit");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal.sqlite3");
        let wal = dir.join("journal.sqlite3-wal");
        let c = open(&path, false, true).unwrap();
        c.execute_batch("CREATE TABLE grow (b BLOB)").unwrap();
        // A backlog of document bytes larger than the limit, then drained.
        let mb = vec![7u8; 1024 * 1024];
        for _ in 0..(WAL_LIMIT / (1024 * 1024) + 16) {
            c.execute("INSERT INTO grow (b) VALUES (?1)", params![mb])
                .unwrap();
        }
        c.execute("DELETE FROM grow", []).unwrap();
        let grown = std::fs::metadata(&wal).unwrap().len() as i64;
        assert!(grown > WAL_LIMIT, "the WAL grew to {grown} bytes");
        // The checkpoint thread's pass, then the next commit starts the WAL
        // over and cuts the file back.
        checkpoint(&open_checkpointer(&path, false).unwrap()).unwrap();
        c.execute("INSERT INTO grow (b) VALUES (x'00')", [])
            .unwrap();
        let after = std::fs::metadata(&wal).unwrap().len() as i64;
        assert!(after <= WAL_LIMIT, "{after} bytes after the checkpoint");
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn seqs_after(c: &Connection, after: i64, limit: usize) -> Vec<i64> {
        read_after(c, after, limit)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    }

    #[test]
    fn settling_removals_deletes_exactly_those_rows() {
        let (path, mut c, _, seqs) = journal_of_ten("store-settle");
        let gone = [seqs[1], seqs[2], seqs[3], seqs[5], seqs[6], seqs[9]];
        let deferred = Deferred {
            marks: Vec::new(),
            removals: vec![gone[3], gone[0], gone[5], gone[2], gone[1], gone[4]],
        };
        let tx = c.transaction().unwrap();
        settle(&tx, &deferred).unwrap();
        tx.commit().unwrap();
        assert_eq!(
            seqs_after(&c, 0, 100),
            vec![seqs[0], seqs[4], seqs[7], seqs[8]]
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn read_after_stops_at_the_limit_and_keeps_its_plan() {
        let (path, _writer, keys, seqs) = journal_of_ten("store-read-after");
        let reader = Connection::open(&path).unwrap();
        assert_eq!(seqs_after(&reader, 0, 3), seqs[..3]);
        assert_eq!(seqs_after(&reader, seqs[2], 100), seqs[3..]);
        assert_eq!(seqs_after(&reader, seqs[0], 2), seqs[1..3]);
        assert!(seqs_after(&reader, 0, 0).is_empty());
        assert_eq!(read_after(&reader, seqs[8], 5).unwrap()[0].key, keys[9]);

        // With `LIMIT ?2` this was 4: a new parse and plan for every call after
        // the first.
        let stmt = reader.prepare_cached(READ_AFTER).unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
        drop(stmt);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
