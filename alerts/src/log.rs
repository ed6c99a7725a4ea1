//! The `alerts` table writer: every alert that passed the dedup stage, with the
//! delivery channels that accepted it, as Parquet beside the archive (see
//! `larmor_analytics::tables`). The outboxes are what parties receive; this is
//! the hospital's own record of what was sent to whom.

use crate::alert::{Alert, Severity};
use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::record_batch::RecordBatch;
use larmor_analytics::anomaly_log::kind_name;
use larmor_analytics::tables::{alerts_schema, day_of, write_day};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Buffers alerts per day until [`AlertLog::flush`].
pub struct AlertLog {
    dir: PathBuf,
    pending: BTreeMap<i64, Vec<(Alert, String)>>,
}

impl AlertLog {
    /// `dir` is the table's root, e.g. `larmor-data/alerts`.
    pub fn new(dir: &Path) -> Self {
        AlertLog {
            dir: dir.to_path_buf(),
            pending: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, alert: &Alert, delivered_to: &[String]) {
        self.pending
            .entry(day_of(alert.ts_ms))
            .or_default()
            .push((alert.clone(), delivered_to.join(",")));
    }

    pub fn pending(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    /// Writes what is buffered; returns the rows written. On an error the rows
    /// stay buffered for the next attempt.
    pub fn flush(&mut self) -> std::io::Result<usize> {
        let mut written = 0;
        while let Some((&day, rows)) = self.pending.iter().next() {
            write_day(&self.dir, day, "alerts", &batch(rows).map_err(std::io::Error::other)?)?;
            written += rows.len();
            self.pending.remove(&day);
        }
        Ok(written)
    }
}

fn batch(rows: &[(Alert, String)]) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let strings = |f: &dyn Fn(&Alert) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(a, _)| f(a))))
    };
    RecordBatch::try_new(
        alerts_schema(),
        vec![
            Arc::new(
                TimestampMillisecondArray::from_iter_values(rows.iter().map(|(a, _)| a.ts_ms)).with_timezone("UTC"),
            ),
            strings(&|a| a.machine_id.clone()),
            strings(&|a| a.id.clone()),
            strings(&|a| a.site.clone()),
            strings(&|a| a.manufacturer.clone()),
            strings(&|a| a.model.clone()),
            strings(&|a| a.stream.as_str().to_string()),
            strings(&|a| a.channels.first().copied().unwrap_or("").to_string()),
            strings(&|a| {
                match a.severity {
                    Severity::Warning => "warning",
                    Severity::Critical => "critical",
                }
                .to_string()
            }),
            strings(&|a| a.detector.to_string()),
            strings(&|a| kind_name(a.kind).to_string()),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|(a, _)| a.score))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|(a, _)| a.value))),
            strings(&|a| a.summary.clone()),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|(_, d)| d.as_str()))),
        ],
    )
}
