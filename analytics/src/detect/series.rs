//! What every streaming detector shares, in one place: the score scale (0..1,
//! 0.5 at a detector's threshold), episodes (debounce and hysteresis, so one
//! episode is one anomaly), time-aware exponential statistics, gated baselines,
//! and [`SeriesDetector`], which runs a univariate [`Kernel`] per machine and
//! channel. Kernels only see `(timestamp, value)`: the same code scores any CSV.

use super::{Anomaly, AnomalyKind, ConfigError, Detector, MachineMap, kind_of};
use larmor_ingest::{CATALOG, ChannelId, Frame};
use std::time::Duration;

/// Maps `ratio` = statistic / threshold to a score in 0..1: 0.5 at the
/// threshold, 0.75 at three times it, never 1. NaN and negatives give 0.
#[inline]
pub fn score(ratio: f64) -> f64 {
    if ratio > 0.0 {
        if ratio.is_finite() { ratio / (1.0 + ratio) } else { 1.0 }
    } else {
        0.0
    }
}

/// `1 / t` when dividing by `t` is exactly multiplying by it (`t` a power of
/// two, like the default thresholds 8): then the hot paths multiply.
pub fn exact_reciprocal(t: f64) -> Option<f64> {
    let inv = 1.0 / t;
    (t > 0.0 && t.is_normal() && inv.is_normal() && t.to_bits() & ((1 << 52) - 1) == 0).then_some(inv)
}

/// `x.clamp(lo, hi)` for bounds known to be ordered: the same value (NaN
/// stays NaN), without `clamp`'s check of the bounds on every call.
#[inline(always)]
pub fn clamp_ordered(x: f64, lo: f64, hi: f64) -> f64 {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

/// `x / t`, as a multiplication when `inv` is [`exact_reciprocal`]`(t)`.
#[inline(always)]
pub fn div_exact(x: f64, t: f64, inv: Option<f64>) -> f64 {
    match inv {
        Some(inv) => x * inv,
        None => x / t,
    }
}

/// An episode opens when the score reaches this (the detector's threshold)...
pub const TRIGGER: f64 = 0.5;
/// ...and may close once the score is below 80 % of the threshold.
pub const RELEASE_RATIO: f64 = 0.8;
const RELEASE: f64 = RELEASE_RATIO / (1.0 + RELEASE_RATIO);

/// How long a condition must hold to open an episode, and to close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    /// Consecutive readings at or above the threshold that open an episode.
    pub confirm: u32,
    /// Consecutive readings below the release level that close it.
    pub clear_after: u32,
}

/// One series' episode state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Episode {
    open: bool,
    run: u32,
}

impl Episode {
    /// Feeds one score; true when an episode opens on this reading.
    #[inline]
    pub fn update(&mut self, score: f64, d: Debounce) -> bool {
        if self.open {
            if score < RELEASE {
                self.run += 1;
                if self.run >= d.clear_after.max(1) {
                    self.open = false;
                    self.run = 0;
                }
            } else {
                self.run = 0;
            }
            false
        } else if score >= TRIGGER {
            self.run += 1;
            if self.run >= d.confirm.max(1) {
                self.open = true;
                self.run = 0;
                return true;
            }
            false
        } else {
            self.run = 0;
            false
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }
}

/// `1 - exp(-dt/tau)` for a half-life, remembered for the last two steps:
/// regularly sampled series never call `exp` after the first readings, nor do
/// series that alternate between two steps (a detector skipping repeated values
/// sees one step and its double).
#[derive(Debug, Clone, Copy)]
pub struct Decay {
    tau_ms: f64,
    /// The last two different steps (the latest first), and their weights.
    dt_ms: [i64; 2],
    alpha: [f64; 2],
}

impl Decay {
    pub fn new(half_life: Duration) -> Self {
        Decay {
            tau_ms: (half_life.as_secs_f64() * 1000.0 / std::f64::consts::LN_2).max(1.0),
            dt_ms: [i64::MIN; 2],
            alpha: [0.0; 2],
        }
    }

    /// Time constant (half-life / ln 2), ms.
    pub fn tau_ms(&self) -> f64 {
        self.tau_ms
    }

    /// Weight of a reading `dt_ms` after the previous one. Repeated or
    /// out-of-order timestamps count as 1 ms.
    #[inline(always)]
    pub fn alpha(&mut self, dt_ms: i64) -> f64 {
        if dt_ms == self.dt_ms[0] {
            return self.alpha[0];
        }
        self.other_step(dt_ms)
    }

