//! Index definitions, copied to Atlas as a state, like documents: when an
//! index is created or dropped through the addon, or a full sync runs, the
//! collection is marked in the journal; the leader then makes Atlas's indexes
//! match the local ones and removes the mark once Atlas has them. A
//! collection dropped through the addon is marked the same way, and the
//! leader makes Atlas's collection match: dropped if the local one still is,
//! emptied of what local lacks if it was created again since.
//!
//! Invariants:
//! - a mark is committed before the call that made it resolves, so a crash
//!   after that cannot lose it; it is removed only if no newer call marked
//!   the collection meanwhile (compare-and-set on its counter);
//! - the copy reads both servers' index lists each time, so it does not
//!   matter in which order calls happened or how often it runs;
//! - an index that exists only on Atlas is dropped only when a drop through
//!   the addon asked for it (by name, or all of them): indexes made on Atlas
//!   by hand (for reporting, say) are left alone.

use std::collections::BTreeMap;

use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;
use serde::{Deserialize, Serialize};

use crate::error::SyncError;
use crate::journal::Journal;

/// The journal meta key holding the marks, by namespace.
pub const MARK_KEY: &str = "index_sync";

/// Woken by every mark this process commits: the copier of a leader in this
/// process starts at once (others' marks are found by its poll).
pub static MARKED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// "Every index" in a mark's drops.
pub const ALL: &str = "*";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Bumped by every call that marks the collection.
    pub n: u64,
    /// Index names dropped through the addon (or [`ALL`]).
    #[serde(default)]
    pub drop: Vec<String>,
    /// The collection was dropped through the addon.
    #[serde(default)]
    pub dropped: bool,
    /// The journal's last seq once the local drop was done: Atlas's
    /// collection is dropped only after every entry up to it was copied.
    #[serde(default)]
    pub before: i64,
    /// Atlas's collection was (being) dropped for this mark: a copy that
    /// stopped after that journals every local document again.
    #[serde(default)]
    pub atlas_dropped: bool,
    /// How often Atlas's collection was (being) re-created for other
    /// options (see `options`).
    #[serde(default)]
    pub recreates: u32,
    /// Atlas's collection was (being) dropped for a re-creation: every local
    /// `_id` is to be journaled again.
    #[serde(default)]
    pub rejournal: bool,
}

type Marks = BTreeMap<String, Mark>;

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn parse(raw: Option<&str>) -> Marks {
    raw.and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default()
}

/// Marks `ns` for an index copy, with the names dropped by the call, and
/// whether the call dropped the collection.
pub async fn mark(
    journal: &Journal,
    ns: &str,
    dropped: &[String],
    collection_dropped: bool,
) -> Result<(), SyncError> {
    mark_as(journal, ns, dropped, collection_dropped, false).await?;
    MARKED.notify_one();
    Ok(())
}

/// [`mark`], and with `rejournal` every local `_id` of `ns` is journaled
/// again once the mark is copied (see `options::rejournal`): a collection
/// renamed to `ns` holds documents no write to `ns` journaled. It does not
/// wake this process's copier: a mark committed before its command is
/// there for a crash (the copier's poll finds it), and a copy started then
/// is wasted work beside the command; the caller wakes the copier
/// ([`wake`]) once the command ran.
pub async fn mark_as(
    journal: &Journal,
    ns: &str,
    dropped: &[String],
    collection_dropped: bool,
    rejournal: bool,
) -> Result<(), SyncError> {
    let before = if collection_dropped {
        journal.max_seq().await?
    } else {
        0
    };
    loop {
        let cur = journal.get_meta(MARK_KEY).await?;
        let mut marks = parse(cur.as_deref());
        let m = marks.entry(ns.to_string()).or_default();
        // Never a number an earlier mark had, even one already removed: a
        // copier still holding that number must not remove this mark.
        m.n = (m.n + 1).max(now_us());
        for d in dropped {
            if !m.drop.contains(d) {
                m.drop.push(d.clone());
            }
        }
        m.dropped |= collection_dropped;
        m.rejournal |= rejournal;
        m.before = m.before.max(before);
        let new = serde_json::to_string(&marks).map_err(|e| SyncError::Internal(e.to_string()))?;
        if journal.swap_meta(MARK_KEY, cur, Some(new)).await? {
            return Ok(());
        }
    }
}

