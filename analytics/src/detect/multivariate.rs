//! Related channels judged together: the Mahalanobis distance of a small group
//! (the cold head's 2nd stage with the compressor pressures, gradient coil with
//! amplifier temperature, ...) from the machine's own mean and covariance.
//! Channels that move together as they always do stay close; one that breaks
//! the relation is far even when each value alone looks normal. The anomaly
//! names the channel least explained by the others, and what they predict for it.

// Small matrices: index loops read like the formulas they implement.
#![allow(clippy::needless_range_loop)]

use super::series::{
    Debounce, Decay, Episode, EwStats, RELEASE_RATIO, Resolution, WarmUp, div_exact, exact_reciprocal, fmt_duration,
    names, score, typical, with_unit,
};
use super::settings::{DetectorSettings, Section, positive};
use super::{Anomaly, ConfigError, Detector, MachineMap, kind_of};
use larmor_ingest::{CATALOG, ChannelId, Frame, Stream};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Largest group.
pub const MAX_DIM: usize = 4;

/// `[detect.multivariate]`: the shared keys ([`Section`]) and these. A group
/// runs when its first channel is among `channels` (by default every channel:
/// the groups decide).
pub type MultivariateConfig = Section<MultivariateSettings>;

/// The multivariate detector's own settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct MultivariateSettings {
    /// Groups of 2 to 4 related channels, each on one stream. The first channel
    /// is the one the others explain: anomalies name it first, with the value
    /// the others predict for it.
    pub groups: Vec<Vec<String>>,
    /// Each channel is smoothed (EWMA half-life) before the distance: the relation, not the noise.
    #[serde(with = "humantime_serde")]
    pub smoothing: Duration,
    /// Half-life of the learnt mean and covariance.
    #[serde(with = "humantime_serde")]
    pub baseline_half_life: Duration,
    /// Mahalanobis distance that opens an episode.
    pub threshold: f64,
    /// No score before a group has this much history.
    #[serde(with = "humantime_serde")]
    pub warm_up: Duration,
    /// A relation broken this long becomes the new normal.
    #[serde(with = "humantime_serde")]
    pub relearn_after: Duration,
}

impl Default for MultivariateSettings {
    fn default() -> Self {
        MultivariateSettings {
            groups: vec![
                // cold head against the compressor that drives it
                names(&["coldhead_stage2_k", "compressor_supply_mpa", "compressor_return_mpa"]),
                // cryostat balance: pressure against the heater holding it
                names(&["vessel_pressure_kpa", "vessel_heater_pct", "coldhead_stage2_k"]),
                // cooling water: outlet = inlet + heat / flow
                names(&["water_outlet_c", "water_inlet_c", "water_flow_lpm"]),
                // gradient coil against the amplifier, which follows the same scan load
                names(&["gradient_coil_c", "gradient_amp_c"]),
            ],
            smoothing: Duration::from_secs(15 * 60),
            baseline_half_life: Duration::from_secs(7 * 86_400),
            threshold: 8.0,
            warm_up: Duration::from_secs(86_400),
            relearn_after: Duration::from_secs(3 * 86_400),
        }
    }
}

impl MultivariateSettings {
    /// What a kernel for a group of `dim` channels needs.
    pub fn params(&self, dim: usize) -> MultivariateParams {
        MultivariateParams {
            dim,
            smoothing: self.smoothing,
            baseline_half_life: self.baseline_half_life,
            threshold: self.threshold,
            warm_up: self.warm_up,
            relearn_after: self.relearn_after,
        }
    }
}

/// What one kernel needs: the settings and its group's size.
#[derive(Debug, Clone, Copy)]
pub struct MultivariateParams {
    pub dim: usize,
    pub smoothing: Duration,
    pub baseline_half_life: Duration,
    pub threshold: f64,
    pub warm_up: Duration,
    pub relearn_after: Duration,
}

struct Group {
    stream: Stream,
    channels: Vec<ChannelId>,
}

impl DetectorSettings for MultivariateSettings {
    const SECTION: &'static str = "multivariate";
    type Detector = MultivariateDetector;
    const DEBOUNCE: Debounce = Debounce {
        confirm: 1,
        clear_after: 10,
    };

    /// Every channel: the groups say which are judged.
    fn default_channels() -> Vec<String> {
        CATALOG.iter().map(|c| c.name.to_string()).collect()
    }

