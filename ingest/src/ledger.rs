//! The archive's commit log. A checkpoint writes its Parquet files under hidden
//! temporary names, then one manifest naming those files together with the Kafka
//! offsets and device sequence numbers they cover, then renames the files into
//! view. The manifest is the commit point: after a crash, files it names are
//! rolled forward, files it does not name are deleted, and consumption resumes
//! after its offsets. That makes the archive effectively exactly-once whatever
//! Kafka's own committed offsets say.
//!
//! Several writers share one ledger (a consumer group). Taking a partition over,
//! a writer claims its next epoch; a commit that carries offsets of a partition
//! claimed by someone else since is refused ([`Fenced`]), so a writer that
//! stalled past the group's session timeout cannot commit readings its successor
//! has archived. Claims and such commits run under an advisory file lock.

use crate::channels::Stream;
use larmor_datadir::{durable, naming};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Commits between two consolidations of the ledger.
const CONSOLIDATE_EVERY: u64 = 256;
/// How long a claim or commit waits for the ledger lock before it fails.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

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
    /// `topic:partition` → who owns it from which epoch on (see [`Ledger::claim`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, Claim>,
}

/// A writer's claim on a partition. Each new owner claims the next epoch; a
/// commit by a writer whose claim is no longer the newest is refused (fenced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub epoch: u64,
    pub writer: String,
}

/// Why a commit was refused: another writer claimed one of its partitions after
/// this one did, so this writer must not commit offsets it may share with it.
#[derive(Debug, thiserror::Error)]
#[error(
    "this instance ({writer}) was fenced off partition {partition}: writer {by} claimed it (epoch {theirs}, ours {ours}), \
     most likely because this instance stalled past the group's session timeout. Nothing of its last \
     checkpoint was committed (its files stay hidden and a later start-up removes them); restart it and the \
     group gives it partitions again"
)]
pub struct Fenced {
    pub writer: String,
    pub partition: String,
    pub by: String,
    pub ours: u64,
    pub theirs: u64,
}

/// What the manifests say has been archived.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LedgerState {
    pub offsets: HashMap<(String, i32), i64>,
    pub sequences: HashMap<(String, Stream), u64>,
    /// `topic:partition` → the newest claim.
    pub claims: BTreeMap<String, Claim>,
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
        for (k, c) in &m.claims {
            match self.claims.get(k) {
                Some(have) if have.epoch >= c.epoch => {}
                _ => {
                    self.claims.insert(k.clone(), c.clone());
                }
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
            claims: self.claims.clone(),
        }
    }
}

/// A manifest as listed: its path and its (shared, parsed) content.
type Listed = (PathBuf, std::sync::Arc<Manifest>);

/// Reads and writes the manifests of one archive.
pub struct Ledger {
    root: PathBuf,
    dir: PathBuf,
    writer: String,
    next: u64,
    /// The epochs this writer claimed, per `topic:partition`.
    claimed: BTreeMap<String, u64>,
    /// Commits since this ledger was opened (the consolidation schedule).
    commits: u64,
    /// Manifests already parsed, by path: a manifest never changes once written
    /// (new content gets a new name), and every claim and commit reads them all.
    parsed: std::sync::Mutex<HashMap<PathBuf, std::sync::Arc<Manifest>>>,
}

/// Holds the archive-wide ledger lock (`_manifests/.lock`) while it lives: claims
/// and commits that carry offsets check and write under it, so a claim and a
/// commit never interleave. (An advisory lock: every Larmor instance on the
/// archive's filesystem takes it; filesystems without locks, such as some NFS
/// set-ups, do not protect this.)
struct LedgerLock(File);

impl LedgerLock {
    fn take(dir: &Path) -> std::io::Result<LedgerLock> {
        let path = dir.join(naming::LEDGER_LOCK);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        // Held for milliseconds; an instance stopped while holding it must not stall
        // the others for good: give up with an error that says where to look.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(LedgerLock(f)),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(std::io::Error::other(format!(
                        "{} has been locked by another Larmor instance for {} s; is one stopped or hung?",
                        path.display(),
                        LOCK_WAIT.as_secs()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

impl Drop for LedgerLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
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
        let dir = archive_root.join(naming::MANIFEST_DIR);
        std::fs::create_dir_all(&dir)?;
        Ok(Ledger {
            root: archive_root.to_path_buf(),
            dir,
            writer: writer.to_string(),
            next: 0,
            claimed: BTreeMap::new(),
            commits: 0,
            parsed: Default::default(),
        })
    }

