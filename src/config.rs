//! Configuration: one struct, its defaults, `from_env`, and `validate`.
//!
//! Invariants:
//! - every setting has one environment variable and one JS option name, listed
//!   in [`SETTINGS`]; `docs/CONFIGURATION.md` and `index.d.ts` document each;
//! - a bad value is rejected with [`SyncError::Config`], naming the variable, the
//!   value (credentials redacted) and what is allowed; nothing is silently
//!   replaced by a default;
//! - URIs are kept whole here but only ever shown through [`redact_uri`].

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::SyncError;

/// `(environment variable, JS option)` for every setting.
pub const SETTINGS: &[(&str, &str)] = &[
    ("MONGODB_URI", "localUri"),
    ("MONGODB_ATLAS_URI", "atlasUri"),
    ("SYNC_ENABLED", "enabled"),
    ("SYNC_EXCLUDED_COLLECTIONS", "excludedCollections"),
    ("SYNC_DATA_DIR", "dataDir"),
    ("SYNC_BATCH_SIZE", "batchSize"),
    ("SYNC_WORKERS", "workers"),
    ("SYNC_MAX_RETRIES", "maxRetries"),
    ("SYNC_RETRY_BASE_MS", "retryBaseMs"),
    ("SYNC_RETRY_MAX_MS", "retryMaxMs"),
    ("SYNC_HEALTH_MAX_QUEUE", "healthMaxQueue"),
    ("SYNC_HEALTH_MIN_SUCCESS_RATE", "healthMinSuccessRate"),
    ("SYNC_LOG_LEVEL", "logLevel"),
    ("SYNC_ADMIN_TOKEN", "adminToken"),
    ("SYNC_JOURNAL_FSYNC", "journalFsync"),
    ("SYNC_TAKEOVER_GRACE_MS", "takeoverGraceMs"),
    ("SYNC_ATLAS_TIMEOUT_MS", "atlasTimeoutMs"),
];

/// The default for `MONGODB_URI`.
pub const DEFAULT_LOCAL_URI: &str = "mongodb://127.0.0.1:27017";
/// The default for `SYNC_DATA_DIR` (relative to the process's working directory).
pub const DEFAULT_DATA_DIR: &str = "dual-mongo-sync-data";

/// The default for `SYNC_RUNTIME_THREADS`.
pub const DEFAULT_RUNTIME_THREADS: usize = 1;

/// `SYNC_RUNTIME_THREADS` (env only: the runtime exists before any
/// `createSync`, and every engine in the process shares it): worker threads
/// of the runtime, 1..=64, default 1.
pub fn runtime_threads(v: Option<&str>) -> Result<usize, SyncError> {
    match v {
        None => Ok(DEFAULT_RUNTIME_THREADS),
        Some(v) => Ok(parse_int("SYNC_RUNTIME_THREADS", v, 1, 64)? as usize),
    }
}

