//! Robust deviation: each reading against the median and MAD (median absolute
//! deviation) of the readings just before it. Catches steps and excursions;
//! one outlier cannot shift a median, so the baseline survives spikes. A lone
//! spike scores high but does not open an episode (`confirm`).

use super::ConfigError;
use super::series::{Debounce, Kernel, Resolution, SeriesDetector, div_exact, exact_reciprocal, names, with_unit};
use super::settings::{DetectorSettings, Section, positive};
use serde::{Deserialize, Serialize};

#[cfg(target_arch = "x86_64")]
mod ranked;
mod sorted;

use sorted::Sorted;
#[cfg(test)]
use sorted::{mad_of_sorted, mad_walk};

/// `[detect.robust]`: the shared keys ([`Section`]) and these.
pub type RobustConfig = Section<RobustSettings>;

/// The robust detector's own settings (also what one kernel needs).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct RobustSettings {
    /// Readings in the sliding window (its median and MAD are the baseline); at least 8.
    pub window: usize,
    /// Distance from the median, in robust standard deviations (1.4826 × MAD), that opens an episode.
    pub threshold: f64,
}

impl Default for RobustSettings {
    fn default() -> Self {
        RobustSettings {
            window: 64,
            threshold: 8.0,
        }
    }
}

impl DetectorSettings for RobustSettings {
    const SECTION: &'static str = "robust";
    type Detector = SeriesDetector<RobustKernel>;
    /// A lone spike is not a step: three readings beyond the threshold.
    const DEBOUNCE: Debounce = Debounce {
        confirm: 3,
        clear_after: 3,
    };

    /// Levels that should not jump. Load-driven channels (gradient, RF, room
    /// climate, heater duty) and discrete ones (door, occupancy) move in steps by design.
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
            "room_o2_pct",
        ])
    }

    fn build(&self, debounce: Debounce, watched: Vec<bool>) -> Result<Self::Detector, ConfigError> {
        positive(Self::SECTION, "threshold", self.threshold)?;
        Ok(SeriesDetector::new(Self::SECTION, None, *self, debounce, watched))
    }
}

/// The median and MAD of the readings before each new one, from one of two
/// windows that give the same numbers to the bit: `Ranked` (AVX2, windows up
/// to 64, the CPU checked once at creation), else `Sorted` (any CPU, any window).
#[derive(Clone)]
pub struct RobustKernel {
    p: RobustSettings,
    window: Window,
    last: f64,
    res: Resolution,
    mad: f64,
    tick: u32,
    /// `1 / threshold` when dividing by the threshold is exactly a multiplication
    /// (a power of two, like the default 8).
    inv_threshold: Option<f64>,
    // for `explain`
    median: f64,
    sigma: f64,
    z: f64,
}

/// The window the kernel keeps (see [`RobustKernel`]).
#[derive(Clone)]
enum Window {
    Sorted(Sorted),
    #[cfg(target_arch = "x86_64")]
    Ranked(Box<ranked::Ranked>),
}

/// Consistency constant: 1.4826 × MAD estimates σ for normal noise.
const MAD_TO_SIGMA: f64 = 1.4826;

impl RobustKernel {
    /// Readings in the window so far.
    #[cfg(test)]
    fn len(&self) -> usize {
        match &self.window {
            Window::Sorted(w) => w.len(),
            #[cfg(target_arch = "x86_64")]
            Window::Ranked(w) => w.len,
        }
    }

    /// The window sorted, as the next reading sees it.
    #[cfg(test)]
    fn window(&self) -> Vec<f64> {
        match &self.window {
            Window::Sorted(w) => w.settled().window().to_vec(),
            #[cfg(target_arch = "x86_64")]
            Window::Ranked(w) => w.window(),
        }
    }

    /// The MAD of the window as the next reading sees it, about `m`, as the
    /// kernel computes it.
    #[cfg(test)]
    fn mad_now(&self, m: f64) -> f64 {
        match &self.window {
            Window::Sorted(w) => mad_of_sorted(w.settled().window(), m),
            #[cfg(target_arch = "x86_64")]
            Window::Ranked(w) => w.mad_now(m),
        }
    }