/// Wakes this process's copier for the marks just committed.
pub fn wake() {
    MARKED.notify_one();
}

/// The marks now.
pub async fn marks(journal: &Journal) -> Result<Vec<(String, Mark)>, SyncError> {
    let cur = journal.get_meta(MARK_KEY).await?;
    Ok(parse(cur.as_deref()).into_iter().collect())
}

/// Waits until none of `namespaces` is marked any more (the leader copied
/// them, or gave up), reading the marks every `every`, until `deadline` if
/// one is given; returns how many are still marked then (0: none).
pub async fn wait_unmarked(
    journal: &Journal,
    namespaces: &[String],
    every: std::time::Duration,
    deadline: Option<std::time::Instant>,
) -> Result<usize, SyncError> {
    loop {
        let left = marks(journal)
            .await?
            .iter()
            .filter(|(ns, _)| namespaces.contains(ns))
            .count();
        if left == 0 || deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Ok(left);
        }
        tokio::time::sleep(every).await;
    }
}

/// Removes the mark of `ns` if it is still the one copied (`n`).
pub async fn unmark(journal: &Journal, ns: &str, n: u64) -> Result<(), SyncError> {
    loop {
        let cur = journal.get_meta(MARK_KEY).await?;
        let mut marks = parse(cur.as_deref());
        if marks.get(ns).is_none_or(|m| m.n != n) {
            return Ok(());
        }
        marks.remove(ns);
        let new = if marks.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&marks).map_err(|e| SyncError::Internal(e.to_string()))?)
        };
        if journal.swap_meta(MARK_KEY, cur, new).await? {
            return Ok(());
        }
    }
}

/// A collection dropped through the addon, on Atlas. First every entry
/// journaled before the drop is copied (a batch of the old documents must
/// not land after Atlas's drop); returns `false` while some wait. Then, if
/// the local collection is still gone, Atlas's is dropped too, and if a
/// local one appeared meanwhile, all its documents are journaled again (one
/// copied before Atlas's drop went with it). If the local collection was
/// created again before this, with the same kind and fixed options as
/// Atlas's, the `_id`s only Atlas has are journaled, so the replicator
/// deletes them; with others, Atlas's is dropped as above (and created
/// with the new options by `options::copy`).
pub async fn copy_drop(
    journal: &Journal,
    local: &Client,
    atlas: &Client,
    ns: &str,
    mark: &Mark,
) -> Result<bool, SyncError> {
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    if journal
        .min_seq()
        .await?
        .is_some_and(|min| min <= mark.before)
    {
        return Ok(false);
    }
    if !mark.atlas_dropped {
        if let Some(now) = super::options::info(local, db, coll).await? {
            // Created again locally: Atlas keeps its collection and loses
            // what local lacks, unless the two differ in options that
            // cannot change (capped, collation, clustered), or in kind:
            // then Atlas's goes, like the local one went.
            let old = super::options::info(atlas, db, coll).await?;
            let same_shape = old.is_none_or(|o| {
                o.kind == now.kind
                    && !super::options::fixed_differ(&now.options, &o.options)
                    && !super::options::fixed_differ(&o.options, &now.options)
            });
            if same_shape {
                journal_ids(journal, atlas, ns, db, coll, Some(local)).await?;
                return Ok(true);
            }
        }
    }
    // Recorded before the drop is sent: if this stops after it, the next
    // attempt journals the local documents again whatever it finds.
    if !mark.atlas_dropped && !set_atlas_dropped(journal, ns, mark.n).await? {
        return Ok(false);
    }
    // No batch of it is copied between the drop and the creation of the
    // local collection's likeness, which would create a plain one.
    let held = super::options::hold(ns).await;
    let now = super::options::replace_on_atlas(local, atlas, db, coll).await?;
    drop(held);
    // A view has no documents of its own (a `find` on it reads its source).
    if now.is_some_and(|n| n.kind != "view") {
        journal_ids(journal, local, ns, db, coll, None).await?;
    }
    Ok(true)
}

