//! Prints what one sequential journal append (and mark-ready) costs (an
//! append to the intent log), what it costs with `SYNC_JOURNAL_FSYNC` (a
//! SQLite commit with fsync, no intent log), and what SQLite's own
//! insert-and-commit costs, on this machine. A measurement for
//! BENCHMARKS.md, not a test:
//! `cargo bench --no-default-features --bench journal_append`.

use dual_mongo_sync::journal::{DocKey, Journal};
use std::time::Instant;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("dms-append-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let n = 5000u32;
    rt.block_on(async {
        for (fsync, what, n) in [
            (false, "intent log", n),
            (true, "SYNC_JOURNAL_FSYNC=true", n / 10),
        ] {
            let j = Journal::open(&dir, fsync, format!("bench-{fsync}")).unwrap();
            let t = Instant::now();
            for i in 0..n {
                let key = DocKey {
                    ns: "db.c".into(),
                    id: i.to_le_bytes().to_vec(),
                };
                let seqs = j.append(vec![key]).await.unwrap();
                j.mark_ready(seqs);
            }
            println!(
                "journal append + mark ready ({what}): {:.1} µs each",
                t.elapsed().as_micros() as f64 / n as f64
            );
            j.close();
        }
    });
    let conn = rusqlite::Connection::open(dir.join("bare.sqlite3")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch("CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB)")
        .unwrap();
    let t = Instant::now();
    for i in 0..n {
        conn.execute("INSERT INTO t (id) VALUES (?1)", [i.to_le_bytes().to_vec()])
            .unwrap();
    }
    println!(
        "bare SQLite insert + commit (WAL, synchronous=NORMAL): {:.1} µs each",
        t.elapsed().as_micros() as f64 / n as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
