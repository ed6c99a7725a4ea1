//! Feature rows: one per machine and time t, from the hourly aggregates of the hours
//! before t, the anomalies before t and the service events before t. Nothing at or
//! after t is read, so a row is the same whether the archive ends at t or a year
//! later (the tests truncate the archive to check).
//!
//! Per channel: the last value; mean, std, slope (per hour), min and max over the
//! last 1 h, 6 h, 24 h and 7 d; the 24 h and 7 d means as z-scores against the
//! machine's own baseline (the 30 days that ended a week earlier: machines differ in
//! set points, a degradation is a change from the machine's normal); the share of
//! the last 24 h with data. Per channel group: the residual of the first channel
//! against the others (linear fit on the baseline), as a z-score. Per vibration
//! band: the log ratio of recent energy to the baseline. Usage: exams per day.
//! Anomaly counts per detector and kind. Hours since the last maintenance and failure.

use crate::HOUR_MS;
use crate::events::EventLog;
use crate::hourly::{AnomalyLog, HourAgg, HourlyArchive, MachineHours};
use crate::linalg::solve_ridge;
use crate::spec::{
    BASELINE_GAP_HOURS, BASELINE_HOURS, DOOR_CHANNEL, EXAMS_PER_OPEN_SHARE, FeatureSpec, LOOKBACK_HOURS, WINDOWS,
};
use rayon::prelude::*;
use std::collections::HashMap;

/// Which rows to compute.
#[derive(Debug, Clone, Copy)]
pub enum RowTimes {
    /// Every `every_hours` hours (aligned to the epoch, so machines line up), from each
    /// machine's `warm_up_hours`-th hour of data to its end; optionally only rows in [from, until).
    Stride {
        every_hours: usize,
        warm_up_hours: usize,
        from_ms: Option<i64>,
        until_ms: Option<i64>,
    },
    /// One row per machine as of this time (the hourly archive must have been scanned
    /// with `until_ms` = this time). Machines without data in the last 7 days are left out.
    AsOf(i64),
}

/// Feature options that training, evaluation and forecasting share.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct FeatureOptions {
    /// Hours between two training rows of a machine.
    pub stride_hours: usize,
    /// No rows before a machine has this much history.
    pub warm_up_hours: usize,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        FeatureOptions {
            stride_hours: 6,
            warm_up_hours: 24,
        }
    }
}

/// A row's machine (index into [`FeatureMatrix::machines`]) and time (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowKey {
    pub machine: u32,
    pub t_ms: i64,
}

/// Feature rows (row-major f32; NaN = not computable, e.g. no data in the window).
#[derive(Debug, Clone)]
pub struct FeatureMatrix {
    pub spec: FeatureSpec,
    pub machines: Vec<String>,
    pub rows: Vec<RowKey>,
    pub values: Vec<f32>,
}

impl FeatureMatrix {
    pub fn width(&self) -> usize {
        self.spec.width()
    }
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    pub fn row(&self, i: usize) -> &[f32] {
        let w = self.width();
        &self.values[i * w..(i + 1) * w]
    }
    pub fn machine_of(&self, i: usize) -> &str {
        &self.machines[self.rows[i].machine as usize]
    }
    /// A value by column name (tests, reports).
    pub fn get(&self, row: usize, column: &str) -> Option<f32> {
        self.spec.column(column).map(|c| self.row(row)[c])
    }
}

/// The service log as features see it: maintenance starts and failure times per machine.
#[derive(Debug, Clone, Default)]
pub struct ServiceLog {
    pub maintenance: HashMap<String, Vec<i64>>,
    pub failures: HashMap<String, Vec<i64>>,
}

impl ServiceLog {
    pub fn from_events(events: &EventLog) -> ServiceLog {
        ServiceLog {
            maintenance: events
                .maintenance
                .iter()
                .map(|(m, v)| (m.clone(), v.iter().map(|x| x.0).collect()))
                .collect(),
            failures: events
                .failures
                .iter()
                .map(|(m, v)| (m.clone(), v.iter().map(|f| f.time_ms).collect()))
                .collect(),
        }
    }
}

