//! Observation: counters, lag percentiles, health checks, Prometheus text.
//!
//! Invariants:
//! - counting never blocks the write path: counters are atomics, the lag and
//!   throughput windows take a short uncontended lock off the write path;
//! - nothing here holds or prints a credential: connection states are
//!   booleans and the last error is scrubbed before it is stored.

mod prometheus;

pub use prometheus::to_prometheus;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

use crate::config::Config;

const LAG_SAMPLES: usize = 8192;
/// The success rate covers the final outcomes of this many recent documents.
const OUTCOME_WINDOW: u64 = 10_000;
const RATE_WINDOW_SECS: u64 = 10;

/// Per second over the last `RATE_WINDOW_SECS` whole seconds before `now`
/// (fewer in the first seconds), from `(second, count)` pairs: the current
/// second is still counting.
fn rate_before(per_sec: &VecDeque<(u64, u64)>, now: u64) -> f64 {
    let total: u64 = per_sec
        .iter()
        .filter(|(s, _)| *s < now && now - *s <= RATE_WINDOW_SECS)
        .map(|(_, n)| n)
        .sum();
    let window = RATE_WINDOW_SECS.min(now).max(1);
    total as f64 / window as f64
}

/// Live counters of one engine.
#[derive(Default)]
pub struct Metrics {
    /// Document changes recorded in the journal by this process.
    pub captured: AtomicU64,
    /// Documents Atlas acknowledged.
    pub synced: AtomicU64,
    /// Document copy attempts that failed (each attempt counts; most are
    /// retried and later succeed).
    pub failed: AtomicU64,
    /// Batches retried after a failure.
    pub retried: AtomicU64,
    /// Documents moved to the dead-letter store.
    pub dead_lettered: AtomicU64,
    /// Atlas batches applied.
    pub batches: AtomicU64,
    pub local_up: AtomicBool,
    pub atlas_up: AtomicBool,
    pub is_leader: AtomicBool,
    pub paused: AtomicBool,
    lag_ms: Mutex<VecDeque<u64>>,
    /// Recent final outcomes: (reached Atlas?, how many documents).
    outcomes: Mutex<VecDeque<(bool, u64)>>,
    synced_per_sec: Mutex<VecDeque<(u64, u64)>>,
    last_error: Mutex<Option<(String, i64)>>,
    started: once_cell::sync::OnceCell<Instant>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics::default();
        let _ = m.started.set(Instant::now());
        m
    }

    fn elapsed_secs(&self) -> u64 {
        self.started
            .get()
            .map(|s| s.elapsed().as_secs())
            .unwrap_or(0)
    }

    /// Records documents acknowledged by Atlas and how long each waited.
    pub fn record_synced(&self, lags_ms: &[u64]) {
        self.synced.fetch_add(lags_ms.len() as u64, Relaxed);
        self.record_outcome(true, lags_ms.len() as u64);
        let mut lag = self.lag_ms.lock().expect("metrics poisoned");
        for l in lags_ms {
            if lag.len() == LAG_SAMPLES {
                lag.pop_front();
            }
            lag.push_back(*l);
        }
        drop(lag);
        let now = self.elapsed_secs();
        let mut rate = self.synced_per_sec.lock().expect("metrics poisoned");
        match rate.back_mut() {
            Some((s, n)) if *s == now => *n += lags_ms.len() as u64,
            _ => rate.push_back((now, lags_ms.len() as u64)),
        }
        while rate
            .front()
            .is_some_and(|(s, _)| now.saturating_sub(*s) > RATE_WINDOW_SECS)
        {
            rate.pop_front();
        }
    }

    /// Records documents given up on (dead-lettered).
    pub fn record_dead_lettered(&self, n: u64) {
        self.dead_lettered.fetch_add(n, Relaxed);
        self.record_outcome(false, n);
    }

    /// Takes back up to `n` dead-letter outcomes, the newest first: those
    /// documents were put back in the queue (`retryDeadLetters`), so they are
    /// no longer given up on; each counts again by how its copy ends.
    pub fn forgive_dead_lettered(&self, mut n: u64) {
        let mut o = self.outcomes.lock().expect("metrics poisoned");
        for (ok, count) in o.iter_mut().rev() {
            if n == 0 {
                break;
            }
            if !*ok {
                let k = n.min(*count);
                *count -= k;
                n -= k;
            }
        }
        o.retain(|(_, count)| *count > 0);
    }

    fn record_outcome(&self, ok: bool, n: u64) {
        if n == 0 {
            return;
        }
        let mut o = self.outcomes.lock().expect("metrics poisoned");
        o.push_back((ok, n));
        let mut total: u64 = o.iter().map(|(_, n)| n).sum();
        while total > OUTCOME_WINDOW && o.len() > 1 {
            total -= o.pop_front().map(|(_, n)| n).unwrap_or(0);
        }
    }

    /// Stores the last error (already free of credentials).
    pub fn record_error(&self, message: String) {
        *self.last_error.lock().expect("metrics poisoned") =
            Some((message, crate::journal::now_ms()));
    }

    /// Lag percentiles (ms) over the most recent samples.
    pub fn lag_percentiles(&self) -> (Option<u64>, Option<u64>) {
        let mut v: Vec<u64> = self
            .lag_ms
            .lock()
            .expect("metrics poisoned")
            .iter()
            .copied()
            .collect();
        if v.is_empty() {
            return (None, None);
        }
        v.sort_unstable();
        let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
        (Some(at(0.50)), Some(at(0.99)))
    }

    /// Documents per second acknowledged by Atlas over the last seconds.
    pub fn throughput(&self) -> f64 {
        let rate = self.synced_per_sec.lock().expect("metrics poisoned");
        rate_before(&rate, self.elapsed_secs())
    }

    /// Share of recent documents that reached Atlas rather than the
    /// dead-letter store (1.0 before any). Retried attempts are not failures:
    /// an outage delays documents, it does not lose them.
    pub fn success_rate(&self) -> f64 {
        let o = self.outcomes.lock().expect("metrics poisoned");
        let ok: u64 = o.iter().filter(|(k, _)| *k).map(|(_, n)| n).sum();
        let all: u64 = o.iter().map(|(_, n)| n).sum();
        if all == 0 {
            1.0
        } else {
            ok as f64 / all as f64
        }
    }

    pub fn last_error(&self) -> Option<(String, i64)> {
        self.last_error.lock().expect("metrics poisoned").clone()
    }
}

