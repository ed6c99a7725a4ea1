//! Scheduling hooks: each machine's booked scans, imported from iCalendar
//! (`schedules/<machine>.ics`, as `larmor dataset generate` writes them) or CSV
//! (`machine_id,start,end[,category]`, RFC 3339 times); the maintenance window
//! that disturbs the fewest booked exams before a forecast failure; planned
//! maintenance visits, which silence their machine while they last.

use chrono::{DateTime, Datelike, Timelike, Utc};
use icalendar::{Component, EventLike};
use larmor_datasets::FailureMode;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const HOUR_MS: i64 = 3_600_000;
/// A schedule file larger than this is refused (a year of a busy machine's
/// bookings is a few MB).
const MAX_SCHEDULE_BYTES: u64 = 64 << 20;
/// Components nest three deep in a real calendar (VCALENDAR, VEVENT, VALARM);
/// the iCalendar parser recurses per level, so deeper input is refused before
/// it can exhaust the stack.
const MAX_ICS_NESTING: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingKind {
    Exam,
    Maintenance,
}

/// One booked slot of a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub start_ms: i64,
    pub end_ms: i64,
    pub kind: BookingKind,
    /// The calendar's UID (stable id of a maintenance visit's silence).
    pub uid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Booked slots per machine, each list sorted by start.
#[derive(Debug, Clone, Default)]
pub struct Schedules {
    pub by_machine: BTreeMap<String, Vec<Booking>>,
    /// Files that could not be read, each with why: they are skipped, the
    /// others still count.
    pub skipped: Vec<String>,
}

impl Schedules {
    /// Every `<machine>.ics` and `*.csv` in `dir`; a missing directory is an
    /// empty schedule. A file that cannot be read or parsed is skipped and
    /// named in `skipped`; only an unreadable directory is an error.
    pub fn load_dir(dir: &Path) -> Result<Schedules, ScheduleError> {
        let mut s = Schedules::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(s),
            Err(source) => {
                return Err(ScheduleError::Io {
                    path: dir.display().to_string(),
                    source,
                });
            }
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str());
            if !matches!(ext, Some("ics" | "csv")) {
                continue;
            }
            match read_schedule_file(&p) {
                Ok(bookings) => {
                    for (m, b) in bookings {
                        s.by_machine.entry(m).or_default().push(b);
                    }
                }
                Err(e) => s.skipped.push(e.to_string()),
            }
        }
        for v in s.by_machine.values_mut() {
            v.sort_by_key(|b| (b.start_ms, b.end_ms));
        }
        Ok(s)
    }

    pub fn machine(&self, id: &str) -> &[Booking] {
        self.by_machine.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Planned maintenance visits, per machine.
    pub fn maintenance(&self) -> impl Iterator<Item = (&str, &Booking)> {
        self.by_machine.iter().flat_map(|(m, b)| {
            b.iter()
                .filter(|b| b.kind == BookingKind::Maintenance)
                .map(move |b| (m.as_str(), b))
        })
    }
}

/// One schedule file's bookings, by machine: `<machine>.ics` or a CSV.
fn read_schedule_file(p: &Path) -> Result<Vec<(String, Booking)>, ScheduleError> {
    let path = p.display().to_string();
    let io = |source| ScheduleError::Io {
        path: path.clone(),
        source,
    };
    let size = std::fs::metadata(p).map_err(io)?.len();
    if size > MAX_SCHEDULE_BYTES {
        return Err(ScheduleError::Parse {
            path: path.clone(),
            reason: format!("{size} bytes, more than the {MAX_SCHEDULE_BYTES} a schedule may have; split it"),
        });
    }
    let text = std::fs::read_to_string(p).map_err(io)?;
    let parse = |reason| ScheduleError::Parse {
        path: path.clone(),
        reason,
    };
    if p.extension().and_then(|e| e.to_str()) == Some("ics") {
        let machine = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let b = parse_ics(&text).map_err(parse)?;
        Ok(b.into_iter().map(|b| (machine.clone(), b)).collect())
    } else {
        parse_csv(&text).map_err(parse)
    }
}

