//! The handles of ingest's Prometheus metrics (defined in `larmor-metrics`),
//! registered in the registry the caller serves on `/metrics`.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Registry};

/// Counters for everything that enters Larmor.
#[derive(Clone)]
pub struct IngestMetrics {
    pub frames: IntCounterVec,
    pub readings: IntCounterVec,
    pub archived: IntCounterVec,
    pub archive_files: IntCounter,
    pub archive_bytes: IntCounter,
    pub dead_letters: IntCounterVec,
    pub commits: IntCounter,
    pub consumer_errors: IntCounter,
    /// Per assigned partition, from librdkafka's statistics.
    pub consumer_lag: IntGaugeVec,
    pub duplicates_skipped: IntCounter,
    /// Registry file reloads while running, by result (`ok`, `error`).
    pub registry_reloads: IntCounterVec,
}

impl IngestMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        use larmor_metrics as defs;
        let m = IngestMetrics {
            frames: defs::INGEST_FRAMES.int_counter_vec(r)?,
            readings: defs::INGEST_READINGS.int_counter_vec(r)?,
            archived: defs::ARCHIVE_READINGS.int_counter_vec(r)?,
            archive_files: defs::ARCHIVE_FILES.int_counter(r)?,
            archive_bytes: defs::ARCHIVE_BYTES.int_counter(r)?,
            dead_letters: defs::DLQ_MESSAGES.int_counter_vec(r)?,
            commits: defs::KAFKA_COMMITS.int_counter(r)?,
            consumer_errors: defs::KAFKA_CONSUMER_ERRORS.int_counter(r)?,
            consumer_lag: defs::KAFKA_CONSUMER_LAG.int_gauge_vec(r)?,
            duplicates_skipped: defs::INGEST_DUPLICATES_SKIPPED.int_counter(r)?,
            registry_reloads: defs::REGISTRY_RELOADS.int_counter_vec(r)?,
        };
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