    /// Whether the ranked window (AVX2) is in use.
    #[cfg(test)]
    fn is_ranked(&self) -> bool {
        !matches!(self.window, Window::Sorted(_))
    }

    /// A kernel on the sorted window, whatever the CPU.
    #[cfg(test)]
    fn sorted(p: &RobustSettings) -> Self {
        RobustKernel {
            window: Window::Sorted(Sorted::new(p.window)),
            ..Self::new(p)
        }
    }

    /// [`Kernel::update`] compiled for AVX2 (the ranked window's steps inlined).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn update_avx2(&mut self, x: f64) -> f64 {
        self.update_with::<true>(x)
    }

    /// One reading, on the ranked window or else the sorted one (the other's
    /// code left out).
    #[inline(always)]
    fn update_with<const RANKED: bool>(&mut self, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        // (`Resolution::push`, as a select: whether the value repeated is a
        // coin toss on a quantised signal)
        let d = (x - self.last).abs();
        let step = self.res.step;
        self.res.step = if (d < step) & (d > 0.0) { d } else { step };
        self.last = x;
        // The scale moves slowly: it is refreshed every 8th reading.
        let refresh = self.tick & 7 == 0;
        let m = match &mut self.window {
            Window::Sorted(w) if !RANKED => {
                if w.len() < self.p.window {
                    w.fill(x);
                    return 0.0;
                }
                w.step(x, refresh, &mut self.mad)
            }
            #[cfg(target_arch = "x86_64")]
            Window::Ranked(w) if RANKED => {
                if !w.is_full() {
                    w.fill(x);
                    return 0.0;
                }
                // SAFETY: a `Ranked` exists only where AVX2 is available.
                unsafe { w.step(x, refresh, &mut self.mad) }
            }
            _ => unreachable!("update_avx2 is for the ranked window"),
        };
        self.tick = self.tick.wrapping_add(1);
        let sigma = (MAD_TO_SIGMA * self.mad).max(self.res.get()).max(1e-9 * m.abs());
        self.median = m;
        self.sigma = sigma;
        self.z = if sigma > 0.0 { (x - m) / sigma } else { 0.0 };
        let ratio = div_exact(self.z.abs(), self.p.threshold, self.inv_threshold);
        // (`score`, without a branch on whether the ratio is 0: a reading at
        // the median is a coin toss on a quantised signal)
        let r = if ratio > 0.0 { ratio } else { 0.0 };
        if r.is_finite() { r / (1.0 + r) } else { 1.0 }
    }
}

impl Kernel for RobustKernel {
    type Config = RobustSettings;

    fn new(p: &RobustSettings) -> Self {
        let p = &RobustSettings {
            window: p.window.max(8),
            ..*p
        };
        #[cfg(target_arch = "x86_64")]
        let window = match ranked::Ranked::new(p.window) {
            Some(r) => Window::Ranked(r),
            None => Window::Sorted(Sorted::new(p.window)),
        };
        #[cfg(not(target_arch = "x86_64"))]
        let window = Window::Sorted(Sorted::new(p.window));
        RobustKernel {
            p: *p,
            window,
            last: f64::NAN,
            res: Resolution::default(),
            mad: 0.0,
            tick: 0,
            inv_threshold: exact_reciprocal(p.threshold),
            median: 0.0,
            sigma: 0.0,
            z: 0.0,
        }
    }

    #[inline]
    fn update(&mut self, _ts_ms: i64, x: f64) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if let Window::Ranked(_) = self.window {
            // SAFETY: a `Ranked` exists only where AVX2 is available.
            return unsafe { self.update_avx2(x) };
        }
        self.update_with::<false>(x)
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
        match &mut self.window {
            Window::Sorted(w) => w.clear(),
            #[cfg(target_arch = "x86_64")]
            Window::Ranked(w) => w.clear(),
        }
        self.tick = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::series::score;
    use crate::detect::testing::{noise, run_kernel, starts};

    fn kernel() -> RobustKernel {
        RobustKernel::new(&RobustSettings::default())
    }

    /// The kernel as the CPU gets it, and on the sorted window (the same
    /// kernel twice where the CPU has no AVX2).
    fn both(p: &RobustSettings) -> [RobustKernel; 2] {
        [RobustKernel::new(p), RobustKernel::sorted(p)]
    }

