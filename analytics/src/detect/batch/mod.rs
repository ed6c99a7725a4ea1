//! `larmor detect` on one series: a CSV an engineer exported, or one archived
//! channel. Every reading gets a score: how surprising it is given everything
//! before it, 0..1 (0.5: the alarm level), from the generic ensemble
//! ([`super::ensemble`]), which needs no knowledge of the series. When the
//! series is a known MRI channel, its catalogue limits score too (a reading
//! beyond them scores at least 0.5), and the optional episodes are the
//! pipeline's own detectors' anomalies on that channel (its physics: limits,
//! drift, rate, sensor faults); otherwise episodes are the ensemble's alarms
//! with hysteresis. Streaming: one reading at a time, constant memory.

mod parse;

pub use parse::{CsvColumns, count_rows, parse_timestamp};

use super::ensemble::{self, Ensemble, EnsembleConfig, Member};
use super::series::{Debounce, Episode};
use super::{ConfigError, DetectConfig, DetectorSet};
use crate::anomaly_table::kind_name;
use crate::sql::{self, QueryError};
use chrono::{DateTime, SecondsFormat, Utc};
use larmor_ingest::{ChannelId, Frame, Sample};
use parse::{column, parse_value};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// How much of a series is probation: learnt from, scored low unless extreme.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProbationSpec {
    /// A share of the series: `15%` (needs the series' length; when it is not
    /// known, as on stdin, the first [`UNKNOWN_LENGTH_PROBATION`] readings).
    Share(f64),
    /// The first readings: `2000`.
    Readings(u64),
    /// The first span of time: `7d`.
    Span(Duration),
}

impl Default for ProbationSpec {
    fn default() -> Self {
        ProbationSpec::Share(0.15)
    }
}

/// Probation when a share is asked for and the length is unknown.
pub const UNKNOWN_LENGTH_PROBATION: u64 = 1000;

impl std::str::FromStr for ProbationSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("{s:?}: give a share (15%), a number of readings (2000) or a span (7d, 12h)");
        if let Some(pct) = s.strip_suffix('%') {
            let p: f64 = pct.trim().parse().map_err(|_| bad())?;
            return (0.0..=100.0)
                .contains(&p)
                .then_some(ProbationSpec::Share(p / 100.0))
                .ok_or_else(bad);
        }
        if let Ok(n) = s.parse::<u64>() {
            return Ok(ProbationSpec::Readings(n));
        }
        humantime::parse_duration(s).map(ProbationSpec::Span).map_err(|_| bad())
    }
}

impl ProbationSpec {
    /// The ensemble's probation for a series of `readings` (when known).
    pub fn resolve(self, readings: Option<u64>) -> ensemble::Probation {
        match self {
            ProbationSpec::Share(p) => {
                ensemble::Probation::Readings(readings.map_or(UNKNOWN_LENGTH_PROBATION, |n| (p * n as f64) as u64))
            }
            ProbationSpec::Readings(n) => ensemble::Probation::Readings(n),
            ProbationSpec::Span(d) => ensemble::Probation::Span(d),
        }
    }
}

/// What `larmor detect` was asked besides the detector settings.
#[derive(Debug, Clone, Default)]
pub struct DetectOptions {
    pub probation: ProbationSpec,
    /// The series is this catalogue channel: its limits and the pipeline's detectors apply.
    pub channel: Option<ChannelId>,
    /// The machine, for the episodes of a known channel.
    pub machine: String,
}

/// One episode: where it starts, who found it, why.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeRow {
    pub ts_ms: i64,
    pub detector: String,
    pub kind: &'static str,
    pub score: f64,
    pub value: f64,
    pub explanation: String,
}

/// The generic episodes: an alarm opens one, ten readings below the release level close it.
const GENERIC_EPISODES: Debounce = Debounce {
    confirm: 1,
    clear_after: 10,
};

/// What a known channel adds: its alarm limits and the pipeline's detectors.
struct Known {
    channel: ChannelId,
    /// Alarm limits (a missing side: infinite) and the span from each to the physical end.
    low: f64,
    high: f64,
    low_span: f64,
    high_span: f64,
    detectors: DetectorSet,
    machine: String,
    found: Vec<super::Anomaly>,
}

/// Scores one series, reading by reading.
pub struct SeriesScorer {
    ensemble: Ensemble,
    episode: Episode,
    known: Option<Known>,
}