/// Log levels accepted by `SYNC_LOG_LEVEL`.
pub const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Everything the engine can be told. Field docs name the env var and default.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// `MONGODB_URI`, default `mongodb://127.0.0.1:27017`: the local MongoDB, always primary.
    pub local_uri: String,
    /// `MONGODB_ATLAS_URI`, no default: the replica. Required while sync is enabled.
    pub atlas_uri: Option<String>,
    /// Where each URI came from, as its errors name it: the env var, or
    /// `option 'localUri'` / `option 'atlasUri'`.
    pub uri_names: (String, String),
    /// `SYNC_ENABLED`, default `true`. `false`: no Atlas connection, no journal.
    pub enabled: bool,
    /// `SYNC_EXCLUDED_COLLECTIONS`, default empty: comma list of `coll` (any
    /// database) or `db.coll` entries that are never replicated.
    pub excluded_collections: Vec<String>,
    /// `SYNC_DATA_DIR`, default `./dual-mongo-sync-data`: where the journal lives.
    pub data_dir: PathBuf,
    /// `SYNC_BATCH_SIZE`, default 500 (1..=10000): documents per Atlas write.
    pub batch_size: usize,
    /// `SYNC_WORKERS`, default 4 (1..=64): Atlas writes in flight at once.
    pub workers: usize,
    /// `SYNC_MAX_RETRIES`, default 10 (0..=1000): attempts for errors that are
    /// neither clearly transient nor clearly permanent, before dead-lettering.
    pub max_retries: u32,
    /// `SYNC_RETRY_BASE_MS`, default 100 (1..=60000): first backoff delay.
    pub retry_base_ms: u64,
    /// `SYNC_RETRY_MAX_MS`, default 30000 (>= base, <= 3600000): backoff ceiling.
    pub retry_max_ms: u64,
    /// `SYNC_HEALTH_MAX_QUEUE`, default 100: queue size at which health degrades.
    pub health_max_queue: u64,
    /// `SYNC_HEALTH_MIN_SUCCESS_RATE`, default 0.99 (0..=1).
    pub health_min_success_rate: f64,
    /// `SYNC_LOG_LEVEL`, default `info`: one of [`LOG_LEVELS`].
    pub log_level: String,
    /// `SYNC_ADMIN_TOKEN`, no default: bearer token for mutating endpoints (>= 16 chars).
    pub admin_token: Option<String>,
    /// `SYNC_JOURNAL_FSYNC`, default `false`: fsync every journal commit
    /// (survives power loss, not only process crashes; slower writes).
    pub journal_fsync: bool,
    /// `SYNC_TAKEOVER_GRACE_MS`, default 2000 (0..=60000): how long a new
    /// replicator waits after a previous one stopped heartbeating, so that a
    /// write the dead one had already sent to Atlas lands first.
    pub takeover_grace_ms: u64,
    /// `SYNC_ATLAS_TIMEOUT_MS`, default 30000 (100..=600000): how long one
    /// batch may take (local read plus Atlas write) before it counts as a
    /// transient failure and is retried; guards against a connection that
    /// accepts but never answers.
    pub atlas_timeout_ms: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("local_uri", &redact_uri(&self.local_uri))
            .field("atlas_uri", &self.atlas_uri.as_deref().map(redact_uri))
            .field("enabled", &self.enabled)
            .field("excluded_collections", &self.excluded_collections)
            .field("data_dir", &self.data_dir)
            .field("batch_size", &self.batch_size)
            .field("workers", &self.workers)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            local_uri: DEFAULT_LOCAL_URI.to_string(),
            atlas_uri: None,
            uri_names: ("MONGODB_URI".into(), "MONGODB_ATLAS_URI".into()),
            enabled: true,
            excluded_collections: Vec::new(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            batch_size: 500,
            workers: 4,
            max_retries: 10,
            retry_base_ms: 100,
            retry_max_ms: 30_000,
            health_max_queue: 100,
            health_min_success_rate: 0.99,
            log_level: "info".to_string(),
            admin_token: None,
            journal_fsync: false,
            takeover_grace_ms: 2000,
            atlas_timeout_ms: 30_000,
        }
    }
}

/// A raw setting: where it came from decides the name an error shows.
struct Source<'a> {
    env: &'a HashMap<String, String>,
    overrides: &'a HashMap<String, String>,
}

impl Source<'_> {
    /// The value for a setting and the name to blame for it: the JS option
    /// wins over the env var.
    fn get(&self, var: &'static str) -> Option<(String, String)> {
        let option = SETTINGS.iter().find(|(v, _)| *v == var).map(|(_, o)| *o)?;
        if let Some(v) = self.overrides.get(option) {
            return Some((format!("option '{option}'"), v.clone()));
        }
        self.env.get(var).map(|v| (var.to_string(), v.clone()))
    }
}

