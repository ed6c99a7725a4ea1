//! How the files of a data directory are named: hive partitions
//! (`date=YYYY-MM-DD`, `stream=<stream>`), data files, the hidden names a file
//! has while it is written or not yet committed, and the archive's `_manifests/`
//! ledger. Readers skip every name that starts with `.` or `_`.

use std::path::{Path, PathBuf};

/// The archive's commit ledger, inside the archive root (not a partition: no `=`).
pub const MANIFEST_DIR: &str = "_manifests";
/// The advisory lock file inside [`MANIFEST_DIR`].
pub const LEDGER_LOCK: &str = ".lock";
/// Extension of every data file.
pub const PARQUET: &str = ".parquet";

const MS_PER_DAY: i64 = 86_400_000;

/// An alert channel's name (`admin/<site>`, `manufacturer/<vendor>`) as a
/// relative path (its outbox directory, its demo key's stem), safe whatever the
/// registry calls a site or vendor: any character but ASCII letters, digits,
/// `-` and `_` becomes `_`, and a part that needed that gets a short hash of
/// its exact spelling, so two names never share a path and none leaves its
/// directory.
pub fn channel_path(channel: &str) -> PathBuf {
    channel
        .split('/')
        .map(|part| {
            let safe: String = part
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if safe == part && !part.is_empty() {
                return safe;
            }
            // FNV-1a: stable across builds, unlike std's hasher.
            let h = part.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
            });
            format!("{safe}-{:08x}", h as u32)
        })
        .collect()
}

/// `path` with `.ext` added (not replacing what follows a `.` in the name).
pub fn with_suffix(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// UTC day number (days since 1970-01-01) of a millisecond timestamp.
pub fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MS_PER_DAY)
}

/// `YYYY-MM-DD` of a UTC day number.
pub fn date(day: i64) -> String {
    chrono::DateTime::from_timestamp(day.saturating_mul(86_400), 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

/// The UTC day number of a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.signed_duration_since(chrono::NaiveDate::default()).num_days())
}

/// `date=YYYY-MM-DD`: the partition directory of a dated table's day.
pub fn date_partition(day: i64) -> String {
    format!("date={}", date(day))
}

/// `date=YYYY-MM-DD/stream=<stream>`: an archive partition, relative to the archive root.
pub fn archive_partition(day: i64, stream: &str) -> String {
    format!("{}/stream={stream}", date_partition(day))
}

/// The value of a `key=value` partition directory name.
pub fn partition_value<'a>(dir_name: &'a str, key: &str) -> Option<&'a str> {
    dir_name.strip_prefix(key)?.strip_prefix('=')
}

/// Names readers skip: files being written or not yet committed (`.`), and the
/// ledger and other bookkeeping (`_`).
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// A visible Parquet data file.
pub fn is_data_file(name: &str) -> bool {
    name.ends_with(PARQUET) && !is_hidden(name)
}

/// The hidden name of a file while it is written or not yet committed.
pub fn temp_name(final_name: &str) -> String {
    format!(".{final_name}.tmp")
}

/// [`temp_name`] of a path's file name, in the same directory.
pub fn temp_path(final_path: &Path) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    final_path.with_file_name(temp_name(&name))
}

