//! The archive's commit log. A checkpoint writes its Parquet files under hidden
//! temporary names, then one manifest naming those files together with the Kafka
//! offsets and device sequence numbers they cover, then renames the files into
//! view. The manifest is the commit point: after a crash, files it names are
//! rolled forward, files it does not name are deleted, and consumption resumes
//! after its offsets. That makes the archive effectively exactly-once whatever
//! Kafka's own committed offsets say.

use crate::channels::Stream;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Directory of manifests inside the archive root (not a partition: no `=` in it).
pub const MANIFEST_DIR: &str = "_manifests";
/// Commits between two consolidations of the ledger.
const CONSOLIDATE_EVERY: u64 = 256;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Writer instance that made it.
    pub writer: String,
    pub created_ms: i64,
    /// Data files, relative to the archive root, under their final names.
    pub files: Vec<String>,
    /// `topic:partition` → next offset to read.
    pub offsets: BTreeMap<String, i64>,
    /// `machine|stream` → last accepted sequence number.
    pub sequences: BTreeMap<String, u64>,
    /// Data files this commit replaces (compaction), deleted once it is durable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removes: Vec<String>,
}

/// Hidden temporary name of a data file while it is not yet committed.
pub fn temp_name(final_name: &str) -> String {
    format!(".{final_name}.tmp")
}

fn temp_path(root: &Path, rel: &str) -> PathBuf {
    let p = root.join(rel);
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(temp_name(&name))
}

/// What the manifests say has been archived.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LedgerState {
    pub offsets: HashMap<(String, i32), i64>,
    pub sequences: HashMap<(String, Stream), u64>,
}

impl LedgerState {
    fn merge(&mut self, m: &Manifest) {
        for (k, &o) in &m.offsets {
            if let Some((t, p)) = k.rsplit_once(':')
                && let Ok(p) = p.parse::<i32>()
            {
                let e = self.offsets.entry((t.to_string(), p)).or_insert(o);
                *e = (*e).max(o);
            }
        }
        for (k, &s) in &m.sequences {
            if let Some((machine, stream)) = k.rsplit_once('|')
                && let Some(stream) = Stream::parse(stream)
            {
                let e = self.sequences.entry((machine.to_string(), stream)).or_insert(s);
                *e = (*e).max(s);
            }
        }
    }

    fn to_manifest(&self, writer: &str, created_ms: i64) -> Manifest {
        Manifest {
            writer: writer.to_string(),
            created_ms,
            files: vec![],
            offsets: self
                .offsets
                .iter()
                .map(|((t, p), o)| (format!("{t}:{p}"), *o))
                .collect(),
            sequences: self
                .sequences
                .iter()
                .map(|((m, s), q)| (format!("{m}|{s}"), *q))
                .collect(),
            removes: vec![],
        }
    }
}

