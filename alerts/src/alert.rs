//! Alerts and the per-party notices made from them. A manufacturer notice is a
//! separate type with fewer fields: what a manufacturer may not see cannot be
//! put into it.

use larmor_analytics::{Anomaly, AnomalyKind};
use larmor_ingest::{Device, Stream};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

/// An anomaly placed in its context: which machine, where, whose.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// Stable for one episode: machine, detector, channel and start time.
    pub id: String,
    pub machine_id: String,
    pub site: String,
    pub manufacturer: String,
    pub model: String,
    pub stream: Stream,
    pub channels: Vec<&'static str>,
    pub ts_ms: i64,
    pub value: f64,
    pub score: f64,
    pub severity: Severity,
    pub detector: &'static str,
    pub kind: AnomalyKind,
    pub summary: String,
}

impl Alert {
    pub fn new(a: &Anomaly, device: &Device) -> Alert {
        // Oxygen is life safety: always critical.
        let critical = a.score >= 0.8 || a.channels.contains(&"room_o2_pct");
        Alert {
            id: format!("{}:{}:{}:{}", a.machine_id, a.detector, a.channel(), a.ts_ms),
            machine_id: a.machine_id.clone(),
            site: device.site.clone(),
            manufacturer: device.manufacturer.clone(),
            model: device.model.clone(),
            stream: a.stream,
            channels: a.channels.clone(),
            ts_ms: a.ts_ms,
            value: a.value,
            score: a.score,
            severity: if critical {
                Severity::Critical
            } else {
                Severity::Warning
            },
            detector: a.detector,
            kind: a.kind,
            summary: a.explanation.clone(),
        }
    }

    /// Dedup key: one per machine, detector and channel.
    pub fn group_key(&self) -> (String, &'static str, &'static str) {
        (
            self.machine_id.clone(),
            self.detector,
            self.channels.first().copied().unwrap_or(""),
        )
    }

    /// The manufacturer's view, or None when the alert concerns hospital-private data.
    pub fn for_manufacturer(&self) -> Option<ManufacturerNotice> {
        if self.stream.is_hospital_private() {
            return None;
        }
        Some(ManufacturerNotice {
            id: self.id.clone(),
            machine_id: self.machine_id.clone(),
            model: self.model.clone(),
            stream: self.stream,
            channels: self.channels.clone(),
            ts_ms: self.ts_ms,
            value: self.value,
            score: self.score,
            severity: self.severity,
            detector: self.detector,
            summary: self.summary.clone(),
        })
    }
}

/// What a manufacturer's service team receives: machine health only, no site
/// data, nothing from the room stream.
#[derive(Debug, Clone, Serialize)]
pub struct ManufacturerNotice {
    pub id: String,
    pub machine_id: String,
    pub model: String,
    pub stream: Stream,
    pub channels: Vec<&'static str>,
    pub ts_ms: i64,
    pub value: f64,
    pub score: f64,
    pub severity: Severity,
    pub detector: &'static str,
    pub summary: String,
}
