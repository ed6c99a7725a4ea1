//! The Parquet archive writer: one row per reading (`ts, machine_id, channel,
//! value`), hive-partitioned as `date=YYYY-MM-DD/stream=<stream>/`, zstd,
//! sorted by machine and time inside each file.
//!
//! A file becomes visible only when complete and durable: it is written under a
//! hidden temporary name, fsynced, then renamed. Callers commit Kafka offsets
//! only after [`ArchiveWriter::flush`] returns.

use crate::channels::{ChannelId, Stream};
use crate::wire::Frame;
use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::SortingColumn;
use datafusion::parquet::file::properties::WriterProperties;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Where and how readings are archived.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Root directory of the archive.
    pub path: PathBuf,
    /// Flush (and roll to new files) once this many readings are buffered.
    pub max_buffered_rows: usize,
    /// Flush at least this often, so offsets are committed regularly.
    #[serde(with = "humantime_serde_compat")]
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
            path: PathBuf::from("larmor-data/archive"),
            max_buffered_rows: 2_000_000,
            max_buffer_age: Duration::from_secs(5),
            zstd_level: 3,
            writer_id: None,
        }
    }
}

/// `"5s"`-style durations in config files.
pub mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// The archive's Arrow schema (partition columns `date` and `stream` come from the path).
pub fn schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("machine_id", DataType::Utf8, false),
            Field::new("channel", DataType::Utf8, false),
            Field::new("value", DataType::Float64, false),
        ]))
    })
    .clone()
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
}

/// A data file written and fsynced under its temporary name, not yet visible.
#[derive(Debug, Clone)]
pub struct StagedFile {
    /// Path relative to the archive root, under the final name.
    pub rel_path: String,
    pub rows: usize,
    pub stream: Stream,
}

/// `<hostname>-<pid>`, reduced to characters safe in file names.
pub fn default_writer_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "larmor".into());
    sanitize_id(&format!("{}-{}", host.trim(), std::process::id()))
}

pub fn sanitize_id(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
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
            file_prefix: format!("part-{writer}-{now_ms}"),
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
            let day = s.ts_ms.div_euclid(86_400_000);
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
        let mut staged = Vec::new();
        let keys: Vec<(i64, Stream)> = self.buffers.keys().copied().collect();
        for key in &keys {
            let buf = &self.buffers[key];
            if buf.ts.is_empty() {
                continue;
            }
            let batch = self.to_batch(buf).map_err(std::io::Error::other)?;
            let rel_dir = partition_dir(key.0, key.1);
            let dir = self.root.join(&rel_dir);
            std::fs::create_dir_all(&dir)?;
            let name = format!("{}-{:06}.parquet", self.file_prefix, self.file_seq);
            self.file_seq += 1;
            write_parquet(
                &dir.join(crate::manifest::temp_name(&name)),
                &batch,
                self.config.zstd_level,
            )?;
            staged.push(StagedFile {
                rel_path: format!("{rel_dir}/{name}"),
                rows: batch.num_rows(),
                stream: key.1,
            });
        }
        self.buffers.clear();
        self.buffered = 0;
        self.oldest = None;
        Ok(staged)
    }

    /// Makes staged files visible (rename, then fsync of the directory).
    pub fn publish(&self, staged: &[StagedFile]) -> std::io::Result<FlushStats> {
        let mut stats = FlushStats::default();
        for f in staged {
            let fin = self.root.join(&f.rel_path);
            let name = fin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            crate::manifest::publish_one(&fin.with_file_name(crate::manifest::temp_name(&name)), &fin)?;
            stats.files += 1;
            stats.rows += f.rows;
            stats.rows_by_stream[f.stream.index()] += f.rows;
        }
        Ok(stats)
    }

    /// Stages and publishes at once, for writers without a commit log (tools, backfill).
    pub fn flush(&mut self) -> std::io::Result<FlushStats> {
        let staged = self.stage()?;
        self.publish(&staged)
    }

    fn to_batch(&self, buf: &PartitionBuffer) -> datafusion::arrow::error::Result<RecordBatch> {
        // Sort by machine then time: good compression and tight row-group statistics.
        let mut order: Vec<u32> = (0..buf.ts.len() as u32).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            self.machines[buf.machine[a] as usize]
                .cmp(&self.machines[buf.machine[b] as usize])
                .then(buf.ts[a].cmp(&buf.ts[b]))
                .then(buf.channel[a].cmp(&buf.channel[b]))
        });
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
        RecordBatch::try_new(schema(), cols)
    }
}

/// `date=YYYY-MM-DD/stream=<stream>` for a UTC day number.
pub fn partition_dir(day: i64, stream: Stream) -> String {
    let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into());
    format!("date={date}/stream={stream}")
}

fn writer_properties(zstd_level: i32) -> std::io::Result<WriterProperties> {
    let level = ZstdLevel::try_new(zstd_level).map_err(std::io::Error::other)?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(true)
        .set_max_row_group_row_count(Some(1 << 20))
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: 1,
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            },
        ]))
        .build())
}

/// Writes `batch` to `path` as Parquet and fsyncs it.
pub fn write_parquet(path: &Path, batch: &RecordBatch, zstd_level: i32) -> std::io::Result<()> {
    let file = File::create(path)?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(writer_properties(zstd_level)?))
        .map_err(std::io::Error::other)?;
    w.write(batch).map_err(std::io::Error::other)?;
    let file = w.into_inner().map_err(std::io::Error::other)?;
    file.sync_all()
}

/// Writes `batch` as `dir/name`: temporary file, fsync, rename, fsync of the directory.
pub fn write_durably(dir: &Path, name: &str, batch: &RecordBatch, zstd_level: i32) -> std::io::Result<()> {
    let tmp = dir.join(crate::manifest::temp_name(name));
    write_parquet(&tmp, batch, zstd_level)?;
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

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
                rows_by_stream: [4, 0, 0]
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
    }
}
