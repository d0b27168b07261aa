//! File locks that tell processes sharing a data directory apart.
//!
//! Invariants:
//! - a live engine holds an exclusive lock on `owners/<owner>.lock` for its
//!   whole life; the OS drops it when the process dies, even on `kill -9`,
//!   so "lockable" means "that owner is dead";
//! - at most one engine per data directory holds `leader.lock` and runs the
//!   replicator; the others only append to the journal.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
}

/// Waits for an exclusive lock; it is released when the file is dropped.
pub fn exclusive(path: &Path) -> io::Result<File> {
    let f = open_lock_file(path)?;
    f.lock()?;
    Ok(f)
}

/// Try to take an exclusive lock: `Ok(Some(file))` if taken.
fn try_lock(path: &Path) -> io::Result<Option<File>> {
    let f = open_lock_file(path)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// This engine's liveness lock, and what it learned about other owners.
pub struct OwnerRegistry {
    dir: PathBuf,
    me: String,
    mine: Mutex<Option<File>>,
    /// Owners found dead, with when they were first seen dead.
    dead: Mutex<HashMap<String, Instant>>,
    /// Owners found alive, with when that was last checked.
    alive: Mutex<HashMap<String, Instant>>,
}

impl OwnerRegistry {
    pub fn register(dir: &Path, me: &str) -> io::Result<OwnerRegistry> {
        let dir = dir.join("owners");
        std::fs::create_dir_all(&dir)?;
        let f = try_lock(&dir.join(format!("{me}.lock")))?
            .ok_or_else(|| io::Error::other(format!("owner id {me} is already in use")))?;
        Ok(OwnerRegistry {
            dir,
            me: me.to_string(),
            mine: Mutex::new(Some(f)),
            dead: Mutex::new(HashMap::new()),
            alive: Mutex::new(HashMap::new()),
        })
    }

    /// For entries of `owner`: `None` while the owner may still be writing,
    /// `Some(since)` once it is known dead (since when it was seen dead).
    pub fn dead_since(&self, owner: &str) -> Option<Instant> {
        if owner == self.me {
            return None;
        }
        if let Some(t) = self.dead.lock().expect("owners poisoned").get(owner) {
            return Some(*t);
        }
        {
            let alive = self.alive.lock().expect("owners poisoned");
            if let Some(t) = alive.get(owner) {
                if t.elapsed().as_millis() < 500 {
                    return None;
                }
            }
        }
        let path = self.dir.join(format!("{owner}.lock"));
        let dead = match try_lock(&path) {
            Ok(Some(_f)) => true, // nobody holds it: the owner is gone
            Ok(None) => false,
            Err(_) => !path.exists(),
        };
        if dead {
            let _ = std::fs::remove_file(&path);
            let now = Instant::now();
            self.dead
                .lock()
                .expect("owners poisoned")
                .insert(owner.to_string(), now);
            Some(now)
        } else {
            self.alive
                .lock()
                .expect("owners poisoned")
                .insert(owner.to_string(), Instant::now());
            None
        }
    }

    /// Whether no other engine of the directory holds its liveness lock.
    pub fn none_alive_but_me(&self) -> bool {
        let Ok(list) = std::fs::read_dir(&self.dir) else {
            return true;
        };
        list.flatten().all(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(".lock") {
                Some(owner) if owner != self.me => !matches!(try_lock(&e.path()), Ok(None)),
                _ => true,
            }
        })
    }

    /// Gives up this engine's liveness lock (on close).
    pub fn release(&self) {
        if self.mine.lock().expect("owners poisoned").take().is_some() {
            let _ = std::fs::remove_file(self.dir.join(format!("{}.lock", self.me)));
        }
    }
}

/// Held by the one engine that runs the replicator for a data directory.
pub struct LeaderLock {
    _file: File,
}

impl LeaderLock {
    /// `Ok(None)` if another engine leads.
    pub fn try_acquire(dir: &Path) -> io::Result<Option<LeaderLock>> {
        Ok(try_lock(&dir.join("leader.lock"))?.map(|f| LeaderLock { _file: f }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_owner_is_dead_and_a_held_one_alive() {
        let dir = std::env::temp_dir().join(format!("dms-locks-{}", std::process::id()));
        let a = OwnerRegistry::register(&dir, "a").unwrap();
        let b = OwnerRegistry::register(&dir, "b").unwrap();
        let c = OwnerRegistry::register(&dir, "c").unwrap();
        assert!(a.dead_since("b").is_none());
        assert!(a.dead_since("a").is_none(), "self is never dead");
        assert!(!a.none_alive_but_me(), "b and c live");
        c.release();
        assert!(a.dead_since("c").is_some());
        drop(b);
        assert!(a.dead_since("never-existed").is_some());
        let l1 = LeaderLock::try_acquire(&dir).unwrap();
        assert!(l1.is_some());
        assert!(LeaderLock::try_acquire(&dir).unwrap().is_none());
        drop(l1);
        assert!(LeaderLock::try_acquire(&dir).unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
