//! Scoring forecasts without leakage.
//!
//! Row metrics (per horizon): precision and recall at the alarm threshold, PR-AUC
//! (average precision), Brier score, a reliability curve. Event metrics: a failure
//! is caught when some row in the H hours before it alarms; its lead time is the
//! time from the first such alarm to the failure. Alarms on rows with no failure
//! within H are false; false alarms closer than `merge_hours` are one episode, and
//! episodes are counted per machine-year of evaluated rows. Every figure comes with
//! a 95 % interval from a bootstrap over machines (machines, not rows, are the
//! independent units).
//!
//! Two ways to get honest scores: [`held_out`] scores a trained model on machines
//! it never saw (another fleet, or the machines left out of training), and
//! [`backtest`] retrains at rolling origins on one set of machines and scores the
//! others after each origin, with labels cut at the origin.

use crate::HOUR_MS;
use crate::error::Result;
use crate::events::EventLog;
use crate::features::FeatureMatrix;
use crate::labels::{Labels, label};
use crate::model::{ForecastModel, Predictions, TrainOptions, split_machines};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy)]
pub struct AlarmParams {
    pub merge_hours: f64,
    pub stride_hours: f64,
}

/// One failure as a method saw it.
#[derive(Debug, Clone, Serialize)]
pub struct FailureOutcome {
    pub machine: u32,
    pub time_ms: i64,
    pub mode: String,
    pub visible: Option<bool>,
    /// Hours from the first alarm within the horizon to the failure; None: missed.
    pub lead_hours: Option<f64>,
    /// Index (into the evaluated rows) of that first alarm.
    pub first_alarm: Option<usize>,
}

/// One machine's event-level outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventSummary {
    pub machine: u32,
    pub failures: Vec<FailureOutcome>,
    pub false_alarms: usize,
    pub machine_years: f64,
}

/// `rows` (indices into `m`, in machine-then-time order) with their alarms (same order).
#[allow(clippy::too_many_arguments)]
pub fn event_summaries(
    m: &FeatureMatrix,
    rows: &[usize],
    alarms: &[bool],
    labels: &Labels,
    events: &EventLog,
    h: usize,
    hours: u32,
    alarm: &AlarmParams,
) -> Vec<EventSummary> {
    let horizon_ms = hours as i64 * HOUR_MS;
    let min_visible = 24.0;
    let mut out: Vec<EventSummary> = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let machine = m.rows[rows[i]].machine;
        let mut j = i;
        while j < rows.len() && m.rows[rows[j]].machine == machine {
            j += 1;
        }
        // Evaluated rows of this machine: (position in `rows`, time).
        let eval: Vec<(usize, i64)> = (i..j)
            .filter(|&k| labels.rows[rows[k]].y[h].is_some())
            .map(|k| (k, m.rows[rows[k]].t_ms))
            .collect();
        let mut s = EventSummary {
            machine,
            machine_years: eval.len() as f64 * alarm.stride_hours / 8760.0,
            ..Default::default()
        };
        if let Some(fs) = events.failures.get(&m.machines[machine as usize]) {
            for f in fs {
                let lo = eval.partition_point(|e| e.1 < f.time_ms - horizon_ms);
                let hi = eval.partition_point(|e| e.1 < f.time_ms);
                if lo >= hi {
                    continue; // no evaluated row could have warned of it
                }
                let first = eval[lo..hi].iter().find(|e| alarms[e.0]);
                s.failures.push(FailureOutcome {
                    machine,
                    time_ms: f.time_ms,
                    mode: f.mode.clone(),
                    visible: EventLog::precursor_visible(f, min_visible),
                    lead_hours: first.map(|e| (f.time_ms - e.1) as f64 / HOUR_MS as f64),
                    first_alarm: first.map(|e| e.0),
                });
            }
        }
        let mut last_false: Option<i64> = None;
        for &(k, t) in &eval {
            if alarms[k] && labels.rows[rows[k]].y[h] == Some(false) {
                if last_false.is_none_or(|p| (t - p) as f64 > alarm.merge_hours * HOUR_MS as f64) {
                    s.false_alarms += 1;
                }
                last_false = Some(t);
            }
        }
        out.push(s);
        i = j;
    }
    out
}