    /// The step before the last one (they swap), or a new one (computed).
    #[inline(never)]
    fn other_step(&mut self, dt_ms: i64) -> f64 {
        let a = if dt_ms == self.dt_ms[1] {
            self.alpha[1]
        } else {
            1.0 - (-(dt_ms.max(1) as f64) / self.tau_ms).exp()
        };
        self.dt_ms = [dt_ms, self.dt_ms[0]];
        self.alpha = [a, self.alpha[0]];
        a
    }
}

/// Exponentially weighted mean and variance. The weights are normalised, so
/// the first estimates are plain averages instead of being pulled to zero.
#[derive(Debug, Clone, Copy)]
pub struct EwStats {
    pub mean: f64,
    pub var: f64,
    weight: f64,
    /// `alpha` for which `weight` stopped moving (NaN: none), and the step then.
    settled_alpha: f64,
    settled_step: f64,
}

impl Default for EwStats {
    fn default() -> Self {
        EwStats {
            mean: 0.0,
            var: 0.0,
            weight: 0.0,
            settled_alpha: f64::NAN,
            settled_step: 0.0,
        }
    }
}

impl EwStats {
    /// The normalised weight of a new value: `alpha / weight`, the weight
    /// having taken the value. The total weight creeps towards 1 and, in
    /// floating point, stops moving within a few dozen times 1/alpha values; from
    /// then on, while `alpha` stays, the step is the same: kept, not divided again.
    #[inline(always)]
    fn step(&mut self, alpha: f64) -> f64 {
        if alpha == self.settled_alpha {
            return self.settled_step;
        }
        self.moving_step(alpha)
    }

    #[inline]
    fn moving_step(&mut self, alpha: f64) -> f64 {
        let w = self.weight + alpha * (1.0 - self.weight);
        let a = if w > 0.0 { alpha / w } else { 1.0 };
        if w == self.weight {
            self.settled_alpha = alpha;
            self.settled_step = a;
        } else if !self.settled_alpha.is_nan() {
            self.settled_alpha = f64::NAN; // settled for another alpha: no longer
        }
        self.weight = w;
        a
    }

    #[inline]
    pub fn push(&mut self, x: f64, alpha: f64) {
        let a = self.step(alpha);
        let d = x - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
    }

    /// Like `push`, with the squared deviation scaled by `var_scale` (see
    /// [`TYPICAL`]). For slow baselines, whose weight moves for months: the
    /// check for a settled weight would only cost.
    #[inline]
    pub fn push_scaled(&mut self, x: f64, alpha: f64, var_scale: f64) {
        let a = self.moving_step(alpha);
        let d = x - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d * var_scale);
    }

    /// Moves the mean only; the spread stays as it was (for statistics whose
    /// spread nobody reads, it saves the work).
    #[inline]
    pub fn push_mean(&mut self, x: f64, alpha: f64) {
        let a = self.step(alpha);
        self.mean += a * (x - self.mean);
    }

    pub fn std(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }

    pub fn is_empty(&self) -> bool {
        self.weight == 0.0
    }

    pub fn reset(&mut self) {
        *self = EwStats::default();
    }
}

/// A slow baseline of one statistic. It learns only from readings close to it,
/// and its spread only from readings well inside it (a slowly growing deviation
/// would otherwise widen the spread as fast as it grows, and never stand out),
/// so a developing fault is not absorbed. A level that stays away and has
/// settled (moved less than a tolerance over `relearn_after`) becomes the new
/// baseline, after a repair for instance; one still drifting never does, so a
/// long degradation stays one episode.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    pub stats: EwStats,
    decay: Decay,
    relearn_ms: i64,
    /// Since when readings are away, and the level then.
    away: Option<(i64, f64)>,
}

/// How close a reading is to a baseline: what it may learn from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Near {
    /// Well inside the usual spread: level and spread learn.
    Typical,
    /// Unusual but below the episode's release level: the level learns.
    Close,
    /// Beyond it: nothing is learnt.
    Away,
}

/// Up to which deviation (in usual spreads) the spread itself is learnt, per
/// dimension 1..4: about 0.25 % of normal readings lie beyond. Cutting the tails
/// shrinks a variance estimate, and the shrinkage compounds, so each learnt
/// squared deviation is divided by E[d² | d ≤ radius] / E[d²] (second number).
pub const TYPICAL: [(f64, f64); 4] = [(3.0, 0.9733), (3.5, 0.9866), (3.8, 0.9893), (4.1, 0.9921)];