    fn build(&self, debounce: Debounce, watched: Vec<bool>) -> Result<Self::Detector, ConfigError> {
        let bad = |m: String| ConfigError::invalid(Self::SECTION, m);
        positive(Self::SECTION, "threshold", self.threshold)?;
        let mut groups = Vec::new();
        for names in &self.groups {
            if !(2..=MAX_DIM).contains(&names.len()) {
                return Err(bad(format!("group {names:?} must have 2 to {MAX_DIM} channels")));
            }
            let channels = names
                .iter()
                .map(|n| {
                    ChannelId::from_name(n).ok_or_else(|| ConfigError::UnknownChannel {
                        section: Self::SECTION,
                        name: n.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let stream = channels[0].stream();
            if channels.iter().any(|c| c.stream() != stream) {
                return Err(bad(format!(
                    "group {names:?} mixes streams; every channel of a group must be on one stream"
                )));
            }
            if watched[channels[0].0 as usize] {
                groups.push(Group { stream, channels });
            }
        }
        Ok(MultivariateDetector {
            params: self.params(0),
            debounce,
            groups,
            machines: MachineMap::default(),
        })
    }
}

type Vector = [f64; MAX_DIM];
type Matrix = [[f64; MAX_DIM]; MAX_DIM];

/// Lower Cholesky factor of the leading `n`×`n` block; None if not positive definite.
/// (Inlined: with a constant `n` the loops unroll.)
#[inline(always)]
fn cholesky(a: &Matrix, n: usize) -> Option<Matrix> {
    let mut l = [[0.0; MAX_DIM]; MAX_DIM];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i][j];
            for k in 0..j {
                s -= l[i][k] * l[j][k];
            }
            if i == j {
                if s <= 0.0 || s.is_nan() {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    Some(l)
}

/// The middle one of three values.
#[inline(always)]
fn median3(a: f64, b: f64, c: f64) -> f64 {
    a.min(b).max(a.max(b).min(c))
}

/// Solves L y = b (forward substitution).
#[inline(always)]
fn forward(l: &Matrix, b: &Vector, n: usize) -> Vector {
    let mut y = [0.0; MAX_DIM];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i][k] * y[k];
        }
        y[i] = s / l[i][i];
    }
    y
}

/// Solves Lᵀ x = y (back substitution).
fn backward(l: &Matrix, y: &Vector, n: usize) -> Vector {
    let mut x = [0.0; MAX_DIM];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k][i] * x[k];
        }
        x[i] = s / l[i][i];
    }
    x
}

/// One group of one machine: smoothed inputs, their mean and covariance.
pub struct MahalanobisKernel {
    p: MultivariateParams,
    smooth: [EwStats; MAX_DIM],
    smooth_decay: Decay,
    base_decay: Decay,
    mean: Vector,
    cov: Matrix,
    weight: f64,
    res: [Resolution; MAX_DIM],
    last: Vector,
    before_last: Vector,
    /// Instants seen (up to 2: enough for the median of three).
    instants: u8,
    last_ts: Option<i64>,
    warm: WarmUp,
    /// Since when the group is away, and where it was then.
    away: Option<(i64, Vector)>,
    relearn_ms: i64,
    inv_threshold: Option<f64>,
    // for `explain`
    distance: f64,
    x: Vector,
    covreg: Matrix,
}

impl MahalanobisKernel {
    pub fn new(p: &MultivariateParams) -> Self {
        MahalanobisKernel {
            p: *p,
            smooth: [EwStats::default(); MAX_DIM],
            smooth_decay: Decay::new(p.smoothing),
            base_decay: Decay::new(p.baseline_half_life),
            mean: [0.0; MAX_DIM],
            cov: [[0.0; MAX_DIM]; MAX_DIM],
            weight: 0.0,
            res: [Resolution::default(); MAX_DIM],
            last: [f64::NAN; MAX_DIM],
            before_last: [f64::NAN; MAX_DIM],
            instants: 0,
            last_ts: None,
            warm: WarmUp::new(30, p.warm_up),
            away: None,
            relearn_ms: p.relearn_after.as_millis().min(i64::MAX as u128) as i64,
            inv_threshold: exact_reciprocal(p.threshold),
            distance: 0.0,
            x: [0.0; MAX_DIM],
            covreg: [[0.0; MAX_DIM]; MAX_DIM],
        }
    }

    /// Covariance plus a floor on the diagonal: half a resolution step, so a
    /// quantised, quiet channel does not make every step look far.
    fn regularised(&self) -> Matrix {
        self.regularised_n(self.p.dim)
    }

    /// `regularised` for `n` = the group's size (a constant where inlined).
    #[inline(always)]
    fn regularised_n(&self, n: usize) -> Matrix {
        let mut c = [[0.0; MAX_DIM]; MAX_DIM];
        for i in 0..n {
            c[i][..n].copy_from_slice(&self.cov[i][..n]);
        }
        for i in 0..n {
            let half_step = 0.5 * self.res[i].get();
            c[i][i] += half_step * half_step + 1e-12 * (1.0 + self.mean[i] * self.mean[i]);
        }
        c
    }

