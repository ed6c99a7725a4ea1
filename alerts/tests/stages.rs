//! The stages end to end, through the real store, sealing and the file channel:
//! grouping, inhibition, silences (operator and planned maintenance), dedup
//! that survives a restart, repeats, acknowledge, resolve with its notice, dead
//! deliveries raised to the site admin, forecasts with a maintenance window.

mod support;

use larmor_alerts::forecast::{Forecast, TimeToFailure};
use larmor_alerts::store::{Silence, Store};
use larmor_alerts::{AlertState, EventType};
use larmor_datadir::DataDir;
use larmor_datasets::FailureMode;
use std::time::Duration;
use support::*;

const HVAC_CHANNELS: [&str; 1] = ["room_temp_c"];

#[test]
fn a_compressor_stop_that_trips_twenty_detectors_is_one_alert() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path(), config(dir.path()));
    let t = now_ms();
    let channels = [
        "compressor_supply_mpa",
        "compressor_return_mpa",
        "compressor_vib_rms_mms",
        "coldhead_stage1_k",
        "coldhead_stage2_k",
        "vessel_pressure_kpa",
        "compressor_band_motor_mms",
        "compressor_vib_peak_mms",
        "coldhead_vib_rms_mms",
        "vessel_heater_pct",
    ];
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..20 {
        let o = p.process(&anomaly("M1", channels[i % channels.len()], t + i as i64 * 1000, 0.6));
        ids.insert(o.alert.unwrap().id);
        assert_eq!(o.grouped, i > 0);
    }
    assert_eq!(ids.len(), 1, "one alert for the episode");
    drop(p);
    let admin = opened(dir.path(), "admin/st-anne");
    assert_eq!(admin.len(), 1, "{admin:#?}");
    assert_eq!(admin[0]["suspected_failure_mode"], "compressor_failure");
    assert_eq!(admin[0]["anomalies"], 1, "told when it opened");
    let aurora = opened(dir.path(), "manufacturer/aurora");
    assert_eq!(aurora.len(), 1);
    assert!(aurora[0].get("site").is_none());
    // Other machines' parties heard nothing.
    assert!(envelopes(dir.path(), "manufacturer/boreal").is_empty());
    assert!(envelopes(dir.path(), "admin/north").is_empty());
}

#[test]
fn room_hvac_inhibits_the_gradient_alert_it_causes() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path(), config(dir.path()));
    let t = now_ms();
    let o = p.process(&anomaly("M1", HVAC_CHANNELS[0], t, 0.6));
    assert_eq!(o.sent_to, ["admin/st-anne", "manufacturer/aurora"]);
    let o = p.process(&anomaly("M1", "gradient_coil_c", t + 1000, 0.6));
    assert_eq!(o.muted, Some("inhibit"), "{o:?}");
    // On another machine of the site, no HVAC alert: the gradient alert goes out.
    let o = p.process(&anomaly("M2", "gradient_coil_c", t + 2000, 0.6));
    assert!(o.muted.is_none());
    drop(p);
    let vendor = opened(dir.path(), "manufacturer/aurora");
    assert_eq!(vendor.len(), 1, "aurora hears of M1's environment only");
    assert_eq!(vendor[0]["environment_out_of_spec"], true);
    assert!(vendor[0].get("evidence").is_none() && vendor[0].get("recommended_action").is_none());
    assert!(!serde_json::to_string(&vendor[0]).unwrap().contains("room_temp"));
}