/// The learning radius and variance correction for `dim` dimensions.
pub fn typical(dim: usize) -> (f64, f64) {
    let (r, k) = TYPICAL[dim.clamp(1, 4) - 1];
    (r, 1.0 / k)
}

impl Near {
    /// From a deviation in usual spreads and the detector's threshold ratio.
    #[inline]
    pub fn of(z: f64, ratio: f64) -> Near {
        if ratio >= RELEASE_RATIO {
            Near::Away
        } else if z.abs() <= TYPICAL[0].0 {
            Near::Typical
        } else {
            Near::Close
        }
    }
}

impl Baseline {
    pub fn new(half_life: Duration, relearn_after: Duration) -> Self {
        Baseline {
            stats: EwStats::default(),
            decay: Decay::new(half_life),
            relearn_ms: relearn_after.as_millis().min(i64::MAX as u128) as i64,
            away: None,
        }
    }

    /// Learns `x` when `near` (its spread too when also `typical`, or while
    /// empty). Away, checks every `relearn_after` whether `x` settled within
    /// `tolerance`; returns true when it became the new baseline.
    #[inline(always)]
    pub fn update(&mut self, ts_ms: i64, dt_ms: i64, x: f64, near: Near, tolerance: f64) -> bool {
        if near != Near::Away || self.stats.is_empty() {
            self.away = None;
            let a = self.decay.alpha(dt_ms);
            if near == Near::Typical || self.stats.is_empty() {
                self.stats.push_scaled(x, a, typical(1).1);
            } else {
                self.stats.push_mean(x, a);
            }
            return false;
        }
        let (since, level) = *self.away.get_or_insert((ts_ms, x));
        if ts_ms.saturating_sub(since) >= self.relearn_ms {
            if (x - level).abs() <= tolerance {
                // A new level, the same usual spread.
                self.stats.mean = x;
                self.away = None;
                return true;
            }
            self.away = Some((ts_ms, x)); // still moving: look again later
        }
        false
    }
}

/// Limits each reading to within a few usual innovations of a running level
/// before an EWMA takes it (a Huber-style filter): one spike must not look like
/// a drift or a slope, while a real step still gets through because the usual
/// innovation grows while readings keep hitting the limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Winsor {
    /// Mean absolute innovation.
    scale: EwStats,
}

/// The limit, in mean absolute innovations (about 4 σ for normal noise).
const WINSOR_LIMIT: f64 = 5.0;

impl Winsor {
    #[inline]
    pub fn clip(&mut self, x: f64, level: f64, alpha: f64, floor: f64) -> f64 {
        let mut d = x - level;
        if !self.scale.is_empty() {
            let lim = WINSOR_LIMIT * self.scale.mean.max(floor);
            d = clamp_ordered(d, -lim, lim);
        }
        self.scale.push_mean(d.abs(), alpha);
        level + d
    }
}

/// The finest step seen between consecutive values: a sensor's resolution.
/// Scales are floored at it, so a quantised, quiet signal is not called
/// anomalous for moving by one step.
#[derive(Debug, Clone, Copy)]
pub struct Resolution {
    pub step: f64,
}

impl Default for Resolution {
    fn default() -> Self {
        Resolution { step: f64::INFINITY }
    }
}

impl Resolution {
    #[inline]
    pub fn push(&mut self, delta: f64) {
        // One branch on the (rarely true) whole condition: whether the value
        // repeated (d == 0) is a coin toss on a quantised signal.
        let d = delta.abs();
        if (d < self.step) & (d > 0.0) {
            self.step = d;
        }
    }

    /// The resolution, or 0 before two different values were seen.
    #[inline]
    pub fn get(&self) -> f64 {
        if self.step.is_finite() { self.step } else { 0.0 }
    }
}

/// Warm-up by time and by count: no score until a series has `min_samples`
/// readings spanning `min_time`.
#[derive(Debug, Clone, Copy)]
pub struct WarmUp {
    first_ts: Option<i64>,
    count: u64,
    min_samples: u64,
    min_ms: i64,
    done: bool,
}

impl WarmUp {
    pub fn new(min_samples: u64, min_time: Duration) -> Self {
        WarmUp {
            first_ts: None,
            count: 0,
            min_samples,
            min_ms: min_time.as_millis().min(i64::MAX as u128) as i64,
            done: false,
        }
    }

