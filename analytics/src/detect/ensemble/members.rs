//! The ensemble's members besides the point forecast: each turns a reading
//! (and the forecaster's view of it) into a surprise statistic that the
//! ensemble calibrates, except [`Runs`], which gives a probability itself.
//!
//! - [`Shift`]: the recent mean of the forecast's errors (a level moved, a trend began);
//! - [`Drift`]: the recent level against a slow baseline (a slow drift, a trend);
//! - [`Spread`]: recent squared errors against the long-run ones (the variance changed);
//! - [`Slope`]: the recent slope against the usual one (the rate changed);
//! - [`Values`]: how often recent readings fell in this reading's bin (discrete and
//!   multi-modal series: a value never seen, a state never visited);
//! - [`Runs`]: how long the current run of identical readings is against the
//!   runs this series usually has (a stuck sensor; a series that is flat by nature is not).

use super::calibrate::Moments;

/// Mean of the forecast's recent errors, in their usual σ: an EWMA of clipped
/// z, scaled to unit variance for independent errors. Errors that keep one
/// sign: a level that moved (a slow forecast) or a trend that began (a fast one).
#[derive(Debug, Clone, Copy, Default)]
pub struct Shift {
    mean: f64,
}

const SHIFT_ALPHA: f64 = 0.15;

impl Shift {
    /// Takes the forecast's error in σ; returns the statistic and the mean.
    #[inline]
    pub fn update(&mut self, z: f64) -> (f64, f64) {
        let a = SHIFT_ALPHA;
        self.mean += a * (z.clamp(-4.0, 4.0) - self.mean);
        let unit = ((2.0 - a) / a).sqrt();
        (self.mean.abs() * unit, self.mean)
    }
}

/// The recent level against a slow baseline of the deseasoned series, in
/// units of how far the recent level usually strays from it: a drift or a
/// trend, which the forecast follows (and so hides), grows here. The usual
/// straying is learnt only from readings well inside it (a slow drift must not
/// widen it as fast as it grows); a level away from the baseline that has
/// settled becomes the new baseline.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drift {
    recent: Moments,
    base: Moments,
    stray: Moments,
    /// Readings since the level left the baseline's usual range, and the level then.
    away: u32,
    away_level: f64,
}

const DRIFT_RECENT: f64 = 0.1;
const DRIFT_BASE: f64 = 1.0 / 500.0;
/// Readings away, and settled within one usual straying, that make a new baseline.
const DRIFT_RELEARN: u32 = 100;

impl Drift {
    /// Takes the deseasoned reading and the forecast's σ (to clip it);
    /// returns the statistic and the deviation in usual strayings.
    #[inline]
    pub fn update(&mut self, d: f64, sigma: f64) -> (f64, f64) {
        if self.recent.is_empty() {
            self.recent.push(d, 1.0);
            self.base.push(d, 1.0);
            return (f64::NAN, 0.0);
        }
        let r = self.recent.mean;
        self.recent
            .push(d.clamp(r - 4.0 * sigma, r + 4.0 * sigma), DRIFT_RECENT);
        let dev = self.recent.mean - self.base.mean;
        let usual = 1.25 * self.stray.mean;
        let z = if usual > 0.0 { dev / usual } else { 0.0 };
        let stat = if self.stray.is_empty() { f64::NAN } else { z.abs() };
        let base_alpha = DRIFT_BASE;
        if self.stray.is_empty() || z.abs() <= 3.0 {
            self.away = 0;
            self.base.push(self.recent.mean, base_alpha);
            self.stray.push(dev.abs(), base_alpha);
        } else {
            if self.away == 0 || (self.recent.mean - self.away_level).abs() > usual {
                self.away = 1;
                self.away_level = self.recent.mean;
            } else {
                self.away += 1;
            }
            if self.away >= DRIFT_RELEARN {
                self.base.mean = self.recent.mean; // settled somewhere new
                self.away = 0;
            }
        }
        (stat, z)
    }
}

