//! Slow drift: the recent level (an EWMA over about an hour) against the
//! series' own slow baseline (about a week), in units of how far the recent
//! level usually strays from it. Two charts on that deviation: the EWMA chart
//! fires on a large one at once; the CUSUM fires on a moderate one that lasts.
//! The baseline stops learning while the level is away, so a degradation over
//! days (a cold head creeping up) is not absorbed before it is reported.

use super::ConfigError;
use super::series::{
    Baseline, Debounce, Decay, EwStats, Kernel, Near, Resolution, SeriesDetector, WarmUp, Winsor, clamp_ordered,
    fmt_duration, names, score, with_unit,
};
use super::settings::{DetectorSettings, Section};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[detect.drift]`: the shared keys ([`Section`]) and these.
pub type DriftConfig = Section<DriftSettings>;

/// The drift detector's own settings (also what one kernel needs).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct DriftSettings {
    /// Half-life of the recent level.
    #[serde(with = "humantime_serde")]
    pub recent_half_life: Duration,
    /// Half-life of the baseline level and of its usual spread.
    #[serde(with = "humantime_serde")]
    pub baseline_half_life: Duration,
    /// EWMA chart: recent level this many usual deviations from the baseline opens an episode.
    pub threshold: f64,
    /// CUSUM: deviation (in usual deviations) below which nothing accumulates.
    pub cusum_slack: f64,
    /// CUSUM: accumulated excess (deviations × recent time constants) that opens an episode.
    pub cusum_limit: f64,
    /// No score before a series has this much history.
    #[serde(with = "humantime_serde")]
    pub warm_up: Duration,
    /// A level away from the baseline this long becomes the new baseline (after a repair, say).
    #[serde(with = "humantime_serde")]
    pub relearn_after: Duration,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            recent_half_life: Duration::from_secs(3600),
            baseline_half_life: Duration::from_secs(7 * 86_400),
            threshold: 6.0,
            cusum_slack: 3.0,
            cusum_limit: 10.0,
            warm_up: Duration::from_secs(86_400),
            relearn_after: Duration::from_secs(3 * 86_400),
        }
    }
}

impl DetectorSettings for DriftSettings {
    const SECTION: &'static str = "drift";
    type Detector = SeriesDetector<DriftKernel>;
    const DEBOUNCE: Debounce = Debounce {
        confirm: 1,
        clear_after: 10,
    };

    /// Levels that should hold steady.
    fn default_channels() -> Vec<String> {
        names(&[
            "helium_level_pct",
            "vessel_pressure_kpa",
            "vessel_heater_pct",
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
        if !(self.threshold > 0.0 && self.cusum_limit > 0.0 && self.cusum_slack >= 0.0) {
            return Err(ConfigError::invalid(
                Self::SECTION,
                "threshold and cusum_limit must be above 0, cusum_slack at least 0",
            ));
        }
        if self.recent_half_life >= self.baseline_half_life {
            return Err(ConfigError::invalid(
                Self::SECTION,
                "recent_half_life must be shorter than baseline_half_life",
            ));
        }
        Ok(SeriesDetector::new(Self::SECTION, None, *self, debounce, watched))
    }
}

pub struct DriftKernel {
    p: DriftSettings,
    recent: EwStats,
    recent_decay: Decay,
    winsor: Winsor,
    /// Slow mean of the recent level; its variance is how far the recent level usually strays.
    base: Baseline,
    warm: WarmUp,
    res: Resolution,
    last_ts: Option<i64>,
    last: f64,
    up: f64,
    down: f64,
    z: f64,
    sigma: f64,
    tick: u32,
    score: f64,
    /// Reciprocals: multiplications in the hot path.
    inv: Inverses,
}

#[derive(Debug, Clone, Copy)]
struct Inverses {
    sigma: f64,
    tau_ms: f64,
    threshold: f64,
    cusum_limit: f64,
}

impl Kernel for DriftKernel {
    type Config = DriftSettings;

    fn new(p: &DriftSettings) -> Self {
        let recent_decay = Decay::new(p.recent_half_life);
        DriftKernel {
            inv: Inverses {
                sigma: 0.0,
                tau_ms: 1.0 / recent_decay.tau_ms(),
                threshold: 1.0 / p.threshold,
                cusum_limit: 1.0 / p.cusum_limit,
            },
            p: *p,
            recent: EwStats::default(),
            recent_decay,
            winsor: Winsor::default(),
            base: Baseline::new(p.baseline_half_life, p.relearn_after),
            warm: WarmUp::new(30, p.warm_up),
            res: Resolution::default(),
            last_ts: None,
            last: f64::NAN,
            up: 0.0,
            down: 0.0,
            z: 0.0,
            sigma: 0.0,
            tick: 0,
            score: 0.0,
        }
    }

    #[inline]
    fn update(&mut self, ts_ms: i64, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        if x == self.last {
            // A repeat says nothing about drift, and a frozen sensor must not look like one.
            return self.score;
        }
        let dt = ts_ms - self.last_ts.unwrap_or(ts_ms);
        self.last_ts = Some(ts_ms);
        self.res.push(x - self.last);
        self.last = x;
        let a = self.recent_decay.alpha(dt);
        let x = if self.recent.is_empty() {
            x
        } else {
            self.winsor.clip(x, self.recent.mean, a, self.res.get())
        };
        self.recent.push_mean(x, a);
        let r = self.recent.mean;
        let warm = self.warm.tick(ts_ms);
        let mut out = 0.0;
        let mut near = Near::Typical;
        if warm && !self.base.stats.is_empty() {
            let b = &self.base.stats;
            // The spread moves on a scale of days: a square root every 16th reading is plenty.
            if self.tick & 15 == 0 || self.sigma == 0.0 {
                self.sigma = b.std().max(self.res.get()).max(1e-9 * b.mean.abs());
                self.inv.sigma = if self.sigma > 0.0 { 1.0 / self.sigma } else { 0.0 };
            }
            self.tick = self.tick.wrapping_add(1);
            self.z = (r - b.mean) * self.inv.sigma;
            // CUSUM steps are weighted by elapsed time, so the limit means the same at any sampling rate.
            let step = (dt.max(0) as f64 * self.inv.tau_ms).min(1.0);
            let k = self.p.cusum_slack;
            let cap = 2.0 * self.p.cusum_limit;
            self.up = clamp_ordered(self.up + (self.z - k) * step, 0.0, cap);
            self.down = clamp_ordered(self.down + (-self.z - k) * step, 0.0, cap);
            let ratio = (self.z.abs() * self.inv.threshold).max(self.up.max(self.down) * self.inv.cusum_limit);
            out = score(ratio);
            near = Near::of(self.z, ratio);
        }
        if self
            .base
            .update(ts_ms, dt, r, near, 0.5 * self.p.threshold * self.sigma)
        {
            self.up = 0.0;
            self.down = 0.0;
        }
        self.score = out;
        out
    }

    fn explain(&self, _value: f64, unit: &str) -> String {
        let b = &self.base.stats;
        let dir = if self.z > 0.0 { "above" } else { "below" };
        let recent = format!(
            "{} mean {}",
            fmt_duration(self.p.recent_half_life),
            with_unit(self.recent.mean, unit)
        );
        let base = format!(
            "the {} baseline {} (usual spread {})",
            fmt_duration(self.p.baseline_half_life),
            with_unit(b.mean, unit),
            with_unit(self.sigma, unit)
        );
        if self.z.abs() >= self.p.threshold {
            format!("{recent} is {:.1}× the usual spread {dir} {base}", self.z.abs())
        } else {
            format!(
                "drifting: {recent} has stayed {dir} {base} for long (CUSUM {:.1}, limit {})",
                self.up.max(self.down),
                self.p.cusum_limit
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{noise, run_kernel, starts};

    const MIN: i64 = 60_000;

    fn kernel() -> DriftKernel {
        DriftKernel::new(&DriftSettings::default())
    }

    #[test]
    fn a_slow_drift_is_one_episode() {
        // One reading a minute: 5 days flat, then +0.5 K over 5 days (noise 0.01 K).
        let n = 10 * 1440;
        let mut xs: Vec<f64> = noise(5, n, 0.01).iter().map(|e| 4.05 + e).collect();
        for (i, x) in xs.iter_mut().enumerate().skip(5 * 1440) {
            *x += 0.5 * (i - 5 * 1440) as f64 / (5.0 * 1440.0);
        }
        let cfg = DriftConfig::default();
        let (_, eps) = run_kernel(kernel(), &xs, MIN, cfg.confirm, cfg.clear_after);
        let at = starts(&eps);
        assert_eq!(at.len(), 1, "{at:?}");
        let hours_in = (at[0] - 5 * 1440) as f64 / 60.0;
        assert!(hours_in < 24.0, "caught after {hours_in:.1} h of drift (0.1 K/day)");
    }

    #[test]
    fn a_step_is_caught_by_the_ewma_chart_and_relearned() {
        let n = 10 * 1440;
        let mut xs: Vec<f64> = noise(6, n, 0.05).iter().map(|e| 20.0 + e).collect();
        for x in &mut xs[2 * 1440..] {
            *x += 1.0;
        }
        let cfg = DriftConfig::default();
        let (scores, eps) = run_kernel(kernel(), &xs, MIN, cfg.confirm, cfg.clear_after);
        assert_eq!(starts(&eps).len(), 1, "{:?}", starts(&eps));
        // settled for relearn_after (3 days, checked twice): the new level is the baseline, quiet again
        assert!(scores[n - 1] < 0.3, "{}", scores[n - 1]);
    }

    #[test]
    fn quiet_on_noise_and_daily_cycles_within_budget() {
        // 60 days at one reading a minute: a daily cycle of ±0.5 plus noise.
        let n = 60 * 1440;
        let e = noise(8, n, 0.1);
        let xs: Vec<f64> = (0..n)
            .map(|i| 18.0 + 0.5 * (std::f64::consts::TAU * i as f64 / 1440.0).sin() + e[i])
            .collect();
        let cfg = DriftConfig::default();
        let (scores, eps) = run_kernel(kernel(), &xs, MIN, cfg.confirm, cfg.clear_after);
        assert!(starts(&eps).is_empty(), "false episodes at {:?}", starts(&eps));
        assert!(scores.iter().all(|&s| s < 0.5));
    }
}
