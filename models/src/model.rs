//! The forecasting artefact and its training.
//!
//! Per horizon, a gradient-boosted classifier (forust: linfa has no boosting)
//! gives P(failure within H), calibrated by Platt scaling on machines held out of
//! the fit, with an alarm threshold tuned on those machines to a false-alarm budget.
//! Beside it, trained on the same rows: linfa's logistic regression (the baseline to
//! beat) and a fixed-threshold baseline. A multinomial logistic regression (linfa)
//! names the mode; a boosted regressor predicts the time to failure, with an interval
//! from its errors on the held-out machines.
//!
//! Serialized as JSON with a format name and version, the feature schema and the
//! training metadata (data range, machines, schema hash, metrics).

use crate::HOUR_MS;
use crate::error::{ModelError, Result};
use crate::evaluate::{AlarmParams, brier, event_summaries, pooled, pr_auc};
use crate::events::EventLog;
use crate::features::{FeatureMatrix, FeatureOptions};
use crate::labels::Labels;
use crate::spec::FeatureSpec;
use forust_ml::gradientbooster::ContributionsMethod;
use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use linfa::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const MODEL_FORMAT: &str = "larmor-forecast-model";
pub const MODEL_VERSION: u32 = 1;

/// How a model is trained (stored in the artefact, reused by the backtest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainOptions {
    pub horizons_hours: Vec<u32>,
    /// Time-to-failure targets are capped here.
    pub ttf_cap_hours: f64,
    pub features: FeatureOptions,
    /// Rows with no failure within the longest horizon are subsampled to this many per
    /// positive row (weighted back up, so the classifier sees the true base rate).
    pub negatives_per_positive: f64,
    /// Share of the training machines held out to calibrate and set alarm thresholds.
    pub calibration_share: f64,
    /// Boosting: trees, learning rate, depth, and the share of columns each tree sees.
    pub trees: usize,
    pub learning_rate: f32,
    pub max_depth: usize,
    pub column_share: f64,
    /// Alarm thresholds keep false alarms per machine-year on the calibration machines at or under this.
    pub false_alarm_budget: f64,
    /// Consecutive alarms less than this far apart are one alarm episode.
    pub alarm_merge_hours: f64,
    pub logistic_alpha: f64,
    pub logistic_iterations: u64,
    /// Without a `precursor_visible` column, a failure whose onset came at least this
    /// long before it counts as having a visible precursor.
    pub min_precursor_hours: f64,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            horizons_hours: crate::labels::DEFAULT_HORIZONS_HOURS.to_vec(),
            ttf_cap_hours: 30.0 * 24.0,
            features: FeatureOptions::default(),
            negatives_per_positive: 8.0,
            calibration_share: 0.25,
            trees: 150,
            learning_rate: 0.1,
            max_depth: 5,
            column_share: 0.5,
            false_alarm_budget: 0.5,
            alarm_merge_hours: 24.0,
            logistic_alpha: 1.0,
            logistic_iterations: 200,
            min_precursor_hours: 24.0,
            seed: 1,
        }
    }
}

/// Per-column centring and scaling for the linear models; NaN becomes the mean (0).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Standardizer {
    fn fit(m: &FeatureMatrix, rows: &[usize]) -> Standardizer {
        let w = m.width();
        let (mut n, mut s, mut ss) = (vec![0.0; w], vec![0.0; w], vec![0.0; w]);
        for &r in rows {
            for (j, &v) in m.row(r).iter().enumerate() {
                if v.is_finite() {
                    let v = v as f64;
                    n[j] += 1.0;
                    s[j] += v;
                    ss[j] += v * v;
                }
            }
        }
        let mean: Vec<f64> = (0..w).map(|j| if n[j] > 0.0 { s[j] / n[j] } else { 0.0 }).collect();
        let scale = (0..w)
            .map(|j| {
                let var = if n[j] > 0.0 {
                    ss[j] / n[j] - mean[j] * mean[j]
                } else {
                    0.0
                };
                let sd = var.max(0.0).sqrt();
                if sd > 1e-9 { sd } else { 1.0 }
            })
            .collect();
        Standardizer { mean, scale }
    }

    fn apply(&self, row: &[f32], out: &mut [f64]) {
        for (j, &v) in row.iter().enumerate() {
            out[j] = if v.is_finite() {
                ((v as f64 - self.mean[j]) / self.scale[j]).clamp(-10.0, 10.0)
            } else {
                0.0
            };
        }
    }

    fn matrix(&self, m: &FeatureMatrix, rows: &[usize]) -> ndarray::Array2<f64> {
        let w = m.width();
        let mut x = ndarray::Array2::zeros((rows.len(), w));
        for (i, &r) in rows.iter().enumerate() {
            let mut row = x.row_mut(i);
            self.apply(m.row(r), row.as_slice_mut().expect("standard layout"));
        }
        x
    }
}

