#![allow(dead_code)] // (the suite's modules are shared with the eval example; not every item is used here)

//! A small slice of the detection evaluation (`analytics/eval/`, run in full
//! with `cargo run --release -p larmor-analytics --example eval`): a few
//! generated series of every category, scored by the generic ensemble and by
//! the rolling z-score baseline. Loose bounds: the full suite's figures are in
//! analytics/README.md.

#[path = "../eval/baseline.rs"]
mod baseline;
#[path = "../eval/generators.rs"]
mod generators;
#[path = "../eval/nab.rs"]
mod nab;
#[path = "../eval/suite.rs"]
mod suite;

use suite::Seeds;

#[test]
fn the_ensemble_beats_the_rolling_z_score_and_stays_quiet_on_normal_series() {
    let series = suite::generated(Seeds::Development, 3, None);
    let larmor: Vec<Vec<f64>> = series.iter().map(suite::larmor_scores).collect();
    let zscore: Vec<Vec<f64>> = series
        .iter()
        .map(|s| suite::baseline_scores(s, suite::BASELINE_WINDOW))
        .collect();
    for (s, sc) in series.iter().zip(&larmor) {
        assert_eq!(sc.len(), s.values.len());
        assert!(
            sc.iter().all(|x| (0.0..=1.0).contains(x)),
            "{}: a score out of range",
            s.name
        );
    }
    let ours = suite::overall(&suite::tally(&series, &larmor, 0.5))
        .normalised()
        .unwrap();
    let grid: Vec<f64> = (0..60).map(|k| 2.0 * 1.05f64.powi(k)).collect();
    let (_, theirs) = suite::best_threshold(&series, &zscore, &grid);
    assert!(ours > 50.0, "the ensemble scores {ours:.1}");
    assert!(
        ours > theirs,
        "the ensemble scores {ours:.1}, the z-score at its best threshold {theirs:.1}"
    );
    let (above, total) = suite::quiet_rate(&series, &larmor, 0.5);
    assert!(
        above * 1000 < total,
        "{above} of {total} readings of series without anomalies alarm"
    );
}
