//! Labelled series for the evaluation, generated from a seed: backgrounds of
//! the kinds real exports have (server metrics, traffic, temperatures, counts:
//! noise that is Gaussian, heavy-tailed or autocorrelated; daily and weekly
//! patterns or none; slow wandering; quantised readings; 1-minute to 1-hour
//! sampling) with anomalies of one category put on top. Each anomaly is labelled
//! at the reading where it begins to show; sizes are drawn relative to the
//! background's noise, from subtle to obvious.

use std::f64::consts::TAU;

/// What a category puts into its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Spike,
    Dip,
    LevelShift,
    TrendChange,
    VarianceChange,
    SeasonalBreak,
    FlatlineFault,
    IntegerCounts,
    /// No anomaly: only false alarms can be counted.
    FlatlineNormal,
    NoAnomaly,
    /// Channels of the MRI simulator around a failure or a sensor fault.
    Simulator,
}

impl Category {
    /// Whether series of this category have no anomaly at all.
    pub fn is_quiet(self) -> bool {
        matches!(self, Category::FlatlineNormal | Category::NoAnomaly)
    }

    pub const GENERATED: [Category; 10] = [
        Category::Spike,
        Category::Dip,
        Category::LevelShift,
        Category::TrendChange,
        Category::VarianceChange,
        Category::SeasonalBreak,
        Category::FlatlineFault,
        Category::IntegerCounts,
        Category::FlatlineNormal,
        Category::NoAnomaly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Spike => "spikes",
            Category::Dip => "dips",
            Category::LevelShift => "level shifts",
            Category::TrendChange => "trend changes",
            Category::VarianceChange => "variance changes",
            Category::SeasonalBreak => "seasonal breaks",
            Category::FlatlineFault => "flatlines (faults)",
            Category::IntegerCounts => "integer counts",
            Category::FlatlineNormal => "flatlines (normal)",
            Category::NoAnomaly => "noise, no anomaly",
            Category::Simulator => "MRI simulator",
        }
    }
}

/// One labelled series.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub category: Category,
    pub ts: Vec<i64>,
    pub values: Vec<f64>,
    /// Indices where anomalies begin.
    pub labels: Vec<usize>,
}

/// splitmix64: a seeded stream.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Log-uniform in [lo, hi].
    pub fn log_range(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.uniform()).exp()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    pub fn sign(&mut self) -> f64 {
        if self.chance(0.5) { 1.0 } else { -1.0 }
    }

    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (TAU * v).cos()
    }

    /// Student's t with `nu` degrees of freedom, scaled to unit variance.
    pub fn student(&mut self, nu: f64) -> f64 {
        let k = nu.round().max(3.0) as usize;
        let chi: f64 = (0..k).map(|_| self.normal().powi(2)).sum();
        self.normal() / (chi / k as f64).sqrt() * ((k as f64 - 2.0) / k as f64).sqrt()
    }

    pub fn poisson(&mut self, lambda: f64) -> f64 {
        if lambda > 40.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0);
        }
        let l = (-lambda).exp();
        let (mut k, mut p) = (0.0, 1.0);
        loop {
            p *= self.uniform();
            if p <= l {
                return k;
            }
            k += 1.0;
        }
    }
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The noise of a background.
#[derive(Debug, Clone, Copy)]
enum Noise {
    Gaussian,
    /// Heavy tails (Student's t).
    Heavy(f64),
    /// Autocorrelated (AR(1) with this coefficient), unit marginal variance.
    Ar(f64),
}

/// The daily shape of a background.
#[derive(Debug, Clone, Copy)]
enum Daily {
    None,
    Sine,
    /// Business hours: high from `open` to `close` (hours), smooth edges.
    Hours(f64, f64),
    /// Morning and evening peaks (traffic).
    TwoPeaks,
}

/// A background: everything but the anomalies, in components the categories change.
#[derive(Debug, Clone)]
struct Background {
    n: usize,
    interval: i64,
    start: i64,
    level: f64,
    sd: f64,
    noise: Noise,
    daily: Daily,
    /// Daily amplitude in noise σ.
    daily_amp: f64,
    /// Weekend factor on the daily pattern (1: no weekly pattern).
    weekend: f64,
    /// Random-walk step, in noise σ.
    walk: f64,
    /// Readings are rounded to this (0: not).
    quantum: f64,
    /// Clamp at 0 (a rate, a percentage).
    non_negative: bool,
}