    /// Makes a checkpoint durable: after this returns, its files and offsets count.
    /// A commit with offsets of a partition that another writer has claimed since
    /// this one did is refused with [`Fenced`] (as the error's source), and nothing
    /// is written.
    pub fn commit(&mut self, m: &Manifest) -> std::io::Result<()> {
        let check = m.offsets.keys().any(|k| self.claimed.contains_key(k));
        {
            let _lock = if check {
                Some(LedgerLock::take(&self.dir)?)
            } else {
                None
            };
            if check {
                let newest = self.state()?.claims;
                for k in m.offsets.keys() {
                    if let (Some(&ours), Some(c)) = (self.claimed.get(k), newest.get(k))
                        && c.epoch > ours
                    {
                        return Err(std::io::Error::other(Fenced {
                            writer: self.writer.clone(),
                            partition: k.clone(),
                            by: c.writer.clone(),
                            ours,
                            theirs: c.epoch,
                        }));
                    }
                }
            }
            self.write(m)?;
        }
        self.commits += 1;
        if self.commits.is_multiple_of(CONSOLIDATE_EVERY) {
            self.consolidate()?;
        }
        Ok(())
    }

    /// Takes `partitions` over for this writer: claims the next epoch of each,
    /// then rolls committed files forward ([`Ledger::roll_forward`]) and returns
    /// the ledger's state, whose offsets the new owner resumes from. From now on a
    /// commit by a previous owner that still carries these partitions' offsets is
    /// refused, so an owner that stalled past the session timeout and wakes up
    /// cannot archive offsets this writer archives too.
    pub fn claim(&mut self, partitions: &[(String, i32)]) -> std::io::Result<LedgerState> {
        if !partitions.is_empty() {
            let _lock = LedgerLock::take(&self.dir)?;
            let state = self.state()?;
            let mut m = Manifest {
                writer: self.writer.clone(),
                created_ms: now_ms(),
                ..Default::default()
            };
            for (t, p) in partitions {
                let k = format!("{t}:{p}");
                let epoch = state.claims.get(&k).map_or(0, |c| c.epoch) + 1;
                m.claims.insert(
                    k,
                    Claim {
                        epoch,
                        writer: self.writer.clone(),
                    },
                );
            }
            self.write(&m)?;
            // Only claims that are on disk count as ours.
            for (k, c) in &m.claims {
                self.claimed.insert(k.clone(), c.epoch);
            }
        }
        self.roll_forward()
    }

    fn write(&mut self, m: &Manifest) -> std::io::Result<()> {
        let name = naming::manifest_file(&self.writer, now_ms(), self.next);
        self.next += 1;
        durable::write_file(
            &self.dir.join(name),
            &serde_json::to_vec(m).map_err(std::io::Error::other)?,
        )
    }

