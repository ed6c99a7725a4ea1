//! The latest forecasts, read from the `forecasts` table of the data directory
//! (`larmor_datadir::schema::forecasts`, written by the forecasting refresh):
//! the newest two days' partitions, and per machine the rows of its latest
//! model run. Rows whose horizon is not one of the exported ones
//! ([`larmor_metrics::FORECAST_HORIZONS`]) or whose probability is not within
//! 0..1 are skipped and counted, not applied.

use super::forecast::{ForecastRow, horizon_label};
use datafusion::arrow::array::{Array, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use larmor_datadir::{DataDir, naming};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Days (date partitions, newest first) read for the latest run of each machine.
pub const DAYS_READ: usize = 2;

/// What the table holds now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableForecasts {
    /// Per machine, the rows of its latest run (issued_at), exported horizons only.
    pub rows: Vec<ForecastRow>,
    /// Rows of those runs skipped: a horizon that is not exported, or a probability outside 0..1.
    pub skipped: usize,
}

/// The data files read (path and size): when they are the same, the table has not changed.
pub type Signature = Vec<(PathBuf, u64)>;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("forecasts table {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("forecasts table file {path} does not read as the forecasts schema: {reason}")]
    Format { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The data files of the newest [`DAYS_READ`] partitions, with their sizes.
pub fn signature(data: &DataDir) -> Result<Signature, TableError> {
    let dir = data.forecasts();
    let mut out = Vec::new();
    for (_, day) in naming::partitions(&dir, "date")
        .map_err(io(&dir))?
        .iter()
        .rev()
        .take(DAYS_READ)
    {
        for e in std::fs::read_dir(day).map_err(io(day))? {
            let e = e.map_err(io(day))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if naming::is_data_file(&name) {
                out.push((e.path(), e.metadata().map_err(io(day))?.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads the files of a [`signature`].
pub fn read(files: &Signature) -> Result<TableForecasts, TableError> {
    // Per machine: its latest issued_at, and that run's rows.
    let mut latest: HashMap<String, (i64, Vec<ForecastRow>, usize)> = HashMap::new();
    for (path, _) in files {
        let file = std::fs::File::open(path).map_err(io(path))?;
        let format = |reason: String| TableError::Format {
            path: path.clone(),
            reason,
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| format(e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| format(e.to_string()))?;
            for (row, valid) in rows_of(&batch).map_err(format)? {
                let entry = latest
                    .entry(row.machine_id.clone())
                    .or_insert((row.issued_at_ms, Vec::new(), 0));
                if row.issued_at_ms > entry.0 {
                    *entry = (row.issued_at_ms, Vec::new(), 0);
                }
                if row.issued_at_ms == entry.0 {
                    if valid {
                        entry.1.push(row);
                    } else {
                        entry.2 += 1;
                    }
                }
            }
        }
    }
    let mut out = TableForecasts::default();
    for (_, (_, rows, skipped)) in latest {
        out.rows.extend(rows);
        out.skipped += skipped;
    }
    out.rows
        .sort_by(|a, b| (&a.machine_id, a.horizon, &a.mode).cmp(&(&b.machine_id, b.horizon, &b.mode)));
    Ok(out)
}

/// A batch's rows, each with whether the fleet can take it (exported horizon, probability in 0..1).
fn rows_of(batch: &RecordBatch) -> Result<Vec<(ForecastRow, bool)>, String> {
    fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
        b.column_by_name(name)
            .ok_or_else(|| format!("no column {name}"))?
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| format!("column {name} has type {}", b.column_by_name(name).unwrap().data_type()))
    }
    let issued = col::<TimestampMillisecondArray>(batch, "issued_at")?;
    let machine = col::<StringArray>(batch, "machine_id")?;
    let mode = col::<StringArray>(batch, "mode")?;
    let probability = col::<Float64Array>(batch, "probability")?;
    let horizon_days = col::<Float64Array>(batch, "horizon_days")?;
    let predicted = col::<TimestampMillisecondArray>(batch, "predicted_failure_at")?;
    let model = col::<StringArray>(batch, "model")?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let days = horizon_days.value(i);
        let horizon = if days.is_finite() && days > 0.0 && days < 3650.0 {
            Duration::from_secs((days * 86_400.0).round() as u64)
        } else {
            Duration::ZERO
        };
        let p = probability.value(i);
        let valid = horizon_label(horizon).is_some() && (0.0..=1.0).contains(&p);
        out.push((
            ForecastRow {
                machine_id: machine.value(i).to_string(),
                mode: mode.value(i).to_string(),
                probability: p,
                horizon,
                predicted_failure_at_ms: (!predicted.is_null(i)).then(|| predicted.value(i)),
                model: model.value(i).to_string(),
                issued_at_ms: issued.value(i),
            },
            valid,
        ));
    }
    Ok(out)
}

/// Rows as the forecasts table stores them (`larmor_datadir::schema::forecasts`),
/// for tests and demos: the forecasting crate's own writer
/// (`larmor_models::live`) fills every column from a model run; here the columns
/// a [`ForecastRow`] does not carry get plain values (as of = issued; alarm at
/// p ≥ 0.5; the mode's probability 1; no failure window; no features).
pub fn to_batch(rows: &[ForecastRow]) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::array::{ArrayRef, BooleanArray};
    use std::sync::Arc;
    let strings =
        |f: fn(&ForecastRow) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    let times = |v: Vec<Option<i64>>| -> ArrayRef { Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC")) };
    let issued = || times(rows.iter().map(|r| Some(r.issued_at_ms)).collect());
    let none = || times(vec![None; rows.len()]);
    RecordBatch::try_new(
        larmor_datadir::schema::forecasts(),
        vec![
            issued(),
            strings(|r| &r.machine_id),
            issued(),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.horizon.as_secs_f64() / 86_400.0),
            )),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.probability))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.probability >= 0.5)))),
            strings(|r| &r.mode),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|_| 1.0))),
            times(rows.iter().map(|r| r.predicted_failure_at_ms).collect()),
            none(),
            none(),
            strings(|_| ""),
            strings(|r| &r.model),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use larmor_datadir::Table;
    use larmor_datadir::dated::DatedWriter;

    fn row(machine: &str, mode: &str, p: f64, days: u64, issued: i64) -> ForecastRow {
        ForecastRow {
            machine_id: machine.into(),
            mode: mode.into(),
            probability: p,
            horizon: Duration::from_secs(days * 86_400),
            predicted_failure_at_ms: (p > 0.5).then_some(issued + 86_400_000),
            model: "m1".into(),
            issued_at_ms: issued,
        }
    }

    fn write(data: &DataDir, rows: &[ForecastRow]) {
        let mut w = DatedWriter::new(data, Table::Forecasts, to_batch);
        for r in rows {
            w.push(r.issued_at_ms, r.clone());
        }
        w.flush().unwrap();
    }

    #[test]
    fn no_table_is_no_forecasts() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let sig = signature(&data).unwrap();
        assert!(sig.is_empty());
        assert_eq!(read(&sig).unwrap(), TableForecasts::default());
    }

    #[test]
    fn each_machine_gets_its_latest_run_and_bad_rows_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let day = 20_400 * 86_400_000;
        write(
            &data,
            &[
                // Yesterday: A's older run, B's only run.
                row("A", "cold_head", 0.9, 7, day - 3_600_000),
                row("B", "helium_leak", 0.2, 3, day - 3_600_000),
            ],
        );
        let before = signature(&data).unwrap();
        write(
            &data,
            &[
                row("A", "cold_head", 0.1, 1, day + 5),
                row("A", "cold_head", 0.3, 7, day + 5),
                row("A", "cold_head", 0.4, 30, day + 5), // not an exported horizon
                row("A", "compressor", 1.5, 7, day + 5), // not a probability
            ],
        );
        let sig = signature(&data).unwrap();
        assert_ne!(sig, before, "a new file changes the signature");
        let t = read(&sig).unwrap();
        assert_eq!(t.skipped, 2);
        let got: Vec<(&str, f64, u64)> = t
            .rows
            .iter()
            .map(|r| (r.machine_id.as_str(), r.probability, r.horizon.as_secs() / 86_400))
            .collect();
        assert_eq!(got, [("A", 0.1, 1), ("A", 0.3, 7), ("B", 0.2, 3)]);
        assert_eq!(t.rows[2].predicted_failure_at_ms, None);
    }

    #[test]
    fn a_file_of_another_schema_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let part = data.forecasts().join(naming::date_partition(20_400));
        std::fs::create_dir_all(&part).unwrap();
        let bad = part.join("forecasts-x.parquet");
        std::fs::write(&bad, b"not parquet").unwrap();
        let e = read(&signature(&data).unwrap()).unwrap_err();
        assert!(e.to_string().contains("forecasts-x.parquet"), "{e}");
    }
}
