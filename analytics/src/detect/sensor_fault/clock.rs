//! Clock skew, from the data: a gateway whose clock is set wrong shifts every
//! timestamp of its machine alike, so each series looks normal on its own. What
//! gives it away is the daily rhythm of the scans: people in the magnet room
//! (`occupancy`) follow the booked exams, which start and stop at the same
//! hours week after week. Each day, the share of each 15-minute slot with
//! someone in the room (averaged over the hour around it) is compared with the
//! same weekday's usual share, shifted by up to three hours either way. When one shift fits clearly better than
//! none, on `clock_days` days in a row, the clock is reported as off by that
//! much (one anomaly, until the rhythm is back in place). Days without scans
//! (a closed Sunday) say nothing; shifts smaller than `clock_min_shift` are
//! not judged (the bookings themselves move by a few minutes).

use super::SensorFaultSettings;

/// The channel whose daily rhythm is watched.
pub const RHYTHM_CHANNEL: &str = "occupancy";

const DAY_MS: i64 = 86_400_000;
const SLOT_MS: i64 = 15 * 60_000;
const SLOTS: usize = (DAY_MS / SLOT_MS) as usize;
/// Largest shift tried, slots (3 hours).
const MAX_SHIFT: i64 = 12;
/// A day is judged when its readings cover this share of its slots...
const MIN_COVERAGE: f64 = 0.75;
/// ...and someone was in the room for at least this many slots.
const MIN_ACTIVE_SLOTS: f64 = 8.0;
/// The best shift must leave at most this share of the unshifted squared error.
const FIT_GAIN: f64 = 0.5;
/// Same weekdays learnt before any day is judged.
const MIN_WEEKS: u32 = 2;

/// What the clock check needs.
#[derive(Debug, Clone, Copy)]
pub struct ClockParams {
    /// Smallest shift judged, slots.
    pub min_shift: i64,
    pub days: u32,
}

impl ClockParams {
    pub fn of(s: &SensorFaultSettings) -> ClockParams {
        ClockParams {
            min_shift: ((s.clock_min_shift.as_millis() as i64 + SLOT_MS - 1) / SLOT_MS).max(1),
            days: s.clock_days.max(1),
        }
    }
}

/// A confirmed clock skew.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSkew {
    /// How late (positive) or early the rhythm runs, ms.
    pub shift_ms: i64,
    pub days: u32,
}

/// One machine's rhythm: usual occupancy per weekday and slot, and today's.
#[derive(Debug, Clone)]
pub struct Rhythm {
    p: ClockParams,
    usual: Box<[[f64; SLOTS]; 7]>,
    learnt: [u32; 7],
    day: i64,
    sums: [f64; SLOTS],
    counts: [u32; SLOTS],
    /// Skewed days in a row, and their shift (slots).
    run: u32,
    shift: i64,
    open: bool,
}

impl Rhythm {
    pub fn new(p: ClockParams) -> Rhythm {
        Rhythm {
            p,
            usual: Box::new([[0.0; SLOTS]; 7]),
            learnt: [0; 7],
            day: i64::MIN,
            sums: [0.0; SLOTS],
            counts: [0; SLOTS],
            run: 0,
            shift: 0,
            open: false,
        }
    }

    /// Takes a reading of [`RHYTHM_CHANNEL`]; returns a skew when the day
    /// before closes and confirms one that is not reported yet.
    pub fn update(&mut self, ts_ms: i64, occupancy: f64) -> Option<ClockSkew> {
        if !occupancy.is_finite() {
            return None;
        }
        let day = ts_ms.div_euclid(DAY_MS);
        let mut out = None;
        if day != self.day {
            if day < self.day {
                return None; // a clock set back: those readings belong to a day already judged
            }
            if self.day != i64::MIN {
                out = self.close_day();
            }
            self.day = day;
            self.sums = [0.0; SLOTS];
            self.counts = [0; SLOTS];
        }
        let slot = (ts_ms.rem_euclid(DAY_MS) / SLOT_MS) as usize;
        self.sums[slot] += if occupancy >= 0.5 { 1.0 } else { 0.0 };
        self.counts[slot] += 1;
        out
    }

