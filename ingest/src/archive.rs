//! The Parquet archive writer: one row per reading (`ts, machine_id, channel,
//! value`), hive-partitioned as `date=YYYY-MM-DD/stream=<stream>/`, zstd,
//! sorted by machine and time inside each file.
//!
//! A file becomes visible only when complete and durable: it is written under a
//! hidden temporary name and fsynced ([`ArchiveWriter::stage`]), then renamed
//! ([`ArchiveWriter::publish`]). The Kafka source commits a manifest naming the
//! staged files and their offsets between the two (`crate::ledger`); tools
//! without a ledger stage and publish at once ([`ArchiveWriter::flush`]).

use crate::channels::{ChannelId, Stream};
use crate::wire::Frame;
use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use larmor_datadir::DataDir;
use larmor_datadir::durable::{self, ParquetSettings};
use larmor_datadir::naming::{self, sanitize_id};
use larmor_datadir::schema::readings as readings_schema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where and how readings are archived.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Root directory of the archive.
    pub path: PathBuf,
    /// Flush (and roll to new files) once this many readings are buffered.
    pub max_buffered_rows: usize,
    /// Flush at least this often, so offsets are committed regularly.
    #[serde(with = "humantime_serde")]
    pub max_buffer_age: Duration,
    /// zstd level, 1 (fast) to 22 (small).
    pub zstd_level: i32,
    /// Names this writer's files and manifests. Unset: `<hostname>-<pid>`. Set it to
    /// a stable, unique name per instance so a restart cleans up its own leftovers at once.
    pub writer_id: Option<String>,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            path: DataDir::default().archive().to_path_buf(),
            max_buffered_rows: 2_000_000,
            max_buffer_age: Duration::from_secs(5),
            zstd_level: 3,
            writer_id: None,
        }
    }
}

#[derive(Default)]
struct PartitionBuffer {
    ts: Vec<i64>,
    machine: Vec<u32>,
    channel: Vec<u16>,
    value: Vec<f64>,
}

/// What one flush wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    pub files: usize,
    pub rows: usize,
    /// Rows per stream, indexed by [`Stream::index`].
    pub rows_by_stream: [usize; 3],
    /// Size of the files written.
    pub bytes: u64,
}

/// A data file written and fsynced under its temporary name, not yet visible.
#[derive(Debug, Clone)]
pub struct StagedFile {
    /// Path relative to the archive root, under the final name.
    pub rel_path: String,
    pub rows: usize,
    pub stream: Stream,
    pub bytes: u64,
}

/// `<hostname>-<pid>`, reduced to characters safe in file names.
pub fn default_writer_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "larmor".into());
    sanitize_id(&format!("{}-{}", host.trim(), std::process::id()))
}

/// Buffers readings per partition and writes them as Parquet files.
pub struct ArchiveWriter {
    root: PathBuf,
    config: ArchiveConfig,
    buffers: BTreeMap<(i64, Stream), PartitionBuffer>,
    machines: Vec<String>,
    machine_index: HashMap<String, u32>,
    buffered: usize,
    oldest: Option<Instant>,
    file_prefix: String,
    writer: String,
    file_seq: u64,
}

