//! The Arrow schema of every table, used by the code that writes its files and
//! by the SQL catalogue that reads them. Timestamps are milliseconds, UTC.

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::{Arc, OnceLock};

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn once(cell: &'static OnceLock<SchemaRef>, fields: impl FnOnce() -> Vec<Field>) -> SchemaRef {
    cell.get_or_init(|| Arc::new(Schema::new(fields()))).clone()
}

/// `readings`, the archive: one row per reading. The partition columns `date`
/// and `stream` come from the path, not the files.
pub fn readings() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    once(&S, || {
        vec![
            Field::new("ts", ts(), false),
            Field::new("machine_id", DataType::Utf8, false),
            Field::new("channel", DataType::Utf8, false),
            Field::new("value", DataType::Float64, false),
        ]
    })
}

/// `anomalies`: one row per anomaly episode, as the detectors report it.
pub fn anomalies() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    once(&S, || {
        vec![
            Field::new("ts", ts(), false),
            Field::new("machine_id", DataType::Utf8, false),
            Field::new("stream", DataType::Utf8, false),
            // The channel that triggered; `channels` lists every one involved.
            Field::new("channel", DataType::Utf8, false),
            Field::new("channels", DataType::Utf8, false),
            Field::new("detector", DataType::Utf8, false),
            // machine_health, environment or sensor_fault
            Field::new("kind", DataType::Utf8, false),
            Field::new("score", DataType::Float64, false),
            Field::new("value", DataType::Float64, false),
            Field::new("explanation", DataType::Utf8, false),
        ]
    })
}

/// `alerts`: anomalies that passed the alert stages and were routed to parties.
pub fn alerts() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    once(&S, || {
        vec![
            Field::new("ts", ts(), false),
            Field::new("machine_id", DataType::Utf8, false),
            Field::new("id", DataType::Utf8, false),
            Field::new("site", DataType::Utf8, false),
            Field::new("manufacturer", DataType::Utf8, false),
            Field::new("model", DataType::Utf8, false),
            Field::new("stream", DataType::Utf8, false),
            Field::new("channel", DataType::Utf8, false),
            // warning or critical
            Field::new("severity", DataType::Utf8, false),
            Field::new("detector", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("score", DataType::Float64, false),
            Field::new("value", DataType::Float64, false),
            Field::new("summary", DataType::Utf8, false),
            // Delivery channels that accepted it, comma-separated (`admin,manufacturer/aurora`).
            Field::new("delivered_to", DataType::Utf8, false),
        ]
    })
}

/// `forecasts`: one row per model run, machine and horizon (`larmor forecast
/// --write`, through `larmor_models::live::write_forecasts`).
pub fn forecasts() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    once(&S, || {
        vec![
            Field::new("issued_at", ts(), false),
            Field::new("machine_id", DataType::Utf8, false),
            // The data the forecast is based on ends here.
            Field::new("as_of", ts(), false),
            Field::new("horizon_days", DataType::Float64, false),
            // Calibrated probability of a failure (any mode) within `horizon_days`.
            Field::new("probability", DataType::Float64, false),
            // At or above the model's alarm threshold for this horizon.
            Field::new("alarm", DataType::Boolean, false),
            // Most likely mode should it fail, and its probability.
            Field::new("mode", DataType::Utf8, false),
            Field::new("mode_probability", DataType::Float64, false),
            // Predicted failure time and its 80 % interval; null when none is expected
            // within the model's time-to-failure cap.
            Field::new("predicted_failure_at", ts(), true),
            Field::new("failure_window_start", ts(), true),
            Field::new("failure_window_end", ts(), true),
            // `feature (+log-odds); ...`: what pushed the probability up.
            Field::new("top_features", DataType::Utf8, false),
            Field::new("model", DataType::Utf8, false),
        ]
    })
}

/// `events`: failures (onset → downtime → repair), averted failures, planned
/// maintenance and sensor faults, as the datasets crate writes the ground truth.
pub fn events() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    once(&S, || {
        vec![
            Field::new("event_id", DataType::UInt32, false),
            Field::new("machine_id", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("mode", DataType::Utf8, false),
            Field::new("channel", DataType::Utf8, true),
            Field::new("stream", DataType::Utf8, true),
            Field::new("onset", ts(), false),
            Field::new("downtime_start", ts(), true),
            Field::new("repair_end", ts(), false),
            Field::new("planned", DataType::Boolean, false),
            Field::new("detail", DataType::Utf8, false),
        ]
    })
}

/// `machines` as built from the device registry (the columns every source has;
/// a `machines.csv` may carry more).
pub fn machines() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    once(&S, || {
        vec![
            Field::new("machine_id", DataType::Utf8, false),
            Field::new("site", DataType::Utf8, false),
            Field::new("manufacturer", DataType::Utf8, false),
            Field::new("model", DataType::Utf8, false),
            Field::new("firmware", DataType::Utf8, false),
            Field::new("revoked", DataType::Boolean, false),
        ]
    })
}

/// The column names of a schema, in order (e.g. a CSV header).
pub fn column_names(schema: &Schema) -> Vec<&str> {
    schema.fields().iter().map(|f| f.name().as_str()).collect()
}
