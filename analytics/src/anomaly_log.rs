//! The `anomalies` table writer: buffers the detectors' anomaly episodes and
//! writes them as Parquet, one file per day and flush (see [`crate::tables`]).

use crate::detect::Anomaly;
use crate::tables::{anomalies_schema, day_of, write_day};
use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::record_batch::RecordBatch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Buffers anomalies per day until [`AnomalyLog::flush`].
pub struct AnomalyLog {
    dir: PathBuf,
    pending: BTreeMap<i64, Vec<Anomaly>>,
}

impl AnomalyLog {
    /// `dir` is the table's root, e.g. `larmor-data/anomalies`.
    pub fn new(dir: &Path) -> Self {
        AnomalyLog {
            dir: dir.to_path_buf(),
            pending: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, a: &Anomaly) {
        self.pending.entry(day_of(a.ts_ms)).or_default().push(a.clone());
    }

    pub fn pending(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    /// Writes what is buffered; returns the number of rows written. On an error
    /// the rows stay buffered for the next attempt.
    pub fn flush(&mut self) -> std::io::Result<usize> {
        let mut written = 0;
        while let Some((&day, rows)) = self.pending.iter().next() {
            write_day(
                &self.dir,
                day,
                "anomalies",
                &batch(rows).map_err(std::io::Error::other)?,
            )?;
            written += rows.len();
            self.pending.remove(&day);
        }
        Ok(written)
    }
}

/// Anomalies as a batch of the `anomalies` schema.
pub fn batch(rows: &[Anomaly]) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let strings =
        |f: &dyn Fn(&Anomaly) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    RecordBatch::try_new(
        anomalies_schema(),
        vec![
            Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|a| a.ts_ms)).with_timezone("UTC")),
            strings(&|a| a.machine_id.clone()),
            strings(&|a| a.stream.as_str().to_string()),
            strings(&|a| a.channel().to_string()),
            strings(&|a| a.channels.join(",")),
            strings(&|a| a.detector.to_string()),
            strings(&|a| kind_name(a.kind).to_string()),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|a| a.score))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|a| a.value))),
            strings(&|a| a.explanation.clone()),
        ],
    )
}

/// The `kind` column's spelling (the same as the JSON notices').
pub fn kind_name(k: crate::AnomalyKind) -> &'static str {
    match k {
        crate::AnomalyKind::MachineHealth => "machine_health",
        crate::AnomalyKind::Environment => "environment",
        crate::AnomalyKind::SensorFault => "sensor_fault",
    }
}