/// P = sigmoid(a·score + b).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

impl Platt {
    pub fn apply(&self, score: f64) -> f64 {
        sigmoid(self.a * score + self.b)
    }

    /// Fits by Newton's method on the log loss, with Platt's smoothed targets.
    pub fn fit(scores: &[f64], y: &[bool]) -> Platt {
        let pos = y.iter().filter(|&&v| v).count() as f64;
        let neg = y.len() as f64 - pos;
        if pos == 0.0 || neg == 0.0 {
            // Nothing to calibrate against: keep the ranking, pin the level to the base rate.
            let rate = (pos + 0.5) / (y.len() as f64 + 1.0);
            return Platt {
                a: 0.0,
                b: (rate / (1.0 - rate)).ln(),
            };
        }
        let (hi, lo) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
        let t: Vec<f64> = y.iter().map(|&v| if v { hi } else { lo }).collect();
        let (mut a, mut b) = (1.0, 0.0);
        for _ in 0..100 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
            for (&s, &t) in scores.iter().zip(&t) {
                let p = sigmoid(a * s + b);
                let d = p - t;
                let w = (p * (1.0 - p)).max(1e-12);
                ga += d * s;
                gb += d;
                haa += w * s * s;
                hab += w * s;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-18 {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            a -= da;
            b -= db;
            if da.abs() < 1e-9 && db.abs() < 1e-9 {
                break;
            }
        }
        Platt { a, b }
    }
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The boosted classifier of one horizon.
#[derive(Serialize, Deserialize)]
pub struct HorizonModel {
    pub hours: u32,
    pub booster: GradientBooster,
    pub platt: Platt,
    /// Alarm when the calibrated probability reaches this.
    pub threshold: f64,
}

/// The logistic-regression baseline of one horizon (on standardized features).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogisticHorizon {
    pub hours: u32,
    pub weights: Vec<f64>,
    pub intercept: f64,
    pub platt: Platt,
    pub threshold: f64,
}

/// Softmax over standardized features (linfa's multinomial logistic regression).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModeClassifier {
    pub modes: Vec<String>,
    /// Per mode: weights and intercept.
    pub weights: Vec<Vec<f64>>,
    pub intercepts: Vec<f64>,
}

/// ln(1 + hours to failure), capped, with an interval from held-out errors.
#[derive(Serialize, Deserialize)]
pub struct TtfModel {
    pub cap_hours: f64,
    pub booster: GradientBooster,
    /// 10th and 90th percentile of (truth − prediction) in log space on held-out rows.
    pub error_low: f64,
    pub error_high: f64,
}

/// Alarm when any channel's last-hour mean leaves its band (set on healthy training rows).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixedThresholdBaseline {
    /// (column of `<channel>:mean_1h`, low, high).
    pub bands: Vec<(String, f64, f64)>,
    /// The tail share cut on each side that met the false-alarm budget on the training machines.
    pub tail_share: f64,
}

impl FixedThresholdBaseline {
    pub fn alarms(&self, m: &FeatureMatrix) -> Vec<f64> {
        let cols: Vec<(Option<usize>, f64, f64)> = self
            .bands
            .iter()
            .map(|(c, lo, hi)| (m.spec.column(c), *lo, *hi))
            .collect();
        (0..m.len())
            .map(|r| {
                let row = m.row(r);
                let hit = cols.iter().any(|&(c, lo, hi)| {
                    c.is_some_and(|c| {
                        let v = row[c] as f64;
                        v.is_finite() && (v < lo || v > hi)
                    })
                });
                hit as u8 as f64
            })
            .collect()
    }
}

