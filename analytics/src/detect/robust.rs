//! Robust deviation: each reading against the median and MAD (median absolute
//! deviation) of the readings just before it. Catches steps and excursions;
//! one outlier cannot shift a median, so the baseline survives spikes. A lone
//! spike scores high but does not open an episode (`confirm`).

use super::series::{
    Debounce, Kernel, Resolution, SeriesDetector, channel_mask, div_exact, exact_reciprocal, names, score, with_unit,
};
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
/// and the new value's places; the MAD is a selection on the sorted window.
#[derive(Clone)]
pub struct RobustKernel {
    p: RobustParams,
    ring: Vec<f64>,
    /// The window sorted, then `+inf` up to the length [`rank`] searches fastest
    /// (see [`padded_len`]); but for the last replacement, which moves its
    /// values one reading late.
    sorted: Vec<f64>,
    /// That replacement: (from, to, old, new), places in `sorted` as it is.
    pending: Option<(usize, usize, f64, f64)>,
    head: usize,
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

/// Consistency constant: 1.4826 × MAD estimates σ for normal noise.
const MAD_TO_SIGMA: f64 = 1.4826;

impl RobustKernel {
    /// Readings in the window so far.
    #[inline]
    fn len(&self) -> usize {
        self.ring.len()
    }

    /// A copy with the pending replacement applied (as the next reading sees it).
    #[cfg(test)]
    fn settled(&self) -> RobustKernel {
        let mut k = self.clone();
        k.apply_pending();
        k
    }

    /// The sorted window, without the padding (once settled).
    #[cfg(test)]
    fn window(&self) -> &[f64] {
        &self.sorted[..self.len()]
    }

    #[inline]
    fn median(&self) -> f64 {
        let n = self.len();
        if n % 2 == 1 {
            self.sorted[n / 2]
        } else {
            0.5 * (self.sorted[n / 2 - 1] + self.sorted[n / 2])
        }
    }

    /// The median absolute deviation: the ⌈n/2⌉-th smallest |v - m| over the
    /// window. The deviations below and above the median are two sorted runs
    /// (walking outwards from the median), so this is a selection from two
    /// sorted arrays: a binary search on how many come from the lower run.
    fn mad(&self, m: f64) -> f64 {
        let s = &self.sorted[..self.len()];
        mad_of_sorted(s, m)
    }

    /// Takes `x` while the window fills up.
    fn fill(&mut self, x: f64) {
        let n = self.len();
        self.ring.push(x);
        let at = rank(&self.sorted, x);
        self.sorted.copy_within(at..n, at + 1);
        self.sorted[at] = x;
    }

    /// Where `old` leaves and `x` enters the window as it is with the pending
    /// replacement, searched in the sorted buffer as it is without it: counts
    /// corrected by the two pending values. So the search does not wait for the
    /// previous reading's moves (each search would otherwise wait for the last
    /// one's memory moves, which wait for its search).
    #[inline(always)]
    fn places(&self, old: f64, x: f64) -> (usize, usize) {
        let s = &self.sorted[..];
        let (mut from, mut to) = (rank(s, old), rank(s, x));
        if let Some((_, _, po, px)) = self.pending {
            from = from + usize::from(px < old) - usize::from(po < old);
            to = to + usize::from(px < x) - usize::from(po < x);
        }
        (from, to)
    }

