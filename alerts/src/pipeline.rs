//! The notification pipeline, in explicit stages as in Alertmanager:
//! **dedup** (one notice per episode group within a window), **route** (which
//! parties may see it), **deliver** (per-party channel, with **retry**). In
//! `larmor run` it is the sink at the end of the anomalies' path, and records
//! each alert, with who received it, in the `alerts` table.

use crate::alert::Alert;
use crate::alert_table::{self, AlertTable};
use crate::outbox::{Channel, OutboxChannel, Party};
use larmor_analytics::Anomaly;
use larmor_datadir::DataDir;
use larmor_ingest::SharedRegistry;
use prometheus::{IntCounter, IntCounterVec, Registry};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

/// Settings of alert delivery.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Root of the local outboxes (`admin/`, `manufacturer/<slug>/`); by default
    /// `outbox/` in the data directory.
    pub outbox: PathBuf,
    /// Repeats of the same machine/detector/channel within this window are dropped.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Delivery attempts per notice before it is counted as failed.
    pub max_attempts: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            outbox: larmor_datadir::DataDir::default().outbox(),
            dedup_window: Duration::from_secs(600),
            max_attempts: 3,
        }
    }
}

#[derive(Clone)]
pub struct AlertMetrics {
    pub notifications: IntCounterVec,
    pub deduplicated: IntCounterVec,
    pub failed: IntCounterVec,
}

impl AlertMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = AlertMetrics {
            notifications: larmor_metrics::ALERTS.int_counter_vec(r)?,
            deduplicated: larmor_metrics::ALERTS_DEDUPLICATED.int_counter_vec(r)?,
            failed: larmor_metrics::ALERTS_FAILED.int_counter_vec(r)?,
        };
        // Series that exist from the start, at zero, so a rate() or an alert rule
        // sees them before the first notice.
        let admin = Party::Admin.channel_name();
        m.notifications.with_label_values(&[&admin]);
        m.failed.with_label_values(&[&admin]);
        Ok(m)
    }

    /// Starts the dedup counter of each detector at zero.
    pub fn init_detectors(&self, detectors: &[&str]) {
        for d in detectors {
            self.deduplicated.with_label_values(&[d]);
        }
    }
}

/// What happened to one anomaly.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub delivered_to: Vec<String>,
    pub deduplicated: bool,
    /// The alert made from the anomaly, unless the dedup stage dropped it.
    pub alert: Option<Alert>,
}

pub struct AlertPipeline {
    config: AlertsConfig,
    /// Shared with ingest: a registry reload re-routes alerts at once.
    registry: SharedRegistry,
    last_sent: HashMap<(String, &'static str, &'static str), i64>,
    channels: BTreeMap<Party, Box<dyn Channel>>,
    metrics: AlertMetrics,
    /// Where every alert is recorded with who received it (the `alerts` table),
    /// and the counter of failed writes.
    record: Option<(AlertTable, IntCounter)>,
}

impl AlertPipeline {
    pub fn new(config: AlertsConfig, registry: impl Into<SharedRegistry>, metrics: AlertMetrics) -> Self {
        AlertPipeline {
            config,
            registry: registry.into(),
            last_sent: HashMap::new(),
            channels: BTreeMap::new(),
            metrics,
            record: None,
        }
    }

    /// Records every alert in `data`'s `alerts` table; `errors` counts failed writes.
    pub fn recording_to(mut self, data: &DataDir, errors: IntCounter) -> Self {
        self.record = Some((alert_table::writer(data), errors));
        self
    }

    pub fn process(&mut self, anomaly: &Anomaly) -> Outcome {
        let registry = self.registry.current();
        let Some(device) = registry.get(&anomaly.machine_id) else {
            tracing::warn!(machine = %anomaly.machine_id, "anomaly for a machine missing from the registry");
            return Outcome::default();
        };
        let alert = Alert::new(anomaly, device);

        // dedup
        let key = alert.group_key();
        let window = self.config.dedup_window.as_millis() as i64;
        if let Some(&last) = self.last_sent.get(&key)
            && alert.ts_ms - last < window
        {
            self.metrics.deduplicated.with_label_values(&[alert.detector]).inc();
            return Outcome {
                delivered_to: vec![],
                deduplicated: true,
                alert: None,
            };
        }
        self.last_sent.insert(key, alert.ts_ms);

        // route: the admin sees everything; the maker only its machine's health
        let mut outcome = Outcome::default();
        self.deliver(Party::Admin, &alert, &mut outcome);
        if let Some(notice) = alert.for_manufacturer() {
            self.deliver(Party::Manufacturer(alert.manufacturer.clone()), &notice, &mut outcome);
        }
        outcome.alert = Some(alert);
        outcome
    }

