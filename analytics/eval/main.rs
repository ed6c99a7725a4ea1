//! The detection evaluation: labelled series of every category (generated,
//! plus channels of the MRI simulator), scored by `larmor detect`'s generic
//! ensemble and by a rolling z-score, with the windowed rule of the Numenta
//! Anomaly Benchmark. Prints a per-category table for each.
//!
//! ```sh
//! cargo run --release -p larmor-analytics --example eval              # the reported figures (fresh seeds)
//! cargo run --release -p larmor-analytics --example eval -- --dev      # the seeds used while developing
//! ```
//! Options: `--per-category N` (default 12), `--only NAME` (one category),
//! `--dump DIR` (each series with both scores as CSV), `--baseline-window W`.

mod baseline;
mod generators;
mod nab;
mod simulated;
mod suite;

use generators::{Category, Series};
use nab::Tally;
use std::collections::BTreeMap;
use std::time::Instant;
use suite::Seeds;

/// `larmor detect`'s documented alarm level.
const LARMOR_THRESHOLD: f64 = 0.5;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds = if args.iter().any(|a| a == "--dev") {
        Seeds::Development
    } else {
        Seeds::Report
    };
    let per: usize = arg(&args, "--per-category").and_then(|s| s.parse().ok()).unwrap_or(12);
    let window: usize = arg(&args, "--baseline-window")
        .and_then(|s| s.parse().ok())
        .unwrap_or(suite::BASELINE_WINDOW);
    let only = arg(&args, "--only");
    let pick = |c: Category| {
        only.as_deref()
            .is_none_or(|o| c.name().replace(' ', "-").starts_with(o))
    };

    let started = Instant::now();
    let mut series: Vec<Series> = suite::generated(seeds, per, None)
        .into_iter()
        .filter(|s| pick(s.category))
        .collect();
    if pick(Category::Simulator) {
        series.extend(simulated::series(seeds, per));
    }
    let generated_in = started.elapsed();
    let readings: usize = series.iter().map(|s| s.values.len()).sum();

    let started = Instant::now();
    let larmor: Vec<Vec<f64>> = series.iter().map(suite::larmor_scores).collect();
    let larmor_secs = started.elapsed().as_secs_f64();
    let zscore: Vec<Vec<f64>> = series.iter().map(|s| suite::baseline_scores(s, window)).collect();

    if let Some(dir) = arg(&args, "--dump") {
        dump(&dir, &series, &larmor, &zscore);
    }

    let larmor_grid: Vec<f64> = (5..100).map(|k| k as f64 / 100.0).collect();
    let z_grid: Vec<f64> = (0..120).map(|k| 1.5 * 1.03f64.powi(k)).collect();
    let (lb_t, lb_s) = suite::best_threshold(&series, &larmor, &larmor_grid);
    let (zb_t, zb_s) = suite::best_threshold(&series, &zscore, &z_grid);
    let at_default = suite::tally(&series, &larmor, LARMOR_THRESHOLD);
    let at_best = suite::tally(&series, &larmor, lb_t);
    let z = suite::tally(&series, &zscore, zb_t);

    println!(
        "{} series, {readings} readings ({} seeds), generated in {:.1} s; the ensemble scored them in {:.2} s ({:.1} M readings/s)\n",
        series.len(),
        if seeds == Seeds::Report {
            "report"
        } else {
            "development"
        },
        generated_in.as_secs_f64(),
        larmor_secs,
        readings as f64 / larmor_secs / 1e6
    );
    println!(
        "| category | series | windows | larmor (alarm at {LARMOR_THRESHOLD}) | larmor (best threshold {lb_t:.2}) | rolling z-score (window {window}, best threshold {zb_t:.2}) |"
    );
    println!("|---|---:|---:|---|---|---|");
    let count = |c: Category| series.iter().filter(|s| s.category == c).count();
    for (c, t) in &at_default {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            c.name(),
            count(*c),
            t.windows,
            cell(t),
            cell(&at_best[c]),
            cell(&z[c])
        );
    }
    let (a, b, zz) = (
        suite::overall(&at_default),
        suite::overall(&at_best),
        suite::overall(&z),
    );
    println!(
        "| **overall** | {} | {} | **{}** | **{}** | **{}** |",
        series.len(),
        a.windows,
        cell(&a),
        cell(&b),
        cell(&zz)
    );
    debug_assert!((b.normalised().unwrap_or(0.0) - lb_s).abs() < 1e-9);
    debug_assert!((zz.normalised().unwrap_or(0.0) - zb_s).abs() < 1e-9);
    let quiet = |scores: &[Vec<f64>], t: f64| {
        let (above, total) = suite::quiet_rate(&series, scores, t);
        format!(
            "{above} of {total} ({:.3} per 1000)",
            1000.0 * above as f64 / total.max(1) as f64
        )
    };
    println!(
        "\nReadings at or above the threshold on the series without anomalies: larmor at {LARMOR_THRESHOLD}: {}; at {lb_t:.2}: {}; z-score at {zb_t:.2}: {}",
        quiet(&larmor, LARMOR_THRESHOLD),
        quiet(&larmor, lb_t),
        quiet(&zscore, zb_t)
    );
    let by_series: BTreeMap<&str, f64> = series
        .iter()
        .zip(&larmor)
        .filter(|(s, _)| !s.labels.is_empty())
        .map(|(s, sc)| {
            let alarm: Vec<bool> = sc.iter().map(|&x| x >= LARMOR_THRESHOLD).collect();
            (
                s.name.as_str(),
                nab::score(&alarm, &s.labels).normalised().unwrap_or(0.0),
            )
        })
        .collect();
    if args.iter().any(|a| a == "--worst") {
        let mut v: Vec<_> = by_series.into_iter().collect();
        v.sort_by(|a, b| a.1.total_cmp(&b.1));
        for (name, s) in v.iter().take(15) {
            println!("  {name}: {s:.1}");
        }
    }
}

/// `score (detected/windows, false alarms)`, or the false alarms alone without windows.
fn cell(t: &Tally) -> String {
    match t.normalised() {
        Some(s) => format!("{s:.1} ({}/{}, {} FA)", t.detected, t.windows, t.false_alarms),
        None => format!("{} FA in {} readings ({:+.2})", t.false_alarms, t.readings, t.raw),
    }
}

fn dump(dir: &str, series: &[Series], larmor: &[Vec<f64>], zscore: &[Vec<f64>]) {
    std::fs::create_dir_all(dir).expect("create the dump directory");
    for ((s, l), z) in series.iter().zip(larmor).zip(zscore) {
        let mut text = String::from("timestamp,value,label,larmor,zscore\n");
        for i in 0..s.values.len() {
            text.push_str(&format!(
                "{},{},{},{:.4},{:.3}\n",
                s.ts[i],
                s.values[i],
                u8::from(s.labels.contains(&i)),
                l[i],
                z[i]
            ));
        }
        std::fs::write(format!("{dir}/{}.csv", s.name), text).expect("write a dump");
    }
}
