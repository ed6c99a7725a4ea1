//! The writer of a dated table (`anomalies`, `alerts`, `forecasts`): rows are
//! buffered per UTC day and written, on flush, as one durable Parquet file per
//! day (`<table>/date=YYYY-MM-DD/<table>-<unique>.parquet`).

use crate::durable::{ParquetSettings, write_parquet_file};
use crate::layout::{DataDir, Table};
use crate::naming;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Turns buffered rows into a batch of the table's schema.
pub type ToBatch<R> = fn(&[R]) -> Result<RecordBatch, ArrowError>;

/// Buffers one dated table's rows per day until [`DatedWriter::flush`].
pub struct DatedWriter<R> {
    table: Table,
    /// The data directory's root, and the table's directory in it.
    root: PathBuf,
    dir: PathBuf,
    to_batch: ToBatch<R>,
    pending: BTreeMap<i64, Vec<R>>,
}

impl<R> DatedWriter<R> {
    /// A writer of `table` (one of [`Table::DATED`]) in the data directory `data`.
    pub fn new(data: &DataDir, table: Table, to_batch: ToBatch<R>) -> Self {
        debug_assert!(Table::DATED.contains(&table), "{table:?} is not a dated table");
        DatedWriter {
            table,
            root: data.root().to_path_buf(),
            dir: data.table(table),
            to_batch,
            pending: BTreeMap::new(),
        }
    }

    pub fn table(&self) -> Table {
        self.table
    }

    /// Buffers a row that belongs to the day of `ts_ms`.
    pub fn push(&mut self, ts_ms: i64, row: R) {
        self.pending.entry(naming::day_of(ts_ms)).or_default().push(row);
    }

    /// Rows buffered and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    /// Writes what is buffered, a file per day; returns the rows written. On an
    /// error the rows not yet written stay buffered for the next attempt.
    pub fn flush(&mut self) -> std::io::Result<usize> {
        let mut written = 0;
        while let Some((&day, rows)) = self.pending.iter().next() {
            let batch = (self.to_batch)(rows).map_err(std::io::Error::other)?;
            let dir = self.dir.join(naming::date_partition(day));
            std::fs::create_dir_all(&self.root)?;
            crate::durable::create_dirs(&self.root, dir.strip_prefix(&self.root).unwrap_or(&dir))?;
            let path = dir.join(naming::table_file(self.table.name()));
            write_parquet_file(&path, &batch, &ParquetSettings::new(3))?;
            written += rows.len();
            self.pending.remove(&day);
        }
        Ok(written)
    }
}

impl<R> DatedWriter<R> {
    /// [`DatedWriter::flush`] for a running pipeline, where the table is a record
    /// and not the delivery: an error is logged and the rows are kept for the next
    /// flush. False when the write failed.
    pub fn flush_or_keep(&mut self) -> bool {
        match self.flush() {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(table = self.table.name(), error = %e, pending = self.pending(), "cannot write the table; will retry at the next flush");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray, TimestampMillisecondArray};
    use std::sync::Arc;

    fn forecasts(rows: &[(i64, &'static str)]) -> Result<RecordBatch, ArrowError> {
        let n = rows.len();
        let s = |v: &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, n))) };
        let ts = || -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.0)).with_timezone("UTC"))
        };
        let none = || -> ArrayRef { Arc::new(TimestampMillisecondArray::from(vec![None; n]).with_timezone("UTC")) };
        RecordBatch::try_new(
            Table::Forecasts.schema(),
            vec![
                ts(),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                ts(),
                Arc::new(Float64Array::from(vec![7.0; n])),
                Arc::new(Float64Array::from(vec![0.5; n])),
                Arc::new(BooleanArray::from(vec![false; n])),
                s("cold_head"),
                Arc::new(Float64Array::from(vec![0.6; n])),
                none(),
                none(),
                none(),
                s(""),
                s("test"),
            ],
        )
    }

    #[test]
    fn rows_go_to_their_day_and_nothing_is_left_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let mut w = DatedWriter::new(&data, Table::Forecasts, forecasts);
        let day = 20_000 * 86_400_000;
        w.push(day + 5, (day + 5, "A"));
        w.push(day + 86_400_000, (day + 86_400_000, "B"));
        w.push(day + 7, (day + 7, "C"));
        assert_eq!(w.pending(), 3);
        assert_eq!(w.flush().unwrap(), 3);
        assert_eq!(w.pending(), 0);
        let days = naming::partitions(&data.forecasts(), "date").unwrap();
        assert_eq!(days.len(), 2);
        assert_eq!(days[0].0, naming::date(20_000));
        for (_, d) in days {
            let names: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names.len(), 1);
            assert!(naming::is_data_file(&names[0]), "{names:?}");
        }
        assert_eq!(w.flush().unwrap(), 0, "nothing left to write");
    }
}