/// Where the model came from and how it did on its own held-out machines.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingMetadata {
    pub trained_at: String,
    pub larmor_version: String,
    pub data_from: String,
    pub data_until: String,
    pub machines: Vec<String>,
    /// Machine → fingerprint of its first day of data: tells a machine seen in
    /// training from another fleet's machine of the same name.
    pub machine_fingerprints: BTreeMap<String, String>,
    pub calibration_machines: Vec<String>,
    pub rows: usize,
    pub failures: usize,
    pub feature_schema_hash: String,
    pub features: usize,
    pub seconds: f64,
    /// Wall seconds per training step (after the data preparation).
    pub step_seconds: Vec<(String, f64)>,
    /// Per horizon, on the calibration machines (not a held-out test: `larmor evaluate` gives that).
    pub calibration_metrics: Vec<CalibrationMetrics>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationMetrics {
    pub horizon_hours: u32,
    pub rows: usize,
    pub positives: usize,
    pub pr_auc: f64,
    pub brier: f64,
    pub logistic_pr_auc: f64,
    pub logistic_brier: f64,
    pub failure_recall: f64,
    pub false_alarms_per_machine_year: f64,
}

/// The artefact: everything `larmor forecast` and `larmor evaluate` need.
#[derive(Serialize, Deserialize)]
pub struct ForecastModel {
    pub format: String,
    pub version: u32,
    pub name: String,
    pub spec: FeatureSpec,
    pub options: TrainOptions,
    pub standardizer: Standardizer,
    pub horizons: Vec<HorizonModel>,
    pub logistic: Vec<LogisticHorizon>,
    pub modes: ModeClassifier,
    pub ttf: TtfModel,
    pub fixed_threshold: FixedThresholdBaseline,
    pub metadata: TrainingMetadata,
}

/// Per row: calibrated probabilities per horizon (non-decreasing with the horizon).
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    /// [horizon][row]
    pub model: Vec<Vec<f64>>,
    pub logistic: Vec<Vec<f64>>,
    /// [row][mode]
    pub mode: Vec<Vec<f64>>,
    /// Hours to failure: (point, low, high) per row.
    pub ttf: Vec<(f64, f64, f64)>,
}

