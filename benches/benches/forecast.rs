//! Forecasting cost: feature extraction (polars scan of the archive, hourly
//! aggregates, feature rows) plus training (boosted trees, logistic regression,
//! mode classifier, time-to-failure regressor) on a generated fleet.
//! Run: `cargo bench -p larmor-benches --bench forecast`
//!
//! Environment (defaults in brackets): `LARMOR_BENCH_MACHINES` [100],
//! `LARMOR_BENCH_DAYS` [365], `LARMOR_BENCH_RESOLUTION_S` [60], `LARMOR_BENCH_SEED`
//! [11], `LARMOR_BENCH_DATA` [a fresh directory under the system temp dir; when it
//! already holds a generated dataset (events.parquet) it is reused, and it is kept],
//! `LARMOR_BENCH_STRIDE_H` [6].
//! Reports wall and CPU seconds per stage and the process's peak RSS (VmHWM). The
//! dataset generation is not counted. Target: feature extraction + training of
//! 100 machines x 1 year at 1 minute in <= 60 s.

use larmor_benches::{cpu_seconds, env};
use larmor_datasets::backfill::{self, BackfillConfig};
use larmor_models::data::{self, Stage};
use larmor_models::features::FeatureOptions;
use larmor_models::labels::label;
use larmor_models::model::{ForecastModel, TrainOptions};
use std::time::{Duration, Instant};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let machines: usize = env("LARMOR_BENCH_MACHINES", 100);
    let days: u32 = env("LARMOR_BENCH_DAYS", 365);
    let resolution_s: u64 = env("LARMOR_BENCH_RESOLUTION_S", 60);
    let seed: u64 = env("LARMOR_BENCH_SEED", 11);
    let stride: usize = env("LARMOR_BENCH_STRIDE_H", 6);
    let given = std::env::var("LARMOR_BENCH_DATA").ok();
    let dir = given
        .clone()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("larmor-bench-forecast-{}", std::process::id())));
    if !dir.join("events.parquet").is_file() {
        println!(
            "forecast: generating {machines} machines x {days} days at {resolution_s}s (seed {seed}) into {}",
            dir.display()
        );
        let mut config = BackfillConfig::new(machines, days, Duration::from_secs(resolution_s), seed, &dir);
        config.overwrite = true;
        if let Err(e) = backfill::generate(&config, &mut |_, _| {}) {
            eprintln!("generation failed: {e}");
            std::process::exit(1);
        }
    } else {
        println!("forecast: reusing the dataset in {}", dir.display());
    }
    let rss_before = peak_rss_mib();
    let (wall0, cpu0) = (Instant::now(), cpu_seconds());
    let opts = TrainOptions {
        features: FeatureOptions {
            stride_hours: stride,
            ..Default::default()
        },
        ..Default::default()
    };
    let loaded = data::load(
        &dir.join("archive"),
        &dir.join("events.parquet"),
        &opts.features,
        &mut |s, d, n| {
            if s == Stage::Scan && d > 0 && d % 60 == 0 {
                println!("  scanned {d}/{n} days after {:.1}s", wall0.elapsed().as_secs_f64());
            }
        },
    );
    let loaded = match loaded {
        Ok(d) => d,
        Err(e) => {
            eprintln!("feature extraction failed: {e}");
            std::process::exit(1);
        }
    };
    let (wall1, cpu1) = (Instant::now(), cpu_seconds());
    let labels = label(
        &loaded.matrix,
        &loaded.events,
        &loaded.observed_until,
        &opts.horizons_hours,
        opts.ttf_cap_hours,
        None,
    );
    let model = ForecastModel::train(
        &loaded.matrix,
        &labels,
        &loaded.events,
        None,
        loaded.fingerprints.clone(),
        &opts,
        &mut |_, _, _| {},
    );
    let model = match model {
        Ok(m) => m,
        Err(e) => {
            eprintln!("training failed: {e}");
            std::process::exit(1);
        }
    };
    let (wall2, cpu2) = (Instant::now(), cpu_seconds());
    let total = wall2.duration_since(wall0).as_secs_f64();
    println!(
        "forecast: {} readings -> {} rows x {} features; archive scan {:.1}s, feature rows {:.1}s \
         (extraction {:.1}s wall, {:.1}s CPU); training {:.1}s wall, {:.1}s CPU",
        loaded.readings,
        loaded.matrix.len(),
        loaded.matrix.width(),
        loaded.scan_seconds,
        loaded.feature_seconds,
        wall1.duration_since(wall0).as_secs_f64(),
        cpu1 - cpu0,
        wall2.duration_since(wall1).as_secs_f64(),
        cpu2 - cpu1,
    );
    println!(
        "forecast: feature extraction + training {total:.1}s wall (target <= 60 s: {}), peak RSS {:.0} MiB \
         (before: {rss_before:.0} MiB); {} failures, model {}",
        if total <= 60.0 { "met" } else { "NOT met" },
        peak_rss_mib(),
        loaded.events.failure_count(),
        model.name
    );
    if given.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
