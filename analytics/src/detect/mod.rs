//! Streaming anomaly detection. Each detector keeps its own state per machine and
//! channel and turns readings into [`Anomaly`] events, one per episode.

pub mod threshold;

use larmor_ingest::{ChannelId, Frame, Stream};
use serde::Serialize;

/// What kind of trouble an anomaly points at; decides who is told and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// The machine itself may be degrading.
    MachineHealth,
    /// The environment (room, cooling) is out of specification.
    Environment,
    /// The sensor is suspect, not the machine.
    SensorFault,
}

/// One anomaly episode on one machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub machine_id: String,
    pub stream: Stream,
    /// The channel(s) involved, first the one that triggered.
    pub channels: Vec<&'static str>,
    pub ts_ms: i64,
    pub value: f64,
    /// Severity in 0..1.
    pub score: f64,
    pub detector: &'static str,
    pub kind: AnomalyKind,
    pub explanation: String,
}

impl Anomaly {
    pub fn channel(&self) -> &'static str {
        self.channels.first().copied().unwrap_or("")
    }
}

/// A streaming detector.
pub trait Detector: Send {
    fn name(&self) -> &'static str;
    /// Observes every reading of a frame; pushes the anomalies that start here.
    fn observe(&mut self, frame: &Frame, out: &mut Vec<Anomaly>);
}

/// All configured detectors, run in order on each frame.
pub struct DetectorSet {
    detectors: Vec<Box<dyn Detector>>,
}

impl DetectorSet {
    pub fn new(detectors: Vec<Box<dyn Detector>>) -> Self {
        DetectorSet { detectors }
    }

    pub fn observe(&mut self, frame: &Frame, out: &mut Vec<Anomaly>) {
        for d in &mut self.detectors {
            d.observe(frame, out);
        }
    }
}

/// The kind of an out-of-range reading on `channel`.
pub fn kind_of(channel: ChannelId) -> AnomalyKind {
    match channel.stream() {
        Stream::Room => AnomalyKind::Environment,
        _ if channel.name().starts_with("water_") => AnomalyKind::Environment,
        _ => AnomalyKind::MachineHealth,
    }
}
