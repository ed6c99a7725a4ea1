//! `larmor.toml`: one file for every setting, each section owned by the crate
//! that uses it. Every field has a default; `larmor.example.toml` lists them all.

use larmor_alerts::AlertsConfig;
use larmor_ingest::archive::ArchiveConfig;
use larmor_ingest::kafka::{KafkaConfig, TopicsConfig};
use larmor_ingest::trust::TrustConfig;
use larmor_stage::WhenFull;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
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
    pub status: StatusConfig,
    pub run: RunConfig,
}

/// Where the device registry lives.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Path of the registry TOML. Unset: the simulated fleet is enrolled, and its
    /// registry is written to `devices.toml` in the data directory for reference.
    pub path: Option<PathBuf>,
    /// How often a running pipeline checks the registry file for changes: a
    /// revocation, enrolment or new key takes effect within this time, without a restart.
    #[serde(with = "humantime_serde")]
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Start the simulator inside `larmor run` (on by default, for the embedded demo).
    pub enabled: bool,
    pub machines: usize,
    /// Samples per second per machine and stream.
    pub rate_hz: f64,
    /// How often each machine sends a frame.
    #[serde(with = "humantime_serde")]
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

/// The status page and the per-machine gauges, `[status]`: owned by the dashboards crate.
pub use larmor_dashboards::fleet::StatusConfig;

/// The Prometheus endpoint, which also serves the status page at `/`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of `/metrics` and of the status page (`/`); port 0 picks a free
    /// port. Loopback by default: the page shows every machine's site and state.
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// How often the live summary is printed.
    #[serde(with = "humantime_serde")]
    pub summary_interval: Duration,
    /// On stop, how long to keep consuming until every produced message is read.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Frames waiting between ingest and the detectors, at most. When full,
    /// ingest waits (detection is local work; the wait is counted in
    /// `larmor_queue_blocked_seconds_total{queue="detect"}`).
    pub detect_queue: usize,
    /// Anomalies waiting for alert delivery (and, separately, for the anomalies
    /// table), at most.
    pub alert_queue: usize,
    /// What happens when the alert queue is full: `"drop"` the alert and count it
    /// in `larmor_queue_dropped_total{queue="alerts"}` (ingest and detection never
    /// wait for delivery; the anomaly is still in the anomalies table), or
    /// `"block"` (no alert is lost, but slow delivery holds ingest back).
    pub alert_queue_full: WhenFull,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            summary_interval: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            detect_queue: 4096,
            alert_queue: 1024,
            alert_queue_full: WhenFull::Drop,
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
        // Every field of every section, so the example cannot drift from the code.
        assert_eq!(c, LarmorConfig::default());
        assert!(c.embedded());
        larmor_analytics::DetectorSet::from_config(&c.detect).expect("the example's detectors build");
    }

    /// The dotted paths of every key in a TOML table (`archive.path`, ...).
    fn keys(table: &toml::Table, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) if !t.is_empty() => keys(t, &path, out),
                _ => {
                    out.insert(path);
                }
            }
        }
    }

    #[test]
    fn every_setting_is_in_the_example_file_and_nothing_else() {
        // Equal values alone would not notice a setting missing from the example
        // (its default fills in): compare the keys too, both ways.
        let text = include_str!("../../larmor.example.toml");
        let example: toml::Table = toml::from_str(text).unwrap();
        let defaults = toml::Table::try_from(LarmorConfig::default()).unwrap();
        let (mut want, mut have) = (Default::default(), Default::default());
        keys(&defaults, "", &mut want);
        keys(&example, "", &mut have);
        let missing: Vec<_> = want.difference(&have).collect();
        let extra: Vec<_> = have.difference(&want).collect();
        assert!(
            missing.is_empty(),
            "settings missing from larmor.example.toml: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "keys in larmor.example.toml the code does not have: {extra:?}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = LarmorConfig::parse("[kafka]\nbrokerz = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("brokerz"), "{e}");
    }
}
