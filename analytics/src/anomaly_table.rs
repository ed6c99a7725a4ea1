//! The `anomalies` table's rows: each anomaly episode the detectors report, as
//! a row of `larmor_datadir::schema::anomalies`, and the table's writer.

use crate::detect::{Anomaly, AnomalyKind};
use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::record_batch::RecordBatch;
use larmor_datadir::{DataDir, DatedWriter, Table, schema};
use std::sync::Arc;

/// The writer of the `anomalies` table of a data directory.
pub type AnomalyTable = DatedWriter<Anomaly>;

/// A writer of `data`'s anomalies table: `push(a.ts_ms, a)`, then `flush()`.
pub fn writer(data: &DataDir) -> AnomalyTable {
    DatedWriter::new(data, Table::Anomalies, batch)
}

/// Anomalies as a batch of the `anomalies` schema.
pub fn batch(rows: &[Anomaly]) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let strings =
        |f: &dyn Fn(&Anomaly) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    RecordBatch::try_new(
        schema::anomalies(),
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
pub fn kind_name(k: AnomalyKind) -> &'static str {
    match k {
        AnomalyKind::MachineHealth => "machine_health",
        AnomalyKind::Environment => "environment",
        AnomalyKind::SensorFault => "sensor_fault",
    }
}
