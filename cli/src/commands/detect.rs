//! `larmor detect`: over any single series, a CSV an engineer exported or one
//! archived channel, writes `timestamp,value,anomaly_score` per row (how
//! surprising each reading is given everything before it, 0..1) and, with
//! `--episodes`, one row per episode; or over a whole archive, writes the
//! `anomalies` table beside it.

use super::common::load_config;
use anyhow::Context;
use larmor_analytics::detect::batch::{self, BatchReport, CsvColumns, DetectOptions, ProbationSpec, Sinks};
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
    /// The series is this MRI channel (see ingest/README.md): its alarm limits score too, and
    /// --episodes lists the pipeline's own detectors' anomalies. With --archive, also --machine.
    /// Without it, a CSV is scored by the generic detector alone.
    #[arg(long)]
    channel: Option<String>,
    /// Also write the episodes (one row per anomaly as it starts: timestamp, detector, kind,
    /// score, value, explanation) to this file.
    #[arg(long, conflicts_with = "replace")]
    episodes: Option<PathBuf>,
    /// The first part of the series, learnt from and scored low unless extreme: a share
    /// ("15%"; on stdin, whose length is unknown, the first 1000 readings), a number of
    /// readings ("2000") or a span ("7d").
    #[arg(long, default_value = "15%")]
    probation: ProbationSpec,
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

fn writer(to: &Option<PathBuf>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match to {
        Some(p) if p.as_os_str() != "-" => Box::new(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        _ => Box::new(BufWriter::new(std::io::stdout().lock())),
    })
}

fn summary(r: &BatchReport, to: &Option<PathBuf>, episodes: &Option<PathBuf>) {
    let dest = match to {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "stdout".into(),
    };
    let episodes = match episodes {
        Some(p) => format!(", {} episodes to {}", r.episodes, p.display()),
        None => String::new(),
    };
    // On stderr: stdout may be the scores themselves.
    eprintln!(
        "larmor detect: {} rows scored to {dest}, {} at 0.5 or above, {} without a value{episodes}",
        r.rows, r.anomalous, r.missing
    );
}

pub async fn detect(args: DetectArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.config)?;
    if let (Some(archive), None) = (&args.archive, &args.machine) {
        if args.out.is_some() || args.episodes.is_some() || args.channel.is_some() {
            anyhow::bail!(
                "a whole-archive scan writes the anomalies table beside the archive; drop --out, --episodes \
                 and --channel, or add --machine and --channel for one series"
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
    if result.is_err() {
        // No half-written scores or episodes left behind.
        for p in [&args.out, &args.episodes].into_iter().flatten() {
            if p.as_os_str() != "-" {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    summary(&result?, &args.out, &args.episodes);
    Ok(())
}

async fn score(args: &DetectArgs, detect: &larmor_analytics::DetectConfig) -> anyhow::Result<BatchReport> {
    let channel = match &args.channel {
        Some(name) => Some(larmor_ingest::ChannelId::from_name(name).with_context(|| {
            format!("unknown channel {name:?}; the channels are listed in ingest/README.md (or drop --channel)")
        })?),
        None => None,
    };
    let sinks = Sinks {
        scores: writer(&args.out)?,
        episodes: match &args.episodes {
            Some(p) => Some(writer(&Some(p.clone()))?),
            None => None,
        },
    };
    Ok(match (&args.input, &args.archive) {
        (Some(input), _) => {
            let columns = CsvColumns {
                time: args.time_column.clone(),
                value: args.value_column.clone(),
            };
            let stdin = input.as_os_str() == "-";
            let (reader, rows): (Box<dyn std::io::Read>, Option<u64>) = if stdin {
                (Box::new(std::io::stdin().lock()), None)
            } else {
                let open = || {
                    std::fs::File::open(input)
                        .with_context(|| format!("cannot open {}; check the path given to --input", input.display()))
                };
                let file = open()?;
                // A probation given as a share needs the length: one quick pass counting lines.
                let rows = match args.probation {
                    ProbationSpec::Share(_) => Some(batch::count_rows(input)?),
                    _ => None,
                };
                (Box::new(BufReader::new(file)), rows)
            };
            let options = DetectOptions {
                probation: args.probation,
                channel,
                machine: String::new(),
            };
            // Blocking file work: off the async workers.
            tokio::task::block_in_place(|| batch::score_csv(reader, sinks, &columns, detect, &options, rows))
                .with_context(|| format!("scoring {}", input.display()))?
        }
        (None, Some(archive)) => {
            let machine = args.machine.as_deref().unwrap_or_default();
            let channel = args.channel.as_deref().unwrap_or_default();
            batch::score_archive(archive, machine, channel, sinks, detect, args.probation).await?
        }
        (None, None) => anyhow::bail!("give --input FILE.csv, or --archive DIR with --machine and --channel"),
    })
}