/// Sets `atlas_dropped` on the mark of `ns` if it is still number `n`;
/// `false` if a newer call marked it meanwhile (the next pass starts over).
async fn set_atlas_dropped(journal: &Journal, ns: &str, n: u64) -> Result<bool, SyncError> {
    update_mark(journal, ns, n, |m| m.atlas_dropped = true).await
}

/// Changes the mark of `ns` with `f` if it is still number `n`; `false` if
/// a newer call marked it meanwhile.
pub(super) async fn update_mark(
    journal: &Journal,
    ns: &str,
    n: u64,
    f: impl Fn(&mut Mark),
) -> Result<bool, SyncError> {
    loop {
        let cur = journal.get_meta(MARK_KEY).await?;
        let mut marks = parse(cur.as_deref());
        match marks.get_mut(ns) {
            Some(m) if m.n == n => f(m),
            _ => return Ok(false),
        }
        let new = serde_json::to_string(&marks).map_err(|e| SyncError::Internal(e.to_string()))?;
        if journal.swap_meta(MARK_KEY, cur, Some(new)).await? {
            return Ok(true);
        }
    }
}

/// Journals the `_id`s of `source`'s `db.coll`, only those missing from
/// `unless_in` if given, a chunk at a time.
pub(super) async fn journal_ids(
    journal: &Journal,
    source: &Client,
    ns: &str,
    db: &str,
    coll: &str,
    unless_in: Option<&Client>,
) -> Result<(), SyncError> {
    use futures_util::TryStreamExt;
    const CHUNK: usize = 1000;
    let ids_of = |c: &Client| c.database(db).collection::<Document>(coll);
    let mut cursor = ids_of(source)
        .find(doc! {})
        .projection(doc! { "_id": 1 })
        .await?;
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        let next = cursor.try_next().await?;
        let end = next.is_none();
        if let Some(id) = next.and_then(|mut d| d.remove("_id")) {
            chunk.push(id);
        }
        if chunk.len() >= CHUNK || (end && !chunk.is_empty()) {
            let mut ids = std::mem::take(&mut chunk);
            if let Some(other) = unless_in {
                ids = super::missing_in(other, db, coll, ids).await?;
            }
            let keys = ids
                .iter()
                .map(|id| crate::capture::key_of(ns, id))
                .collect();
            journal.append_ready(keys).await?;
        }
        if end {
            return Ok(());
        }
    }
}

/// What one copy changed on Atlas.
#[derive(Debug, Default, PartialEq)]
pub struct Copied {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
}

