//! The data dictionary (`datasets/README.md`) documents every channel with the
//! catalogue's unit and alarm limits, every failure mode and every sensor fault.

use larmor_datasets::modes::{FailureMode, SensorFaultKind};
use larmor_ingest::CATALOG;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn every_channel_is_documented_with_its_unit_and_alarm_limits() {
    let text = readme();
    let limit = |l: Option<f64>| l.map_or("–".to_string(), |v| v.to_string());
    for c in CATALOG {
        let prefix = format!("| `{}` | {} | {} | ", c.name, c.stream, c.unit);
        let row = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no row starting {prefix:?}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[5], limit(c.alarm_low), "{} alarm low", c.name);
        assert_eq!(cells[6], limit(c.alarm_high), "{} alarm high", c.name);
    }
}

#[test]
fn every_mode_and_fault_is_documented() {
    let text = readme();
    for m in FailureMode::ALL {
        assert!(text.contains(&format!("| `{}` |", m.slug())), "{m:?}");
    }
    for k in SensorFaultKind::ALL {
        assert!(text.contains(&format!("| `{}` |", k.slug())), "{k:?}");
    }
}
