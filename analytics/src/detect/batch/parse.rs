//! Reading the CSV `larmor detect` is given: column names, timestamps in
//! every usual spelling, values (empty or NaN: not measured), and a quick row
//! count (for a probation given as a share of the series).

use super::BatchError;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use std::io::Read;
use std::path::Path;

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
pub(super) fn parse_value(text: &str) -> Result<Option<f64>, ()> {
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

pub(super) fn column(
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

/// Rows of a CSV file (lines after the header; a quick count, for a probation given as a share).
pub fn count_rows(path: &Path) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    if last != b'\n' {
        lines += 1; // a last line without its newline
    }
    Ok(lines.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn rows_are_counted_with_or_without_a_last_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "timestamp,value\n1,2\n3,4\n").unwrap();
        assert_eq!(count_rows(&p).unwrap(), 2);
        std::fs::write(&p, "timestamp,value\n1,2\n3,4").unwrap();
        assert_eq!(count_rows(&p).unwrap(), 2);
    }
}