    fn manifests(&self) -> std::io::Result<Vec<Listed>> {
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
    fn try_manifests(&self) -> std::io::Result<Option<Vec<Listed>>> {
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
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
            if let Some(m) = parsed.get(&p) {
                out.push((p, m.clone()));
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
            let m = std::sync::Arc::new(m);
            parsed.insert(p.clone(), m.clone());
            out.push((p, m));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        parsed.retain(|p, _| out.binary_search_by(|(q, _)| q.cmp(p)).is_ok());
        // A directory listing may skip entries created or deleted while it runs:
        // the same names listed again means none was.
        let mut again: Vec<PathBuf> = Vec::with_capacity(out.len());
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !name.starts_with('.') && name.ends_with(".json") {
                again.push(p);
            }
        }
        again.sort();
        if again.len() != out.len() || again.iter().zip(&out).any(|(a, (b, _))| a != b) {
            return Ok(None);
        }
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
                let tmp = naming::temp_path(&self.root.join(f));
                if tmp.exists() {
                    tracing::info!(file = %f, writer = %m.writer, "publishing a committed file its writer left hidden");
                    match durable::publish(&tmp, &self.root.join(f)) {
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
                let tmp = naming::temp_path(&self.root.join(f));
                referenced.insert(tmp.clone());
                if tmp.exists() {
                    durable::publish(&tmp, &self.root.join(f))?;
                }
            }
            remove_replaced(&self.root, &m.removes)?;
        }
        let prefix = naming::uncommitted_prefix(&self.writer);
        remove_orphans(&self.root, &prefix, &referenced, std::time::SystemTime::now())?;
        self.consolidate()?;
        self.state()
    }

    /// Folds every manifest whose files are all visible into one snapshot, so the
    /// ledger stays small however long ingest runs.
    pub fn consolidate(&mut self) -> std::io::Result<()> {
        // Under the lock: a claim written while we fold and delete could otherwise
        // be missed by a reader listing the directory at the same time.
        let _lock = LedgerLock::take(&self.dir)?;
        let settled: Vec<Listed> = self
            .manifests()?
            .into_iter()
            .filter(|(_, m)| m.files.iter().all(|f| !naming::temp_path(&self.root.join(f)).exists()))
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
            if name != naming::MANIFEST_DIR {
                remove_orphans(&p, own_prefix, keep, now)?;
            }
            continue;
        }
        if !naming::is_uncommitted(&name) || keep.contains(&p) {
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
        std::fs::write(part.join(naming::temp_name("part-w1-1-000001.parquet")), b"a").unwrap();
        // w1's next file, staged but never committed.
        std::fs::write(part.join(naming::temp_name("part-w1-1-000002.parquet")), b"b").unwrap();
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
            part.join(naming::temp_name("part-w1-1-000002.parquet")).exists(),
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
    fn an_owner_that_lost_its_partition_cannot_commit_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let p = ("t".to_string(), 0);
        let with_offset = |writer: &str, o: i64| {
            let mut m = Manifest {
                writer: writer.into(),
                ..Default::default()
            };
            m.offsets.insert("t:0".into(), o);
            m
        };
        let mut w1 = Ledger::open(root, "w1").unwrap();
        w1.claim(std::slice::from_ref(&p)).unwrap();
        w1.commit(&with_offset("w1", 10)).unwrap();

        // w1 stalls past the session timeout; w2 takes t:0 over and resumes at 10.
        let mut w2 = Ledger::open(root, "w2").unwrap();
        let s = w2.claim(std::slice::from_ref(&p)).unwrap();
        assert_eq!(s.offsets[&p], 10);
        assert_eq!(
            s.claims["t:0"],
            Claim {
                epoch: 2,
                writer: "w2".into()
            }
        );
        w2.commit(&with_offset("w2", 15)).unwrap();

        // w1 wakes up with offsets 10..20 it had read: refused, nothing written.
        let before = w1.manifests().unwrap().len();
        let err = w1.commit(&with_offset("w1", 20)).unwrap_err();
        let fenced = err.get_ref().and_then(|e| e.downcast_ref::<Fenced>()).expect("fenced");
        assert_eq!((fenced.ours, fenced.theirs, fenced.by.as_str()), (1, 2, "w2"));
        assert!(err.to_string().contains("restart it"), "{err}");
        assert_eq!(w1.manifests().unwrap().len(), before);
        assert_eq!(w2.state().unwrap().offsets[&p], 15);
        // Commits without that partition's offsets (a compaction, other partitions) still go through.
        w1.commit(&Manifest::default()).unwrap();

        // Claims survive consolidation.
        for i in 0..300 {
            w2.commit(&with_offset("w2", 16 + i)).unwrap();
        }
        assert!(w2.manifests().unwrap().len() < 100);
        assert_eq!(w2.state().unwrap().claims["t:0"].epoch, 2);
        assert!(w1.commit(&with_offset("w1", 20)).is_err(), "still fenced");
        // Given the partition again, w1 claims epoch 3 and commits.
        w1.claim(std::slice::from_ref(&p)).unwrap();
        w1.commit(&with_offset("w1", 400)).unwrap();
        assert!(w2.commit(&with_offset("w2", 401)).is_err(), "now w2 is the stale one");
    }

    #[test]
    fn recovery_rolls_forward_committed_and_drops_uncommitted_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let part = root.join("date=2025-11-28/stream=room");
        std::fs::create_dir_all(&part).unwrap();
        // committed but not yet renamed when the "crash" happened
        std::fs::write(part.join(naming::temp_name("part-w1-1-000001.parquet")), b"a").unwrap();
        // never committed
        std::fs::write(part.join(naming::temp_name("part-w1-1-000002.parquet")), b"b").unwrap();
        // another writer's in-flight file: not ours to delete
        std::fs::write(part.join(naming::temp_name("part-w2-1-000001.parquet")), b"c").unwrap();
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
        assert!(!part.join(naming::temp_name("part-w1-1-000002.parquet")).exists());
        assert!(part.join(naming::temp_name("part-w2-1-000001.parquet")).exists());
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
