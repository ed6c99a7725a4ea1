//! What the next reading should be, learnt from the series alone: seasonal
//! profiles (daily and weekly, by the timestamps) and level predictors of
//! several speeds, from "the mean of the last hundred readings" to "the last
//! reading". Every combination forecasts every reading; the one with the
//! smallest recent error is used. A seasonal profile is used only once it has
//! seen two periods and forecasts clearly better than none, so seasonality is
//! found from the data (daily, weekly or none) and removed before scoring.
//!
//! Levels learn through a clip (a spike does not move them) and snap to the
//! recent values after a few readings in a row far on one side: after a level
//! shift the new level becomes normal within a few readings.

use super::calibrate::Moments;

const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;

/// Seasonal options: none, daily, weekly.
pub const SEASONS: usize = 3;
pub const SEASON_NAMES: [&str; SEASONS] = ["none", "daily", "weekly"];
/// Level speeds (weight of a new reading); the last one is the slow level the
/// shift member watches.
pub const SPEEDS: [f64; 4] = [1.0, 0.3, 0.08, 0.02];
pub const SLOW: usize = 3;

/// Per-reading weight of the usual error (recent) and of the long-run error.
const ERR_ALPHA: f64 = 1.0 / 150.0;
const LONG_ALPHA: f64 = 1.0 / 3000.0;
/// Errors are clipped to this many usual errors before anything learns from them.
const CLIP: f64 = 4.0;
/// Readings in a row beyond the clip, on one side, that move a level to the recent values.
const SNAP_RUN: u32 = 3;
/// A seasonal option is used when its error is below this share of the best without one...
const SEASON_GAIN: f64 = 0.85;
/// ...and the option in use changes when another's error is below this share of its own.
const SWITCH_GAIN: f64 = 0.92;
/// Mean absolute error to standard deviation, for normal errors.
const MAE_TO_SIGMA: f64 = 1.2533;
/// The error scale never falls below this share of the long-run error (a quiet stretch is not a licence to alarm).
const LONG_FLOOR: f64 = 0.2;

/// A seasonal profile: the usual offset from the level at each phase of the
/// period, in bins with linear interpolation between bin centres.
#[derive(Debug, Clone)]
struct Profile {
    period_ms: i64,
    bins: Vec<f64>,
    weights: Vec<f64>,
    /// Weight of one visit (a reading's share of the bin).
    gain: f64,
    /// The level the offsets are measured from: an average over about a period.
    level: Moments,
    level_alpha: f64,
    /// Mean absolute error of the profile's own forecast (level + offset).
    mae: Moments,
    first_ts: i64,
}

impl Profile {
    fn new(period_ms: i64, interval_ms: f64, first_ts: i64) -> Profile {
        let per_period = period_ms as f64 / interval_ms.max(1.0);
        // Bins of at least one reading, at most 96 per day (15 min) and 168 per week.
        let max_bins = if period_ms == DAY_MS { 96.0 } else { 168.0 };
        let n = per_period.clamp(12.0, max_bins) as usize;
        let visits = (per_period / n as f64).max(1.0);
        Profile {
            period_ms,
            bins: vec![0.0; n],
            weights: vec![0.0; n],
            // About four periods of memory.
            gain: (1.0 / (4.0 * visits)).min(1.0),
            level: Moments::default(),
            level_alpha: (1.0 / per_period).min(1.0),
            mae: Moments::default(),
            first_ts,
        }
    }

    /// Bins and weights of `ts`'s phase.
    #[inline]
    fn phase(&self, ts: i64) -> (usize, usize, f64) {
        let n = self.bins.len();
        let pos = ts.rem_euclid(self.period_ms) as f64 / self.period_ms as f64 * n as f64 - 0.5;
        let lo = pos.floor();
        let f = pos - lo;
        let i = (lo as i64).rem_euclid(n as i64) as usize;
        (i, (i + 1) % n, f)
    }

    #[inline]
    fn offset(&self, ts: i64) -> f64 {
        let (i, j, f) = self.phase(ts);
        (1.0 - f) * self.bins[i] + f * self.bins[j]
    }

