//! Scan schedules: the exams booked on each machine, day and night, weekdays and
//! weekends, after the site's working pattern. The schedule drives the load: the
//! gradient heat, vibration, RF duty, door and occupancy all follow the exams.
//!
//! A day's bookings depend only on (seed, machine, local day), so any day can be
//! recomputed without simulating the days before it.

use crate::fleet::{Site, mix, tag};
use crate::time::{DAY_MS, MINUTE_MS, weekday};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// What is scanned; each exam type loads the scanner differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExamKind {
    Brain,
    Spine,
    Joint,
    Abdomen,
    Cardiac,
    Prostate,
    Breast,
    NeuroDiffusion,
    Angiography,
}

impl ExamKind {
    pub const ALL: [ExamKind; 9] = [
        ExamKind::Brain,
        ExamKind::Spine,
        ExamKind::Joint,
        ExamKind::Abdomen,
        ExamKind::Cardiac,
        ExamKind::Prostate,
        ExamKind::Breast,
        ExamKind::NeuroDiffusion,
        ExamKind::Angiography,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ExamKind::Brain => "MRI brain",
            ExamKind::Spine => "MRI spine",
            ExamKind::Joint => "MRI knee/shoulder",
            ExamKind::Abdomen => "MRI abdomen",
            ExamKind::Cardiac => "cardiac MRI",
            ExamKind::Prostate => "MRI prostate (mpMRI)",
            ExamKind::Breast => "MRI breast",
            ExamKind::NeuroDiffusion => "MRI brain diffusion/fMRI (EPI)",
            ExamKind::Angiography => "MR angiography",
        }
    }

    /// Booked length range, minutes (multiples of 5).
    fn minutes(self) -> (u32, u32) {
        match self {
            ExamKind::Brain => (20, 30),
            ExamKind::Spine => (25, 40),
            ExamKind::Joint => (15, 30),
            ExamKind::Abdomen => (30, 45),
            ExamKind::Cardiac => (45, 60),
            ExamKind::Prostate => (30, 45),
            ExamKind::Breast => (25, 40),
            ExamKind::NeuroDiffusion => (30, 60),
            ExamKind::Angiography => (20, 35),
        }
    }

    /// Gradient duty while scanning, 0..1: drives coil heat.
    pub fn gradient(self) -> f64 {
        match self {
            ExamKind::Brain => 0.6,
            ExamKind::Spine => 0.55,
            ExamKind::Joint => 0.45,
            ExamKind::Abdomen => 0.7,
            ExamKind::Cardiac => 0.8,
            ExamKind::Prostate => 0.85,
            ExamKind::Breast => 0.7,
            ExamKind::NeuroDiffusion => 1.0,
            ExamKind::Angiography => 0.65,
        }
    }

    /// Acoustic/vibration intensity, 0..1 (EPI is the loudest).
    pub fn acoustic(self) -> f64 {
        match self {
            ExamKind::NeuroDiffusion => 1.0,
            ExamKind::Prostate => 0.8,
            ExamKind::Cardiac => 0.6,
            ExamKind::Abdomen | ExamKind::Breast => 0.55,
            ExamKind::Brain | ExamKind::Angiography => 0.5,
            ExamKind::Spine => 0.45,
            ExamKind::Joint => 0.4,
        }
    }

    /// RF duty, 0..1 (fast spin echo and body imaging deposit the most).
    pub fn rf(self) -> f64 {
        match self {
            ExamKind::Spine | ExamKind::Joint => 0.8,
            ExamKind::Abdomen | ExamKind::Breast => 0.7,
            ExamKind::Cardiac => 0.6,
            ExamKind::Brain | ExamKind::Prostate | ExamKind::Angiography => 0.5,
            ExamKind::NeuroDiffusion => 0.4,
        }
    }

    /// Relative frequency in a general hospital's book.
    fn weight(self) -> u32 {
        match self {
            ExamKind::Brain => 24,
            ExamKind::Spine => 18,
            ExamKind::Joint => 16,
            ExamKind::Abdomen => 10,
            ExamKind::Cardiac => 5,
            ExamKind::Prostate => 7,
            ExamKind::Breast => 5,
            ExamKind::NeuroDiffusion => 8,
            ExamKind::Angiography => 7,
        }
    }

    fn pick(rng: &mut SmallRng) -> ExamKind {
        let total: u32 = Self::ALL.iter().map(|k| k.weight()).sum();
        let mut x = rng.random_range(0..total);
        for k in Self::ALL {
            if x < k.weight() {
                return k;
            }
            x -= k.weight();
        }
        ExamKind::Brain
    }
}

