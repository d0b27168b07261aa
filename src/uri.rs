//! Connection strings written for the official Node.js driver, read by the
//! Rust driver.
//!
//! An application's `MONGODB_URI` was written for `MongoClient`, and the Rust
//! driver refuses several options the Node driver takes (`socketTimeoutMS`,
//! `j`, `wtimeout`, Node's socket settings, ...), so `createSync` would fail
//! on a string the app has used for years. [`for_rust`] rewrites the query
//! the way the Node driver reads it:
//!
//! - spellings the Node driver keeps for old code become the Rust names:
//!   `j` and `fsync` become `journal`, `wtimeout` becomes `wtimeoutMS`,
//!   each given once, with the value the Node driver takes (the first of
//!   `fsync`, `j`, `journal`; `wtimeout` before `wtimeoutMS`);
//! - `socketTimeoutMS` is taken out and applied by the engine itself: a call
//!   to the local server that waits longer fails with a network timeout, as
//!   the Node driver's does (see `Engine::write`);
//! - options that only shape the Node driver's own socket or JS behaviour,
//!   which the Rust driver either always does or has no such knob for, are
//!   taken out and named once in the log: `timeoutMS` (which driver 7
//!   deprecated and ignores), `noDelay`, `family`, `autoSelectFamily`,
//!   `autoSelectFamilyAttemptTimeout`, `minHeartbeatFrequencyMS`,
//!   `monitorCommands`, `enableUtf8Validation`;
//! - `maxStalenessSeconds` without a non-primary `readPreference` selects
//!   nothing, and is taken out;
//! - `compressors` passes `snappy`, `zlib` and `zstd` (all built in, where
//!   the Node driver needs optional packages for two of them) and drops
//!   `none`; any other name is refused, as the Node driver refuses it;
//! - `tlsAllowInvalidHostnames=true` is refused with an error that names it:
//!   the Rust driver's TLS always checks host names, and accepting it would
//!   silently check more than asked or, mapped to `tlsInsecure`, less.
//!
//! Everything else goes to the Rust driver as written, which refuses what it
//! does not know (as the Node driver does).

use std::time::Duration;

use crate::config::{redact_uri, userinfo};
use crate::error::SyncError;

/// A connection string the Rust driver reads, and what the engine applies
/// itself.
#[derive(Debug, Clone, PartialEq)]
pub struct RustUri {
    pub uri: String,
    /// `socketTimeoutMS` (absent or 0: no limit).
    pub socket_timeout: Option<Duration>,
    /// Options taken out without effect, as written, for the log.
    pub not_applied: Vec<String>,
}

/// Options of the Node driver with no effect here (lower case).
const NODE_ONLY: &[&str] = &[
    "timeoutms",
    "nodelay",
    "family",
    "autoselectfamily",
    "autoselectfamilyattempttimeout",
    "minheartbeatfrequencyms",
    "monitorcommands",
    "enableutf8validation",
];

/// Compressors this build's driver speaks.
const COMPRESSORS: &[&str] = &["snappy", "zlib", "zstd"];

