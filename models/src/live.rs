//! Forecasts as of a time: what `larmor forecast` prints and appends to the
//! `forecasts` table (`--write`).
//!
//! For the pipeline (not wired into `larmor run` yet):
//!
//! ```ignore
//! let model = ForecastModel::load(&data_dir.models().join("model.json"))?;
//! let events = EventLog::load(&data_dir.events()).ok();           // the service log, if kept
//! let (forecasts, notes) = forecast_as_of(&model, data_dir.archive(), events.as_ref(), now_ms)?;
//! write_forecasts(&data_dir, now_ms, &forecasts)?;                 // the `forecasts` table
//! ```
//!
//! Only the last [`LOOKBACK_HOURS`] of the archive are read, and nothing at or after
//! the as-of time.

use crate::HOUR_MS;
use crate::error::{ModelError, Result};
use crate::events::EventLog;
use crate::features::{RowTimes, ServiceLog, compute, spec_for};
use crate::hourly::{ScanOptions, anomalies_dir, read_anomalies, scan_hourly};
use crate::model::ForecastModel;
use crate::spec::LOOKBACK_HOURS;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use larmor_datadir::{DataDir, DatedWriter, Table};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// One machine's forecast.
#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    pub machine_id: String,
    /// The data it is based on ends here (ms).
    pub as_of_ms: i64,
    pub horizons: Vec<HorizonForecast>,
    pub mode: String,
    pub mode_probability: f64,
    /// Predicted hours to failure and an 80 % interval; equal to the cap = "not within the cap".
    pub ttf_hours: f64,
    pub ttf_low_hours: f64,
    pub ttf_high_hours: f64,
    pub ttf_cap_hours: f64,
    /// Features that pushed the longest-horizon probability up most (log-odds contributions).
    pub top_features: Vec<(String, f64)>,
    pub model: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HorizonForecast {
    pub hours: u32,
    pub probability: f64,
    /// At or above the model's alarm threshold for this horizon.
    pub alarm: bool,
}

/// Forecasts for every machine with data in the 7 days before `as_of_ms`.
/// Returns the forecasts and notes for the user (machines left out, missing inputs).
pub fn forecast_as_of(
    model: &ForecastModel,
    archive: &Path,
    events: Option<&EventLog>,
    as_of_ms: i64,
) -> Result<(Vec<Forecast>, Vec<String>)> {
    let opts = ScanOptions {
        from_ms: Some(as_of_ms - LOOKBACK_HOURS as i64 * HOUR_MS),
        until_ms: Some(as_of_ms),
        ..Default::default()
    };
    let hourly = scan_hourly(archive, &opts, &mut |_, _| {})?;
    let anomalies = match anomalies_dir(archive) {
        Some(d) => Some(read_anomalies(&d, Some(as_of_ms))?),
        None => None,
    };
    let mut notes = Vec::new();
    if model.spec.service_log && events.is_none() {
        return Err(ModelError::Schema(
            "the model uses the service log (hours since maintenance and failure): pass --events".into(),
        ));
    }
    let service = events.map(ServiceLog::from_events);
    let spec = spec_for(&hourly, anomalies.as_ref(), model.spec.service_log);
    let m = compute(
        &spec,
        &hourly,
        anomalies.as_ref(),
        service.as_ref(),
        RowTimes::AsOf(as_of_ms),
    );
    model.check(&m)?;
    let silent = hourly.machines.len() - m.len();
    if silent > 0 {
        notes.push(format!(
            "{silent} machine(s) have no data in the 7 days before the as-of time: no forecast"
        ));
    }
    let p = model.predict(&m)?;
    let forecasts = (0..m.len())
        .map(|r| {
            let (mi, mp) = p.mode[r]
                .iter()
                .copied()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0, f64::NAN));
            let (ttf, lo, hi) = p.ttf[r];
            Forecast {
                machine_id: m.machine_of(r).to_string(),
                as_of_ms,
                horizons: model
                    .horizons
                    .iter()
                    .enumerate()
                    .map(|(h, hm)| HorizonForecast {
                        hours: hm.hours,
                        probability: p.model[h][r],
                        alarm: p.model[h][r] >= hm.threshold,
                    })
                    .collect(),
                mode: model.modes.modes.get(mi).cloned().unwrap_or_default(),
                mode_probability: mp,
                ttf_hours: ttf,
                ttf_low_hours: lo,
                ttf_high_hours: hi,
                ttf_cap_hours: model.ttf.cap_hours,
                top_features: model.top_features(&m, r, 3),
                model: model.name.clone(),
            }
        })
        .collect();
    Ok((forecasts, notes))
}

