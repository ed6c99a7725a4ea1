//! `larmor.toml`: one file for every setting, each section owned by the crate
//! that uses it. Every field has a default; `larmor.example.toml` lists them all.

use larmor_alerts::AlertsConfig;
use larmor_ingest::archive::{ArchiveConfig, humantime_serde_compat};
use larmor_ingest::kafka::{KafkaConfig, TopicsConfig};
use larmor_ingest::trust::TrustConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LarmorConfig {
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub registry: RegistryConfig,
    pub trust: TrustConfig,
    pub archive: ArchiveConfig,
    pub simulator: SimulatorConfig,
    pub detect: DetectConfig,
    pub alerts: AlertsConfig,
    pub metrics: MetricsConfig,
    pub run: RunConfig,
}

/// Where the device registry lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Path of the registry TOML. Unset: the simulated fleet is enrolled, and its
    /// registry is written to `larmor-data/devices.toml` for reference.
    pub path: Option<PathBuf>,
    /// How often a running pipeline checks the registry file for changes: a
    /// revocation, enrolment or new key takes effect within this time, without a restart.
    #[serde(with = "humantime_serde_compat")]
    pub watch_interval: std::time::Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            path: None,
            watch_interval: std::time::Duration::from_secs(2),
        }
    }
}

/// The built-in fleet simulator that `larmor run` starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Start the simulator inside `larmor run` (on by default, for the embedded demo).
    pub enabled: bool,
    pub machines: usize,
    /// Samples per second per machine and stream.
    pub rate_hz: f64,
    /// How often each machine sends a frame.
    #[serde(with = "humantime_serde_compat")]
    pub frame_interval: Duration,
    /// Same seed, same fleet and values.
    pub seed: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            enabled: true,
            machines: 20,
            rate_hz: 10.0,
            frame_interval: Duration::from_millis(500),
            seed: 7,
        }
    }
}

/// Detector settings, `[detect.*]`: owned by analytics, which builds the detectors from it.
pub use larmor_analytics::detect::DetectConfig;

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of `/metrics`; port 0 picks a free port.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9898)),
        }
    }
}

/// Behaviour of `larmor run` itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// How often the live summary is printed.
    #[serde(with = "humantime_serde_compat")]
    pub summary_interval: Duration,
    /// On stop, how long to keep consuming until every produced message is read.
    #[serde(with = "humantime_serde_compat")]
    pub drain_timeout: Duration,
    /// Bound of the queue between the detectors and alert delivery.
    pub alert_queue: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            summary_interval: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            alert_queue: 1024,
        }
    }
}

impl LarmorConfig {
    pub fn load(path: &Path) -> anyhow::Result<LarmorConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the config file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<LarmorConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// True when no brokers are configured: `larmor run` starts the embedded cluster.
    pub fn embedded(&self) -> bool {
        self.kafka.brokers.trim().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_and_matches_the_defaults() {
        let text = include_str!("../../larmor.example.toml");
        let c = LarmorConfig::parse(text).unwrap();
        let d = LarmorConfig::default();
        assert_eq!(c.kafka.group_id, d.kafka.group_id);
        assert_eq!(c.topics.temperature, d.topics.temperature);
        assert_eq!(c.topics.dlq, d.topics.dlq);
        assert_eq!(c.topics.partitions, d.topics.partitions);
        assert_eq!(c.archive.path, d.archive.path);
        assert_eq!(c.archive.max_buffered_rows, d.archive.max_buffered_rows);
        assert_eq!(c.archive.max_buffer_age, d.archive.max_buffer_age);
        assert_eq!(c.simulator.machines, d.simulator.machines);
        assert_eq!(c.simulator.rate_hz, d.simulator.rate_hz);
        assert_eq!(c.alerts.outbox, d.alerts.outbox);
        assert_eq!(c.trust.require_signatures, d.trust.require_signatures);
        assert_eq!(c.trust.max_clock_skew, d.trust.max_clock_skew);
        assert_eq!(c.trust.max_lateness, d.trust.max_lateness);
        assert_eq!(c.alerts.dedup_window, d.alerts.dedup_window);
        assert_eq!(c.metrics.listen, d.metrics.listen);
        assert_eq!(c.run.summary_interval, d.run.summary_interval);
        assert!(c.embedded());
        let (cd, dd) = (&c.detect, &d.detect);
        assert_eq!(cd.threshold.clear_after, dd.threshold.clear_after);
        assert!(cd.threshold.limits.is_empty());
        assert_eq!(cd.robust, dd.robust);
        assert_eq!(cd.drift, dd.drift);
        assert_eq!(cd.rate, dd.rate);
        assert_eq!(cd.sensor_fault, dd.sensor_fault);
        assert_eq!(cd.multivariate, dd.multivariate);
        assert_eq!(cd.vibration, dd.vibration);
        assert_eq!(cd.warm_up, dd.warm_up);
        larmor_analytics::DetectorSet::from_config(cd).expect("the example's detectors build");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = LarmorConfig::parse("[kafka]\nbrokerz = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("brokerz"), "{e}");
    }
}