/// How deep `BEGIN:` components nest in an (unfolded) iCalendar text.
fn ics_nesting(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for line in text.lines() {
        let line = line.trim_start();
        if line.len() >= 6 && line[..6].eq_ignore_ascii_case("BEGIN:") {
            depth += 1;
            deepest = deepest.max(depth);
        } else if line.len() >= 4 && line[..4].eq_ignore_ascii_case("END:") {
            depth = depth.saturating_sub(1);
        }
    }
    deepest
}

/// The booked, not cancelled, events of one iCalendar file.
pub fn parse_ics(text: &str) -> Result<Vec<Booking>, String> {
    let depth = ics_nesting(text);
    if depth > MAX_ICS_NESTING {
        return Err(format!(
            "components nest {depth} deep (a calendar needs at most 3; the limit is {MAX_ICS_NESTING})"
        ));
    }
    let unfolded = icalendar::parser::unfold(text);
    let cal: icalendar::Calendar = icalendar::parser::read_calendar(&unfolded)?.into();
    // A calendar may carry several revisions of one event (same UID, rising
    // SEQUENCE: moved, then cancelled); only the latest counts.
    let events: Vec<&icalendar::Event> = cal.events().collect();
    let mut latest: BTreeMap<&str, (i64, usize)> = BTreeMap::new();
    for (i, ev) in events.iter().enumerate() {
        if let Some(uid) = ev.get_uid() {
            let seq = ev
                .property_value("SEQUENCE")
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(0);
            let e = latest.entry(uid).or_insert((seq, i));
            if seq >= e.0 {
                *e = (seq, i);
            }
        }
    }
    let mut out = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        if ev
            .get_uid()
            .is_some_and(|uid| latest.get(uid).is_some_and(|&(_, j)| j != i))
        {
            continue;
        }
        if ev
            .property_value("STATUS")
            .is_some_and(|s| s.eq_ignore_ascii_case("CANCELLED"))
        {
            continue;
        }
        let (Some(start), Some(end)) = (ev.get_start(), ev.get_end()) else {
            return Err(format!("event {:?} without DTSTART/DTEND", ev.get_uid()));
        };
        let ms = |d: icalendar::DatePerhapsTime| -> Result<i64, String> {
            match d {
                icalendar::DatePerhapsTime::DateTime(icalendar::CalendarDateTime::Utc(t)) => Ok(t.timestamp_millis()),
                // Floating times are read as UTC, as the simulator's are.
                icalendar::DatePerhapsTime::DateTime(icalendar::CalendarDateTime::Floating(t)) => {
                    Ok(t.and_utc().timestamp_millis())
                }
                icalendar::DatePerhapsTime::DateTime(dt) => Err(format!(
                    "{dt:?}: times with a TZID are not supported; write them in UTC"
                )),
                icalendar::DatePerhapsTime::Date(d) => {
                    Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_millis())
                }
            }
        };
        let kind = if ev
            .get_categories()
            .is_some_and(|c| c.iter().any(|c| c.eq_ignore_ascii_case("MAINTENANCE")))
        {
            BookingKind::Maintenance
        } else {
            BookingKind::Exam
        };
        let (start_ms, end_ms) = (ms(start)?, ms(end)?);
        if end_ms < start_ms {
            return Err(format!("event {:?} ends before it starts", ev.get_uid()));
        }
        out.push(Booking {
            start_ms,
            end_ms,
            kind,
            uid: ev.get_uid().unwrap_or_default().to_string(),
        });
    }
    Ok(out)
}

