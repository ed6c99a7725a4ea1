//! Durable writes: a file is written under its hidden temporary name, fsynced,
//! renamed into view and its directory fsynced, so a reader (or a crash) never
//! sees half a file. Parquet files share one set of writer properties.

use crate::naming::temp_path;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::SortingColumn;
use datafusion::parquet::file::properties::WriterProperties;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Fsyncs a directory, so a rename or a new file in it survives a power cut.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Renames a file written under its temporary name into view, then fsyncs the
/// directory. Idempotent: a file someone else already published counts as done.
pub fn publish(tmp: &Path, fin: &Path) -> std::io::Result<()> {
    match std::fs::rename(tmp, fin) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && fin.exists() => {}
        Err(e) => return Err(e),
    }
    sync_dir(fin.parent().unwrap_or(Path::new(".")))
}

/// Replaces `path` with `bytes`, durably. A file that exists keeps its permissions
/// (so whoever could read it still can). Concurrent writers each write their own
/// temporary file; the last rename wins whole, and none reports another's write.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unique = format!("{name}.{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    let tmp = path.with_file_name(crate::naming::temp_name(&unique));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        if let Ok(m) = std::fs::metadata(path) {
            f.set_permissions(m.permissions())?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        // Strict: this temporary file is ours alone, so it must be there to rename.
        std::fs::rename(&tmp, path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates `rel` and every missing directory on the way under `root`, and
/// fsyncs each new directory's parent, so a file later written there (and
/// committed) survives a power cut with its path.
pub fn create_dirs(root: &Path, rel: &Path) -> std::io::Result<()> {
    let mut dir = root.to_path_buf();
    for part in rel.components() {
        let parent = dir.clone();
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => sync_dir(&parent)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How Larmor writes Parquet: zstd, dictionaries, row groups of up to 1 M rows,
/// and, when the rows are sorted, the sort order declared in the metadata.
#[derive(Debug, Clone)]
pub struct ParquetSettings {
    /// zstd level, 1 (fast) to 22 (small).
    pub zstd_level: i32,
    /// Columns (by index) the rows are sorted by, most significant first; empty
    /// when the rows are in no particular order.
    pub sorted_by: Vec<usize>,
}

impl ParquetSettings {
    pub fn new(zstd_level: i32) -> Self {
        ParquetSettings {
            zstd_level,
            sorted_by: Vec::new(),
        }
    }

    /// Declares the rows sorted by these columns (ascending).
    pub fn sorted_by(mut self, columns: &[usize]) -> Self {
        self.sorted_by = columns.to_vec();
        self
    }

    pub fn writer_properties(&self) -> std::io::Result<WriterProperties> {
        let level = ZstdLevel::try_new(self.zstd_level).map_err(std::io::Error::other)?;
        let sorting = (!self.sorted_by.is_empty()).then(|| {
            self.sorted_by
                .iter()
                .map(|&c| SortingColumn {
                    column_idx: c as i32,
                    descending: false,
                    nulls_first: false,
                })
                .collect()
        });
        Ok(WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_dictionary_enabled(true)
            .set_max_row_group_row_count(Some(1 << 20))
            .set_sorting_columns(sorting)
            .build())
    }
}

/// Writes batches to `path` as one Parquet file and fsyncs it (no rename: for
/// files staged under a temporary name and published by a commit).
pub fn write_parquet<'a>(
    path: &Path,
    batches: impl IntoIterator<Item = &'a RecordBatch>,
    schema: datafusion::arrow::datatypes::SchemaRef,
    settings: &ParquetSettings,
) -> std::io::Result<u64> {
    let file = File::create(path)?;
    let mut w =
        ArrowWriter::try_new(file, schema, Some(settings.writer_properties()?)).map_err(std::io::Error::other)?;
    for b in batches {
        w.write(b).map_err(std::io::Error::other)?;
    }
    let file = w.into_inner().map_err(std::io::Error::other)?;
    file.sync_all()?;
    file.metadata().map(|m| m.len())
}

/// Writes `batch` as the Parquet file `path`, durably: temporary name, fsync,
/// rename, fsync of the directory. Returns the file's size.
pub fn write_parquet_file(path: &Path, batch: &RecordBatch, settings: &ParquetSettings) -> std::io::Result<u64> {
    let tmp = temp_path(path);
    let written = write_parquet(&tmp, [batch], batch.schema(), settings).and_then(|bytes| {
        publish(&tmp, path)?;
        Ok(bytes)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use std::sync::Arc;

    #[test]
    fn a_file_is_replaced_whole_and_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("devices.toml");
        write_file(&p, b"one").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_file(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn parquet_files_declare_their_sort_order_only_when_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let batch = RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)]).unwrap();
        let sorted = dir.path().join("sorted.parquet");
        let plain = dir.path().join("plain.parquet");
        assert!(write_parquet_file(&sorted, &batch, &ParquetSettings::new(3).sorted_by(&[0])).unwrap() > 0);
        write_parquet_file(&plain, &batch, &ParquetSettings::new(3)).unwrap();
        let sorting = |p: &Path| {
            let r = SerializedFileReader::new(File::open(p).unwrap()).unwrap();
            r.metadata().row_group(0).sorting_columns().cloned()
        };
        assert_eq!(sorting(&sorted).map(|s| s.len()), Some(1));
        assert_eq!(sorting(&plain), None);
        assert!(
            ParquetSettings::new(99).writer_properties().is_err(),
            "zstd levels stop at 22"
        );
    }
}
