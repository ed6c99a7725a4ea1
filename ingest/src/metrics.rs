//! Prometheus metrics owned by ingest. Registered in the registry the caller
//! serves on `/metrics`.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Counters for everything that enters Larmor.
#[derive(Clone)]
pub struct IngestMetrics {
    pub frames: IntCounterVec,
    pub readings: IntCounterVec,
    pub archived: IntCounterVec,
    pub archive_files: IntCounter,
    pub dead_letters: IntCounterVec,
    pub commits: IntCounter,
    pub consumer_errors: IntCounter,
    pub duplicates_skipped: IntCounter,
    /// Registry file reloads while running, by result (`ok`, `error`).
    pub registry_reloads: IntCounterVec,
}

impl IngestMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = IngestMetrics {
            frames: IntCounterVec::new(
                Opts::new("larmor_ingest_frames_total", "Frames accepted from Kafka"),
                &["stream"],
            )?,
            readings: IntCounterVec::new(
                Opts::new("larmor_ingest_readings_total", "Readings accepted from Kafka"),
                &["stream"],
            )?,
            archived: IntCounterVec::new(
                Opts::new(
                    "larmor_archive_readings_total",
                    "Readings durably written to the Parquet archive",
                ),
                &["stream"],
            )?,
            archive_files: IntCounter::new("larmor_archive_files_total", "Parquet files written")?,
            dead_letters: IntCounterVec::new(
                Opts::new("larmor_dlq_messages_total", "Messages sent to the dead-letter topic"),
                &["reason"],
            )?,
            commits: IntCounter::new(
                "larmor_kafka_commits_total",
                "Offset commits after durable archive writes",
            )?,
            consumer_errors: IntCounter::new(
                "larmor_kafka_consumer_errors_total",
                "Errors reported by the Kafka consumer",
            )?,
            duplicates_skipped: IntCounter::new(
                "larmor_ingest_duplicates_skipped_total",
                "Messages skipped because the archive already holds them (redelivery after a crash or rebalance)",
            )?,
            registry_reloads: IntCounterVec::new(
                Opts::new(
                    "larmor_registry_reloads_total",
                    "Device registry reloads after the file changed, by result (error: the file could not be read or parsed; the previous registry stays in force)",
                ),
                &["result"],
            )?,
        };
        r.register(Box::new(m.frames.clone()))?;
        r.register(Box::new(m.readings.clone()))?;
        r.register(Box::new(m.archived.clone()))?;
        r.register(Box::new(m.archive_files.clone()))?;
        r.register(Box::new(m.dead_letters.clone()))?;
        r.register(Box::new(m.commits.clone()))?;
        r.register(Box::new(m.consumer_errors.clone()))?;
        r.register(Box::new(m.duplicates_skipped.clone()))?;
        r.register(Box::new(m.registry_reloads.clone()))?;
        for result in ["ok", "error"] {
            m.registry_reloads.with_label_values(&[result]);
        }
        // Every reason is visible from the start, at zero.
        for reason in crate::wire::RejectReason::ALL {
            m.dead_letters.with_label_values(&[reason.code()]);
        }
        for s in crate::channels::Stream::ALL {
            for c in [&m.frames, &m.readings, &m.archived] {
                c.with_label_values(&[s.as_str()]);
            }
        }
        Ok(m)
    }
}
