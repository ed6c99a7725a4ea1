//! Streaming anomaly detection. Each detector keeps its own state per machine and
//! channel and turns readings into [`Anomaly`] events, one per episode.
//!
//! The univariate detectors are kernels on a plain `(timestamp, value)` series
//! ([`series::Kernel`]), run per machine and channel by [`series::SeriesDetector`].
//! Each `[detect.*]` section shares `confirm`, `clear_after` and `channels`
//! ([`settings::Section`]). These detectors know the MRI channels' physics;
//! [`ensemble`] is the generic detector for a series of unknown kind, which
//! [`batch`] (`larmor detect`) runs over any CSV.

pub mod batch;
pub mod drift;
pub mod ensemble;
pub mod multivariate;
pub mod rate;
pub mod robust;
pub mod sensor_fault;
pub mod series;
pub mod settings;
pub mod threshold;
pub mod vibration;
pub mod warm;

#[cfg(test)]
mod testing;

use larmor_ingest::{ChannelId, Frame, Stream};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// Each detector's state per machine, looked up once per frame by machine id.
/// Ids are short and come from the device registry, so a fast hash (foldhash's)
/// does instead of the default DoS-resistant SipHash.
pub(crate) type MachineMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

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
    /// Called after a warm-up from the archive, before live data: forget what
    /// depends on the sampling rate (the archive is read as averages).
    fn end_warm_up(&mut self) {}
}

/// All configured detectors, run in order on each frame.
pub struct DetectorSet {
    detectors: Vec<Box<dyn Detector>>,
}

impl DetectorSet {
    pub fn new(detectors: Vec<Box<dyn Detector>>) -> Self {
        DetectorSet { detectors }
    }

    /// Every detector of the `[detect]` section, in a fixed order.
    pub fn from_config(c: &DetectConfig) -> Result<Self, ConfigError> {
        let threshold = threshold::ThresholdDetector::new(&c.threshold).map_err(|e| ConfigError::UnknownChannel {
            section: "threshold.limits",
            name: e.0,
        })?;
        Ok(DetectorSet::new(vec![
            Box::new(threshold),
            Box::new(c.robust.detector()?),
            Box::new(c.drift.detector()?),
            Box::new(c.rate.detector()?),
            Box::new(c.sensor_fault.detector()?),
            Box::new(c.multivariate.detector()?),
            Box::new(c.vibration.detector()?),
        ]))
    }

    pub fn observe(&mut self, frame: &Frame, out: &mut Vec<Anomaly>) {
        for d in &mut self.detectors {
            d.observe(frame, out);
        }
    }

    /// Learns baselines from past frames (oldest first, per machine) without
    /// reporting anything; returns the readings seen. See [`warm::from_archive`].
    pub fn warm_up(&mut self, frames: impl IntoIterator<Item = Frame>) -> u64 {
        let mut readings = 0;
        for f in frames {
            readings += f.reading_count() as u64;
            self.learn(&f);
        }
        self.end_warm_up();
        readings
    }

    /// Learns from one past frame, reporting nothing (a warm-up step).
    pub fn learn(&mut self, frame: &Frame) {
        let mut ignored = Vec::new();
        self.observe(frame, &mut ignored);
    }

    /// Ends a warm-up: forget what depends on the sampling rate before live data.
    pub fn end_warm_up(&mut self) {
        for d in &mut self.detectors {
            d.end_warm_up();
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.detectors.iter().map(|d| d.name()).collect()
    }
}

/// The `[detect]` section: every detector's settings, each with its default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    pub threshold: threshold::ThresholdConfig,
    pub robust: robust::RobustConfig,
    pub drift: drift::DriftConfig,
    pub rate: rate::RateConfig,
    pub sensor_fault: sensor_fault::SensorFaultConfig,
    pub multivariate: multivariate::MultivariateConfig,
    pub vibration: vibration::VibrationConfig,
    pub warm_up: WarmUpConfig,
}

/// `[detect.warm_up]`: how `larmor run` relearns baselines from the archive at start-up.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WarmUpConfig {
    /// How far back to read. `0s` turns the warm-up off.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Readings are averaged per machine and channel over this step (keeps the read fast).
    #[serde(with = "humantime_serde")]
    pub resolution: Duration,
}

impl Default for WarmUpConfig {
    fn default() -> Self {
        WarmUpConfig {
            window: Duration::from_secs(24 * 3600),
            resolution: Duration::from_secs(60),
        }
    }
}

/// A setting the detectors cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("detect.{section} names an unknown channel {name:?}; see the channel list in ingest/README.md")]
    UnknownChannel { section: &'static str, name: String },
    #[error("detect.{section}: {message}")]
    Invalid { section: &'static str, message: String },
}

impl ConfigError {
    pub fn invalid(section: &'static str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            section,
            message: message.into(),
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
