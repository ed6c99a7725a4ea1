//! Robust deviation: each reading against the median and MAD (median absolute
//! deviation) of the readings just before it. Catches steps and excursions;
//! one outlier cannot shift a median, so the baseline survives spikes. A lone
//! spike scores high but does not open an episode (`confirm`).

use super::series::{Debounce, Kernel, Resolution, SeriesDetector, channel_mask, names, score, with_unit};
use super::{AnomalyKind, ConfigError};
use serde::Deserialize;

/// `[detect.robust]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RobustConfig {
    /// Readings in the sliding window (its median and MAD are the baseline).
    pub window: usize,
    /// Distance from the median, in robust standard deviations (1.4826 × MAD), that opens an episode.
    pub threshold: f64,
    /// Consecutive readings beyond the threshold needed (a lone spike is not a step).
    pub confirm: u32,
    /// Consecutive readings back inside needed to end an episode.
    pub clear_after: u32,
    /// Channels watched: levels that should not jump. Load-driven channels (gradient, RF, room
    /// climate, heater duty) and discrete ones (door, occupancy) move in steps by design.
    pub channels: Vec<String>,
}

impl Default for RobustConfig {
    fn default() -> Self {
        RobustConfig {
            window: 64,
            threshold: 8.0,
            confirm: 3,
            clear_after: 3,
            channels: names(&[
                "helium_level_pct",
                "vessel_pressure_kpa",
                "coldhead_stage1_k",
                "coldhead_stage2_k",
                "compressor_supply_mpa",
                "compressor_return_mpa",
                "water_inlet_c",
                "water_outlet_c",
                "water_flow_lpm",
                "room_o2_pct",
            ]),
        }
    }
}

/// What one kernel needs.
#[derive(Debug, Clone, Copy)]
pub struct RobustParams {
    pub window: usize,
    pub threshold: f64,
}

impl RobustConfig {
    pub fn params(&self) -> RobustParams {
        RobustParams {
            window: self.window.max(8),
            threshold: self.threshold,
        }
    }

    pub fn detector(&self) -> Result<SeriesDetector<RobustKernel>, ConfigError> {
        if self.threshold.is_nan() || self.threshold <= 0.0 {
            return Err(ConfigError::invalid("robust", "threshold must be above 0"));
        }
        Ok(SeriesDetector::new(
            "robust",
            None::<AnomalyKind>,
            self.params(),
            Debounce {
                confirm: self.confirm,
                clear_after: self.clear_after,
            },
            channel_mask("robust", &self.channels)?,
        ))
    }
}

/// A fixed window kept twice: in arrival order (to know what leaves) and sorted
/// (median in O(1)). Replacing a value shifts only the readings between the old
/// and the new value's places.
pub struct RobustKernel {
    p: RobustParams,
    ring: Vec<f64>,
    sorted: Vec<f64>,
    head: usize,
    last: f64,
    res: Resolution,
    mad: f64,
    tick: u32,
    // for `explain`
    median: f64,
    sigma: f64,
    z: f64,
}

/// Consistency constant: 1.4826 × MAD estimates σ for normal noise.
const MAD_TO_SIGMA: f64 = 1.4826;

impl RobustKernel {
    fn median(&self) -> f64 {
        let n = self.sorted.len();
        if n % 2 == 1 {
            self.sorted[n / 2]
        } else {
            0.5 * (self.sorted[n / 2 - 1] + self.sorted[n / 2])
        }
    }

    /// The median absolute deviation: walks outwards from the median, taking the
    /// nearer neighbour each step, until half the window is behind.
    fn mad(&self, m: f64) -> f64 {
        let s = &self.sorted;
        let n = s.len();
        let mut r = rank(s, m);
        let mut l = r as isize - 1;
        let mut d = 0.0;
        for _ in 0..n.div_ceil(2) {
            let dl = if l >= 0 { m - s[l as usize] } else { f64::INFINITY };
            let dr = if r < n { s[r] - m } else { f64::INFINITY };
            if dl < dr {
                d = dl;
                l -= 1;
            } else {
                d = dr;
                r += 1;
            }
        }
        d
    }

    fn insert(&mut self, x: f64) {
        if self.ring.len() < self.p.window {
            self.ring.push(x);
            let at = rank(&self.sorted, x);
            self.sorted.insert(at, x);
            return;
        }
        let old = std::mem::replace(&mut self.ring[self.head], x);
        self.head = (self.head + 1) % self.p.window;
        let s = &mut self.sorted;
        let from = rank(s, old);
        let to = rank(s, x);
        if to > from {
            s.copy_within(from + 1..to, from);
            s[to - 1] = x;
        } else {
            s.copy_within(to..from, to + 1);
            s[to] = x;
        }
    }
}