    /// Moves the values for the pending replacement. Any copy of the old value
    /// may leave: equal values are interchangeable.
    #[inline(always)]
    fn apply_pending(&mut self) {
        if let Some((from, to, _, x)) = self.pending.take() {
            let s = &mut self.sorted[..];
            if to > from {
                s.copy_within(from + 1..to, from);
                s[to - 1] = x;
            } else {
                s.copy_within(to..from, to + 1);
                s[to] = x;
            }
        }
    }
}

/// The ⌈n/2⌉-th smallest |v - m| of a sorted, non-empty `s` whose median is `m`.
fn mad_of_sorted(s: &[f64], m: f64) -> f64 {
    let n = s.len();
    let k = n.div_ceil(2);
    // `m` lies between s[n/2 - 1] and s[n/2] (for an even n it is their mean,
    // which rounds inside them), so the deviations are m - s[p-1-i] on the left,
    // s[p+j] - m on the right, both ascending. A mean that overflowed is not
    // between them: the plain walk handles it.
    let p = n / 2;
    if !m.is_finite() || p == 0 {
        return mad_walk(s, m);
    }
    let (left, right) = s.split_at(p);
    let l = |i: usize| m - left[p - 1 - i];
    let r = |j: usize| right[j] - m;
    // The smallest count i taken from the left such that the next left one is
    // not below the last right one taken: the first k are l(..i) and r(..k-i).
    // The test is monotone in i (false, then true): count the falses in
    // [lo, hi) by halving, with integer arithmetic rather than branches (on
    // noise each step is a coin toss).
    let (mut i, mut n) = (k.saturating_sub(right.len()), 0);
    n += k.min(left.len()) - i;
    while n > 0 {
        let half = n / 2;
        let p = i + half;
        let below = usize::from(l(p) < r(k - p - 1)); // p is still too few from the left
        i += below * (half + 1);
        n = half - below * (1 - n % 2);
    }
    let a = if i > 0 { l(i - 1) } else { f64::NEG_INFINITY };
    let b = if k > i { r(k - i - 1) } else { f64::NEG_INFINITY };
    a.max(b)
}

/// The MAD by walking outwards from the median, taking the nearer neighbour
/// each step, until half the window is behind.
fn mad_walk(s: &[f64], m: f64) -> f64 {
    let n = s.len();
    let mut r: usize = s.iter().map(|&v| usize::from(v < m)).sum();
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

/// Length of the sorted buffer for a window: 64 or 128 for the unrolled
/// searches below, else the window.
fn padded_len(window: usize) -> usize {
    match window {
        ..=64 => 64,
        65..=128 => 128,
        _ => window,
    }
}

/// How many values of the padded sorted buffer are below `x` (its insertion
/// point): a binary search without branches (each step a conditional add), so
/// noise costs no mispredictions.
#[inline(always)]
fn rank(s: &[f64], x: f64) -> usize {
    match s.len() {
        64 => lower_bound::<64>(s, x),
        128 => lower_bound::<128>(s, x),
        _ => s.partition_point(|&v| v < x),
    }
}

/// `#(v < x)` in a sorted `s` of `N` (a power of two) values.
#[inline(always)]
fn lower_bound<const N: usize>(s: &[f64], x: f64) -> usize {
    let s: &[f64; N] = s.try_into().expect("N values");
    let mut i = 0;
    let mut half = N / 2;
    while half > 0 {
        // the first i values are below x; is the (i + half)-th?
        i += half * usize::from(s[i + half - 1] < x);
        half /= 2;
    }
    // i ≤ N - 1 here: the last value decides between N - 1 and N
    i + usize::from(s[i.min(N - 1)] < x)
}

impl Kernel for RobustKernel {
    type Config = RobustParams;

    fn new(p: &RobustParams) -> Self {
        RobustKernel {
            p: *p,
            ring: Vec::with_capacity(p.window),
            sorted: vec![f64::INFINITY; padded_len(p.window)],
            pending: None,
            head: 0,
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
        if !x.is_finite() {
            return 0.0;
        }
        self.res.push(x - self.last);
        self.last = x;
        let n = self.len();
        if n < self.p.window {
            self.fill(x);
            return 0.0;
        }
        let old = self.ring[self.head];
        let (from, to) = self.places(old, x);
        self.apply_pending();
        let m = self.median();
        // The scale moves slowly: it is refreshed every 8th reading.
        if self.tick & 7 == 0 {
            self.mad = self.mad(m);
        }
        self.tick = self.tick.wrapping_add(1);
        let sigma = (MAD_TO_SIGMA * self.mad).max(self.res.get()).max(1e-9 * m.abs());
        self.median = m;
        self.sigma = sigma;
        self.z = if sigma > 0.0 { (x - m) / sigma } else { 0.0 };
        let ratio = div_exact(self.z.abs(), self.p.threshold, self.inv_threshold);
        self.ring[self.head] = x;
        self.head += 1;
        if self.head == n {
            self.head = 0;
        }
        // (Also when `x` equals `old`: moving nothing costs less than a branch
        // that a quantised signal takes at random.)
        self.pending = Some((from, to, old, x));
        score(ratio)
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
        self.sorted.fill(f64::INFINITY);
        self.pending = None;
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
            let s = k.settled();
            assert_eq!(s.window(), w, "sorted window at {i}");
            if n == 64 {
                let m = s.median();
                let mut dev: Vec<f64> = w.iter().map(|v| (v - m).abs()).collect();
                dev.sort_by(f64::total_cmp);
                assert_eq!(s.mad(m), dev[31], "MAD at {i}: the 32nd smallest deviation");
            }
        }
    }

    /// The kernel as first written: the window sorted afresh for every reading.
    struct Naive {
        p: RobustParams,
        window: std::collections::VecDeque<f64>,
        last: f64,
        res: Resolution,
        mad: f64,
        tick: u32,
    }

    impl Naive {
        fn new(p: RobustParams) -> Self {
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
                let p = RobustParams {
                    window,
                    threshold: if seed.is_multiple_of(2) { 8.0 } else { 7.3 },
                };
                let mut k = RobustKernel::new(&p);
                let mut naive = Naive::new(p);
                let xs = random_series(seed, 6 * window + 300);
                for (i, &x) in xs.iter().enumerate() {
                    let full = k.len() == window;
                    let (want, m) = naive.update(x);
                    let got = k.update(i as i64, x);
                    let at = format!("window {window}, seed {seed}, reading {i}");
                    assert_eq!(got.to_bits(), want.to_bits(), "score, {at}: {got} vs {want}");
                    if full && x.is_finite() {
                        // (a sort puts -0 before 0; the window keeps them as they came)
                        assert!(k.median == m, "median, {at}: {} vs {m}", k.median);
                        checked += 1;
                    }
                    let mut w: Vec<f64> = xs[(i + 1).saturating_sub(window)..=i]
                        .iter()
                        .copied()
                        .filter(|v| v.is_finite())
                        .collect();
                    w.sort_by(f64::total_cmp);
                    let s = k.settled();
                    if w.len() <= window {
                        assert!(
                            s.window().len() == w.len() && s.window().iter().zip(&w).all(|(a, b)| a == b),
                            "sorted window, {at}"
                        );
                    }
                    if s.len() == window && w.len() == window {
                        // The MAD selection against a sort of the deviations, on the window as it is now.
                        let m = s.median();
                        let mut dev: Vec<f64> = w.iter().map(|v| (v - m).abs()).collect();
                        dev.sort_by(f64::total_cmp);
                        let want = dev[window.div_ceil(2) - 1];
                        // (equal as numbers: a deviation of zero may come out as -0)
                        let got = s.mad(m);
                        assert!(got == want, "MAD, {at}: {got} vs {want}");
                        assert!(got == mad_walk(s.window(), m), "MAD against the walk, {at}");
                    }
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
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