/// Recent mean absolute error against the long run's.
/// Absolute errors, clipped: one spike is not a change of spread.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spread {
    recent: Moments,
    usual: Moments,
}

const SPREAD_RECENT: f64 = 0.1;
const SPREAD_USUAL: f64 = 1.0 / 2000.0;

impl Spread {
    /// Takes an error, the long-run σ (to clip it) and the scale floor;
    /// returns the statistics of a wider and of a narrower spread (`2 ln` of
    /// the ratio, each one-sided: they are calibrated apart), and the ratio of
    /// recent to usual spread.
    #[inline]
    pub fn update(&mut self, e: f64, long_sigma: f64, floor: f64) -> (f64, f64, f64) {
        let a = e.abs().min(4.0 * long_sigma);
        self.recent.push(a, SPREAD_RECENT);
        self.usual.push(a, SPREAD_USUAL);
        let ratio = (self.recent.mean + floor) / (self.usual.mean + floor);
        let l = 2.0 * ratio.ln();
        (l.max(0.0), (-l).max(0.0), ratio)
    }
}

/// The slope of the deseasoned series (an EWMA of its clipped steps) against
/// its usual slope, in usual deviations of the slope.
#[derive(Debug, Clone, Copy)]
pub struct Slope {
    last: f64,
    step_mae: Moments,
    recent: f64,
    usual: Moments,
    deviation: Moments,
}

impl Default for Slope {
    fn default() -> Self {
        Slope {
            last: f64::NAN,
            step_mae: Moments::default(),
            recent: 0.0,
            usual: Moments::default(),
            deviation: Moments::default(),
        }
    }
}

const SLOPE_RECENT: f64 = 0.05;
const SLOPE_USUAL: f64 = 1.0 / 1000.0;
/// Steps are clipped at this many usual step sizes before they feed the slope.
const SLOPE_CLIP: f64 = 5.0;

impl Slope {
    /// Takes the deseasoned reading; returns the statistic, the recent and the usual slope per reading.
    #[inline]
    pub fn update(&mut self, d: f64, floor: f64) -> (f64, f64, f64) {
        let step = d - self.last;
        self.last = d;
        if !step.is_finite() {
            return (0.0, 0.0, 0.0);
        }
        let lim = if self.step_mae.is_empty() {
            f64::INFINITY
        } else {
            (SLOPE_CLIP * self.step_mae.mean).max(floor)
        };
        let step = step.clamp(-lim, lim);
        self.step_mae.push(step.abs(), 1.0 / 200.0);
        self.recent += SLOPE_RECENT * (step - self.recent);
        let usual = if self.usual.is_empty() { 0.0 } else { self.usual.mean };
        let dev = self.recent - usual;
        // The spread of the recent slope; floored at what independent steps give.
        let noise = self.step_mae.mean * (SLOPE_RECENT / (2.0 - SLOPE_RECENT)).sqrt();
        let spread = (1.25 * self.deviation.mean).max(0.5 * noise).max(floor * SLOPE_RECENT);
        let stat = dev.abs() / spread;
        self.usual.push(self.recent, SLOPE_USUAL);
        self.deviation.push(dev.abs(), SLOPE_USUAL);
        (stat, self.recent, usual)
    }
}

/// How often recent readings fell in each bin of values: a small table of
/// decayed counts (constant memory: the rarest bin gives way to a new one).
#[derive(Debug, Clone)]
pub struct Values {
    width: f64,
    keys: Vec<i64>,
    counts: Vec<f64>,
    /// Weight of a new reading (grows instead of decaying every count).
    unit: f64,
    total: f64,
    spread: Moments,
    readings: u64,
    /// When the bins were last laid out.
    laid_out: u64,
}

