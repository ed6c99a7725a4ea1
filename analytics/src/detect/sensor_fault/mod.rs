//! Sensor faults, reported as such (`AnomalyKind::SensorFault`), never as a
//! machine fault:
//! - a stuck sensor: the same value far longer than this series ever repeats
//!   one ([`stuck`], which also judges gaps on a plain series);
//! - spikes: single readings far from both neighbours, which agree with each
//!   other: no machine jumps there and straight back ([`spikes`]);
//! - dropouts: a stream or a channel that stops reporting ([`frames`], per
//!   machine: a whole stream's gap is one anomaly when it resumes, a channel
//!   missing from a stream that keeps reporting one anomaly while it lasts).
//!
//! A gateway's clock set wrong (clock skew) shifts every timestamp of the
//! machine alike, so the readings stay consistent with each other. Ingest
//! refuses frames too far ahead of its clock, or too late; in the data itself
//! only the daily rhythm of the scans gives it away ([`clock`]).

pub mod clock;
pub mod frames;
pub mod spikes;
pub mod stuck;

pub use frames::SensorFaultDetector;
pub use spikes::{SpikeEpisode, SpikeParams, SpikeTracker};
pub use stuck::{Intervals, SensorFaultKernel};

use super::ConfigError;
use super::series::{Debounce, fmt_duration};
use super::settings::{DetectorSettings, Section, positive};
use larmor_ingest::CATALOG;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[detect.sensor_fault]`: the shared keys ([`Section`]) and these.
pub type SensorFaultConfig = Section<SensorFaultSettings>;

/// The sensor-fault detector's own settings.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct SensorFaultSettings {
    /// Stuck: at least this many identical readings in a row...
    pub stuck_min_readings: u32,
    /// ...lasting at least this long...
    #[serde(with = "humantime_serde")]
    pub stuck_min_duration: Duration,
    /// ...and at most this likely, given how often the series repeats a value.
    pub stuck_probability: f64,
    /// Dropout: a gap of this many usual intervals...
    pub gap_factor: f64,
    /// ...and at least this long.
    #[serde(with = "humantime_serde")]
    pub min_gap: Duration,
    /// Readings a series needs before it is judged.
    pub warm_up_readings: u32,
    /// Spike: a reading at least this many usual steps (the mean absolute
    /// difference between consecutive readings) from both neighbours, on the
    /// same side, while the neighbours are within half that jump of each other...
    pub spike_threshold: f64,
    /// ...at least this many of them, each within `spike_window` readings of the
    /// last, make one anomaly (1: every lone spike is reported)...
    pub spike_min_count: u32,
    /// ...which ends after this many readings without a spike.
    pub spike_window: u32,
    /// Clock skew: the machine's daily rhythm of scans running this late or
    /// early against its usual weeks (see [`clock`])...
    #[serde(with = "humantime_serde")]
    pub clock_min_shift: Duration,
    /// ...on this many days in a row.
    pub clock_days: u32,
}

impl Default for SensorFaultSettings {
    fn default() -> Self {
        SensorFaultSettings {
            stuck_min_readings: 30,
            stuck_min_duration: Duration::from_secs(15 * 60),
            stuck_probability: 1e-6,
            gap_factor: 10.0,
            min_gap: Duration::from_secs(120),
            warm_up_readings: 100,
            spike_threshold: 8.0,
            spike_min_count: 2,
            spike_window: 300,
            clock_min_shift: Duration::from_secs(30 * 60),
            clock_days: 2,
        }
    }
}

/// What a stuck-and-gap kernel needs.
#[derive(Debug, Clone, Copy)]
pub struct SensorFaultParams {
    pub stuck_min_readings: u32,
    pub stuck_min_duration: Duration,
    pub stuck_probability: f64,
    pub gap_factor: f64,
    pub min_gap: Duration,
    pub warm_up_readings: u32,
    /// Judge gaps per series (a CSV). Live, gaps are judged per stream instead.
    pub gaps: bool,
}

impl SensorFaultSettings {
    /// What a [`SpikeTracker`] needs.
    pub fn spike_params(&self) -> SpikeParams {
        SpikeParams {
            threshold: self.spike_threshold,
            min_count: self.spike_min_count.max(1),
            window: u64::from(self.spike_window.max(1)),
            warm_up_readings: u64::from(self.warm_up_readings),
        }
    }

    /// What a [`SensorFaultKernel`] on a plain series needs (gaps judged per series).
    pub fn params(&self) -> SensorFaultParams {
        SensorFaultParams {
            stuck_min_readings: self.stuck_min_readings.max(2),
            stuck_min_duration: self.stuck_min_duration,
            stuck_probability: self.stuck_probability,
            gap_factor: self.gap_factor,
            min_gap: self.min_gap,
            warm_up_readings: self.warm_up_readings,
            gaps: true,
        }
    }
}

impl DetectorSettings for SensorFaultSettings {
    const SECTION: &'static str = "sensor_fault";
    type Detector = SensorFaultDetector;
    /// A sensor fault is one at once, and over at the first normal reading.
    const DEBOUNCE: Debounce = Debounce {
        confirm: 1,
        clear_after: 1,
    };

    /// Every channel but the discrete ones (door, occupancy repeat by nature).
    fn default_channels() -> Vec<String> {
        CATALOG
            .iter()
            .filter(|c| c.name != "door_open" && c.name != "occupancy")
            .map(|c| c.name.to_string())
            .collect()
    }

    fn build(&self, debounce: Debounce, watched: Vec<bool>) -> Result<Self::Detector, ConfigError> {
        if !(self.stuck_probability > 0.0 && self.stuck_probability < 1.0) {
            return Err(ConfigError::invalid(
                Self::SECTION,
                "stuck_probability must be between 0 and 1",
            ));
        }
        if self.gap_factor.is_nan() || self.gap_factor < 1.0 {
            return Err(ConfigError::invalid(Self::SECTION, "gap_factor must be at least 1"));
        }
        positive(Self::SECTION, "spike_threshold", self.spike_threshold)?;
        if self.spike_window == 0 {
            return Err(ConfigError::invalid(Self::SECTION, "spike_window must be at least 1"));
        }
        let params = SensorFaultParams {
            gaps: false,
            ..self.params()
        };
        Ok(SensorFaultDetector::new(
            params,
            self.spike_params(),
            clock::ClockParams::of(self),
            debounce,
            watched,
        ))
    }
}

/// A duration in ms, for explanations.
fn fmt_ms(ms: f64) -> String {
    fmt_duration(Duration::from_secs_f64((ms / 1000.0).max(0.0)))
}