/// Event metrics pooled over machines (weights: bootstrap multiplicity per summary).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PooledEvents {
    pub failures: f64,
    pub caught: f64,
    pub recall: f64,
    pub visible_failures: f64,
    pub visible_recall: f64,
    pub median_lead_hours: f64,
    pub false_alarms_per_machine_year: f64,
    pub machine_years: f64,
}

pub fn pooled(sums: &[EventSummary], weights: Option<&[f64]>) -> PooledEvents {
    let mut p = PooledEvents::default();
    let (mut fa, mut vis_caught) = (0.0, 0.0);
    let mut leads: Vec<(f64, f64)> = Vec::new();
    for (i, s) in sums.iter().enumerate() {
        let w = weights.map_or(1.0, |w| w[i]);
        if w == 0.0 {
            continue;
        }
        p.machine_years += w * s.machine_years;
        fa += w * s.false_alarms as f64;
        for f in &s.failures {
            p.failures += w;
            let visible = f.visible.unwrap_or(true);
            if visible {
                p.visible_failures += w;
            }
            if let Some(l) = f.lead_hours {
                p.caught += w;
                if visible {
                    vis_caught += w;
                }
                leads.push((l, w));
            }
        }
    }
    p.recall = ratio(p.caught, p.failures);
    p.visible_recall = ratio(vis_caught, p.visible_failures);
    p.false_alarms_per_machine_year = ratio(fa, p.machine_years);
    p.median_lead_hours = weighted_median(&mut leads);
    p
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

fn weighted_median(v: &mut [(f64, f64)]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = v.iter().map(|x| x.1).sum();
    let mut acc = 0.0;
    for &(x, w) in v.iter() {
        acc += w;
        if acc >= total / 2.0 {
            return x;
        }
    }
    v[v.len() - 1].0
}

/// Average precision (area under the precision-recall curve, step-wise), ties grouped.
pub fn pr_auc(p: &[f64], y: &[bool], w: Option<&[f64]>) -> f64 {
    let curve = pr_curve(p, y, w);
    let mut ap = 0.0;
    let mut prev_r = 0.0;
    for &(r, prec, _) in &curve {
        ap += (r - prev_r) * prec;
        prev_r = r;
    }
    if curve.is_empty() { f64::NAN } else { ap }
}

/// (recall, precision, threshold) at each distinct score, from the highest down.
pub fn pr_curve(p: &[f64], y: &[bool], w: Option<&[f64]>) -> Vec<(f64, f64, f64)> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_finite()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let wt = |i: usize| w.map_or(1.0, |w| w[i]);
    let total_pos: f64 = idx.iter().filter(|&&i| y[i]).map(|&i| wt(i)).sum();
    if total_pos == 0.0 {
        return vec![];
    }
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = Vec::new();
    let mut k = 0;
    while k < idx.len() {
        let s = p[idx[k]];
        while k < idx.len() && p[idx[k]] == s {
            let i = idx[k];
            if y[i] {
                tp += wt(i);
            } else {
                fp += wt(i);
            }
            k += 1;
        }
        if tp + fp > 0.0 {
            out.push((tp / total_pos, tp / (tp + fp), s));
        }
    }
    out
}

pub fn brier(p: &[f64], y: &[bool], w: Option<&[f64]>) -> f64 {
    let (mut s, mut n) = (0.0, 0.0);
    for i in 0..p.len() {
        let wt = w.map_or(1.0, |w| w[i]);
        s += wt * (p[i] - y[i] as u8 as f64).powi(2);
        n += wt;
    }
    ratio(s, n)
}

