//! The intent log: where a write's intent is made durable before its local
//! write is sent, with one `write(2)` to a file of this process's own.
//!
//! A commit to the SQLite journal per write costs several page writes and
//! file locks (45-50 µs here); an append to this log is one system call.
//! The journal's writer thread moves the logged intents into SQLite in its
//! next group commit (a few milliseconds later), where the replicator and
//! every other process see them, and then deletes the file they were in.
//!
//! Invariants:
//! - an append returns only after its records are in the OS (`write(2)`
//!   returned), so a process crash at any later moment leaves them in a file
//!   (the same promise as a `synchronous=NORMAL` SQLite commit);
//! - a file is emptied (or deleted) only after the commit that moved every
//!   intent in it; a crash in between only means those intents are moved
//!   twice, and a second copy of a document is harmless. An emptied file is
//!   kept for later appends: creating and deleting a file per commit cost
//!   more kernel time than the commit's own writes;
//! - files are named `<holder>--<name>.log`; the holder is the engine that
//!   will move them. Files of a dead holder are adopted by a live engine
//!   (renamed to its own name first, so only one adopts them) and their
//!   intents enter the journal as not ready, owned by the dead holder: the
//!   replicator copies them after the takeover grace like any dead owner's;
//! - a record is `[len u32][xxh3 u64][payload]`; reading stops at the first
//!   record that is short or fails its hash (a write cut off by the crash,
//!   whose local write was never sent).
//!
//! Until it is moved, an intent is known by a ticket (a negative number)
//! instead of a seq; the journal translates tickets when they are marked.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use xxhash_rust::xxh3::xxh3_64;

use super::DocKey;

/// The folder of the intent files, inside the data directory.
pub(super) const DIR: &str = "intents";

/// Format of a record's payload.
const VERSION: u8 = 1;

/// One logged intent.
#[derive(Debug, Clone)]
pub(super) struct Intent {
    pub ticket: i64,
    pub key: DocKey,
    pub insert: bool,
    pub at_ms: i64,
    /// Its local write finished (marked before the intent was moved).
    pub ready: bool,
    /// The bytes its insert stored, if marked with them.
    pub doc: Option<Vec<u8>>,
}

/// Intents taken from the log by one commit, and the files they were in.
pub(super) struct Taken {
    pub intents: Vec<Intent>,
    pub files: Vec<LogFile>,
}

/// One open intent file.
pub(super) struct LogFile {
    file: File,
    pub path: PathBuf,
}

/// Emptied files kept for reuse, at most.
const SPARE_FILES: usize = 2;

pub(super) struct IntentLog {
    dir: PathBuf,
    holder: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The file appends go to; `None` until the first append after a
    /// commit took the previous one.
    file: Option<LogFile>,
    /// Appends have written to `file`.
    written: bool,
    /// Numbers the files of this holder.
    next_file: u64,
    /// Logged intents not moved yet, oldest first.
    pending: Vec<Intent>,
    /// Intents taken for a commit that has not been reported yet (`moved`
    /// or `restore`).
    in_transit: usize,
    next_ticket: i64,
    /// Tickets moved while not ready, with their seq, until marked.
    moved: HashMap<i64, i64>,
    /// Marks of tickets that were being moved when they came.
    early: HashMap<i64, Option<Vec<u8>>>,
    /// Files all of whose intents were taken, to empty after their commit.
    retired: Vec<LogFile>,
    /// Emptied files, for appends to reuse.
    spare: Vec<LogFile>,
}

/// What a mark of a ticket turned into.
pub(super) enum Marked {
    /// The intent is not moved yet: it will be moved ready.
    Logged,
    /// The intent is in the journal under this seq.
    Seq(i64, Option<Vec<u8>>),
    /// The intent is being moved; the mark waits for that commit.
    Held,
}