    fn close_day(&mut self) -> Option<ClockSkew> {
        let covered = self.counts.iter().filter(|&&c| c > 0).count();
        if (covered as f64) < MIN_COVERAGE * SLOTS as f64 {
            return None;
        }
        let today: Vec<Option<f64>> = self
            .sums
            .iter()
            .zip(&self.counts)
            .map(|(&s, &c)| (c > 0).then(|| s / f64::from(c)))
            .collect();
        let active: f64 = today.iter().flatten().sum();
        let weekday = (self.day + 3).rem_euclid(7) as usize;
        if active < MIN_ACTIVE_SLOTS {
            return None;
        }
        let mut skewed = None;
        if self.learnt[weekday] >= MIN_WEEKS {
            // Compared over an hour around each slot: within the opening hours the
            // exams and changeovers fall anywhere, so slot by slot the day is mostly
            // noise; the hours the room is used at all are the rhythm.
            let today = smooth(&today);
            let usual = smooth(&self.usual[weekday].map(Some));
            let error = |shift: i64| -> f64 {
                today
                    .iter()
                    .enumerate()
                    .filter_map(|(i, a)| {
                        let a = (*a)?;
                        let j = (i as i64 - shift).rem_euclid(SLOTS as i64) as usize;
                        Some((a - usual[j]?).powi(2))
                    })
                    .sum()
            };
            let none = error(0);
            let (best, fit) = (-MAX_SHIFT..=MAX_SHIFT)
                .map(|k| (k, error(k)))
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.abs().cmp(&b.0.abs())))
                .expect("shifts to try");
            if best.abs() >= self.p.min_shift && fit <= FIT_GAIN * none {
                skewed = Some(best);
            }
        }
        match skewed {
            Some(k) => {
                let same = self.run > 0 && (k - self.shift).abs() <= 1;
                self.run = if same { self.run + 1 } else { 1 };
                self.shift = k;
                if self.run >= self.p.days && !self.open {
                    self.open = true;
                    return Some(ClockSkew {
                        shift_ms: k * SLOT_MS,
                        days: self.run,
                    });
                }
                None
            }
            None => {
                self.run = 0;
                self.open = false;
                // Only days in their usual place teach the usual rhythm.
                let n = self.learnt[weekday];
                let a = 1.0 / f64::from(n + 1).min(4.0);
                for (u, t) in self.usual[weekday].iter_mut().zip(&today) {
                    if let Some(t) = t {
                        *u += a * (t - *u);
                    }
                }
                self.learnt[weekday] = n + 1;
                None
            }
        }
    }

    /// Forget today's readings (after a warm-up on averages: occupancy averaged is not occupancy).
    pub fn reset_day(&mut self) {
        self.day = i64::MIN;
    }
}

/// Slots averaged by [`smooth`]: an hour.
const SMOOTH_SLOTS: i64 = 4;

/// Each slot's share averaged with its neighbours' over [`SMOOTH_SLOTS`] (the
/// slots present; none present: none). Wraps at midnight like the shifts.
fn smooth(shares: &[Option<f64>]) -> Vec<Option<f64>> {
    let n = shares.len() as i64;
    (0..n)
        .map(|i| {
            let (sum, count) = (-SMOOTH_SLOTS / 2..SMOOTH_SLOTS - SMOOTH_SLOTS / 2)
                .filter_map(|k| shares[(i + k).rem_euclid(n) as usize])
                .fold((0.0, 0u32), |(s, c), x| (s + x, c + 1));
            (count > 0).then(|| sum / f64::from(count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Occupancy of a clinic open 07:30-18:00 on weekdays (exams with gaps),
    /// every 5 minutes, its clock `skew` ms ahead from `skew_from` on.
    fn clinic(days: i64, skew_from: i64, skew: i64) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        let start = 20_089 * DAY_MS;
        for k in 0..days * 288 {
            let t = start + k * 300_000;
            let weekday = (t.div_euclid(DAY_MS) + 3).rem_euclid(7);
            let minute = t.rem_euclid(DAY_MS) / 60_000;
            let open = weekday < 5 && (450..1080).contains(&minute);
            // a changeover of 10 minutes every 40
            let busy = open && (minute - 450) % 40 < 30 && (k * 7919) % 13 != 0;
            let reported = if t >= start + skew_from * DAY_MS { t + skew } else { t };
            out.push((reported, if busy { 1.0 } else { 0.0 }));
        }
        out
    }

    fn run(data: &[(i64, f64)], min_shift_min: u64) -> Vec<(i64, ClockSkew)> {
        let s = SensorFaultSettings {
            clock_min_shift: std::time::Duration::from_secs(min_shift_min * 60),
            ..SensorFaultSettings::default()
        };
        let mut r = Rhythm::new(ClockParams::of(&s));
        data.iter()
            .filter_map(|&(t, v)| r.update(t, v).map(|k| ((t - data[0].0) / DAY_MS, k)))
            .collect()
    }

    #[test]
    fn a_clock_running_late_is_reported_once() {
        let found = run(&clinic(40, 22, 45 * 60_000), 30);
        assert_eq!(found.len(), 1, "{found:?}");
        let (day, skew) = found[0];
        assert_eq!(skew.shift_ms, 45 * 60_000);
        assert!((23..=26).contains(&day), "reported on day {day}");
    }

    #[test]
    fn quiet_when_the_rhythm_holds() {
        assert_eq!(run(&clinic(60, 0, 0), 30), vec![]);
        // A skew smaller than the smallest judged is not reported.
        assert_eq!(run(&clinic(40, 22, 10 * 60_000), 30), vec![]);
    }
}