    /// Counts a reading; true once warmed up.
    #[inline]
    pub fn tick(&mut self, ts_ms: i64) -> bool {
        if self.done {
            return true;
        }
        self.count += 1;
        let first = *self.first_ts.get_or_insert(ts_ms);
        self.done = self.count > self.min_samples && ts_ms.saturating_sub(first) >= self.min_ms;
        self.done
    }

    pub fn restart(&mut self) {
        self.first_ts = None;
        self.count = 0;
        self.done = false;
    }
}

/// A univariate streaming detector on one series of `(timestamp, value)`.
/// Knows nothing about machines or channels: `larmor detect --input` runs the
/// same kernels on any exported CSV.
pub trait Kernel: Send {
    type Config: Clone + Send;
    fn new(config: &Self::Config) -> Self;
    /// Scores one reading against what came before (0 while warming up), then learns from it.
    fn update(&mut self, ts_ms: i64, value: f64) -> f64;
    /// Why the last score is high, in a few words (`unit` is the value's unit, maybe empty).
    fn explain(&self, value: f64, unit: &str) -> String;
    /// After an archive warm-up: forget what depends on the sampling rate (the
    /// archive is read at a coarser resolution than live data), keep the baselines.
    fn end_warm_up(&mut self) {}
}

/// Which catalogue channels a detector watches.
pub fn channel_mask(section: &'static str, names: &[String]) -> Result<Vec<bool>, ConfigError> {
    let mut mask = vec![false; CATALOG.len()];
    for n in names {
        let id = ChannelId::from_name(n).ok_or_else(|| ConfigError::UnknownChannel {
            section,
            name: n.clone(),
        })?;
        mask[id.0 as usize] = true;
    }
    Ok(mask)
}

/// Catalogue names, for default channel lists.
pub fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

struct Slot<K> {
    kernel: K,
    episode: Episode,
}

/// Runs one kernel per machine and watched channel and turns its scores into
/// anomalies, one per episode.
pub struct SeriesDetector<K: Kernel> {
    name: &'static str,
    /// `None`: the channel's own kind (machine health or environment).
    kind: Option<AnomalyKind>,
    config: K::Config,
    debounce: Debounce,
    watched: Vec<bool>,
    machines: MachineMap<Vec<Option<Slot<K>>>>,
}

impl<K: Kernel> SeriesDetector<K> {
    pub fn new(
        name: &'static str,
        kind: Option<AnomalyKind>,
        config: K::Config,
        debounce: Debounce,
        watched: Vec<bool>,
    ) -> Self {
        SeriesDetector {
            name,
            kind,
            config,
            debounce,
            watched,
            machines: MachineMap::default(),
        }
    }
}

impl<K: Kernel> Detector for SeriesDetector<K> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn observe(&mut self, frame: &Frame, out: &mut Vec<Anomaly>) {
        let slots = match self.machines.get_mut(&frame.machine_id) {
            Some(s) => s,
            None => self
                .machines
                .entry(frame.machine_id.clone())
                .or_insert_with(|| (0..CATALOG.len()).map(|_| None).collect()),
        };
        for s in &frame.samples {
            for &(c, v) in &s.values {
                if !self.watched[c.0 as usize] {
                    continue;
                }
                let slot = slots[c.0 as usize].get_or_insert_with(|| Slot {
                    kernel: K::new(&self.config),
                    episode: Episode::default(),
                });
                let score = slot.kernel.update(s.ts_ms, v);
                if slot.episode.update(score, self.debounce) {
                    let spec = c.spec();
                    out.push(Anomaly {
                        machine_id: frame.machine_id.clone(),
                        stream: frame.stream,
                        channels: vec![spec.name],
                        ts_ms: s.ts_ms,
                        value: v,
                        score,
                        detector: self.name,
                        kind: self.kind.unwrap_or_else(|| kind_of(c)),
                        explanation: format!("{}: {}", spec.name, slot.kernel.explain(v, spec.unit)),
                    });
                }
            }
        }
    }

    fn end_warm_up(&mut self) {
        for slots in self.machines.values_mut() {
            for s in slots.iter_mut().flatten() {
                s.kernel.end_warm_up();
            }
        }
    }
}

/// Formats a value with the digits it deserves.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(0.01..1e6).contains(&a) {
        format!("{v:.3e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// `value unit`, without a trailing space for unitless values.
pub fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() || unit == "1" {
        fmt_value(v)
    } else {
        format!("{} {unit}", fmt_value(v))
    }
}

