//! `larmor evaluate`: the model and its baselines scored without leakage, written as
//! a Markdown report with PNG plots.

use super::train::Bar;
use larmor_models::data;
use larmor_models::evaluate::{backtest, held_out};
use larmor_models::labels::label;
use larmor_models::model::ForecastModel;
use larmor_models::report::{ReportContext, write_report};
use std::path::PathBuf;

/// Options of `larmor evaluate`.
#[derive(clap::Args)]
pub struct EvaluateArgs {
    /// The archive to evaluate on (ideally another fleet than the one trained on).
    #[arg(long)]
    archive: PathBuf,
    /// Its events table (CSV or Parquet), as for `larmor train`.
    #[arg(long)]
    events: PathBuf,
    /// The model from `larmor train`: scored on the machines it never saw, and its
    /// options reused for the rolling-origin backtest.
    #[arg(long)]
    model: PathBuf,
    /// Report directory (report.md, metrics.json, PNG plots).
    #[arg(long)]
    out: PathBuf,
    /// Rolling origins of the backtest (0: no backtest).
    #[arg(long, default_value_t = 3)]
    origins: usize,
    /// Share of machines held out as the backtest's test set.
    #[arg(long, default_value_t = 0.5)]
    test_share: f64,
    /// Bootstrap resamples for the 95 % intervals.
    #[arg(long, default_value_t = 200)]
    resamples: usize,
    /// A line shown at the top of the report (e.g. "provisional: first-edition simulator").
    #[arg(long)]
    note: Option<String>,
    #[arg(long)]
    quiet: bool,
}

pub fn evaluate(args: EvaluateArgs) -> anyhow::Result<()> {
    let model = ForecastModel::load(&args.model)?;
    let opts = model.options.clone();
    let bar = Bar::new(args.quiet);
    let data = data::load(&args.archive, &args.events, &opts.features, &mut |s, d, n| {
        bar.load_stage(s, d, n)
    })?;
    let m = &data.matrix;
    model.check(m)?;
    let labels = label(
        m,
        &data.events,
        &data.observed_until,
        &opts.horizons_hours,
        opts.ttf_cap_hours,
        None,
    );
    bar.stage("held out", 0, 1, "scoring");
    let held = held_out(&model, m, &labels, &data.events, &data.fingerprints, args.resamples)?;
    let mut evaluations = Vec::new();
    if held.machines > 0 {
        evaluations.push((held, m, &labels));
    } else {
        eprintln!(
            "every machine of this archive was in the model's training set: no held-out scores (use another fleet)"
        );
    }
    if args.origins > 0 {
        let bt = backtest(
            m,
            &data.events,
            &data.observed_until,
            &data.fingerprints,
            &opts,
            args.origins,
            args.test_share,
            args.resamples,
            &mut |d, n, what| bar.stage("backtest", d, n, what),
        )?;
        evaluations.push((bt, m, &labels));
    }
    bar.finish();
    anyhow::ensure!(
        !evaluations.is_empty(),
        "nothing to evaluate: no held-out machines and --origins 0"
    );
    let times: Vec<i64> = m.rows.iter().map(|r| r.t_ms).collect();
    let fmt = |t: Option<&i64>| t.map(|&t| larmor_models::live::format_time(t)).unwrap_or_default();
    let ctx = ReportContext {
        archive: &args.archive,
        events: &args.events,
        model: &args.model,
        machines: m.machines.len(),
        period: (fmt(times.iter().min()), fmt(times.iter().max())),
        failures: data.events.failure_count(),
        note: args.note.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let path = write_report(&args.out, &ctx, &evaluations, &data.events)?;
    for (ev, _, _) in &evaluations {
        eprintln!("{}:", ev.title);
        for method in &ev.methods {
            if let Some(s) = method.horizons.last() {
                eprintln!(
                    "  {:<32} {:>4} h: failure recall {:.2} (visible precursor {:.2}), median lead {:.0} h, {:.2} false alarms/machine-year",
                    method.name,
                    s.hours,
                    s.failure_recall.value,
                    s.visible_failure_recall.value,
                    s.median_lead_hours.value,
                    s.false_alarms_per_machine_year.value
                );
            }
        }
    }
    eprintln!("report: {}", path.display());
    Ok(())
}