impl Background {
    fn draw(rng: &mut Rng, seasonal: Option<bool>) -> Background {
        let interval = [MINUTE, 5 * MINUTE, 5 * MINUTE, 5 * MINUTE, 10 * MINUTE, HOUR][rng.below(6)];
        let n = match interval {
            HOUR => 1500 + rng.below(2500),
            _ => 2500 + rng.below(5500),
        };
        let level = [0.0, 1.0, 20.0, 45.0, 300.0, 5000.0][rng.below(6)] * rng.range(0.8, 1.25);
        let sd = (level.abs() * rng.log_range(0.01, 0.15)).max(rng.log_range(0.05, 2.0));
        let noise = match rng.below(4) {
            0 | 1 => Noise::Gaussian,
            2 => Noise::Heavy(rng.range(3.0, 6.0)),
            _ => Noise::Ar(rng.range(0.3, 0.9)),
        };
        let seasonal = seasonal.unwrap_or_else(|| rng.chance(0.5));
        let daily = if seasonal {
            match rng.below(3) {
                0 => Daily::Sine,
                1 => Daily::Hours(rng.range(6.0, 9.0), rng.range(16.0, 20.0)),
                _ => Daily::TwoPeaks,
            }
        } else {
            Daily::None
        };
        let quantum = match rng.below(4) {
            0 => sd * rng.log_range(0.1, 1.0),
            _ => 0.0,
        };
        Background {
            n,
            interval,
            start: 1_700_000_000_000 - 1_700_000_000_000 % DAY + rng.below(7) as i64 * DAY,
            level,
            sd,
            noise,
            daily,
            daily_amp: rng.log_range(3.0, 20.0),
            weekend: if seasonal && rng.chance(0.4) {
                rng.range(0.2, 0.6)
            } else {
                1.0
            },
            walk: if rng.chance(0.3) { rng.log_range(0.01, 0.1) } else { 0.0 },
            quantum,
            non_negative: level > 0.0 && rng.chance(0.5),
        }
    }

    fn ts(&self) -> Vec<i64> {
        (0..self.n).map(|i| self.start + i as i64 * self.interval).collect()
    }

    /// The daily pattern's value (in noise σ) at `t`, shifted by `shift_ms`.
    fn daily_at(&self, t: i64, shift_ms: i64) -> f64 {
        let t = t - shift_ms;
        let h = t.rem_euclid(DAY) as f64 / HOUR as f64;
        let shape = match self.daily {
            Daily::None => return 0.0,
            Daily::Sine => (TAU * (h - 9.0) / 24.0).sin(),
            Daily::Hours(open, close) => {
                let edge = |x: f64| 1.0 / (1.0 + (-2.0 * x).exp());
                2.0 * edge(h - open) * edge(close - h) - 1.0
            }
            Daily::TwoPeaks => {
                let bump = |c: f64| (-(h - c).powi(2) / 2.0).exp();
                2.0 * (bump(8.0) + bump(17.5)) - 1.0
            }
        };
        let day = t.div_euclid(DAY).rem_euclid(7);
        let weekend = if day >= 5 { self.weekend } else { 1.0 };
        0.5 * self.daily_amp * shape * weekend
    }

    /// Seasonal component (noise σ) at every reading.
    fn seasonal(&self, ts: &[i64]) -> Vec<f64> {
        ts.iter().map(|&t| self.daily_at(t, 0)).collect()
    }

    /// Noise (unit σ) and walk (noise σ) at every reading.
    fn noise(&self, rng: &mut Rng) -> (Vec<f64>, Vec<f64>) {
        let mut e = Vec::with_capacity(self.n);
        let mut ar = 0.0;
        for _ in 0..self.n {
            e.push(match self.noise {
                Noise::Gaussian => rng.normal(),
                Noise::Heavy(nu) => rng.student(nu),
                Noise::Ar(phi) => {
                    ar = phi * ar + (1.0 - phi * phi).sqrt() * rng.normal();
                    ar
                }
            });
        }
        let mut w = 0.0;
        let walk = (0..self.n)
            .map(|_| {
                w += self.walk * rng.normal();
                w
            })
            .collect();
        (e, walk)
    }

    /// Readings from components (all but `level` in noise σ).
    fn compose(&self, base: &[f64], noise: &[f64]) -> Vec<f64> {
        base.iter()
            .zip(noise)
            .map(|(b, e)| {
                let mut v = self.level + self.sd * (b + e);
                if self.quantum > 0.0 {
                    v = (v / self.quantum).round() * self.quantum;
                }
                if self.non_negative { v.max(0.0) } else { v }
            })
            .collect()
    }
}