    /// Mahalanobis distance between two points under the learnt covariance.
    fn distance_between(&self, a: &Vector, b: &Vector) -> f64 {
        let n = self.p.dim;
        let Some(l) = cholesky(&self.regularised(), n) else {
            return f64::INFINITY;
        };
        let mut d = [0.0; MAX_DIM];
        for i in 0..n {
            d[i] = a[i] - b[i];
        }
        forward(&l, &d, n)[..n].iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    /// Moves the mean towards `x`, and the covariance too when `spread`.
    #[inline(always)]
    fn learn(&mut self, alpha: f64, x: &Vector, spread: bool, n: usize) {
        self.weight += alpha * (1.0 - self.weight);
        let a = if self.weight > 0.0 { alpha / self.weight } else { 1.0 };
        let mut d = [0.0; MAX_DIM];
        for i in 0..n {
            d[i] = x[i] - self.mean[i];
            self.mean[i] += a * d[i];
        }
        if !spread {
            return;
        }
        let k = typical(n).1; // undoes the shrinkage of learning only inside the radius
        for i in 0..n {
            for j in 0..=i {
                let c = (1.0 - a) * (self.cov[i][j] + a * d[i] * d[j] * k);
                self.cov[i][j] = c;
                self.cov[j][i] = c;
            }
        }
    }

    /// Scores one instant of the group (values in group order), then learns from it.
    pub fn update(&mut self, ts_ms: i64, values: &[f64]) -> f64 {
        // One copy of the code per group size, its loops unrolled.
        match self.p.dim {
            2 => self.update_n(ts_ms, values, 2),
            3 => self.update_n(ts_ms, values, 3),
            4 => self.update_n(ts_ms, values, 4),
            n => self.update_n(ts_ms, values, n),
        }
    }

    #[inline(always)]
    fn update_n(&mut self, ts_ms: i64, values: &[f64], n: usize) -> f64 {
        if values.len() != n || values.iter().any(|v| !v.is_finite()) {
            return 0.0;
        }
        let dt = ts_ms - self.last_ts.unwrap_or(ts_ms);
        self.last_ts = Some(ts_ms);
        let a = self.smooth_decay.alpha(dt);
        let mut x = [0.0; MAX_DIM];
        // Each channel is smoothed through a median of its last three readings,
        // so one reading far from both neighbours (a sensor's spike: the sensor
        // fault detector reports those) never reaches the relation; a real
        // change gets through one reading later.
        let median = self.instants >= 2;
        self.instants = self.instants.saturating_add(1).min(2);
        for i in 0..n {
            let v = values[i];
            let filtered = if median {
                median3(self.before_last[i], self.last[i], v)
            } else {
                v
            };
            self.res[i].push(v - self.last[i]);
            self.before_last[i] = self.last[i];
            self.last[i] = v;
            self.smooth[i].push_mean(filtered, a);
            x[i] = self.smooth[i].mean;
        }
        let warm = self.warm.tick(ts_ms);
        let mut out = 0.0;
        let mut close = true;
        let mut inside = true;
        if warm && self.weight > 0.0 {
            let c = self.regularised_n(n);
            if let Some(l) = cholesky(&c, n) {
                let mut d = [0.0; MAX_DIM];
                for i in 0..n {
                    d[i] = x[i] - self.mean[i];
                }
                let y = forward(&l, &d, n);
                self.distance = y[..n].iter().map(|v| v * v).sum::<f64>().sqrt();
                self.x = x;
                // (only the group's block is ever read)
                for i in 0..n {
                    self.covreg[i][..n].copy_from_slice(&c[i][..n]);
                }
                let ratio = div_exact(self.distance, self.p.threshold, self.inv_threshold);
                out = score(ratio);
                close = ratio < RELEASE_RATIO;
                // The covariance learns only from points well inside it, or a
                // slowly growing break would widen it as fast as it grows.
                inside = self.distance <= typical(n).0;
            }
        }
        let ab = self.base_decay.alpha(dt);
        if close || self.weight == 0.0 {
            self.away = None;
            self.learn(ab, &x, inside || self.weight == 0.0, n);
        } else {
            let (since, then) = *self.away.get_or_insert((ts_ms, x));
            if ts_ms.saturating_sub(since) >= self.relearn_ms {
                if self.distance_between(&x, &then) < 0.25 * self.p.threshold {
                    // Settled somewhere new: a new centre, the same usual spread.
                    self.mean = x;
                    self.away = None;
                } else {
                    self.away = Some((ts_ms, x)); // still moving
                }
            }
        }
        out
    }

    /// The group's first channel: its smoothed value, what the others predict
    /// for it (the conditional mean under the learnt Gaussian), and that
    /// residual in conditional standard deviations.
    pub fn residual(&self) -> (f64, f64, f64) {
        let n = self.p.dim;
        let Some(l) = cholesky(&self.covreg, n) else {
            return (self.x[0], self.mean[0], 0.0);
        };
        let mut d = [0.0; MAX_DIM];
        for i in 0..n {
            d[i] = self.x[i] - self.mean[i];
        }
        // With Λ = Σ⁻¹: x₀ − E[x₀ | others] = (Λd)₀ / Λ₀₀, of variance 1 / Λ₀₀.
        let r = backward(&l, &forward(&l, &d, n), n);
        let lam = backward(&l, &forward(&l, &[1.0, 0.0, 0.0, 0.0], n), n)[0];
        if lam <= 0.0 {
            return (self.x[0], self.mean[0], 0.0);
        }
        (self.x[0], self.x[0] - r[0] / lam, r[0] / lam.sqrt())
    }
}

struct GroupState {
    kernel: MahalanobisKernel,
    episode: Episode,
}

/// Mahalanobis distance per machine and group.
pub struct MultivariateDetector {
    params: MultivariateParams,
    debounce: Debounce,
    groups: Vec<Group>,
    machines: MachineMap<Vec<GroupState>>,
}

impl Detector for MultivariateDetector {
    fn name(&self) -> &'static str {
        "multivariate"
    }