#[test]
fn silences_mute_until_they_expire_and_planned_maintenance_silences_its_machine() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    // M1 has a planned maintenance visit now.
    std::fs::create_dir_all(data.schedules()).unwrap();
    let fmt = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y%m%dT%H%M%SZ")
            .to_string()
    };
    let t = now_ms();
    std::fs::write(
        data.schedule("M1"),
        format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:pm-1\r\nDTSTART:{}\r\nDTEND:{}\r\nCATEGORIES:MAINTENANCE\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            fmt(t - 3_600_000),
            fmt(t + 3_600_000)
        ),
    )
    .unwrap();
    let mut p = pipeline(dir.path(), config(dir.path()));
    let o = p.process(&anomaly("M1", "helium_level_pct", t, 0.6));
    assert_eq!(o.muted, Some("silence"));
    // Oxygen is life safety: engineers in the room do not mute it.
    let o = p.process(&anomaly("M1", "room_o2_pct", t, 0.9));
    assert_eq!(o.muted, None);
    // An operator silence on M2 that ends 300 ms from now.
    p.store()
        .add_silence(&Silence {
            id: "op-1".into(),
            matchers: [("machine".to_string(), "M2".to_string())].into(),
            starts_at_ms: t - 1000,
            ends_at_ms: now_ms() + 300,
            created_by: "test".into(),
            comment: String::new(),
        })
        .unwrap();
    let o = p.process(&anomaly("M2", "helium_level_pct", now_ms(), 0.6));
    assert_eq!(o.muted, Some("silence"));
    std::thread::sleep(Duration::from_millis(400));
    // Re-evaluated after the silence: the alert goes out now, once.
    p.tick();
    drop(p);
    let admin = opened(dir.path(), "admin/st-anne");
    let machines: Vec<&str> = admin.iter().map(|a| a["machine_id"].as_str().unwrap()).collect();
    assert_eq!(
        machines,
        ["M1", "M2"],
        "M1's oxygen alert, then M2's after its silence ended"
    );
    assert_eq!(admin[0]["severity"], "critical");
}

#[test]
fn the_notification_log_survives_a_restart_and_repeats_come_after_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.repeat_interval = Duration::from_millis(600);
    let t = now_ms();
    {
        let mut p = pipeline(dir.path(), cfg.clone());
        assert!(!p.process(&anomaly("M1", "helium_level_pct", t, 0.6)).sent_to.is_empty());
    }
    {
        // A restart: the same episode's next anomaly is neither a new alert nor a new notice.
        let mut p = pipeline(dir.path(), cfg.clone());
        let o = p.process(&anomaly("M1", "helium_level_pct", t + 1000, 0.6));
        assert!(o.grouped);
        assert_eq!(o.muted, Some("dedup"));
        std::thread::sleep(Duration::from_millis(700));
        p.tick();
    }
    let admin = opened(dir.path(), "admin/st-anne");
    assert_eq!(admin.len(), 2, "the first notice and one repeat");
    assert_eq!(admin[0]["alert_id"], admin[1]["alert_id"]);
    let ids: Vec<String> = envelopes(dir.path(), "admin/st-anne")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_ne!(ids[0], ids[1], "a repeat has its own idempotency key");
}

#[test]
fn acknowledged_alerts_do_not_repeat_and_resolving_sends_a_resolved_notice() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.repeat_interval = Duration::from_millis(100);
    let mut p = pipeline(dir.path(), cfg);
    let t = now_ms();
    let id = p.process(&anomaly("M1", "helium_level_pct", t, 0.6)).alert.unwrap().id;
    assert_eq!(p.acknowledge(&id[..8], "ops").unwrap().state, AlertState::Acknowledged);
    std::thread::sleep(Duration::from_millis(200));
    p.tick();
    let resolved = p.resolve_by_id(&id, "ops").unwrap();
    assert_eq!(resolved.state, AlertState::Resolved);
    assert!(p.resolve_by_id(&id, "ops").is_err(), "already resolved");
    drop(p);
    for ch in ["admin/st-anne", "manufacturer/aurora"] {
        let got = opened(dir.path(), ch);
        let status: Vec<&str> = got.iter().map(|a| a["status"].as_str().unwrap()).collect();
        assert_eq!(status, ["firing", "resolved"], "{ch}");
    }
    let store = Store::open(&DataDir::new(dir.path()).alert_store()).unwrap();
    assert_eq!(store.find(&id).unwrap().unwrap().state, AlertState::Resolved);
}

#[test]
fn an_episode_without_new_anomalies_resolves_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.group_gap = Duration::from_millis(200);
    let mut p = pipeline(dir.path(), cfg);
    p.process(&anomaly("M3", "water_inlet_c", now_ms(), 0.9));
    std::thread::sleep(Duration::from_millis(300));
    p.tick();
    drop(p);
    let got = opened(dir.path(), "admin/north");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["severity"], "critical");
    assert_eq!(got[0]["suspected_failure_mode"], "chiller_fault");
    assert_eq!(got[1]["status"], "resolved");
    assert!(got[1]["ends_at"].is_string());
}

