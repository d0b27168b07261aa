//! Prometheus text exposition (version 0.0.4) of the metrics JSON.

use serde_json::Value;
use std::fmt::Write;

/// `(name, type, help, path into the metrics JSON)`.
const SERIES: &[(&str, &str, &str, &[&str])] = &[
    (
        "leader",
        "gauge",
        "Whether this process replicates for its data directory (1) or not (0).",
        &["leader"],
    ),
    (
        "queue_size",
        "gauge",
        "Document changes waiting to be copied to Atlas.",
        &["queueSize"],
    ),
    (
        "oldest_pending_age_ms",
        "gauge",
        "Age of the oldest waiting change in milliseconds.",
        &["oldestPendingAgeMs"],
    ),
    (
        "captured_total",
        "counter",
        "Document changes recorded in the journal by this process.",
        &["captured"],
    ),
    (
        "synced_total",
        "counter",
        "Documents acknowledged by Atlas.",
        &["synced"],
    ),
    (
        "failed_total",
        "counter",
        "Failed document copy attempts.",
        &["failed"],
    ),
    (
        "retried_total",
        "counter",
        "Atlas batches retried after a failure.",
        &["retried"],
    ),
    (
        "dead_lettered_total",
        "counter",
        "Documents moved to the dead-letter store.",
        &["deadLettered"],
    ),
    (
        "dead_letter_size",
        "gauge",
        "Documents currently in the dead-letter store.",
        &["deadLetterSize"],
    ),
    (
        "batches_total",
        "counter",
        "Atlas batches applied.",
        &["batches"],
    ),
    (
        "success_rate",
        "gauge",
        "Share of document copies that succeeded.",
        &["successRate"],
    ),
    (
        "lag_p50_ms",
        "gauge",
        "Median replication lag in milliseconds (recent samples).",
        &["lagMs", "p50"],
    ),
    (
        "lag_p99_ms",
        "gauge",
        "99th percentile replication lag in milliseconds (recent samples).",
        &["lagMs", "p99"],
    ),
    (
        "throughput_per_second",
        "gauge",
        "Documents acknowledged by Atlas per second (last 10 s).",
        &["throughputPerSec"],
    ),
    (
        "full_sync_documents_done",
        "gauge",
        "Documents copied by the running or last full sync.",
        &["fullSync", "documentsDone"],
    ),
    (
        "full_sync_documents_total",
        "gauge",
        "Documents to copy in the running or last full sync.",
        &["fullSync", "documentsTotal"],
    ),
];

/// The replicator's figures (`observe::replication_json`): exported only by
/// the process they belong to. Another pm2 instance shows the leader's in
/// its JSON, but exporting them too would count them once per instance in
/// a sum, and reset them whenever its copy went stale.
const REPLICATION: &[&str] = &[
    "synced",
    "failed",
    "retried",
    "deadLettered",
    "batches",
    "successRate",
    "lagMs",
    "throughputPerSec",
];

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn num(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(*b as u8 as f64),
        _ => None,
    }
}

/// Renders the metrics JSON as Prometheus text with the `dual_sync_` prefix.
pub fn to_prometheus(metrics: &Value) -> String {
    let mut out = String::new();
    let borrowed = metrics.get("replicationFrom").and_then(Value::as_str) == Some("leader");
    for (name, kind, help, path) in SERIES {
        if borrowed && REPLICATION.contains(&path[0]) {
            continue;
        }
        if let Some(x) = num(at(metrics, path)) {
            let _ = writeln!(out, "# HELP dual_sync_{name} {help}");
            let _ = writeln!(out, "# TYPE dual_sync_{name} {kind}");
            let _ = writeln!(out, "dual_sync_{name} {x}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP dual_sync_connection_up Whether a connection is up (1) or down (0)."
    );
    let _ = writeln!(out, "# TYPE dual_sync_connection_up gauge");
    for server in ["local", "atlas"] {
        if let Some(state) = at(metrics, &["connections", server]).and_then(Value::as_str) {
            if state != "disabled" {
                let up = (state == "up") as u8;
                let _ = writeln!(out, "dual_sync_connection_up{{server=\"{server}\"}} {up}");
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP dual_sync_paused Whether replication is paused."
    );
    let _ = writeln!(out, "# TYPE dual_sync_paused gauge");
    let _ = writeln!(
        out,
        "dual_sync_paused {}",
        num(metrics.get("paused")).unwrap_or(0.0)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_value() {
        let v = serde_json::json!({"queueSize": 3, "lagMs": {"p50": 4, "p99": null}, "connections": {"local": "up", "atlas": "down"}, "paused": false});
        let t = to_prometheus(&v);
        assert!(
            t.contains("# TYPE dual_sync_queue_size gauge\ndual_sync_queue_size 3\n"),
            "{t}"
        );
        assert!(t.contains("dual_sync_lag_p50_ms 4"));
        assert!(!t.contains("lag_p99"), "null values are left out");
        assert!(t.contains("dual_sync_connection_up{server=\"atlas\"} 0"));
    }

    #[test]
    fn the_leaders_figures_are_exported_by_the_leader_only() {
        let v = |from: &str| {
            serde_json::json!({"leader": from == "this process", "queueSize": 3, "captured": 7,
                "synced": 5, "successRate": 1.0, "lagMs": {"p50": 4, "p99": 9},
                "replicationFrom": from})
        };
        let own = to_prometheus(&v("this process"));
        assert!(own.contains("dual_sync_synced_total 5"), "{own}");
        assert!(own.contains("dual_sync_lag_p99_ms 9") && own.contains("dual_sync_leader 1"));
        let other = to_prometheus(&v("leader"));
        for name in ["synced_total", "success_rate", "lag_p50_ms", "lag_p99_ms"] {
            assert!(!other.contains(name), "{name} in {other}");
        }
        assert!(
            other.contains("dual_sync_captured_total 7")
                && other.contains("dual_sync_queue_size 3")
        );
        assert!(other.contains("dual_sync_leader 0"));
    }
}