    fn observe(&mut self, frame: &Frame, out: &mut Vec<Anomaly>) {
        if !self.groups.iter().any(|g| g.stream == frame.stream) {
            return;
        }
        let states = match self.machines.get_mut(&frame.machine_id) {
            Some(s) => s,
            None => {
                let p = self.params;
                let states = self
                    .groups
                    .iter()
                    .map(|g| GroupState {
                        kernel: MahalanobisKernel::new(&MultivariateParams {
                            dim: g.channels.len(),
                            ..p
                        }),
                        episode: Episode::default(),
                    })
                    .collect();
                self.machines.entry(frame.machine_id.clone()).or_insert(states)
            }
        };
        // The catalogue has at most 64 channels (ingest checks it).
        let mut by_channel = [f64::NAN; 64];
        let mut vals = [0.0; MAX_DIM];
        for s in &frame.samples {
            for &(c, v) in &s.values {
                by_channel[c.0 as usize] = v;
            }
            for (g, st) in self.groups.iter().zip(states.iter_mut()) {
                if g.stream != frame.stream {
                    continue;
                }
                let n = g.channels.len();
                for (i, c) in g.channels.iter().enumerate() {
                    vals[i] = by_channel[c.0 as usize];
                }
                let sc = st.kernel.update(s.ts_ms, &vals[..n]);
                if st.episode.update(sc, self.debounce) {
                    out.push(group_anomaly(frame, s.ts_ms, g, &st.kernel, &vals[..n], sc));
                }
            }
            for &(c, _) in &s.values {
                by_channel[c.0 as usize] = f64::NAN;
            }
        }
    }
}

fn group_anomaly(frame: &Frame, ts_ms: i64, g: &Group, k: &MahalanobisKernel, raw: &[f64], score: f64) -> Anomaly {
    let (x, expected, z) = k.residual();
    let c = g.channels[0];
    let spec = c.spec();
    let others: Vec<&'static str> = g.channels[1..].iter().map(|o| o.name()).collect();
    let channels = g.channels.iter().map(|c| c.name()).collect();
    Anomaly {
        machine_id: frame.machine_id.clone(),
        stream: frame.stream,
        channels,
        ts_ms,
        value: raw[0],
        score,
        detector: "multivariate",
        kind: kind_of(c),
        explanation: format!(
            "{} at {} where {} is expected from {} ({:.1} conditional σ); the group is {:.1} from its {} \
             baseline in Mahalanobis distance (limit {})",
            spec.name,
            with_unit(x, spec.unit),
            with_unit(expected, spec.unit),
            others.join(", "),
            z.abs(),
            k.distance,
            fmt_duration(k.p.baseline_half_life),
            k.p.threshold
        ),
    }
}

