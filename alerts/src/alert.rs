//! What an alert is: the machine, its severity, the suspected failure mode, the
//! evidence, a recommended action and a stable id, made from anomalies (and
//! forecasts, see [`crate::forecast`]). Also the labels the stages match on, as
//! in Alertmanager (`machine`, `site`, `vendor`, `mode`, `class`, `origin`, `severity`).

use larmor_analytics::{Anomaly, AnomalyKind};
use larmor_datasets::FailureMode;
use larmor_ingest::{Device, Stream};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Where an alert's trouble lies; alerts of different classes on one machine are
/// different groups (an HVAC episode and the machine's own fault are told apart,
/// so one can inhibit the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertClass {
    /// The machine itself may be degrading.
    MachineHealth,
    /// The room or its HVAC is out of specification.
    Environment,
    /// A sensor is suspect, not the machine.
    SensorFault,
    /// A forecast failure (a precursor of a failure not yet seen).
    Forecast,
}

impl AlertClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertClass::MachineHealth => "machine_health",
            AlertClass::Environment => "environment",
            AlertClass::SensorFault => "sensor_fault",
            AlertClass::Forecast => "forecast",
        }
    }
    pub fn of(kind: AnomalyKind) -> AlertClass {
        match kind {
            AnomalyKind::MachineHealth => AlertClass::MachineHealth,
            AnomalyKind::Environment => AlertClass::Environment,
            AnomalyKind::SensorFault => AlertClass::SensorFault,
        }
    }
}

/// Alertmanager's states, plus acknowledged (someone is on it: no repeats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Acknowledged,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<AlertState> {
        [AlertState::Firing, AlertState::Acknowledged, AlertState::Resolved]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One piece of evidence: a channel's value that a detector found anomalous, or a
/// forecast's probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub channel: String,
    pub stream: Stream,
    pub detector: String,
    pub ts_ms: i64,
    pub value: f64,
    pub score: f64,
    pub explanation: String,
}

/// Channels whose alerts are life safety: always critical, and never muted by
/// a planned maintenance visit (engineers are in the room then).
pub const LIFE_SAFETY_CHANNELS: &[&str] = &["room_o2_pct"];

/// An alert: one episode on one machine (its group), however many detectors it tripped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable: the same episode gets the same id, after a restart too.
    pub id: String,
    pub machine_id: String,
    pub site: String,
    pub vendor: String,
    pub model: String,
    pub class: AlertClass,
    pub severity: Severity,
    /// The failure mode the evidence points at, when it points at one.
    #[serde(with = "mode_slug::option")]
    pub mode: Option<FailureMode>,
    pub state: AlertState,
    pub starts_at_ms: i64,
    /// Last anomaly folded into the episode.
    pub updated_at_ms: i64,
    pub ends_at_ms: Option<i64>,
    /// The anomalies folded in, first the one that opened the episode (at most
    /// [`Alert::MAX_EVIDENCE`]; `anomalies` counts them all).
    pub evidence: Vec<Evidence>,
    pub anomalies: u32,
    pub summary: String,
    pub action: String,
    /// Set for forecast alerts: the forecast behind it.
    pub forecast: Option<crate::forecast::Forecast>,
}

impl Alert {
    /// Whether any of its evidence is a life-safety channel.
    pub fn is_life_safety(&self) -> bool {
        self.evidence
            .iter()
            .any(|e| LIFE_SAFETY_CHANNELS.contains(&e.channel.as_str()))
    }

    pub const MAX_EVIDENCE: usize = 32;

    /// The group an anomaly belongs to: machine and class.
    pub fn group_key(machine: &str, class: AlertClass, mode: Option<FailureMode>) -> String {
        match class {
            // Forecasts are per mode: two modes forecast on one machine are two alerts.
            AlertClass::Forecast => format!("{machine}/forecast/{}", mode.map(|m| m.slug()).unwrap_or("unknown")),
            c => format!("{machine}/{}", c.as_str()),
        }
    }

    pub fn key(&self) -> String {
        Alert::group_key(&self.machine_id, self.class, self.mode)
    }

