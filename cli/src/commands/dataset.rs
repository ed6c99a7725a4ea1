//! `larmor dataset`: generate synthetic datasets (a backfilled archive in the
//! ingest layout, with ground-truth events, the fleet and its scan schedules).

use anyhow::Context;
use larmor_datasets::backfill::{self, BackfillConfig};
use larmor_datasets::{sample, time};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum DatasetCommand {
    /// Generate a dataset under --out: `archive/` (Parquet, readable with `larmor query --archive`),
    /// `events.csv`/`events.parquet` (ground truth), `machines.csv`, `service_history.csv`,
    /// `devices.toml` and `schedules/*.ics`. The same settings always give the same files.
    Generate(GenerateArgs),
}

/// Options of `larmor dataset generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Number of machines.
    #[arg(long, default_value_t = 100)]
    machines: usize,
    /// Number of days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Time between readings (e.g. `10s`, `1m`, `5m`); must divide a day.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    resolution: Duration,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// First day (UTC), `YYYY-MM-DD`.
    #[arg(long, default_value = larmor_datasets::fleet::DEFAULT_START)]
    start: String,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Threads encoding files (default: twice the cores). The output does not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Replace a dataset generated earlier in --out (only the files a dataset consists of).
    #[arg(long)]
    force: bool,
    /// Generate a preset instead; `sample` is the shipped sample (datasets/sample),
    /// and overrides --machines, --days, --resolution, --seed and --start.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Preset {
    /// 12 machines, 75 days at 5 minutes, every failure mode and sensor fault on purpose.
    Sample,
}

pub fn dataset(cmd: DatasetCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetCommand::Generate(args) => generate(args),
    }
}

fn generate(a: GenerateArgs) -> anyhow::Result<()> {
    let mut config = match a.preset {
        Some(Preset::Sample) => sample::config(&a.out),
        None => {
            let start = time::parse_date(&a.start).with_context(|| {
                format!(
                    "--start {:?} is not a date; write it as YYYY-MM-DD, e.g. 2025-01-01",
                    a.start
                )
            })?;
            let mut c = BackfillConfig::new(a.machines, a.days, a.resolution, a.seed, &a.out);
            c.start_day = start;
            c
        }
    };
    config.threads = a.threads.unwrap_or(0);
    config.overwrite = a.force;
    config.validate()?;
    println!(
        "generating {} machines x {} days from {} at {}s resolution (seed {}) into {}",
        config.machines,
        config.days,
        time::format_date(config.start_day),
        config.resolution.as_secs(),
        config.seed,
        config.out.display()
    );
    let report = if a.quiet {
        backfill::generate(&config, &mut |_, _| {})?
    } else {
        backfill::generate_with_progress_bar(&config)?
    };
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    println!(
        "wrote {} readings ({:.1} M/s) in {} archive files ({:.1} MB, {:.2} bytes/reading), {} events, {:.1} MB in all, in {:.1}s",
        report.readings,
        report.readings as f64 / secs / 1e6,
        report.archive_files,
        report.archive_bytes as f64 / 1e6,
        report.archive_bytes as f64 / report.readings.max(1) as f64,
        report.events,
        report.total_bytes as f64 / 1e6,
        secs
    );
    println!(
        "query it: larmor query --archive {} \"SELECT stream, count(*) FROM readings GROUP BY stream\"",
        config.out.join("archive").display()
    );
    Ok(())
}