    /// Learns `x`, clipped to a few usual errors around the profile's forecast.
    #[inline]
    fn learn(&mut self, ts: i64, x: f64, floor: f64) {
        let (i, j, f) = self.phase(ts);
        let s = (1.0 - f) * self.bins[i] + f * self.bins[j];
        if self.level.is_empty() {
            self.level.push(x, 1.0);
        }
        let e = x - self.level.mean - s;
        let limit = if self.mae.is_empty() {
            f64::INFINITY
        } else {
            (CLIP * MAE_TO_SIGMA * self.mae.mean).max(floor)
        };
        self.mae.push(e.abs().min(limit), ERR_ALPHA);
        let target = (x - self.level.mean).clamp(s - limit, s + limit);
        for (b, share) in [(i, 1.0 - f), (j, f)] {
            if share <= 0.0 {
                continue;
            }
            let g = self.gain * share;
            let w = self.weights[b] + g * (1.0 - self.weights[b]);
            self.weights[b] = w;
            self.bins[b] += g / w * (target - self.bins[b]);
        }
        let deseasoned = x - self.offset(ts);
        let lvl = self.level.mean;
        self.level
            .push(deseasoned.clamp(lvl - limit, lvl + limit), self.level_alpha);
    }

    /// Whether two periods have been seen.
    fn ready(&self, ts: i64) -> bool {
        ts - self.first_ts >= 2 * self.period_ms
    }
}

/// One predictor: a level of one speed on the series with one seasonal option removed.
#[derive(Debug, Clone, Copy, Default)]
struct Level {
    value: f64,
    /// Mean absolute error, recent and long-run.
    mae: Moments,
    long: Moments,
    /// Readings in a row beyond the clip, and on which side.
    run: u32,
    side: f64,
}

impl Level {
    #[inline]
    fn sigma(&self, floor: f64) -> f64 {
        let recent = MAE_TO_SIGMA * self.mae.mean;
        // A series that went quiet must not make its first usual wiggle look huge.
        let long = LONG_FLOOR * MAE_TO_SIGMA * self.long.mean;
        recent.max(long).max(floor)
    }
}

/// What the forecaster says about one reading.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forecast {
    /// The forecast of the predictor in use, and its usual error (σ).
    pub expected: f64,
    pub sigma: f64,
    /// The long-run error of the predictor in use (σ), for the variance member.
    pub long_sigma: f64,
    /// The reading with the seasonal offset removed.
    pub deseasoned: f64,
    /// Seasonal option (index in [`SEASON_NAMES`]) and speed in use.
    pub season: usize,
    pub speed: usize,
}

/// Forecasts for one series.
#[derive(Debug, Clone)]
pub struct Forecaster {
    profiles: [Option<Profile>; 2],
    levels: [[Level; SPEEDS.len()]; SEASONS],
    /// The recent deseasoned values (a fast, unclipped average): where a level snaps to.
    recent: [f64; SEASONS],
    chosen: (usize, usize),
    readings: u64,
    first_ts: Option<i64>,
    last_ts: i64,
    /// Mean interval between readings, ms.
    interval: Moments,
    /// The finest step between two different values (the sensor's resolution).
    resolution: f64,
    last: f64,
}

impl Default for Forecaster {
    fn default() -> Self {
        Forecaster {
            profiles: [None, None],
            levels: [[Level::default(); SPEEDS.len()]; SEASONS],
            recent: [0.0; SEASONS],
            chosen: (0, SLOW),
            readings: 0,
            first_ts: None,
            last_ts: 0,
            interval: Moments::default(),
            resolution: f64::INFINITY,
            last: f64::NAN,
        }
    }
}

/// Readings before the sampling interval is trusted enough to lay out seasonal bins.
const INTERVAL_READINGS: u64 = 32;

impl Forecaster {
    pub fn resolution(&self) -> f64 {
        if self.resolution.is_finite() {
            self.resolution
        } else {
            0.0
        }
    }

    pub fn readings(&self) -> u64 {
        self.readings
    }

    /// Scale floor: half the resolution, and a trillionth of the value.
    #[inline]
    fn floor(&self, x: f64) -> f64 {
        (0.5 * self.resolution()).max(1e-9 * x.abs()).max(1e-300)
    }