const VALUE_SLOTS: usize = 128;
const VALUE_MEMORY: f64 = 2000.0;
/// A series is discrete when one σ spans at most this many steps of its resolution.
const DISCRETE_LEVELS_PER_SD: f64 = 4.0;
/// Readings seen before the bins are laid out.
const VALUE_LAYOUT: u64 = 100;

impl Default for Values {
    fn default() -> Self {
        Values {
            width: 0.0,
            keys: Vec::with_capacity(VALUE_SLOTS),
            counts: Vec::with_capacity(VALUE_SLOTS),
            unit: 1.0,
            total: 0.0,
            spread: Moments::default(),
            readings: 0,
            laid_out: 0,
        }
    }
}

impl Values {
    /// Takes a reading and the series' resolution; returns `-ln` of the
    /// share of recent readings in its bin (NaN, no statistic, until the bins
    /// are laid out), and that share.
    pub fn update(&mut self, x: f64, resolution: f64) -> (f64, f64) {
        self.readings += 1;
        self.spread.push(x, 1.0 / VALUE_MEMORY);
        let sd = self.spread.var().sqrt();
        if self.readings < VALUE_LAYOUT {
            return (f64::NAN, 1.0);
        }
        // Only a discrete series is judged: one whose readings sit on a few
        // levels of its resolution (counts, states). In a continuous series a
        // value "rarely seen" is only a value far out, which the forecast judges.
        if resolution.is_nan() || resolution < sd / DISCRETE_LEVELS_PER_SD {
            self.width = 0.0;
            return (f64::NAN, 1.0);
        }
        let want = resolution.max(1e-12 * x.abs()).max(1e-300);
        if self.width == 0.0 || want > 4.0 * self.width || want < 0.25 * self.width {
            // (Re)lay the bins: the series' spread changed by more than four times.
            self.width = want;
            self.keys.clear();
            self.counts.clear();
            self.total = 0.0;
            self.unit = 1.0;
            self.laid_out = self.readings;
        }
        let key = (x / self.width).floor() as i64;
        let at = self.keys.iter().position(|&k| k == key);
        let n = self.keys.len();
        // (no statistic while the fresh bins fill)
        let (stat, share) = if self.readings < self.laid_out + VALUE_LAYOUT / 2 {
            (f64::NAN, 1.0)
        } else {
            let total = self.total / self.unit;
            let count = at.map_or(0.0, |i| self.counts[i] / self.unit);
            // Half a reading for any bin; a bin never seen counts less the farther it lies.
            let mut prior = 0.5;
            if at.is_none() {
                let nearest = self.keys.iter().map(|&k| (k - key).unsigned_abs()).min().unwrap_or(1);
                prior /= nearest.max(1) as f64;
            }
            let share = (count + prior) / (total + 0.5 * (n as f64 + 1.0));
            (-share.ln(), share)
        };
        // Learn.
        self.unit *= 1.0 + 1.0 / VALUE_MEMORY;
        match at {
            Some(i) => self.counts[i] += self.unit,
            None if n < VALUE_SLOTS => {
                self.keys.push(key);
                self.counts.push(self.unit);
            }
            None => {
                let (i, _) = self
                    .counts
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(b.1))
                    .expect("full table");
                self.total -= self.counts[i];
                self.keys[i] = key;
                self.counts[i] = self.unit;
            }
        }
        self.total += self.unit;
        if self.unit > 1e200 {
            let u = self.unit;
            for c in &mut self.counts {
                *c /= u;
            }
            self.total /= u;
            self.unit = 1.0;
        }
        (stat, share)
    }
}

/// Lengths of runs of identical readings: a log-binned histogram of the runs
/// that ended (decayed), and the current run. The run is judged as it grows;
/// once it is implausible it is reported, by the reading that made it so, and
/// the rest of the run says nothing new (a stuck sensor stays stuck).
#[derive(Debug, Clone)]
pub struct Runs {
    last: f64,
    run: u64,
    /// Runs of length in [2^i, 2^(i+1)).
    bins: [f64; 40],
    total: f64,
    longest: u64,
    reported: bool,
}

