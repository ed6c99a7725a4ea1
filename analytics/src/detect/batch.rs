//! Batch detection on any time series (`larmor detect`): the pipeline's own
//! univariate kernels (robust, drift, rate, sensor fault) run over a CSV an
//! engineer exported, or over one archived channel, writing
//! `timestamp,value,anomaly_score` row by row. The CSV path holds one row at a
//! time: constant memory whatever the file's length.

use super::drift::DriftKernel;
use super::rate::RateKernel;
use super::robust::RobustKernel;
use super::sensor_fault::SensorFaultKernel;
use super::series::Kernel;
use super::{ConfigError, DetectConfig};
use crate::sql::{self, QueryError};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use std::io::{Read, Write};
use std::path::Path;

/// The univariate kernels on one series; a row's score is the highest of theirs.
pub struct SeriesScorer {
    pub robust: RobustKernel,
    pub drift: DriftKernel,
    pub rate: RateKernel,
    pub sensor_fault: SensorFaultKernel,
}

impl SeriesScorer {
    pub fn new(c: &DetectConfig) -> Result<Self, ConfigError> {
        // Same checks as the pipeline's detectors.
        c.robust.detector()?;
        c.drift.detector()?;
        c.rate.detector()?;
        c.sensor_fault.detector()?;
        Ok(SeriesScorer {
            robust: RobustKernel::new(&c.robust.params()),
            drift: DriftKernel::new(&c.drift.params()),
            rate: RateKernel::new(&c.rate.params()),
            sensor_fault: SensorFaultKernel::new(&c.sensor_fault.params()),
        })
    }

    /// Score of one reading in 0..1; 0.5 and above: over some detector's threshold.
    #[inline]
    pub fn score(&mut self, ts_ms: i64, value: f64) -> f64 {
        let a = self.robust.update(ts_ms, value);
        let b = self.drift.update(ts_ms, value);
        let c = self.rate.update(ts_ms, value);
        let d = self.sensor_fault.update(ts_ms, value);
        a.max(b).max(c).max(d)
    }
}

/// What a batch run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchReport {
    pub rows: u64,
    /// Rows without a value (empty, NaN, null): written with an empty score.
    pub missing: u64,
    /// Rows scoring 0.5 or more.
    pub anomalous: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("no column {name:?} in the input (its columns: {available}); name the {what} column with {flag}")]
    NoColumn {
        name: String,
        what: &'static str,
        flag: &'static str,
        available: String,
    },
    #[error(
        "line {line}: cannot read the timestamp {text:?}; use ISO-8601 (2025-03-01T12:00:00Z, \
         2025-03-01 12:00:00) or epoch seconds or milliseconds"
    )]
    BadTimestamp { line: u64, text: String },
    #[error("line {line}: the value {text:?} is not a number; leave it empty (or NaN) if it was not measured")]
    BadValue { line: u64, text: String },
    #[error("cannot read the CSV: {0}; the input must be comma-separated with a header row")]
    Csv(#[from] csv::Error),
    #[error("cannot write the scores: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("unknown channel {0:?}; `larmor query \"SELECT DISTINCT channel FROM readings\"` lists the archived ones")]
    UnknownChannel(String),
    #[error(
        "no readings of {channel} from machine {machine:?} in the archive; \
         `larmor query \"SELECT DISTINCT machine_id FROM readings\"` lists the machines"
    )]
    Empty { machine: String, channel: String },
}

/// Column names of `larmor detect --input`.
#[derive(Debug, Clone)]
pub struct CsvColumns {
    pub time: String,
    pub value: String,
}

impl Default for CsvColumns {
    fn default() -> Self {
        CsvColumns {
            time: "timestamp".into(),
            value: "value".into(),
        }
    }
}

