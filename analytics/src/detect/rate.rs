//! Rate of change: how fast a series moves, against how fast it usually moves.
//! The slope comes from two EWMAs of different lags (for a linear trend their
//! gap is slope × lag difference), so noise is averaged away without keeping a
//! window. Catches a chiller heating the water in hours, a fast helium loss.

use super::ConfigError;
use super::series::{
    Baseline, Debounce, Decay, EwStats, Kernel, Near, RELEASE_RATIO, Resolution, SeriesDetector, WarmUp, Winsor,
    fmt_duration, names, score, with_unit,
};
use super::settings::{DetectorSettings, Section, positive};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const HOUR_MS: f64 = 3_600_000.0;

/// `[detect.rate]`: the shared keys ([`Section`]) and these.
pub type RateConfig = Section<RateSettings>;

/// The rate detector's own settings (also what one kernel needs).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct RateSettings {
    /// Smoothing before the slope is taken (half-life of the faster EWMA; the slower has twice it).
    #[serde(with = "humantime_serde")]
    pub smoothing: Duration,
    /// Half-life of the usual slope and its spread.
    #[serde(with = "humantime_serde")]
    pub baseline_half_life: Duration,
    /// Slope this many usual deviations from the usual slope opens an episode.
    pub threshold: f64,
    /// No score before a series has this much history.
    #[serde(with = "humantime_serde")]
    pub warm_up: Duration,
    /// Slopes away from the usual this long become the usual.
    #[serde(with = "humantime_serde")]
    pub relearn_after: Duration,
}

impl Default for RateSettings {
    fn default() -> Self {
        RateSettings {
            smoothing: Duration::from_secs(10 * 60),
            baseline_half_life: Duration::from_secs(86_400),
            threshold: 8.0,
            warm_up: Duration::from_secs(86_400),
            relearn_after: Duration::from_secs(86_400),
        }
    }
}

impl DetectorSettings for RateSettings {
    const SECTION: &'static str = "rate";
    type Detector = SeriesDetector<RateKernel>;
    const DEBOUNCE: Debounce = Debounce {
        confirm: 1,
        clear_after: 10,
    };

    fn default_channels() -> Vec<String> {
        names(&[
            "helium_level_pct",
            "vessel_pressure_kpa",
            "coldhead_stage1_k",
            "coldhead_stage2_k",
            "compressor_supply_mpa",
            "compressor_return_mpa",
            "water_inlet_c",
            "water_outlet_c",
            "water_flow_lpm",
            "room_temp_c",
            "room_humidity_pct",
            "room_o2_pct",
            "tech_room_temp_c",
        ])
    }

    fn build(&self, debounce: Debounce, watched: Vec<bool>) -> Result<Self::Detector, ConfigError> {
        positive(Self::SECTION, "threshold", self.threshold)?;
        if self.smoothing.is_zero() {
            return Err(ConfigError::invalid(Self::SECTION, "smoothing must be longer than 0s"));
        }
        Ok(SeriesDetector::new(Self::SECTION, None, *self, debounce, watched))
    }
}

pub struct RateKernel {
    p: RateSettings,
    fast: EwStats,
    slow: EwStats,
    fast_decay: Decay,
    slow_decay: Decay,
    winsor: Winsor,
    /// Usual slope (per hour) and its spread.
    base: Baseline,
    warm: WarmUp,
    res: Resolution,
    last_ts: Option<i64>,
    last: f64,
    slope: f64,
    sigma: f64,
    tick: u32,
    z: f64,
    // Reciprocals: multiplications in the hot path.
    inv_sigma: f64,
    inv_tau_h: f64,
    inv_threshold: f64,
}

impl Kernel for RateKernel {
    type Config = RateSettings;

    fn new(p: &RateSettings) -> Self {
        let fast_decay = Decay::new(p.smoothing);
        RateKernel {
            inv_sigma: 0.0,
            inv_tau_h: HOUR_MS / fast_decay.tau_ms(),
            inv_threshold: 1.0 / p.threshold,
            p: *p,
            fast: EwStats::default(),
            slow: EwStats::default(),
            fast_decay,
            slow_decay: Decay::new(p.smoothing * 2),
            winsor: Winsor::default(),
            base: Baseline::new(p.baseline_half_life, p.relearn_after),
            warm: WarmUp::new(30, p.warm_up),
            res: Resolution::default(),
            last_ts: None,
            last: f64::NAN,
            slope: 0.0,
            sigma: 0.0,
            tick: 0,
            z: 0.0,
        }
    }

