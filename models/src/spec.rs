//! The feature schema: which inputs exist (channels, channel groups, detectors,
//! service log), the column names they give, and a hash over both. A model stores
//! the schema it was trained on and refuses a feature matrix with any other,
//! naming the first column that differs.

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Name of the feature family; bump [`FEATURE_VERSION`] whenever a formula changes.
pub const FEATURE_NAME: &str = "larmor-hourly-features";
pub const FEATURE_VERSION: u32 = 1;

/// Window lengths in hours, and how they are spelled in column names.
pub const WINDOWS: [(usize, &str); 4] = [(1, "1h"), (6, "6h"), (24, "24h"), (168, "7d")];
/// Statistics per channel and window.
pub const WINDOW_STATS: [&str; 5] = ["mean", "std", "slope", "min", "max"];
/// The per-machine baseline that drift features compare against: the 30 days that
/// ended 7 days before the row's time.
pub const BASELINE_HOURS: usize = 30 * 24;
pub const BASELINE_GAP_HOURS: usize = 7 * 24;
/// How far back any feature looks (the baseline's start): a forecast reads only this
/// much of the archive, and `data:hours_observed` is capped here.
pub const LOOKBACK_HOURS: usize = BASELINE_GAP_HOURS + BASELINE_HOURS;
/// Exams per day from `door_open` (1 during the first and last minute of an exam):
/// the share of time the door is open × 1440 min / 2 min per exam.
pub const DOOR_CHANNEL: &str = "door_open";
pub const EXAMS_PER_OPEN_SHARE: f64 = 1440.0 / 2.0;

/// What the features are computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub name: String,
    pub version: u32,
    /// Every numeric channel, sorted (catalogue channels and any others alike).
    pub channels: Vec<String>,
    /// Related channels (the multivariate detector's groups whose channels all exist):
    /// the first is explained by the others; residual features per group.
    pub groups: Vec<Vec<String>>,
    /// Vibration band channels with log-ratio trend features.
    pub bands: Vec<String>,
    /// Detectors of the `anomalies` table (empty: no anomaly features).
    pub detectors: Vec<String>,
    /// Anomaly kinds (machine_health, environment, sensor_fault).
    pub anomaly_kinds: Vec<String>,
    /// Whether a service log (maintenance, failures) feeds "time since" features.
    pub service_log: bool,
    pub columns: Vec<String>,
    /// Hex SHA-256 over name, version and columns.
    pub hash: String,
}

impl FeatureSpec {
    pub fn new(
        channels: Vec<String>,
        groups: Vec<Vec<String>>,
        detectors: Vec<String>,
        anomaly_kinds: Vec<String>,
        service_log: bool,
    ) -> FeatureSpec {
        let bands: Vec<String> = channels.iter().filter(|c| is_vibration_band(c)).cloned().collect();
        let groups: Vec<Vec<String>> = groups
            .into_iter()
            .filter(|g| g.len() >= 2 && g.iter().all(|c| channels.contains(c)))
            .collect();
        let mut columns = Vec::new();
        for c in &channels {
            columns.push(format!("{c}:last"));
            for (_, w) in WINDOWS {
                for s in WINDOW_STATS {
                    columns.push(format!("{c}:{s}_{w}"));
                }
            }
            columns.push(format!("{c}:drift_24h"));
            columns.push(format!("{c}:drift_7d"));
            columns.push(format!("{c}:coverage_24h"));
        }
        for g in &groups {
            for w in ["1h", "24h", "7d"] {
                columns.push(format!("resid:{}:z_{w}", g[0]));
            }
        }
        for b in &bands {
            columns.push(format!("band:{b}:log_ratio_24h"));
            columns.push(format!("band:{b}:log_ratio_7d"));
        }
        if channels.iter().any(|c| c == DOOR_CHANNEL) {
            columns.push("usage:exams_per_day_24h".into());
            columns.push("usage:exams_per_day_7d".into());
        }
        for d in &detectors {
            columns.push(format!("anomalies:{d}:24h"));
            columns.push(format!("anomalies:{d}:7d"));
        }
        for k in &anomaly_kinds {
            columns.push(format!("anomaly_kind:{k}:1h"));
            columns.push(format!("anomaly_kind:{k}:24h"));
        }
        if service_log {
            columns.push("service:hours_since_maintenance".into());
            columns.push("service:hours_since_failure".into());
        }
        columns.push("data:hours_observed".into());
        let hash = hash_columns(FEATURE_NAME, FEATURE_VERSION, &columns);
        FeatureSpec {
            name: FEATURE_NAME.into(),
            version: FEATURE_VERSION,
            channels,
            groups,
            bands,
            detectors,
            anomaly_kinds,
            service_log,
            columns,
            hash,
        }
    }

