//! The generic detector of `larmor detect`, for any single series whose
//! channel is not known: how surprising each reading is, given everything
//! before it, as a score in 0..1 (a calibrated tail probability on a log
//! scale: 0.5 at one chance in 10^5, see [`score_of`]).
//!
//! An online ensemble learnt from the series alone, no labels, no per-series
//! settings, constant memory:
//! - a forecast ([`forecast`]): seasonality found from the data (daily, weekly
//!   or none) and removed, robust levels that adopt a new level after a change;
//!   the reading's distance from it catches spikes, dips and steps;
//! - members ([`members`]) for level shifts and trends (forecast errors that
//!   keep one sign), variance changes, rate
//!   changes, values rarely or never seen (discrete and integer series), and
//!   runs of identical readings (stuck sensors);
//! - each member's statistic turned into a tail probability learnt from its own
//!   history ([`calibrate`]), so that a member that is always mildly surprised
//!   is not believed; the smallest probability (corrected for the number of
//!   members) is the reading's: one surprising member is enough.
//!
//! After an alarm the surprise it reached is held and fades: the readings that
//! follow score only what exceeds it, so one event is one alarm and the
//! following normal readings score low. Probation: the first readings are
//! learnt from and score low unless extreme.

pub mod calibrate;
pub mod forecast;
pub mod members;

use super::series::{fmt_value, with_unit};
use calibrate::{Tail, decades};
use forecast::{Forecast, Forecaster, SEASON_NAMES, SPEEDS};
use members::{Drift, Runs, Shift, Slope, Spread, Values};
use std::time::Duration;

/// Which member found a reading surprising.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Member {
    /// Far from the forecast (a spike, a dip, a step).
    #[default]
    Point,
    /// The level moved (a shift, a trend).
    Shift,
    /// The level is drifting away from its slow average.
    Drift,
    /// The spread changed.
    Spread,
    /// The rate of change changed.
    Slope,
    /// A value rare or never seen recently.
    Values,
    /// The same value far longer than runs usually last.
    Runs,
}

impl Member {
    pub const ALL: [Member; 7] = [
        Member::Point,
        Member::Shift,
        Member::Drift,
        Member::Spread,
        Member::Slope,
        Member::Values,
        Member::Runs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Member::Point => "point",
            Member::Shift => "shift",
            Member::Drift => "drift",
            Member::Spread => "variance",
            Member::Slope => "rate",
            Member::Values => "distribution",
            Member::Runs => "stuck",
        }
    }
}

/// The calibrated statistics (every member but the runs; the spread has two, wider and narrower).
const STATS: usize = 7;
const STAT_MEMBERS: [Member; STATS] = [
    Member::Point,
    Member::Shift,
    Member::Drift,
    Member::Spread,
    Member::Spread,
    Member::Slope,
    Member::Values,
];

/// Decades of surprise (-log10 p) at the alarm level: a score of 0.5.
pub const ALARM_DECADES: f64 = 3.0;
/// A surprise from this many decades on is held (a little below the alarm
/// level, so that a lower threshold does not see one event as many alarms)...
const HOLD_FROM: f64 = ALARM_DECADES - 0.5;
/// ...and only what is this much beyond it counts again.
const HOLD_MARGIN: f64 = 1.0;
/// How fast a held surprise fades, decades per reading.
const HOLD_FADE: f64 = 0.05;
/// Surprise beyond this is as good as certain (and holds no longer).
const MAX_DECADES: f64 = 3.0 * ALARM_DECADES;
/// During probation a reading needs this many more decades.
const PROBATION_DECADES: f64 = 4.0;
/// Readings before anything scores at all.
const FIRST_SCORED: u64 = 10;

/// Maps decades of surprise to a score: 0 at none, 0.5 at [`ALARM_DECADES`], 1 at twice it.
#[inline]
pub fn score_of(decades: f64) -> f64 {
    (decades / (2.0 * ALARM_DECADES)).clamp(0.0, 1.0)
}

/// The first part of a series, learnt from and scored low unless extreme.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Probation {
    /// The first this many readings.
    Readings(u64),
    /// The readings within this long of the first one.
    Span(Duration),
}

/// The ensemble's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnsembleConfig {
    pub probation: Probation,
}

impl Default for EnsembleConfig {
    fn default() -> Self {
        EnsembleConfig {
            probation: Probation::Readings(1000),
        }
    }
}

/// Why the last reading scored what it did.
#[derive(Debug, Clone, Copy, Default)]
struct Why {
    member: Member,
    decades: f64,
    forecast: Forecast,
    z: f64,
    shift: f64,
    drift: f64,
    spread: f64,
    slope: (f64, f64),
    share: f64,
    run: u64,
}

/// One series' ensemble.
#[derive(Debug, Clone)]
pub struct Ensemble {
    config: EnsembleConfig,
    forecaster: Forecaster,
    shift: Shift,
    drift: Drift,
    spread: Spread,
    slope: Slope,
    values: Values,
    runs: Runs,
    /// Calibration of the statistics of every member but the runs.
    tails: [Tail; STATS],
    held: f64,
    readings: u64,
    first_ts: Option<i64>,
    why: Why,
    /// Each member's decades of surprise for the last reading (before the hold and probation).
    pub last_decades: [f64; STATS + 1],
    pub last_stats: [f64; STATS],
}