    /// Opens an episode from its first anomaly.
    pub fn open(a: &Anomaly, device: &Device) -> Alert {
        let class = AlertClass::of(a.kind);
        let mut alert = Alert {
            id: stable_id(&[&a.machine_id, class.as_str(), &a.ts_ms.to_string()]),
            machine_id: a.machine_id.clone(),
            site: device.site.clone(),
            vendor: device.manufacturer.clone(),
            model: device.model.clone(),
            class,
            severity: Severity::Warning,
            mode: None,
            state: AlertState::Firing,
            starts_at_ms: a.ts_ms,
            updated_at_ms: a.ts_ms,
            ends_at_ms: None,
            evidence: Vec::new(),
            anomalies: 0,
            summary: String::new(),
            action: String::new(),
            forecast: None,
        };
        alert.fold(a);
        alert
    }

    /// Folds one more anomaly of the episode in: evidence, severity, mode, action.
    /// Returns true when what a recipient would be told changed (severity or mode).
    pub fn fold(&mut self, a: &Anomaly) -> bool {
        let before = (self.severity, self.mode);
        self.anomalies += 1;
        self.updated_at_ms = self.updated_at_ms.max(a.ts_ms);
        if self.evidence.len() < Alert::MAX_EVIDENCE {
            self.evidence.push(Evidence {
                channel: a.channel().to_string(),
                stream: a.stream,
                detector: a.detector.to_string(),
                ts_ms: a.ts_ms,
                value: a.value,
                score: a.score,
                explanation: a.explanation.clone(),
            });
        }
        // Oxygen is life safety: always critical; a score of 0.8 is far past a detector's threshold.
        let sev = if a.score >= 0.8 || a.channels.iter().any(|c| LIFE_SAFETY_CHANNELS.contains(c)) {
            Severity::Critical
        } else {
            Severity::Warning
        };
        self.severity = self.severity.max(sev);
        if self.class != AlertClass::SensorFault {
            self.mode = suspected_mode(self.evidence.iter().map(|e| e.channel.as_str()));
        }
        self.summary = self.describe();
        self.action = recommended_action(self.class, self.mode, self.severity).to_string();
        (self.severity, self.mode) != before
    }

    fn describe(&self) -> String {
        let first = self.evidence.first().map(|e| e.explanation.as_str()).unwrap_or("");
        let what = match (self.class, self.mode) {
            (AlertClass::SensorFault, _) => "suspect sensor".to_string(),
            (_, Some(m)) => format!("suspected {}", m.describe()),
            (c, None) => c.as_str().replace('_', " "),
        };
        let mut channels: Vec<&str> = self.evidence.iter().map(|e| e.channel.as_str()).collect();
        channels.sort_unstable();
        channels.dedup();
        format!(
            "{}: {what}; {} anomalies on {} ({first})",
            self.machine_id,
            self.anomalies,
            channels.join(", ")
        )
    }

    /// The labels inhibition rules and silences match on.
    pub fn labels(&self) -> BTreeMap<&'static str, String> {
        let mut l = BTreeMap::new();
        l.insert("machine", self.machine_id.clone());
        l.insert("site", self.site.clone());
        l.insert("vendor", self.vendor.clone());
        l.insert("class", self.class.as_str().to_string());
        l.insert("severity", self.severity.as_str().to_string());
        l.insert("mode", self.mode.map(|m| m.slug()).unwrap_or("").to_string());
        l.insert(
            "origin",
            if self.forecast.is_some() { "forecast" } else { "anomaly" }.to_string(),
        );
        l
    }
}

/// Failure modes as their slugs (`cold_head_degradation`) in JSON.
pub mod mode_slug {
    use larmor_datasets::FailureMode;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(m: &FailureMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.slug())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FailureMode, D::Error> {
        let s = String::deserialize(d)?;
        FailureMode::from_slug(&s).ok_or_else(|| D::Error::custom(format!("unknown failure mode {s:?}")))
    }
    pub mod option {
        use super::*;
        pub fn serialize<S: Serializer>(m: &Option<FailureMode>, s: S) -> Result<S::Ok, S::Error> {
            match m {
                Some(m) => s.serialize_some(m.slug()),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FailureMode>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| {
                    FailureMode::from_slug(&s).ok_or_else(|| D::Error::custom(format!("unknown failure mode {s:?}")))
                })
                .transpose()
        }
    }
}

