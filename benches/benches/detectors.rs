//! Detector throughput on one core: each kernel on a plain `(timestamp, value)`
//! series (what `larmor detect` runs), the four univariate kernels together,
//! and the whole `DetectorSet` on simulated frames (what `larmor run` runs).
//! Run: `cargo bench -p larmor-benches --bench detectors`
//! (`LARMOR_BENCH_ONLY=robust,DetectorSet` runs only the figures whose names start so).
//!
//! Each figure runs 5 times from a fresh state, on one thread; it prints the
//! best run (the one least disturbed by other work on the machine) and the
//! median.

use larmor_analytics::DetectorSet;
use larmor_analytics::detect::DetectConfig;
use larmor_analytics::detect::batch::SeriesScorer;
use larmor_analytics::detect::drift::DriftKernel;
use larmor_analytics::detect::multivariate::{MahalanobisKernel, MultivariateParams};
use larmor_analytics::detect::rate::RateKernel;
use larmor_analytics::detect::robust::RobustKernel;
use larmor_analytics::detect::sensor_fault::SensorFaultKernel;
use larmor_analytics::detect::series::Kernel;
use larmor_analytics::detect::vibration::BandGrowthKernel;
use larmor_datasets::{Fleet, Simulator};
use std::hint::black_box;
use std::time::Instant;

const N: usize = 4_000_000;

/// A 10 Hz sensor: a slow daily cycle, quantised noise.
fn series() -> Vec<(i64, f64)> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    (0..N)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.1;
            let t = i as f64 / 864_000.0;
            let v = 20.0 + (std::f64::consts::TAU * t).sin() + noise;
            (1_764_288_000_000 + i as i64 * 100, (v * 100.0).round() / 100.0)
        })
        .collect()
}

/// Repetitions of each figure (fresh state each time).
const RUNS: usize = 5;

/// Whether `LARMOR_BENCH_ONLY` (comma-separated name prefixes) selects `name`.
fn selected(name: &str) -> bool {
    match std::env::var("LARMOR_BENCH_ONLY") {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|p| name.starts_with(p.trim())),
        _ => true,
    }
}

/// Runs `run` (which handles `readings` readings) [`RUNS`] times and prints the
/// best rate (the least disturbed by whatever else the machine runs) and the median.
fn measure(name: &str, readings: usize, mut run: impl FnMut()) {
    let mut secs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64()
        })
        .collect();
    secs.sort_by(f64::total_cmp);
    let rate = |s: f64| readings as f64 / s / 1e6;
    println!(
        "detectors/{name:<23} {:>7.1} M readings/s per core  (median of {RUNS}: {:.1})",
        rate(secs[0]),
        rate(secs[RUNS / 2])
    );
}

fn kernel<K: Kernel>(name: &str, config: &K::Config, data: &[(i64, f64)]) {
    if !selected(name) {
        return;
    }
    measure(name, data.len(), || {
        let mut k = K::new(config);
        let mut acc = 0.0;
        for &(t, v) in data {
            acc += k.update(t, v);
        }
        black_box(acc);
    });
}

fn main() {
    let c = DetectConfig::default();
    let data = series();
    println!("one series of {N} readings at 10 Hz, one core:");
    kernel::<SensorFaultKernel>("sensor_fault", &c.sensor_fault.params(), &data);
    kernel::<DriftKernel>("drift (EWMA+CUSUM)", &c.drift.params(), &data);
    kernel::<RateKernel>("rate", &c.rate.params(), &data);
    kernel::<BandGrowthKernel>("vibration (band growth)", &c.vibration.params(), &data);
    kernel::<RobustKernel>("robust (median/MAD 64)", &c.robust.params(), &data);

    for dim in [2, 3] {
        if !selected(&format!("multivariate ({dim} ch)")) {
            continue;
        }
        let p = MultivariateParams {
            dim,
            smoothing: c.multivariate.smoothing,
            baseline_half_life: c.multivariate.baseline_half_life,
            threshold: c.multivariate.threshold,
            warm_up: c.multivariate.warm_up,
            relearn_after: c.multivariate.relearn_after,
        };
        let instants = N / dim;
        measure(&format!("multivariate ({dim} ch)"), instants * dim, || {
            let mut k = MahalanobisKernel::new(&p);
            let mut acc = 0.0;
            let mut vals = [0.0; 3];
            for i in 0..instants {
                let (t, v) = data[i];
                for (j, x) in vals.iter_mut().enumerate().take(dim) {
                    *x = v * (1.0 + 0.1 * j as f64) + data[(i + j * 7) % N].1 * 0.01;
                }
                acc += k.update(t, &vals[..dim]);
            }
            black_box(acc);
        });
    }

    if selected("series set (4 kernels)") {
        measure("series set (4 kernels)", N, || {
            let mut scorer = SeriesScorer::new(&c).unwrap();
            let mut acc = 0.0;
            for &(t, v) in &data {
                acc += scorer.score(t, v);
            }
            black_box(acc);
        });
    }

    if !selected("DetectorSet (frames)") {
        return;
    }
    // The pipeline path: every detector on simulated frames of 20 machines, 5 samples per frame.
    let mut sim = Simulator::new(Fleet::generate(20, 7), 7);
    let frames: Vec<_> = (0..2000)
        .flat_map(|k| sim.frames(1_764_288_000_000 + k * 500, 5, 100))
        .collect();
    let readings: usize = frames.iter().map(|f| f.reading_count()).sum();
    measure("DetectorSet (frames)", readings, || {
        let mut set = DetectorSet::from_config(&c).unwrap();
        let mut out = Vec::new();
        for f in &frames {
            set.observe(f, &mut out);
        }
        black_box(&out);
    });
}