/// `machine_id,start,end[,category]` rows (header first; RFC 3339 times; category
/// `maintenance` or anything else for an exam).
pub fn parse_csv(text: &str) -> Result<Vec<(String, Booking)>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().ok_or("empty file")?.split(',').map(str::trim).collect();
    let col = |n: &str| {
        header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(n))
            .ok_or(format!("no `{n}` column (want machine_id,start,end[,category])"))
    };
    let (m, s, e) = (col("machine_id")?, col("start")?, col("end")?);
    let c = col("category").ok();
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let get = |k: usize| f.get(k).copied().ok_or(format!("line {}: too few fields", i + 2));
        let t = |k: usize| -> Result<i64, String> {
            let v = get(k)?;
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.timestamp_millis())
                .map_err(|e| format!("line {}: {v:?}: {e}", i + 2))
        };
        let kind = match c.map(get).transpose()? {
            Some(c) if c.eq_ignore_ascii_case("maintenance") => BookingKind::Maintenance,
            _ => BookingKind::Exam,
        };
        out.push((
            get(m)?.to_string(),
            Booking {
                start_ms: t(s)?,
                end_ms: t(e)?,
                kind,
                uid: format!("csv-{}-{}", get(m)?, get(s)?),
            },
        ));
    }
    Ok(out)
}

/// A vendor's service hours: days of the week and a daily time range, UTC
/// (`"Mon-Fri 08:00-18:00"`, `"Mon,Wed 07:00-15:30"`, `"Mon-Sun 00:00-24:00"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceHours {
    /// Monday first.
    pub days: [bool; 7],
    pub start_min: u32,
    pub end_min: u32,
}

impl ServiceHours {
    pub fn parse(s: &str) -> Result<ServiceHours, String> {
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let bad = || format!("service hours {s:?}: want e.g. \"Mon-Fri 08:00-18:00\" (UTC)");
        let (days_s, hours_s) = s.trim().split_once(' ').ok_or_else(bad)?;
        let day = |d: &str| {
            DAYS.iter()
                .position(|x| x.eq_ignore_ascii_case(d.trim()))
                .ok_or_else(bad)
        };
        let mut days = [false; 7];
        for part in days_s.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    if a > b {
                        return Err(bad());
                    }
                    days[a..=b].iter_mut().for_each(|d| *d = true);
                }
                None => days[day(part)?] = true,
            }
        }
        let minutes = |t: &str| -> Result<u32, String> {
            let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
            let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            (h <= 24 && m < 60 && h * 60 + m <= 24 * 60)
                .then_some(h * 60 + m)
                .ok_or_else(bad)
        };
        let (a, b) = hours_s.split_once('-').ok_or_else(bad)?;
        let (start_min, end_min) = (minutes(a)?, minutes(b)?);
        if start_min >= end_min {
            return Err(bad());
        }
        Ok(ServiceHours {
            days,
            start_min,
            end_min,
        })
    }

    /// Whether `[start, end)` lies within one day's service hours.
    pub fn contains(&self, start_ms: i64, end_ms: i64) -> bool {
        let (Some(s), Some(e)) = (
            DateTime::<Utc>::from_timestamp_millis(start_ms),
            DateTime::<Utc>::from_timestamp_millis(end_ms - 1),
        ) else {
            return false;
        };
        let min = |t: DateTime<Utc>| t.hour() * 60 + t.minute();
        s.date_naive() == e.date_naive()
            && self.days[s.weekday().num_days_from_monday() as usize]
            && min(s) >= self.start_min
            && min(e) < self.end_min
    }
}

/// A proposed maintenance window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proposal {
    pub start_ms: i64,
    pub end_ms: i64,
    /// The window must start before this: the earliest the failure may come (the
    /// forecast interval's lower bound) less the visit's length.
    pub deadline_ms: i64,
    /// Booked exams the window overlaps (counted, never named).
    pub affected_exams: usize,
}

