//! The ground-truth events table as files: `events.csv` (text, for people and
//! spreadsheets) and `events.parquet` (typed, for SQL and training code). Both
//! hold the same rows in the same order.

use crate::scenario::Event;
use crate::time::format_iso;
use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::record_batch::RecordBatch;
use std::path::Path;
use std::sync::Arc;

/// Arrow schema of `events.parquet` (defined with every other table's in `larmor_datadir`).
pub use larmor_datadir::schema::events as schema;

/// Appends one CSV row (RFC 4180 quoting where needed).
pub fn push_csv_row<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let f = f.as_ref();
        if f.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push('\n');
}

/// `events.csv`; event ids count from 1 in table order.
pub fn to_csv(events: &[Event]) -> String {
    let mut out = larmor_datadir::schema::column_names(&schema()).join(",");
    out.push('\n');
    for (i, e) in events.iter().enumerate() {
        let row = [
            (i + 1).to_string(),
            e.machine_id.clone(),
            e.kind.as_str().to_string(),
            e.mode.to_string(),
            e.channel.unwrap_or_default().to_string(),
            e.stream.map(|s| s.as_str()).unwrap_or_default().to_string(),
            format_iso(e.onset_ms),
            e.downtime_start_ms.map(format_iso).unwrap_or_default(),
            format_iso(e.repair_end_ms),
            e.planned.to_string(),
            e.detail.clone(),
        ];
        push_csv_row(&mut out, &row);
    }
    out
}

/// The events as one Arrow batch (sorted by machine, then event id).
pub fn to_batch(events: &[Event]) -> datafusion::arrow::error::Result<RecordBatch> {
    let ts = |v: Vec<Option<i64>>| TimestampMillisecondArray::from(v).with_timezone("UTC");
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(1..=events.len() as u32)),
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.machine_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.kind.as_str()))),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.mode))),
        Arc::new(StringArray::from_iter(events.iter().map(|e| e.channel))),
        Arc::new(StringArray::from_iter(
            events.iter().map(|e| e.stream.map(|s| s.as_str())),
        )),
        Arc::new(ts(events.iter().map(|e| Some(e.onset_ms)).collect())),
        Arc::new(ts(events.iter().map(|e| e.downtime_start_ms).collect())),
        Arc::new(ts(events.iter().map(|e| Some(e.repair_end_ms)).collect())),
        Arc::new(BooleanArray::from_iter(events.iter().map(|e| Some(e.planned)))),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.detail.as_str()))),
    ];
    RecordBatch::try_new(schema(), cols)
}

/// Writes `events.csv` and `events.parquet` into `dir`.
pub fn write(dir: &Path, events: &[Event]) -> std::io::Result<()> {
    let data = larmor_datadir::DataDir::new(dir);
    larmor_datadir::durable::write_file(&data.events_csv(), to_csv(events).as_bytes())?;
    let batch = to_batch(events).map_err(std::io::Error::other)?;
    // Rows are sorted by machine (column 1), then event id (column 0).
    let settings = larmor_datadir::durable::ParquetSettings::new(3).sorted_by(&[1, 0]);
    larmor_datadir::durable::write_parquet_file(&data.events(), &batch, &settings).map(|_| ())
}