/// How many values of the sorted window are below `x` (its insertion point).
/// A branch-free count: on a window of tens of values it beats a binary
/// search, whose branches mispredict on noise.
#[inline]
fn rank(sorted: &[f64], x: f64) -> usize {
    sorted.iter().map(|&v| usize::from(v < x)).sum()
}

impl Kernel for RobustKernel {
    type Config = RobustParams;

    fn new(p: &RobustParams) -> Self {
        RobustKernel {
            p: *p,
            ring: Vec::with_capacity(p.window),
            sorted: Vec::with_capacity(p.window),
            head: 0,
            last: f64::NAN,
            res: Resolution::default(),
            mad: 0.0,
            tick: 0,
            median: 0.0,
            sigma: 0.0,
            z: 0.0,
        }
    }

    #[inline]
    fn update(&mut self, _ts_ms: i64, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        self.res.push(x - self.last);
        self.last = x;
        let mut out = 0.0;
        if self.ring.len() == self.p.window {
            let m = self.median();
            // The scale moves slowly; its O(window) walk runs every 8th reading.
            if self.tick & 7 == 0 {
                self.mad = self.mad(m);
            }
            self.tick = self.tick.wrapping_add(1);
            let sigma = (MAD_TO_SIGMA * self.mad).max(self.res.get()).max(1e-9 * m.abs());
            self.median = m;
            self.sigma = sigma;
            self.z = if sigma > 0.0 { (x - m) / sigma } else { 0.0 };
            out = score(self.z.abs() / self.p.threshold);
        }
        self.insert(x);
        out
    }

    fn explain(&self, value: f64, unit: &str) -> String {
        format!(
            "{} is {:.1} robust σ {} the median {} of the last {} readings (σ {})",
            with_unit(value, unit),
            self.z.abs(),
            if self.z > 0.0 { "above" } else { "below" },
            with_unit(self.median, unit),
            self.p.window,
            with_unit(self.sigma, unit),
        )
    }

    fn end_warm_up(&mut self) {
        // The archive is read as averages: their spread is not live data's.
        self.ring.clear();
        self.sorted.clear();
        self.head = 0;
        self.tick = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{noise, run_kernel, starts};

    fn kernel() -> RobustKernel {
        RobustKernel::new(&RobustConfig::default().params())
    }

    #[test]
    fn median_and_mad_match_a_sort() {
        let mut k = kernel();
        let xs: Vec<f64> = noise(7, 500, 1.0);
        for (i, &x) in xs.iter().enumerate() {
            k.update(i as i64, x);
            let n = k.ring.len();
            let mut w: Vec<f64> = if n < 64 {
                xs[..=i].to_vec()
            } else {
                xs[i + 1 - 64..=i].to_vec()
            };
            w.sort_by(f64::total_cmp);
            assert_eq!(k.sorted, w, "sorted window at {i}");
            if n == 64 {
                let m = k.median();
                let mut dev: Vec<f64> = w.iter().map(|v| (v - m).abs()).collect();
                dev.sort_by(f64::total_cmp);
                assert_eq!(k.mad(m), dev[31], "MAD at {i}: the 32nd smallest deviation");
            }
        }
    }

    #[test]
    fn a_step_is_one_episode_a_spike_is_none() {
        let mut xs = noise(1, 3000, 0.1);
        xs[1000] += 5.0; // spike: scores high, no episode
        for x in &mut xs[2000..] {
            *x += 3.0; // step
        }
        let cfg = RobustConfig::default();
        let (scores, eps) = run_kernel(kernel(), &xs, 1000, cfg.confirm, cfg.clear_after);
        assert!(scores[1000] > 0.8, "{}", scores[1000]);
        assert_eq!(
            starts(&eps),
            vec![2002],
            "one episode, confirmed on the third reading of the step"
        );
    }

    #[test]
    fn quiet_on_noise_within_budget() {
        // 200k readings of Gaussian noise, plus quantisation: no episode allowed.
        let xs: Vec<f64> = noise(3, 200_000, 0.02)
            .iter()
            .map(|x| (x * 100.0).round() / 100.0 + 81.0)
            .collect();
        let cfg = RobustConfig::default();
        let (scores, eps) = run_kernel(kernel(), &xs, 1000, cfg.confirm, cfg.clear_after);
        assert!(starts(&eps).is_empty(), "{:?}", starts(&eps));
        let high = scores.iter().filter(|&&s| s >= 0.5).count();
        assert!(high <= 20, "{high} single readings over the threshold");
    }
}
