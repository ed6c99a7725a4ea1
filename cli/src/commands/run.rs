//! `larmor run`: the pipeline, with a live summary until Ctrl-C or `--for`.

use super::common::{load_config, until_stopped};
use larmor::pipeline::{Pipeline, Summary};
use std::path::PathBuf;
use std::time::Duration;

pub async fn run(
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
