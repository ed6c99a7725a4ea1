//! What every detector section of `[detect]` shares, in one place: when an
//! episode opens and closes (`confirm`, `clear_after`) and which channels the
//! detector watches, beside the detector's own settings in the same TOML table
//! ([`Section`]); and the one builder that checks a section and makes its
//! detector ([`Section::detector`]).

use super::ConfigError;
use super::series::{Debounce, channel_mask};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One `[detect.<name>]` section: the keys every detector has, and its own
/// (`S`, flattened: they sit in the same table). Unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(
    default,
    deny_unknown_fields,
    bound(deserialize = "S: DetectorSettings", serialize = "S: DetectorSettings")
)]
pub struct Section<S> {
    /// Consecutive readings at or above the threshold that open an episode.
    pub confirm: u32,
    /// Consecutive readings below the release level (80 % of the threshold) that close it.
    pub clear_after: u32,
    /// Channels watched (catalogue names, see ingest/README.md).
    pub channels: Vec<String>,
    /// The detector's own settings.
    #[serde(flatten)]
    pub settings: S,
}

/// A detector's own settings, and what its section defaults to.
pub trait DetectorSettings: Clone + Default + DeserializeOwned + Serialize {
    /// The section's name under `[detect]`, also the detector's name.
    const SECTION: &'static str;
    type Detector: super::Detector;
    /// Defaults of `confirm` and `clear_after`.
    const DEBOUNCE: Debounce;
    /// Default channels.
    fn default_channels() -> Vec<String>;
    /// Checks the settings and makes the detector.
    fn build(&self, debounce: Debounce, watched: Vec<bool>) -> Result<Self::Detector, ConfigError>;
}

impl<S: DetectorSettings> Default for Section<S> {
    fn default() -> Self {
        Section {
            confirm: S::DEBOUNCE.confirm,
            clear_after: S::DEBOUNCE.clear_after,
            channels: S::default_channels(),
            settings: S::default(),
        }
    }
}

impl<S: DetectorSettings> Section<S> {
    /// Checks the section and makes its detector.
    pub fn detector(&self) -> Result<S::Detector, ConfigError> {
        let watched = channel_mask(S::SECTION, &self.channels)?;
        let debounce = Debounce {
            confirm: self.confirm,
            clear_after: self.clear_after,
        };
        self.settings.build(debounce, watched)
    }
}

/// A threshold must be a positive number.
pub fn positive(section: &'static str, name: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_nan() || value <= 0.0 {
        return Err(ConfigError::invalid(section, format!("{name} must be above 0")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::detect::DetectConfig;

    #[test]
    fn shared_and_own_keys_sit_in_one_table_and_typos_are_errors() {
        let c: DetectConfig = toml_like(
            r#"
            [robust]
            window = 32
            confirm = 5
            channels = ["helium_level_pct"]
            "#,
        )
        .unwrap();
        assert_eq!((c.robust.settings.window, c.robust.confirm), (32, 5));
        assert_eq!(c.robust.clear_after, 3, "the robust detector's own default");
        assert_eq!(c.robust.channels, vec!["helium_level_pct"]);
        assert_eq!(c.drift, Default::default());
        let e = toml_like("[robust]\nwindoww = 32\n").unwrap_err();
        assert!(e.contains("windoww"), "{e}");
        let e = toml_like("[rate]\nconfirm = -1\n").unwrap_err();
        assert!(!e.is_empty());
        // An unknown channel is an error that names the section.
        let mut c = DetectConfig::default();
        c.vibration.channels.push("no_such".into());
        let e = c.vibration.detector().err().unwrap().to_string();
        assert!(e.contains("detect.vibration") && e.contains("no_such"), "{e}");
    }

    /// A `[detect]` table from TOML-like text (JSON through serde, so the
    /// analytics crate needs no TOML parser): `[name]` headers and `key = value` lines.
    fn toml_like(text: &str) -> Result<DetectConfig, String> {
        let mut root = serde_json::Map::new();
        let mut section: Option<String> = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                root.insert(name.into(), serde_json::Value::Object(Default::default()));
                section = Some(name.into());
                continue;
            }
            let (k, v) = line.split_once('=').ok_or("key = value")?;
            let v: serde_json::Value = serde_json::from_str(v.trim()).map_err(|e| e.to_string())?;
            let s = section.as_ref().ok_or("a key before any section")?;
            root[s].as_object_mut().expect("a table").insert(k.trim().into(), v);
        }
        serde_json::from_value(serde_json::Value::Object(root)).map_err(|e| e.to_string())
    }
}
