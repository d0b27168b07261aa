//! The Atlas client, replaceable. The driver has no socket timeout: an
//! operation on a connection that went silent (a network blackhole) waits
//! forever and keeps its pooled connection. When a batch times out, the
//! client is replaced by a fresh one, so new work gets new connections while
//! the stuck ones die with their sockets.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use mongodb::options::ClientOptions;
use mongodb::Client;

/// At most one replacement per this interval.
const MIN_RECYCLE_GAP: Duration = Duration::from_secs(5);

pub struct Atlas {
    options: ClientOptions,
    client: RwLock<Client>,
    last_recycle: Mutex<Option<Instant>>,
}

impl Atlas {
    /// The client is created, and replaced, in the replicator's runtime.
    pub fn new(options: ClientOptions) -> mongodb::error::Result<Atlas> {
        let client = super::client(options.clone())?;
        Ok(Atlas {
            options,
            client: RwLock::new(client),
            last_recycle: Mutex::new(None),
        })
    }

    /// The current client (cheap: a handle).
    pub fn get(&self) -> Client {
        self.client.read().expect("atlas client poisoned").clone()
    }

    /// Replaces the client after a timeout; the old one is shut down in the
    /// background without waiting for its stuck operations.
    pub fn recycle(&self) {
        let mut last = self.last_recycle.lock().expect("atlas client poisoned");
        if last.is_some_and(|t| t.elapsed() < MIN_RECYCLE_GAP) {
            return;
        }
        // Whoever calls (the connection watcher runs on the addon's
        // runtime), the new client's tasks belong to the replicator's.
        let Ok(fresh) = super::client(self.options.clone()) else {
            return;
        };
        *last = Some(Instant::now());
        let old = std::mem::replace(
            &mut *self.client.write().expect("atlas client poisoned"),
            fresh,
        );
        tracing::info!(
            "replaced the Atlas client after a timeout (stuck connections are abandoned)"
        );
        super::runtime().spawn(async move {
            old.shutdown().immediate(true).await;
        });
    }
}