impl IntentLog {
    pub fn open(data_dir: &Path, holder: &str) -> io::Result<IntentLog> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(&dir)?;
        // Files an earlier engine of the same name left (owner names are
        // unique per process, so only when a caller reuses one) are not
        // ours to append to: they are adopted like a dead engine's.
        for e in std::fs::read_dir(&dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let own = name
                .strip_suffix(".log")
                .and_then(|s| s.strip_prefix(holder))
                .and_then(|s| s.strip_prefix("--"))
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
            if own {
                std::fs::rename(e.path(), adopted_path(&dir, holder, holder))?;
            }
        }
        Ok(IntentLog {
            dir,
            holder: holder.to_string(),
            state: Mutex::new(State {
                next_ticket: -1,
                ..State::default()
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("intent log poisoned")
    }

    fn new_file(&self, n: u64) -> io::Result<LogFile> {
        let path = self.dir.join(format!("{}--{n}.log", self.holder));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(LogFile { file, path })
    }

    /// Logs intents for `keys` (one `write(2)`) and returns their tickets.
    pub fn append(&self, keys: Vec<DocKey>, insert: bool, at_ms: i64) -> io::Result<Vec<i64>> {
        let mut buf = Vec::with_capacity(keys.len() * 64);
        for k in &keys {
            encode(&mut buf, k, insert, at_ms);
        }
        let mut st = self.state();
        if st.file.is_none() {
            let f = match st.spare.pop() {
                Some(f) => f,
                None => {
                    let n = st.next_file;
                    st.next_file += 1;
                    self.new_file(n)?
                }
            };
            st.file = Some(f);
            st.written = false;
        }
        let lf = st.file.as_mut().expect("file opened above");
        if let Err(e) = lf.file.write_all(&buf) {
            // Part of the records may be in the file: later appends go to
            // another one, so none follows a broken record.
            let lf = st.file.take().expect("file opened above");
            if st.written {
                st.retired.push(lf);
            } else {
                let _ = std::fs::remove_file(lf.path);
            }
            return Err(e);
        }
        st.written = true;
        let mut tickets = Vec::with_capacity(keys.len());
        for key in keys {
            let ticket = st.next_ticket;
            st.next_ticket -= 1;
            tickets.push(ticket);
            st.pending.push(Intent {
                ticket,
                key,
                insert,
                at_ms,
                ready: false,
                doc: None,
            });
        }
        Ok(tickets)
    }

    pub fn pending_len(&self) -> usize {
        self.state().pending.len()
    }

    /// Intents not in the journal for sure: waiting, or taken by a commit
    /// not reported yet. Read before the journal's own count, it misses
    /// none of the intents logged so far (one being moved meanwhile may be
    /// counted twice).
    pub fn unmoved_len(&self) -> usize {
        let st = self.state();
        st.pending.len() + st.in_transit
    }

    /// Takes every intent not moved yet; appends from now on go to another
    /// file (an emptied one, or one created here, off the appenders' path).
    pub fn take(&self) -> Taken {
        // A file is created only if no spare is left. Between the two locks
        // appends take no spare (they take one only when `file` is `None`,
        // never while it is written to) and only the caller's thread (the
        // writer's, which also runs `moved`) adds one.
        let number = {
            let mut st = self.state();
            (st.written && st.spare.is_empty()).then(|| {
                st.next_file += 1;
                st.next_file - 1
            })
        };
        let opened = number.and_then(|n| self.new_file(n).ok());
        let mut st = self.state();
        if st.written {
            let next = opened.or_else(|| st.spare.pop());
            if let Some(old) = std::mem::replace(&mut st.file, next) {
                st.retired.push(old);
            }
            st.written = false;
        } else if let Some(f) = opened {
            st.spare.push(f);
        }
        st.in_transit += st.pending.len();
        Taken {
            intents: std::mem::take(&mut st.pending),
            files: std::mem::take(&mut st.retired),
        }
    }

    /// After the commit that moved `taken` (with `seqs`, one per intent):
    /// empties its files (kept for reuse, or deleted), remembers the seqs of
    /// intents not ready yet, and returns the marks that came while they
    /// were being moved.
    pub fn moved(&self, taken: Taken, seqs: &[i64]) -> Vec<(i64, Option<Vec<u8>>)> {
        let mut emptied = Vec::new();
        for f in taken.files {
            if emptied.len() < SPARE_FILES && f.file.set_len(0).is_ok() {
                emptied.push(f);
            } else {
                let _ = std::fs::remove_file(&f.path);
            }
        }
        let mut st = self.state();
        st.in_transit = st.in_transit.saturating_sub(taken.intents.len());
        for f in emptied {
            if st.spare.len() < SPARE_FILES {
                st.spare.push(f);
            } else {
                let _ = std::fs::remove_file(&f.path);
            }
        }
        let mut late = Vec::new();
        for (i, seq) in taken.intents.iter().zip(seqs) {
            if i.ready {
                continue;
            }
            match st.early.remove(&i.ticket) {
                Some(doc) => late.push((*seq, doc)),
                None => {
                    st.moved.insert(i.ticket, *seq);
                }
            }
        }
        late
    }

    /// After a commit that failed: the intents wait for the next one.
    pub fn restore(&self, taken: Taken) {
        let mut st = self.state();
        st.in_transit = st.in_transit.saturating_sub(taken.intents.len());
        let mut intents = taken.intents;
        // Marks that came meanwhile apply to them now.
        for i in intents.iter_mut() {
            if let Some(doc) = st.early.remove(&i.ticket) {
                i.ready = true;
                i.doc = doc;
            }
        }
        intents.append(&mut st.pending);
        st.pending = intents;
        let mut files = taken.files;
        files.append(&mut st.retired);
        st.retired = files;
    }

    /// Marks a ticket's local write finished.
    pub fn mark(&self, ticket: i64, doc: Option<Vec<u8>>) -> Marked {
        let mut st = self.state();
        if let Some(seq) = st.moved.remove(&ticket) {
            return Marked::Seq(seq, doc);
        }
        // Pending intents are in ticket order (tickets count down).
        if let Ok(at) = st.pending.binary_search_by(|i| ticket.cmp(&i.ticket)) {
            let i = &mut st.pending[at];
            i.ready = true;
            i.doc = doc;
            return Marked::Logged;
        }
        st.early.insert(ticket, doc);
        Marked::Held
    }

    /// Deletes this holder's empty files (on close, once nothing is
    /// pending).
    pub fn close(&self) {
        let mut st = self.state();
        for f in std::mem::take(&mut st.spare) {
            let _ = std::fs::remove_file(f.path);
        }
        if st.pending.is_empty() && !st.written {
            if let Some(f) = st.file.take() {
                let _ = std::fs::remove_file(f.path);
            }
        }
    }
}

/// Renames the intent files in `data_dir` of dead holders (`dead(holder)`),
/// and `holder`'s own adopted files left by a failed import, to `holder`'s
/// name, and returns them with the engine whose intents they hold.
pub(super) fn claim_orphans(
    data_dir: &Path,
    holder: &str,
    dead: impl Fn(&str) -> bool,
) -> Vec<(PathBuf, String)> {
    let dir = data_dir.join(DIR);
    let Ok(list) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in list.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        let Some((owner, rest)) = stem.split_once("--") else {
            continue;
        };
        if owner == holder {
            // Ours: a live file, or one adopted earlier whose import failed.
            if let Some((writer, _)) = rest.split_once("~adopted~") {
                out.push((e.path(), writer.to_string()));
            }
            continue;
        }
        if !dead(owner) {
            continue;
        }
        // The original writer, through any earlier adoptions.
        let writer = rest
            .split_once("~adopted~")
            .map_or(owner, |(w, _)| w)
            .to_string();
        let to = adopted_path(&dir, holder, &writer);
        // Only one engine renames it; the others find it gone.
        if std::fs::rename(e.path(), &to).is_ok() {
            out.push((to, writer));
        }
    }
    out
}

/// A new name, held by `holder`, for a file of intents `writer` logged.
fn adopted_path(dir: &Path, holder: &str, writer: &str) -> PathBuf {
    dir.join(format!(
        "{holder}--{writer}~adopted~{:016x}.log",
        rand::random::<u64>()
    ))
}

fn encode(buf: &mut Vec<u8>, k: &DocKey, insert: bool, at_ms: i64) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 12]);
    buf.push(VERSION);
    buf.push(insert as u8);
    buf.extend_from_slice(&at_ms.to_le_bytes());
    buf.extend_from_slice(&(k.ns.len() as u32).to_le_bytes());
    buf.extend_from_slice(k.ns.as_bytes());
    buf.extend_from_slice(&(k.id.len() as u32).to_le_bytes());
    buf.extend_from_slice(&k.id);
    let payload = &buf[start + 12..];
    let len = (payload.len() as u32).to_le_bytes();
    let hash = xxh3_64(payload).to_le_bytes();
    buf[start..start + 4].copy_from_slice(&len);
    buf[start + 4..start + 12].copy_from_slice(&hash);
}