impl Config {
    /// Reads the process environment, then applies JS `overrides` (keyed by
    /// option name, values already stringified), then validates.
    pub fn from_env(overrides: &HashMap<String, String>) -> Result<Config, SyncError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Config::from_sources(&env, overrides)
    }

    /// [`Config::from_env`] with an explicit environment (for tests).
    pub fn from_sources(
        env: &HashMap<String, String>,
        overrides: &HashMap<String, String>,
    ) -> Result<Config, SyncError> {
        for key in overrides.keys() {
            if !SETTINGS.iter().any(|(_, o)| o == key) {
                let allowed: Vec<&str> = SETTINGS.iter().map(|(_, o)| *o).collect();
                return Err(SyncError::config(
                    "createSync options",
                    key,
                    &format!("one of: {}", allowed.join(", ")),
                ));
            }
        }
        let src = Source { env, overrides };
        let mut c = Config::default();
        if let Some((name, v)) = src.get("MONGODB_URI") {
            c.local_uri = parse_uri(&name, &v)?;
            c.uri_names.0 = name;
        }
        if let Some((name, v)) = src.get("SYNC_ENABLED") {
            c.enabled = parse_bool(&name, &v)?;
        }
        // Ignored while sync is disabled: switching sync off must work
        // whatever the Atlas setting holds (rollback level 1).
        if let Some((name, v)) = src.get("MONGODB_ATLAS_URI").filter(|_| c.enabled) {
            if !v.trim().is_empty() {
                c.atlas_uri = Some(parse_uri(&name, &v)?);
                c.uri_names.1 = name;
            }
        }
        if let Some((name, v)) = src.get("SYNC_EXCLUDED_COLLECTIONS") {
            c.excluded_collections = parse_collections(&name, &v)?;
        }
        if let Some((name, v)) = src.get("SYNC_DATA_DIR") {
            if v.trim().is_empty() {
                return Err(SyncError::config(&name, &v, "a directory path"));
            }
            c.data_dir = PathBuf::from(v);
        }
        if let Some((name, v)) = src.get("SYNC_BATCH_SIZE") {
            c.batch_size = parse_int(&name, &v, 1, 10_000)? as usize;
        }
        if let Some((name, v)) = src.get("SYNC_WORKERS") {
            c.workers = parse_int(&name, &v, 1, 64)? as usize;
        }
        if let Some((name, v)) = src.get("SYNC_MAX_RETRIES") {
            c.max_retries = parse_int(&name, &v, 0, 1000)? as u32;
        }
        if let Some((name, v)) = src.get("SYNC_RETRY_BASE_MS") {
            c.retry_base_ms = parse_int(&name, &v, 1, 60_000)?;
        }
        if let Some((name, v)) = src.get("SYNC_RETRY_MAX_MS") {
            c.retry_max_ms = parse_int(&name, &v, 1, 3_600_000)?;
        }
        if c.retry_max_ms < c.retry_base_ms {
            let (name, v) = src
                .get("SYNC_RETRY_MAX_MS")
                .unwrap_or(("SYNC_RETRY_MAX_MS".into(), c.retry_max_ms.to_string()));
            let allowed = format!("a number >= SYNC_RETRY_BASE_MS ({})", c.retry_base_ms);
            return Err(SyncError::config(&name, &v, &allowed));
        }
        if let Some((name, v)) = src.get("SYNC_HEALTH_MAX_QUEUE") {
            c.health_max_queue = parse_int(&name, &v, 1, u32::MAX as u64)?;
        }
        if let Some((name, v)) = src.get("SYNC_HEALTH_MIN_SUCCESS_RATE") {
            c.health_min_success_rate = parse_rate(&name, &v)?;
        }
        if let Some((name, v)) = src.get("SYNC_LOG_LEVEL") {
            let level = v.trim().to_ascii_lowercase();
            if !LOG_LEVELS.contains(&level.as_str()) {
                return Err(SyncError::config(
                    &name,
                    &v,
                    &format!("one of: {}", LOG_LEVELS.join(", ")),
                ));
            }
            c.log_level = level;
        }
        if let Some((name, v)) = src.get("SYNC_ADMIN_TOKEN") {
            if !v.is_empty() {
                if v.len() < 16 || v.chars().any(char::is_whitespace) {
                    // The token itself is a secret: never echo it.
                    return Err(SyncError::config(
                        &name,
                        "(hidden)",
                        "at least 16 characters without spaces",
                    ));
                }
                c.admin_token = Some(v);
            }
        }
        if let Some((name, v)) = src.get("SYNC_JOURNAL_FSYNC") {
            c.journal_fsync = parse_bool(&name, &v)?;
        }
        if let Some((name, v)) = src.get("SYNC_TAKEOVER_GRACE_MS") {
            c.takeover_grace_ms = parse_int(&name, &v, 0, 60_000)?;
        }
        if let Some((name, v)) = src.get("SYNC_ATLAS_TIMEOUT_MS") {
            c.atlas_timeout_ms = parse_int(&name, &v, 100, 600_000)?;
        }
        // Used by the binding when the addon loads; refused here so that a
        // bad value is reported rather than silently replaced.
        runtime_threads(env.get("SYNC_RUNTIME_THREADS").map(String::as_str))?;
        c.validate()?;
        Ok(c)
    }

    /// Cross-field rules.
    pub fn validate(&self) -> Result<(), SyncError> {
        if self.enabled && self.atlas_uri.is_none() {
            return Err(SyncError::config(
                "MONGODB_ATLAS_URI",
                "(not set)",
                "a mongodb:// or mongodb+srv:// URI while SYNC_ENABLED=true; \
                 set SYNC_ENABLED=false to write to the local MongoDB only",
            ));
        }
        Ok(())
    }

    /// Whether writes to `db.coll` are replicated.
    pub fn is_replicated(&self, db: &str, coll: &str) -> bool {
        self.enabled
            && !self
                .excluded_collections
                .iter()
                .any(|e| match e.split_once('.') {
                    Some((d, c)) => d == db && c == coll,
                    None => e == coll,
                })
    }
}