    /// Forecasts `x` at `ts` from what came before, then learns it.
    pub fn update(&mut self, ts: i64, x: f64) -> Forecast {
        let d = (x - self.last).abs();
        if d > 0.0 && d < self.resolution {
            self.resolution = d;
        }
        self.last = x;
        let first = *self.first_ts.get_or_insert(ts);
        if self.readings > 0 {
            let dt = (ts - self.last_ts).max(0) as f64;
            if dt > 0.0 {
                self.interval.push(dt, 1.0 / 64.0);
            }
        }
        self.last_ts = ts;
        if self.readings == INTERVAL_READINGS && !self.interval.is_empty() {
            let iv = self.interval.mean;
            for (k, period) in [DAY_MS, WEEK_MS].into_iter().enumerate() {
                // At least a dozen readings per period, and a series that may span it.
                if iv * 12.0 <= period as f64 {
                    self.profiles[k] = Some(Profile::new(period, iv, first));
                }
            }
        }
        let floor = self.floor(x);
        let offsets = [
            0.0,
            self.profiles[0].as_ref().map_or(0.0, |p| p.offset(ts)),
            self.profiles[1].as_ref().map_or(0.0, |p| p.offset(ts)),
        ];

        let (cs, ck) = self.chosen;
        let mut out = Forecast::default();
        if self.readings == 0 {
            for s in 0..SEASONS {
                self.recent[s] = x;
                for l in &mut self.levels[s] {
                    l.value = x;
                }
            }
            self.readings = 1;
            out.expected = x;
            out.deseasoned = x;
            out.sigma = floor;
            out.long_sigma = floor;
            return out;
        }
        {
            let l = &self.levels[cs][ck];
            out.expected = l.value + offsets[cs];
            out.sigma = l.sigma(floor);
            out.long_sigma = (MAE_TO_SIGMA * l.long.mean).max(floor);
            out.deseasoned = x - offsets[cs];
            out.season = cs;
            out.speed = ck;
        }

        for (s, offset) in offsets.into_iter().enumerate() {
            let dx = x - offset;
            self.recent[s] += 0.5 * (dx - self.recent[s]);
            let recent = self.recent[s];
            for (k, l) in self.levels[s].iter_mut().enumerate() {
                let e = dx - l.value;
                let sigma = l.sigma(floor);
                let limit = CLIP * sigma;
                let clipped = e.clamp(-limit, limit);
                if l.mae.is_empty() {
                    l.mae.push(e.abs(), 1.0);
                    l.long.push(e.abs(), 1.0);
                } else {
                    l.mae.push(clipped.abs(), ERR_ALPHA);
                    l.long.push(clipped.abs(), LONG_ALPHA);
                }
                l.value += SPEEDS[k] * clipped;
                // A level left behind: snap to where the readings are now.
                if e.abs() > limit && self.readings > 8 {
                    if l.run > 0 && e.signum() == l.side {
                        l.run += 1;
                    } else {
                        l.run = 1;
                        l.side = e.signum();
                    }
                    if l.run >= SNAP_RUN {
                        l.value = recent;
                        l.run = 0;
                    }
                } else {
                    l.run = 0;
                }
            }
        }
        for p in self.profiles.iter_mut().flatten() {
            p.learn(ts, x, floor);
        }
        self.readings += 1;
        self.choose(ts);
        out
    }

    /// Picks the predictor with the smallest recent error (seasonal ones only
    /// when ready and clearly better than none), keeping the current one unless
    /// another is clearly better.
    fn choose(&mut self, ts: i64) {
        let err = |s: usize, k: usize| self.levels[s][k].mae.mean;
        let best_in = |s: usize| {
            (0..SPEEDS.len())
                .min_by(|&a, &b| err(s, a).total_cmp(&err(s, b)))
                .unwrap_or(SLOW)
        };
        let k0 = best_in(0);
        let mut best = (0, k0);
        for s in 1..SEASONS {
            let ready = self.profiles[s - 1].as_ref().is_some_and(|p| p.ready(ts));
            if !ready {
                continue;
            }
            let k = best_in(s);
            if err(s, k) < SEASON_GAIN * err(0, k0) && err(s, k) < err(best.0, best.1) {
                best = (s, k);
            }
        }
        let (cs, ck) = self.chosen;
        let current_ok = cs == 0 || self.profiles[cs - 1].as_ref().is_some_and(|p| p.ready(ts));
        if !current_ok || err(best.0, best.1) < SWITCH_GAIN * err(cs, ck) {
            self.chosen = best;
        }
    }
}