/// One booked exam, in UTC milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exam {
    pub start_ms: i64,
    pub end_ms: i64,
    pub kind: ExamKind,
}

/// Exams booked on a machine during one local day of its site (`local_day` is a
/// day number in the site's local time).
pub fn exams_on_local_day(seed: u64, machine: usize, site: &Site, local_day: i64) -> Vec<Exam> {
    let mut rng = SmallRng::seed_from_u64(mix(seed ^ local_day as u64, machine as u64, tag::SCHEDULE));
    let offset_ms = i64::from(site.utc_offset_min) * MINUTE_MS;
    let day_start = local_day * DAY_MS - offset_ms;
    let mut exams = Vec::new();
    for (open_h, close_h, fill) in site.pattern.sessions(weekday(local_day)) {
        let (open, close) = ((open_h * 60.0) as i64, (close_h * 60.0) as i64);
        let mut t = open + 5 * rng.random_range(0..3);
        while t < close {
            if rng.random_bool(fill.clamp(0.0, 1.0)) {
                let kind = ExamKind::pick(&mut rng);
                let (lo, hi) = kind.minutes();
                let minutes = i64::from(5 * rng.random_range(lo / 5..=hi / 5));
                if t + minutes > close {
                    break;
                }
                exams.push(Exam {
                    start_ms: day_start + t * MINUTE_MS,
                    end_ms: day_start + (t + minutes) * MINUTE_MS,
                    kind,
                });
                // Changeover: cleaning, next patient.
                t += minutes + 5 * rng.random_range(1..=3);
            } else {
                // An unbooked slot.
                t += 5 * rng.random_range(3..=9);
            }
        }
    }
    exams
}

/// Exams overlapping `[from_ms, to_ms)`, sorted by start.
pub fn exams_between(seed: u64, machine: usize, site: &Site, from_ms: i64, to_ms: i64) -> Vec<Exam> {
    let offset_ms = i64::from(site.utc_offset_min) * MINUTE_MS;
    let first = (from_ms + offset_ms).div_euclid(DAY_MS) - 1;
    let last = (to_ms + offset_ms).div_euclid(DAY_MS);
    let mut out: Vec<Exam> = (first..=last)
        .flat_map(|d| exams_on_local_day(seed, machine, site, d))
        .filter(|e| e.end_ms > from_ms && e.start_ms < to_ms)
        .collect();
    out.sort_by_key(|e| e.start_ms);
    out
}

/// What the scanner is doing at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Activity {
    /// Gradient duty, 0..1.
    pub load: f64,
    /// Acoustic intensity, 0..1.
    pub acoustic: f64,
    /// RF duty, 0..1.
    pub rf: f64,
    pub door_open: bool,
    pub occupancy: f64,
}

/// Setup (patient positioning, localiser) and exit at the ends of an exam.
const SETUP_MS: i64 = 4 * MINUTE_MS;
const EXIT_MS: i64 = 2 * MINUTE_MS;

impl Activity {
    /// Activity during `exam` at `t_ms`; `u` is a uniform draw for the scan's duty jitter.
    pub fn during(exam: &Exam, t_ms: i64, u: f64) -> Activity {
        let since = t_ms - exam.start_ms;
        let until = exam.end_ms - t_ms;
        if since < SETUP_MS {
            Activity {
                load: 0.05,
                acoustic: 0.02,
                rf: 0.0,
                door_open: since < MINUTE_MS,
                occupancy: if u < 0.3 { 3.0 } else { 2.0 },
            }
        } else if until <= EXIT_MS {
            Activity {
                load: 0.0,
                acoustic: 0.0,
                rf: 0.0,
                door_open: until <= MINUTE_MS,
                occupancy: 2.0,
            }
        } else {
            let k = exam.kind;
            Activity {
                load: k.gradient() * (0.7 + 0.3 * u),
                acoustic: k.acoustic() * (0.6 + 0.4 * u),
                rf: k.rf() * (0.7 + 0.3 * u),
                door_open: false,
                occupancy: 1.0,
            }
        }
    }