/// Rewrites `uri` (the value of `var`) for the Rust driver; see the module
/// documentation.
pub fn for_rust(var: &str, uri: &str) -> Result<RustUri, SyncError> {
    let bad = |why: &str| SyncError::config(var, &redact_uri(uri), why);
    let (scheme, rest) = match uri.find("://") {
        Some(i) => uri.split_at(i + 3),
        None => ("", uri),
    };
    let (info, after) = userinfo(rest);
    let Some((path, query)) = after.split_once('?') else {
        return Ok(RustUri {
            uri: uri.to_string(),
            socket_timeout: None,
            not_applied: Vec::new(),
        });
    };
    let pairs: Vec<(String, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    let secondary_reads = pairs
        .iter()
        .any(|(k, v)| k == "readpreference" && !v.eq_ignore_ascii_case("primary"));
    // The Node driver reads one journal value, from the first of fsync, j,
    // journal that is given, and one wtimeout, wtimeout before wtimeoutMS;
    // each goes to the Rust driver once, where the first of them stood.
    let first_of = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| *v))
    };
    let mut journal = first_of(&["fsync", "j", "journal"]);
    let mut wtimeout = first_of(&["wtimeout", "wtimeoutms"]);
    let mut out: Vec<String> = Vec::new();
    let mut socket_timeout = None;
    let mut not_applied = Vec::new();
    for ((key, value), raw) in pairs.iter().zip(query.split('&').filter(|p| !p.is_empty())) {
        let value = *value;
        match key.as_str() {
            "fsync" | "j" | "journal" => {
                if let Some(v) = journal.take() {
                    out.push(format!("journal={v}"));
                }
            }
            "wtimeout" | "wtimeoutms" => {
                if let Some(v) = wtimeout.take() {
                    out.push(format!("wtimeoutMS={v}"));
                }
            }
            "sockettimeoutms" => {
                // As the Node driver's parseInt: the leading digits.
                let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
                let ms: u64 = digits.parse().map_err(|_| {
                    bad("socketTimeoutMS to be a whole number of milliseconds (0: no limit)")
                })?;
                socket_timeout = (ms > 0).then(|| Duration::from_millis(ms));
            }
            "maxstalenessseconds" if !secondary_reads => not_applied.push(raw.to_string()),
            "tlsallowinvalidhostnames" if value.eq_ignore_ascii_case("false") => {}
            "tlsallowinvalidhostnames" => {
                return Err(bad(
                    "no tlsAllowInvalidHostnames=true: the Rust driver always checks the server's \
                     host name; fix the certificate, or set tlsInsecure=true to skip both checks",
                ))
            }
            "compressors" => {
                // As the Node driver reads it: decoded, every name known.
                let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                if value.is_empty() {
                    return Err(bad(
                        "compressors to name one or more of none, snappy, zlib, zstd",
                    ));
                }
                let mut keep = Vec::new();
                for c in value.split(',') {
                    match c {
                        "none" => {}
                        c if COMPRESSORS.contains(&c) => keep.push(c),
                        other => {
                            return Err(bad(&format!(
                                "compressors from none, snappy, zlib, zstd \
                                 (\"{other}\" is not a valid compression mechanism)"
                            )))
                        }
                    }
                }
                if !keep.is_empty() {
                    out.push(format!("compressors={}", keep.join(",")));
                }
            }
            k if NODE_ONLY.contains(&k) => not_applied.push(raw.to_string()),
            _ => out.push(raw.to_string()),
        }
    }
    let info = info.map(|i| format!("{i}@")).unwrap_or_default();
    let query = if out.is_empty() {
        String::new()
    } else {
        format!("?{}", out.join("&"))
    };
    Ok(RustUri {
        uri: format!("{scheme}{info}{path}{query}"),
        socket_timeout,
        not_applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rust(uri: &str) -> RustUri {
        for_rust("MONGODB_URI", uri).unwrap()
    }

    #[test]
    fn node_spellings_become_rust_ones() {
        let r = rust("mongodb://u:p@h:1/db?j=true&wtimeout=500&appName=bomba");
        assert_eq!(
            r.uri,
            "mongodb://u:p@h:1/db?journal=true&wtimeoutMS=500&appName=bomba"
        );
        assert_eq!(
            rust("mongodb://h/?fsync=true").uri,
            "mongodb://h/?journal=true"
        );
        assert_eq!(
            rust("mongodb://h/?fsync=false&w=1").uri,
            "mongodb://h/?journal=false&w=1"
        );
        // One value each, the one the Node driver's parseOptions keeps.
        assert_eq!(
            rust("mongodb://h/?wtimeout=1&wtimeoutMS=2").uri,
            "mongodb://h/?wtimeoutMS=1"
        );
        assert_eq!(
            rust("mongodb://h/?journal=false&j=true&fsync=true").uri,
            "mongodb://h/?journal=true"
        );
        assert_eq!(
            rust("mongodb://h/?j=true&journal=true").uri,
            "mongodb://h/?journal=true"
        );
    }

    #[test]
    fn socket_timeout_is_taken_out_and_kept() {
        let r = rust("mongodb://h:1/?socketTimeoutMS=45000&retryWrites=true");
        assert_eq!(r.uri, "mongodb://h:1/?retryWrites=true");
        assert_eq!(r.socket_timeout, Some(Duration::from_millis(45000)));
        assert_eq!(rust("mongodb://h/?SOCKETTIMEOUTMS=0").socket_timeout, None);
        assert_eq!(
            rust("mongodb://h/?socketTimeoutMS=4500.7").socket_timeout,
            Some(Duration::from_millis(4500))
        );
        let e = for_rust("MONGODB_URI", "mongodb://u:secret@h/?socketTimeoutMS=soon").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("socketTimeoutMS to be a whole number"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn node_only_options_are_named_not_sent() {
        let r = rust("mongodb://h/?timeoutMS=5&family=4&noDelay=true&w=majority");
        assert_eq!(r.uri, "mongodb://h/?w=majority");
        assert_eq!(
            r.not_applied,
            vec!["timeoutMS=5", "family=4", "noDelay=true"]
        );
        let r = rust("mongodb://h/?compressors=zstd,snappy,zlib");
        assert_eq!(r.uri, "mongodb://h/?compressors=zstd,snappy,zlib");
        assert!(r.not_applied.is_empty());
        assert_eq!(
            rust("mongodb://h/?compressors=none,zstd").uri,
            "mongodb://h/?compressors=zstd"
        );
        assert_eq!(rust("mongodb://h/?compressors=none").uri, "mongodb://h/");
        assert_eq!(
            rust("mongodb://h/?compressors=zstd%2Czlib").uri,
            "mongodb://h/?compressors=zstd,zlib"
        );
        let refused = |value: &str| {
            let e = for_rust(
                "MONGODB_URI",
                &format!("mongodb://u:secret@h/?compressors={value}"),
            )
            .unwrap_err()
            .to_string();
            assert!(!e.contains("secret"), "{e}");
            e
        };
        for (value, name) in [
            ("lz4", "lz4"),
            ("zstd,lz4", "lz4"),
            ("ZSTD", "ZSTD"),
            ("zstd,", ""),
            ("zstd,%20zlib", " zlib"),
        ] {
            let e = refused(value);
            assert!(
                e.contains(&format!("\"{name}\" is not a valid compression mechanism")),
                "{e}"
            );
        }
        assert!(refused("").contains("compressors to name one or more of"));
    }

    #[test]
    fn max_staleness_stays_only_with_secondary_reads() {
        assert_eq!(
            rust("mongodb://h/?maxStalenessSeconds=120").uri,
            "mongodb://h/"
        );
        let kept = "mongodb://h/?readPreference=secondary&maxStalenessSeconds=120";
        assert_eq!(rust(kept).uri, kept);
    }

    #[test]
    fn invalid_hostnames_are_refused_by_name() {
        assert_eq!(
            rust("mongodb+srv://c.example.net/?tlsAllowInvalidHostnames=false").uri,
            "mongodb+srv://c.example.net/"
        );
        let e = for_rust(
            "MONGODB_ATLAS_URI",
            "mongodb+srv://c.example.net/?tlsAllowInvalidHostnames=true",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("MONGODB_ATLAS_URI") && e.contains("tlsAllowInvalidHostnames"),
            "{e}"
        );
    }

    #[test]
    fn strings_without_a_query_pass_unchanged() {
        for u in [
            "mongodb://h:1",
            "mongodb://u:p%3Fq@h:1/db",
            "mongodb+srv://c.example.net/db",
        ] {
            assert_eq!(rust(u).uri, u);
        }
    }
}