/// Queue figures read from the journal when metrics are asked for.
#[derive(Debug, Default, Clone)]
pub struct QueueView {
    pub size: u64,
    pub oldest_age_ms: Option<i64>,
    pub dead_letters: u64,
}

/// Full-sync progress, shown in metrics and `sync.fullSyncStatus()`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FullSyncView {
    pub id: Option<String>,
    /// `idle`, `running`, `done` or `failed`.
    pub state: String,
    /// `copy`, `extras` (removing Atlas-only documents) or `drain` (waiting
    /// for the replicator), while running.
    pub phase: Option<String>,
    pub collections_done: u64,
    pub collections_total: u64,
    pub documents_done: u64,
    pub documents_total: u64,
    pub rate_per_sec: f64,
    pub error: Option<String>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

impl Default for FullSyncView {
    fn default() -> Self {
        FullSyncView {
            id: None,
            state: "idle".to_string(),
            phase: None,
            collections_done: 0,
            collections_total: 0,
            documents_done: 0,
            documents_total: 0,
            rate_per_sec: 0.0,
            error: None,
            started_at_ms: None,
            finished_at_ms: None,
        }
    }
}

/// The figures only the replicator has (so only the leader of a data
/// directory): the leader publishes them to the journal every second, and
/// the other processes (pm2 instances, the CLI) show the leader's.
pub fn replication_json(m: &Metrics) -> Value {
    let (p50, p99) = m.lag_percentiles();
    json!({
        "synced": m.synced.load(Relaxed),
        "failed": m.failed.load(Relaxed),
        "retried": m.retried.load(Relaxed),
        "deadLettered": m.dead_lettered.load(Relaxed),
        "batches": m.batches.load(Relaxed),
        "successRate": m.success_rate(),
        "lagMs": { "p50": p50, "p99": p99 },
        "throughputPerSec": m.throughput(),
        "lastError": m.last_error().map(|(message, at)| json!({ "message": message, "atMs": at })),
    })
}

/// The JSON of `sync.metrics()`: this process's own figures, with the
/// replicator's from `replication` (this process's, or the leader's, see
/// [`replication_json`]; `from` says which).
pub fn metrics_json(
    m: &Metrics,
    cfg: &Config,
    q: &QueueView,
    full: &FullSyncView,
    replication: &Value,
    from: &str,
) -> Value {
    let mut v = json!({
        "enabled": cfg.enabled,
        "paused": m.paused.load(Relaxed),
        "leader": m.is_leader.load(Relaxed),
        "queueSize": q.size,
        "oldestPendingAgeMs": q.oldest_age_ms,
        "captured": m.captured.load(Relaxed),
        "deadLetterSize": q.dead_letters,
        "replicationFrom": from,
        "connections": {
            "local": if m.local_up.load(Relaxed) { "up" } else { "down" },
            "atlas": if !cfg.enabled { "disabled" } else if m.atlas_up.load(Relaxed) { "up" } else { "down" },
        },
        "fullSync": full,
    });
    if let (Some(to), Some(from)) = (v.as_object_mut(), replication.as_object()) {
        for (k, x) in from {
            to.insert(k.clone(), x.clone());
        }
    }
    // The newer of this process's own last error and the replicator's.
    let own = m
        .last_error()
        .map(|(message, at)| json!({ "message": message, "atMs": at }));
    let at = |e: &Value| e.get("atMs").and_then(Value::as_i64).unwrap_or(0);
    if let Some(own) = own {
        if v.get("lastError")
            .is_none_or(|e| e.is_null() || at(e) < at(&own))
        {
            v["lastError"] = own;
        }
    }
    v
}