impl Ensemble {
    pub fn new(config: EnsembleConfig) -> Self {
        Ensemble {
            config,
            forecaster: Forecaster::default(),
            shift: Shift::default(),
            drift: Drift::default(),
            spread: Spread::default(),
            slope: Slope::default(),
            values: Values::default(),
            runs: Runs::default(),
            tails: [Tail::default(); STATS],
            held: 0.0,
            readings: 0,
            first_ts: None,
            why: Why::default(),
            last_decades: [0.0; STATS + 1],
            last_stats: [0.0; STATS],
        }
    }

    /// Scores one reading (0..1) against everything before it, then learns it.
    /// Readings that are not finite are skipped (score 0).
    pub fn update(&mut self, ts_ms: i64, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        let f = self.forecaster.update(ts_ms, x);
        let resolution = self.forecaster.resolution();
        let floor = (0.5 * resolution).max(1e-9 * x.abs()).max(1e-300);

        let e = x - f.expected;
        let z = if e == 0.0 { 0.0 } else { e / f.sigma };
        let (shift_stat, shift) = self.shift.update(z);
        let (drift_stat, drift) = self.drift.update(f.deseasoned, f.sigma);
        let (wider, narrower, spread) = self.spread.update(e, f.long_sigma, floor);
        let (slope_stat, recent, usual) = self.slope.update(f.deseasoned, floor);
        let (values_stat, share) = self.values.update(x, resolution);
        let (run_p, run) = self.runs.update(x);

        let stats = [
            z.abs(),
            shift_stat,
            drift_stat,
            wider,
            narrower,
            slope_stat,
            values_stat,
        ];
        let mut best = (Member::Runs, decades(run_p));
        self.last_decades[STATS] = best.1;
        self.last_stats = stats;
        for (i, (&s, t)) in stats.iter().zip(&self.tails).enumerate() {
            let mut p = t.p_value(s);
            if i == 0 && t.readings() < calibrate::MIN_READINGS {
                // Before the point member is calibrated: a fixed, heavy tail (only the extreme counts).
                p = (-s).exp();
            }
            let d = decades(p);
            self.last_decades[i] = d;
            if d > best.1 {
                best = (STAT_MEMBERS[i], d);
            }
        }
        for (t, &s) in self.tails.iter_mut().zip(&stats) {
            t.learn(s);
        }

        // Bonferroni over the members, then what a recent alarm already said.
        let raw = (best.1 - ((STATS + 1) as f64).log10()).clamp(0.0, MAX_DECADES);
        self.readings += 1;
        // After an alarm, only what is a decade worse than the held surprise alarms again.
        // A stuck run is reported once per run (by [`Runs`] itself) and is a
        // different event from the jump that may have started it: not held.
        let hold_from = HOLD_FROM;
        let mut out = if self.held >= hold_from && best.0 != Member::Runs {
            raw - (self.held - hold_from + HOLD_MARGIN)
        } else {
            raw
        };
        if self.readings > FIRST_SCORED {
            self.held = raw.max(self.held - HOLD_FADE);
        }
        let first = *self.first_ts.get_or_insert(ts_ms);
        let probation = match self.config.probation {
            Probation::Readings(n) => self.readings <= n,
            Probation::Span(d) => (ts_ms.saturating_sub(first) as u128) < d.as_millis(),
        };
        if probation {
            out -= PROBATION_DECADES;
        }
        if self.readings <= FIRST_SCORED {
            out = 0.0;
        }
        self.why = Why {
            member: best.0,
            decades: out.max(0.0),
            forecast: f,
            z,
            shift,
            drift,
            spread,
            slope: (recent, usual),
            share,
            run,
        };
        score_of(out)
    }

    #[doc(hidden)]
    pub fn debug_tails(&self) -> String {
        self.tails.iter().map(|t| t.describe()).collect::<Vec<_>>().join(" | ")
    }

    /// The member behind the last score.
    pub fn member(&self) -> Member {
        self.why.member
    }

    /// Why the last reading scored what it did, in a few words (`unit` may be empty).
    pub fn explain(&self, value: f64, unit: &str) -> String {
        let w = &self.why;
        let f = &w.forecast;
        let season = match SEASON_NAMES[f.season] {
            "none" => String::new(),
            s => format!(", {s} pattern removed"),
        };
        let p = format!("p ≈ 1e-{:.1}", w.decades);
        match w.member {
            Member::Point => format!(
                "{} is {:.1} σ {} the expected {} (σ {}{season}, level speed {}): {p}",
                with_unit(value, unit),
                w.z.abs(),
                if w.z > 0.0 { "above" } else { "below" },
                with_unit(f.expected, unit),
                with_unit(f.sigma, unit),
                SPEEDS[f.speed],
            ),
            Member::Shift => format!(
                "the level moved: recent readings average {:+.1} σ from the forecast (now {}, σ {}{season}): {p}",
                w.shift,
                with_unit(f.expected, unit),
                with_unit(f.sigma, unit),
            ),
            Member::Drift => format!(
                "drifting: the recent level is {:+.1}× its usual distance from the slow baseline{season}: {p}",
                w.drift,
            ),
            Member::Spread => format!(
                "the spread changed: recent errors are {:.2}× the usual (σ {}{season}): {p}",
                w.spread,
                with_unit(f.long_sigma, unit),
            ),
            Member::Slope => format!(
                "the rate changed: {} per reading recently, usually {}{season}: {p}",
                fmt_value(w.slope.0),
                fmt_value(w.slope.1),
            ),
            Member::Values => format!(
                "{} is a value rarely seen: {:.2} % of recent readings fall near it: {p}",
                with_unit(value, unit),
                100.0 * w.share,
            ),
            Member::Runs => format!(
                "{} repeated {} times in a row, longer than this series' runs: stuck? {p}",
                with_unit(value, unit),
                w.run,
            ),
        }
    }
}
