//! The `alerts` table's rows: every notice batch the stages let through, with
//! the channels it was queued to, as Parquet beside the archive. The channels
//! get sealed notices; this is the hospital's own record of what was sent to whom.

use crate::alert::Alert;
use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::record_batch::RecordBatch;
use larmor_datadir::{DataDir, DatedWriter, Table, schema};
use std::sync::Arc;

/// An alert and the channels its notice was queued to (`admin/st-anne,manufacturer/aurora`).
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
    // The evidence that triggered the alert (the first), or the forecast.
    let first = |a: &Alert| a.evidence.first().cloned();
    RecordBatch::try_new(
        schema::alerts(),
        vec![
            Arc::new(
                TimestampMillisecondArray::from_iter_values(rows.iter().map(|(a, _)| a.updated_at_ms))
                    .with_timezone("UTC"),
            ),
            strings(&|a| a.machine_id.clone()),
            strings(&|a| a.id.clone()),
            strings(&|a| a.site.clone()),
            strings(&|a| a.vendor.clone()),
            strings(&|a| a.model.clone()),
            strings(&|a| first(a).map(|e| e.stream.as_str().to_string()).unwrap_or_default()),
            strings(&|a| first(a).map(|e| e.channel).unwrap_or_default()),
            strings(&|a| a.severity.as_str().to_string()),
            strings(&|a| {
                first(a)
                    .map(|e| e.detector)
                    .unwrap_or_else(|| a.forecast.as_ref().map(|f| f.model.clone()).unwrap_or_default())
            }),
            strings(&|a| a.class.as_str().to_string()),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|(a, _)| first(a).map(|e| e.score).unwrap_or(0.0)),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|(a, _)| first(a).map(|e| e.value).unwrap_or(f64::NAN)),
            )),
            strings(&|a| a.summary.clone()),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|(_, d)| d.as_str()))),
        ],
    )
}