/// A writer id reduced to characters safe in file names.
pub fn sanitize_id(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// The prefix of every archive file one ingest writer makes in one run
/// (`part-<writer>-<start ms>`), unique so instances can share an archive.
pub fn archive_run_prefix(writer: &str, started_ms: i64) -> String {
    format!("part-{writer}-{started_ms}")
}

/// The `seq`th archive file of a run.
pub fn archive_file(run_prefix: &str, seq: u64) -> String {
    format!("{run_prefix}-{seq:06}{PARQUET}")
}

/// The hidden-name prefix of every uncommitted file of `writer`, for clean-up.
pub fn uncommitted_prefix(writer: &str) -> String {
    format!(".part-{writer}-")
}

/// Any writer's uncommitted archive file (see [`uncommitted_prefix`]).
pub fn is_uncommitted(name: &str) -> bool {
    name.starts_with(".part-") && name.ends_with(".tmp")
}

/// A file that replaces a partition's files when they are compacted.
pub fn compacted_file(writer: &str, ms: i64) -> String {
    format!("part-{writer}-{ms}{PARQUET}")
}

/// A backfilled archive file: one per day, stream and group of machines.
pub fn backfill_file(group: usize) -> String {
    format!("part-backfill-{group:04}{PARQUET}")
}

/// A manifest of the ledger.
pub fn manifest_file(writer: &str, ms: i64, seq: u64) -> String {
    format!("m-{writer}-{ms}-{seq:08}.json")
}

/// A new file of a dated table, unique across processes and calls.
pub fn table_file(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}{PARQUET}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `key=value` subdirectories of `dir`, sorted by value. A missing `dir` has none.
pub fn partitions(dir: &Path, key: &str) -> std::io::Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(value) = partition_value(&name, key)
            && e.file_type()?.is_dir()
        {
            out.push((value.to_string(), e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Every archive partition directory (`date=…/stream=…`) under `archive`, sorted.
pub fn archive_partitions(archive: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for (_, day) in partitions(archive, "date")? {
        out.extend(partitions(&day, "stream")?.into_iter().map(|(_, p)| p));
    }
    Ok(out)
}

/// True when `dir` holds a visible data file, at most `depth` directories down.
pub fn has_data_files(dir: &Path, depth: usize) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if is_hidden(&name) {
            return false;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            depth > 0 && has_data_files(&e.path(), depth - 1)
        } else {
            is_data_file(&name)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_paths_stay_inside_and_never_collide() {
        assert_eq!(channel_path("admin/st-anne"), PathBuf::from("admin/st-anne"));
        let odd = [
            "admin/a/b",
            "admin/a-b",
            "admin/a_b",
            "admin/..",
            "admin/St Anne's",
            "admin/st.anne",
        ];
        let paths: Vec<PathBuf> = odd.iter().map(|c| channel_path(c)).collect();
        for p in &paths {
            assert!(
                p.components().all(|c| matches!(c, std::path::Component::Normal(_))),
                "{p:?}"
            );
            assert!(
                p.to_str()
                    .unwrap()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c))
            );
        }
        let distinct: std::collections::BTreeSet<_> = paths.iter().collect();
        assert_eq!(distinct.len(), paths.len(), "{paths:?}");
        assert_eq!(
            with_suffix(&channel_path("admin/st.anne"), "key").extension().unwrap(),
            "key"
        );
    }

    #[test]
    fn partitions_are_utc_days() {
        assert_eq!(date_partition(0), "date=1970-01-01");
        let day = day_of(1_764_288_000_000 + 3_600_000); // 2025-11-28T01:00Z
        assert_eq!(archive_partition(day, "room"), "date=2025-11-28/stream=room");
        assert_eq!(parse_date("2025-11-28"), Some(day));
        assert_eq!(parse_date(&date(-1)), Some(-1), "before the epoch too");
        assert_eq!(day_of(-1), -1);
        assert_eq!(partition_value("date=2025-11-28", "date"), Some("2025-11-28"));
        assert_eq!(partition_value("dates=x", "date"), None);
    }

    #[test]
    fn hidden_names_are_never_data() {
        let f = archive_file(&archive_run_prefix("w1", 5), 7);
        assert_eq!(f, "part-w1-5-000007.parquet");
        assert!(is_data_file(&f));
        assert!(!is_data_file(&temp_name(&f)));
        assert!(temp_name(&f).starts_with(&uncommitted_prefix("w1")));
        assert!(is_uncommitted(&temp_name(&f)) && !is_uncommitted(&f));
        assert!(!is_data_file(MANIFEST_DIR) && is_hidden(MANIFEST_DIR));
        assert_ne!(table_file("alerts"), table_file("alerts"));
        assert_eq!(temp_path(Path::new("a/b.parquet")), Path::new("a/.b.parquet.tmp"));
    }

    #[test]
    fn lists_archive_partitions_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(archive_partition(3, "room"));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::create_dir_all(dir.path().join(MANIFEST_DIR)).unwrap();
        assert_eq!(archive_partitions(dir.path()).unwrap(), vec![p.clone()]);
        assert!(!has_data_files(dir.path(), 2));
        std::fs::write(p.join(temp_name("x.parquet")), b"").unwrap();
        assert!(!has_data_files(dir.path(), 2), "a hidden file is not data");
        std::fs::write(p.join("x.parquet"), b"").unwrap();
        assert!(has_data_files(dir.path(), 2));
        assert!(!has_data_files(dir.path(), 1), "too deep");
        assert!(partitions(&dir.path().join("missing"), "date").unwrap().is_empty());
    }
}