    #[inline]
    fn update(&mut self, ts_ms: i64, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        let dt = ts_ms - self.last_ts.unwrap_or(ts_ms);
        self.last_ts = Some(ts_ms);
        self.res.push(x - self.last);
        self.last = x;
        let (af, as_) = (self.fast_decay.alpha(dt), self.slow_decay.alpha(dt));
        let x = if self.fast.is_empty() {
            x
        } else {
            self.winsor.clip(x, self.fast.mean, af, self.res.get())
        };
        self.fast.push_mean(x, af);
        self.slow.push_mean(x, as_);
        // Lag difference of the two EWMAs is one fast time constant.
        self.slope = (self.fast.mean - self.slow.mean) * self.inv_tau_h;
        let warm = self.warm.tick(ts_ms);
        let mut out = 0.0;
        let mut near = Near::Typical;
        if warm {
            let b = &self.base.stats;
            // Floor: one resolution step per time constant is the smallest slope a quantised
            // sensor shows. The spread moves slowly: a square root every 16th reading is plenty.
            if self.tick & 15 == 0 || self.sigma == 0.0 {
                self.sigma = b.std().max(self.res.get() * self.inv_tau_h).max(1e-12);
                self.inv_sigma = 1.0 / self.sigma;
            }
            self.tick = self.tick.wrapping_add(1);
            self.z = (self.slope - b.mean) * self.inv_sigma;
            let ratio = self.z.abs() * self.inv_threshold;
            out = score(ratio);
            // Slopes recur (each morning's load), so their spread learns from everything below
            // the release level; a slow acceleration is the drift detector's business.
            near = if ratio < RELEASE_RATIO {
                Near::Typical
            } else {
                Near::Away
            };
        }
        self.base
            .update(ts_ms, dt, self.slope, near, 0.5 * self.p.threshold * self.sigma);
        out
    }

    fn explain(&self, _value: f64, unit: &str) -> String {
        let per_h = |v: f64| {
            if unit.is_empty() || unit == "1" {
                format!("{} per hour", super::series::fmt_value(v))
            } else {
                format!("{}/h", with_unit(v, unit))
            }
        };
        format!(
            "{} at {} ({} smoothing), usually {} ± {}: {:.1}× the usual spread",
            if self.slope > self.base.stats.mean {
                "rising"
            } else {
                "falling"
            },
            per_h(self.slope),
            fmt_duration(self.p.smoothing),
            per_h(self.base.stats.mean),
            per_h(self.sigma),
            self.z.abs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{noise, run_kernel, starts};

    const MIN: i64 = 60_000;

    fn kernel() -> RateKernel {
        RateKernel::new(&RateSettings::default())
    }

    #[test]
    fn a_fast_rise_is_one_episode() {
        // Water inlet at one reading a minute: 2 days steady, then +8 °C over 3 hours, then steady.
        let n = 3 * 1440;
        let mut xs: Vec<f64> = noise(11, n, 0.08).iter().map(|e| 15.0 + e).collect();
        let start = 2 * 1440;
        for (i, x) in xs.iter_mut().enumerate().skip(start) {
            *x += 8.0 * ((i - start) as f64 / 180.0).min(1.0);
        }
        let cfg = RateConfig::default();
        let (_, eps) = run_kernel(kernel(), &xs, MIN, cfg.confirm, cfg.clear_after);
        let at = starts(&eps);
        assert_eq!(at.len(), 1, "{at:?}");
        assert!(
            at[0] > start && at[0] < start + 60,
            "caught {} min into the rise",
            at[0] - start
        );
    }

    #[test]
    fn a_spike_is_not_a_rate() {
        let mut xs: Vec<f64> = noise(12, 2 * 1440, 0.08).iter().map(|e| 15.0 + e).collect();
        xs[1440] = 40.0;
        let cfg = RateConfig::default();
        let (_, eps) = run_kernel(kernel(), &xs, MIN, cfg.confirm, cfg.clear_after);
        // The spike is clipped to a few usual innovations before the EWMAs see it.
        assert!(starts(&eps).is_empty(), "{:?}", starts(&eps));
    }

    #[test]
    fn quiet_on_noise_and_daily_cycles_within_budget() {
        let n = 30 * 1440;
        let e = noise(13, n, 0.08);
        let xs: Vec<f64> = (0..n)
            .map(|i| 15.0 + 1.0 * (std::f64::consts::TAU * i as f64 / 1440.0).sin() + e[i])
            .collect();
        let cfg = RateConfig::default();
        let (_, eps) = run_kernel(kernel(), &xs, MIN, cfg.confirm, cfg.clear_after);
        assert!(starts(&eps).is_empty(), "false episodes at {:?}", starts(&eps));
    }
}
