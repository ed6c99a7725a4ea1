//! The open alerts the status page lists: those the alerts pipeline keeps in
//! its store (`alerts.db` in the data directory), read through the alerts
//! crate's own API (`larmor_alerts::store::Store`), never its SQL.

use larmor_alerts::store::Store;
use larmor_alerts::{Alert, AlertState, Severity};
use larmor_datadir::DataDir;
use std::path::PathBuf;

/// Alerts listed at most, per state.
pub const LIMIT: usize = 100;

/// What the store says about open alerts.
#[derive(Debug, Clone)]
pub enum OpenAlerts {
    /// No store yet (the alerts pipeline makes it when it starts).
    NoStore(PathBuf),
    /// The store exists and cannot be read: the error says why.
    Unreadable(String),
    /// Firing and acknowledged alerts: firing first, then critical first,
    /// then newest first. `truncated`: more than [`LIMIT`] of a state.
    Open { alerts: Vec<Alert>, truncated: bool },
}

/// Reads the open alerts of the store in `data`. Does not create the store.
pub fn read(data: &DataDir) -> OpenAlerts {
    let path = data.alert_store();
    if !path.exists() {
        return OpenAlerts::NoStore(path);
    }
    let store = match Store::open(&path) {
        Ok(s) => s,
        Err(e) => return OpenAlerts::Unreadable(e.to_string()),
    };
    let mut alerts = Vec::new();
    let mut truncated = false;
    for state in [AlertState::Firing, AlertState::Acknowledged] {
        match store.list(Some(state), LIMIT + 1) {
            Ok(mut found) => {
                truncated |= found.len() > LIMIT;
                found.truncate(LIMIT);
                alerts.extend(found);
            }
            Err(e) => return OpenAlerts::Unreadable(e.to_string()),
        }
    }
    alerts.sort_by(|a, b| {
        let rank = |a: &Alert| (a.state != AlertState::Firing, a.severity != Severity::Critical);
        rank(a).cmp(&rank(b)).then(b.starts_at_ms.cmp(&a.starts_at_ms))
    });
    OpenAlerts::Open { alerts, truncated }
}

#[cfg(test)]
mod tests {
    use super::*;
    use larmor_analytics::{Anomaly, AnomalyKind};
    use larmor_ingest::{Device, Stream};

    fn alert(machine: &str, channel: &'static str, score: f64, ts_ms: i64) -> Alert {
        let device = Device {
            machine_id: machine.into(),
            site: "north".into(),
            manufacturer: "aurora".into(),
            model: "X1".into(),
            firmware: "1".into(),
            public_key: None,
            revoked: false,
        };
        Alert::open(
            &Anomaly {
                machine_id: machine.into(),
                stream: Stream::Temperature,
                channels: vec![channel],
                ts_ms,
                value: 31.0,
                score,
                detector: "threshold",
                kind: AnomalyKind::MachineHealth,
                explanation: format!("{channel} out of range"),
            },
            &device,
        )
    }

    #[test]
    fn no_store_is_said_and_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        assert!(matches!(read(&data), OpenAlerts::NoStore(p) if p == data.alert_store()));
        assert!(!data.alert_store().exists());
    }

    #[test]
    fn firing_then_acknowledged_critical_first_resolved_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let store = Store::open(&data.alert_store()).unwrap();
        let warning = alert("MRI-0001", "helium_level_pct", 0.5, 1_000);
        let critical = alert("MRI-0002", "helium_level_pct", 0.9, 500);
        let mut acked = alert("MRI-0003", "coldhead_stage2_k", 0.9, 3_000);
        acked.state = AlertState::Acknowledged;
        let mut resolved = alert("MRI-0004", "water_inlet_c", 0.9, 4_000);
        resolved.state = AlertState::Resolved;
        for a in [&warning, &critical, &acked, &resolved] {
            store.put_alert(a).unwrap();
        }
        let OpenAlerts::Open { alerts, truncated } = read(&data) else {
            panic!("the store reads")
        };
        assert!(!truncated);
        let order: Vec<&str> = alerts.iter().map(|a| a.machine_id.as_str()).collect();
        assert_eq!(order, ["MRI-0002", "MRI-0001", "MRI-0003"]);
    }

    #[test]
    fn an_unreadable_store_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        std::fs::write(data.alert_store(), b"this is not an SQLite database, not at all").unwrap();
        match read(&data) {
            OpenAlerts::Unreadable(e) => assert!(e.contains("alerts.db"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