impl MultivariateDetector {
    /// Channels used by any group (for callers that pre-filter).
    pub fn channels(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self
            .groups
            .iter()
            .flat_map(|g| g.channels.iter().map(|c| c.name()))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::noise;
    use larmor_ingest::Sample;

    fn params(dim: usize) -> MultivariateParams {
        MultivariateSettings::default().params(dim)
    }

    #[test]
    fn cholesky_solves() {
        let a = [[4.0, 2.0, 0.0, 0.0], [2.0, 3.0, 0.0, 0.0], [0.0; 4], [0.0; 4]];
        let l = cholesky(&a, 2).unwrap();
        let x = backward(&l, &forward(&l, &[2.0, 1.0, 0.0, 0.0], 2), 2);
        assert!((4.0 * x[0] + 2.0 * x[1] - 2.0).abs() < 1e-12 && (2.0 * x[0] + 3.0 * x[1] - 1.0).abs() < 1e-12);
        assert!(cholesky(&[[1.0, 2.0, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0], [0.0; 4], [0.0; 4]], 2).is_none());
    }

    /// A coil following a load and an amplifier following the same load; from
    /// `break_at` the coil runs hotter for the same load (a cooling fault).
    fn pair(n: usize, break_at: usize) -> Vec<[f64; 2]> {
        let (e1, e2, l) = (noise(31, n, 0.12), noise(32, n, 0.12), noise(33, n, 1.0));
        let mut load = 0.0;
        (0..n)
            .map(|i| {
                load += 0.05 * ((0.5 + 0.4 * (i as f64 / 97.0).sin() + 0.1 * l[i]) - load);
                let extra = if i >= break_at {
                    3.0 * ((i - break_at) as f64 / 600.0).min(1.0)
                } else {
                    0.0
                };
                [25.0 + 15.0 * load + extra + e1[i], 30.0 + 8.0 * load + e2[i]]
            })
            .collect()
    }

    fn run(xs: &[[f64; 2]]) -> Vec<usize> {
        let mut k = MahalanobisKernel::new(&params(2));
        let mut e = Episode::default();
        let d = Debounce {
            confirm: 1,
            clear_after: 10,
        };
        let mut opened = vec![];
        for (i, x) in xs.iter().enumerate() {
            let s = k.update(1_764_000_000_000 + i as i64 * 60_000, x);
            assert!((0.0..=1.0).contains(&s));
            if e.update(s, d) {
                opened.push(i);
                let (coil, expected, z) = k.residual();
                assert!(
                    coil > expected && z > 3.0,
                    "the coil runs hotter than the amplifier predicts"
                );
            }
        }
        opened
    }

    #[test]
    fn a_broken_relation_is_one_episode() {
        // one reading a minute, 5 days; the relation breaks on day 4
        let at = run(&pair(5 * 1440, 4 * 1440));
        assert_eq!(at.len(), 1, "{at:?}");
        assert!(at[0] > 4 * 1440 && at[0] < 4 * 1440 + 600, "{}", at[0]);
    }

    #[test]
    fn quiet_when_the_relation_holds() {
        let at = run(&pair(20 * 1440, usize::MAX));
        assert!(at.is_empty(), "{at:?}");
    }

    #[test]
    fn detector_names_the_channel_and_the_partners() {
        let mut c = MultivariateConfig::default();
        c.settings.groups = vec![vec!["gradient_coil_c".into(), "gradient_amp_c".into()]];
        let mut d = c.detector().unwrap();
        let (coil, amp) = (
            ChannelId::from_name("gradient_coil_c").unwrap(),
            ChannelId::from_name("gradient_amp_c").unwrap(),
        );
        let xs = pair(5 * 1440, 4 * 1440);
        let mut out = vec![];
        for (i, x) in xs.iter().enumerate() {
            let ts = 1_764_000_000_000 + i as i64 * 60_000;
            let f = Frame {
                machine_id: "M1".into(),
                stream: Stream::Temperature,
                seq: i as u64,
                ts_ms: ts,
                samples: vec![Sample {
                    ts_ms: ts,
                    values: vec![(amp, x[1]), (coil, x[0])],
                }],
            };
            d.observe(&f, &mut out);
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].channels, vec!["gradient_coil_c", "gradient_amp_c"]);
        assert!(
            out[0].explanation.contains("expected from gradient_amp_c"),
            "{}",
            out[0].explanation
        );
        c.settings.groups = vec![vec!["gradient_coil_c".into(), "room_o2_pct".into()]];
        assert!(c.detector().is_err(), "a group mixing streams");
        // A group whose first channel is not watched does not run.
        c.settings.groups = vec![vec!["gradient_coil_c".into(), "gradient_amp_c".into()]];
        c.channels.retain(|n| n != "gradient_coil_c");
        assert!(c.detector().unwrap().channels().is_empty());
    }
}
