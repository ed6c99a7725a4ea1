//! From an archive and an events table to labelled feature rows: the steps that
//! `larmor train`, `larmor evaluate` and the benchmark share.

use crate::HOUR_MS;
use crate::error::{ModelError, Result};
use crate::events::EventLog;
use crate::features::{FeatureMatrix, FeatureOptions, RowTimes, ServiceLog, compute, spec_for};
use crate::hourly::{ScanOptions, anomalies_dir, read_anomalies, scan_hourly};
use crate::model::fingerprint;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

/// Feature rows of a whole archive with what labelling and splitting need.
pub struct TrainingData {
    pub matrix: FeatureMatrix,
    pub events: EventLog,
    /// Per machine: end of its data (ms).
    pub observed_until: HashMap<String, i64>,
    pub fingerprints: BTreeMap<String, String>,
    pub readings: u64,
    pub scan_seconds: f64,
    pub feature_seconds: f64,
    /// Whether the `anomalies` table fed the features.
    pub anomalies: bool,
}

/// Stage of [`load`] for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the archive: days done of days.
    Scan,
    Features,
}

/// Scans the archive, reads the anomalies table beside it (if any) and the events,
/// and computes feature rows every `opts.stride_hours`.
pub fn load(
    archive: &Path,
    events_path: &Path,
    opts: &FeatureOptions,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<TrainingData> {
    let events = EventLog::load(events_path)?;
    let t = Instant::now();
    let hourly = scan_hourly(archive, &ScanOptions::default(), &mut |d, n| {
        progress(Stage::Scan, d, n)
    })?;
    if hourly.machines.is_empty() {
        return Err(ModelError::Input(format!(
            "{}: the archive holds no readings",
            archive.display()
        )));
    }
    let unknown: Vec<&String> = events.failures.keys().filter(|m| hourly.machine(m).is_none()).collect();
    if unknown.len() == events.failures.len() && !unknown.is_empty() {
        return Err(ModelError::Input(format!(
            "none of the machines with failures in {} is in the archive (e.g. `{}`): are the events for this archive?",
            events_path.display(),
            unknown[0]
        )));
    }
    let anomalies = match anomalies_dir(archive) {
        Some(d) => Some(read_anomalies(&d, None)?),
        None => None,
    };
    let scan_seconds = t.elapsed().as_secs_f64();
    progress(Stage::Features, 0, 1);
    let t = Instant::now();
    let spec = spec_for(&hourly, anomalies.as_ref(), true);
    let service = ServiceLog::from_events(&events);
    let matrix = compute(
        &spec,
        &hourly,
        anomalies.as_ref(),
        Some(&service),
        RowTimes::Stride {
            every_hours: opts.stride_hours,
            warm_up_hours: opts.warm_up_hours,
            from_ms: None,
            until_ms: None,
        },
    );
    progress(Stage::Features, 1, 1);
    Ok(TrainingData {
        observed_until: hourly
            .machines
            .iter()
            .map(|m| (m.machine_id.clone(), m.end_hour() * HOUR_MS))
            .collect(),
        fingerprints: hourly
            .machines
            .iter()
            .map(|m| (m.machine_id.clone(), fingerprint(m)))
            .collect(),
        readings: hourly.readings,
        matrix,
        events,
        scan_seconds,
        feature_seconds: t.elapsed().as_secs_f64(),
        anomalies: anomalies.is_some(),
    })
}