/// Reads a timestamp: ISO-8601 / RFC 3339 (a missing offset means UTC), or an
/// epoch number whose size tells the unit (seconds, milliseconds, microseconds
/// or nanoseconds). Returns UTC milliseconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(n) = t.parse::<f64>() {
        if !n.is_finite() {
            return None;
        }
        let a = n.abs();
        // 1e11 s is the year 5138 and 1e11 ms is 1973: the magnitude says the unit.
        let ms = if a >= 1e17 {
            n / 1e6
        } else if a >= 1e14 {
            n / 1e3
        } else if a >= 1e11 {
            n
        } else {
            n * 1e3
        };
        return Some(ms.round() as i64);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_millis());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(d) = DateTime::parse_from_str(t, f) {
            return Some(d.timestamp_millis());
        }
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Some(d.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

/// A value, `None` when not measured (empty, NaN, null, NA), an error when not a number.
fn parse_value(text: &str) -> Result<Option<f64>, ()> {
    let t = text.trim();
    match t.to_ascii_lowercase().as_str() {
        "" | "nan" | "null" | "na" | "n/a" | "none" => return Ok(None),
        _ => {}
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(_) => Ok(None),
        Err(_) => Err(()),
    }
}

fn fmt_score(s: f64) -> String {
    format!("{s:.4}")
}

fn column(
    headers: &csv::StringRecord,
    name: &str,
    what: &'static str,
    flag: &'static str,
) -> Result<usize, BatchError> {
    let found = headers.iter().position(|h| h.trim() == name).or_else(|| {
        headers
            .iter()
            .position(|h| h.trim().trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
    });
    found.ok_or_else(|| BatchError::NoColumn {
        name: name.to_string(),
        what,
        flag,
        available: headers.iter().collect::<Vec<_>>().join(", "),
    })
}

/// Scores a CSV with a header row, streaming: writes `timestamp,value,anomaly_score`
/// (timestamp and value as they were written) for every input row, in order.
pub fn score_csv(
    input: impl Read,
    output: impl Write,
    columns: &CsvColumns,
    config: &DetectConfig,
) -> Result<BatchReport, BatchError> {
    let mut scorer = SeriesScorer::new(config)?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let headers = reader.headers()?.clone();
    let ti = column(&headers, &columns.time, "time", "--time-column")?;
    let vi = column(&headers, &columns.value, "value", "--value-column")?;
    let mut w = csv::Writer::from_writer(output);
    w.write_record(["timestamp", "value", "anomaly_score"])?;
    let mut report = BatchReport::default();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record)? {
        let line = record.position().map_or(0, |p| p.line());
        let ts_text = record.get(ti).unwrap_or("");
        let v_text = record.get(vi).unwrap_or("");
        let ts = parse_timestamp(ts_text).ok_or_else(|| BatchError::BadTimestamp {
            line,
            text: ts_text.to_string(),
        })?;
        let value = parse_value(v_text).map_err(|()| BatchError::BadValue {
            line,
            text: v_text.to_string(),
        })?;
        report.rows += 1;
        let score = match value {
            Some(v) => {
                let s = scorer.score(ts, v);
                if s >= 0.5 {
                    report.anomalous += 1;
                }
                fmt_score(s)
            }
            None => {
                report.missing += 1;
                String::new()
            }
        };
        w.write_record([ts_text, v_text, score.as_str()])?;
    }
    w.flush()?;
    Ok(report)
}

/// Scores one archived channel of one machine, oldest first; timestamps are
/// written as ISO-8601 UTC. DataFusion sorts the series by time (one series is
/// held while sorting); rows are then written as they stream out.
pub async fn score_archive(
    archive: &Path,
    machine: &str,
    channel: &str,
    output: impl Write,
    config: &DetectConfig,
) -> Result<BatchReport, BatchError> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float64Type, TimestampMillisecondType};
    use datafusion::prelude::{col, lit};
    use futures::StreamExt;

    let id = larmor_ingest::ChannelId::from_name(channel).ok_or_else(|| BatchError::UnknownChannel(channel.into()))?;
    let mut scorer = SeriesScorer::new(config)?;
    let ctx = sql::open_archive(archive).await?;
    let df = ctx
        .table("readings")
        .await
        .map_err(QueryError::from)?
        .filter(
            col("stream")
                .eq(lit(id.stream().as_str()))
                .and(col("machine_id").eq(lit(machine)))
                .and(col("channel").eq(lit(channel))),
        )
        .and_then(|d| d.select(vec![col("ts"), col("value")]))
        .and_then(|d| d.sort(vec![col("ts").sort(true, false)]))
        .map_err(QueryError::from)?;
    let mut stream = df.execute_stream().await.map_err(QueryError::from)?;
    let mut w = csv::Writer::from_writer(output);
    w.write_record(["timestamp", "value", "anomaly_score"])?;
    let mut report = BatchReport::default();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(QueryError::from)?;
        let ts = batch.column(0).as_primitive::<TimestampMillisecondType>();
        let vs = batch.column(1).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let (t, v) = (ts.value(i), vs.value(i));
            let s = scorer.score(t, v);
            report.rows += 1;
            if s >= 0.5 {
                report.anomalous += 1;
            }
            let when = DateTime::<Utc>::from_timestamp_millis(t)
                .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true))
                .unwrap_or_else(|| t.to_string());
            w.write_record([when, v.to_string(), fmt_score(s)])?;
        }
    }
    w.flush()?;
    if report.rows == 0 {
        return Err(BatchError::Empty {
            machine: machine.into(),
            channel: channel.into(),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::noise;

    #[test]
    fn timestamps_in_every_usual_spelling() {
        let ms = 1_764_300_000_000;
        for t in [
            "1764300000",
            "1764300000.0",
            "1764300000000",
            "1764300000000000",
            "1764300000000000000",
            "2025-11-28T03:20:00Z",
            "2025-11-28T03:20:00.000+00:00",
            "2025-11-28T04:20:00+01:00",
            "2025-11-28 03:20:00",
            "2025-11-28T03:20:00",
            "2025-11-28 03:20",
        ] {
            assert_eq!(parse_timestamp(t), Some(ms), "{t}");
        }
        assert_eq!(parse_timestamp("2025-11-28"), Some(1_764_288_000_000));
        assert_eq!(parse_timestamp("28/11/2025"), None);
        assert_eq!(parse_timestamp(""), None);
    }

    #[test]
    fn csv_round_trip_keeps_rows_and_flags_the_anomalies() {
        let n = 3000;
        let e = noise(51, n, 0.1);
        let mut csv = String::from("timestamp,value,site\n");
        for (i, x) in e.iter().enumerate() {
            let v = if i == 2000 {
                "35.0".to_string() // a spike
            } else if i == 2500 {
                String::new() // not measured
            } else {
                format!("{:.2}", 20.0 + x + if i >= 2700 { 4.0 } else { 0.0 }) // a step
            };
            csv.push_str(&format!("{},{v},\"a, b\"\n", 1_764_300_000 + 60 * i as i64));
        }
        let mut out = Vec::new();
        let r = score_csv(
            csv.as_bytes(),
            &mut out,
            &CsvColumns::default(),
            &DetectConfig::default(),
        )
        .unwrap();
        assert_eq!((r.rows, r.missing), (n as u64, 1));
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(rows[0], vec!["timestamp", "value", "anomaly_score"]);
        assert_eq!(rows.len(), n + 1);
        let score = |i: usize| rows[i + 1][2].parse::<f64>().unwrap();
        assert!(score(2000) > 0.7, "spike {}", score(2000));
        assert!(score(2701) > 0.7, "step {}", score(2701));
        assert_eq!(rows[2501][2], "");
        let high = (0..1900).filter(|&i| score(i) >= 0.5).count();
        assert_eq!(high, 0, "healthy rows over 0.5");
    }

    #[test]
    fn errors_say_what_to_do() {
        let cols = CsvColumns::default();
        let cfg = DetectConfig::default();
        let e = score_csv("time,temp\n1,2\n".as_bytes(), Vec::new(), &cols, &cfg).unwrap_err();
        assert!(
            e.to_string().contains("--time-column") && e.to_string().contains("time, temp"),
            "{e}"
        );
        let e = score_csv("timestamp,value\n12/03/2025,2\n".as_bytes(), Vec::new(), &cols, &cfg).unwrap_err();
        assert!(
            e.to_string().starts_with("line 2:") && e.to_string().contains("ISO-8601"),
            "{e}"
        );
        let e = score_csv("timestamp,value\n1764300000,warm\n".as_bytes(), Vec::new(), &cols, &cfg).unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
    }
}
