//! Alertmanager's stages, each its own type, applied in this order:
//! [`Grouper`] (one alert per episode per machine and class), [`Inhibitor`]
//! (a firing cause mutes its effects), [`Silencer`] (operator and planned-
//! maintenance silences, with an expiry), [`Deduplicator`] (the persistent
//! notification log, with the repeat interval; acknowledged alerts are not
//! repeated). Resolution (stale episodes, `larmor alerts resolve`) sends a
//! resolved notice through the same stages (never muted: a recipient that was
//! told of a firing alert is told it ended).

use crate::alert::{Alert, AlertState};
use crate::config::InhibitRule;
use crate::store::{NflogEntry, Silence, Store, StoreError};
use larmor_analytics::Anomaly;
use larmor_ingest::Device;
use std::collections::BTreeMap;
use std::time::Duration;

/// What grouping did with an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouped {
    /// A new episode: a new alert.
    Opened,
    /// Folded into the open alert, and what it says changed (severity or mode).
    Changed,
    /// Folded in; nothing a recipient needs to hear again.
    Folded,
}

/// Groups anomalies into episodes: one alert per machine and class while
/// anomalies keep coming within `gap` of each other.
pub struct Grouper {
    pub gap: Duration,
}

impl Grouper {
    /// The alert the anomaly belongs to, and what changed. An open alert whose
    /// episode ended (no anomaly within the gap) is returned in `ended` to be resolved.
    pub fn group(
        &self,
        store: &Store,
        a: &Anomaly,
        device: &Device,
    ) -> Result<(Alert, Grouped, Option<Alert>), StoreError> {
        let probe = Alert::open(a, device);
        let key = probe.key();
        let gap = self.gap.as_millis() as i64;
        match store.open_alert(&key)? {
            Some(mut open) if a.ts_ms - open.updated_at_ms <= gap && a.ts_ms >= open.starts_at_ms - gap => {
                let changed = open.fold(a);
                Ok((open, if changed { Grouped::Changed } else { Grouped::Folded }, None))
            }
            Some(ended) => Ok((probe, Grouped::Opened, Some(ended))),
            None => Ok((probe, Grouped::Opened, None)),
        }
    }
}

/// Inhibition: a firing alert matching a rule's source mutes alerts matching its
/// target that have the same values of the rule's `equal` labels.
pub struct Inhibitor {
    pub rules: Vec<InhibitRule>,
}

fn matches(m: &BTreeMap<String, String>, labels: &BTreeMap<&'static str, String>) -> bool {
    m.iter().all(|(k, v)| labels.get(k.as_str()).is_some_and(|l| l == v))
}

impl Inhibitor {
    /// The id of the firing alert that inhibits `target`, if any.
    pub fn inhibited_by<'a>(&self, target: &Alert, firing: &'a [Alert]) -> Option<&'a Alert> {
        let t = target.labels();
        for r in &self.rules {
            if !matches(&r.target, &t) {
                continue;
            }
            for s in firing {
                if s.id == target.id || s.state == AlertState::Resolved {
                    continue;
                }
                let sl = s.labels();
                if matches(&r.source, &sl) && r.equal.iter().all(|k| t.get(k.as_str()) == sl.get(k.as_str())) {
                    return Some(s);
                }
            }
        }
        None
    }
}

/// Who made the silences a planned maintenance visit brings.
pub const MAINTENANCE_SILENCE_AUTHOR: &str = "schedule";

/// Silences, reread from the store at most every `refresh` (so one made by
/// `larmor alerts silence` applies within it).
pub struct Silencer {
    refresh: Duration,
    cached: Vec<Silence>,
    read_at: Option<std::time::Instant>,
}

impl Silencer {
    pub fn new(refresh: Duration) -> Silencer {
        Silencer {
            refresh,
            cached: Vec::new(),
            read_at: None,
        }
    }

    pub fn invalidate(&mut self) {
        self.read_at = None;
    }

    /// The silence that mutes `alert` at `at_ms`, if any. A planned maintenance
    /// visit never mutes a life-safety alert.
    pub fn silenced_by(&mut self, store: &Store, alert: &Alert, at_ms: i64) -> Result<Option<Silence>, StoreError> {
        if self.read_at.is_none_or(|t| t.elapsed() >= self.refresh) {
            self.cached = store.silences(at_ms.min(chrono::Utc::now().timestamp_millis()))?;
            self.read_at = Some(std::time::Instant::now());
        }
        let labels = alert.labels();
        let life_safety = alert.is_life_safety();
        Ok(self
            .cached
            .iter()
            .filter(|s| !(life_safety && s.created_by == MAINTENANCE_SILENCE_AUTHOR))
            .find(|s| s.matches(&labels, at_ms))
            .cloned())
    }
}

/// What a channel is told about an alert, in short: a repeat says the same.
pub fn told(alert: &Alert, resolved: bool) -> String {
    format!(
        "{}/{}/{}",
        if resolved { "resolved" } else { "firing" },
        alert.severity.as_str(),
        alert.mode.map(|m| m.slug()).unwrap_or("")
    )
}

/// Dedup against the notification log, with the repeat interval.
pub struct Deduplicator {
    pub repeat_interval: Duration,
}

/// Whether to notify, and the notice's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Send {
        idem_key: String,
    },
    /// Already told, and no repeat due.
    Duplicate,
}

