//! `larmor run`: starts the topology, prints a live summary until Ctrl-C or
//! `--for`, then stops it cleanly.

use super::common::{load_config, until_stopped};
use larmor::metrics_http::{counter_by_label, counter_total};
use larmor::topology::Topology;
use larmor_metrics as names;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub async fn run(
    config: Option<PathBuf>,
    duration: Option<Duration>,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let mut cfg = load_config(&config)?;
    if let Some(l) = listen {
        cfg.metrics.listen = l;
    }
    let mut p = Topology::start(cfg).await?;
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

/// The live summary: last totals and when they were read.
pub struct Summary {
    last: Mutex<(Instant, f64, f64)>,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            last: Mutex::new((Instant::now(), 0.0, 0.0)),
        }
    }
}

impl Summary {
    /// One line: rates since the last call, totals, anomalies per channel and alerts per delivery channel.
    pub fn line(&self, p: &Topology) -> String {
        let r = &p.metrics;
        let frames = counter_total(r, names::INGEST_FRAMES.name);
        let readings = counter_total(r, names::INGEST_READINGS.name);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let dt = last.0.elapsed().as_secs_f64().max(1e-9);
        let (fps, rps) = ((frames - last.1) / dt, (readings - last.2) / dt);
        *last = (Instant::now(), frames, readings);
        let fmt_map = |m: std::collections::BTreeMap<String, f64>| {
            let parts: Vec<String> = m
                .into_iter()
                .filter(|(_, v)| *v > 0.0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if parts.is_empty() {
                "-".to_string()
            } else {
                parts.join(" ")
            }
        };
        format!(
            "[{:>5.0}s] {fps:>7.0} frames/s {rps:>9.0} readings/s | archived {} | dlq {} | anomalies {} | alerts {}",
            p.started().elapsed().as_secs_f64(),
            counter_total(r, names::ARCHIVE_READINGS.name),
            counter_total(r, names::DLQ_MESSAGES.name),
            fmt_map(counter_by_label(r, names::ANOMALIES.name, "channel")),
            fmt_map(counter_by_label(r, names::ALERTS.name, "channel")),
        )
    }
}
