//! The evaluation suite: series of every category from a range of seeds,
//! scored by `larmor detect`'s generic ensemble and by the rolling z-score
//! baseline, tallied with the windowed rule of [`super::nab`].

use super::baseline::RollingZ;
use super::generators::{Category, Series, generate};
use super::nab::{self, Tally};
use larmor_analytics::detect::ensemble::{Ensemble, EnsembleConfig, Probation};
use std::collections::BTreeMap;

/// Seeds used while developing, and the fresh ones the reported figures use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeds {
    Development,
    Report,
}

impl Seeds {
    fn first(self) -> u64 {
        match self {
            Seeds::Development => 1,
            Seeds::Report => 7_000_001,
        }
    }
}

/// The baseline's window (chosen on development seeds, its best of 20..400).
pub const BASELINE_WINDOW: usize = 100;

/// `per_category` generated series of each category.
pub fn generated(seeds: Seeds, per_category: usize, only: Option<Category>) -> Vec<Series> {
    let mut out = Vec::new();
    for c in Category::GENERATED {
        if only.is_some_and(|o| o != c) {
            continue;
        }
        for k in 0..per_category as u64 {
            out.push(generate(c, seeds.first() + k));
        }
    }
    out
}

/// Scores of one series by the ensemble (probation: the first 15 %, as `larmor detect` does for a file).
pub fn larmor_scores(s: &Series) -> Vec<f64> {
    let mut e = Ensemble::new(EnsembleConfig {
        probation: Probation::Readings((nab::PROBATION * s.values.len() as f64) as u64),
    });
    s.ts.iter().zip(&s.values).map(|(&t, &v)| e.update(t, v)).collect()
}

pub fn baseline_scores(s: &Series, window: usize) -> Vec<f64> {
    let mut z = RollingZ::new(window);
    s.values.iter().map(|&v| z.update(v)).collect()
}

/// Tallies per category at `threshold`.
pub fn tally(series: &[Series], scores: &[Vec<f64>], threshold: f64) -> BTreeMap<Category, Tally> {
    let mut by: BTreeMap<Category, Tally> = BTreeMap::new();
    for (s, sc) in series.iter().zip(scores) {
        let alarm: Vec<bool> = sc.iter().map(|&x| x >= threshold).collect();
        by.entry(s.category).or_default().add(&nab::score(&alarm, &s.labels));
    }
    by
}

pub fn overall(by: &BTreeMap<Category, Tally>) -> Tally {
    let mut t = Tally::default();
    for v in by.values() {
        t.add(v);
    }
    t
}

/// The threshold among `candidates` with the best overall score, and that score.
pub fn best_threshold(series: &[Series], scores: &[Vec<f64>], candidates: &[f64]) -> (f64, f64) {
    let mut best = (f64::NAN, f64::NEG_INFINITY);
    for &t in candidates {
        let s = overall(&tally(series, scores, t)).normalised().unwrap_or(0.0);
        if s > best.1 {
            best = (t, s);
        }
    }
    best
}

/// Readings at or above `threshold`, and readings, over the series of the quiet categories (all readings).
pub fn quiet_rate(series: &[Series], scores: &[Vec<f64>], threshold: f64) -> (usize, usize) {
    let (mut above, mut total) = (0, 0);
    for (s, sc) in series.iter().zip(scores) {
        if s.category.is_quiet() {
            above += sc.iter().filter(|&&x| x >= threshold).count();
            total += sc.len();
        }
    }
    (above, total)
}
