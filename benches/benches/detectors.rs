//! Detector throughput on one core: each kernel on a plain `(timestamp, value)`
//! series, the generic ensemble (what `larmor detect` scores a series with),
//! `larmor detect` itself on a 100k-row CSV file (time and peak memory), and the
//! whole `DetectorSet` on simulated frames (what `larmor run` runs).
//! Run: `cargo bench -p larmor-benches --bench detectors`
//! (`LARMOR_BENCH_ONLY=robust,DetectorSet` runs only the figures whose names start so).
//!
//! Each figure runs 5 times from a fresh state, on one thread; it prints the
//! best run (the one least disturbed by other work on the machine) and the
//! median.

use larmor_analytics::DetectorSet;
use larmor_analytics::detect::DetectConfig;
use larmor_analytics::detect::batch::{self, CsvColumns, DetectOptions, Sinks};
use larmor_analytics::detect::drift::DriftKernel;
use larmor_analytics::detect::ensemble::{Ensemble, EnsembleConfig};
use larmor_analytics::detect::multivariate::MahalanobisKernel;
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
    kernel::<SensorFaultKernel>("sensor_fault", &c.sensor_fault.settings.params(), &data);
    kernel::<DriftKernel>("drift (EWMA+CUSUM)", &c.drift.settings, &data);
    kernel::<RateKernel>("rate", &c.rate.settings, &data);
    kernel::<BandGrowthKernel>("vibration (band growth)", &c.vibration.settings, &data);
    kernel::<RobustKernel>("robust (median/MAD 64)", &c.robust.settings, &data);

    for dim in [2, 3] {
        if !selected(&format!("multivariate ({dim} ch)")) {
            continue;
        }
        let p = c.multivariate.settings.params(dim);
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

    if selected("ensemble") {
        // The generic detector of `larmor detect`: a quarter of the series (it is much slower).
        let part = &data[..N / 4];
        measure("ensemble (larmor detect)", part.len(), || {
            let mut e = Ensemble::new(EnsembleConfig::default());
            let mut acc = 0.0;
            for &(t, v) in part {
                acc += e.update(t, v);
            }
            black_box(acc);
        });
    }

    if selected("larmor detect") {
        detect_csv(&c, &data);
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

/// `larmor detect --input` on CSV files of 100k and 1M rows (ISO timestamps,
/// two decimals), read from and written to files as the command does: wall time
/// per file, and how much the process's memory grew while scoring (the peak
/// is reset before each run): the same for both sizes, constant memory.
fn detect_csv(c: &DetectConfig, data: &[(i64, f64)]) {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("a temporary directory");
    for rows in [100_000usize, 1_000_000] {
        let input = dir.path().join(format!("series-{rows}.csv"));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input).expect("create the CSV"));
        writeln!(w, "timestamp,value").expect("write");
        for &(t, v) in &data[..rows] {
            let when = chrono::DateTime::from_timestamp_millis(t).expect("a valid time");
            writeln!(w, "{},{v:.2}", when.format("%Y-%m-%dT%H:%M:%S%.3fZ")).expect("write");
        }
        w.flush().expect("write");
        drop(w);
        let output = dir.path().join("scores.csv");
        let (mut best, mut grew) = (f64::INFINITY, 0.0f64);
        for _ in 0..RUNS {
            let before = memory_mb("VmRSS:");
            reset_peak_memory();
            let start = Instant::now();
            let n = batch::count_rows(&input).expect("count rows");
            let reader = std::io::BufReader::new(std::fs::File::open(&input).expect("open the CSV"));
            let sinks = Sinks {
                scores: Box::new(std::io::BufWriter::new(std::fs::File::create(&output).expect("create"))),
                episodes: None,
            };
            let r = batch::score_csv(
                reader,
                sinks,
                &CsvColumns::default(),
                c,
                &DetectOptions::default(),
                Some(n),
            )
            .expect("score the CSV");
            assert_eq!(r.rows, rows as u64);
            best = best.min(start.elapsed().as_secs_f64());
            grew = grew.max(memory_mb("VmHWM:") - before);
        }
        println!(
            "detectors/larmor detect ({rows} rows)  {best:>6.3} s best of {RUNS}; memory grew by at most {grew:.1} MB"
        );
    }
}

/// A line of `/proc/self/status` (`VmRSS:`, `VmHWM:`), MB; 0 where unavailable.
fn memory_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets the process's peak resident memory to the current one (Linux).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
