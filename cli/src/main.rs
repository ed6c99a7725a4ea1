//! `larmor`: predictive maintenance for MRI fleets. Argument parsing only; the
//! work is done by the library crates.

mod commands;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
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
    /// Log format on stderr: `text` for people, `json` (one object per line:
    /// timestamp, level, target, fields) for a log collector.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Structured logs through `tracing`, on stderr, filtered by `--log`.
fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("larmor: --log {filter:?} is not a tracing filter ({e}); logging warnings only");
        "warn".into()
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
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
        /// Simulated time per wall-clock time: 3600 sends one simulated hour per second.
        /// Timestamps then run ahead of the clock: raise `[trust] max_clock_skew` on the receiving side.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Settings file for topics and TLS/SASL (its brokers are ignored).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Maintain the Parquet archive.
    #[command(subcommand)]
    Archive(commands::archive::ArchiveCommand),
    /// Enrol and revoke devices in the device registry.
    #[command(subcommand)]
    Device(commands::device::DeviceCommand),
    /// Generate synthetic datasets: a backfilled archive with ground-truth events.
    #[command(subcommand)]
    Dataset(commands::dataset::DatasetCommand),
    /// Run SQL over the data directory: `readings` (ts, machine_id, channel, value, date,
    /// stream), `archive_partitions`, `anomalies`, `alerts`, `forecasts`, `machines`, `events`.
    Query(commands::query::QueryArgs),
    /// List, acknowledge, silence and resolve alerts.
    Alerts {
        #[command(subcommand)]
        command: commands::alerts::AlertsCommand,
        #[command(flatten)]
        place: commands::alerts::Where,
    },
    /// A notice receiver's tools: make a key pair, receive over mutual TLS, verify and decrypt.
    #[command(subcommand)]
    Channel(commands::channel::ChannelCommand),
    /// Score any time series with the streaming detectors: a CSV (`--input`) or an
    /// archived channel (`--archive --machine --channel`); writes timestamp,value,anomaly_score.
    Detect(commands::detect::DetectArgs),
    /// Train the downtime forecasting model from an archive and an events table.
    Train(commands::train::TrainArgs),
    /// Score a model and its baselines without leakage; writes a Markdown report with plots.
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Forecast failures per machine as of a time, from an archive and a trained model.
    Forecast(commands::forecast::ForecastArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_format);
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
            } => commands::run::run(config, duration, metrics_listen).await,
            Command::Simulate {
                brokers,
                machines,
                rate,
                duration,
                seed,
                speed,
                config,
            } => commands::simulate::simulate(brokers, machines, rate, duration, seed, speed, config).await,
            Command::Device(cmd) => commands::device::device(cmd),
            Command::Archive(cmd) => commands::archive::archive(cmd),
            Command::Dataset(cmd) => commands::dataset::dataset(cmd),
            Command::Query(args) => commands::query::query(args).await,
            Command::Detect(args) => commands::detect::detect(args).await,
            Command::Alerts { command, place } => commands::alerts::alerts(command, place),
            Command::Channel(cmd) => commands::channel::channel(cmd).await,
            Command::Train(args) => commands::train::train(args),
            Command::Evaluate(args) => commands::evaluate::evaluate(args),
            Command::Forecast(args) => commands::forecast::forecast(args),
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