/// A short, stable id from its parts (hex of SHA-256, 16 bytes).
pub fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u32).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// The failure mode a set of anomalous channels points at, by the signatures of
/// the domain notes: compressor channels win over the cold head they drive (a
/// compressor stop also warms the cold head), water over the compressor it trips.
pub fn suspected_mode<'a>(channels: impl Iterator<Item = &'a str>) -> Option<FailureMode> {
    let mut seen = std::collections::BTreeSet::new();
    for c in channels {
        let m = match c {
            "water_inlet_c" | "water_outlet_c" | "water_flow_lpm" => FailureMode::ChillerFault,
            "compressor_band_bearing_mms" | "compressor_vib_kurtosis" | "compressor_vib_crest" => {
                FailureMode::CompressorBearingWear
            }
            c if c.starts_with("compressor_") => FailureMode::CompressorFailure,
            "coldhead_stage1_k"
            | "coldhead_stage2_k"
            | "vessel_heater_pct"
            | "coldhead_band_displacer_mms"
            | "coldhead_vib_rms_mms"
            | "coldhead_vib_peak_mms"
            | "coldhead_vib_crest"
            | "coldhead_vib_kurtosis" => FailureMode::ColdHeadDegradation,
            "helium_level_pct" | "vessel_pressure_kpa" => FailureMode::HeliumLeak,
            "gradient_coil_c" | "gradient_amp_c" | "gradient_vib_rms_mms" => FailureMode::GradientCoolingFault,
            "room_temp_c" | "room_humidity_pct" | "tech_room_temp_c" => FailureMode::HvacOutOfSpec,
            _ => continue,
        };
        seen.insert(m);
    }
    // Causes before effects: the first present in this order explains the rest.
    [
        FailureMode::ChillerFault,
        FailureMode::HvacOutOfSpec,
        FailureMode::CompressorBearingWear,
        FailureMode::CompressorFailure,
        FailureMode::GradientCoolingFault,
        FailureMode::ColdHeadDegradation,
        FailureMode::HeliumLeak,
    ]
    .into_iter()
    .find(|m| seen.contains(m))
}

/// What a recipient should do about it.
pub fn recommended_action(class: AlertClass, mode: Option<FailureMode>, severity: Severity) -> &'static str {
    use FailureMode::*;
    match (class, mode) {
        (AlertClass::SensorFault, _) => "check the sensor and its wiring; do not act on its readings until it is fixed",
        (_, Some(HvacOutOfSpec)) => {
            "check the room HVAC and the technical room; machine faults that follow may be its effect"
        }
        (_, Some(ChillerFault)) => {
            "check the chiller and cooling-water supply now: the compressor trips when it is out of range"
        }
        (_, Some(CompressorFailure)) => {
            "inspect the helium compressor (pressures, oil, adsorber); plan a service visit"
        }
        (_, Some(CompressorBearingWear)) => "plan a compressor bearing inspection at the next service window",
        (_, Some(ColdHeadDegradation)) => "plan a cold-head service before helium loss starts",
        (_, Some(HeliumLeak)) if severity == Severity::Critical => {
            "quench risk: check helium level and vessel pressure now and call the manufacturer's service"
        }
        (_, Some(HeliumLeak)) => "check helium level and vessel pressure trend; plan a leak check",
        (_, Some(GradientCoolingFault)) => {
            "check gradient cooling (water flow, coil temperature) before the interlock stops scanning"
        }
        (AlertClass::Environment, None) => "check the room conditions",
        _ => "review the machine's recent readings",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_explains_its_effects() {
        // A compressor stop warms the cold head too: one mode, the compressor.
        let chs = ["coldhead_stage2_k", "compressor_supply_mpa", "vessel_pressure_kpa"];
        assert_eq!(suspected_mode(chs.into_iter()), Some(FailureMode::CompressorFailure));
        // A chiller fault trips the compressor.
        let chs = ["compressor_supply_mpa", "water_inlet_c"];
        assert_eq!(suspected_mode(chs.into_iter()), Some(FailureMode::ChillerFault));
        assert_eq!(
            suspected_mode(["room_temp_c"].into_iter()),
            Some(FailureMode::HvacOutOfSpec)
        );
        // Oxygen and doors are not HVAC: no mode (oxygen is still critical, by severity).
        assert_eq!(suspected_mode(["room_o2_pct", "door_open"].into_iter()), None);
        assert_eq!(suspected_mode(["nonsense"].into_iter()), None);
    }

    #[test]
    fn ids_are_stable_and_unambiguous() {
        assert_eq!(stable_id(&["a", "b"]), stable_id(&["a", "b"]));
        assert_ne!(stable_id(&["ab", ""]), stable_id(&["a", "b"]));
        assert_eq!(stable_id(&["x"]).len(), 32);
    }
}
