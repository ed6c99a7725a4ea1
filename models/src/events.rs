//! A generic events table: `machine_id, time, kind[, mode]` as CSV or Parquet, plus
//! whatever other columns it has. Larmor's own `events.csv` / `events.parquet`
//! (from `larmor dataset generate`) read the same way: a failure's time is its
//! `downtime_start` (when the machine stops), and `onset`, `repair_end`,
//! `precursor_visible` and any further columns are taken when present.
//!
//! Only two kinds matter to the models: `failure` (the targets, and "time since the
//! last failure") and `maintenance` ("time since the last visit"). Every other row
//! (averted failures, sensor faults, ...) is counted and kept out of labels and
//! features: nothing that would not be known in the field feeds a model.

use crate::error::{ModelError, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// One failure of one machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// When the machine stopped (ms UTC).
    pub time_ms: i64,
    pub mode: String,
    /// Back in service, if known: rows inside the downtime are not forecast.
    pub end_ms: Option<i64>,
    /// Precursor onset, if known.
    pub onset_ms: Option<i64>,
    /// Whether a sensor could see it coming, if the table says.
    pub precursor_visible: Option<bool>,
    /// Every column not interpreted above, as text (cause, severity, ...).
    pub extra: BTreeMap<String, String>,
}

/// Failures and maintenance visits per machine, each sorted by time.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    pub failures: BTreeMap<String, Vec<Failure>>,
    /// Visit start (ms) and end, if known.
    pub maintenance: BTreeMap<String, Vec<(i64, Option<i64>)>>,
    /// Rows of other kinds, by kind.
    pub other_kinds: BTreeMap<String, usize>,
    /// The table's column names, as read.
    pub columns: Vec<String>,
}

const MACHINE: &[&str] = &["machine_id", "machine", "unit_id", "unit", "asset_id", "asset"];
const TIME: &[&str] = &["time", "timestamp", "ts", "event_time", "downtime_start"];
const KIND: &[&str] = &["kind", "event", "event_type", "type"];
const MODE: &[&str] = &["mode", "failure_mode"];
const END: &[&str] = &["repair_end", "end", "end_time"];