impl Proposal {
    /// The window as an iCalendar VEVENT (a VCALENDAR with one event), with the
    /// affected exams counted.
    pub fn vevent(&self, machine_id: &str, mode: Option<FailureMode>) -> String {
        let utc = |ms| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        let what = mode.map(|m| m.describe()).unwrap_or("predicted failure");
        let ev = icalendar::Event::new()
            .uid(&format!(
                "{}@larmor",
                crate::alert::stable_id(&[machine_id, &self.start_ms.to_string(), "proposal"])
            ))
            .summary(&format!("Proposed maintenance: {machine_id} ({what})"))
            .description(&format!(
                "Service window proposed by Larmor before the predicted failure. Booked exams to move: {}.",
                self.affected_exams
            ))
            .starts(utc(self.start_ms))
            .ends(utc(self.end_ms))
            .categories(["MAINTENANCE"])
            .add_property("STATUS", "TENTATIVE")
            .done();
        icalendar::Calendar::new().push(ev).done().to_string()
    }
}

/// What a maintenance window must respect.
#[derive(Debug, Clone, Copy)]
pub struct WindowRules {
    pub now_ms: i64,
    /// The earliest the failure may come (forecast interval lower bound).
    pub failure_ms: i64,
    /// Time for the part to arrive: no window starts before `now + lead_time`.
    pub lead_time: Duration,
    pub visit: Duration,
    pub hours: ServiceHours,
    /// Candidate windows start on this grid.
    pub step: Duration,
}

