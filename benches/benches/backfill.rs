//! Backfill throughput: a fleet's telemetry generated and written as the ingest
//! archive (Parquet, zstd), with the events table, fleet files and schedules.
//! Run: `cargo bench -p larmor-benches --bench backfill`
//!
//! Environment (defaults in brackets): `LARMOR_BENCH_MACHINES` [100],
//! `LARMOR_BENCH_DAYS` [365], `LARMOR_BENCH_RESOLUTION_S` [60],
//! `LARMOR_BENCH_THREADS` [0 = one per core], `LARMOR_BENCH_OUT` [a fresh
//! directory under the system temp dir, removed afterwards unless
//! `LARMOR_BENCH_KEEP=1`].

use larmor_benches::env;
use larmor_datasets::backfill::{self, BackfillConfig};
use std::time::{Duration, Instant};

fn main() {
    let machines: usize = env("LARMOR_BENCH_MACHINES", 100);
    let days: u32 = env("LARMOR_BENCH_DAYS", 365);
    let resolution_s: u64 = env("LARMOR_BENCH_RESOLUTION_S", 60);
    let threads: usize = env("LARMOR_BENCH_THREADS", 0);
    let keep = std::env::var("LARMOR_BENCH_KEEP").is_ok_and(|v| v == "1");
    let out = std::env::var("LARMOR_BENCH_OUT")
        .map(Into::into)
        .unwrap_or_else(|_| std::env::temp_dir().join(format!("larmor-bench-backfill-{}", std::process::id())));
    let mut config = BackfillConfig::new(machines, days, Duration::from_secs(resolution_s), 7, &out);
    config.threads = threads;
    config.overwrite = true;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "backfill: {machines} machines x {days} days at {resolution_s}s ({} readings nominal) into {}, {cores} cores",
        config.nominal_readings(),
        out.display(),
    );
    let started = Instant::now();
    let mut last_report = Instant::now();
    let result = backfill::generate(&config, &mut |done, total| {
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            println!(
                "  {:>5.1}% after {:.0}s",
                100.0 * done as f64 / total.max(1) as f64,
                started.elapsed().as_secs_f64()
            );
        }
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("backfill failed: {e}");
            std::process::exit(1);
        }
    };
    let secs = report.elapsed.as_secs_f64();
    let rate = report.readings as f64 / secs;
    println!(
        "backfill: {} readings in {:.1}s wall = {:.2} M readings/s; archive {:.1} MB in {} files ({:.2} bytes/reading), \
         {:.1} MB written in all, {} events",
        report.readings,
        secs,
        rate / 1e6,
        report.archive_bytes as f64 / 1e6,
        report.archive_files,
        report.archive_bytes as f64 / report.readings.max(1) as f64,
        report.total_bytes as f64 / 1e6,
        report.events,
    );
    println!(
        "backfill: {} worker threads; summed over them: {:.1}s simulating, {:.1}s encoding and writing files",
        report.threads,
        report.simulate_time.as_secs_f64(),
        report.write_time.as_secs_f64(),
    );
    let target = 100.0 * 365.0 * 1440.0 * 31.0;
    println!(
        "backfill: at this rate 100 machines x 365 days x 1 min ({:.2} G readings) takes {:.0}s (target: under 120s)",
        target / 1e9,
        target / rate
    );
    if !keep && std::env::var("LARMOR_BENCH_OUT").is_err() {
        let _ = std::fs::remove_dir_all(&out);
    }
}
