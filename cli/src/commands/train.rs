//! `larmor train`: feature rows from an archive, labels from an events table, and
//! the forecasting model written as JSON.

use anyhow::Context;
use larmor_models::data::{self, Stage};
use larmor_models::features::FeatureOptions;
use larmor_models::labels::label;
use larmor_models::model::{ForecastModel, TrainOptions};
use std::path::PathBuf;

/// Options of `larmor train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// The archive directory (`archive/` of a data directory: `date=YYYY-MM-DD/stream=<stream>/*.parquet`).
    /// Its `anomalies` table, if present beside it, adds anomaly-count features.
    #[arg(long)]
    archive: PathBuf,
    /// Events table, CSV or Parquet: `machine_id, time, kind[, mode]` (kind `failure` or
    /// `maintenance`), or `events.parquet`/`events.csv` from `larmor dataset generate`.
    #[arg(long)]
    events: PathBuf,
    /// Where to write the model (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Hours between two feature rows of a machine.
    #[arg(long, default_value_t = 6)]
    stride_hours: usize,
    /// Horizons in hours, comma-separated.
    #[arg(long, default_value = "24,72,168", value_delimiter = ',')]
    horizons: Vec<u32>,
    /// Time-to-failure targets are capped here (hours).
    #[arg(long, default_value_t = 720.0)]
    ttf_cap_hours: f64,
    /// Alarm thresholds keep false alarms per machine-year on held-out training machines under this.
    #[arg(long, default_value_t = 0.5)]
    false_alarm_budget: f64,
    /// Boosted trees per classifier.
    #[arg(long, default_value_t = 150)]
    trees: usize,
    /// Iterations of the logistic-regression baseline's optimiser.
    #[arg(long, default_value_t = TrainOptions::default().logistic_iterations)]
    logistic_iterations: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl TrainArgs {
    pub fn options(&self) -> anyhow::Result<TrainOptions> {
        let mut horizons = self.horizons.clone();
        horizons.sort_unstable();
        horizons.dedup();
        anyhow::ensure!(
            !horizons.is_empty() && horizons[0] > 0,
            "--horizons needs at least one positive number of hours"
        );
        anyhow::ensure!(self.stride_hours > 0, "--stride-hours must be at least 1");
        Ok(TrainOptions {
            horizons_hours: horizons,
            ttf_cap_hours: self.ttf_cap_hours,
            features: FeatureOptions {
                stride_hours: self.stride_hours,
                ..Default::default()
            },
            false_alarm_budget: self.false_alarm_budget,
            trees: self.trees,
            logistic_iterations: self.logistic_iterations,
            seed: self.seed,
            ..Default::default()
        })
    }
}

/// A progress bar for the stages of loading and training (hidden with `quiet`).
pub struct Bar(indicatif::ProgressBar);

impl Bar {
    pub fn new(quiet: bool) -> Bar {
        let bar = if quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(1)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Bar(bar)
    }
    pub fn stage(&self, prefix: &str, done: usize, total: usize, msg: &str) {
        if self.0.length() != Some(total as u64) {
            self.0.set_length(total as u64);
        }
        self.0.set_prefix(prefix.to_string());
        self.0.set_position(done as u64);
        self.0.set_message(msg.to_string());
    }
    pub fn load_stage(&self, s: Stage, done: usize, total: usize) {
        match s {
            Stage::Scan => self.stage("archive", done, total, "days"),
            Stage::Features => self.stage("features", done, total, ""),
        }
    }
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let opts = args.options()?;
    let bar = Bar::new(args.quiet);
    let started = std::time::Instant::now();
    let data = data::load(&args.archive, &args.events, &opts.features, &mut |s, d, n| {
        bar.load_stage(s, d, n)
    })?;
    let labels = label(
        &data.matrix,
        &data.events,
        &data.observed_until,
        &opts.horizons_hours,
        opts.ttf_cap_hours,
        None,
    );
    let model = ForecastModel::train(
        &data.matrix,
        &labels,
        &data.events,
        None,
        data.fingerprints.clone(),
        &opts,
        &mut |d, n, what| bar.stage("training", d, n, what),
    )?;
    bar.finish();
    model
        .save(&args.out)
        .with_context(|| format!("writing the model to {}", args.out.display()))?;
    let md = &model.metadata;
    eprintln!(
        "trained {} on {} machines, {} rows × {} features ({} failures, {} .. {}){} in {:.1} s: {}",
        model.name,
        md.machines.len(),
        md.rows,
        md.features,
        md.failures,
        md.data_from,
        md.data_until,
        if data.anomalies {
            ""
        } else {
            ", without the anomalies table (run `larmor detect --archive` to add it)"
        },
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    eprintln!(
        "  archive scan {:.1} s ({} readings), feature rows {:.1} s, training {:.1} s ({})",
        data.scan_seconds,
        data.readings,
        data.feature_seconds,
        md.seconds,
        md.step_seconds
            .iter()
            .map(|(what, s)| format!("{what} {s:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for c in &md.calibration_metrics {
        eprintln!(
            "  {:>4} h on the {} calibration machines: PR-AUC {:.3} (logistic {:.3}), Brier {:.4}, failure recall {:.2}, false alarms {:.2}/machine-year",
            c.horizon_hours,
            md.calibration_machines.len(),
            c.pr_auc,
            c.logistic_pr_auc,
            c.brier,
            c.failure_recall,
            c.false_alarms_per_machine_year
        );
    }
    Ok(())
}