/// The window with the fewest booked exams overlapping it, the earliest among
/// equals, that starts after the part can arrive, lies within the service hours
/// and ends before the failure may come. None when no such window exists.
pub fn choose_window(bookings: &[Booking], r: &WindowRules) -> Option<Proposal> {
    let step = (r.step.as_millis() as i64).max(60_000);
    let visit = r.visit.as_millis() as i64;
    let earliest = r.now_ms + r.lead_time.as_millis() as i64;
    let mut t = earliest.div_euclid(step) * step;
    if t < earliest {
        t += step;
    }
    let mut exams: Vec<&Booking> = bookings.iter().filter(|b| b.kind == BookingKind::Exam).collect();
    exams.sort_by_key(|b| b.start_ms);
    let mut best: Option<Proposal> = None;
    // Bounded: a forecast years out is not planned to the half hour.
    let last = r.failure_ms.min(earliest + 366 * 24 * HOUR_MS);
    while t + visit <= last {
        if r.hours.contains(t, t + visit) {
            let end = t + visit;
            // Exams sorted by start: those starting before the window's end, ending after its start.
            let upto = exams.partition_point(|b| b.start_ms < end);
            let n = exams[..upto].iter().filter(|b| b.end_ms > t).count();
            if best.as_ref().is_none_or(|b| n < b.affected_exams) {
                best = Some(Proposal {
                    start_ms: t,
                    end_ms: end,
                    deadline_ms: r.failure_ms - visit,
                    affected_exams: n,
                });
                if n == 0 {
                    break;
                }
            }
        }
        t += step;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    // Monday 2025-01-06 00:00 UTC.
    const MONDAY: i64 = 1_736_121_600_000;

    fn exam(start_h: f64, end_h: f64) -> Booking {
        Booking {
            start_ms: MONDAY + (start_h * HOUR_MS as f64) as i64,
            end_ms: MONDAY + (end_h * HOUR_MS as f64) as i64,
            kind: BookingKind::Exam,
            uid: String::new(),
        }
    }

    fn rules(failure_h: i64) -> WindowRules {
        WindowRules {
            now_ms: MONDAY,
            failure_ms: MONDAY + failure_h * HOUR_MS,
            lead_time: Duration::from_secs(0),
            visit: Duration::from_secs(4 * 3600),
            hours: ServiceHours::parse("Mon-Fri 08:00-18:00").unwrap(),
            step: Duration::from_secs(1800),
        }
    }

    #[test]
    fn service_hours_parse_and_contain() {
        let h = ServiceHours::parse("Mon-Fri 08:00-18:00").unwrap();
        assert!(h.contains(MONDAY + 8 * HOUR_MS, MONDAY + 12 * HOUR_MS));
        assert!(!h.contains(MONDAY + 7 * HOUR_MS, MONDAY + 11 * HOUR_MS));
        assert!(h.contains(MONDAY + 14 * HOUR_MS, MONDAY + 18 * HOUR_MS));
        assert!(!h.contains(MONDAY + 15 * HOUR_MS, MONDAY + 19 * HOUR_MS));
        assert!(
            !h.contains(
                MONDAY + 5 * 24 * HOUR_MS + 9 * HOUR_MS,
                MONDAY + 5 * 24 * HOUR_MS + 12 * HOUR_MS
            ),
            "Saturday"
        );
        assert!(ServiceHours::parse("Mon,Wed 07:00-15:30").unwrap().days[2]);
        for bad in [
            "Fri-Mon 08:00-18:00",
            "Mon-Fri 18:00-08:00",
            "Mon-Fri",
            "Xyz 08:00-09:00",
            "Mon 25:00-26:00",
        ] {
            assert!(ServiceHours::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_free_slot_wins_and_lead_time_and_hours_are_kept() {
        // Monday busy 08-18, Tuesday free from 13:00.
        let mut b: Vec<Booking> = (8..18).map(|h| exam(h as f64, h as f64 + 1.0)).collect();
        b.extend((8..13).map(|h| exam(24.0 + h as f64, 24.0 + h as f64 + 1.0)));
        let p = choose_window(&b, &rules(7 * 24)).unwrap();
        assert_eq!((p.start_ms - MONDAY) / HOUR_MS, 24 + 13);
        assert_eq!(p.affected_exams, 0);
        // A two-day lead time: Wednesday 08:00 is the first possible, and free.
        let mut r = rules(7 * 24);
        r.lead_time = Duration::from_secs(48 * 3600);
        let p = choose_window(&b, &r).unwrap();
        assert_eq!((p.start_ms - MONDAY) / HOUR_MS, 48 + 8);
    }

    #[test]
    fn a_fully_booked_week_gets_the_least_disturbing_window() {
        // Every hour of Mon-Fri 07-19 booked with 30-min exams, except Thursday
        // afternoon's, which are hour-long: fewer exams to move there.
        let mut b = Vec::new();
        for d in 0..5 {
            for h in 7..19 {
                let base = (d * 24 + h) as f64;
                if d == 3 && h >= 14 {
                    b.push(exam(base, base + 1.0));
                } else {
                    b.push(exam(base, base + 0.5));
                    b.push(exam(base + 0.5, base + 1.0));
                }
            }
        }
        let p = choose_window(&b, &rules(7 * 24)).unwrap();
        assert_eq!((p.start_ms - MONDAY) / HOUR_MS, 3 * 24 + 14, "Thursday 14:00");
        assert_eq!(p.affected_exams, 4);
        assert!(p.end_ms <= p.deadline_ms + 4 * HOUR_MS);
    }

    #[test]
    fn no_window_when_the_failure_comes_first() {
        // Failure possible from Monday 10:00: no 4-hour window within hours fits.
        assert_eq!(choose_window(&[], &rules(10)), None);
        // Or the part arrives after it.
        let mut r = rules(3 * 24);
        r.lead_time = Duration::from_secs(4 * 24 * 3600);
        assert_eq!(choose_window(&[], &r), None);
        // With the interval's lower bound at Tuesday 12:00 the window is Monday's.
        let p = choose_window(&[], &rules(36)).unwrap();
        assert!(p.end_ms <= MONDAY + 36 * HOUR_MS);
    }

    #[test]
    fn ics_and_csv_import_skip_cancelled_and_tell_maintenance_apart() {
        let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:a\r\nDTSTART:20250106T080000Z\r\nDTEND:20250106T083000Z\r\nCATEGORIES:EXAM\r\nSTATUS:CONFIRMED\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:b\r\nDTSTART:20250106T090000Z\r\nDTEND:20250106T093000Z\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:c\r\nDTSTART:20250107T080000Z\r\nDTEND:20250107T120000Z\r\nCATEGORIES:MAINTENANCE\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let b = parse_ics(ics).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].start_ms, MONDAY + 8 * HOUR_MS);
        assert_eq!(b[1].kind, BookingKind::Maintenance);
        let csv = "machine_id,start,end,category\nM1,2025-01-06T08:00:00Z,2025-01-06T08:30:00Z,exam\nM1,2025-01-07T08:00:00Z,2025-01-07T12:00:00Z,maintenance\n";
        let rows = parse_csv(csv).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].1.kind, BookingKind::Maintenance);
        assert!(parse_csv("start,end\n").is_err());
        assert!(parse_csv("machine_id,start,end\nM,yesterday,today\n").is_err());
    }

    #[test]
    fn the_proposal_is_a_vevent_that_counts_not_names() {
        let p = Proposal {
            start_ms: MONDAY + 8 * HOUR_MS,
            end_ms: MONDAY + 12 * HOUR_MS,
            deadline_ms: MONDAY + 20 * HOUR_MS,
            affected_exams: 3,
        };
        let v = p.vevent("MRI-0001", Some(FailureMode::ColdHeadDegradation));
        assert!(
            v.contains("BEGIN:VEVENT") && v.contains("DTSTART:20250106T080000Z"),
            "{v}"
        );
        assert!(v.contains("Booked exams to move: 3"), "{v}");
        // It parses back as a maintenance booking.
        let back = parse_ics(&v).unwrap();
        assert_eq!(back[0].kind, BookingKind::Maintenance);
        assert_eq!((back[0].start_ms, back[0].end_ms), (p.start_ms, p.end_ms));
    }

    #[test]
    fn only_the_latest_revision_of_an_event_counts() {
        let ev = |uid: &str, seq: u32, day: u32, status: &str| {
            format!(
                "BEGIN:VEVENT\r\nUID:{uid}\r\nSEQUENCE:{seq}\r\nDTSTART:202501{day:02}T080000Z\r\nDTEND:202501{day:02}T090000Z\r\nSTATUS:{status}\r\nEND:VEVENT\r\n"
            )
        };
        let ics = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{}{}{}{}{}END:VCALENDAR\r\n",
            ev("moved", 0, 6, "CONFIRMED"),
            ev("cancelled", 0, 6, "CONFIRMED"),
            ev("moved", 1, 8, "CONFIRMED"),
            ev("cancelled", 1, 6, "CANCELLED"),
            ev("kept", 0, 7, "CONFIRMED"),
        );
        let b = parse_ics(&ics).unwrap();
        let got: Vec<(&str, i64)> = b
            .iter()
            .map(|b| (b.uid.as_str(), (b.start_ms - MONDAY) / HOUR_MS))
            .collect();
        assert_eq!(got, [("moved", 48 + 8), ("kept", 24 + 8)]);
    }

    #[test]
    fn a_hostile_calendar_is_refused_and_skipped_while_the_others_load() {
        // 100,000 nested components would overflow the parser's stack.
        let deep = "BEGIN:VCALENDAR\r\n".repeat(100_000);
        let err = parse_ics(&deep).unwrap_err();
        assert!(err.contains("nest 100000 deep"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("BAD.ics"), &deep).unwrap();
        std::fs::write(dir.path().join("ALSO-BAD.csv"), "machine_id,start\nM1,yesterday\n").unwrap();
        std::fs::write(
            dir.path().join("M1.ics"),
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\nDTSTART:20250106T080000Z\r\nDTEND:20250106T083000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        )
        .unwrap();
        let s = Schedules::load_dir(dir.path()).unwrap();
        assert_eq!(s.machine("M1").len(), 1);
        assert!(s.machine("BAD").is_empty());
        assert_eq!(s.skipped.len(), 2, "{:?}", s.skipped);
        assert!(s.skipped.iter().any(|w| w.contains("BAD.ics") && w.contains("nest")));
        assert!(
            s.skipped
                .iter()
                .any(|w| w.contains("ALSO-BAD.csv") && w.contains("end"))
        );
    }
}