#[test]
fn a_backlog_replayed_hours_late_keeps_its_episode_open() {
    // After an outage Larmor works through readings hours old: an episode is
    // judged in event time, so it neither resolves nor reopens between them.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path(), config(dir.path()));
    let t0 = now_ms() - 3 * 3_600_000;
    let first = p.process(&anomaly("M3", "water_inlet_c", t0, 0.9));
    p.tick();
    let second = p.process(&anomaly("M3", "water_inlet_c", t0 + 60_000, 0.9));
    p.tick();
    assert!(!first.sent_to.is_empty());
    assert!(second.grouped, "the second anomaly joined the first one's alert");
    drop(p);
    let got = opened(dir.path(), "admin/north");
    assert!(got.iter().all(|n| n["status"] == "firing"), "{got:?}");
    assert_eq!(got.len(), 1);
}

#[test]
fn a_dead_delivery_is_counted_and_raised_to_the_site_admin() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Aurora's file channel cannot be written: its directory is a file.
    std::fs::create_dir_all(dir.path().join("outbox/manufacturer")).unwrap();
    std::fs::write(dir.path().join("outbox/manufacturer/aurora"), b"not a directory").unwrap();
    cfg.max_attempts = 2;
    let metrics = larmor_alerts::AlertMetrics::unregistered();
    let mut p =
        larmor_alerts::AlertPipeline::start(cfg, registry(), &DataDir::new(dir.path()), metrics.clone()).unwrap();
    p.open_channels(&registry());
    p.process(&anomaly("M1", "helium_level_pct", now_ms(), 0.6));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metrics.delivery.dead.with_label_values(&["manufacturer/aurora"]).get() == 0 {
        assert!(std::time::Instant::now() < deadline, "never marked dead");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    drop(p);
    assert_eq!(
        metrics
            .delivery
            .failed
            .with_label_values(&["manufacturer/aurora"])
            .get(),
        2
    );
    let admin = opened(dir.path(), "admin/st-anne");
    let dead: Vec<_> = admin
        .iter()
        .filter(|a| a["type"] == EventType::DeliveryDead.as_str())
        .collect();
    assert_eq!(dead.len(), 1, "{admin:#?}");
    assert_eq!(dead[0]["channel"], "manufacturer/aurora");
    assert!(opened(dir.path(), "admin/north").is_empty(), "only the site concerned");

    // The receiver is fixed and the dead notice requeued: the next start delivers it.
    std::fs::remove_file(dir.path().join("outbox/manufacturer/aurora")).unwrap();
    let store = Store::open(&DataDir::new(dir.path()).alert_store()).unwrap();
    assert_eq!(store.requeue_dead(Some("manufacturer/aurora"), now_ms()).unwrap(), 1);
    assert_eq!(store.requeue_dead(Some("manufacturer/aurora"), now_ms()).unwrap(), 0);
    let p = pipeline(dir.path(), config(dir.path()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while envelopes(dir.path(), "manufacturer/aurora").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the requeued notice never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(p);
    assert_eq!(opened(dir.path(), "manufacturer/aurora").len(), 1);
}

#[test]
fn an_outage_fails_one_attempt_per_backoff_not_one_per_waiting_notice() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    std::fs::create_dir_all(dir.path().join("outbox/manufacturer")).unwrap();
    std::fs::write(dir.path().join("outbox/manufacturer/aurora"), b"not a directory").unwrap();
    cfg.max_attempts = 0;
    cfg.retry_initial = Duration::from_millis(300);
    cfg.retry_max = Duration::from_millis(300);
    // Ten aurora machines' alerts wait while the receiver is down.
    let machines: Vec<String> = (0..10).map(|i| format!("A{i}")).collect();
    let fleet = std::sync::Arc::new(
        larmor_ingest::DeviceRegistry::new(machines.iter().map(|m| device(m, "st-anne", "aurora")).collect()).unwrap(),
    );
    let metrics = larmor_alerts::AlertMetrics::unregistered();
    let mut p =
        larmor_alerts::AlertPipeline::start(cfg, fleet.clone(), &DataDir::new(dir.path()), metrics.clone()).unwrap();
    p.open_channels(&fleet);
    for m in &machines {
        p.process(&anomaly(m, "helium_level_pct", now_ms(), 0.6));
    }
    std::thread::sleep(Duration::from_millis(700));
    drop(p);
    let failed = metrics
        .delivery
        .failed
        .with_label_values(&["manufacturer/aurora"])
        .get();
    // 700 ms at one attempt per 150-300 ms backoff: a handful, not ten per round.
    assert!((1..=6).contains(&failed), "{failed} failed attempts");
    assert_eq!(
        metrics.delivery.dead.with_label_values(&["manufacturer/aurora"]).get(),
        0
    );
}

#[test]
fn a_forecast_proposes_a_window_to_the_admin_and_asks_the_vendor_for_service() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path(), config(dir.path()));
    let t = now_ms();
    let f = Forecast {
        machine_id: "M1".into(),
        mode: FailureMode::ColdHeadDegradation,
        issued_at_ms: t,
        probabilities: vec![(72.0, 0.2), (336.0, 0.9)],
        time_to_failure: Some(TimeToFailure {
            lower_hours: 240.0,
            median_hours: 300.0,
            upper_hours: 400.0,
        }),
        model: "test".into(),
    };
    let o = p.forecast(&f);
    assert_eq!(o.sent_to, ["admin/st-anne", "manufacturer/aurora"]);
    // The same forecast again is no news.
    assert!(p.forecast(&f).sent_to.is_empty());
    drop(p);
    let admin = opened(dir.path(), "admin/st-anne");
    assert_eq!(admin.len(), 1);
    let prop = &admin[0]["maintenance_proposal"];
    assert!(prop["vevent"].as_str().unwrap().contains("BEGIN:VEVENT"));
    assert_eq!(prop["booked_exams_affected"], 0, "no schedule: nothing booked");
    let start = chrono::DateTime::parse_from_rfc3339(prop["start"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(start >= t + 72 * 3_600_000, "after the cold head's lead time");
    assert!(
        start + 4 * 3_600_000 <= t + 240 * 3_600_000,
        "before the interval's lower bound"
    );
    let vendor = opened(dir.path(), "manufacturer/aurora");
    let types: Vec<&str> = vendor.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["service_request"],
        "default vendor hooks: service requests, not the admin's forecast"
    );
    assert!(vendor[0]["service_window"]["start"].is_string());
    let text = serde_json::to_string(&vendor[0]).unwrap();
    assert!(
        !text.contains("booked") && !text.contains("VEVENT") && !text.contains("st-anne"),
        "{text}"
    );
}

