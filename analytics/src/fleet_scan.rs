//! Batch detection over a whole archive: replays every machine's readings, day
//! by day and oldest first, through the same [`DetectorSet`] the pipeline runs,
//! and writes the anomalies table. This is how an archive that was backfilled or
//! imported (or ingested before a detector existed) gets its `anomalies`.

use crate::anomaly_table;
use crate::detect::{DetectConfig, DetectorSet, warm};
use crate::sql::{self, QueryError};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::TimestampMillisecondType;
use larmor_datadir::DataDir;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a scan did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanReport {
    pub days: u64,
    pub readings: u64,
    pub anomalies: u64,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Config(#[from] crate::detect::ConfigError),
    #[error("cannot write the anomalies table under {dir}: {source}")]
    Write { dir: String, source: std::io::Error },
    #[error("{0} already holds anomalies; delete it (or pass --replace) to scan again, so no episode is counted twice")]
    Exists(String),
}

const DAY_MS: i64 = 86_400_000;

/// The archive's first and last reading time, or None when it is empty.
async fn time_range(archive: &Path) -> Result<Option<(i64, i64)>, QueryError> {
    let ctx = sql::open_archive(archive).await?;
    let b = sql::run(&ctx, "SELECT min(ts), max(ts) FROM readings").await?;
    let Some(b) = b.first().filter(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let (lo, hi) = (
        b.column(0).as_primitive::<TimestampMillisecondType>(),
        b.column(1).as_primitive::<TimestampMillisecondType>(),
    );
    if lo.is_null(0) || hi.is_null(0) {
        return Ok(None);
    }
    Ok(Some((lo.value(0), hi.value(0))))
}

/// Scans `archive` and writes the anomalies beside it (`<data dir>/anomalies`).
/// Readings are averaged per `step` (no averaging when the archive is coarser).
/// `replace` deletes an existing anomalies table first.
pub async fn scan(
    archive: &Path,
    config: &DetectConfig,
    step: Duration,
    replace: bool,
) -> Result<ScanReport, ScanError> {
    let started = Instant::now();
    let data = DataDir::around(archive);
    let out = data.anomalies();
    if out.exists() {
        if !replace {
            return Err(ScanError::Exists(out.display().to_string()));
        }
        std::fs::remove_dir_all(&out).map_err(|source| ScanError::Write {
            dir: out.display().to_string(),
            source,
        })?;
    }
    let mut report = ScanReport::default();
    let Some((first, last)) = time_range(archive).await? else {
        return Ok(report);
    };
    let mut detectors = DetectorSet::from_config(config)?;
    let mut log = anomaly_table::writer(&data);
    let mut found = Vec::new();
    let mut day = first.div_euclid(DAY_MS) * DAY_MS;
    while day <= last {
        // One day at a time keeps memory flat; each machine's detectors see its
        // readings in time order across days.
        report.readings += warm::archive_frames(archive, day, day + DAY_MS, step, |f| {
            detectors.observe(&f, &mut found);
            for a in found.drain(..) {
                log.push(a.ts_ms, a);
            }
        })
        .await?;
        report.anomalies += log.pending() as u64;
        log.flush().map_err(|source| ScanError::Write {
            dir: out.display().to_string(),
            source,
        })?;
        report.days += 1;
        day += DAY_MS;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