/// A comma list of `coll` or `db.coll` names (empty entries are skipped).
fn parse_collections(name: &str, v: &str) -> Result<Vec<String>, SyncError> {
    let allowed = "a comma list of collection names, each `coll` or `db.coll` (no spaces, `$` or empty parts)";
    let mut out = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad_part = |p: &str| p.is_empty() || p.contains(['$', ' ', '\0', '/', '\\', '"']);
        let bad = match entry.split_once('.') {
            Some((db, coll)) => bad_part(db) || bad_part(coll),
            None => bad_part(entry),
        };
        if bad {
            return Err(SyncError::config(name, v, allowed));
        }
        out.push(entry.to_string());
    }
    Ok(out)
}

fn parse_bool(name: &str, v: &str) -> Result<bool, SyncError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(SyncError::config(
            name,
            v,
            "true or false (also 1/0, yes/no, on/off)",
        )),
    }
}

fn parse_int(name: &str, v: &str, min: u64, max: u64) -> Result<u64, SyncError> {
    let allowed = format!("a whole number from {min} to {max}");
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(SyncError::config(name, v, &allowed)),
    }
}

fn parse_rate(name: &str, v: &str) -> Result<f64, SyncError> {
    match v.trim().parse::<f64>() {
        Ok(n) if (0.0..=1.0).contains(&n) => Ok(n),
        _ => Err(SyncError::config(
            name,
            v,
            "a number from 0 to 1, e.g. 0.99",
        )),
    }
}