/// 10 equal-width bins: (mean predicted, observed frequency, rows).
pub fn reliability(p: &[f64], y: &[bool]) -> Vec<(f64, f64, usize)> {
    let mut bins = vec![(0.0, 0.0, 0usize); 10];
    for (&p, &y) in p.iter().zip(y) {
        let b = ((p * 10.0) as usize).min(9);
        bins[b].0 += p;
        bins[b].1 += y as u8 as f64;
        bins[b].2 += 1;
    }
    bins.into_iter()
        .filter(|b| b.2 > 0)
        .map(|(s, o, n)| (s / n as f64, o / n as f64, n))
        .collect()
}

/// A figure with its 95 % bootstrap interval.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ci {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Ci {
    fn from(value: f64, mut samples: Vec<f64>) -> Ci {
        samples.retain(|x| x.is_finite());
        samples.sort_by(f64::total_cmp);
        Ci {
            value,
            lo: crate::model::quantile_sorted(&samples, 0.025),
            hi: crate::model::quantile_sorted(&samples, 0.975),
        }
    }
}

/// A method's scores on the evaluated rows, per horizon.
pub struct Method {
    pub name: String,
    /// Probabilities (PR-AUC, Brier, reliability apply) or 0/1 alarms.
    pub probabilistic: bool,
    /// [horizon][evaluated row]
    pub scores: Vec<Vec<f64>>,
    /// [horizon][evaluated row]: whether the method raised an alarm there.
    pub alarms: Vec<Vec<bool>>,
    /// Per horizon, for the report (NaN where thresholds differ by fold).
    pub thresholds: Vec<f64>,
}

