//! `larmor detect`: the pipeline's streaming detectors over any single series,
//! a CSV an engineer exported or one archived channel, writing
//! `timestamp,value,anomaly_score` per row.

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
    /// Score an archived channel instead: the archive directory (with --machine and --channel).
    #[arg(long, requires_all = ["machine", "channel"])]
    archive: Option<PathBuf>,
    /// Machine id, with --archive.
    #[arg(long, requires = "archive")]
    machine: Option<String>,
    /// Channel name (see ingest/README.md), with --archive.
    #[arg(long, requires = "archive")]
    channel: Option<String>,
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