    pub fn width(&self) -> usize {
        self.columns.len()
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Ok when `other` has exactly these columns in this order; otherwise an error that
    /// names the first column that differs and says what to do.
    pub fn check(&self, other: &FeatureSpec) -> Result<()> {
        if self.name != other.name || self.version != other.version {
            return Err(ModelError::Schema(format!(
                "the model expects features `{} v{}`, the input is `{} v{}`: retrain the model with this larmor",
                self.name, self.version, other.name, other.version
            )));
        }
        let hint = |col: &str| {
            if col.starts_with("anomalies:") || col.starts_with("anomaly_kind:") {
                " (anomaly features come from the `anomalies` table: run `larmor detect --archive DIR` so both sides have it)"
            } else if col.starts_with("service:") {
                " (\"time since\" features need the service log: pass --events)"
            } else {
                " (the archives hold different channels; train on data with the same channels)"
            }
        };
        for (i, (a, b)) in self.columns.iter().zip(&other.columns).enumerate() {
            if a != b {
                return Err(ModelError::Schema(format!(
                    "column {i}: the model expects `{a}`, the input has `{b}`{}",
                    hint(a)
                )));
            }
        }
        if self.columns.len() > other.columns.len() {
            let a = &self.columns[other.columns.len()];
            return Err(ModelError::Schema(format!(
                "column {}: the model expects `{a}`, the input has no such column{}",
                other.columns.len(),
                hint(a)
            )));
        }
        if other.columns.len() > self.columns.len() {
            let b = &other.columns[self.columns.len()];
            return Err(ModelError::Schema(format!(
                "column {}: the input has `{b}`, which the model was not trained on{}",
                self.columns.len(),
                hint(b)
            )));
        }
        if self.hash != other.hash {
            return Err(ModelError::Schema(format!(
                "same columns but schema hash {} ≠ {}: the model file was edited or is corrupt",
                self.hash, other.hash
            )));
        }
        Ok(())
    }
}

/// A vibration band channel: named `*_band_*` (Larmor's catalogue) or `*band*`.
pub fn is_vibration_band(channel: &str) -> bool {
    channel.contains("_band_") || channel.starts_with("band_")
}

pub fn hash_columns(name: &str, version: u32, columns: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(version.to_le_bytes());
    for c in columns {
        h.update((c.len() as u64).to_le_bytes());
        h.update(c.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(channels: &[&str], service: bool) -> FeatureSpec {
        FeatureSpec::new(
            channels.iter().map(|s| s.to_string()).collect(),
            vec![vec!["a".into(), "b".into()], vec!["a".into(), "zz".into()]],
            vec!["threshold".into()],
            vec![],
            service,
        )
    }

    #[test]
    fn groups_need_all_their_channels_and_columns_are_named() {
        let s = spec(&["a", "b", "compressor_band_bearing_mms"], true);
        assert_eq!(s.groups, vec![vec!["a".to_string(), "b".to_string()]]);
        assert_eq!(s.bands, vec!["compressor_band_bearing_mms".to_string()]);
        assert!(s.column("a:slope_7d").is_some());
        assert!(s.column("resid:a:z_24h").is_some());
        assert!(s.column("band:compressor_band_bearing_mms:log_ratio_24h").is_some());
        assert!(s.column("anomalies:threshold:7d").is_some());
        assert!(s.column("service:hours_since_failure").is_some());
        assert_eq!(s.hash.len(), 64);
    }

    #[test]
    fn check_names_the_first_differing_column() {
        let a = spec(&["a", "b"], true);
        assert!(a.check(&a.clone()).is_ok());
        let e = a.check(&spec(&["a", "c"], true)).unwrap_err().to_string();
        assert!(e.contains("`b:last`") && e.contains("`c:last`"), "{e}");
        let e = a.check(&spec(&["a", "b"], false)).unwrap_err().to_string();
        assert!(
            e.contains("service:hours_since_maintenance") && e.contains("--events"),
            "{e}"
        );
        let mut tampered = a.clone();
        tampered.hash = "0".repeat(64);
        assert!(a.check(&tampered).unwrap_err().to_string().contains("hash"));
        assert_ne!(a.hash, spec(&["a", "c"], true).hash);
    }
}