/// `count` label positions in the scored part of a series of `n`, at least a window apart.
fn places(rng: &mut Rng, n: usize, count: usize) -> Vec<usize> {
    let window = n / 10 / count.max(1);
    let (lo, hi) = ((0.22 * n as f64) as usize, (0.92 * n as f64) as usize);
    for _ in 0..100 {
        let mut p: Vec<usize> = (0..count).map(|_| lo + rng.below(hi - lo)).collect();
        p.sort_unstable();
        if p.windows(2).all(|w| w[1] - w[0] > window + 2) {
            return p;
        }
    }
    let step = (hi - lo) / count.max(1);
    (0..count).map(|k| lo + k * step + step / 2).collect()
}

/// One series of `category` from `seed`.
pub fn generate(category: Category, seed: u64) -> Series {
    let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(category as u64 * 1_000_003));
    let name = format!("{}-{seed}", category.name().replace([' ', '(', ')', ','], ""));
    let seasonal = match category {
        Category::SeasonalBreak => Some(true),
        _ => None,
    };
    let mut bg = Background::draw(&mut rng, seasonal);
    if category == Category::SeasonalBreak {
        // A pattern worth breaking: clearly above the noise, several days seen.
        bg.daily_amp = rng.log_range(6.0, 20.0);
        bg.walk = 0.0;
        bg.weekend = 1.0;
        bg.n = bg.n.max((6 * DAY / bg.interval) as usize);
    }
    let ts = bg.ts();
    let mut season = bg.seasonal(&ts);
    let (mut noise, walk) = bg.noise(&mut rng);
    let mut base: Vec<f64> = season.iter().zip(&walk).map(|(s, w)| s + w).collect();
    let n = bg.n;
    let mut labels = Vec::new();
    let mut values: Option<Vec<f64>> = None;
    match category {
        Category::Spike | Category::Dip => {
            let count = 1 + rng.below(3);
            labels = places(&mut rng, n, count);
            for &at in &labels {
                let size = rng.log_range(6.0, 20.0);
                let len = if category == Category::Dip { 1 + rng.below(3) } else { 1 };
                let sign = if category == Category::Spike { 1.0 } else { -1.0 };
                for b in &mut base[at..(at + len).min(n)] {
                    *b += sign * size;
                }
            }
            if category == Category::Dip {
                bg.non_negative = false;
            }
        }
        Category::LevelShift => {
            let count = 1 + rng.below(2);
            labels = places(&mut rng, n, count);
            for &at in &labels {
                let size = rng.sign() * rng.log_range(3.0, 10.0);
                for b in &mut base[at..] {
                    *b += size;
                }
            }
        }
        Category::TrendChange => {
            labels = places(&mut rng, n, 1);
            let at = labels[0];
            // Reaches 4 to 12 σ by the end of the window.
            let reach = rng.log_range(4.0, 12.0) * rng.sign();
            let slope = reach / (n as f64 / 20.0);
            for (k, b) in base[at..].iter_mut().enumerate() {
                *b += slope * k as f64;
            }
        }
        Category::VarianceChange => {
            let count = 1 + rng.below(2);
            labels = places(&mut rng, n, count);
            // The spread grows (or, one time in four, shrinks); a second change restores it.
            let factor = if rng.chance(0.25) {
                1.0 / rng.range(3.0, 5.0)
            } else {
                rng.range(2.5, 5.0)
            };
            let end = labels.get(1).copied().unwrap_or(n);
            for e in &mut noise[labels[0]..end] {
                *e *= factor;
            }
        }
        Category::SeasonalBreak => {
            labels = places(&mut rng, n, 1);
            let at = labels[0];
            let day_start = ts[at] - ts[at].rem_euclid(DAY);
            if rng.chance(0.5) {
                // A skipped day: the pattern stays at its night value for a day.
                let night = season.iter().cloned().fold(f64::INFINITY, f64::min);
                for (i, &t) in ts.iter().enumerate() {
                    if t >= day_start && t < day_start + DAY {
                        base[i] += night - season[i];
                        season[i] = night;
                    }
                }
            } else {
                // The pattern runs hours late (or early) from that day on.
                let shift = rng.sign() * rng.range(3.0, 8.0) * HOUR as f64;
                for (i, &t) in ts.iter().enumerate() {
                    if t >= day_start {
                        let s = bg.daily_at(t, shift as i64);
                        base[i] += s - season[i];
                        season[i] = s;
                    }
                }
            }
            // Labelled where the readings first depart from the usual pattern.
            let first = (0..n).find(|&i| ts[i] >= day_start && (base[i] - walk[i] - bg.daily_at(ts[i], 0)).abs() > 2.0);
            if let Some(i) = first {
                labels[0] = i;
            }
        }
        Category::FlatlineFault => {
            labels = places(&mut rng, n, 1);
            let at = labels[0];
            let len = (n as f64 * rng.range(0.04, 0.12)) as usize;
            let mut v = bg.compose(&base, &noise);
            if bg.quantum == 0.0 {
                // A stuck sensor repeats a reading exactly; a real one reports a few decimals.
                let q = bg.sd * 0.1;
                for x in &mut v {
                    *x = (*x / q).round() * q;
                }
            }
            let stuck = if rng.chance(0.7) { v[at - 1] } else { 0.0 };
            for x in &mut v[at..(at + len).min(n)] {
                *x = stuck;
            }
            values = Some(v);
        }
        Category::IntegerCounts => {
            let rate = rng.log_range(0.5, 40.0);
            let amp = if rng.chance(0.6) { rng.range(0.3, 0.8) } else { 0.0 };
            let count = 1 + rng.below(2);
            labels = places(&mut rng, n, count);
            let mut lambda: Vec<f64> = ts
                .iter()
                .map(|&t| {
                    let h = t.rem_euclid(DAY) as f64 / HOUR as f64;
                    rate * (1.0 + amp * (TAU * (h - 9.0) / 24.0).sin())
                })
                .collect();
            let mut v = vec![0.0; n];
            for &at in &labels {
                match rng.below(3) {
                    // A burst.
                    0 => {
                        let len = 1 + rng.below(4);
                        let k = rng.range(4.0, 10.0);
                        let extra = k * rate.sqrt().max(1.0) + rate;
                        for l in &mut lambda[at..(at + len).min(n)] {
                            *l += extra;
                        }
                    }
                    // The counting stops (an outage).
                    1 => {
                        let len = (n as f64 * rng.range(0.02, 0.06)) as usize;
                        for l in &mut lambda[at..(at + len).min(n)] {
                            *l = -1.0;
                        }
                    }
                    // The rate changes for good.
                    _ => {
                        let f = if rng.chance(0.5) {
                            rng.range(2.5, 4.0)
                        } else {
                            1.0 / rng.range(2.5, 4.0)
                        };
                        let f = if rate * f < 1.0 && f < 1.0 { 3.0 } else { f };
                        for l in &mut lambda[at..] {
                            *l *= f;
                        }
                    }
                }
            }
            for (x, &l) in v.iter_mut().zip(&lambda) {
                *x = if l < 0.0 { 0.0 } else { rng.poisson(l) };
            }
            values = Some(v);
        }
        Category::FlatlineNormal => {
            let v: Vec<f64> = match rng.below(4) {
                // Entirely constant.
                0 => vec![bg.level; n],
                // Idle (exactly 0) at night, busy by day.
                1 => ts
                    .iter()
                    .zip(&noise)
                    .map(|(&t, e)| {
                        let h = t.rem_euclid(DAY) as f64 / HOUR as f64;
                        if (7.0..19.0).contains(&h) {
                            ((bg.level.max(10.0) + bg.sd * 3.0 * e) * 10.0).round().max(0.0) / 10.0
                        } else {
                            0.0
                        }
                    })
                    .collect(),
                // A setpoint schedule: night and day setpoints, held exactly.
                2 => ts
                    .iter()
                    .map(|&t| {
                        let h = t.rem_euclid(DAY) as f64 / HOUR as f64;
                        if (6.0..22.0).contains(&h) { 21.0 } else { 18.0 }
                    })
                    .collect(),
                // Rare events: mostly 0, sometimes 1.
                _ => {
                    let p = rng.log_range(0.002, 0.05);
                    (0..n).map(|_| if rng.chance(p) { 1.0 } else { 0.0 }).collect()
                }
            };
            values = Some(v);
        }
        Category::NoAnomaly | Category::Simulator => {}
    }
    if matches!(category, Category::LevelShift | Category::TrendChange) {
        // (a level driven below zero must not turn into a flat line at zero)
        bg.non_negative = false;
    }
    let values = values.unwrap_or_else(|| bg.compose(&base, &noise));
    Series {
        name,
        category,
        ts,
        values,
        labels,
    }
}