/// The JSON of `sync.health()`: each of the seed's success criteria as a
/// check with its value, threshold and verdict. `success_rate` is the
/// replicator's (see [`replication_json`]).
pub fn health_json(
    m: &Metrics,
    cfg: &Config,
    q: &QueueView,
    journal_ok: bool,
    success_rate: f64,
) -> Value {
    let local = m.local_up.load(Relaxed);
    let atlas = !cfg.enabled || m.atlas_up.load(Relaxed);
    let queue_ok = !cfg.enabled || q.size < cfg.health_max_queue;
    let rate = success_rate;
    let rate_ok = !cfg.enabled || rate > cfg.health_min_success_rate || rate >= 1.0;
    let status = if !local || !journal_ok {
        "unhealthy"
    } else if !atlas || !queue_ok || !rate_ok {
        "degraded"
    } else {
        "healthy"
    };
    json!({
        "status": status,
        "checks": {
            "localConnection": { "pass": local, "value": if local { "up" } else { "down" } },
            "atlasConnection": {
                "pass": atlas,
                "value": if !cfg.enabled { "disabled" } else if atlas { "up" } else { "down" },
            },
            "queueSize": { "pass": queue_ok, "value": q.size, "threshold": cfg.health_max_queue },
            "successRate": { "pass": rate_ok, "value": rate, "threshold": cfg.health_min_success_rate },
            "journal": { "pass": journal_ok, "value": if !cfg.enabled { "disabled" } else if journal_ok { "ok" } else { "failing" } },
            "deadLetters": { "pass": true, "value": q.dead_letters },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_counts_as_many_seconds_as_it_divides_by() {
        // A steady 1000 per second, seconds 0..=now (now still counting).
        let steady = |now: u64| (0..=now).map(|s| (s, 1000)).collect::<VecDeque<_>>();
        for now in [1, 5, 9, 10, 11, 20, 100] {
            let mut per_sec = steady(now);
            // What record_synced keeps: up to RATE_WINDOW_SECS back.
            per_sec.retain(|(s, _)| now - s <= RATE_WINDOW_SECS);
            assert_eq!(rate_before(&per_sec, now), 1000.0, "at second {now}");
        }
        assert_eq!(rate_before(&VecDeque::new(), 0), 0.0);
        // Seconds with nothing synced count as zero.
        let sparse = VecDeque::from([(10, 500), (15, 500)]);
        assert_eq!(rate_before(&sparse, 20), 100.0);
    }

    #[test]
    fn percentiles_and_rate() {
        let m = Metrics::new();
        assert_eq!(m.success_rate(), 1.0);
        m.record_synced(&(1..=100).collect::<Vec<_>>());
        let (p50, p99) = m.lag_percentiles();
        assert_eq!(p50, Some(51));
        assert_eq!(p99, Some(99));
        m.failed.store(100, Relaxed);
        assert_eq!(m.success_rate(), 1.0, "retried attempts are not failures");
        m.record_dead_lettered(100);
        assert!((m.success_rate() - 0.5).abs() < 1e-9);
        m.forgive_dead_lettered(60);
        assert!(
            (m.success_rate() - 100.0 / 140.0).abs() < 1e-9,
            "requeued: not given up on"
        );
        m.forgive_dead_lettered(1_000);
        assert_eq!(m.success_rate(), 1.0);
        m.record_dead_lettered(100);
        m.record_synced(&vec![1; 20_000]);
        assert_eq!(m.success_rate(), 1.0, "old outcomes leave the window");
    }

    #[test]
    fn health_degrades_on_queue_and_fails_on_local() {
        let m = Metrics::new();
        let cfg = Config {
            atlas_uri: Some("mongodb://a".into()),
            ..Config::default()
        };
        m.local_up.store(true, Relaxed);
        m.atlas_up.store(true, Relaxed);
        let q = QueueView {
            size: 5,
            ..Default::default()
        };
        assert_eq!(
            health_json(&m, &cfg, &q, true, m.success_rate())["status"],
            "healthy"
        );
        let q = QueueView {
            size: 100,
            ..Default::default()
        };
        let h = health_json(&m, &cfg, &q, true, m.success_rate());
        assert_eq!(h["status"], "degraded");
        assert_eq!(h["checks"]["queueSize"]["pass"], false);
        m.local_up.store(false, Relaxed);
        assert_eq!(
            health_json(&m, &cfg, &q, true, m.success_rate())["status"],
            "unhealthy"
        );
    }
}