impl SeriesScorer {
    /// `readings`: the series' length, when known (for a probation given as a share).
    pub fn new(config: &DetectConfig, options: &DetectOptions, readings: Option<u64>) -> Result<Self, ConfigError> {
        let known = match options.channel {
            None => None,
            Some(c) => {
                let spec = c.spec();
                let (lo, hi) = match config.threshold.limits.get(spec.name) {
                    Some(l) => (l.low, l.high),
                    None => (spec.alarm_low, spec.alarm_high),
                };
                let (low, high) = (lo.unwrap_or(f64::NEG_INFINITY), hi.unwrap_or(f64::INFINITY));
                Some(Known {
                    channel: c,
                    low,
                    high,
                    low_span: (low - spec.physical_min).max(f64::EPSILON),
                    high_span: (spec.physical_max - high).max(f64::EPSILON),
                    detectors: DetectorSet::from_config(config)?,
                    machine: if options.machine.is_empty() {
                        "series".into()
                    } else {
                        options.machine.clone()
                    },
                    found: Vec::new(),
                })
            }
        };
        Ok(SeriesScorer {
            ensemble: Ensemble::new(EnsembleConfig {
                probation: options.probation.resolve(readings),
            }),
            episode: Episode::default(),
            known,
        })
    }

    /// Scores one reading (0..1) and appends the episodes that start with it.
    pub fn score(&mut self, ts_ms: i64, value: f64, episodes: &mut Vec<EpisodeRow>) -> f64 {
        let mut s = self.ensemble.update(ts_ms, value);
        let Some(k) = self.known.as_mut() else {
            if self.episode.update(s, GENERIC_EPISODES) {
                let member = self.ensemble.member();
                episodes.push(EpisodeRow {
                    ts_ms,
                    detector: format!("ensemble/{}", member.name()),
                    kind: if member == Member::Runs {
                        "sensor_fault"
                    } else {
                        "unclassified"
                    },
                    score: s,
                    value,
                    explanation: self.ensemble.explain(value, ""),
                });
            }
            return s;
        };
        // 0.5 at an alarm limit, 1 at the physical end of the scale (as the pipeline's threshold detector).
        if value < k.low {
            s = s.max((0.5 + 0.5 * (k.low - value) / k.low_span).min(1.0));
        } else if value > k.high {
            s = s.max((0.5 + 0.5 * (value - k.high) / k.high_span).min(1.0));
        }
        let frame = Frame {
            machine_id: k.machine.clone(),
            stream: k.channel.stream(),
            seq: 0,
            ts_ms,
            samples: vec![Sample {
                ts_ms,
                values: vec![(k.channel, value)],
            }],
        };
        k.detectors.observe(&frame, &mut k.found);
        episodes.extend(k.found.drain(..).map(|a| EpisodeRow {
            ts_ms: a.ts_ms,
            detector: a.detector.to_string(),
            kind: kind_name(a.kind),
            score: a.score,
            value: a.value,
            explanation: a.explanation,
        }));
        s
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
    /// Episodes found.
    pub episodes: u64,
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

fn fmt_score(s: f64) -> String {
    format!("{s:.4}")
}

/// Where `larmor detect` writes: the scores, and the episodes when asked for.
pub struct Sinks<'a> {
    pub scores: Box<dyn Write + 'a>,
    pub episodes: Option<Box<dyn Write + 'a>>,
}

/// The episodes file: `timestamp,detector,kind,score,value,explanation`, one row per episode as it starts.
struct EpisodeWriter<'a>(Option<csv::Writer<Box<dyn Write + 'a>>>);

impl<'a> EpisodeWriter<'a> {
    fn new(sink: Option<Box<dyn Write + 'a>>) -> Result<Self, BatchError> {
        let mut w = sink.map(csv::Writer::from_writer);
        if let Some(w) = w.as_mut() {
            w.write_record(["timestamp", "detector", "kind", "score", "value", "explanation"])?;
        }
        Ok(EpisodeWriter(w))
    }

