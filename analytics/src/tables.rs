//! The SQL catalogue: every table Larmor keeps, its schema, and where its files
//! live. A data directory holds
//!
//! ```text
//! archive/     readings     date=YYYY-MM-DD/stream=<stream>/*.parquet (ingest)
//!              archive_partitions  one row (date, stream) per partition holding data
//! anomalies/   anomalies    date=YYYY-MM-DD/*.parquet (detectors, `larmor detect --archive`)
//! alerts/      alerts       date=YYYY-MM-DD/*.parquet (alert pipeline, after dedup)
//! forecasts/   forecasts    date=YYYY-MM-DD/*.parquet (forecasting models)
//! machines.csv machines     or, without it, devices.toml (the device registry)
//! events.parquet events     ground truth / service log: failures, maintenance, sensor faults
//! ```
//!
//! A table whose files are missing is still registered, empty, with its schema:
//! a query over a young data directory returns no rows instead of failing.

use crate::sql::QueryError;
use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// `anomalies`: one row per anomaly episode, as the detectors report it.
pub fn anomalies_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
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
        ]))
    })
    .clone()
}

/// `alerts`: anomalies that passed the dedup stage and were routed to parties.
pub fn alerts_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
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
        ]))
    })
    .clone()
}

/// `forecasts`: one row per model run, machine and failure mode.
pub fn forecasts_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("issued_at", ts(), false),
            Field::new("machine_id", DataType::Utf8, false),
            Field::new("mode", DataType::Utf8, false),
            // Probability that the mode causes downtime within `horizon_days`.
            Field::new("probability", DataType::Float64, false),
            Field::new("horizon_days", DataType::Float64, false),
            Field::new("predicted_failure_at", ts(), true),
            Field::new("model", DataType::Utf8, false),
        ]))
    })
    .clone()
}

/// `events`: failures (onset → downtime → repair), averted failures, planned
/// maintenance and sensor faults. The datasets crate writes it as ground truth.
pub fn events_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
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
        ]))
    })
    .clone()
}

/// `machines` when only the device registry is there (the columns every source has).
pub fn machines_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("machine_id", DataType::Utf8, false),
            Field::new("site", DataType::Utf8, false),
            Field::new("manufacturer", DataType::Utf8, false),
            Field::new("model", DataType::Utf8, false),
            Field::new("firmware", DataType::Utf8, false),
            Field::new("revoked", DataType::Boolean, false),
        ]))
    })
    .clone()
}

/// Where each table of a data directory lives.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub archive: PathBuf,
    pub root: PathBuf,
}

impl DataDir {
    /// The tables around an archive: its parent directory holds the others.
    pub fn around(archive: &Path) -> DataDir {
        let root = archive
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        DataDir {
            archive: archive.to_path_buf(),
            root,
        }
    }
    pub fn anomalies(&self) -> PathBuf {
        self.root.join("anomalies")
    }
    pub fn alerts(&self) -> PathBuf {
        self.root.join("alerts")
    }
    pub fn forecasts(&self) -> PathBuf {
        self.root.join("forecasts")
    }
    pub fn events(&self) -> PathBuf {
        self.root.join("events.parquet")
    }
    pub fn machines_csv(&self) -> PathBuf {
        self.root.join("machines.csv")
    }
    pub fn registry(&self) -> PathBuf {
        self.root.join("devices.toml")
    }
}

fn has_parquet(dir: &Path) -> bool {
    fn walk(dir: &Path, depth: usize) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') {
                return false; // temporary files, manifests
            }
            if p.is_dir() {
                depth > 0 && walk(&p, depth - 1)
            } else {
                name.ends_with(".parquet")
            }
        })
    }
    walk(dir, 3)
}

fn empty(ctx: &SessionContext, name: &str, schema: SchemaRef) -> Result<(), QueryError> {
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
    Ok(())
}

/// A date-partitioned Parquet table (`date=YYYY-MM-DD/*.parquet`), or an empty one.
async fn register_dated(ctx: &SessionContext, name: &str, dir: &Path, schema: SchemaRef) -> Result<(), QueryError> {
    if !has_parquet(dir) {
        return empty(ctx, name, schema);
    }
    let abs = std::fs::canonicalize(dir).map_err(|e| QueryError::Format(format!("{}: {e}", dir.display())))?;
    let options = ListingOptions::new(Arc::new(crate::sql::parquet_format(ctx)))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("date".into(), DataType::Utf8)]);
    ctx.register_listing_table(name, format!("{}/", abs.display()), options, Some(schema), None)
        .await?;
    Ok(())
}

/// Registers `anomalies`, `alerts`, `forecasts`, `machines` and `events` from the
/// data directory around `archive` (`readings` is registered by [`crate::sql`]).
pub async fn register_side_tables(ctx: &SessionContext, dir: &DataDir) -> Result<(), QueryError> {
    register_dated(ctx, "anomalies", &dir.anomalies(), anomalies_schema()).await?;
    register_dated(ctx, "alerts", &dir.alerts(), alerts_schema()).await?;
    register_dated(ctx, "forecasts", &dir.forecasts(), forecasts_schema()).await?;

    let events = dir.events();
    if events.is_file() {
        ctx.register_parquet("events", events.to_string_lossy().as_ref(), Default::default())
            .await?;
    } else {
        empty(ctx, "events", events_schema())?;
    }

    let csv = dir.machines_csv();
    let registry = dir.registry();
    if csv.is_file() {
        ctx.register_csv("machines", csv.to_string_lossy().as_ref(), CsvReadOptions::new())
            .await?;
    } else if registry.is_file() {
        let r = larmor_ingest::DeviceRegistry::load(&registry)
            .map_err(|e| QueryError::Format(format!("the machines table: {e}")))?;
        ctx.register_table("machines", Arc::new(machines_table(r.devices())?))?;
    } else {
        empty(ctx, "machines", machines_schema())?;
    }
    Ok(())
}

fn machines_table(devices: &[larmor_ingest::Device]) -> Result<MemTable, QueryError> {
    let col = |f: fn(&larmor_ingest::Device) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(devices.iter().map(f)))
    };
    let batch = RecordBatch::try_new(
        machines_schema(),
        vec![
            col(|d| &d.machine_id),
            col(|d| &d.site),
            col(|d| &d.manufacturer),
            col(|d| &d.model),
            col(|d| &d.firmware),
            Arc::new(BooleanArray::from_iter(devices.iter().map(|d| Some(d.revoked)))),
        ],
    )
    .map_err(|e| QueryError::Format(e.to_string()))?;
    Ok(MemTable::try_new(machines_schema(), vec![vec![batch]])?)
}

/// Writes one day's rows of a dated table as `dir/date=YYYY-MM-DD/<prefix>-<unique>.parquet`,
/// durably (temporary name, fsync, rename), so readers never see half a file.
pub fn write_day(dir: &Path, day: i64, prefix: &str, batch: &RecordBatch) -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into());
    let part = dir.join(format!("date={date}"));
    std::fs::create_dir_all(&part)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let name = format!(
        "{prefix}-{}-{now}-{}.parquet",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    larmor_ingest::archive::write_durably(&part, &name, batch, 3)?;
    Ok(part.join(name))
}

/// UTC day number of a millisecond timestamp.
pub fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(86_400_000)
}
