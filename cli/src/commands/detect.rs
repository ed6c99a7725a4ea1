//! `larmor detect`: the pipeline's streaming detectors over any single series,
//! a CSV an engineer exported or one archived channel, writing
//! `timestamp,value,anomaly_score` per row; or over a whole archive, writing the
//! `anomalies` table beside it.

use super::common::load_config;
use anyhow::Context;
use larmor_analytics::detect::batch::{self, BatchReport, CsvColumns};
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["input", "archive"])))]
pub struct DetectArgs {
    /// CSV with a header row (`-` for stdin). Timestamps: ISO-8601 or epoch seconds/milliseconds.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Name of the CSV's time column.
    #[arg(long, default_value = "timestamp", requires = "input")]
    time_column: String,
    /// Name of the CSV's value column.
    #[arg(long, default_value = "value", requires = "input")]
    value_column: String,
    /// Score archived data instead: the archive directory. With --machine and --channel, one
    /// series to --out; alone, every machine and channel, written as the `anomalies` table
    /// beside the archive (`<data dir>/anomalies/`, queryable with `larmor query`).
    #[arg(long)]
    archive: Option<PathBuf>,
    /// Machine id, with --archive and --channel.
    #[arg(long, requires_all = ["archive", "channel"])]
    machine: Option<String>,
    /// Channel name (see ingest/README.md), with --archive and --machine.
    #[arg(long, requires_all = ["archive", "machine"])]
    channel: Option<String>,
    /// Whole-archive scan: replace an existing anomalies table.
    #[arg(long, requires = "archive", conflicts_with = "machine")]
    replace: bool,
    /// Whole-archive scan: average readings per this step first ("1m"; coarser archives are read as they are).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, requires = "archive", conflicts_with = "machine")]
    step: std::time::Duration,
    /// Where to write `timestamp,value,anomaly_score` (`-` or absent: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Detector settings (`[detect.*]` of larmor.example.toml). Default: the built-in defaults.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn output(out: &Option<PathBuf>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match out {
        Some(p) if p.as_os_str() != "-" => Box::new(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        _ => Box::new(BufWriter::new(std::io::stdout().lock())),
    })
}

fn summary(r: &BatchReport, to: &Option<PathBuf>) {
    let dest = match to {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "stdout".into(),
    };
    // On stderr: stdout may be the scores themselves.
    eprintln!(
        "larmor detect: {} rows scored to {dest}, {} at 0.5 or above, {} without a value",
        r.rows, r.anomalous, r.missing
    );
}

pub async fn detect(args: DetectArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.config)?;
    if let (Some(archive), None) = (&args.archive, &args.machine) {
        if args.out.is_some() {
            anyhow::bail!(
                "a whole-archive scan writes the anomalies table beside the archive; drop --out, or add --machine and --channel"
            );
        }
        let r = larmor_analytics::fleet_scan::scan(archive, &cfg.detect, args.step, args.replace).await?;
        let table = larmor_datadir::DataDir::around(archive).anomalies();
        eprintln!(
            "larmor detect: {} readings over {} days scanned in {:.1} s, {} anomalies written to {} (table `anomalies`)",
            r.readings,
            r.days,
            r.elapsed.as_secs_f64(),
            r.anomalies,
            table.display()
        );
        return Ok(());
    }
    let result = score(&args, &cfg.detect).await;
    if result.is_err()
        && let Some(p) = args.out.as_ref().filter(|p| p.as_os_str() != "-")
    {
        let _ = std::fs::remove_file(p); // no half-written scores left behind
    }
    summary(&result?, &args.out);
    Ok(())
}

async fn score(args: &DetectArgs, detect: &larmor_analytics::DetectConfig) -> anyhow::Result<BatchReport> {
    let out = output(&args.out)?;
    Ok(match (&args.input, &args.archive) {
        (Some(input), _) => {
            let columns = CsvColumns {
                time: args.time_column.clone(),
                value: args.value_column.clone(),
            };
            let reader: Box<dyn std::io::Read> = if input.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(BufReader::new(std::fs::File::open(input).with_context(|| {
                    format!("cannot open {}; check the path given to --input", input.display())
                })?))
            };
            // Blocking file work: off the async workers.
            tokio::task::block_in_place(|| batch::score_csv(reader, out, &columns, detect))
                .with_context(|| format!("scoring {}", input.display()))?
        }
        (None, Some(archive)) => {
            let machine = args.machine.as_deref().unwrap_or_default();
            let channel = args.channel.as_deref().unwrap_or_default();
            batch::score_archive(archive, machine, channel, out, detect).await?
        }
        (None, None) => anyhow::bail!("give --input FILE.csv, or --archive DIR with --machine and --channel"),
    })
}
