//! `larmor archive compact`: merges the small files of each partition into one,
//! sorted by machine and time, without changing a single row. The swap is a
//! manifest commit (new file in, old files out), so a crash at any point leaves
//! either the old files or the new one, never both.

use crate::archive::parquet_settings;
use crate::ledger::{Ledger, Manifest, remove_replaced};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use larmor_datadir::naming::{self, temp_name};
use larmor_datadir::{durable, schema};
use std::path::{Path, PathBuf};

/// What compaction did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactReport {
    pub partitions: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub rows: usize,
}

fn read_all(files: &[PathBuf]) -> std::io::Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    for f in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f)?)
            .and_then(|b| b.with_batch_size(1 << 16).build())
            .map_err(|e| std::io::Error::other(format!("{}: {e}", f.display())))?;
        for b in reader {
            batches.push(b.map_err(std::io::Error::other)?);
        }
    }
    Ok(batches)
}

/// Compacts every partition holding at least `min_files` files.
pub fn compact(root: &Path, min_files: usize, zstd_level: i32) -> std::io::Result<CompactReport> {
    let writer = format!("compact-{}", std::process::id());
    let mut ledger = Ledger::open(root, &writer)?;
    let mut report = CompactReport::default();
    for dir in naming::archive_partitions(root)? {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| naming::is_data_file(&n.to_string_lossy()))
            })
            .collect();
        files.sort();
        if files.len() < min_files.max(2) {
            continue;
        }
        let batches = read_all(&files)?;
        let merged = concat_batches(&schema::readings(), &batches).map_err(std::io::Error::other)?;
        // Same order as the writer: machine, then time, then channel.
        let sort = |i: usize| SortColumn {
            values: merged.column(i).clone(),
            options: None,
        };
        let order = lexsort_to_indices(&[sort(1), sort(0), sort(2)], None).map_err(std::io::Error::other)?;
        let sorted = take_record_batch(&merged, &order).map_err(std::io::Error::other)?;
        debug_assert_eq!(sorted.column(0).len(), merged.num_rows());

        let rel_dir = dir
            .strip_prefix(root)
            .map_err(std::io::Error::other)?
            .to_string_lossy()
            .into_owned();
        let name = naming::compacted_file(&writer, chrono::Utc::now().timestamp_millis());
        durable::write_parquet(
            &dir.join(temp_name(&name)),
            [&sorted],
            schema::readings(),
            &parquet_settings(zstd_level),
        )?;
        let rel = |p: &Path| format!("{rel_dir}/{}", p.file_name().unwrap_or_default().to_string_lossy());
        let manifest = Manifest {
            writer: writer.clone(),
            created_ms: chrono::Utc::now().timestamp_millis(),
            files: vec![format!("{rel_dir}/{name}")],
            removes: files.iter().map(|f| rel(f)).collect(),
            ..Default::default()
        };
        ledger.commit(&manifest)?;
        durable::publish(&dir.join(temp_name(&name)), &dir.join(&name))?;
        remove_replaced(root, &manifest.removes)?;
        report.partitions += 1;
        report.files_before += files.len();
        report.files_after += 1;
        report.rows += sorted.num_rows();
    }
    Ok(report)
}

/// Rows of a record batch as comparable text (tests).
pub fn rows_as_text(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = Vec::new();
    for b in batches {
        let ts = b
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
        let (m, c) = (b.column(1).as_string::<i32>(), b.column(2).as_string::<i32>());
        let v = b.column(3).as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        for i in 0..b.num_rows() {
            rows.push(format!(
                "{}|{}|{}|{:?}",
                ts.value(i),
                m.value(i),
                c.value(i),
                v.value(i)
            ));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{ArchiveConfig, ArchiveWriter};
    use crate::{ChannelId, Frame, Stream};

    fn dump(root: &Path) -> (Vec<String>, usize) {
        let mut rows = Vec::new();
        let mut files = 0;
        for dir in naming::archive_partitions(root).unwrap() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|e| e == "parquet") {
                    files += 1;
                    rows.extend(rows_as_text(&read_all(&[p]).unwrap()));
                }
            }
        }
        rows.sort();
        (rows, files)
    }

    #[test]
    fn merges_files_without_changing_a_row() {
        let dir = tempfile::tempdir().unwrap();
        let he = ChannelId::from_name("helium_level_pct").unwrap();
        for round in 0..4 {
            let mut w = ArchiveWriter::new(ArchiveConfig {
                path: dir.path().into(),
                ..Default::default()
            })
            .unwrap();
            for m in ["B", "A", "C"] {
                let ts = 1_764_288_000_000 + round * 1000;
                w.append(&Frame::single(
                    m,
                    Stream::Temperature,
                    1,
                    ts,
                    he,
                    70.0 + round as f64 / 3.0,
                ));
            }
            w.flush().unwrap();
        }
        let (before, files_before) = dump(dir.path());
        assert_eq!(files_before, 4);
        let r = compact(dir.path(), 2, 3).unwrap();
        assert_eq!(
            r,
            CompactReport {
                partitions: 1,
                files_before: 4,
                files_after: 1,
                rows: 12
            }
        );
        let (after, files_after) = dump(dir.path());
        assert_eq!(files_after, 1);
        assert_eq!(before, after, "the same rows, bit for bit");
        // sorted by machine inside the new file
        let part = naming::archive_partitions(dir.path()).unwrap().remove(0);
        let f = std::fs::read_dir(&part)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "parquet"))
            .unwrap();
        let rows = rows_as_text(&read_all(&[f]).unwrap());
        let machines: Vec<&str> = rows.iter().map(|r| r.split('|').nth(1).unwrap()).collect();
        let mut sorted = machines.clone();
        sorted.sort();
        assert_eq!(machines, sorted);
        // nothing to do the second time
        assert_eq!(compact(dir.path(), 2, 3).unwrap().partitions, 0);
    }
}