/// Reads and writes the manifests of one archive.
pub struct Ledger {
    root: PathBuf,
    dir: PathBuf,
    writer: String,
    next: u64,
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Ledger {
    /// Opens the ledger of `archive_root` for writer `writer`.
    pub fn open(archive_root: &Path, writer: &str) -> std::io::Result<Ledger> {
        let dir = archive_root.join(MANIFEST_DIR);
        std::fs::create_dir_all(&dir)?;
        Ok(Ledger {
            root: archive_root.to_path_buf(),
            dir,
            writer: writer.to_string(),
            next: 0,
        })
    }

    /// Makes a checkpoint durable: after this returns, its files and offsets count.
    pub fn commit(&mut self, m: &Manifest) -> std::io::Result<()> {
        self.write(m)?;
        if self.next.is_multiple_of(CONSOLIDATE_EVERY) {
            self.consolidate()?;
        }
        Ok(())
    }

    fn write(&mut self, m: &Manifest) -> std::io::Result<()> {
        let name = format!("m-{}-{}-{:08}.json", self.writer, now_ms(), self.next);
        self.next += 1;
        write_atomically(&self.dir, &name, &serde_json::to_vec(m).map_err(std::io::Error::other)?)
    }

    fn manifests(&self) -> std::io::Result<Vec<(PathBuf, Manifest)>> {
        // Another writer may consolidate while we read: it writes its snapshot
        // first, then deletes what it folded in. A listed manifest that is gone
        // means the snapshot holding it is there now, so list again.
        for _ in 0..100 {
            if let Some(found) = self.try_manifests()? {
                return Ok(found);
            }
        }
        Err(std::io::Error::other(format!(
            "the manifests in {} keep changing while being read; is another writer consolidating in a loop?",
            self.dir.display()
        )))
    }

    /// Every manifest, or `None` when one vanished while being read.
    fn try_manifests(&self) -> std::io::Result<Option<Vec<(PathBuf, Manifest)>>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let bytes = match std::fs::read(&p) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::other(format!(
                    "manifest {} is corrupt: {e}; restore it from backup",
                    p.display()
                ))
            })?;
            out.push((p, m));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Some(out))
    }

    /// The merged state of every manifest.
    pub fn state(&self) -> std::io::Result<LedgerState> {
        let mut s = LedgerState::default();
        for (_, m) in self.manifests()? {
            s.merge(&m);
        }
        Ok(s)
    }

    /// The merged state of every manifest, after making every committed file visible.
    /// A partition's new owner calls it: its previous owner may have died between
    /// committing a manifest and renaming the files into view, and the new owner
    /// skips the offsets that manifest covers, so it must publish the files too.
    /// A compaction that died between its manifest and deleting the files it
    /// replaced is finished the same way (else both copies would be visible).
    /// Renaming and deleting are idempotent and done in the writers' own order
    /// (publish, then remove), so this is safe while other writers run; cleaning up
    /// uncommitted files stays with [`Ledger::recover`].
    pub fn roll_forward(&self) -> std::io::Result<LedgerState> {
        let mut s = LedgerState::default();
        for (_, m) in self.manifests()? {
            for f in &m.files {
                let tmp = temp_path(&self.root, f);
                if tmp.exists() {
                    tracing::info!(file = %f, writer = %m.writer, "publishing a committed file its writer left hidden");
                    match publish_one(&tmp, &self.root.join(f)) {
                        // Its writer published it meanwhile, and a compaction already replaced it.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        r => r?,
                    }
                }
            }
            remove_replaced(&self.root, &m.removes)?;
            s.merge(&m);
        }
        Ok(s)
    }

    /// Start-up recovery: rolls committed files forward, deletes this writer's
    /// uncommitted files, folds published manifests into one snapshot.
    pub fn recover(&mut self) -> std::io::Result<LedgerState> {
        let manifests = self.manifests()?;
        let mut referenced = std::collections::HashSet::new();
        for (_, m) in &manifests {
            for f in &m.files {
                let tmp = temp_path(&self.root, f);
                referenced.insert(tmp.clone());
                if tmp.exists() {
                    publish_one(&tmp, &self.root.join(f))?;
                }
            }
            remove_replaced(&self.root, &m.removes)?;
        }
        let prefix = format!(".part-{}-", self.writer);
        remove_orphans(&self.root, &prefix, &referenced, std::time::SystemTime::now())?;
        self.consolidate()?;
        self.state()
    }

    /// Folds every manifest whose files are all visible into one snapshot, so the
    /// ledger stays small however long ingest runs.
    pub fn consolidate(&mut self) -> std::io::Result<()> {
        let settled: Vec<(PathBuf, Manifest)> = self
            .manifests()?
            .into_iter()
            .filter(|(_, m)| m.files.iter().all(|f| !temp_path(&self.root, f).exists()))
            .collect();
        if settled.len() < 2 {
            return Ok(());
        }
        let mut state = LedgerState::default();
        for (_, m) in &settled {
            // A compaction's removals must be done before its manifest is folded away.
            remove_replaced(&self.root, &m.removes)?;
            state.merge(m);
        }
        self.write(&state.to_manifest(&self.writer, now_ms()))?;
        for (p, _) in &settled {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Deletes files a committed compaction replaced (idempotent).
pub fn remove_replaced(root: &Path, removes: &[String]) -> std::io::Result<()> {
    for r in removes {
        match std::fs::remove_file(root.join(r)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Renames a committed temporary file to its final name (idempotent).
pub fn publish_one(tmp: &Path, fin: &Path) -> std::io::Result<()> {
    match std::fs::rename(tmp, fin) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && fin.exists() => {} // someone else did
        Err(e) => return Err(e),
    }
    if let Some(dir) = fin.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Uncommitted files of any writer older than this were left by a crash: a live
/// writer commits its staged files within seconds.
const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(600);

fn remove_orphans(
    dir: &Path,
    own_prefix: &str,
    keep: &std::collections::HashSet<PathBuf>,
    now: std::time::SystemTime,
) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type()?.is_dir() {
            if name != MANIFEST_DIR {
                remove_orphans(&p, own_prefix, keep, now)?;
            }
            continue;
        }
        if !(name.starts_with(".part-") && name.ends_with(".tmp")) || keep.contains(&p) {
            continue;
        }
        let stale = e
            .metadata()?
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > ORPHAN_AGE);
        if name.starts_with(own_prefix) || stale {
            tracing::info!(file = %p.display(), "removing an uncommitted file left by a crash");
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_owner_publishes_what_a_dead_writer_committed_and_leaves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let part = root.join("date=2025-11-28/stream=room");
        std::fs::create_dir_all(&part).unwrap();
        // w1 committed this file and died before renaming it into view.
        std::fs::write(part.join(temp_name("part-w1-1-000001.parquet")), b"a").unwrap();
        // w1's next file, staged but never committed.
        std::fs::write(part.join(temp_name("part-w1-1-000002.parquet")), b"b").unwrap();
        let mut m = Manifest {
            writer: "w1".into(),
            files: vec!["date=2025-11-28/stream=room/part-w1-1-000001.parquet".into()],
            ..Default::default()
        };
        m.offsets.insert("t:0".into(), 10);
        Ledger::open(root, "w1").unwrap().commit(&m).unwrap();

        // w2 takes the partition over.
        let s = Ledger::open(root, "w2").unwrap().roll_forward().unwrap();
        assert_eq!(s.offsets[&("t".to_string(), 0)], 10, "w2 resumes after w1's commit");
        assert_eq!(
            std::fs::read(part.join("part-w1-1-000001.parquet")).unwrap(),
            b"a",
            "so the readings that commit covers must be visible"
        );
        assert!(
            part.join(temp_name("part-w1-1-000002.parquet")).exists(),
            "uncommitted files stay hidden (w1's own recovery deletes them)"
        );
        assert!(!part.join("part-w1-1-000002.parquet").exists());

        // A compaction committed (merged file published) and died before deleting
        // what it replaced: the next roll-forward finishes it.
        std::fs::write(part.join("part-w1-1-000003.parquet"), b"old").unwrap();
        std::fs::write(part.join("compacted-1.parquet"), b"old, merged").unwrap();
        let m = Manifest {
            writer: "compact".into(),
            files: vec!["date=2025-11-28/stream=room/compacted-1.parquet".into()],
            removes: vec!["date=2025-11-28/stream=room/part-w1-1-000003.parquet".into()],
            ..Default::default()
        };
        Ledger::open(root, "compact").unwrap().commit(&m).unwrap();
        Ledger::open(root, "w2").unwrap().roll_forward().unwrap();
        assert!(
            !part.join("part-w1-1-000003.parquet").exists(),
            "no reading visible twice"
        );
        assert!(part.join("compacted-1.parquet").exists());
    }

    #[test]
    fn recovery_rolls_forward_committed_and_drops_uncommitted_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let part = root.join("date=2025-11-28/stream=room");
        std::fs::create_dir_all(&part).unwrap();
        // committed but not yet renamed when the "crash" happened
        std::fs::write(part.join(temp_name("part-w1-1-000001.parquet")), b"a").unwrap();
        // never committed
        std::fs::write(part.join(temp_name("part-w1-1-000002.parquet")), b"b").unwrap();
        // another writer's in-flight file: not ours to delete
        std::fs::write(part.join(temp_name("part-w2-1-000001.parquet")), b"c").unwrap();
        let mut l = Ledger::open(root, "w1").unwrap();
        let mut m = Manifest {
            writer: "w1".into(),
            files: vec!["date=2025-11-28/stream=room/part-w1-1-000001.parquet".into()],
            ..Default::default()
        };
        m.offsets.insert("t:0".into(), 10);
        m.sequences.insert("MRI-1|room".into(), 5);
        l.commit(&m).unwrap();
        m.files.clear();
        m.offsets.insert("t:0".into(), 7);
        m.offsets.insert("t:1".into(), 3);
        l.commit(&m).unwrap();

        let mut l = Ledger::open(root, "w1").unwrap();
        let s = l.recover().unwrap();
        assert_eq!(std::fs::read(part.join("part-w1-1-000001.parquet")).unwrap(), b"a");
        assert!(!part.join(temp_name("part-w1-1-000002.parquet")).exists());
        assert!(part.join(temp_name("part-w2-1-000001.parquet")).exists());
        assert_eq!(s.offsets[&("t".to_string(), 0)], 10, "the highest offset wins");
        assert_eq!(s.offsets[&("t".to_string(), 1)], 3);
        assert_eq!(s.sequences[&("MRI-1".to_string(), Stream::Room)], 5);
        // consolidated into one snapshot with the same state
        assert_eq!(l.manifests().unwrap().len(), 1);
        assert_eq!(l.state().unwrap(), s);
        // and it stays small under a long run of commits
        for i in 0..600 {
            let mut m = Manifest {
                writer: "w1".into(),
                ..Default::default()
            };
            m.offsets.insert("t:0".into(), 100 + i);
            l.commit(&m).unwrap();
        }
        assert!(l.manifests().unwrap().len() < 300);
        assert_eq!(l.state().unwrap().offsets[&("t".to_string(), 0)], 699);
    }
}