/// A forecast and when it was issued: a row group of the `forecasts` table.
#[derive(Debug, Clone)]
pub struct Issued {
    pub issued_at_ms: i64,
    pub forecast: Forecast,
}

/// The forecasts as rows of the `forecasts` table (one per machine and horizon).
pub fn forecast_batch(issued: &[Issued]) -> std::result::Result<RecordBatch, ArrowError> {
    let rows: Vec<(i64, &Forecast, &HorizonForecast)> = issued
        .iter()
        .flat_map(|i| {
            i.forecast
                .horizons
                .iter()
                .map(move |h| (i.issued_at_ms, &i.forecast, h))
        })
        .collect();
    let ts = |v: Vec<Option<i64>>| -> ArrayRef { Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC")) };
    let at = |f: &Forecast, hours: f64| -> Option<i64> {
        (f.ttf_hours < f.ttf_cap_hours).then(|| f.as_of_ms + (hours * HOUR_MS as f64) as i64)
    };
    let str_col = |g: &dyn Fn(&Forecast, &HorizonForecast) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(_, f, h)| g(f, h))))
    };
    let f64_col = |g: &dyn Fn(&Forecast, &HorizonForecast) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|(_, f, h)| g(f, h))))
    };
    let cols: Vec<ArrayRef> = vec![
        ts(rows.iter().map(|r| Some(r.0)).collect()),
        str_col(&|f, _| f.machine_id.clone()),
        ts(rows.iter().map(|(_, f, _)| Some(f.as_of_ms)).collect()),
        f64_col(&|_, h| h.hours as f64 / 24.0),
        f64_col(&|_, h| h.probability),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|(_, _, h)| Some(h.alarm)))),
        str_col(&|f, _| f.mode.clone()),
        f64_col(&|f, _| f.mode_probability),
        ts(rows.iter().map(|(_, f, _)| at(f, f.ttf_hours)).collect()),
        ts(rows.iter().map(|(_, f, _)| at(f, f.ttf_low_hours)).collect()),
        ts(rows.iter().map(|(_, f, _)| at(f, f.ttf_high_hours)).collect()),
        str_col(&|f, _| {
            f.top_features
                .iter()
                .map(|(n, c)| format!("{n} (+{c:.2})"))
                .collect::<Vec<_>>()
                .join("; ")
        }),
        str_col(&|f, _| f.model.clone()),
    ];
    RecordBatch::try_new(Table::Forecasts.schema(), cols)
}

/// A writer of the data directory's `forecasts` table (rows filed by their issue day).
pub fn forecasts_writer(data: &DataDir) -> DatedWriter<Issued> {
    DatedWriter::new(data, Table::Forecasts, forecast_batch)
}

/// Appends the forecasts to the `forecasts` table of `data`; returns the rows written.
pub fn write_forecasts(data: &DataDir, issued_at_ms: i64, forecasts: &[Forecast]) -> Result<usize> {
    let mut w = forecasts_writer(data);
    for f in forecasts {
        w.push(
            issued_at_ms,
            Issued {
                issued_at_ms,
                forecast: f.clone(),
            },
        );
    }
    w.flush().map_err(|e| ModelError::io(data.forecasts(), e))
}

/// `2025-01-02T03:04:05Z`
pub fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}