/// The intents of a file up to its first broken record: key, insert hint,
/// time logged.
pub(super) fn read_file(path: &Path) -> io::Result<Vec<(DocKey, bool, i64)>> {
    let bytes = std::fs::read(path)?;
    Ok(decode(&bytes))
}

fn decode(bytes: &[u8]) -> Vec<(DocKey, bool, i64)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(rec) = record(bytes, at) {
        let (len, item) = rec;
        out.push(item);
        at += 12 + len;
    }
    out
}

fn record(bytes: &[u8], at: usize) -> Option<(usize, (DocKey, bool, i64))> {
    let head = bytes.get(at..at + 12)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let hash = u64::from_le_bytes(head[4..].try_into().ok()?);
    let p = bytes.get(at + 12..at + 12 + len)?;
    if xxh3_64(p) != hash || p.first() != Some(&VERSION) || p.len() < 14 {
        return None;
    }
    let insert = p[1] != 0;
    let at_ms = i64::from_le_bytes(p[2..10].try_into().ok()?);
    let ns_len = u32::from_le_bytes(p[10..14].try_into().ok()?) as usize;
    let ns = std::str::from_utf8(p.get(14..14 + ns_len)?)
        .ok()?
        .to_string();
    let rest = p.get(14 + ns_len..)?;
    let id_len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let id = rest.get(4..4 + id_len)?.to_vec();
    Some((len, (DocKey { ns, id }, insert, at_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, id: &[u8]) -> DocKey {
        DocKey {
            ns: ns.into(),
            id: id.to_vec(),
        }
    }

    #[test]
    fn records_read_back_up_to_a_torn_tail() {
        let mut buf = Vec::new();
        encode(&mut buf, &key("db.a", &[1, 2, 3]), true, 7);
        encode(&mut buf, &key("db.bb", &[]), false, -1);
        let whole = buf.len();
        encode(&mut buf, &key("db.c", &[9; 40]), false, 8);
        let got = decode(&buf);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (key("db.a", &[1, 2, 3]), true, 7));
        assert_eq!(got[1], (key("db.bb", &[]), false, -1));
        for cut in whole..buf.len() {
            assert_eq!(decode(&buf[..cut]).len(), 2, "cut at {cut}");
        }
        let mut flipped = buf.clone();
        flipped[whole + 20] ^= 1;
        assert_eq!(decode(&flipped).len(), 2, "a damaged record ends the file");
    }

    #[test]
    fn tickets_move_and_files_go_once_their_commit_is_done() {
        let dir = std::env::temp_dir().join(format!("dms-intents-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = IntentLog::open(&dir, "me").unwrap();
        let t = log
            .append(vec![key("db.c", &[1]), key("db.c", &[2])], false, 5)
            .unwrap();
        assert_eq!(t, vec![-1, -2]);
        assert!(matches!(log.mark(t[0], None), Marked::Logged));
        let taken = log.take();
        assert_eq!(taken.intents.len(), 2);
        assert!(taken.intents[0].ready && !taken.intents[1].ready);
        let file = taken.files[0].path.clone();
        assert_eq!(read_file(&file).unwrap().len(), 2);
        // Appends go on in a new file while the commit runs.
        let t3 = log.append(vec![key("db.c", &[3])], true, 6).unwrap();
        assert_eq!(log.pending_len(), 1);
        assert_eq!(log.unmoved_len(), 3, "taken ones count until moved");
        assert!(matches!(log.mark(t[1], Some(vec![4])), Marked::Held));
        let late = log.moved(taken, &[10, 11]);
        assert_eq!(log.unmoved_len(), 1);
        assert_eq!(late, vec![(11, Some(vec![4]))], "a mark during the move");
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            0,
            "emptied after its commit"
        );
        assert!(matches!(log.mark(t3[0], None), Marked::Logged));
        let taken = log.take();
        assert_eq!(taken.intents[0].ticket, t3[0]);
        let second = taken.files[0].path.clone();
        // The emptied file takes the appends while this commit runs.
        let t5 = log.append(vec![key("db.c", &[5])], false, 6).unwrap();
        assert_eq!(
            read_file(&file).unwrap(),
            vec![(key("db.c", &[5]), false, 6)],
            "reused, holding only the new record"
        );
        assert_ne!(second, file);
        // A failed commit puts them back, files included, before t5.
        log.restore(taken);
        assert_eq!(log.pending_len(), 2);
        assert_eq!(log.unmoved_len(), 2, "restored ones count once");
        let taken = log.take();
        assert_eq!(taken.files.len(), 2);
        assert_eq!(taken.intents[0].ticket, t3[0]);
        log.moved(taken, &[12, 13]);
        let t4 = log.append(vec![key("db.c", &[4])], false, 7).unwrap();
        let taken = log.take();
        log.moved(taken, &[14]);
        assert!(matches!(log.mark(t5[0], None), Marked::Seq(13, None)));
        assert!(matches!(log.mark(t4[0], None), Marked::Seq(14, None)));
        log.close();
        let left: Vec<_> = std::fs::read_dir(dir.join(DIR)).unwrap().collect();
        assert!(left.is_empty(), "nothing left after close: {left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_dead_holders_files_are_claimed_and_by_one_engine() {
        let dir = std::env::temp_dir().join(format!("dms-orphans-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let gone = IntentLog::open(&dir, "gone").unwrap();
        gone.append(vec![key("db.c", &[1])], false, 1).unwrap();
        let alive = IntentLog::open(&dir, "alive").unwrap();
        alive.append(vec![key("db.c", &[2])], false, 1).unwrap();
        let dead = |h: &str| h == "gone";
        let claimed = claim_orphans(&dir, "a", dead);
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].1, "gone");
        assert_eq!(read_file(&claimed[0].0).unwrap()[0].0, key("db.c", &[1]));
        assert!(
            claim_orphans(&dir, "b", dead).is_empty(),
            "already claimed by a"
        );
        // a died before importing it: b adopts it, still as gone's intents.
        let claimed = claim_orphans(&dir, "b", |h| h == "a" || h == "gone");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].1, "gone");
        // b's own claim, not imported yet, is found again by b.
        assert_eq!(claim_orphans(&dir, "b", |_| false).len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