#[test]
fn a_missed_digest_goes_out_once_for_its_cron_time_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.digest.vendor_forecast = "0 6 * * *".into();
    cfg.digest.site_summary = String::new();
    // The daily digest last ran two days ago: yesterday's and today's 06:00 were missed.
    Store::open(&DataDir::new(dir.path()).alert_store())
        .unwrap()
        .set_digest_last_run("vendor_forecast", now_ms() - 2 * 86_400_000)
        .unwrap();
    let mut p = pipeline(dir.path(), cfg.clone());
    p.tick();
    p.tick();
    drop(p);
    let mut p = pipeline(dir.path(), cfg);
    p.tick();
    drop(p);
    let digests = |channel: &str| -> Vec<serde_json::Value> {
        opened(dir.path(), channel)
            .into_iter()
            .filter(|n| n["type"] == EventType::Digest.as_str())
            .collect()
    };
    for vendor in ["manufacturer/aurora", "manufacturer/boreal"] {
        let d = digests(vendor);
        assert_eq!(d.len(), 1, "{vendor}: {d:#?}");
        assert_eq!(d[0]["digest"], "vendor_forecast");
    }
    let run = Store::open(&DataDir::new(dir.path()).alert_store())
        .unwrap()
        .digest_last_run("vendor_forecast")
        .unwrap()
        .unwrap();
    let at = chrono::DateTime::from_timestamp_millis(run).unwrap();
    assert_eq!(
        at.format("%H:%M:%S").to_string(),
        "06:00:00",
        "recorded at its cron time"
    );
    assert!(now_ms() - run < 86_400_000);
}