    #[test]
    fn median_and_mad_match_a_sort() {
        let xs: Vec<f64> = noise(7, 500, 1.0);
        for mut k in both(&RobustSettings::default()) {
            for (i, &x) in xs.iter().enumerate() {
                k.update(i as i64, x);
                let n = k.len();
                let mut w: Vec<f64> = if n < 64 {
                    xs[..=i].to_vec()
                } else {
                    xs[i + 1 - 64..=i].to_vec()
                };
                w.sort_by(f64::total_cmp);
                assert_eq!(k.window(), w, "sorted window at {i}");
                if n == 64 {
                    let m = 0.5 * (w[31] + w[32]);
                    let mut dev: Vec<f64> = w.iter().map(|v| (v - m).abs()).collect();
                    dev.sort_by(f64::total_cmp);
                    assert_eq!(k.mad_now(m), dev[31], "MAD at {i}: the 32nd smallest deviation");
                }
            }
        }
    }

    /// The kernel as first written: the window sorted afresh for every reading.
    struct Naive {
        p: RobustSettings,
        window: std::collections::VecDeque<f64>,
        last: f64,
        res: Resolution,
        mad: f64,
        tick: u32,
    }

    impl Naive {
        fn new(p: RobustSettings) -> Self {
            Naive {
                p,
                window: Default::default(),
                last: f64::NAN,
                res: Resolution::default(),
                mad: 0.0,
                tick: 0,
            }
        }

        /// Score and median of one reading.
        fn update(&mut self, x: f64) -> (f64, f64) {
            if !x.is_finite() {
                return (0.0, f64::NAN);
            }
            self.res.push(x - self.last);
            self.last = x;
            let mut out = (0.0, f64::NAN);
            if self.window.len() == self.p.window {
                let mut s: Vec<f64> = self.window.iter().copied().collect();
                s.sort_by(f64::total_cmp);
                let n = s.len();
                let m = if n % 2 == 1 {
                    s[n / 2]
                } else {
                    0.5 * (s[n / 2 - 1] + s[n / 2])
                };
                let mut dev: Vec<f64> = s.iter().map(|v| (v - m).abs()).collect();
                dev.sort_by(f64::total_cmp);
                if self.tick & 7 == 0 {
                    self.mad = dev[n.div_ceil(2) - 1];
                }
                self.tick = self.tick.wrapping_add(1);
                let sigma = (MAD_TO_SIGMA * self.mad).max(self.res.get()).max(1e-9 * m.abs());
                let z = if sigma > 0.0 { (x - m) / sigma } else { 0.0 };
                out = (score(z.abs() / self.p.threshold), m);
                self.window.pop_front();
            }
            self.window.push_back(x);
            out
        }
    }

    /// xorshift64*: a seeded stream of u64.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            s.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    /// Random series of every shape the window meets: continuous noise, coarse
    /// quantisation (many equal values), runs of one value, spikes, steps, huge
    /// magnitudes, zeros of both signs.
    fn random_series(seed: u64, n: usize) -> Vec<f64> {
        let mut next = rng(seed);
        let mut uniform = move || (next() >> 11) as f64 / (1u64 << 53) as f64;
        let shape = (seed % 5) as u32;
        let mut level = 0.0;
        (0..n)
            .map(|_| {
                let u = uniform();
                if uniform() < 0.002 {
                    level += (uniform() - 0.5) * 20.0; // a step
                }
                let v = match shape {
                    0 => level + (u - 0.5) * 3.0,
                    1 => level + ((u - 0.5) * 6.0).round() * 0.5, // 13 levels
                    2 => {
                        if u < 0.3 {
                            0.0
                        } else if u < 0.4 {
                            -0.0
                        } else {
                            level + (u * 4.0).floor()
                        }
                    }
                    // near the largest f64: the mean of two overflows
                    3 => (if level >= 0.0 { 1.0 } else { -1.0 }) * (1.0 + 0.79 * u) * 1e308,
                    _ => level + ((u - 0.5) * 100.0).round() / 100.0,
                };
                if uniform() < 0.01 { v + 50.0 * (u - 0.5) } else { v } // spikes
            })
            .collect()
    }