impl ArchiveWriter {
    pub fn new(config: ArchiveConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.path)?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let writer = config
            .writer_id
            .as_deref()
            .map(sanitize_id)
            .unwrap_or_else(default_writer_id);
        Ok(ArchiveWriter {
            root: config.path.clone(),
            config,
            buffers: BTreeMap::new(),
            machines: Vec::new(),
            machine_index: HashMap::new(),
            buffered: 0,
            oldest: None,
            // Unique per writer and run, so several instances can share one archive.
            file_prefix: naming::archive_run_prefix(&writer, now_ms),
            writer,
            file_seq: 0,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Buffers every reading of a decoded frame.
    pub fn append(&mut self, frame: &Frame) {
        let m = match self.machine_index.get(&frame.machine_id) {
            Some(&m) => m,
            None => {
                let m = self.machines.len() as u32;
                self.machines.push(frame.machine_id.clone());
                self.machine_index.insert(frame.machine_id.clone(), m);
                m
            }
        };
        for s in &frame.samples {
            let day = naming::day_of(s.ts_ms);
            let buf = self.buffers.entry((day, frame.stream)).or_default();
            for &(c, v) in &s.values {
                buf.ts.push(s.ts_ms);
                buf.machine.push(m);
                buf.channel.push(c.0);
                buf.value.push(v);
            }
            self.buffered += s.values.len();
        }
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
    }

    pub fn buffered_rows(&self) -> usize {
        self.buffered
    }

    /// True when the buffer is full or old enough to be written.
    pub fn should_flush(&self) -> bool {
        self.buffered >= self.config.max_buffered_rows
            || self.oldest.is_some_and(|t| t.elapsed() >= self.config.max_buffer_age)
    }

    /// This writer's id (file-name prefix and manifest owner).
    pub fn writer_id(&self) -> &str {
        &self.writer
    }

    /// Writes every buffered reading to fsynced files under hidden temporary names.
    /// Nothing is visible until [`ArchiveWriter::publish`]. On error the buffers are
    /// kept (nothing is lost) and the caller must not commit.
    pub fn stage(&mut self) -> std::io::Result<Vec<StagedFile>> {
        let flush = self.take();
        match flush.stage() {
            Ok(staged) => Ok(staged),
            Err(e) => {
                self.restore(flush);
                Err(e)
            }
        }
    }

    /// Takes every buffered reading out, as a [`Flush`] that can be staged on another
    /// thread while this writer buffers the next readings.
    pub fn take(&mut self) -> Flush {
        let mut parts = Vec::new();
        for (key, buf) in std::mem::take(&mut self.buffers) {
            if buf.ts.is_empty() {
                continue;
            }
            let name = naming::archive_file(&self.file_prefix, self.file_seq);
            self.file_seq += 1;
            parts.push(FlushPart { key, buf, name });
        }
        self.buffered = 0;
        self.oldest = None;
        Flush {
            root: self.root.clone(),
            zstd_level: self.config.zstd_level,
            machines: self.machines.clone(),
            parts,
        }
    }

    /// Puts the readings of a flush that could not be staged back in front of the buffers.
    pub fn restore(&mut self, flush: Flush) {
        let oldest = self.oldest.take();
        for FlushPart { key, buf, .. } in flush.parts {
            self.buffered += buf.ts.len();
            let newer = self.buffers.insert(key, buf);
            if let Some(newer) = newer {
                let b = self.buffers.get_mut(&key).expect("just inserted");
                b.ts.extend(newer.ts);
                b.machine.extend(newer.machine);
                b.channel.extend(newer.channel);
                b.value.extend(newer.value);
            }
        }
        self.oldest = oldest.or(Some(Instant::now()));
    }

    /// Makes staged files visible (rename, then fsync of the directory).
    pub fn publish(&self, staged: &[StagedFile]) -> std::io::Result<FlushStats> {
        publish(&self.root, staged)
    }

    /// Stages and publishes at once, for writers without a commit log (tools, backfill).
    pub fn flush(&mut self) -> std::io::Result<FlushStats> {
        let staged = self.stage()?;
        self.publish(&staged)
    }
}

/// Makes files staged under `root` visible (rename, then fsync of the directory).
pub fn publish(root: &Path, staged: &[StagedFile]) -> std::io::Result<FlushStats> {
    let mut stats = FlushStats::default();
    for f in staged {
        let fin = root.join(&f.rel_path);
        durable::publish(&naming::temp_path(&fin), &fin)?;
        stats.files += 1;
        stats.rows += f.rows;
        stats.rows_by_stream[f.stream.index()] += f.rows;
        stats.bytes += f.bytes;
    }
    Ok(stats)
}

struct FlushPart {
    key: (i64, Stream),
    buf: PartitionBuffer,
    /// File name, without directory.
    name: String,
}

/// Readings taken out of an [`ArchiveWriter`], one future file per partition.
pub struct Flush {
    root: PathBuf,
    zstd_level: i32,
    /// Machine ids by the buffers' machine numbers.
    machines: Vec<String>,
    parts: Vec<FlushPart>,
}

impl Flush {
    /// The archive root the files go under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn rows(&self) -> usize {
        self.parts.iter().map(|p| p.buf.ts.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Writes each partition's readings to an fsynced file under its hidden temporary
    /// name. The files are independent: they are encoded side by side, one thread per core.
    pub fn stage(&self) -> std::io::Result<Vec<StagedFile>> {
        let rank = self.machine_ranks();
        let write = |part: &FlushPart| -> std::io::Result<StagedFile> {
            let rel_dir = naming::archive_partition(part.key.0, part.key.1.as_str());
            let dir = self.root.join(&rel_dir);
            durable::create_dirs(&self.root, Path::new(&rel_dir))?;
            let temp = dir.join(naming::temp_name(&part.name));
            let rows = self.write_part(&temp, &part.buf, &rank)?;
            let bytes = std::fs::metadata(&temp)?.len();
            // The staged name must survive a power cut once a manifest names it.
            durable::sync_dir(&dir)?;
            Ok(StagedFile {
                rel_path: format!("{rel_dir}/{}", part.name),
                rows,
                stream: part.key.1,
                bytes,
            })
        };
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(self.parts.len());
        if threads <= 1 {
            return self.parts.iter().map(write).collect();
        }
        // Largest first, so the last file to finish is a small one.
        let mut order: Vec<usize> = (0..self.parts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.parts[i].buf.ts.len()));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut out: Vec<Option<std::io::Result<StagedFile>>> = (0..self.parts.len()).map(|_| None).collect();
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        while let Some(&i) = order.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                            done.push((i, write(&self.parts[i])));
                        }
                        done
                    })
                })
                .collect();
            for w in workers {
                for (i, r) in w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)) {
                    out[i] = Some(r);
                }
            }
        });
        out.into_iter().flatten().collect()
    }

    /// Each machine's rank in machine-id order, indexed by the buffers' machine numbers.
    fn machine_ranks(&self) -> Vec<u32> {
        let mut by_id: Vec<u32> = (0..self.machines.len() as u32).collect();
        by_id.sort_unstable_by(|&a, &b| self.machines[a as usize].cmp(&self.machines[b as usize]));
        let mut rank = vec![0u32; by_id.len()];
        for (r, &m) in by_id.iter().enumerate() {
            rank[m as usize] = r as u32;
        }
        rank
    }

    /// The order rows are archived in: by machine, then time, then channel (good
    /// compression and tight row-group statistics). Machines are ordered by id
    /// through their precomputed rank, so no strings are compared: a stable counting
    /// sort by rank, then a stable sort of each machine's rows by (time, channel),
    /// which arrive nearly in that order.
    fn archive_order(buf: &PartitionBuffer, rank: &[u32]) -> Vec<u32> {
        let mut start = vec![0usize; rank.len() + 1];
        for &m in &buf.machine {
            start[rank[m as usize] as usize + 1] += 1;
        }
        for r in 0..rank.len() {
            start[r + 1] += start[r];
        }
        let mut next = start.clone();
        let mut order = vec![0u32; buf.ts.len()];
        for (i, &m) in buf.machine.iter().enumerate() {
            let r = rank[m as usize] as usize;
            order[next[r]] = i as u32;
            next[r] += 1;
        }
        for w in start.windows(2) {
            order[w[0]..w[1]].sort_by_key(|&i| (buf.ts[i as usize], buf.channel[i as usize]));
        }
        order
    }

    /// The rows `order` picks, in that order, as a record batch.
    fn to_batch(&self, buf: &PartitionBuffer, order: &[u32]) -> datafusion::arrow::error::Result<RecordBatch> {
        let ts =
            TimestampMillisecondArray::from_iter_values(order.iter().map(|&i| buf.ts[i as usize])).with_timezone("UTC");
        let machine = StringArray::from_iter_values(
            order
                .iter()
                .map(|&i| self.machines[buf.machine[i as usize] as usize].as_str()),
        );
        let channel = StringArray::from_iter_values(order.iter().map(|&i| ChannelId(buf.channel[i as usize]).name()));
        let value = Float64Array::from_iter_values(order.iter().map(|&i| buf.value[i as usize]));
        let cols: Vec<ArrayRef> = vec![Arc::new(ts), Arc::new(machine), Arc::new(channel), Arc::new(value)];
        RecordBatch::try_new(readings_schema(), cols)
    }

    /// Writes one partition's rows, sorted, to `path` as Parquet and fsyncs it. The
    /// rows go to the writer in slices, so only a slice at a time is held as Arrow
    /// arrays; a slice is a multiple of the writer's 1024-row mini-batches and divides
    /// the row-group size, so the file is the same as from one batch.
    fn write_part(&self, path: &Path, buf: &PartitionBuffer, rank: &[u32]) -> std::io::Result<usize> {
        const SLICE: usize = 64 * 1024;
        let order = Self::archive_order(buf, rank);
        let file = File::create(path)?;
        let mut w = ArrowWriter::try_new(
            file,
            readings_schema(),
            Some(parquet_settings(self.zstd_level).writer_properties()?),
        )
        .map_err(std::io::Error::other)?;
        for slice in order.chunks(SLICE) {
            let batch = self.to_batch(buf, slice).map_err(std::io::Error::other)?;
            w.write(&batch).map_err(std::io::Error::other)?;
        }
        let file = w.into_inner().map_err(std::io::Error::other)?;
        file.sync_all()?;
        Ok(order.len())
    }
}