impl Method {
    /// Alarms where the score reaches the horizon's threshold.
    pub fn thresholded(name: &str, probabilistic: bool, scores: Vec<Vec<f64>>, thresholds: Vec<f64>) -> Method {
        let alarms = scores
            .iter()
            .zip(&thresholds)
            .map(|(s, &t)| s.iter().map(|&x| x >= t).collect())
            .collect();
        Method {
            name: name.into(),
            probabilistic,
            scores,
            alarms,
            thresholds,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HorizonScores {
    pub hours: u32,
    pub threshold: f64,
    pub rows: usize,
    pub positives: usize,
    pub precision: Ci,
    pub recall: Ci,
    pub pr_auc: Option<Ci>,
    pub brier: Option<Ci>,
    pub failures: f64,
    pub visible_failures: f64,
    pub failure_recall: Ci,
    pub visible_failure_recall: Ci,
    pub median_lead_hours: Ci,
    pub false_alarms_per_machine_year: Ci,
    pub machine_years: f64,
    pub reliability: Vec<(f64, f64, usize)>,
    pub pr_curve: Vec<(f64, f64)>,
    #[serde(skip)]
    pub outcomes: Vec<EventSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodScores {
    pub name: String,
    pub horizons: Vec<HorizonScores>,
}

/// Scores every method on `rows` with a bootstrap over machines (`resamples`, seeded).
#[allow(clippy::too_many_arguments)]
pub fn score_methods(
    m: &FeatureMatrix,
    rows: &[usize],
    labels: &Labels,
    events: &EventLog,
    methods: &[Method],
    alarm: &AlarmParams,
    resamples: usize,
    seed: u64,
) -> Vec<MethodScores> {
    // Machines of the evaluated rows, and each row's machine slot.
    let mut machine_slot: BTreeMap<u32, usize> = BTreeMap::new();
    for &r in rows {
        let n = machine_slot.len();
        machine_slot.entry(m.rows[r].machine).or_insert(n);
    }
    let n_machines = machine_slot.len();
    let draws: Vec<Vec<f64>> = bootstrap_weights(n_machines, resamples, seed);
    methods
        .iter()
        .map(|method| MethodScores {
            name: method.name.clone(),
            horizons: labels
                .horizons_hours
                .iter()
                .enumerate()
                .map(|(h, &hours)| {
                    let known: Vec<usize> = (0..rows.len())
                        .filter(|&k| labels.rows[rows[k]].y[h].is_some())
                        .collect();
                    let p: Vec<f64> = known.iter().map(|&k| method.scores[h][k]).collect();
                    let y: Vec<bool> = known.iter().map(|&k| labels.rows[rows[k]].y[h] == Some(true)).collect();
                    let slot: Vec<usize> = known.iter().map(|&k| machine_slot[&m.rows[rows[k]].machine]).collect();
                    let thr = method.thresholds[h];
                    let fired: Vec<bool> = known.iter().map(|&k| method.alarms[h][k]).collect();
                    let sums = event_summaries(m, rows, &method.alarms[h], labels, events, h, hours, alarm);
                    let sum_slot: Vec<usize> = sums.iter().map(|s| machine_slot[&s.machine]).collect();
                    let point = |wm: Option<&Vec<f64>>| {
                        let rw: Option<Vec<f64>> = wm.map(|wm| slot.iter().map(|&s| wm[s]).collect());
                        let sw: Option<Vec<f64>> = wm.map(|wm| sum_slot.iter().map(|&s| wm[s]).collect());
                        let (mut tp, mut fp, mut pos) = (0.0, 0.0, 0.0);
                        for i in 0..p.len() {
                            let w = rw.as_ref().map_or(1.0, |w| w[i]);
                            if y[i] {
                                pos += w;
                            }
                            if fired[i] {
                                if y[i] {
                                    tp += w;
                                } else {
                                    fp += w;
                                }
                            }
                        }
                        let ev = pooled(&sums, sw.as_deref());
                        let (auc, br) = if method.probabilistic {
                            (pr_auc(&p, &y, rw.as_deref()), brier(&p, &y, rw.as_deref()))
                        } else {
                            (f64::NAN, f64::NAN)
                        };
                        [
                            ratio(tp, tp + fp),
                            ratio(tp, pos),
                            auc,
                            br,
                            ev.recall,
                            ev.visible_recall,
                            ev.median_lead_hours,
                            ev.false_alarms_per_machine_year,
                        ]
                    };
                    let base = point(None);
                    let reps: Vec<[f64; 8]> = draws.iter().map(|d| point(Some(d))).collect();
                    let ci = |k: usize| Ci::from(base[k], reps.iter().map(|r| r[k]).collect());
                    let ev = pooled(&sums, None);
                    let curve = if method.probabilistic {
                        pr_curve(&p, &y, None)
                    } else {
                        vec![]
                    };
                    HorizonScores {
                        hours,
                        threshold: thr,
                        rows: p.len(),
                        positives: y.iter().filter(|&&v| v).count(),
                        precision: ci(0),
                        recall: ci(1),
                        pr_auc: method.probabilistic.then(|| ci(2)),
                        brier: method.probabilistic.then(|| ci(3)),
                        failures: ev.failures,
                        visible_failures: ev.visible_failures,
                        failure_recall: ci(4),
                        visible_failure_recall: ci(5),
                        median_lead_hours: ci(6),
                        false_alarms_per_machine_year: ci(7),
                        machine_years: ev.machine_years,
                        reliability: if method.probabilistic {
                            reliability(&p, &y)
                        } else {
                            vec![]
                        },
                        pr_curve: thin(curve.into_iter().map(|c| (c.0, c.1)).collect(), 400),
                        outcomes: sums,
                    }
                })
                .collect(),
        })
        .collect()
}

fn thin(v: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if v.len() <= max {
        return v;
    }
    let step = v.len() as f64 / max as f64;
    (0..max)
        .map(|i| v[(i as f64 * step) as usize])
        .chain(v.last().copied())
        .collect()
}

/// Per resample, how many times each machine was drawn.
fn bootstrap_weights(n: usize, resamples: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut state = seed ^ 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..resamples)
        .map(|_| {
            let mut w = vec![0.0; n];
            for _ in 0..n {
                w[(next() % n.max(1) as u64) as usize] += 1.0;
            }
            w
        })
        .collect()
}

/// Everything one evaluation found, for the report.
pub struct Evaluation {
    pub title: String,
    pub description: String,
    pub machines: usize,
    pub rows: Vec<usize>,
    pub methods: Vec<MethodScores>,
    /// The model's predictions on `rows` (mode probabilities for the confusion matrix, timelines).
    pub predictions: Predictions,
    pub mode_names: Vec<String>,
}

/// The baselines that need no training: streaming-detector alarms (any machine-health
/// or environment anomaly in the last 24 h), when the features have anomaly counts.
pub fn detector_alarms(m: &FeatureMatrix, rows: &[usize]) -> Option<Vec<f64>> {
    let cols: Vec<usize> = ["machine_health", "environment"]
        .iter()
        .filter_map(|k| m.spec.column(&format!("anomaly_kind:{k}:24h")))
        .collect();
    if cols.is_empty() {
        return None;
    }
    Some(
        rows.iter()
            .map(|&r| cols.iter().any(|&c| m.row(r)[c] > 0.0) as u8 as f64)
            .collect(),
    )
}

/// The name of the model's own method in reports.
pub const MODEL_METHOD: &str = "gradient-boosted trees (model)";

/// The four methods side by side on `rows`, given the model's predictions there.
fn methods_for(model: &ForecastModel, m: &FeatureMatrix, rows: &[usize], pred: &Predictions) -> Vec<Method> {
    let nh = model.horizons.len();
    let mut out = vec![
        Method::thresholded(
            MODEL_METHOD,
            true,
            pred.model.clone(),
            model.horizons.iter().map(|h| h.threshold).collect(),
        ),
        Method::thresholded(
            "logistic regression (linfa)",
            true,
            pred.logistic.clone(),
            model.logistic.iter().map(|h| h.threshold).collect(),
        ),
    ];
    let fixed = model.fixed_threshold.alarms(m);
    let fixed: Vec<f64> = rows.iter().map(|&r| fixed[r]).collect();
    out.push(Method::thresholded(
        "fixed thresholds",
        false,
        vec![fixed; nh],
        vec![0.5; nh],
    ));
    if let Some(d) = detector_alarms(m, rows) {
        out.push(Method::thresholded(
            "streaming detectors",
            false,
            vec![d; nh],
            vec![0.5; nh],
        ));
    }
    out
}

fn alarm_params(opts: &TrainOptions) -> AlarmParams {
    AlarmParams {
        merge_hours: opts.alarm_merge_hours,
        stride_hours: opts.features.stride_hours as f64,
    }
}

/// Scores `model` on the machines of `m` it was not trained on (a machine with the
/// same name but other data, e.g. from another fleet, counts as unseen).
pub fn held_out(
    model: &ForecastModel,
    m: &FeatureMatrix,
    labels: &Labels,
    events: &EventLog,
    fingerprints: &BTreeMap<String, String>,
    resamples: usize,
) -> Result<Evaluation> {
    model.check(m)?;
    let seen = |id: &str| {
        model
            .metadata
            .machine_fingerprints
            .get(id)
            .is_some_and(|f| fingerprints.get(id) == Some(f))
    };
    let unseen: Vec<bool> = m.machines.iter().map(|id| !seen(id)).collect();
    let rows: Vec<usize> = (0..m.len()).filter(|&r| unseen[m.rows[r].machine as usize]).collect();
    let pred = model.predict_rows(m, &rows);
    let methods = methods_for(model, m, &rows, &pred);
    let scores = score_methods(
        m,
        &rows,
        labels,
        events,
        &methods,
        &alarm_params(&model.options),
        resamples,
        model.options.seed,
    );
    Ok(Evaluation {
        title: "Held-out machines".into(),
        description: format!(
            "The model as trained ({}), scored on the {} machines of this archive it never saw; baselines as stored in the model.",
            model.name,
            unseen.iter().filter(|&&u| u).count()
        ),
        machines: unseen.iter().filter(|&&u| u).count(),
        rows,
        methods: scores,
        predictions: pred,
        mode_names: model.modes.modes.clone(),
    })
}

/// Rolling-origin backtest: machines split into train and test (`test_share`); at
/// each origin a model is trained on the train machines with labels cut at the
/// origin, and scored on the test machines' rows from that origin to the next.
#[allow(clippy::too_many_arguments)]
pub fn backtest(
    m: &FeatureMatrix,
    events: &EventLog,
    observed_until: &HashMap<String, i64>,
    fingerprints: &BTreeMap<String, String>,
    opts: &TrainOptions,
    origins: usize,
    test_share: f64,
    resamples: usize,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Evaluation> {
    let full = label(
        m,
        events,
        observed_until,
        &opts.horizons_hours,
        opts.ttf_cap_hours,
        None,
    );
    let (train_m, test_m) = split_machines(&m.machines, test_share, opts.seed ^ 0x7e57);
    let is_test: Vec<bool> = m.machines.iter().map(|x| test_m.contains(x)).collect();
    let (t0, t1) = (
        m.rows.iter().map(|r| r.t_ms).min().unwrap_or(0),
        m.rows.iter().map(|r| r.t_ms).max().unwrap_or(0) + 1,
    );
    // Origins at 40 %..90 % of the period: the first model has 40 % of the history.
    let cuts: Vec<i64> = (0..origins.max(1))
        .map(|k| t0 + ((t1 - t0) as f64 * (0.4 + 0.5 * k as f64 / origins.max(1) as f64)) as i64)
        .chain([t1])
        .collect();
    let nh = opts.horizons_hours.len();
    let mut rows: Vec<usize> = Vec::new();
    let mut pred = Predictions::default();
    let mut names: Vec<String> = Vec::new();
    let mut per_fold_methods: Vec<Vec<Method>> = Vec::new();
    for k in 0..cuts.len() - 1 {
        let (from, to) = (cuts[k], cuts[k + 1]);
        progress(k, cuts.len() - 1, &format!("origin {} of {}", k + 1, cuts.len() - 1));
        let cut = label(
            m,
            events,
            observed_until,
            &opts.horizons_hours,
            opts.ttf_cap_hours,
            Some(from),
        );
        let model = ForecastModel::train(
            m,
            &cut,
            events,
            Some(&train_m),
            fingerprints.clone(),
            opts,
            &mut |_, _, _| {},
        )?;
        let fold_rows: Vec<usize> = (0..m.len())
            .filter(|&r| is_test[m.rows[r].machine as usize] && m.rows[r].t_ms >= from && m.rows[r].t_ms < to)
            .collect();
        let p = model.predict_rows(m, &fold_rows);
        per_fold_methods.push(methods_for(&model, m, &fold_rows, &p));
        if names.is_empty() {
            names = model.modes.modes.clone();
        }
        // Mode probabilities of different folds may list modes differently: map by name.
        let map: Vec<usize> = model
            .modes
            .modes
            .iter()
            .map(|x| {
                names.iter().position(|n| n == x).unwrap_or_else(|| {
                    names.push(x.clone());
                    names.len() - 1
                })
            })
            .collect();
        for (i, &r) in fold_rows.iter().enumerate() {
            rows.push(r);
            let mut mp = vec![0.0; names.len()];
            for (j, &t) in map.iter().enumerate() {
                mp[t] = p.mode[i][j];
            }
            pred.mode.push(mp);
            pred.ttf.push(p.ttf[i]);
        }
        if pred.model.is_empty() {
            pred.model = vec![vec![]; nh];
            pred.logistic = vec![vec![]; nh];
        }
        for h in 0..nh {
            pred.model[h].extend(&p.model[h]);
            pred.logistic[h].extend(&p.logistic[h]);
        }
    }
    progress(cuts.len() - 1, cuts.len() - 1, "scoring");
    // Rows in machine-then-time order (fold by fold they are not): sort, carrying scores.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i]);
    let reorder = |v: &Vec<f64>| order.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let methods: Vec<Method> = (0..per_fold_methods.first().map_or(0, Vec::len))
        .map(|j| {
            let first = &per_fold_methods[0][j];
            let join = |f: &dyn Fn(&Method, usize) -> Vec<f64>| -> Vec<Vec<f64>> {
                (0..nh)
                    .map(|h| reorder(&per_fold_methods.iter().flat_map(|fold| f(&fold[j], h)).collect()))
                    .collect()
            };
            let scores = join(&|m, h| m.scores[h].clone());
            // Each fold alarms at its own thresholds.
            let alarms = join(&|m, h| m.alarms[h].iter().map(|&a| a as u8 as f64).collect())
                .into_iter()
                .map(|v| v.into_iter().map(|a| a > 0.5).collect())
                .collect();
            let same = per_fold_methods.iter().all(|f| f[j].thresholds == first.thresholds);
            Method {
                name: first.name.clone(),
                probabilistic: first.probabilistic,
                scores,
                alarms,
                thresholds: if same {
                    first.thresholds.clone()
                } else {
                    vec![f64::NAN; nh]
                },
            }
        })
        .collect();
    let rows_sorted: Vec<usize> = order.iter().map(|&i| rows[i]).collect();
    let pred_sorted = Predictions {
        model: pred.model.iter().map(&reorder).collect(),
        logistic: pred.logistic.iter().map(&reorder).collect(),
        mode: order.iter().map(|&i| pred.mode[i].clone()).collect(),
        ttf: order.iter().map(|&i| pred.ttf[i]).collect(),
    };
    let scores = score_methods(
        m,
        &rows_sorted,
        &full,
        events,
        &methods,
        &alarm_params(opts),
        resamples,
        opts.seed,
    );
    Ok(Evaluation {
        title: "Rolling-origin backtest".into(),
        description: format!(
            "{} origins; trained on {} machines with labels cut at each origin, scored on the other {} machines from that origin to the next.",
            cuts.len() - 1,
            train_m.len(),
            test_m.len()
        ),
        machines: test_m.len(),
        rows: rows_sorted,
        methods: scores,
        predictions: pred_sorted,
        mode_names: names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_precision_and_brier_on_small_cases() {
        // Perfect ranking: AP 1.
        let y = [true, true, false, false];
        assert!((pr_auc(&[0.9, 0.8, 0.2, 0.1], &y, None) - 1.0).abs() < 1e-12);
        // Worst ranking: positives last: AP = (1/2)(1/3) + (1/2)(2/4).
        let ap = pr_auc(&[0.1, 0.2, 0.8, 0.9], &y, None);
        assert!((ap - (0.5 / 3.0 + 0.5 * 0.5)).abs() < 1e-12, "{ap}");
        // Ties count together.
        assert!((pr_auc(&[0.5; 4], &y, None) - 0.5).abs() < 1e-12);
        assert!((brier(&[1.0, 0.0, 0.5, 0.5], &[true, false, true, false], None) - 0.125).abs() < 1e-12);
        // Weights: a weight of 2 is the row twice.
        let w = [2.0, 1.0, 1.0];
        let a = pr_auc(&[0.9, 0.5, 0.1], &[false, true, true], Some(&w));
        let b = pr_auc(&[0.9, 0.9, 0.5, 0.1], &[false, false, true, true], None);
        assert!((a - b).abs() < 1e-12);
    }

    #[test]
    fn weighted_median_and_bootstrap_draws() {
        let mut v = vec![(10.0, 1.0), (1.0, 1.0), (5.0, 1.0)];
        assert_eq!(weighted_median(&mut v), 5.0);
        let mut v = vec![(10.0, 5.0), (1.0, 1.0), (5.0, 1.0)];
        assert_eq!(weighted_median(&mut v), 10.0);
        let d = bootstrap_weights(7, 50, 3);
        assert!(d.iter().all(|w| w.iter().sum::<f64>() == 7.0));
        assert_ne!(d[0], d[1]);
    }
}
