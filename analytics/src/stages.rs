//! The pipeline stages analytics provides: detection, a transform from each
//! accepted frame to the anomaly episodes that start in it, and the anomalies
//! table, a sink that records every episode beside the archive.

use crate::anomaly_table::{self, AnomalyTable};
use crate::detect::{Anomaly, DetectorSet};
use larmor_datadir::DataDir;
use larmor_ingest::Frame;
use prometheus::{IntCounter, IntCounterVec, Registry};

/// Runs every detector on each frame, per machine and channel.
pub struct DetectStage {
    detectors: DetectorSet,
    anomalies: IntCounterVec,
}

impl DetectStage {
    /// Counts what it finds in `larmor_anomalies_total{detector,channel}`.
    pub fn new(detectors: DetectorSet, metrics: &Registry) -> prometheus::Result<Self> {
        Ok(DetectStage {
            detectors,
            anomalies: larmor_metrics::ANOMALIES.int_counter_vec(metrics)?,
        })
    }
}

impl larmor_stage::Transform for DetectStage {
    type Input = Frame;
    type Output = Anomaly;

    fn transform(&mut self, frame: Frame, out: &mut Vec<Anomaly>) {
        self.detectors.observe(&frame, out);
        for a in out.iter() {
            self.anomalies.with_label_values(&[a.detector, a.channel()]).inc();
        }
    }
}

/// Writes every anomaly episode to the `anomalies` table.
pub struct AnomalyTableSink {
    table: AnomalyTable,
    errors: IntCounter,
}

impl AnomalyTableSink {
    /// `errors` counts failed writes of the table.
    pub fn new(data: &DataDir, errors: IntCounter) -> Self {
        AnomalyTableSink {
            table: anomaly_table::writer(data),
            errors,
        }
    }
}

impl larmor_stage::Sink for AnomalyTableSink {
    type Input = Anomaly;

    fn consume(&mut self, a: Anomaly) {
        self.table.push(a.ts_ms, a);
    }

    fn flush(&mut self) {
        if !self.table.flush_or_keep() {
            self.errors.inc();
        }
    }
}