impl EventLog {
    /// Reads `.csv` or `.parquet` (by extension).
    pub fn load(path: &Path) -> Result<EventLog> {
        let table = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => read_csv(path)?,
            Some("parquet") => read_parquet(path)?,
            _ => {
                return Err(ModelError::Input(format!(
                    "{}: the events table must be a .csv or .parquet file",
                    path.display()
                )));
            }
        };
        EventLog::from_table(&table.0, &table.1).map_err(|e| ModelError::Input(format!("{}: {e}", path.display())))
    }

    /// Builds the log from column names and rows of text cells (empty = null).
    pub fn from_table(columns: &[String], rows: &[Vec<Option<String>>]) -> std::result::Result<EventLog, String> {
        let find = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| columns.iter().position(|c| c.eq_ignore_ascii_case(n)))
        };
        let machine = find(MACHINE).ok_or_else(|| format!("no machine column (one of {MACHINE:?}) in {columns:?}"))?;
        let kind = find(KIND).ok_or_else(|| format!("no kind column (one of {KIND:?}) in {columns:?}"))?;
        let downtime = find(&["downtime_start"]);
        let time = find(TIME);
        let onset = find(&["onset"]);
        if time.is_none() && onset.is_none() {
            return Err(format!("no time column (one of {TIME:?} or `onset`) in {columns:?}"));
        }
        let mode = find(MODE);
        let end = find(END);
        let visible = find(&["precursor_visible"]);
        let used: Vec<usize> = [Some(machine), Some(kind), downtime, time, onset, mode, end, visible]
            .into_iter()
            .flatten()
            .collect();
        let mut log = EventLog {
            columns: columns.to_vec(),
            ..Default::default()
        };
        for (line, row) in rows.iter().enumerate() {
            let cell = |i: Option<usize>| {
                i.and_then(|i| row.get(i))
                    .and_then(|c| c.as_deref())
                    .filter(|c| !c.is_empty())
            };
            let at = |i: Option<usize>, what: &str| -> std::result::Result<Option<i64>, String> {
                cell(i)
                    .map(|c| {
                        parse_time(c).ok_or_else(|| format!("row {}: cannot read {what} `{c}` as a time", line + 1))
                    })
                    .transpose()
            };
            let Some(m) = cell(Some(machine)) else {
                return Err(format!("row {}: empty machine", line + 1));
            };
            let k = cell(Some(kind)).unwrap_or("").to_ascii_lowercase();
            let t = match at(downtime, "downtime_start")? {
                Some(t) => Some(t),
                None => match at(time, "time")? {
                    Some(t) => Some(t),
                    None => at(onset, "onset")?,
                },
            };
            match k.as_str() {
                "failure" | "fail" | "failed" | "breakdown" => {
                    let Some(time_ms) = t else {
                        return Err(format!("row {}: a failure without a time", line + 1));
                    };
                    let extra = columns
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !used.contains(i))
                        .filter_map(|(i, c)| cell(Some(i)).map(|v| (c.clone(), v.to_string())))
                        .collect();
                    log.failures.entry(m.to_string()).or_default().push(Failure {
                        time_ms,
                        mode: cell(mode).unwrap_or("unknown").to_string(),
                        end_ms: at(end, "end")?,
                        onset_ms: at(onset, "onset")?,
                        precursor_visible: cell(visible).and_then(parse_bool),
                        extra,
                    });
                }
                "maintenance" | "service" | "planned_maintenance" => {
                    if let Some(t) = t {
                        log.maintenance
                            .entry(m.to_string())
                            .or_default()
                            .push((t, at(end, "end")?));
                    }
                }
                _ => *log.other_kinds.entry(k).or_default() += 1,
            }
        }
        for v in log.failures.values_mut() {
            v.sort_by_key(|f| f.time_ms);
        }
        for v in log.maintenance.values_mut() {
            v.sort_unstable();
        }
        Ok(log)
    }

    pub fn failure_count(&self) -> usize {
        self.failures.values().map(Vec::len).sum()
    }

    /// Failure modes, sorted.
    pub fn modes(&self) -> Vec<String> {
        let mut m: Vec<String> = self.failures.values().flatten().map(|f| f.mode.clone()).collect();
        m.sort();
        m.dedup();
        m
    }

    /// Whether a failure's precursor could be seen: the table's `precursor_visible` when
    /// it has one; otherwise, when `onset` is known, a precursor of at least
    /// `min_precursor_hours`; otherwise unknown.
    pub fn precursor_visible(f: &Failure, min_precursor_hours: f64) -> Option<bool> {
        f.precursor_visible.or_else(|| {
            f.onset_ms
                .map(|o| (f.time_ms - o) as f64 / crate::HOUR_MS as f64 >= min_precursor_hours)
        })
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// ISO 8601 / RFC 3339 (`2025-01-02T03:04:05Z`, with or without zone or seconds, or
/// a bare date: UTC), or a number: milliseconds since the epoch (for run-to-failure
/// data counted in cycles, write the archive and the events with the same step,
/// e.g. one cycle = one hour = 3,600,000 ms).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    if let Ok(f) = s.parse::<f64>() {
        return f.is_finite().then_some(f as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

type Table = (Vec<String>, Vec<Vec<Option<String>>>);

fn read_csv(path: &Path) -> Result<Table> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| ModelError::Input(format!("{}: {e}", path.display())))?;
    let columns: Vec<String> = r
        .headers()
        .map_err(|e| ModelError::Input(format!("{}: {e}", path.display())))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| ModelError::Input(format!("{}: {e}", path.display())))?;
        rows.push(rec.iter().map(|c| (!c.is_empty()).then(|| c.to_string())).collect());
    }
    Ok((columns, rows))
}