    #[test]
    fn seeded_random_windows_match_a_naive_sort() {
        let mut checked = 0;
        for (case, window) in [8, 9, 15, 16, 17, 31, 63, 64, 65, 100, 127, 128, 129, 250]
            .into_iter()
            .enumerate()
        {
            for seed in 0..5u64 {
                let seed = seed * 31 + case as u64;
                let p = RobustSettings {
                    window,
                    threshold: if seed.is_multiple_of(2) { 8.0 } else { 7.3 },
                };
                let xs = random_series(seed, 6 * window + 300);
                let mut naive = Naive::new(p);
                let mut kernels = both(&p);
                for (i, &x) in xs.iter().enumerate() {
                    let (want, m) = naive.update(x);
                    let mut w: Vec<f64> = xs[(i + 1).saturating_sub(window)..=i]
                        .iter()
                        .copied()
                        .filter(|v| v.is_finite())
                        .collect();
                    w.sort_by(f64::total_cmp);
                    for k in &mut kernels {
                        let full = k.len() == window;
                        let got = k.update(i as i64, x);
                        let at = format!("window {window}, seed {seed}, reading {i}");
                        assert_eq!(got.to_bits(), want.to_bits(), "score, {at}: {got} vs {want}");
                        if full && x.is_finite() {
                            // (a sort puts -0 before 0; the window keeps them as they came)
                            assert!(k.median == m, "median, {at}: {} vs {m}", k.median);
                            checked += 1;
                        }
                        let s = k.window();
                        if w.len() <= window {
                            assert!(
                                s.len() == w.len() && s.iter().zip(&w).all(|(a, b)| a == b),
                                "sorted window, {at}"
                            );
                        }
                        if s.len() == window && w.len() == window {
                            // The MAD selection against a sort of the deviations, on the window as it is now.
                            let m = if window % 2 == 1 {
                                s[window / 2]
                            } else {
                                0.5 * (s[window / 2 - 1] + s[window / 2])
                            };
                            let mut dev: Vec<f64> = w.iter().map(|v| (v - m).abs()).collect();
                            dev.sort_by(f64::total_cmp);
                            let want = dev[window.div_ceil(2) - 1];
                            // (equal as numbers: a deviation of zero may come out as -0)
                            let got = k.mad_now(m);
                            assert!(got == want, "MAD, {at}: {got} vs {want}");
                            assert!(got == mad_walk(&s, m), "MAD against the walk, {at}");
                        }
                    }
                }
            }
        }
        assert!(checked > 20_000, "{checked}");
    }

    /// The ranked window (AVX2) and the sorted one give the same scores,
    /// medians and explanations to the bit, through gaps, zeros of both signs
    /// and a warm-up's end.
    #[test]
    fn ranked_and_sorted_windows_agree_to_the_bit() {
        for window in [8, 9, 16, 31, 33, 63, 64, 65] {
            for seed in 0..10u64 {
                let p = RobustSettings {
                    window,
                    threshold: if seed.is_multiple_of(2) { 8.0 } else { 7.3 },
                };
                let [mut a, mut b] = both(&p);
                #[cfg(target_arch = "x86_64")]
                assert_eq!(a.is_ranked(), window <= 64 && is_x86_feature_detected!("avx2"));
                assert!(!b.is_ranked());
                let mut xs = random_series(seed, 40 * window + 500);
                for (i, x) in xs.iter_mut().enumerate() {
                    if i % 97 == 13 {
                        *x = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][i % 3]; // gaps
                    }
                }
                for (i, &x) in xs.iter().enumerate() {
                    if i == xs.len() / 2 {
                        a.end_warm_up();
                        b.end_warm_up();
                    }
                    let (sa, sb) = (a.update(i as i64, x), b.update(i as i64, x));
                    let at = format!("window {window}, seed {seed}, reading {i}");
                    assert_eq!(sa.to_bits(), sb.to_bits(), "score, {at}");
                    assert_eq!(a.median.to_bits(), b.median.to_bits(), "median, {at}");
                    assert_eq!(a.explain(x, "K"), b.explain(x, "K"), "{at}");
                    let (wa, wb) = (a.window(), b.window());
                    assert!(
                        wa.iter().map(|v| v.to_bits()).eq(wb.iter().map(|v| v.to_bits())),
                        "window, {at}"
                    );
                }
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