/// The feature schema for an archive: its channels, the multivariate detector's
/// groups, the anomalies table's detectors and kinds (if any) and the service log.
pub fn spec_for(hourly: &HourlyArchive, anomalies: Option<&AnomalyLog>, service_log: bool) -> FeatureSpec {
    let groups = larmor_analytics::detect::multivariate::MultivariateConfig::default()
        .settings
        .groups;
    let (mut detectors, mut kinds) = match anomalies {
        Some(a) => (default_detectors(), a.kinds.clone()),
        None => (vec![], vec![]),
    };
    if let Some(a) = anomalies {
        // Detectors the default set does not know (another configuration) still count.
        for d in &a.detectors {
            if !detectors.contains(d) {
                detectors.push(d.clone());
            }
        }
        for k in ["machine_health", "environment", "sensor_fault"] {
            if !kinds.iter().any(|x| x == k) {
                kinds.push(k.to_string());
            }
        }
    }
    detectors.sort();
    kinds.sort();
    FeatureSpec::new(hourly.channels.clone(), groups, detectors, kinds, service_log)
}

/// The detectors `larmor run` and `larmor detect` use by default: a schema that does
/// not depend on which of them happened to fire.
pub fn default_detectors() -> Vec<String> {
    larmor_analytics::detect::DetectorSet::from_config(&Default::default())
        .map(|s| s.names().into_iter().map(String::from).collect())
        .unwrap_or_default()
}

/// Computes the rows. `anomalies` and `service` must be given when the spec has
/// anomaly or service-log columns (else those columns are NaN).
pub fn compute(
    spec: &FeatureSpec,
    hourly: &HourlyArchive,
    anomalies: Option<&AnomalyLog>,
    service: Option<&ServiceLog>,
    times: RowTimes,
) -> FeatureMatrix {
    let ctx = Context::new(spec, hourly, anomalies);
    let per_machine: Vec<(Vec<RowKey>, Vec<f32>)> = hourly
        .machines
        .par_iter()
        .enumerate()
        .map(|(mi, m)| {
            let ends = row_ends(m, times);
            let mut keys = Vec::with_capacity(ends.len());
            let mut values = Vec::with_capacity(ends.len() * spec.width());
            let pre = Prefix::new(&ctx, m);
            for (end_slot, t_ms) in ends {
                keys.push(RowKey {
                    machine: mi as u32,
                    t_ms,
                });
                ctx.row(m, &pre, end_slot, t_ms, anomalies, service, &mut values);
            }
            (keys, values)
        })
        .collect();
    let mut rows = Vec::new();
    let mut values = Vec::new();
    for (k, v) in per_machine {
        rows.extend(k);
        values.extend(v);
    }
    FeatureMatrix {
        spec: spec.clone(),
        machines: hourly.machines.iter().map(|m| m.machine_id.clone()).collect(),
        rows,
        values,
    }
}

/// (end slot, row time): the row uses slots `< end slot`.
fn row_ends(m: &MachineHours, times: RowTimes) -> Vec<(usize, i64)> {
    match times {
        RowTimes::Stride {
            every_hours,
            warm_up_hours,
            from_ms,
            until_ms,
        } => {
            let every = every_hours.max(1) as i64;
            let first = m.first_hour + warm_up_hours as i64;
            let start = first.div_euclid(every) * every + if first.rem_euclid(every) == 0 { 0 } else { every };
            let mut out = Vec::new();
            let mut e = start;
            while e <= m.end_hour() {
                let t = e * HOUR_MS;
                if from_ms.is_none_or(|f| t >= f) && until_ms.is_none_or(|u| t < u) {
                    out.push(((e - m.first_hour) as usize, t));
                }
                e += every;
            }
            out
        }
        RowTimes::AsOf(t) => {
            // Slots whose hour started before t (the last one may be partial: the scan
            // stopped at t).
            let end = (t + HOUR_MS - 1).div_euclid(HOUR_MS);
            let slot = (end - m.first_hour).min(m.n_hours as i64);
            let recent = slot > 0 && {
                let from = (slot - 168).max(0) as usize;
                m.channels
                    .iter()
                    .flatten()
                    .any(|s| s[from..slot as usize].iter().any(|a| a.n > 0))
            };
            if recent && end >= m.end_hour() - 1 {
                vec![(slot as usize, t)]
            } else {
                vec![]
            }
        }
    }
}

/// What is shared by all machines: column offsets and channel lookups.
struct Context<'a> {
    spec: &'a FeatureSpec,
    /// Spec channel → hourly channel index.
    channel: Vec<Option<usize>>,
    /// Groups as hourly channel indices.
    groups: Vec<Vec<usize>>,
    /// Spec channel index of each band and of the door channel.
    bands: Vec<usize>,
    door: Option<usize>,
    /// Anomaly log detector/kind index → spec position.
    detector_pos: Vec<Option<usize>>,
    kind_pos: Vec<Option<usize>>,
}