/// Checks the shape of a connection string without resolving anything (the
/// driver parses it fully, with DNS for `mongodb+srv`, when connecting).
fn parse_uri(name: &str, v: &str) -> Result<String, SyncError> {
    let allowed =
        "a connection string like mongodb://host:27017/db or mongodb+srv://cluster.example.net";
    let v = v.trim();
    let rest = v
        .strip_prefix("mongodb://")
        .or_else(|| v.strip_prefix("mongodb+srv://"))
        .ok_or_else(|| SyncError::config(name, &redact_uri(v), allowed))?;
    let (_, after) = userinfo(rest);
    let hosts = after.split(['/', '?']).next().unwrap_or("");
    if hosts.is_empty() || hosts.split(',').any(|h| h.is_empty() || h.contains(' ')) {
        return Err(SyncError::config(name, &redact_uri(v), allowed));
    }
    Ok(v.to_string())
}

/// Replaces the password of a connection string (and any `password=` style
/// query value) with `***`, so the URI can be shown in logs and errors.
pub fn redact_uri(uri: &str) -> String {
    let (scheme, rest) = match uri.find("://") {
        Some(i) => (&uri[..i + 3], &uri[i + 3..]),
        None => ("", uri),
    };
    let (info, after) = userinfo(rest);
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let (hosts, tail) = after.split_at(end);
    let info = match info {
        Some(i) => match i.split_once(':') {
            Some((user, _)) => format!("{user}:***@"),
            None => format!("{i}@"),
        },
        None => String::new(),
    };
    let tail = redact_query(tail);
    format!("{scheme}{info}{hosts}{tail}")
}

/// Splits what follows `scheme://` into the user information and the rest.
/// It ends at the last `@` before the query: a password with an unescaped
/// `/` (which the driver refuses) must still be found to be hidden. A `?`
/// before any `/` is still in the authority: a password with an unescaped
/// `?` ends at the next `@` (an `@` in a query value after a host with no
/// path is then hidden too, which costs nothing).
pub(crate) fn userinfo(rest: &str) -> (Option<&str>, &str) {
    let query = rest.find('?').unwrap_or(rest.len());
    let at = match rest[..query].rfind('@') {
        Some(at) => Some(at),
        None if !rest[..query].contains('/') => rest[query..].find('@').map(|a| query + a),
        None => None,
    };
    match at {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    }
}

fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.contains("token")
        || k == "authmechanismproperties"
}

/// Replaces every occurrence of the given URIs' passwords in `text`.
pub fn scrub(text: &str, uris: &[&str]) -> String {
    let mut out = text.to_string();
    for uri in uris {
        if let Some(pw) = password_of(uri) {
            if !pw.is_empty() {
                out = out.replace(&pw, "***");
            }
        }
        out = out.replace(uri, &redact_uri(uri));
    }
    out
}