    fn write(&mut self, rows: &mut Vec<EpisodeRow>, report: &mut BatchReport) -> Result<(), BatchError> {
        report.episodes += rows.len() as u64;
        if let Some(w) = self.0.as_mut() {
            for e in rows.iter() {
                w.write_record([
                    iso(e.ts_ms),
                    e.detector.clone(),
                    e.kind.to_string(),
                    fmt_score(e.score),
                    e.value.to_string(),
                    e.explanation.clone(),
                ])?;
            }
        }
        rows.clear();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BatchError> {
        if let Some(w) = self.0.as_mut() {
            w.flush()?;
        }
        Ok(())
    }
}

/// ISO-8601 UTC with milliseconds.
fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Scores a CSV with a header row, streaming: writes `timestamp,value,anomaly_score`
/// (timestamp and value as they were written) for every input row, in order.
/// `readings`: the number of rows, when known (for a probation given as a share).
pub fn score_csv(
    input: impl Read,
    sinks: Sinks<'_>,
    columns: &CsvColumns,
    config: &DetectConfig,
    options: &DetectOptions,
    readings: Option<u64>,
) -> Result<BatchReport, BatchError> {
    let mut scorer = SeriesScorer::new(config, options, readings)?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let headers = reader.headers()?.clone();
    let ti = column(&headers, &columns.time, "time", "--time-column")?;
    let vi = column(&headers, &columns.value, "value", "--value-column")?;
    let mut w = csv::Writer::from_writer(sinks.scores);
    let mut episodes = EpisodeWriter::new(sinks.episodes)?;
    let mut found = Vec::new();
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
                let s = scorer.score(ts, v, &mut found);
                if s >= 0.5 {
                    report.anomalous += 1;
                }
                episodes.write(&mut found, &mut report)?;
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
    episodes.flush()?;
    Ok(report)
}

/// Scores one archived channel of one machine, oldest first; timestamps are
/// written as ISO-8601 UTC. DataFusion sorts the series by time (one series is
/// held while sorting); rows are then written as they stream out. The channel
/// is known: its limits and the pipeline's detectors apply.
pub async fn score_archive(
    archive: &Path,
    machine: &str,
    channel: &str,
    sinks: Sinks<'_>,
    config: &DetectConfig,
    probation: ProbationSpec,
) -> Result<BatchReport, BatchError> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float64Type, TimestampMillisecondType};
    use datafusion::prelude::{col, lit};
    use futures::StreamExt;

    let id = ChannelId::from_name(channel).ok_or_else(|| BatchError::UnknownChannel(channel.into()))?;
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
        .map_err(QueryError::from)?;
    let readings = df.clone().count().await.map_err(QueryError::from)? as u64;
    let options = DetectOptions {
        probation,
        channel: Some(id),
        machine: machine.to_string(),
    };
    let mut scorer = SeriesScorer::new(config, &options, Some(readings))?;
    let df = df.sort(vec![col("ts").sort(true, false)]).map_err(QueryError::from)?;
    let mut stream = df.execute_stream().await.map_err(QueryError::from)?;
    let mut w = csv::Writer::from_writer(sinks.scores);
    let mut episodes = EpisodeWriter::new(sinks.episodes)?;
    let mut found = Vec::new();
    w.write_record(["timestamp", "value", "anomaly_score"])?;
    let mut report = BatchReport::default();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(QueryError::from)?;
        let ts = batch.column(0).as_primitive::<TimestampMillisecondType>();
        let vs = batch.column(1).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let (t, v) = (ts.value(i), vs.value(i));
            let s = scorer.score(t, v, &mut found);
            report.rows += 1;
            if s >= 0.5 {
                report.anomalous += 1;
            }
            episodes.write(&mut found, &mut report)?;
            w.write_record([iso(t), v.to_string(), fmt_score(s)])?;
        }
    }
    w.flush()?;
    episodes.flush()?;
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

    /// Scores `csv` with the defaults (and `options`); returns the score rows and the episode rows.
    fn run(csv: &str, options: &DetectOptions) -> (BatchReport, Vec<Vec<String>>, Vec<Vec<String>>) {
        let (mut scores, mut episodes) = (Vec::new(), Vec::new());
        let rows = csv.lines().count() as u64 - 1;
        let r = score_csv(
            csv.as_bytes(),
            Sinks {
                scores: Box::new(&mut scores),
                episodes: Some(Box::new(&mut episodes)),
            },
            &CsvColumns::default(),
            &DetectConfig::default(),
            options,
            Some(rows),
        )
        .unwrap();
        let parse = |b: Vec<u8>| -> Vec<Vec<String>> {
            let mut rd = csv::Reader::from_reader(b.as_slice());
            rd.records()
                .map(|r| r.unwrap().iter().map(String::from).collect())
                .collect()
        };
        (r, parse(scores), parse(episodes))
    }

    #[test]
    fn csv_round_trip_scores_each_reading_and_lists_the_episodes() {
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
        let (r, rows, episodes) = run(&csv, &DetectOptions::default());
        assert_eq!((r.rows, r.missing), (n as u64, 1));
        assert_eq!(rows.len(), n);
        let score = |i: usize| rows[i][2].parse::<f64>().unwrap();
        assert!(score(2000) > 0.7, "spike {}", score(2000));
        assert!(score(2700) > 0.7, "step {}", score(2700));
        assert_eq!(rows[2500][2], "");
        let high: Vec<usize> = (0..n).filter(|&i| i != 2500 && score(i) >= 0.5).collect();
        assert_eq!(
            high,
            vec![2000, 2700],
            "one reading per event; the new level is normal at once"
        );
        // The episodes: the spike and the step, each once, explained.
        let starts: Vec<(&str, &str)> = episodes.iter().map(|e| (e[0].as_str(), e[1].as_str())).collect();
        assert_eq!(
            starts,
            vec![
                ("2025-11-29T12:40:00.000Z", "ensemble/point"),
                ("2025-11-30T00:20:00.000Z", "ensemble/point")
            ],
            "{episodes:?}"
        );
        assert!(episodes[0][5].contains("above the expected"), "{}", episodes[0][5]);
        assert_eq!(r.episodes, 2);
    }

    #[test]
    fn normal_readings_score_low_whatever_came_before() {
        // A stuck stretch, a daily cycle, an integer count: after each event, normal
        // readings are not latched high.
        let n = 6000;
        let e = noise(52, n, 1.0);
        let mut csv = String::from("timestamp,value\n");
        for (i, x) in e.iter().enumerate() {
            let day = (i as f64 * std::f64::consts::TAU / 288.0).sin();
            let v = if (3000..3400).contains(&i) {
                37.0
            } else {
                (40.0 + 8.0 * day + x).round()
            };
            csv.push_str(&format!("{},{v}\n", 1_764_300_000 + 300 * i as i64));
        }
        let (_, rows, episodes) = run(&csv, &DetectOptions::default());
        let high: Vec<usize> = (0..n).filter(|&i| rows[i][2].parse::<f64>().unwrap() >= 0.5).collect();
        assert!(
            high.iter().any(|i| (3000..3020).contains(i)),
            "the stuck stretch is caught: {high:?}"
        );
        assert!(high.len() <= 4, "{high:?}");
        assert!(episodes.iter().any(|e| e[2] == "sensor_fault"), "{episodes:?}");
    }

    #[test]
    fn a_known_channel_scores_its_limits_and_lists_the_pipelines_anomalies() {
        // Helium level (alarm below 40 %) falling through its limit.
        let mut csv = String::from("timestamp,value\n");
        let e = noise(53, 3000, 0.02);
        for (i, x) in e.iter().enumerate() {
            let v = 70.0 - if i >= 2000 { (i - 2000) as f64 * 0.05 } else { 0.0 } + x;
            csv.push_str(&format!("{},{v:.3}\n", 1_764_300_000_000i64 + 60_000 * i as i64));
        }
        let options = DetectOptions {
            channel: ChannelId::from_name("helium_level_pct"),
            ..DetectOptions::default()
        };
        let (_, rows, episodes) = run(&csv, &options);
        let below = rows.iter().position(|r| r[1].parse::<f64>().unwrap() < 40.0).unwrap();
        assert!(
            rows[below..].iter().all(|r| r[2].parse::<f64>().unwrap() >= 0.5),
            "beyond the limit"
        );
        let threshold: Vec<&Vec<String>> = episodes.iter().filter(|e| e[1] == "threshold").collect();
        assert_eq!(threshold.len(), 1, "{episodes:?}");
        assert_eq!(threshold[0][0], iso(1_764_300_000_000 + 60_000 * below as i64));
    }

    #[test]
    fn probation_reads_shares_counts_and_spans() {
        assert_eq!("15%".parse(), Ok(ProbationSpec::Share(0.15)));
        assert_eq!("2000".parse(), Ok(ProbationSpec::Readings(2000)));
        assert_eq!("7d".parse(), Ok(ProbationSpec::Span(Duration::from_secs(7 * 86_400))));
        assert!("lots".parse::<ProbationSpec>().unwrap_err().contains("15%"));
        assert_eq!(
            ProbationSpec::Share(0.1).resolve(Some(5000)),
            ensemble::Probation::Readings(500)
        );
        assert_eq!(
            ProbationSpec::Share(0.1).resolve(None),
            ensemble::Probation::Readings(UNKNOWN_LENGTH_PROBATION)
        );
    }

    #[test]
    fn errors_say_what_to_do() {
        let cols = CsvColumns::default();
        let cfg = DetectConfig::default();
        let o = DetectOptions::default();
        let sinks = || Sinks {
            scores: Box::new(std::io::sink()),
            episodes: None,
        };
        let e = score_csv("time,temp\n1,2\n".as_bytes(), sinks(), &cols, &cfg, &o, None).unwrap_err();
        assert!(
            e.to_string().contains("--time-column") && e.to_string().contains("time, temp"),
            "{e}"
        );
        let e = score_csv(
            "timestamp,value\n12/03/2025,2\n".as_bytes(),
            sinks(),
            &cols,
            &cfg,
            &o,
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("line 2:") && e.to_string().contains("ISO-8601"),
            "{e}"
        );
        let e = score_csv(
            "timestamp,value\n1764300000,warm\n".as_bytes(),
            sinks(),
            &cols,
            &cfg,
            &o,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
    }
}