impl<'a> Context<'a> {
    fn new(spec: &'a FeatureSpec, hourly: &HourlyArchive, anomalies: Option<&AnomalyLog>) -> Self {
        let channel: Vec<Option<usize>> = spec.channels.iter().map(|c| hourly.channel_index(c)).collect();
        let spec_pos = |c: &str| spec.channels.iter().position(|x| x == c);
        Context {
            spec,
            groups: spec
                .groups
                .iter()
                .map(|g| g.iter().filter_map(|c| spec_pos(c)).collect())
                .collect(),
            bands: spec.bands.iter().filter_map(|b| spec_pos(b)).collect(),
            door: spec_pos(DOOR_CHANNEL),
            detector_pos: anomalies
                .map(|a| {
                    a.detectors
                        .iter()
                        .map(|d| spec.detectors.iter().position(|x| x == d))
                        .collect()
                })
                .unwrap_or_default(),
            kind_pos: anomalies
                .map(|a| {
                    a.kinds
                        .iter()
                        .map(|k| spec.anomaly_kinds.iter().position(|x| x == k))
                        .collect()
                })
                .unwrap_or_default(),
            channel,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        m: &MachineHours,
        pre: &Prefix,
        end: usize,
        t_ms: i64,
        anomalies: Option<&AnomalyLog>,
        service: Option<&ServiceLog>,
        out: &mut Vec<f32>,
    ) {
        let start_len = out.len();
        // Per spec channel: window means of the 24 h and 7 d (for usage and bands).
        let mut mean24 = vec![f64::NAN; self.spec.channels.len()];
        let mut mean7d = vec![f64::NAN; self.spec.channels.len()];
        for (sc, hc) in self.channel.iter().enumerate() {
            let slots = hc.and_then(|h| m.channels[h].as_deref());
            let Some(slots) = slots else {
                out.extend(std::iter::repeat_n(f32::NAN, 1 + WINDOWS.len() * 5 + 3));
                continue;
            };
            let w = window_stats(slots, end);
            mean24[sc] = w.stats[2].mean;
            mean7d[sc] = w.stats[3].mean;
            out.push(w.last as f32);
            for s in &w.stats {
                out.extend([s.mean, s.std, s.slope, s.min, s.max].map(|x| x as f32));
            }
            let base = pre.baseline(sc, end);
            let hourly24 = pre.hour_mean(sc, end.saturating_sub(24), end);
            let hourly7d = pre.hour_mean(sc, end.saturating_sub(168), end);
            out.push(z(hourly24, base) as f32);
            out.push(z(hourly7d, base) as f32);
            out.push((w.hours_with_data_24h as f64 / 24.0) as f32);
        }
        for (g, _) in self.groups.iter().enumerate() {
            let r = pre.residual_z(g, end);
            out.extend(r.map(|x| x as f32));
        }
        for &b in &self.bands {
            let base = pre.baseline(b, end);
            let ratio = |recent: f64| {
                let eps = 1e-3;
                ((recent.max(0.0) + eps) / (base.0.max(0.0) + eps)).ln()
            };
            out.push(ratio(pre.hour_mean(b, end.saturating_sub(24), end)) as f32);
            out.push(ratio(pre.hour_mean(b, end.saturating_sub(168), end)) as f32);
        }
        if let Some(d) = self.door {
            out.push((mean24[d] * EXAMS_PER_OPEN_SHARE) as f32);
            out.push((mean7d[d] * EXAMS_PER_OPEN_SHARE) as f32);
        }
        if !self.spec.detectors.is_empty() || !self.spec.anomaly_kinds.is_empty() {
            let mut det = vec![[0f32; 2]; self.spec.detectors.len()];
            let mut kind = vec![[0f32; 2]; self.spec.anomaly_kinds.len()];
            let log = anomalies.and_then(|a| a.by_machine.get(&m.machine_id));
            if anomalies.is_none() {
                det.iter_mut().for_each(|x| *x = [f32::NAN; 2]);
                kind.iter_mut().for_each(|x| *x = [f32::NAN; 2]);
            }
            if let Some(log) = log {
                let from = t_ms - 168 * HOUR_MS;
                let lo = log.partition_point(|a| a.0 < from);
                let hi = log.partition_point(|a| a.0 < t_ms);
                for &(ts, d, k) in &log[lo..hi] {
                    let age = t_ms - ts;
                    if let Some(Some(p)) = self.detector_pos.get(d as usize) {
                        det[*p][1] += 1.0;
                        if age <= 24 * HOUR_MS {
                            det[*p][0] += 1.0;
                        }
                    }
                    if let Some(Some(p)) = self.kind_pos.get(k as usize) {
                        if age <= HOUR_MS {
                            kind[*p][0] += 1.0;
                        }
                        if age <= 24 * HOUR_MS {
                            kind[*p][1] += 1.0;
                        }
                    }
                }
            }
            out.extend(det.into_iter().flatten());
            out.extend(kind.into_iter().flatten());
        }
        if self.spec.service_log {
            let since = |times: Option<&Vec<i64>>| -> f32 {
                let Some(v) = times else { return f32::NAN };
                let i = v.partition_point(|&x| x < t_ms);
                if i == 0 {
                    f32::NAN
                } else {
                    ((t_ms - v[i - 1]) as f64 / HOUR_MS as f64) as f32
                }
            };
            let s = service;
            out.push(since(s.and_then(|s| s.maintenance.get(&m.machine_id))));
            out.push(since(s.and_then(|s| s.failures.get(&m.machine_id))));
        }
        out.push(end.min(LOOKBACK_HOURS) as f32);
        debug_assert_eq!(out.len() - start_len, self.spec.width());
    }
}

/// (mean, std) of a baseline, NaN when it has under a day of data.
type Baseline = (f64, f64);

fn z(recent: f64, base: Baseline) -> f64 {
    let floor = 1e-6 + 1e-3 * base.0.abs();
    ((recent - base.0) / base.1.max(floor)).clamp(-1e3, 1e3)
}

#[derive(Clone, Copy)]
struct Stats {
    mean: f64,
    std: f64,
    slope: f64,
    min: f64,
    max: f64,
}

struct Windows {
    last: f64,
    stats: [Stats; 4],
    hours_with_data_24h: usize,
}

/// Walks back from `end` over at most 168 slots, with time measured from `end` (in
/// hours, negative) so the sums stay small and exact enough.
fn window_stats(slots: &[HourAgg], end: usize) -> Windows {
    let nan = Stats {
        mean: f64::NAN,
        std: f64::NAN,
        slope: f64::NAN,
        min: f64::NAN,
        max: f64::NAN,
    };
    let mut out = Windows {
        last: f64::NAN,
        stats: [nan; 4],
        hours_with_data_24h: 0,
    };
    let (mut n, mut s, mut ss, mut st, mut stt, mut stv) = (0.0f64, 0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let end = end.min(slots.len());
    let mut next_window = 0;
    for back in 1..=168usize {
        if back <= end {
            let a = &slots[end - back];
            if a.n > 0 {
                if out.last.is_nan() {
                    out.last = a.last as f64;
                }
                if back <= 24 {
                    out.hours_with_data_24h += 1;
                }
                let off = -(back as f64);
                let k = a.n as f64;
                n += k;
                s += a.sum;
                ss += a.sum_sq;
                let (at, att) = (a.sum_t as f64, a.sum_tt as f64);
                st += at + off * k;
                stt += att + 2.0 * off * at + off * off * k;
                stv += a.sum_tv + off * a.sum;
                lo = lo.min(a.min as f64);
                hi = hi.max(a.max as f64);
            }
        }
        if back == WINDOWS[next_window].0 {
            if n > 0.0 {
                let mean = s / n;
                let var = (ss / n - mean * mean).max(0.0);
                let var_t = stt / n - (st / n).powi(2);
                let slope = if n >= 3.0 && var_t > 1e-9 {
                    (stv / n - (st / n) * mean) / var_t
                } else {
                    f64::NAN
                };
                out.stats[next_window] = Stats {
                    mean,
                    std: if n >= 2.0 { var.sqrt() } else { f64::NAN },
                    slope,
                    min: lo,
                    max: hi,
                };
            }
            next_window += 1;
            if next_window == WINDOWS.len() {
                break;
            }
        }
    }
    out
}

/// Prefix sums over a machine's hourly means: baselines, drift and group residuals in
/// constant time per row.
struct Prefix {
    /// Per spec channel: prefix count of hours with data, Σ mean, Σ mean².
    count: Vec<Vec<u32>>,
    sum: Vec<Vec<f64>>,
    sum_sq: Vec<Vec<f64>>,
    /// Per group: prefix sums of the products of z = (1, x1.., y) over hours where all
    /// of the group's channels have data; `dim` = group size + 1.
    moments: Vec<(usize, Vec<Vec<f64>>)>,
}

impl Prefix {
    fn new(ctx: &Context, m: &MachineHours) -> Prefix {
        let n = m.n_hours;
        let means = |sc: usize| -> Option<Vec<f64>> {
            let h = ctx.channel[sc]?;
            m.channels[h].as_ref().map(|s| s.iter().map(HourAgg::mean).collect())
        };
        let channel_means: Vec<Option<Vec<f64>>> = (0..ctx.channel.len()).map(means).collect();
        let mut count = Vec::with_capacity(channel_means.len());
        let mut sum = Vec::with_capacity(channel_means.len());
        let mut sum_sq = Vec::with_capacity(channel_means.len());
        for cm in &channel_means {
            let (mut c, mut s, mut q) = (vec![0u32; n + 1], vec![0.0; n + 1], vec![0.0; n + 1]);
            if let Some(v) = cm {
                for i in 0..n {
                    let ok = !v[i].is_nan();
                    c[i + 1] = c[i] + ok as u32;
                    s[i + 1] = s[i] + if ok { v[i] } else { 0.0 };
                    q[i + 1] = q[i] + if ok { v[i] * v[i] } else { 0.0 };
                }
            }
            count.push(c);
            sum.push(s);
            sum_sq.push(q);
        }
        let moments = ctx
            .groups
            .iter()
            .map(|g| {
                // z = (1, others..., first)
                let dim = g.len() + 1;
                let cols: Vec<Option<&Vec<f64>>> = g[1..]
                    .iter()
                    .chain(std::iter::once(&g[0]))
                    .map(|&c| channel_means[c].as_ref())
                    .collect();
                let mut p = vec![vec![0.0; dim * dim]; n + 1];
                if cols.iter().all(Option::is_some) {
                    let cols: Vec<&Vec<f64>> = cols.into_iter().flatten().collect();
                    let mut zv = vec![1.0; dim];
                    for i in 0..n {
                        p[i + 1] = p[i].clone();
                        if cols.iter().any(|c| c[i].is_nan()) {
                            continue;
                        }
                        for (k, c) in cols.iter().enumerate() {
                            zv[k + 1] = c[i];
                        }
                        for a in 0..dim {
                            for b in 0..dim {
                                p[i + 1][a * dim + b] += zv[a] * zv[b];
                            }
                        }
                    }
                }
                (dim, p)
            })
            .collect();
        Prefix {
            count,
            sum,
            sum_sq,
            moments,
        }
    }

    /// Mean of the hourly means of slots [from, to).
    fn hour_mean(&self, sc: usize, from: usize, to: usize) -> f64 {
        let c = self.count[sc][to] - self.count[sc][from];
        if c == 0 {
            return f64::NAN;
        }
        (self.sum[sc][to] - self.sum[sc][from]) / c as f64
    }

    fn baseline_range(end: usize) -> Option<(usize, usize)> {
        let to = end.checked_sub(BASELINE_GAP_HOURS)?;
        Some((to.saturating_sub(BASELINE_HOURS), to))
    }

    fn baseline(&self, sc: usize, end: usize) -> Baseline {
        let Some((from, to)) = Self::baseline_range(end) else {
            return (f64::NAN, f64::NAN);
        };
        let c = (self.count[sc][to] - self.count[sc][from]) as f64;
        if c < 24.0 {
            return (f64::NAN, f64::NAN);
        }
        let mean = (self.sum[sc][to] - self.sum[sc][from]) / c;
        let var = ((self.sum_sq[sc][to] - self.sum_sq[sc][from]) / c - mean * mean).max(0.0);
        (mean, var.sqrt())
    }

    /// z-scores of the group's residual over the last 1 h, 24 h and 7 d, against the
    /// residual spread on the baseline.
    fn residual_z(&self, g: usize, end: usize) -> [f64; 3] {
        let nan = [f64::NAN; 3];
        let (dim, p) = &self.moments[g];
        let dim = *dim;
        let Some((from, to)) = Self::baseline_range(end) else {
            return nan;
        };
        let diff = |a: usize, b: usize| -> Vec<f64> { p[b].iter().zip(&p[a]).map(|(x, y)| x - y).collect() };
        let base = diff(from, to);
        let count = base[0];
        if count < 48.0 {
            return nan;
        }
        // Regress y (last) on (1, x...): X'X is the leading (dim-1) block, X'y the last column.
        let k = dim - 1;
        let mut xtx = vec![0.0; k * k];
        let mut xty = vec![0.0; k];
        for a in 0..k {
            for b in 0..k {
                xtx[a * k + b] = base[a * dim + b];
            }
            xty[a] = base[a * dim + k];
        }
        let Some(beta) = solve_ridge(&xtx, &xty, k, 1e-9) else {
            return nan;
        };
        // Residual sum of squares on the baseline: y'y − 2β'X'y + β'X'Xβ.
        let resid_sq = |m: &[f64]| {
            let yy = m[k * dim + k];
            let mut bxy = 0.0;
            let mut bxxb = 0.0;
            for a in 0..k {
                bxy += beta[a] * m[a * dim + k];
                for b in 0..k {
                    bxxb += beta[a] * beta[b] * m[a * dim + b];
                }
            }
            yy - 2.0 * bxy + bxxb
        };
        let sd = (resid_sq(&base) / count).max(0.0).sqrt();
        let floor = 1e-6 + 1e-3 * (base[k * dim] / count).abs();
        let mut out = nan;
        for (i, w) in [1usize, 24, 168].into_iter().enumerate() {
            let recent = diff(end.saturating_sub(w), end);
            let c = recent[0];
            if c < 1.0 {
                continue;
            }
            // Mean residual: mean(y) − β·mean(x).
            let mut r = recent[k * dim] / c;
            for a in 0..k {
                r -= beta[a] * recent[a * dim] / c;
            }
            out[i] = (r / sd.max(floor)).clamp(-1e3, 1e3);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(values: &[(f64, f64)]) -> HourAgg {
        // (fraction of the hour, value)
        let mut a = HourAgg::EMPTY;
        a.min = f32::INFINITY;
        a.max = f32::NEG_INFINITY;
        for &(t, v) in values {
            a.n += 1;
            a.sum += v;
            a.sum_sq += v * v;
            a.sum_t += t as f32;
            a.sum_tt += (t * t) as f32;
            a.sum_tv += t * v;
            a.min = a.min.min(v as f32);
            a.max = a.max.max(v as f32);
            a.last = v as f32;
        }
        a
    }

    #[test]
    fn window_stats_match_a_direct_computation() {
        // 200 hours of a ramp (0.5 per hour) sampled 4 times an hour, hour 190 missing.
        let slots: Vec<HourAgg> = (0..200)
            .map(|h| {
                if h == 190 {
                    return HourAgg::EMPTY;
                }
                let pts: Vec<(f64, f64)> = (0..4)
                    .map(|q| {
                        let t = q as f64 / 4.0;
                        (t, 10.0 + 0.5 * (h as f64 + t))
                    })
                    .collect();
                hour(&pts)
            })
            .collect();
        let w = window_stats(&slots, 200);
        assert_eq!(w.last as f32, (10.0 + 0.5 * (199.0 + 0.75)) as f32);
        for s in &w.stats {
            assert!((s.slope - 0.5).abs() < 1e-9, "slope {}", s.slope);
        }
        // 6 h: hours 194..=199, values 10+0.5*(h+t)
        let direct: Vec<f64> = (194..200)
            .flat_map(|h| (0..4).map(move |q| 10.0 + 0.5 * (h as f64 + q as f64 / 4.0)))
            .collect();
        let mean = direct.iter().sum::<f64>() / direct.len() as f64;
        let std = (direct.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / direct.len() as f64).sqrt();
        assert!((w.stats[1].mean - mean).abs() < 1e-9);
        assert!((w.stats[1].std - std).abs() < 1e-9);
        assert_eq!(w.stats[1].min, direct[0]);
        assert_eq!(w.stats[1].max, *direct.last().unwrap());
        assert_eq!(w.hours_with_data_24h, 23, "hour 190 has no data");
        // The 7 d window starts at hour 32: its min is that hour's first reading.
        assert_eq!(w.stats[3].min, 10.0 + 0.5 * 32.0);
        // Nothing before the end is read: ending at 100 ignores later slots.
        let early = window_stats(&slots, 100);
        assert_eq!(early.last as f32, (10.0 + 0.5 * 99.75) as f32);
        assert!(window_stats(&slots, 0).last.is_nan());
    }
}