    /// Between exams: nobody in the room, except a rare check or cleaning round.
    pub fn idle(u: f64) -> Activity {
        let visit = u < 0.004;
        Activity {
            door_open: visit,
            occupancy: if visit { 1.0 } else { 0.0 },
            ..Activity::default()
        }
    }
}

/// Walks a sorted exam list as time advances (and copes with time stepping back,
/// which a clock-skew fault can cause).
#[derive(Debug, Default)]
pub struct ExamCursor {
    pub exams: Vec<Exam>,
    next: usize,
    last_t: i64,
}

impl ExamCursor {
    pub fn new(exams: Vec<Exam>) -> Self {
        ExamCursor {
            exams,
            next: 0,
            last_t: i64::MIN,
        }
    }

    /// The exam running at `t_ms`, if any.
    #[inline]
    pub fn at(&mut self, t_ms: i64) -> Option<&Exam> {
        if t_ms < self.last_t {
            self.next = self.exams.partition_point(|e| e.end_ms <= t_ms);
        }
        self.last_t = t_ms;
        while self.next < self.exams.len() && self.exams[self.next].end_ms <= t_ms {
            self.next += 1;
        }
        self.exams.get(self.next).filter(|e| e.start_ms <= t_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{SITES, WorkPattern};
    use crate::time::{HOUR_MS, parse_date};

    fn site(pattern: fn(&WorkPattern) -> bool) -> &'static Site {
        SITES.iter().find(|s| pattern(&s.pattern)).unwrap()
    }

    #[test]
    fn weekday_site_books_daytime_exams_of_15_to_60_minutes() {
        let s = site(|p| {
            matches!(
                p,
                WorkPattern::Weekdays {
                    saturday_close_h: None,
                    ..
                }
            )
        });
        let monday = parse_date("2025-01-06").unwrap();
        let exams = exams_on_local_day(7, 3, s, monday);
        assert!(exams.len() >= 8, "a working day is busy: {}", exams.len());
        let off = i64::from(s.utc_offset_min) * MINUTE_MS;
        for e in &exams {
            let minutes = (e.end_ms - e.start_ms) / MINUTE_MS;
            assert!((15..=60).contains(&minutes), "{minutes}");
            let local_h = (e.start_ms + off).rem_euclid(DAY_MS) / HOUR_MS;
            assert!((7..20).contains(&local_h), "{local_h}");
        }
        assert!(exams.windows(2).all(|w| w[0].end_ms <= w[1].start_ms), "no overlaps");
        assert!(exams_on_local_day(7, 3, s, monday + 6).is_empty(), "closed on Sunday");
        assert_eq!(exams, exams_on_local_day(7, 3, s, monday), "deterministic");
    }

    #[test]
    fn around_the_clock_site_scans_at_night() {
        let s = site(|p| matches!(p, WorkPattern::AroundTheClock { .. }));
        let off = i64::from(s.utc_offset_min) * MINUTE_MS;
        let night = (0..30)
            .flat_map(|d| exams_on_local_day(7, 1, s, 20_100 + d))
            .filter(|e| (e.start_ms + off).rem_euclid(DAY_MS) < 6 * HOUR_MS)
            .count();
        assert!(night > 10, "{night}");
    }

    #[test]
    fn cursor_finds_the_running_exam_even_going_back() {
        let e = |a: i64, b: i64| Exam {
            start_ms: a,
            end_ms: b,
            kind: ExamKind::Brain,
        };
        let mut c = ExamCursor::new(vec![e(10, 20), e(30, 40)]);
        assert!(c.at(5).is_none());
        assert_eq!(c.at(15).unwrap().start_ms, 10);
        assert!(c.at(25).is_none());
        assert_eq!(c.at(35).unwrap().start_ms, 30);
        assert_eq!(c.at(12).unwrap().start_ms, 10);
        assert!(c.at(45).is_none());
    }
}
