//! Tail probabilities learnt from a member's own history: each member of the
//! ensemble produces a surprise statistic (a distance, a log ratio) whose usual
//! size differs between series and between members. [`Tail`] learns how often
//! the statistic exceeds a level and how the exceedances are spread (a
//! generalised Pareto tail fitted by moments, peaks over threshold), and turns a
//! new value into the probability of seeing one at least as large. A member that
//! is always mildly surprised thus gives ordinary probabilities: only what is
//! rare for that member on that series is.

/// Exponentially weighted mean and mean square with normalised weights (the
/// first values are plain averages), for one statistic.
#[derive(Debug, Clone, Copy, Default)]
pub struct Moments {
    pub mean: f64,
    pub mean_sq: f64,
    weight: f64,
}

impl Moments {
    #[inline]
    pub fn push(&mut self, x: f64, alpha: f64) {
        self.weight += alpha * (1.0 - self.weight);
        let a = alpha / self.weight;
        self.mean += a * (x - self.mean);
        self.mean_sq += a * (x * x - self.mean_sq);
    }

    pub fn var(&self) -> f64 {
        (self.mean_sq - self.mean * self.mean).max(0.0)
    }

    pub fn is_empty(&self) -> bool {
        self.weight == 0.0
    }
}

/// How fast the bulk of the statistic is learnt (per reading) ...
const BULK_ALPHA: f64 = 1.0 / 1000.0;
/// ... and its tail (per exceedance: the tail sees about a tenth of the readings).
const TAIL_ALPHA: f64 = 1.0 / 150.0;
/// The tail starts this many usual spreads above the usual value.
const TAIL_START: f64 = 2.0;
/// Readings a statistic needs before it is calibrated.
pub const MIN_READINGS: u64 = 60;
/// Excesses are learnt up to this many times the usual excess (one huge
/// spike must not fatten the tail for the next few hundred readings).
const EXCESS_CAP: f64 = 10.0;
/// The largest shape used: heavier tails than this are treated as this heavy.
const MAX_SHAPE: f64 = 0.3;

/// The learnt distribution of one non-negative statistic.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tail {
    bulk: Moments,
    /// Share of readings above the tail's start.
    share: Moments,
    /// Excesses over the tail's start, of those readings.
    excess: Moments,
    readings: u64,
}

impl Tail {
    /// Where the tail starts.
    #[inline]
    fn start(&self) -> f64 {
        self.bulk.mean + TAIL_START * self.bulk.var().sqrt()
    }

    /// Probability of a statistic at least `s` (1 while too little is known).
    pub fn p_value(&self, s: f64) -> f64 {
        if self.readings < MIN_READINGS || s.is_nan() || s <= 0.0 {
            return 1.0;
        }
        let u = self.start();
        // A prior of a few exceedances: no tail seen yet is not "no tail".
        let share = (self.share.mean * self.readings as f64 + 1.0) / (self.readings as f64 + 20.0);
        if s <= u {
            // (not used for alarms: a rough, monotone interpolation, one half at the usual value)
            let m = self.bulk.mean.clamp(0.0, u);
            return if s <= m {
                1.0 - 0.5 * s / m
            } else {
                0.5 - (0.5 - share.min(0.5)) * (s - m) / (u - m)
            };
        }
        let spread = self.bulk.var().sqrt().max(1e-12 * u.abs());
        let (m, v) = if self.excess.is_empty() {
            (0.5 * spread, 0.25 * spread * spread)
        } else {
            (self.excess.mean, self.excess.var())
        };
        // Generalised Pareto by moments: shape from the excesses' dispersion.
        let r = if v > 0.0 { m * m / v } else { f64::INFINITY };
        let shape = (0.5 * (1.0 - r)).clamp(0.0, MAX_SHAPE);
        let scale = (m * (1.0 - shape)).max(0.25 * spread).max(1e-300);
        let y = (s - u) / scale;
        let tail = if shape < 1e-6 {
            (-y).exp()
        } else {
            (1.0 + shape * y).powf(-1.0 / shape)
        };
        (share * tail).max(1e-300)
    }

    /// Learns `s`.
    #[inline]
    pub fn learn(&mut self, s: f64) {
        if !s.is_finite() {
            return;
        }
        let u = self.start();
        let above = self.readings > 0 && s > u;
        self.bulk.push(s, BULK_ALPHA);
        self.share.push(if above { 1.0 } else { 0.0 }, BULK_ALPHA);
        if above {
            // An anomaly must not teach the tail that anomalies are usual: excesses
            // count at most a few times the usual one.
            let cap = if self.excess.is_empty() {
                f64::INFINITY
            } else {
                EXCESS_CAP * self.excess.mean.max(1e-300)
            };
            self.excess.push((s - u).min(cap), TAIL_ALPHA);
        }
        self.readings += 1;
    }

    #[doc(hidden)]
    pub fn describe(&self) -> String {
        format!(
            "u {:.2} mean {:.2} sd {:.2} share {:.3} ex_m {:.2} ex_sd {:.2}",
            self.start(),
            self.bulk.mean,
            self.bulk.var().sqrt(),
            self.share.mean,
            self.excess.mean,
            self.excess.var().sqrt()
        )
    }

    pub fn readings(&self) -> u64 {
        self.readings
    }
}

/// Decades of surprise: `-log10(p)`, finite.
#[inline]
pub fn decades(p: f64) -> f64 {
    -(p.max(1e-300)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::noise;

    #[test]
    fn gaussian_distances_get_roughly_gaussian_tails() {
        let mut t = Tail::default();
        for z in noise(3, 20_000, 1.0) {
            t.learn(z.abs());
        }
        // The fitted tail is conservative (exponential beyond a normal's) but
        // in the right decade near the bulk.
        let p3 = t.p_value(3.0);
        assert!((1e-3..2e-2).contains(&p3), "{p3}");
        let p6 = t.p_value(6.0);
        assert!((1e-9..1e-4).contains(&p6), "{p6}");
        assert!(t.p_value(0.1) > 0.9);
    }

    #[test]
    fn an_always_surprised_statistic_is_not_surprising() {
        // A statistic that always sits near 8: 8 is ordinary, 8.5 a little rare.
        let mut t = Tail::default();
        for e in noise(4, 5000, 0.3) {
            t.learn(8.0 + e);
        }
        assert!(t.p_value(8.0) > 0.3);
        assert!(t.p_value(8.6) > 1e-3);
        assert!(t.p_value(20.0) < 1e-6);
    }
}
