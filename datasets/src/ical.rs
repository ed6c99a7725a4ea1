//! Scan schedules as iCalendar (RFC 5545): one VCALENDAR per machine with a
//! VEVENT per booked exam (cancelled when the machine was down) and per planned
//! maintenance visit, for scheduling hooks to import.

use crate::fleet::Machine;
use crate::scenario::MachinePlan;
use crate::schedule::exams_between;
use crate::time::format_ical;
use std::fmt::Write;

/// Escapes a TEXT value (RFC 5545 §3.3.11).
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends a content line, folded at 75 octets (RFC 5545 §3.1), ending in CRLF.
pub fn push_line(out: &mut String, line: &str) {
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
}

/// The machine's calendar for `[from_ms, to_ms)`. `dtstamp_ms` is the DTSTAMP of
/// every event (fixed, so the same seed gives the same file).
pub fn calendar(machine: &Machine, index: usize, seed: u64, plan: &MachinePlan, from_ms: i64, to_ms: i64) -> String {
    let mut out = String::new();
    let site = machine.site();
    push_line(&mut out, "BEGIN:VCALENDAR");
    push_line(&mut out, "VERSION:2.0");
    push_line(&mut out, "PRODID:-//Larmor//datasets//EN");
    push_line(&mut out, "CALSCALE:GREGORIAN");
    push_line(
        &mut out,
        &format!(
            "X-WR-CALNAME:{}",
            escape_text(&format!("{} ({}, {})", machine.id, machine.model, site.name))
        ),
    );
    let stamp = format_ical(from_ms);
    let mut downtime: Vec<(i64, i64)> = plan.failures.iter().filter_map(|f| f.downtime).collect();
    downtime.extend(plan.maintenance.iter().map(|v| (v.start_ms, v.end_ms)));
    let mut line = String::new();
    let mut event = |out: &mut String, uid: &str, start: i64, end: i64, summary: &str, category: &str, status: &str| {
        push_line(out, "BEGIN:VEVENT");
        for (k, v) in [
            ("UID", uid),
            ("DTSTAMP", stamp.as_str()),
            ("DTSTART", format_ical(start).as_str()),
            ("DTEND", format_ical(end).as_str()),
            ("SUMMARY", escape_text(summary).as_str()),
            ("CATEGORIES", category),
            ("STATUS", status),
        ] {
            line.clear();
            let _ = write!(line, "{k}:{v}");
            push_line(out, &line);
        }
        push_line(out, "END:VEVENT");
    };
    for e in exams_between(seed, index, site, from_ms, to_ms) {
        if e.start_ms < from_ms {
            continue; // belongs to the previous period
        }
        let cancelled = downtime.iter().any(|&(s, d)| e.start_ms < d && s < e.end_ms);
        let uid = format!("{}-{}@larmor.invalid", machine.id, format_ical(e.start_ms));
        let status = if cancelled { "CANCELLED" } else { "CONFIRMED" };
        event(&mut out, &uid, e.start_ms, e.end_ms, e.kind.label(), "EXAM", status);
    }
    for v in plan
        .maintenance
        .iter()
        .filter(|v| v.start_ms >= from_ms && v.start_ms < to_ms)
    {
        let uid = format!("{}-pm-{}@larmor.invalid", machine.id, format_ical(v.start_ms));
        let what = if v.coldhead_swap {
            "Planned maintenance (cold-head swap)"
        } else {
            "Planned maintenance"
        };
        event(&mut out, &uid, v.start_ms, v.end_ms, what, "MAINTENANCE", "CONFIRMED");
    }
    push_line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;

    #[test]
    fn lines_fold_and_text_escapes() {
        let mut out = String::new();
        push_line(&mut out, &"x".repeat(160));
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(lines.len(), 4, "{out:?}");
        assert_eq!(lines[0].len(), 75);
        assert!(lines[1].starts_with(' ') && lines[1].len() == 75);
        assert_eq!(escape_text("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
    }

    #[test]
    fn a_calendar_is_well_formed() {
        let f = Fleet::generate(3, 7);
        let from = f.reference_day * crate::time::DAY_MS;
        let cal = calendar(
            &f.machines[0],
            0,
            7,
            &MachinePlan::default(),
            from,
            from + 7 * crate::time::DAY_MS,
        );
        assert!(cal.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
        assert!(cal.ends_with("END:VCALENDAR\r\n"));
        let begins = cal.matches("BEGIN:VEVENT").count();
        assert!(begins > 20, "a week of exams: {begins}");
        assert_eq!(begins, cal.matches("END:VEVENT").count());
        assert_eq!(begins, cal.matches("DTSTART:").count());
        assert!(cal.split("\r\n").all(|l| l.len() <= 75));
    }
}