fn hash01(seed: u64, s: &str) -> f64 {
    // FNV-1a then a splitmix finaliser: a stable per-machine coin.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 31;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 29;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Splits machines by a seeded hash: (kept, held out with probability `share`).
pub fn split_machines(machines: &[String], share: f64, seed: u64) -> (Vec<String>, Vec<String>) {
    let (mut keep, mut out) = (Vec::new(), Vec::new());
    for m in machines {
        if hash01(seed, m) < share {
            out.push(m.clone());
        } else {
            keep.push(m.clone());
        }
    }
    if keep.is_empty() && !out.is_empty() {
        keep.push(out.remove(0));
    }
    (keep, out)
}

/// Progress of a training run: (step done, steps, what).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, &str);

pub(crate) fn column_major(m: &FeatureMatrix, rows: &[usize]) -> Vec<f64> {
    let w = m.width();
    let n = rows.len();
    let mut data = vec![f64::NAN; n * w];
    for (i, &r) in rows.iter().enumerate() {
        for (j, &v) in m.row(r).iter().enumerate() {
            data[j * n + i] = if v.is_finite() { v as f64 } else { f64::NAN };
        }
    }
    data
}

fn booster(objective: ObjectiveType, opts: &TrainOptions) -> GradientBooster {
    GradientBooster::default()
        .set_objective_type(objective)
        .set_iterations(opts.trees)
        .set_learning_rate(opts.learning_rate)
        .set_max_depth(opts.max_depth)
        .set_colsample_bytree(opts.column_share)
        .set_subsample(0.8)
        .set_seed(opts.seed)
}

impl ForecastModel {
    /// Trains on the rows of `machines` (None: all) whose labels are known.
    pub fn train(
        m: &FeatureMatrix,
        labels: &Labels,
        events: &EventLog,
        machines: Option<&[String]>,
        fingerprints: BTreeMap<String, String>,
        opts: &TrainOptions,
        progress: Progress,
    ) -> Result<ForecastModel> {
        let started = std::time::Instant::now();
        let steps = opts.horizons_hours.len() * 2 + 3;
        let mut step = 0;
        let mut step_seconds: Vec<(String, f64)> = Vec::new();
        let mut last = std::time::Instant::now();
        let mut tick = |what: &str, progress: &mut dyn FnMut(usize, usize, &str)| {
            step += 1;
            step_seconds.push((what.to_string(), last.elapsed().as_secs_f64()));
            last = std::time::Instant::now();
            progress(step, steps, what);
        };
        let all: Vec<String> = match machines {
            Some(ms) => ms.to_vec(),
            None => m.machines.clone(),
        };
        let (fit_m, cal_m) = split_machines(&all, opts.calibration_share, opts.seed);
        let (fit_m, cal_m) = if cal_m.is_empty() {
            // Too few machines to hold any out: calibrate on the training machines (said in the metadata).
            (fit_m.clone(), fit_m)
        } else {
            (fit_m, cal_m)
        };
        let in_set = |set: &[String]| -> Vec<bool> { m.machines.iter().map(|x| set.contains(x)).collect() };
        let (is_fit, is_cal) = (in_set(&fit_m), in_set(&cal_m));
        let longest = opts.horizons_hours.len() - 1;
        let fit_rows: Vec<usize> = (0..m.len())
            .filter(|&r| is_fit[m.rows[r].machine as usize] && labels.rows[r].y[longest].is_some())
            .collect();
        let cal_rows: Vec<usize> = (0..m.len())
            .filter(|&r| is_cal[m.rows[r].machine as usize] && labels.rows[r].y[longest].is_some())
            .collect();
        let positives = fit_rows
            .iter()
            .filter(|&&r| labels.rows[r].y[longest] == Some(true))
            .count();
        if positives == 0 {
            return Err(ModelError::Train(format!(
                "no training row has a failure within {} h: the events table lists no failure inside the \
                 archive's period for these machines (check --events, and that machine ids match the archive)",
                opts.horizons_hours[longest]
            )));
        }
        // Negatives subsampled (deterministically), weighted back up.
        let negatives = fit_rows.len() - positives;
        let rate = ((positives as f64 * opts.negatives_per_positive) / negatives.max(1) as f64).min(1.0);
        let mut sample = Vec::new();
        let mut weight = Vec::new();
        for &r in &fit_rows {
            if labels.rows[r].y[longest] == Some(true) {
                sample.push(r);
                weight.push(1.0);
            } else if hash01(opts.seed ^ 0x5eed, &format!("{}@{}", m.rows[r].machine, m.rows[r].t_ms)) < rate {
                sample.push(r);
                weight.push(1.0 / rate);
            }
        }
        let standardizer = Standardizer::fit(m, &sample);
        let data = column_major(m, &sample);
        let cal_data = column_major(m, &cal_rows);
        let cal_matrix = Matrix::new(&cal_data, cal_rows.len(), m.width());
        let cal_x = standardizer.matrix(m, &cal_rows);
        let sample_x = standardizer.matrix(m, &sample);
        let alarm = AlarmParams {
            merge_hours: opts.alarm_merge_hours,
            stride_hours: opts.features.stride_hours as f64,
        };

        let mut horizons = Vec::new();
        let mut logistic = Vec::new();
        let mut metrics = Vec::new();
        for (h, &hours) in opts.horizons_hours.iter().enumerate() {
            let y: Vec<f64> = sample
                .iter()
                .map(|&r| (labels.rows[r].y[h] == Some(true)) as u8 as f64)
                .collect();
            let mut b = booster(ObjectiveType::LogLoss, opts);
            b.fit(&Matrix::new(&data, sample.len(), m.width()), &y, &weight, None)
                .map_err(|e| ModelError::Train(format!("boosting for {hours} h: {e}")))?;
            tick(&format!("boosted classifier, {hours} h"), progress);
            let cal_y: Vec<bool> = cal_rows.iter().map(|&r| labels.rows[r].y[h] == Some(true)).collect();
            let raw = b.predict(&cal_matrix, true);
            let platt = Platt::fit(&raw, &cal_y);
            let p: Vec<f64> = raw.iter().map(|&s| platt.apply(s)).collect();

            let yb: ndarray::Array1<bool> = y.iter().map(|&v| v > 0.5).collect();
            let (weights, intercept) = fit_logistic(sample_x.clone(), yb, opts)?;
            tick(&format!("logistic regression, {hours} h"), progress);
            let lraw: Vec<f64> = cal_x
                .rows()
                .into_iter()
                .map(|row| row.dot(&weights) + intercept)
                .collect();
            let lplatt = Platt::fit(&lraw, &cal_y);
            let lp: Vec<f64> = lraw.iter().map(|&s| lplatt.apply(s)).collect();

            let threshold = tune_threshold(m, &cal_rows, &p, labels, events, h, hours, &alarm, opts);
            let lthreshold = tune_threshold(m, &cal_rows, &lp, labels, events, h, hours, &alarm, opts);
            let fired: Vec<bool> = p.iter().map(|&x| x >= threshold).collect();
            let sums = event_summaries(m, &cal_rows, &fired, labels, events, h, hours, &alarm);
            let pooled_ev = pooled(&sums, None);
            metrics.push(CalibrationMetrics {
                horizon_hours: hours,
                rows: cal_rows.len(),
                positives: cal_y.iter().filter(|&&v| v).count(),
                pr_auc: pr_auc(&p, &cal_y, None),
                brier: brier(&p, &cal_y, None),
                logistic_pr_auc: pr_auc(&lp, &cal_y, None),
                logistic_brier: brier(&lp, &cal_y, None),
                failure_recall: pooled_ev.recall,
                false_alarms_per_machine_year: pooled_ev.false_alarms_per_machine_year,
            });
            horizons.push(HorizonModel {
                hours,
                booster: b,
                platt,
                threshold,
            });
            logistic.push(LogisticHorizon {
                hours,
                weights: weights.to_vec(),
                intercept,
                platt: lplatt,
                threshold: lthreshold,
            });
        }

        let modes = fit_modes(m, labels, &fit_rows, &standardizer, opts)?;
        tick("failure-mode classifier", progress);
        let ttf = fit_ttf(m, labels, &sample, &weight, &cal_rows, opts)?;
        tick("time-to-failure regressor", progress);
        let fixed_threshold = fit_fixed_threshold(m, labels, events, &fit_rows, &alarm, opts);
        tick("fixed-threshold baseline", progress);

        let times: Vec<i64> = fit_rows.iter().chain(&cal_rows).map(|&r| m.rows[r].t_ms).collect();
        let fmt = |t: Option<&i64>| t.map(|&t| crate::live::format_time(t)).unwrap_or_default();
        let metadata = TrainingMetadata {
            trained_at: crate::live::format_time(chrono::Utc::now().timestamp_millis()),
            larmor_version: env!("CARGO_PKG_VERSION").into(),
            data_from: fmt(times.iter().min()),
            data_until: fmt(times.iter().max()),
            machines: all.clone(),
            machine_fingerprints: fingerprints.into_iter().filter(|(k, _)| all.contains(k)).collect(),
            calibration_machines: cal_m,
            rows: fit_rows.len() + cal_rows.len(),
            failures: all.iter().map(|x| events.failures.get(x).map_or(0, Vec::len)).sum(),
            feature_schema_hash: m.spec.hash.clone(),
            features: m.width(),
            seconds: started.elapsed().as_secs_f64(),
            step_seconds,
            calibration_metrics: metrics,
        };
        Ok(ForecastModel {
            format: MODEL_FORMAT.into(),
            version: MODEL_VERSION,
            name: format!("larmor-gbt-{}", &m.spec.hash[..12]),
            spec: m.spec.clone(),
            options: opts.clone(),
            standardizer,
            horizons,
            logistic,
            modes,
            ttf,
            fixed_threshold,
            metadata,
        })
    }

    /// Refuses a matrix whose feature schema differs from the model's.
    pub fn check(&self, m: &FeatureMatrix) -> Result<()> {
        self.spec.check(&m.spec)
    }

    /// Scores every row of `m`.
    pub fn predict(&self, m: &FeatureMatrix) -> Result<Predictions> {
        self.check(m)?;
        let rows: Vec<usize> = (0..m.len()).collect();
        Ok(self.predict_rows(m, &rows))
    }

    /// Scores `rows` of `m`, a block at a time (the dense copies the models need
    /// would otherwise hold the whole matrix twice more).
    pub(crate) fn predict_rows(&self, m: &FeatureMatrix, rows: &[usize]) -> Predictions {
        let mut out = Predictions {
            model: vec![Vec::with_capacity(rows.len()); self.horizons.len()],
            logistic: vec![Vec::with_capacity(rows.len()); self.logistic.len()],
            mode: Vec::with_capacity(rows.len()),
            ttf: Vec::with_capacity(rows.len()),
        };
        for block in rows.chunks(32_768) {
            let p = self.predict_block(m, block);
            for (all, part) in out.model.iter_mut().zip(p.model) {
                all.extend(part);
            }
            for (all, part) in out.logistic.iter_mut().zip(p.logistic) {
                all.extend(part);
            }
            out.mode.extend(p.mode);
            out.ttf.extend(p.ttf);
        }
        out
    }

    fn predict_block(&self, m: &FeatureMatrix, rows: &[usize]) -> Predictions {
        let data = column_major(m, rows);
        let matrix = Matrix::new(&data, rows.len(), m.width());
        let x = self.standardizer.matrix(m, rows);
        let mut model: Vec<Vec<f64>> = self
            .horizons
            .iter()
            .map(|h| {
                h.booster
                    .predict(&matrix, true)
                    .into_iter()
                    .map(|s| h.platt.apply(s))
                    .collect()
            })
            .collect();
        let mut logistic: Vec<Vec<f64>> = self
            .logistic
            .iter()
            .map(|l| {
                let w = ndarray::Array1::from(l.weights.clone());
                x.rows()
                    .into_iter()
                    .map(|row| l.platt.apply(row.dot(&w) + l.intercept))
                    .collect()
            })
            .collect();
        // A failure within 24 h is also one within 72 h: probabilities never fall with the horizon.
        for p in [&mut model, &mut logistic] {
            for h in 1..p.len() {
                let (a, b) = p.split_at_mut(h);
                for (lo, hi) in a[h - 1].iter().zip(b[0].iter_mut()) {
                    *hi = hi.max(*lo);
                }
            }
        }
        let mode = x
            .rows()
            .into_iter()
            .map(|row| {
                let logits: Vec<f64> = self
                    .modes
                    .weights
                    .iter()
                    .zip(&self.modes.intercepts)
                    .map(|(w, b)| row.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + b)
                    .collect();
                softmax(&logits)
            })
            .collect();
        let cap = self.ttf.cap_hours;
        let ttf = self
            .ttf
            .booster
            .predict(&matrix, true)
            .into_iter()
            .map(|l| {
                let back = |x: f64| (x.exp() - 1.0).clamp(0.0, cap);
                (back(l), back(l + self.ttf.error_low), back(l + self.ttf.error_high))
            })
            .collect();
        Predictions {
            model,
            logistic,
            mode,
            ttf,
        }
    }

    /// The `k` features that pushed row `row`'s longest-horizon score up the most
    /// (forust's tree contributions, XGBoost's approximate method), with their contributions in log-odds.
    pub fn top_features(&self, m: &FeatureMatrix, row: usize, k: usize) -> Vec<(String, f64)> {
        let data = column_major(m, &[row]);
        let matrix = Matrix::new(&data, 1, m.width());
        let Some(h) = self.horizons.last() else {
            return vec![];
        };
        let c = h
            .booster
            .predict_contributions(&matrix, ContributionsMethod::Average, false);
        // One row: a contribution per feature, then the bias.
        let mut v: Vec<(usize, f64)> = c.iter().take(m.width()).copied().enumerate().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.into_iter()
            .filter(|x| x.1 > 0.0)
            .take(k)
            .map(|(j, c)| (m.spec.columns[j].clone(), c))
            .collect()
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec(self).map_err(|e| ModelError::Train(format!("serializing the model: {e}")))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| ModelError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
    }

    pub fn load(path: &Path) -> Result<ForecastModel> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        #[derive(Deserialize)]
        struct Header {
            format: String,
            version: u32,
        }
        let h: Header = serde_json::from_slice(&bytes).map_err(|e| {
            ModelError::Input(format!(
                "{}: not a larmor model file ({e}); train one with `larmor train`",
                path.display()
            ))
        })?;
        if h.format != MODEL_FORMAT {
            return Err(ModelError::Input(format!(
                "{}: format `{}`, expected `{MODEL_FORMAT}`",
                path.display(),
                h.format
            )));
        }
        if h.version != MODEL_VERSION {
            return Err(ModelError::Input(format!(
                "{}: model format version {}, this larmor reads version {MODEL_VERSION}: retrain with `larmor train`",
                path.display(),
                h.version
            )));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ModelError::Input(format!("{}: damaged model file: {e}", path.display())))
    }
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// linfa's logistic regression; returns weights and intercept of P(failure).
fn fit_logistic(
    x: ndarray::Array2<f64>,
    y: ndarray::Array1<bool>,
    opts: &TrainOptions,
) -> Result<(ndarray::Array1<f64>, f64)> {
    let ds = Dataset::new(x, y);
    let fitted = linfa_logistic::LogisticRegression::default()
        .alpha(opts.logistic_alpha)
        .max_iterations(opts.logistic_iterations)
        .fit(&ds)
        .map_err(|e| ModelError::Train(format!("logistic regression: {e}")))?;
    // linfa models the larger class as "positive": flip when that is "no failure".
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    Ok((fitted.params().mapv(|w| w * sign), fitted.intercept() * sign))
}

fn fit_modes(
    m: &FeatureMatrix,
    labels: &Labels,
    fit_rows: &[usize],
    st: &Standardizer,
    opts: &TrainOptions,
) -> Result<ModeClassifier> {
    let rows: Vec<usize> = fit_rows
        .iter()
        .copied()
        .filter(|&r| labels.rows[r].mode.is_some())
        .collect();
    let present: std::collections::BTreeSet<u16> = rows.iter().filter_map(|&r| labels.rows[r].mode).collect();
    let w = m.width();
    if present.len() < 2 {
        // One mode (or none) seen: it is always the answer.
        let modes: Vec<String> = present.iter().map(|&i| labels.modes[i as usize].clone()).collect();
        let n = modes.len().max(1);
        return Ok(ModeClassifier {
            modes: if modes.is_empty() {
                vec!["unknown".into()]
            } else {
                modes
            },
            weights: vec![vec![0.0; w]; n],
            intercepts: vec![0.0; n],
        });
    }
    let x = st.matrix(m, &rows);
    let y: ndarray::Array1<usize> = rows
        .iter()
        .map(|&r| labels.rows[r].mode.unwrap_or(0) as usize)
        .collect();
    let fitted = linfa_logistic::MultiLogisticRegression::default()
        .alpha(opts.logistic_alpha)
        .max_iterations(opts.logistic_iterations)
        .fit(&Dataset::new(x, y))
        .map_err(|e| ModelError::Train(format!("failure-mode classifier: {e}")))?;
    let params = fitted.params(); // features × classes
    let classes = fitted.classes();
    Ok(ModeClassifier {
        modes: classes.iter().map(|&c| labels.modes[c].clone()).collect(),
        weights: (0..classes.len()).map(|k| params.column(k).to_vec()).collect(),
        intercepts: fitted.intercept().to_vec(),
    })
}

fn fit_ttf(
    m: &FeatureMatrix,
    labels: &Labels,
    sample: &[usize],
    _weight: &[f64],
    cal_rows: &[usize],
    opts: &TrainOptions,
) -> Result<TtfModel> {
    let rows: Vec<usize> = sample
        .iter()
        .copied()
        .filter(|&r| labels.rows[r].ttf_hours.is_some())
        .collect();
    let y: Vec<f64> = rows
        .iter()
        .map(|&r| labels.rows[r].ttf_hours.unwrap_or(0.0).ln_1p())
        .collect();
    let data = column_major(m, &rows);
    let mut b = booster(ObjectiveType::SquaredLoss, opts);
    b.fit_unweighted(&Matrix::new(&data, rows.len(), m.width()), &y, None)
        .map_err(|e| ModelError::Train(format!("time-to-failure regressor: {e}")))?;
    // The interval: errors on held-out rows that had a failure within the cap.
    let held: Vec<usize> = cal_rows
        .iter()
        .copied()
        .filter(|&r| labels.rows[r].ttf_hours.is_some_and(|t| t < opts.ttf_cap_hours))
        .collect();
    let (lo, hi) = if held.len() >= 10 {
        let data = column_major(m, &held);
        let pred = b.predict(&Matrix::new(&data, held.len(), m.width()), true);
        let mut err: Vec<f64> = held
            .iter()
            .zip(pred)
            .map(|(&r, p)| labels.rows[r].ttf_hours.unwrap_or(0.0).ln_1p() - p)
            .collect();
        err.sort_by(f64::total_cmp);
        (quantile_sorted(&err, 0.1), quantile_sorted(&err, 0.9))
    } else {
        (-1.0, 1.0) // too few held-out failures: a wide, honest default (×e either way)
    };
    Ok(TtfModel {
        cap_hours: opts.ttf_cap_hours,
        booster: b,
        error_low: lo.min(0.0),
        error_high: hi.max(0.0),
    })
}

pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < v.len() {
        v[i] * (1.0 - f) + v[i + 1] * f
    } else {
        v[i]
    }
}