fn password_of(uri: &str) -> Option<String> {
    let rest = &uri[uri.find("://")? + 3..];
    let (info, _) = userinfo(rest);
    info?.split_once(':').map(|(_, p)| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn with_atlas(mut pairs: Vec<(&'static str, &'static str)>) -> HashMap<String, String> {
        pairs.push(("MONGODB_ATLAS_URI", "mongodb://atlas.example:27017"));
        env(&pairs)
    }

    #[test]
    fn defaults_need_atlas_uri_while_enabled() {
        let err = Config::from_sources(&env(&[]), &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("MONGODB_ATLAS_URI"), "{err}");
        let c = Config::from_sources(&env(&[("SYNC_ENABLED", "false")]), &HashMap::new()).unwrap();
        assert!(!c.enabled);
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.local_uri, DEFAULT_LOCAL_URI);
    }

    #[test]
    fn bad_number_names_variable_value_and_range() {
        let e = Config::from_sources(
            &with_atlas(vec![("SYNC_BATCH_SIZE", "abc")]),
            &HashMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("SYNC_BATCH_SIZE") && e.contains("abc") && e.contains("1 to 10000"),
            "{e}"
        );
        let e = Config::from_sources(&with_atlas(vec![("SYNC_WORKERS", "0")]), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("SYNC_WORKERS"), "{e}");
        let e = Config::from_sources(
            &with_atlas(vec![("SYNC_RUNTIME_THREADS", "two")]),
            &HashMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("SYNC_RUNTIME_THREADS") && e.contains("two") && e.contains("1 to 64"),
            "{e}"
        );
        assert_eq!(runtime_threads(None).unwrap(), DEFAULT_RUNTIME_THREADS);
        assert_eq!(runtime_threads(Some("4")).unwrap(), 4);
    }

    #[test]
    fn option_overrides_env_and_is_named_in_errors() {
        let mut o = HashMap::new();
        o.insert("batchSize".to_string(), "7".to_string());
        let c = Config::from_sources(&with_atlas(vec![("SYNC_BATCH_SIZE", "9")]), &o).unwrap();
        assert_eq!(c.batch_size, 7);
        o.insert("batchSize".to_string(), "-1".to_string());
        let e = Config::from_sources(&with_atlas(vec![]), &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("option 'batchSize'"), "{e}");
        let mut unknown = HashMap::new();
        unknown.insert("batchsize".to_string(), "1".to_string());
        let e = Config::from_sources(&with_atlas(vec![]), &unknown)
            .unwrap_err()
            .to_string();
        assert!(e.contains("batchsize") && e.contains("batchSize"), "{e}");
    }

    #[test]
    fn the_atlas_uri_is_ignored_while_sync_is_disabled() {
        let c = Config::from_sources(
            &env(&[
                ("SYNC_ENABLED", "false"),
                ("MONGODB_ATLAS_URI", "http://not-a-mongodb-uri"),
            ]),
            &HashMap::new(),
        )
        .unwrap();
        assert!(!c.enabled);
        assert_eq!(c.atlas_uri, None);
        // Enabled by an option over the environment's false: checked again.
        let on = HashMap::from([("enabled".to_string(), "true".to_string())]);
        let e = Config::from_sources(
            &env(&[
                ("SYNC_ENABLED", "false"),
                ("MONGODB_ATLAS_URI", "http://not-a-mongodb-uri"),
            ]),
            &on,
        )
        .unwrap_err();
        assert!(e.to_string().contains("MONGODB_ATLAS_URI"), "{e}");
    }

    #[test]
    fn malformed_uri_is_rejected_without_its_password() {
        let e = Config::from_sources(
            &env(&[("MONGODB_URI", "http://u:s3cret@host")]),
            &HashMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("MONGODB_URI") && !e.contains("s3cret"), "{e}");
        let e = Config::from_sources(
            &env(&[("MONGODB_ATLAS_URI", "mongodb://u:pw@/db")]),
            &HashMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("MONGODB_ATLAS_URI") && !e.contains(":pw@"),
            "{e}"
        );
    }

    #[test]
    fn retry_max_below_base_is_rejected() {
        let e = Config::from_sources(
            &with_atlas(vec![
                ("SYNC_RETRY_BASE_MS", "500"),
                ("SYNC_RETRY_MAX_MS", "100"),
            ]),
            &HashMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("SYNC_RETRY_MAX_MS") && e.contains("500"), "{e}");
    }

    #[test]
    fn admin_token_is_never_echoed() {
        let e = Config::from_sources(
            &with_atlas(vec![("SYNC_ADMIN_TOKEN", "short")]),
            &HashMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("SYNC_ADMIN_TOKEN") && !e.contains("short"),
            "{e}"
        );
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_uri("mongodb+srv://bob:hunter2@c0.example.net/app?retryWrites=true"),
            "mongodb+srv://bob:***@c0.example.net/app?retryWrites=true"
        );
        assert_eq!(
            redact_uri("mongodb://h:1/?password=x"),
            "mongodb://h:1/?password=***"
        );
        assert_eq!(
            redact_uri("mongodb://127.0.0.1:27017"),
            "mongodb://127.0.0.1:27017"
        );
        let uri = "mongodb://bob:hunter2@h";
        assert_eq!(
            scrub("failed hunter2 at mongodb://bob:hunter2@h", &[uri]),
            "failed *** at mongodb://bob:***@h"
        );
        // A password with an unescaped `/`, `@` or `?` is still found and hidden.
        for (uri, shown) in [
            ("mongodb://u:pa/ss@h/db", "mongodb://u:***@h/db"),
            (
                "mongodb://u:p@ss@h:1,h2/db?appName=a@b",
                "mongodb://u:***@h:1,h2/db?appName=a@b",
            ),
            (
                "mongodb+srv://u:a/b/c@cluster.example.net",
                "mongodb+srv://u:***@cluster.example.net",
            ),
            ("mongodb://u:p?ss@h/db", "mongodb://u:***@h/db"),
            (
                "mongodb://h:1/db?appName=a@b",
                "mongodb://h:1/db?appName=a@b",
            ),
        ] {
            assert_eq!(redact_uri(uri), shown);
            assert_eq!(
                scrub(&format!("bad: {uri}"), &[uri]),
                format!("bad: {shown}")
            );
        }
    }

    /// A connection string the driver refuses (a password with an unescaped
    /// `/`) is reported without its password.
    #[test]
    fn a_refused_uri_is_shown_without_its_password() {
        let e = parse_uri("MONGODB_ATLAS_URI", "mongodb://u:s3cr/et@").unwrap_err();
        assert!(!e.to_string().contains("s3cr"), "{e}");
    }

    /// Every setting rejects a malformed value, naming itself; a setting
    /// added to SETTINGS without a case here fails this test.
    #[test]
    fn every_setting_rejects_a_malformed_value() {
        let cases = [
            ("MONGODB_URI", "localhost:27017"),
            ("MONGODB_ATLAS_URI", "http://atlas"),
            ("SYNC_ENABLED", "maybe"),
            ("SYNC_EXCLUDED_COLLECTIONS", "orders,.logs"),
            ("SYNC_DATA_DIR", "  "),
            ("SYNC_BATCH_SIZE", "abc"),
            ("SYNC_WORKERS", "65"),
            ("SYNC_MAX_RETRIES", "-1"),
            ("SYNC_RETRY_BASE_MS", "0"),
            ("SYNC_RETRY_MAX_MS", "1.5"),
            ("SYNC_HEALTH_MAX_QUEUE", "0"),
            ("SYNC_HEALTH_MIN_SUCCESS_RATE", "99%"),
            ("SYNC_LOG_LEVEL", "verbose"),
            ("SYNC_ADMIN_TOKEN", "short"),
            ("SYNC_JOURNAL_FSYNC", "sometimes"),
            ("SYNC_TAKEOVER_GRACE_MS", "soon"),
            ("SYNC_ATLAS_TIMEOUT_MS", "10"),
        ];
        for (var, _) in SETTINGS {
            let (_, bad) = cases
                .iter()
                .find(|(v, _)| v == var)
                .unwrap_or_else(|| panic!("no malformed case for {var}"));
            let mut env = with_atlas(vec![]);
            env.insert(var.to_string(), bad.to_string());
            let e = Config::from_sources(&env, &HashMap::new())
                .map(|_| ())
                .expect_err(var);
            assert_eq!(e.code(), "ERR_SYNC_CONFIG");
            assert!(e.to_string().contains(var), "{var}: {e}");
        }
    }

    #[test]
    fn exclusions_match_collection_or_namespace() {
        let c = Config::from_sources(
            &with_atlas(vec![("SYNC_EXCLUDED_COLLECTIONS", "sessions, app.logs")]),
            &HashMap::new(),
        )
        .unwrap();
        assert!(!c.is_replicated("any", "sessions"));
        assert!(!c.is_replicated("app", "logs"));
        assert!(c.is_replicated("other", "logs"));
        assert!(c.is_replicated("app", "orders"));
    }
}