impl Deduplicator {
    pub fn decide(&self, channel: &str, alert: &Alert, told: &str, last: Option<&NflogEntry>, now_ms: i64) -> Decision {
        let key = |extra: &str| crate::alert::stable_id(&[channel, &alert.id, told, extra]);
        match last {
            Some(e) if e.alert_id == alert.id && e.told == told => {
                let repeat_due = now_ms - e.sent_at_ms >= self.repeat_interval.as_millis() as i64;
                if told.starts_with("resolved") || alert.state == AlertState::Acknowledged || !repeat_due {
                    Decision::Duplicate
                } else {
                    // A repeat: its own key, fixed by the log entry it follows.
                    Decision::Send {
                        idem_key: key(&e.sent_at_ms.to_string()),
                    }
                }
            }
            // Resolved, but this channel never heard of it firing: nothing to tell.
            None if told.starts_with("resolved") => Decision::Duplicate,
            Some(e) if e.alert_id != alert.id && told.starts_with("resolved") => Decision::Duplicate,
            _ => Decision::Send { idem_key: key("") },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertClass, Severity};
    use larmor_datasets::FailureMode;

    fn alert(id: &str, class: AlertClass, mode: Option<FailureMode>, sev: Severity, forecast: bool) -> Alert {
        Alert {
            id: id.into(),
            machine_id: "M1".into(),
            site: "s".into(),
            vendor: "v".into(),
            model: "X".into(),
            class,
            severity: sev,
            mode,
            state: AlertState::Firing,
            starts_at_ms: 0,
            updated_at_ms: 0,
            ends_at_ms: None,
            evidence: vec![],
            anomalies: 1,
            summary: String::new(),
            action: String::new(),
            forecast: forecast.then(|| crate::forecast::Forecast {
                machine_id: "M1".into(),
                mode: mode.unwrap(),
                issued_at_ms: 0,
                probabilities: vec![],
                time_to_failure: None,
                model: "t".into(),
            }),
        }
    }

    #[test]
    fn hvac_inhibits_the_gradient_alert_it_causes_and_failures_their_forecasts() {
        let inh = Inhibitor {
            rules: InhibitRule::defaults(),
        };
        let hvac = alert(
            "h",
            AlertClass::Environment,
            Some(FailureMode::HvacOutOfSpec),
            Severity::Warning,
            false,
        );
        let grad = alert(
            "g",
            AlertClass::MachineHealth,
            Some(FailureMode::GradientCoolingFault),
            Severity::Warning,
            false,
        );
        assert_eq!(
            inh.inhibited_by(&grad, std::slice::from_ref(&hvac))
                .map(|a| a.id.as_str()),
            Some("h")
        );
        assert!(
            inh.inhibited_by(&hvac, std::slice::from_ref(&grad)).is_none(),
            "not the other way"
        );
        let mut other = hvac.clone();
        other.machine_id = "M2".into();
        assert!(inh.inhibited_by(&grad, &[other]).is_none(), "only on the same machine");
        let mut resolved = hvac.clone();
        resolved.state = AlertState::Resolved;
        assert!(
            inh.inhibited_by(&grad, &[resolved]).is_none(),
            "a resolved cause mutes nothing"
        );

        let fc = alert(
            "f",
            AlertClass::Forecast,
            Some(FailureMode::ColdHeadDegradation),
            Severity::Warning,
            true,
        );
        let fail = alert(
            "x",
            AlertClass::MachineHealth,
            Some(FailureMode::ColdHeadDegradation),
            Severity::Critical,
            false,
        );
        assert!(inh.inhibited_by(&fc, std::slice::from_ref(&fail)).is_some());
        let other_mode = alert(
            "y",
            AlertClass::MachineHealth,
            Some(FailureMode::HeliumLeak),
            Severity::Critical,
            false,
        );
        assert!(inh.inhibited_by(&fc, &[other_mode]).is_none());
    }

    #[test]
    fn dedup_repeats_after_the_interval_unless_acknowledged() {
        let d = Deduplicator {
            repeat_interval: Duration::from_secs(3600),
        };
        let mut a = alert("a", AlertClass::MachineHealth, None, Severity::Warning, false);
        let t = told(&a, false);
        let first = d.decide("admin/s", &a, &t, None, 0);
        assert!(matches!(first, Decision::Send { .. }));
        let log = NflogEntry {
            alert_id: "a".into(),
            told: t.clone(),
            sent_at_ms: 0,
        };
        assert_eq!(d.decide("admin/s", &a, &t, Some(&log), 1_000), Decision::Duplicate);
        let repeat = d.decide("admin/s", &a, &t, Some(&log), 3_600_000);
        assert!(matches!(repeat, Decision::Send { .. }));
        assert_ne!(repeat, first, "a repeat has its own idempotency key");
        // The same decision after a restart: the same key.
        assert_eq!(d.decide("admin/s", &a, &t, Some(&log), 3_700_000), repeat);
        a.state = AlertState::Acknowledged;
        assert_eq!(d.decide("admin/s", &a, &t, Some(&log), 3_600_000), Decision::Duplicate);
        // Escalation is news, acknowledged or not.
        a.severity = Severity::Critical;
        assert!(matches!(
            d.decide("admin/s", &a, &told(&a, false), Some(&log), 1),
            Decision::Send { .. }
        ));
        // Resolved: only to channels that heard it firing.
        assert_eq!(d.decide("admin/s", &a, &told(&a, true), None, 1), Decision::Duplicate);
        assert!(matches!(
            d.decide("admin/s", &a, &told(&a, true), Some(&log), 1),
            Decision::Send { .. }
        ));
    }
}
