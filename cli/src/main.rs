//! `larmor`: predictive maintenance for MRI fleets. Argument parsing only; the
//! work is done by the library crates.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use larmor::config::LarmorConfig;
use larmor::pipeline::{Pipeline, Summary};
use larmor_analytics::sql::{self, OutputFormat};
use larmor_datasets::live::{LiveConfig, LiveFleet};
use larmor_datasets::{Fleet, Simulator};
use larmor_ingest::publish::FramePublisher;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "larmor",
    version,
    about = "Predictive maintenance for fleets of MRI scanners"
)]
struct Cli {
    /// Log filter (tracing syntax), e.g. `info` or `larmor_ingest=debug`.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline: ingest from Kafka, archive, detect, alert, export metrics.
    /// With no config it starts an embedded Kafka cluster and a simulated fleet.
    Run {
        /// Settings file (see larmor.example.toml). Without it, the embedded defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Stop after this long (e.g. `30s`, `5m`). Default: until Ctrl-C.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Override `[metrics] listen`.
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Publish a simulated fleet's telemetry to any Kafka cluster.
    Simulate {
        /// Bootstrap brokers, `host:port[,host:port]`.
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value_t = 20)]
        machines: usize,
        /// Samples per second per machine and stream.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Stop after this long. Default: until Ctrl-C.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Settings file for topics and TLS/SASL (its brokers are ignored).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run SQL over the archive; the table is `readings` (ts, machine_id, channel, value, date, stream).
    Query {
        /// The SQL statement.
        sql: String,
        /// Archive directory. Default: `[archive] path` of the config.
        #[arg(long)]
        archive: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

fn load_config(path: &Option<PathBuf>) -> anyhow::Result<LarmorConfig> {
    match path {
        Some(p) => LarmorConfig::load(p),
        None => Ok(LarmorConfig::default()),
    }
}

/// Resolves when Ctrl-C is pressed or `duration` has passed.
async fn until_stopped(duration: Option<Duration>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match duration {
        Some(d) => tokio::select! { _ = ctrl_c => {}, _ = tokio::time::sleep(d) => {} },
        None => ctrl_c.await,
    }
}

async fn run(
    config: Option<PathBuf>,
    duration: Option<Duration>,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let mut cfg = load_config(&config)?;
    if let Some(l) = listen {
        cfg.metrics.listen = l;
    }
    let mut p = Pipeline::start(cfg)?;
    println!(
        "larmor: {} on {} | {} machines enrolled | archive {} | outboxes {} | metrics http://{}/metrics",
        if p.config.embedded() { "embedded Kafka" } else { "Kafka" },
        p.brokers,
        p.registry.len(),
        p.config.archive.path.display(),
        p.config.alerts.outbox.display(),
        p.metrics_addr(),
    );
    println!(
        "press Ctrl-C to stop{}",
        duration
            .map(|d| format!(" (stopping by itself after {})", humantime::format_duration(d)))
            .unwrap_or_default()
    );
    let summary = Summary::default();
    let stop = until_stopped(duration);
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(p.config.run.summary_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                println!("{}", summary.line(&p));
                if p.failed() { break; }
            }
        }
    }
    println!("stopping: draining Kafka, flushing the archive, committing offsets…");
    let report = tokio::task::block_in_place(|| p.stop())?;
    println!("{}", summary.line(&p));
    println!(
        "stopped after {:.1}s: {} frames / {} readings ingested ({:.0} readings/s), {} archived in {} files, {} dead-lettered{}",
        report.elapsed.as_secs_f64(),
        report.source.frames,
        report.source.readings,
        report.source.readings as f64 / report.elapsed.as_secs_f64().max(1e-9),
        report.source.archived_rows,
        report.source.archive_files,
        report.source.dead_letters,
        if report.source.drained {
            ""
        } else {
            " (drain timed out: the rest stays in Kafka, uncommitted)"
        },
    );
    Ok(())
}

async fn simulate(
    brokers: String,
    machines: usize,
    rate: f64,
    duration: Option<Duration>,
    seed: u64,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let cfg = load_config(&config)?;
    let publisher = FramePublisher::new(&cfg.kafka.client_config(&brokers)?, &cfg.topics)
        .context("cannot create a Kafka producer")?;
    let fleet = LiveFleet::new(Simulator::new(Fleet::generate(machines, seed), seed));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (fleet, stop) = (fleet.clone(), stop.clone());
        let live = LiveConfig {
            rate_hz: rate,
            frame_interval: cfg.simulator.frame_interval,
        };
        std::thread::spawn(move || fleet.run(&publisher, live, &stop))
    };
    println!("publishing {machines} machines at {rate} samples/s each to {brokers}; Ctrl-C to stop");
    until_stopped(duration).await;
    stop.store(true, Ordering::Relaxed);
    let sent = tokio::task::block_in_place(|| worker.join())
        .map_err(|_| anyhow::anyhow!("the simulator thread panicked"))?
        .with_context(|| format!("publishing to {brokers} failed; check the address and that the topics exist"))?;
    let readings = fleet.tally.lock().unwrap_or_else(|p| p.into_inner()).readings();
    println!("published {sent} frames, {readings} readings");
    Ok(())
}

async fn query(
    sql_text: String,
    archive: Option<PathBuf>,
    format: Format,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let cfg = load_config(&config)?;
    let archive = archive.unwrap_or(cfg.archive.path);
    let ctx = sql::open_archive(&archive).await?;
    let batches = sql::run(&ctx, &sql_text).await?;
    let f = match format {
        Format::Table => OutputFormat::Table,
        Format::Csv => OutputFormat::Csv,
        Format::Json => OutputFormat::Json,
    };
    let out = sql::render(&batches, f)?;
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("larmor: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Run {
                config,
                duration,
                metrics_listen,
            } => run(config, duration, metrics_listen).await,
            Command::Simulate {
                brokers,
                machines,
                rate,
                duration,
                seed,
                config,
            } => simulate(brokers, machines, rate, duration, seed, config).await,
            Command::Query {
                sql,
                archive,
                format,
                config,
            } => query(sql, archive, format, config).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("larmor: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
