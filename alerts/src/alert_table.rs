//! The `alerts` table's rows: every alert that passed the dedup stage, with the
//! delivery channels that accepted it, as Parquet beside the archive. The outboxes are what parties receive; this is
//! the hospital's own record of what was sent to whom.

use crate::alert::{Alert, Severity};
use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::record_batch::RecordBatch;
use larmor_analytics::anomaly_table::kind_name;
use larmor_datadir::{DataDir, DatedWriter, Table, schema};
use std::sync::Arc;

/// An alert and the delivery channels that accepted it (`admin,manufacturer/aurora`).
pub type AlertRow = (Alert, String);

/// The writer of the `alerts` table of a data directory.
pub type AlertTable = DatedWriter<AlertRow>;

/// A writer of `data`'s alerts table.
pub fn writer(data: &DataDir) -> AlertTable {
    DatedWriter::new(data, Table::Alerts, batch)
}

pub fn batch(rows: &[AlertRow]) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let strings = |f: &dyn Fn(&Alert) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(a, _)| f(a))))
    };
    RecordBatch::try_new(
        schema::alerts(),
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
