use super::*;
use crate::fleet::forecast::ForecastRow;
use crate::fleet::{FleetState, StatusConfig};
use crate::open_alerts::OpenAlerts;
use larmor_alerts::Alert;
use larmor_analytics::{Anomaly, AnomalyKind};
use larmor_ingest::{ChannelId, Device, DeviceRegistry, Frame, Sample, SharedRegistry, Stream};
use prometheus::Registry;
use std::sync::Arc;
use std::time::Duration;

fn fleet() -> FleetState {
    let d = |id: &str, site: &str| Device {
        machine_id: id.into(),
        site: site.into(),
        manufacturer: "aurora".into(),
        model: "X1".into(),
        firmware: "1".into(),
        public_key: None,
        revoked: false,
    };
    let reg = DeviceRegistry::new(vec![d("MRI-0001", "St <Anne> & co"), d("MRI-0002", "north")]).unwrap();
    FleetState::register(
        &Registry::new(),
        SharedRegistry::new(Arc::new(reg)),
        StatusConfig::default(),
    )
    .unwrap()
}

fn helium_frames(f: &FleetState, machine: &str, from: f64) {
    let he = ChannelId::from_name("helium_level_pct").unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    for i in 0..30 {
        let ts = now - 60_000 + i * 2_000;
        f.observe_frame(&Frame {
            machine_id: machine.into(),
            stream: Stream::Temperature,
            seq: i as u64,
            ts_ms: ts,
            samples: vec![Sample {
                ts_ms: ts,
                values: vec![(he, from - i as f64)],
            }],
        });
    }
}

fn info() -> PageInfo {
    PageInfo {
        version: "0.1.0".into(),
        generated_ms: 1_764_000_000_000,
        pipeline: vec![("readings ingested".into(), "42".into())],
        refresh_seconds: 15,
        forecasts_table: "/data/forecasts".into(),
    }
}

/// Every URL-ish attribute or CSS reference in the page.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=", "href=", "url(", "@import", "action=", "srcset="] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            out.push(rest.chars().take(40).collect());
        }
    }
    out
}

#[test]
fn the_page_lists_machines_alerts_and_says_when_there_is_no_forecast() {
    let f = fleet();
    helium_frames(&f, "MRI-0001", 60.0);
    let anomaly = Anomaly {
        machine_id: "MRI-0001".into(),
        stream: Stream::Temperature,
        channels: vec!["helium_level_pct"],
        ts_ms: chrono::Utc::now().timestamp_millis(),
        value: 31.0,
        score: 0.9,
        detector: "threshold",
        kind: AnomalyKind::MachineHealth,
        explanation: "helium_level_pct 31 < alarm 40 <b>".into(),
    };
    f.observe_anomalies(std::slice::from_ref(&anomaly));
    let device = f.snapshot().machines[0].device.clone();
    let alerts = OpenAlerts::Open {
        alerts: vec![Alert::open(&anomaly, &device)],
        truncated: false,
    };
    let html = render(&f.snapshot(), &alerts, &info());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<td>MRI-0001</td>") && html.contains("<td>MRI-0002</td>"));
    assert!(html.contains("St &lt;Anne&gt; &amp; co"), "text is escaped");
    assert!(html.contains("alarm 40 &lt;b&gt;"), "explanations are escaped");
    assert!(!html.contains("40 <b>") && !html.contains("<Anne>"));
    assert!(html.contains("Open alerts (1)"));
    let open = &html[html.find("id=\"alerts\"").unwrap()..html.find("id=\"forecasts\"").unwrap()];
    assert!(
        open.contains("<td>firing</td><td class=\"bad\">critical</td><td>MRI-0001</td>"),
        "{open}"
    );
    assert!(
        open.contains("helium_level_pct"),
        "the summary names the channel: {open}"
    );
    assert!(html.contains("No forecasts: the forecasts table (/data/forecasts) has no forecast"));
    assert!(html.contains("<polyline"), "MRI-0001 has a trend");
    assert!(html.contains("no data yet"), "MRI-0002 has none");
    assert!(html.contains("readings ingested: <b>42</b>"));
    // Health 100 - 40 x (0.5 + 0.5 x 0.9) = 62: amber.
    assert!(html.contains("<td class=\"num warn\">62</td>"), "{html}");
    let refs = references(&html);
    assert!(
        refs.iter().all(|r| r.starts_with("\"data:")),
        "the page references nothing outside itself: {refs:?}"
    );
}

#[test]
fn forecasts_are_listed_most_likely_first() {
    let f = fleet();
    let row = |m: &str, p: f64| ForecastRow {
        machine_id: m.into(),
        mode: "helium_leak".into(),
        probability: p,
        horizon: Duration::from_secs(7 * 24 * 3600),
        predicted_failure_at_ms: Some(1_800_000_000_000),
        model: "logistic-v1".into(),
        issued_at_ms: 1_764_000_000_000,
    };
    f.record_forecasts(
        &[row("MRI-0001", 0.12), row("MRI-0002", 0.87)],
        Duration::from_millis(5),
    )
    .unwrap();
    let html = render(&f.snapshot(), &OpenAlerts::NoStore("alerts.db".into()), &info());
    let forecasts = &html[html.find("id=\"forecasts\"").unwrap()..];
    let (a, b) = (forecasts.find("MRI-0002").unwrap(), forecasts.find("MRI-0001").unwrap());
    assert!(a < b, "87 % before 12 %");
    assert!(forecasts.contains("87 %") && forecasts.contains("helium_leak") && forecasts.contains("2027-01-15"));
    assert!(forecasts.contains("Last read"));
}

#[test]
fn an_empty_fleet_says_so() {
    let reg = DeviceRegistry::new(vec![]).unwrap();
    let f = FleetState::register(
        &Registry::new(),
        SharedRegistry::new(Arc::new(reg)),
        StatusConfig::default(),
    )
    .unwrap();
    let html = render(
        &f.snapshot(),
        &OpenAlerts::NoStore("/d/alerts.db".into()),
        &PageInfo::default(),
    );
    assert!(html.contains("No machine is enrolled"));
    assert!(html.contains("No open alerts: there is no alert store yet (/d/alerts.db)"));
    let html = render(
        &f.snapshot(),
        &OpenAlerts::Unreadable("alert store /d/alerts.db: file is not a database".into()),
        &PageInfo::default(),
    );
    assert!(html.contains("Open alerts (unknown)") && html.contains("file is not a database"));
    assert!(!html.contains("http-equiv=\"refresh\""));
}