    fn deliver(&mut self, party: Party, notice: &dyn crate::outbox::erased::Notice, outcome: &mut Outcome) {
        let name = party.channel_name();
        let root = self.config.outbox.clone();
        let channel = self
            .channels
            .entry(party.clone())
            .or_insert_with(|| Box::new(OutboxChannel::new(&root, party)));
        // retry with a short backoff; a full disk or a lost mount is worth a second try
        for attempt in 1..=self.config.max_attempts.max(1) {
            match channel.deliver(notice) {
                Ok(()) => {
                    self.metrics.notifications.with_label_values(&[&name]).inc();
                    outcome.delivered_to.push(name);
                    return;
                }
                Err(e) => {
                    tracing::warn!(channel = %name, attempt, error = %e, "alert delivery failed");
                    std::thread::sleep(Duration::from_millis(50 * attempt as u64));
                }
            }
        }
        self.metrics.failed.with_label_values(&[&name]).inc();
    }
}

/// The alerts sink: the end of the anomalies' path in `larmor run`.
impl larmor_stage::Sink for AlertPipeline {
    type Input = Anomaly;

    fn consume(&mut self, anomaly: Anomaly) {
        let outcome = self.process(&anomaly);
        if let (Some(alert), Some((table, _))) = (outcome.alert, &mut self.record) {
            table.push(alert.ts_ms, (alert, outcome.delivered_to.join(",")));
        }
    }

    fn flush(&mut self) {
        if let Some((table, errors)) = &mut self.record
            && !table.flush_or_keep()
        {
            errors.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use larmor_analytics::AnomalyKind;
    use larmor_ingest::{Device, DeviceRegistry, Stream};
    use std::sync::Arc;

    fn registry() -> Arc<DeviceRegistry> {
        let d = |id: &str, m: &str| Device {
            machine_id: id.into(),
            site: "st-anne".into(),
            manufacturer: m.into(),
            model: "X".into(),
            firmware: "1".into(),
            public_key: None,
            revoked: false,
        };
        Arc::new(DeviceRegistry::new(vec![d("A", "aurora"), d("B", "boreal")]).unwrap())
    }

    fn anomaly(machine: &str, stream: Stream, channel: &'static str, ts_ms: i64) -> Anomaly {
        Anomaly {
            machine_id: machine.into(),
            stream,
            channels: vec![channel],
            ts_ms,
            value: 1.0,
            score: 0.6,
            detector: "threshold",
            kind: if stream == Stream::Room {
                AnomalyKind::Environment
            } else {
                AnomalyKind::MachineHealth
            },
            explanation: "test".into(),
        }
    }

    #[test]
    fn routes_dedups_and_keeps_parties_apart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AlertsConfig {
            outbox: dir.path().into(),
            ..Default::default()
        };
        let reg = Registry::new();
        let mut p = AlertPipeline::new(cfg, registry(), AlertMetrics::register(&reg).unwrap());

        let o = p.process(&anomaly("A", Stream::Temperature, "helium_level_pct", 1_000));
        assert_eq!(o.delivered_to, vec!["admin", "manufacturer/aurora"]);
        let o = p.process(&anomaly("A", Stream::Temperature, "helium_level_pct", 2_000));
        assert!(o.deduplicated);
        let o = p.process(&anomaly("B", Stream::Room, "room_o2_pct", 3_000));
        assert_eq!(o.delivered_to, vec!["admin"]);

        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap_or_default();
        assert_eq!(read("admin/alerts.jsonl").lines().count(), 2);
        let aurora = read("manufacturer/aurora/alerts.jsonl");
        assert_eq!(aurora.lines().count(), 1);
        assert!(!aurora.contains("st-anne"), "no site data for the manufacturer");
        assert!(
            !dir.path().join("manufacturer/boreal").exists(),
            "room alert never reaches boreal"
        );
        assert_eq!(p.metrics.notifications.with_label_values(&["admin"]).get(), 2);
    }

    #[test]
    fn a_registry_reload_routes_alerts_for_newly_enrolled_machines() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AlertsConfig {
            outbox: dir.path().into(),
            ..Default::default()
        };
        let shared = SharedRegistry::new(registry());
        let mut p = AlertPipeline::new(cfg, shared.clone(), AlertMetrics::register(&Registry::new()).unwrap());
        // Not enrolled yet: nobody is told.
        let o = p.process(&anomaly("C", Stream::Temperature, "helium_level_pct", 1_000));
        assert!(o.delivered_to.is_empty());

        let mut devices = registry().devices().to_vec();
        let mut c = devices[0].clone();
        c.machine_id = "C".into();
        c.manufacturer = "celsius".into();
        devices.push(c);
        shared.replace(Arc::new(DeviceRegistry::new(devices).unwrap()));
        let o = p.process(&anomaly("C", Stream::Temperature, "helium_level_pct", 2_000));
        assert_eq!(o.delivered_to, vec!["admin", "manufacturer/celsius"]);
    }
}