impl Default for Runs {
    fn default() -> Self {
        Runs {
            last: f64::NAN,
            run: 0,
            bins: [0.0; 40],
            total: 0.0,
            longest: 0,
            reported: false,
        }
    }
}

/// The histogram bin of a run length: its binary logarithm.
#[inline]
fn bin_of(len: u64) -> usize {
    ((63 - len.max(1).leading_zeros()) as usize).min(39)
}

/// Runs remembered (the histogram's weights decay by this many runs).
const RUN_MEMORY: f64 = 500.0;
/// A run this unlikely is reported.
pub const RUN_IMPLAUSIBLE: f64 = 1e-5;

impl Runs {
    /// Takes a reading; returns the probability of a run at least as long as
    /// the current one when this reading makes it implausible, else 1; and the
    /// current run's length.
    pub fn update(&mut self, x: f64) -> (f64, u64) {
        if x == self.last {
            self.run += 1;
        } else {
            if self.run > 0 {
                self.end_run(self.run);
            }
            self.last = x;
            self.run = 1;
            self.reported = false;
        }
        if self.reported || self.run < 3 || self.total < 20.0 {
            return (1.0, self.run);
        }
        let p = self.survival(self.run);
        if p > RUN_IMPLAUSIBLE {
            return (1.0, self.run);
        }
        self.reported = true;
        (p, self.run)
    }

    fn end_run(&mut self, len: u64) {
        let decay = 1.0 - 1.0 / RUN_MEMORY;
        for b in &mut self.bins {
            *b *= decay;
        }
        self.total = self.total * decay + 1.0;
        self.bins[bin_of(len)] += 1.0;
        self.longest = self.longest.max(len);
    }

    /// Share of past runs at least `len` long; beyond the longest ever seen,
    /// falling with the cube of the length.
    fn survival(&self, len: u64) -> f64 {
        let b = bin_of(len);
        let lo = 1u64 << b;
        // Within the bin, assume the runs spread evenly over its lengths.
        let within = self.bins[b] * (1.0 - (len - lo) as f64 / lo as f64).max(0.0);
        let above: f64 = self.bins[b + 1..].iter().sum::<f64>() + within;
        let seen = above / (self.total + 1.0);
        let longest = self.longest.max(1) as f64;
        let beyond = 0.5 / (self.total + 1.0) * (longest / len as f64).min(1.0).powi(3);
        (seen + beyond).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::noise;

    #[test]
    fn a_stuck_noisy_series_is_a_long_run_a_flat_one_is_not() {
        let mut r = Runs::default();
        for x in noise(1, 3000, 1.0) {
            r.update((x * 100.0).round());
        }
        let reported: Vec<usize> = (0..30).filter(|_| r.update(12345.0).0 < 1.0).collect();
        assert_eq!(reported.len(), 1, "reported once: {reported:?}");
        assert!(
            reported[0] < 15,
            "a stuck noisy sensor is implausible soon: {reported:?}"
        );
        // A series that holds values for hundreds of readings at a time.
        let mut r = Runs::default();
        for i in 0..100_000u64 {
            r.update(((i / (200 + (i * 7919) % 300)) % 5) as f64);
        }
        assert!(
            (0..400).all(|_| r.update(99.0).0 == 1.0),
            "runs of hundreds are this series' habit"
        );
    }

    #[test]
    fn values_never_seen_are_surprising_in_a_discrete_series() {
        let mut v = Values::default();
        for (i, e) in noise(2, 5000, 1.0).iter().enumerate() {
            v.update(((i % 4) as f64 + e.round().clamp(-1.0, 1.0)).max(0.0), 1.0);
        }
        let usual = v.update(2.0, 1.0).0;
        let never = v.update(17.0, 1.0).0;
        assert!(never > usual + 4.0, "{never} vs {usual}");
    }
}
