//! Vibration: growth of band energy (and overall RMS) over the machine's own
//! baseline, in dB. Machines differ by several times in healthy vibration, so
//! a fixed limit is either deaf or noisy; doubling against itself is not.
//! Only growth counts: a compressor that stops is quiet, not anomalous here.

use super::series::{
    Baseline, Debounce, Decay, EwStats, Kernel, Near, RELEASE_RATIO, Resolution, SeriesDetector, WarmUp, fmt_duration,
    names, score, with_unit,
};
use super::settings::{DetectorSettings, Section, positive};
use super::{AnomalyKind, ConfigError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// 20 / ln 10: natural log of an amplitude ratio to dB.
const DB_PER_NEPER: f64 = 8.685_889_638_065_035;

/// `[detect.vibration]`: the shared keys ([`Section`]) and these.
pub type VibrationConfig = Section<VibrationSettings>;

/// The vibration detector's own settings (also what one kernel needs).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct VibrationSettings {
    /// Smoothing of the level (EWMA half-life of its logarithm).
    #[serde(with = "humantime_serde")]
    pub smoothing: Duration,
    /// Half-life of the machine's own baseline level.
    #[serde(with = "humantime_serde")]
    pub baseline_half_life: Duration,
    /// Growth over the baseline that opens an episode, dB (20·log10 of the RMS ratio; 6 dB = twice).
    pub threshold_db: f64,
    /// No score before a series has this much history.
    #[serde(with = "humantime_serde")]
    pub warm_up: Duration,
    /// A level away from the baseline this long becomes the new baseline (a new compressor).
    #[serde(with = "humantime_serde")]
    pub relearn_after: Duration,
}

impl Default for VibrationSettings {
    fn default() -> Self {
        VibrationSettings {
            smoothing: Duration::from_secs(30 * 60),
            baseline_half_life: Duration::from_secs(14 * 86_400),
            threshold_db: 6.0,
            warm_up: Duration::from_secs(86_400),
            relearn_after: Duration::from_secs(3 * 86_400),
        }
    }
}

impl DetectorSettings for VibrationSettings {
    const SECTION: &'static str = "vibration";
    type Detector = SeriesDetector<BandGrowthKernel>;
    const DEBOUNCE: Debounce = Debounce {
        confirm: 1,
        clear_after: 10,
    };

    /// Band energies and overall RMS (mm/s).
    fn default_channels() -> Vec<String> {
        names(&[
            "compressor_band_bearing_mms",
            "compressor_band_motor_mms",
            "compressor_vib_rms_mms",
            "coldhead_band_displacer_mms",
            "coldhead_vib_rms_mms",
        ])
    }

    fn build(&self, debounce: Debounce, watched: Vec<bool>) -> Result<Self::Detector, ConfigError> {
        positive(Self::SECTION, "threshold_db", self.threshold_db)?;
        Ok(SeriesDetector::new(
            Self::SECTION,
            Some(AnomalyKind::MachineHealth),
            *self,
            debounce,
            watched,
        ))
    }
}

/// Log-level of one band against its slow baseline.
pub struct BandGrowthKernel {
    p: VibrationSettings,
    level: EwStats,
    decay: Decay,
    base: Baseline,
    warm: WarmUp,
    res: Resolution,
    last: f64,
    last_ts: Option<i64>,
    growth_db: f64,
}

impl Kernel for BandGrowthKernel {
    type Config = VibrationSettings;

    fn new(p: &VibrationSettings) -> Self {
        BandGrowthKernel {
            p: *p,
            level: EwStats::default(),
            decay: Decay::new(p.smoothing),
            base: Baseline::new(p.baseline_half_life, p.relearn_after),
            warm: WarmUp::new(30, p.warm_up),
            res: Resolution::default(),
            last: f64::NAN,
            last_ts: None,
            growth_db: 0.0,
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
        // A reading of 0 (a stopped compressor) is floored at the sensor's resolution.
        let ln = x.max(self.res.get()).max(1e-9).ln();
        let a = self.decay.alpha(dt);
        self.level.push_mean(ln, a);
        let warm = self.warm.tick(ts_ms);
        let mut out = 0.0;
        let mut near = Near::Typical;
        if warm && !self.base.stats.is_empty() {
            self.growth_db = (self.level.mean - self.base.stats.mean) * DB_PER_NEPER;
            let ratio = self.growth_db / self.p.threshold_db;
            out = score(ratio);
            // Learn only near the baseline, whichever way it moved: a stop must not drag it down.
            near = if ratio.abs() < RELEASE_RATIO {
                Near::Typical
            } else {
                Near::Away
            };
        }
        // Settled: moved less than a quarter of the threshold over relearn_after.
        let tolerance = 0.25 * self.p.threshold_db / DB_PER_NEPER;
        self.base.update(ts_ms, dt, self.level.mean, near, tolerance);
        out
    }

    fn explain(&self, _value: f64, unit: &str) -> String {
        let now = self.level.mean.exp();
        let base = self.base.stats.mean.exp();
        format!(
            "{} ({} mean) is {:.1}× its own {} baseline {} (+{:.1} dB, limit {} dB)",
            with_unit(now, unit),
            fmt_duration(self.p.smoothing),
            now / base,
            fmt_duration(self.p.baseline_half_life),
            with_unit(base, unit),
            self.growth_db,
            self.p.threshold_db
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{noise, run_kernel, starts};

    fn kernel() -> BandGrowthKernel {
        BandGrowthKernel::new(&VibrationSettings::default())
    }

    #[test]
    fn band_growth_is_one_episode_and_a_stop_is_none() {
        // Bearing band at one reading every 5 minutes over 40 days: healthy 0.35 mm/s,
        // a 12-hour stop on day 10, then wear grows it to 5x over days 20..40.
        let per_day = 288;
        let n = 40 * per_day;
        let e = noise(41, n, 0.012);
        let xs: Vec<f64> = (0..n)
            .map(|i| {
                let day = i as f64 / per_day as f64;
                let wear = if day > 20.0 { ((day - 20.0) / 20.0).powi(2) } else { 0.0 };
                let running = if (10.0..10.5).contains(&day) { 0.02 } else { 1.0 };
                ((0.35 * (1.0 + 4.0 * wear) * running + e[i]).max(0.0) * 100.0).round() / 100.0
            })
            .collect();
        let cfg = VibrationConfig::default();
        let (_, eps) = run_kernel(kernel(), &xs, 300_000, cfg.confirm, cfg.clear_after);
        let at = starts(&eps);
        assert_eq!(at.len(), 1, "{at:?}");
        let day = at[0] as f64 / per_day as f64;
        // 2x (6 dB) is reached when wear = 0.25, on day 30
        assert!((29.0..32.0).contains(&day), "caught on day {day:.1}");
    }

    #[test]
    fn quiet_on_a_steady_machine() {
        let xs: Vec<f64> = noise(42, 60 * 288, 0.05)
            .iter()
            .map(|e| ((1.2 + e) * 100.0).round() / 100.0)
            .collect();
        let cfg = VibrationConfig::default();
        let (scores, eps) = run_kernel(kernel(), &xs, 300_000, cfg.confirm, cfg.clear_after);
        assert!(starts(&eps).is_empty(), "{:?}", starts(&eps));
        assert!(scores.iter().all(|&s| s < 0.3));
    }
}