/// Makes Atlas's indexes of `db.coll` match the local ones: creates what is
/// missing, re-creates what differs, drops what `drop` names and local lacks.
/// A collection missing locally changes nothing.
pub async fn copy(
    local: &Client,
    atlas: &Client,
    db: &str,
    coll: &str,
    drop: &[String],
) -> mongodb::error::Result<Copied> {
    let mut out = Copied::default();
    let Some(want) = list(local, db, coll).await? else {
        return Ok(out);
    };
    let mut have = list(atlas, db, coll).await?.unwrap_or_default();
    let mut gone = Vec::new();
    for h in &have {
        let name = name_of(h);
        if !copied(h) {
            continue;
        }
        let local_one = want.iter().find(|w| name_of(w) == name);
        let asked = drop.iter().any(|d| d == ALL || d == name);
        let stale = local_one.is_some_and(|w| !same(w, h));
        if (asked && local_one.is_none()) || stale {
            gone.push(name.to_string());
        }
    }
    for name in &gone {
        drop_index(atlas, db, coll, name).await?;
        out.dropped.push(name.clone());
    }
    have.retain(|h| !gone.iter().any(|g| g == name_of(h)));
    let create: Vec<&Document> = want
        .iter()
        .filter(|w| copied(w))
        // Present, or present under another name (Atlas refuses a second
        // index of the same definition).
        .filter(|w| !have.iter().any(|h| same(w, h)))
        .collect();
    // One at a time: an index Atlas refuses does not hold up the others.
    let mut failed = None;
    for w in create {
        let cmd = doc! { "createIndexes": coll, "indexes": [Bson::Document(spec_of(w))] };
        match atlas.database(db).run_command(cmd).await {
            Ok(_) => out.created.push(name_of(w).to_string()),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The local indexes Atlas lacks, and those it has under the same name with
/// another definition (names, `_id_` aside). An index Atlas has under
/// another name with the same definition counts as there; Atlas-only
/// indexes are no difference.
pub fn compare(local: &[Document], atlas: &[Document]) -> (Vec<String>, Vec<String>) {
    let (mut missing, mut different) = (Vec::new(), Vec::new());
    for w in local.iter().filter(|w| copied(w)) {
        match atlas.iter().find(|h| name_of(h) == name_of(w)) {
            Some(h) if !same(w, h) => different.push(name_of(w).to_string()),
            Some(_) => {}
            None if atlas.iter().any(|h| same(w, h)) => {}
            None => missing.push(name_of(w).to_string()),
        }
    }
    (missing, different)
}

/// The indexes of `db.coll`; `None` if the collection does not exist.
pub async fn list(
    client: &Client,
    db: &str,
    coll: &str,
) -> mongodb::error::Result<Option<Vec<Document>>> {
    match list_or_fail(client, db, coll, Document::new()).await {
        Ok(l) => Ok(Some(l)),
        // NamespaceNotFound; CommandNotSupportedOnView (a view has no
        // indexes of its own).
        Err(e) if matches!(code_of(&e), Some(26 | 166)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The indexes of `db.coll`; the server's error if it does not exist.
/// `options` go into the command (`maxTimeMS`, `comment`).
pub async fn list_or_fail(
    client: &Client,
    db: &str,
    coll: &str,
    options: Document,
) -> mongodb::error::Result<Vec<Document>> {
    let d = client.database(db);
    let mut cmd = doc! { "listIndexes": coll };
    cmd.extend(options);
    let reply = d.run_command(cmd).await?;
    let bad =
        |what: &str| mongodb::error::Error::custom(format!("listIndexes answered without {what}"));
    let cursor = reply.get_document("cursor").map_err(|_| bad("a cursor"))?;
    let mut out: Vec<Document> = batch(cursor, "firstBatch").ok_or_else(|| bad("firstBatch"))?;
    let mut id = cursor.get_i64("id").unwrap_or(0);
    while id != 0 {
        let more = d
            .run_command(doc! { "getMore": id, "collection": coll })
            .await?;
        let c = more.get_document("cursor").map_err(|_| bad("a cursor"))?;
        out.extend(batch(c, "nextBatch").ok_or_else(|| bad("nextBatch"))?);
        id = c.get_i64("id").unwrap_or(0);
    }
    Ok(out)
}

fn batch(cursor: &Document, field: &str) -> Option<Vec<Document>> {
    let a = cursor.get_array(field).ok()?;
    Some(a.iter().filter_map(|v| v.as_document().cloned()).collect())
}

async fn drop_index(
    client: &Client,
    db: &str,
    coll: &str,
    name: &str,
) -> mongodb::error::Result<()> {
    let cmd = doc! { "dropIndexes": coll, "index": name };
    match client.database(db).run_command(cmd).await {
        // Already gone (IndexNotFound, NamespaceNotFound): the state wanted.
        Err(e) if matches!(code_of(&e), Some(26 | 27)) => Ok(()),
        r => r.map(|_| ()),
    }
}

pub fn code_of(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// Whether an index is copied: not `_id`'s, nor a clustered collection's
/// (those come with the collection).
fn copied(spec: &Document) -> bool {
    name_of(spec) != "_id_" && !matches!(spec.get("clustered"), Some(Bson::Boolean(true)))
}

pub fn name_of(spec: &Document) -> &str {
    spec.get_str("name").unwrap_or("")
}

/// The definition to create: the listed one without what the server adds
/// of its own (the format version, the old `ns`).
fn spec_of(listed: &Document) -> Document {
    let mut s = listed.clone();
    s.remove("v");
    s.remove("ns");
    s
}

/// Fields a server fills in with defaults of its version: one side having
/// them and the other not is no difference.
fn server_default(field: &str) -> bool {
    field.ends_with("IndexVersion") || matches!(field, "default_language" | "language_override")
}

/// Whether two listed indexes have the same definition (names aside): the
/// same keys in the same order, and the same options.
pub fn same(a: &Document, b: &Document) -> bool {
    let empty = Document::new();
    let key = |d: &'_ Document| d.get_document("key").ok().unwrap_or(&empty).clone();
    if !same_keys(&key(a), &key(b)) {
        return false;
    }
    let skip = |f: &str| matches!(f, "v" | "ns" | "key" | "name");
    let fields = a.keys().chain(b.keys()).filter(|f| !skip(f));
    for f in fields {
        // Flags: one server lists `true`, another `1`; `false` is absent.
        if FLAGS.contains(&f.as_str()) {
            if a.get(f).is_some_and(truthy) != b.get(f).is_some_and(truthy) {
                return false;
            }
            continue;
        }
        match (a.get(f), b.get(f)) {
            (Some(x), Some(y)) if !same_value(x, y) => return false,
            (Some(_), None) | (None, Some(_)) if !server_default(f) => return false,
            _ => {}
        }
    }
    true
}

/// Index options that are flags.
const FLAGS: &[&str] = &["unique", "sparse", "hidden", "background", "dropDups"];

pub(super) fn truthy(v: &Bson) -> bool {
    match v {
        Bson::Boolean(b) => *b,
        Bson::Int32(i) => *i != 0,
        Bson::Int64(i) => *i != 0,
        Bson::Double(d) => *d != 0.0,
        Bson::Null => false,
        _ => true,
    }
}

/// Whether two key documents index the same fields the same way, in the
/// same order (`{a: 1}` and `{a: 1.0}` are the same index).
pub fn same_keys(a: &Document, b: &Document) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((fa, va), (fb, vb))| fa == fb && same_value(va, vb))
}

/// Values equal as MongoDB compares them for index options: numbers by
/// value whatever their type, documents field by field in any order.
pub(super) fn same_value(a: &Bson, b: &Bson) -> bool {
    fn num(v: &Bson) -> Option<f64> {
        match v {
            Bson::Int32(i) => Some(f64::from(*i)),
            Bson::Int64(i) => Some(*i as f64),
            Bson::Double(d) => Some(*d),
            _ => None,
        }
    }
    match (a, b) {
        (Bson::Document(x), Bson::Document(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        (Bson::Array(x), Bson::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_value(v, w))
        }
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_compare_keys_in_order_and_options_by_value() {
        let a = doc! { "v": 2, "key": { "a": 1, "b": -1 }, "name": "a_1_b_-1", "unique": true };
        let same_other_name =
            doc! { "v": 1, "key": { "a": 1.0, "b": -1_i64 }, "name": "x", "unique": true };
        assert!(same(&a, &same_other_name));
        let swapped = doc! { "key": { "b": -1, "a": 1 }, "name": "a_1_b_-1", "unique": true };
        assert!(!same(&a, &swapped), "key order matters");
        let unique_as_number = doc! { "key": { "a": 1, "b": -1 }, "name": "n", "unique": 1 };
        assert!(same(&a, &unique_as_number), "a flag as true or 1");
        let not_unique = doc! { "key": { "a": 1, "b": -1 }, "name": "a_1_b_-1" };
        assert!(
            !same(&a, &not_unique),
            "an option only one side has matters"
        );
        let ttl = |s: i64| doc! { "key": { "t": 1 }, "name": "t_1", "expireAfterSeconds": s };
        assert!(!same(&ttl(60), &ttl(61)));
        let text =
            doc! { "key": { "_fts": "text", "_ftsx": 1 }, "name": "t", "weights": { "s": 1 } };
        let mut text_listed = text.clone();
        text_listed.insert("textIndexVersion", 3);
        text_listed.insert("default_language", "english");
        assert!(same(&text, &text_listed), "defaults a server version adds");
        let p = |f: Document| doc! { "key": { "a": 1 }, "name": "a", "partialFilterExpression": f };
        assert!(same(
            &p(doc! { "x": 1, "y": 2 }),
            &p(doc! { "y": 2, "x": 1 })
        ));
        assert!(!same(&p(doc! { "x": 1 }), &p(doc! { "x": 2 })));
    }

    #[test]
    fn compare_lists_what_atlas_lacks_or_has_otherwise() {
        let i = |name: &str, key: Document| doc! { "v": 2, "key": key, "name": name };
        let local = vec![
            i("_id_", doc! { "_id": 1 }),
            i("a_1", doc! { "a": 1 }),
            i("b_1", doc! { "b": 1 }),
            i("c_1", doc! { "c": 1 }),
            i("d_1", doc! { "d": 1 }),
        ];
        let atlas = vec![
            i("a_1", doc! { "a": 1 }),
            i("b_1", doc! { "b": -1 }),
            i("by_c", doc! { "c": 1 }),
            i("hand_made", doc! { "z": 1 }),
        ];
        let (missing, different) = compare(&local, &atlas);
        assert_eq!(missing, vec!["d_1".to_string()]);
        assert_eq!(different, vec!["b_1".to_string()]);
    }

    #[test]
    fn the_created_definition_leaves_out_what_the_server_adds() {
        let listed = doc! { "v": 2, "key": { "a": 1 }, "name": "a_1", "ns": "d.c", "sparse": true };
        assert_eq!(
            spec_of(&listed),
            doc! { "key": { "a": 1 }, "name": "a_1", "sparse": true }
        );
    }

    #[test]
    fn marks_round_trip_and_bad_json_reads_as_none() {
        let mut m = Marks::new();
        m.insert(
            "d.c".into(),
            Mark {
                n: 3,
                drop: vec!["a_1".into()],
                dropped: true,
                before: 12,
                atlas_dropped: false,
                recreates: 1,
                rejournal: true,
            },
        );
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(parse(Some(&s)), m);
        assert!(parse(Some("{not json")).is_empty());
        assert!(parse(None).is_empty());
    }

    /// A rename's target asks for every local document to be journaled
    /// again; the second mark of the call (and any other mark before the
    /// copy) keeps that, as it keeps a drop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rejournal_mark_is_kept_by_later_marks() {
        let dir = std::env::temp_dir().join(format!("dms-rejournal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let j = Journal::open(&dir, false, "me".into()).unwrap();
        mark_as(&j, "d.to", &[], true, true).await.unwrap();
        mark(&j, "d.to", &["a_1".into()], false).await.unwrap();
        let (_, m) = marks(&j)
            .await
            .unwrap()
            .into_iter()
            .find(|(ns, _)| ns == "d.to")
            .unwrap();
        assert!(m.rejournal && m.dropped);
        assert_eq!(m.drop, vec!["a_1".to_string()]);
        mark(&j, "d.from", &[], true).await.unwrap();
        let (_, from) = marks(&j)
            .await
            .unwrap()
            .into_iter()
            .find(|(ns, _)| ns == "d.from")
            .unwrap();
        assert!(
            from.dropped && !from.rejournal,
            "a plain drop journals nothing again"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