/// How archive files are written: sorted by machine (column 1), then time (column 0).
pub fn parquet_settings(zstd_level: i32) -> ParquetSettings {
    ParquetSettings::new(zstd_level).sorted_by(&[1, 0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use datafusion::parquet::basic::Compression;

    #[test]
    fn writes_partitioned_sorted_zstd_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ArchiveWriter::new(ArchiveConfig {
            path: dir.path().into(),
            ..Default::default()
        })
        .unwrap();
        let he = ChannelId::from_name("helium_level_pct").unwrap();
        let day1 = 1_764_288_000_000; // 2025-11-28T00:00Z
        for (m, ts) in [
            ("B", day1 + 5),
            ("A", day1 + 9),
            ("A", day1 + 1),
            ("A", day1 + 86_400_000),
        ] {
            w.append(&Frame::single(m, Stream::Temperature, 1, ts, he, 50.0));
        }
        assert_eq!(w.buffered_rows(), 4);
        let stats = w.flush().unwrap();
        assert_eq!(
            stats,
            FlushStats {
                files: 2,
                rows: 4,
                rows_by_stream: [4, 0, 0],
                bytes: stats.bytes,
            }
        );
        assert_eq!(w.buffered_rows(), 0);
        let p = dir.path().join("date=2025-11-28/stream=temperature");
        let files: Vec<_> = std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "no temporary files left: {files:?}");
        let f = File::open(&files[0]).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        let md = builder.metadata().clone();
        assert!(matches!(md.row_group(0).column(0).compression(), Compression::ZSTD(_)));
        let batch = builder.build().unwrap().next().unwrap().unwrap();
        let machines = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let ts = batch
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(machines.iter().flatten().collect::<Vec<_>>(), vec!["A", "A", "B"]);
        assert_eq!(ts.values().to_vec(), vec![day1 + 1, day1 + 9, day1 + 5]);
        assert!(dir.path().join("date=2025-11-29/stream=temperature").is_dir());
        let on_disk: u64 = ["date=2025-11-28", "date=2025-11-29"]
            .iter()
            .flat_map(|d| std::fs::read_dir(dir.path().join(d).join("stream=temperature")).unwrap())
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(stats.bytes, on_disk, "bytes counts the published files");
    }

    /// The staged file is exactly what sorting every row by (machine id, time,
    /// channel) and writing it as one batch gives, across several slices and
    /// machines whose numbering differs from their id order.
    #[test]
    fn staged_file_matches_one_sorted_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ArchiveWriter::new(ArchiveConfig {
            path: dir.path().into(),
            ..Default::default()
        })
        .unwrap();
        let channels: Vec<ChannelId> = ChannelId::of_stream(Stream::Vibration).collect();
        let day = 1_764_288_000_000;
        let machines = ["MRI-09", "MRI-10", "MRI-02", "A-1", "MRI-1"];
        let mut rows = Vec::new();
        let mut x = 7u64;
        for i in 0..30_000i64 {
            // machines interleaved, times not quite in order, channels in frame order
            let m = machines[(i % 5) as usize];
            let ts = day + 1000 + (i / 5) * 100 - (i % 3) * 7;
            let values: Vec<(ChannelId, f64)> = channels
                .iter()
                .rev()
                .map(|&c| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (c, (x >> 40) as f64 / 1e3)
                })
                .collect();
            for &(c, v) in &values {
                rows.push((m.to_string(), ts, c, v));
            }
            w.append(&Frame {
                machine_id: m.into(),
                stream: Stream::Vibration,
                seq: i as u64,
                ts_ms: ts,
                samples: vec![crate::wire::Sample { ts_ms: ts, values }],
            });
        }
        assert!(rows.len() > 2 * 64 * 1024, "several slices");
        let staged = w.stage().unwrap();
        assert_eq!(staged.len(), 1);
        let got = std::fs::read(naming::temp_path(&dir.path().join(&staged[0].rel_path))).unwrap();

        rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let batch = RecordBatch::try_new(
            readings_schema(),
            vec![
                Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.1)).with_timezone("UTC")),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2.name()))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
            ],
        )
        .unwrap();
        let want_path = dir.path().join("want.parquet");
        durable::write_parquet(&want_path, [&batch], readings_schema(), &parquet_settings(3)).unwrap();
        assert!(
            got == std::fs::read(&want_path).unwrap(),
            "same bytes as one sorted batch"
        );
    }
}