/// The lowest threshold whose false alarms per machine-year on `rows` stay within
/// the budget (the highest recall the budget allows).
#[allow(clippy::too_many_arguments)]
fn tune_threshold(
    m: &FeatureMatrix,
    rows: &[usize],
    p: &[f64],
    labels: &Labels,
    events: &EventLog,
    h: usize,
    hours: u32,
    alarm: &AlarmParams,
    opts: &TrainOptions,
) -> f64 {
    let mut sorted: Vec<f64> = p.iter().copied().filter(|x| x.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.5;
    }
    // Candidates: quantiles of the scores, high to low; stop at the first over budget.
    let mut best = 1.0f64.min(sorted[sorted.len() - 1] + 1e-9);
    for k in 1..=200 {
        let q = 1.0 - (k as f64 / 200.0).powi(3);
        let thr = quantile_sorted(&sorted, q).max(1e-6);
        let fired: Vec<bool> = p.iter().map(|&x| x >= thr).collect();
        let sums = event_summaries(m, rows, &fired, labels, events, h, hours, alarm);
        let pool = pooled(&sums, None);
        if pool.false_alarms_per_machine_year > opts.false_alarm_budget {
            break;
        }
        best = thr;
    }
    best
}

/// Per channel, a band [q, 1−q] of the healthy training rows' 1 h means; the largest
/// tail q whose alarms stay within the false-alarm budget at the longest horizon.
fn fit_fixed_threshold(
    m: &FeatureMatrix,
    labels: &Labels,
    events: &EventLog,
    fit_rows: &[usize],
    alarm: &AlarmParams,
    opts: &TrainOptions,
) -> FixedThresholdBaseline {
    let longest = opts.horizons_hours.len() - 1;
    let healthy: Vec<usize> = fit_rows
        .iter()
        .copied()
        .filter(|&r| labels.rows[r].y[longest] == Some(false))
        .collect();
    let mut per_channel: Vec<(String, Vec<f64>)> = Vec::new();
    for c in &m.spec.channels {
        let name = format!("{c}:mean_1h");
        if let Some(j) = m.spec.column(&name) {
            let mut v: Vec<f64> = healthy
                .iter()
                .map(|&r| m.row(r)[j] as f64)
                .filter(|x| x.is_finite())
                .collect();
            v.sort_by(f64::total_cmp);
            if !v.is_empty() {
                per_channel.push((name, v));
            }
        }
    }
    let make = |q: f64| FixedThresholdBaseline {
        bands: per_channel
            .iter()
            .map(|(n, v)| (n.clone(), quantile_sorted(v, q), quantile_sorted(v, 1.0 - q)))
            .collect(),
        tail_share: q,
    };
    let mut best = make(0.0);
    for q in [1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 0.0] {
        let b = make(q);
        let scores = b.alarms(m);
        let fired: Vec<bool> = fit_rows.iter().map(|&r| scores[r] > 0.5).collect();
        let sums = event_summaries(
            m,
            fit_rows,
            &fired,
            labels,
            events,
            longest,
            opts.horizons_hours[longest],
            alarm,
        );
        if pooled(&sums, None).false_alarms_per_machine_year <= opts.false_alarm_budget {
            best = b;
            break;
        }
    }
    best
}

/// Fingerprint of a machine's data: the first hour's per-channel counts and sums.
pub fn fingerprint(m: &crate::hourly::MachineHours) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(m.first_hour.to_le_bytes());
    for s in m.channels.iter().flatten() {
        for a in s.iter().take(24) {
            h.update(a.n.to_le_bytes());
            h.update(a.sum.to_bits().to_le_bytes());
        }
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Hours from a row time to a failure time.
pub fn hours_between(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms - from_ms) as f64 / HOUR_MS as f64
}