fn read_parquet(path: &Path) -> Result<Table> {
    use polars::prelude::*;
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let df = ParquetReader::new(file).finish()?;
    let mut columns = Vec::new();
    let mut cells: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(df.width()); df.height()];
    for c in df.columns() {
        columns.push(c.name().to_string());
        // Timestamps become milliseconds since the epoch, everything else its text.
        let text: Vec<Option<String>> = match c.dtype() {
            DataType::Datetime(unit, _) => {
                let per_ms = match unit {
                    TimeUnit::Nanoseconds => 1_000_000,
                    TimeUnit::Microseconds => 1_000,
                    TimeUnit::Milliseconds => 1,
                };
                let ints = c.cast(&DataType::Int64)?;
                let ints = ints.i64()?;
                (0..ints.len())
                    .map(|i| ints.get(i).map(|x| (x / per_ms).to_string()))
                    .collect()
            }
            _ => {
                let s = c.cast(&DataType::String)?;
                let s = s.str()?;
                (0..s.len()).map(|i| s.get(i).map(str::to_string)).collect()
            }
        };
        for (i, v) in text.into_iter().enumerate() {
            cells[i].push(v);
        }
    }
    Ok((columns, cells))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(csv: &str) -> Table {
        let mut lines = csv.lines();
        let cols = lines.next().unwrap().split(',').map(String::from).collect();
        let rows = lines
            .map(|l| l.split(',').map(|c| (!c.is_empty()).then(|| c.to_string())).collect())
            .collect();
        (cols, rows)
    }

    #[test]
    fn generic_table_with_extra_columns() {
        let (c, r) = table(
            "machine_id,time,kind,mode,cause\n\
             m2,2025-01-03T00:00:00Z,failure,pump,wear\n\
             m1,2025-01-02,maintenance,,\n\
             m2,2025-01-01 12:00,failure,,\n\
             m1,86400000,sensor_fault,stuck,",
        );
        let log = EventLog::from_table(&c, &r).unwrap();
        let m2 = &log.failures["m2"];
        assert_eq!(m2.len(), 2);
        assert_eq!(
            m2[0].time_ms,
            parse_time("2025-01-01T12:00:00Z").unwrap(),
            "sorted by time"
        );
        assert_eq!(m2[0].mode, "unknown");
        assert_eq!(m2[1].extra.get("cause").map(String::as_str), Some("wear"));
        assert_eq!(
            log.maintenance["m1"],
            vec![(parse_time("2025-01-02T00:00:00Z").unwrap(), None)]
        );
        assert_eq!(log.other_kinds["sensor_fault"], 1);
        assert_eq!(log.modes(), vec!["pump".to_string(), "unknown".to_string()]);
    }

    #[test]
    fn larmor_events_take_downtime_start_and_ignore_averted() {
        let (c, r) = table(
            "event_id,machine_id,kind,mode,channel,stream,onset,downtime_start,repair_end,planned,detail\n\
             1,MRI-0001,failure,helium_leak,,,2025-01-01T00:00:00Z,2025-01-05T00:00:00Z,2025-01-06T00:00:00Z,false,\n\
             2,MRI-0001,averted,cold_head_degradation,,,2025-02-01T00:00:00Z,,2025-02-09T00:00:00Z,true,",
        );
        let log = EventLog::from_table(&c, &r).unwrap();
        let f = &log.failures["MRI-0001"][0];
        assert_eq!(f.time_ms, parse_time("2025-01-05T00:00:00Z").unwrap());
        assert_eq!(f.end_ms, parse_time("2025-01-06T00:00:00Z"));
        assert_eq!(EventLog::precursor_visible(f, 24.0), Some(true), "4 days of precursor");
        assert_eq!(EventLog::precursor_visible(f, 200.0), Some(false));
        assert_eq!(log.failure_count(), 1);
        assert_eq!(log.other_kinds["averted"], 1);
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        let (c, r) = table("machine_id,kind\nm1,failure");
        assert!(EventLog::from_table(&c, &r).unwrap_err().contains("no time column"));
        let (c, r) = table("machine_id,time,kind\nm1,yesterday,failure");
        assert!(EventLog::from_table(&c, &r).unwrap_err().contains("`yesterday`"));
        let e = EventLog::load(Path::new("/nonexistent/events.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(".csv or .parquet"), "{e}");
    }
}