/// `90s` → "1.5 min", `7 days` → "7 d": for explanations.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    let (v, unit) = if s >= 86_400.0 {
        (s / 86_400.0, "d")
    } else if s >= 3600.0 {
        (s / 3600.0, "h")
    } else if s >= 60.0 {
        (s / 60.0, "min")
    } else {
        (s, "s")
    };
    if (v - v.round()).abs() < 0.05 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_half_at_the_threshold_and_stays_in_range() {
        assert_eq!(score(1.0), 0.5);
        assert_eq!(score(0.0), 0.0);
        assert_eq!(score(-3.0), 0.0);
        assert_eq!(score(f64::NAN), 0.0);
        assert_eq!(score(f64::INFINITY), 1.0);
        assert!(score(3.0) == 0.75 && score(1e9) < 1.0);
    }

    #[test]
    fn episodes_debounce_and_hold() {
        let d = Debounce {
            confirm: 2,
            clear_after: 3,
        };
        let mut e = Episode::default();
        let opened: Vec<bool> = [0.6, 0.1, 0.6, 0.7, 0.9, 0.3, 0.3, 0.6, 0.3, 0.3, 0.3, 0.6, 0.6]
            .iter()
            .map(|&s| e.update(s, d))
            .collect();
        // a lone high reading does not open; two do; a dip shorter than
        // clear_after does not close; three low readings do, then two high reopen
        let at: Vec<usize> = opened.iter().enumerate().filter(|(_, o)| **o).map(|(i, _)| i).collect();
        assert_eq!(at, vec![3, 12]);
    }

    #[test]
    fn ew_stats_start_as_plain_averages() {
        let mut s = EwStats::default();
        for x in [1.0, 2.0, 3.0] {
            s.push(x, 1e-6);
        }
        assert!((s.mean - 2.0).abs() < 1e-5, "{}", s.mean);
        assert!((s.var - 2.0 / 3.0).abs() < 1e-5, "{}", s.var);
    }

    #[test]
    fn the_shortcuts_of_decay_and_ew_stats_change_no_bit() {
        // Decay: the weights it remembers are those it would compute.
        let mut d = Decay::new(Duration::from_secs(60));
        let tau = d.tau_ms();
        for (i, &dt) in [100, 100, 200, 100, 200, 200, 50, 100, 0, -5, 100]
            .iter()
            .cycle()
            .take(2000)
            .enumerate()
        {
            let want = 1.0 - (-(dt.max(1) as f64) / tau).exp();
            assert_eq!(d.alpha(dt).to_bits(), want.to_bits(), "step {dt} at {i}");
        }
        // EwStats: once the weight stops moving the step is kept, not recomputed;
        // a change of alpha (a sampling gap) moves the weight again.
        let (mut s, mut m) = (EwStats::default(), EwStats::default());
        let (mut mean, mut var, mut weight) = (0.0_f64, 0.0_f64, 0.0_f64);
        for i in 0..100_000u64 {
            let alpha = if i % 20_000 < 19_990 { 0.01 } else { 0.02 };
            let x = ((i * 7919) % 101) as f64 / 7.0;
            s.push(x, alpha);
            m.push_mean(x, alpha);
            weight += alpha * (1.0 - weight);
            let a = if weight > 0.0 { alpha / weight } else { 1.0 };
            let d = x - mean;
            mean += a * d;
            var = (1.0 - a) * (var + a * d * d);
            assert!(
                s.mean.to_bits() == mean.to_bits() && s.var.to_bits() == var.to_bits(),
                "push {i}"
            );
            assert_eq!(m.mean.to_bits(), mean.to_bits(), "push_mean {i}");
        }
        assert!(!s.settled_alpha.is_nan(), "the weight settled");
    }

    #[test]
    fn baseline_ignores_far_readings_then_relearns_once_settled() {
        let mut b = Baseline::new(Duration::from_secs(3600), Duration::from_secs(60));
        b.update(0, 1000, 10.0, Near::Typical, 1.0);
        assert!(!b.update(1000, 1000, 50.0, Near::Away, 1.0));
        assert_eq!(b.stats.mean, 10.0);
        assert!(
            !b.update(61_000, 1000, 60.0, Near::Away, 1.0),
            "still moving after a minute"
        );
        assert!(b.update(121_000, 1000, 60.5, Near::Away, 1.0), "settled: relearnt");
        assert_eq!(b.stats.mean, 60.5);
    }
}
