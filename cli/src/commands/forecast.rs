//! `larmor forecast`: per machine, P(failure) per horizon, the predicted time to
//! failure with an interval, the most likely mode and the features behind it.

use anyhow::Context;
use larmor_datadir::DataDir;
use larmor_models::events::{EventLog, parse_time};
use larmor_models::live::{Forecast, forecast_as_of, format_time, write_forecasts};
use larmor_models::model::ForecastModel;
use std::path::PathBuf;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Options of `larmor forecast`.
#[derive(clap::Args)]
pub struct ForecastArgs {
    /// The archive directory.
    #[arg(long)]
    archive: PathBuf,
    /// The model from `larmor train`.
    #[arg(long)]
    model: PathBuf,
    /// Forecast as of this time (ISO 8601, e.g. `2025-06-01T12:00:00Z`); only data
    /// before it is read. Default: now, or the end of the archive's last day if that is earlier.
    #[arg(long)]
    as_of: Option<String>,
    /// The service log (events table) for "time since maintenance/failure" features;
    /// default: `events.parquet` beside the archive.
    #[arg(long)]
    events: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Also append the forecasts to the `forecasts` table beside the archive.
    #[arg(long)]
    write: bool,
}

pub fn forecast(args: ForecastArgs) -> anyhow::Result<()> {
    let model = ForecastModel::load(&args.model)?;
    let dir = DataDir::around(&args.archive);
    let as_of = match &args.as_of {
        Some(s) => {
            parse_time(s).with_context(|| format!("--as-of `{s}`: not a time (use e.g. 2025-06-01T12:00:00Z)"))?
        }
        None => default_as_of(&args.archive)?,
    };
    let events_path = args
        .events
        .clone()
        .or_else(|| Some(dir.events()).filter(|p| p.is_file()));
    let events = events_path.as_deref().map(EventLog::load).transpose()?;
    let (forecasts, notes) = forecast_as_of(&model, &args.archive, events.as_ref(), as_of)?;
    for n in &notes {
        eprintln!("note: {n}");
    }
    anyhow::ensure!(
        !forecasts.is_empty(),
        "no machine has data in the 7 days before {}: pass --as-of inside the archive's period",
        format_time(as_of)
    );
    let mut out = String::new();
    match args.format {
        Format::Json => out = serde_json::to_string_pretty(&forecasts)? + "\n",
        Format::Csv => {
            out.push_str("machine_id,as_of");
            for h in &model.horizons {
                out.push_str(&format!(",p_{}h,alarm_{}h", h.hours, h.hours));
            }
            out.push_str(",ttf_hours,ttf_low_hours,ttf_high_hours,mode,mode_probability,top_features\n");
            for f in &forecasts {
                out.push_str(&format!("{},{}", f.machine_id, format_time(f.as_of_ms)));
                for h in &f.horizons {
                    out.push_str(&format!(",{:.4},{}", h.probability, h.alarm));
                }
                out.push_str(&format!(
                    ",{:.1},{:.1},{:.1},{},{:.3},\"{}\"\n",
                    f.ttf_hours,
                    f.ttf_low_hours,
                    f.ttf_high_hours,
                    f.mode,
                    f.mode_probability,
                    features(f)
                ));
            }
        }
        Format::Table => {
            out.push_str(&format!("forecasts as of {} ({})\n", format_time(as_of), model.name));
            out.push_str(&format!("{:<12}", "machine"));
            for h in &model.horizons {
                out.push_str(&format!(" {:>8}", format!("P({}h)", h.hours)));
            }
            out.push_str(&format!(
                "  {:<26} {:<32} top features\n",
                "time to failure (80 %)", "likely mode"
            ));
            for f in &forecasts {
                out.push_str(&format!("{:<12}", f.machine_id));
                for h in &f.horizons {
                    out.push_str(&format!(" {:>7.3}{}", h.probability, if h.alarm { "!" } else { " " }));
                }
                let ttf = if f.ttf_hours >= f.ttf_cap_hours {
                    format!("> {:.0} h", f.ttf_cap_hours)
                } else {
                    format!("{:.0} h [{:.0}, {:.0}]", f.ttf_hours, f.ttf_low_hours, f.ttf_high_hours)
                };
                out.push_str(&format!(
                    "  {:<26} {:<32} {}\n",
                    ttf,
                    format!("{} ({:.0} %)", f.mode, f.mode_probability * 100.0),
                    features(f)
                ));
            }
            out.push_str("(! = at or above the model's alarm threshold)\n");
        }
    }
    print!("{out}");
    if args.write {
        let now = chrono::Utc::now().timestamp_millis();
        let rows = write_forecasts(&dir, now, &forecasts)?;
        eprintln!("wrote {rows} rows to {}", dir.forecasts().display());
    }
    Ok(())
}

fn features(f: &Forecast) -> String {
    f.top_features
        .iter()
        .map(|(n, c)| format!("{n} (+{c:.2})"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Now, or the end of the archive's last day when the archive stops earlier.
fn default_as_of(archive: &std::path::Path) -> anyhow::Result<i64> {
    let dates = larmor_models::hourly::partition_dates(archive)?;
    let now = chrono::Utc::now().timestamp_millis();
    let last = dates
        .last()
        .and_then(|d| parse_time(d))
        .map(|t| t + 86_400_000)
        .context("the archive has no date= partitions")?;
    Ok(last.min(now))
}
