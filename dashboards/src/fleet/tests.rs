use super::*;
use larmor_ingest::{Sample, Stream};
use larmor_stage::Transform;

fn device(id: &str, maker: &str) -> Device {
    Device {
        machine_id: id.into(),
        site: "st-anne".into(),
        manufacturer: maker.into(),
        model: "X1".into(),
        firmware: "1".into(),
        public_key: None,
        revoked: false,
    }
}

fn registry(ids: &[&str]) -> Arc<DeviceRegistry> {
    Arc::new(DeviceRegistry::new(ids.iter().map(|id| device(id, "aurora")).collect()).unwrap())
}

fn ch(name: &str) -> ChannelId {
    ChannelId::from_name(name).unwrap()
}

/// A temperature frame at `ts_ms` with these readings.
fn frame(machine: &str, ts_ms: i64, values: &[(&str, f64)]) -> Frame {
    Frame {
        machine_id: machine.into(),
        stream: Stream::Temperature,
        seq: 1,
        ts_ms,
        samples: vec![Sample {
            ts_ms,
            values: values.iter().map(|(c, v)| (ch(c), *v)).collect(),
        }],
    }
}

fn anomaly(machine: &str, channel: &'static str, kind: AnomalyKind, score: f64, ts_ms: i64) -> Anomaly {
    Anomaly {
        machine_id: machine.into(),
        stream: ch(channel).stream(),
        channels: vec![channel],
        ts_ms,
        value: 12.0,
        score,
        detector: "threshold",
        kind,
        explanation: "helium below 40 %".into(),
    }
}

/// The value of the series of `family` whose labels include all of `labels`.
fn value(r: &Registry, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let fams = r.gather();
    let fam = fams.iter().find(|f| f.name() == family)?;
    fam.get_metric()
        .iter()
        .find(|m| {
            labels
                .iter()
                .all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v))
        })
        .map(|m| match fam.get_field_type() {
            prometheus::proto::MetricType::HISTOGRAM => m.get_histogram().get_sample_count() as f64,
            _ => m.get_gauge().get_value(),
        })
}

fn series(r: &Registry, family: &str) -> usize {
    r.gather()
        .iter()
        .find(|f| f.name() == family)
        .map_or(0, |f| f.get_metric().len())
}

fn setup(ids: &[&str]) -> (Registry, SharedRegistry, FleetState) {
    let r = Registry::new();
    let shared = SharedRegistry::new(registry(ids));
    let fleet = FleetState::register(&r, shared.clone(), StatusConfig::default()).unwrap();
    (r, shared, fleet)
}

#[test]
fn every_registered_machine_has_its_series_from_the_start() {
    let (r, _, _) = setup(&["MRI-0001", "MRI-0002"]);
    assert_eq!(series(&r, "larmor_machine_info"), 2);
    assert_eq!(
        value(
            &r,
            "larmor_machine_info",
            &[("machine", "MRI-0002"), ("site", "st-anne"), ("manufacturer", "aurora")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&r, "larmor_machine_health_score", &[("machine", "MRI-0001")]),
        Some(100.0)
    );
    assert_eq!(series(&r, "larmor_machine_open_anomalies"), 6, "2 machines x 3 kinds");
    assert_eq!(
        series(&r, "larmor_machine_helium_level_ratio"),
        0,
        "no value before a frame"
    );
    assert_eq!(series(&r, "larmor_machine_failure_probability"), 0, "no forecast yet");
}

#[test]
fn frames_set_the_latest_key_values_in_base_units() {
    let (r, _, fleet) = setup(&["MRI-0001"]);
    let now = chrono::Utc::now().timestamp_millis();
    fleet.observe_frame(&frame(
        "MRI-0001",
        now - 1000,
        &[
            ("helium_level_pct", 71.0),
            ("compressor_supply_mpa", 1.9),
            ("vessel_pressure_kpa", 4.0),
        ],
    ));
    // An older frame arriving late does not overwrite the newer value.
    fleet.observe_frame(&frame("MRI-0001", now - 5000, &[("helium_level_pct", 99.0)]));
    let m = [("machine", "MRI-0001")];
    assert_eq!(value(&r, "larmor_machine_helium_level_ratio", &m), Some(0.71));
    assert_eq!(
        value(&r, "larmor_machine_compressor_supply_pressure_pascals", &m),
        Some(1.9e6)
    );
    assert_eq!(
        value(&r, "larmor_machine_last_frame_timestamp_seconds", &m),
        Some((now - 1000) as f64 / 1000.0)
    );
    assert_eq!(series(&r, "larmor_machine_room_temperature_celsius"), 0);
    // Frames of machines outside the registry leave no series.
    fleet.observe_frame(&frame("MRI-9999", now, &[("helium_level_pct", 50.0)]));
    assert_eq!(series(&r, "larmor_machine_helium_level_ratio"), 1);
}

#[test]
fn open_anomalies_lower_the_health_score_until_they_close() {
    let (r, _, fleet) = setup(&["MRI-0001", "MRI-0002"]);
    let now = chrono::Utc::now().timestamp_millis();
    let hour = 3_600_000;
    fleet.observe_anomalies(&[
        anomaly(
            "MRI-0001",
            "helium_level_pct",
            AnomalyKind::MachineHealth,
            1.0,
            now - 1000,
        ),
        anomaly("MRI-0001", "room_temp_c", AnomalyKind::Environment, 0.0, now - 2000),
        // Started before the open window (1 h): already closed.
        anomaly(
            "MRI-0002",
            "helium_level_pct",
            AnomalyKind::MachineHealth,
            1.0,
            now - 2 * hour,
        ),
    ]);
    let open = |m: &str, k: &str| value(&r, "larmor_machine_open_anomalies", &[("machine", m), ("kind", k)]);
    assert_eq!(open("MRI-0001", "machine_health"), Some(1.0));
    assert_eq!(open("MRI-0001", "environment"), Some(1.0));
    assert_eq!(open("MRI-0001", "sensor_fault"), Some(0.0));
    assert_eq!(open("MRI-0002", "machine_health"), Some(0.0));
    let health = |m: &str| value(&r, "larmor_machine_health_score", &[("machine", m)]).unwrap();
    assert_eq!(health("MRI-0001"), 100.0 - 40.0 - 7.5);
    assert_eq!(health("MRI-0002"), 100.0);

    let snap = fleet.snapshot();
    assert_eq!(snap.open.len(), 2);
    assert_eq!(snap.open[0].channel, "helium_level_pct", "newest first");
    assert_eq!(snap.machines[0].open_anomalies, 2);

    // Time passes (here: the machine's clock runs ahead): they close.
    fleet.observe_frame(&frame("MRI-0001", now + 2 * hour, &[("helium_level_pct", 70.0)]));
    assert_eq!(open("MRI-0001", "machine_health"), Some(0.0));
    assert_eq!(health("MRI-0001"), 100.0);
}

#[test]
fn open_episodes_per_machine_are_bounded() {
    let (_, _, fleet) = setup(&["MRI-0001"]);
    let now = chrono::Utc::now().timestamp_millis();
    let many: Vec<_> = (0..200)
        .map(|i| {
            anomaly(
                "MRI-0001",
                "helium_level_pct",
                AnomalyKind::MachineHealth,
                0.5,
                now - 200 + i,
            )
        })
        .collect();
    fleet.observe_anomalies(&many);
    let snap = fleet.snapshot();
    assert_eq!(snap.open.len(), OPEN_PER_MACHINE);
    assert_eq!(snap.open[0].ts_ms, now - 1, "the newest are kept");
}

fn row(machine: &str, p: f64, hours: u64, at: Option<i64>) -> ForecastRow {
    ForecastRow {
        machine_id: machine.into(),
        mode: "coldhead_wear".into(),
        probability: p,
        horizon: Duration::from_secs(hours * 3600),
        predicted_failure_at_ms: at,
        model: "logistic-v1".into(),
        issued_at_ms: 1_000,
    }
}

#[test]
fn forecast_refreshes_replace_the_last_and_bad_ones_are_refused_whole() {
    let (r, _, fleet) = setup(&["MRI-0001", "MRI-0002"]);
    let applied = fleet
        .record_forecasts(
            &[
                row("MRI-0001", 0.2, 24, None),
                row("MRI-0001", 0.8, 168, Some(1_800_000_000_000)),
                row("MRI-0002", 0.01, 72, None),
                row("MRI-0404", 0.5, 24, None),
            ],
            Duration::from_millis(1500),
        )
        .unwrap();
    assert_eq!(applied.machines, 2);
    assert_eq!(applied.unknown_machines, vec!["MRI-0404".to_string()]);
    let p = |m: &str, h: &str| {
        value(
            &r,
            "larmor_machine_failure_probability",
            &[("machine", m), ("horizon", h)],
        )
    };
    assert_eq!(p("MRI-0001", "24h"), Some(0.2));
    assert_eq!(p("MRI-0001", "72h"), None, "no row: no series");
    assert_eq!(p("MRI-0001", "7d"), Some(0.8));
    assert_eq!(
        value(
            &r,
            "larmor_machine_predicted_failure_timestamp_seconds",
            &[("machine", "MRI-0001")]
        ),
        Some(1_800_000_000.0)
    );
    assert_eq!(series(&r, "larmor_machine_predicted_failure_timestamp_seconds"), 1);
    assert_eq!(
        value(&r, "larmor_machine_health_score", &[("machine", "MRI-0001")]),
        Some(100.0 - 0.8 * 50.0)
    );
    assert_eq!(value(&r, "larmor_forecast_refresh_duration_seconds", &[]), Some(1.0));

    // A bad row refuses the refresh; the last one stays in force.
    let e = fleet
        .record_forecasts(&[row("MRI-0001", 0.1, 48, None)], Duration::ZERO)
        .unwrap_err();
    assert!(matches!(e, ForecastError::Horizon { .. }), "{e}");
    assert_eq!(p("MRI-0001", "7d"), Some(0.8));

    // The next refresh without MRI-0001 removes its forecast.
    fleet
        .record_forecasts(&[row("MRI-0002", 0.3, 72, None)], Duration::from_millis(10))
        .unwrap();
    assert_eq!(p("MRI-0001", "7d"), None);
    assert_eq!(series(&r, "larmor_machine_predicted_failure_timestamp_seconds"), 0);
    assert_eq!(p("MRI-0002", "72h"), Some(0.3));
    assert_eq!(
        value(&r, "larmor_machine_health_score", &[("machine", "MRI-0001")]),
        Some(100.0)
    );
    assert_eq!(value(&r, "larmor_forecast_refresh_duration_seconds", &[]), Some(2.0));
}

#[test]
fn the_fleet_follows_registry_reloads() {
    let (r, shared, fleet) = setup(&["MRI-0001", "MRI-0002"]);
    let now = chrono::Utc::now().timestamp_millis();
    fleet.observe_frame(&frame("MRI-0002", now, &[("helium_level_pct", 60.0)]));
    let mut devices = vec![device("MRI-0001", "aurora"), device("MRI-0003", "boreal")];
    let mut revoked = device("MRI-0002", "aurora");
    revoked.revoked = true;
    devices.push(revoked);
    shared.replace(Arc::new(DeviceRegistry::new(devices).unwrap()));
    fleet.refresh();
    assert_eq!(series(&r, "larmor_machine_info"), 2);
    assert_eq!(
        value(
            &r,
            "larmor_machine_info",
            &[("machine", "MRI-0003"), ("manufacturer", "boreal")]
        ),
        Some(1.0)
    );
    assert_eq!(
        series(&r, "larmor_machine_helium_level_ratio"),
        0,
        "the revoked machine's series are gone"
    );
    assert_eq!(series(&r, "larmor_machine_open_anomalies"), 6);
    let ids: Vec<_> = fleet
        .snapshot()
        .machines
        .iter()
        .map(|m| m.device.machine_id.clone())
        .collect();
    assert_eq!(ids, ["MRI-0001", "MRI-0003"]);
}

#[test]
fn trends_keep_one_point_per_step_within_the_window() {
    let r = Registry::new();
    let cfg = StatusConfig {
        open_for: Duration::from_secs(3600),
        trend_window: Duration::from_secs(120),
    };
    let fleet = FleetState::register(&r, SharedRegistry::new(registry(&["MRI-0001"])), cfg).unwrap();
    let t0 = chrono::Utc::now().timestamp_millis() - 600_000;
    // 10 minutes of readings every 100 ms; the step is 120 s / 120 = 1 s.
    for i in 0..6000 {
        fleet.observe_frame(&frame(
            "MRI-0001",
            t0 + i * 100,
            &[("helium_level_pct", 70.0 - i as f64 * 0.001)],
        ));
    }
    let snap = fleet.snapshot();
    let trend = snap.machines[0].trend.as_ref().unwrap();
    assert_eq!(
        trend.channel.name, "helium_level_pct",
        "the only key channel with a value"
    );
    assert!(
        (119..=121).contains(&trend.points.len()),
        "{} points",
        trend.points.len()
    );
    let span = trend.points.last().unwrap().0 - trend.points[0].0;
    assert!((118_000..=120_000).contains(&span), "{span}");
    assert!(trend.points.windows(2).all(|w| w[1].0 - w[0].0 >= 1000));
}

#[test]
fn the_most_telling_channel_is_the_anomalous_one_or_the_nearest_its_limit() {
    let (_, _, fleet) = setup(&["MRI-0001"]);
    let now = chrono::Utc::now().timestamp_millis();
    // Helium far from 40 %, the 2nd stage at 4.7 K near its 4.8 K limit.
    fleet.observe_frame(&frame(
        "MRI-0001",
        now,
        &[
            ("helium_level_pct", 80.0),
            ("coldhead_stage2_k", 4.7),
            ("water_inlet_c", 20.0),
        ],
    ));
    let telling = || fleet.snapshot().machines[0].trend.as_ref().unwrap().channel.name;
    assert_eq!(telling(), "coldhead_stage2_k");
    fleet.observe_anomalies(&[anomaly("MRI-0001", "water_inlet_c", AnomalyKind::Environment, 0.9, now)]);
    assert_eq!(telling(), "water_inlet_c");
}

/// Finds one anomaly per frame whose helium level is below 40 %.
struct LowHelium;
impl Transform for LowHelium {
    type Input = Frame;
    type Output = Anomaly;
    fn transform(&mut self, f: Frame, out: &mut Vec<Anomaly>) {
        let helium = ch("helium_level_pct");
        if f.samples
            .iter()
            .flat_map(|s| &s.values)
            .any(|&(c, v)| c == helium && v < 40.0)
        {
            out.push(anomaly(
                &f.machine_id,
                "helium_level_pct",
                AnomalyKind::MachineHealth,
                0.9,
                f.ts_ms,
            ));
        }
    }
}

#[test]
fn the_observed_transform_feeds_the_fleet_and_times_detection() {
    let (r, _, fleet) = setup(&["MRI-0001"]);
    let mut detect = Observed::new(LowHelium, fleet.clone(), &r).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = Vec::new();
    detect.transform(frame("MRI-0001", now - 2000, &[("helium_level_pct", 60.0)]), &mut out);
    detect.transform(frame("MRI-0001", now - 1000, &[("helium_level_pct", 30.0)]), &mut out);
    assert_eq!(out.len(), 1, "the inner transform's output passes through");
    let snap = fleet.snapshot();
    assert_eq!(snap.machines[0].open_anomalies, 1);
    assert_eq!(snap.machines[0].latest[0].1, Some(30.0));
    let fams = r.gather();
    let h = fams
        .iter()
        .find(|f| f.name() == "larmor_detection_latency_seconds")
        .unwrap()
        .get_metric()[0]
        .get_histogram();
    assert_eq!(h.get_sample_count(), 2);
    // Readings 1 s and 2 s old: at least 3 s in all, and not much more.
    assert!(
        h.get_sample_sum() >= 3.0 && h.get_sample_sum() < 13.0,
        "{}",
        h.get_sample_sum()
    );
}

#[test]
fn forecasts_follow_the_forecasts_table() {
    use larmor_datadir::{DataDir, DatedWriter, Table};
    let (r, _, f) = setup(&["A", "B"]);
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let p = |m: &str, h: &str| {
        value(
            &r,
            "larmor_machine_failure_probability",
            &[("machine", m), ("horizon", h)],
        )
    };

    // No table: no forecasts, nothing to report.
    f.follow_forecasts_table(&data);
    assert_eq!(p("A", "7d"), None);
    assert!(f.snapshot().forecast_problem.is_none());

    let write = |rows: &[ForecastRow]| {
        let mut w = DatedWriter::new(&data, Table::Forecasts, forecast_table::to_batch);
        for r in rows {
            w.push(r.issued_at_ms, r.clone());
        }
        w.flush().unwrap();
    };
    write(&[row("A", 0.7, 168, Some(9_000_000)), row("B", 0.1, 24, None)]);
    f.follow_forecasts_table(&data);
    assert_eq!(p("A", "7d"), Some(0.7));
    assert_eq!(p("B", "24h"), Some(0.1));
    let snap = f.snapshot();
    assert_eq!(snap.machines.iter().filter(|m| m.forecast.is_some()).count(), 2);
    let refreshes = r
        .gather()
        .iter()
        .find(|m| m.name() == "larmor_forecast_refresh_duration_seconds")
        .map(|m| m.get_metric()[0].get_histogram().get_sample_count());
    assert_eq!(
        refreshes,
        Some(0),
        "reading the table is not a refresh: nothing observed"
    );

    // A later run of A replaces A's; B keeps its run.
    let mut later = row("A", 0.2, 168, None);
    later.issued_at_ms += 60_000;
    write(&[later]);
    f.follow_forecasts_table(&data);
    assert_eq!(p("A", "7d"), Some(0.2));
    assert_eq!(
        value(
            &r,
            "larmor_machine_predicted_failure_timestamp_seconds",
            &[("machine", "A")]
        ),
        None
    );
    assert_eq!(p("B", "24h"), Some(0.1));

    // A file that is not Parquet: reported, the last forecasts stay.
    let day = std::fs::read_dir(data.forecasts())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(day.join("forecasts-broken.parquet"), b"no").unwrap();
    f.follow_forecasts_table(&data);
    assert_eq!(p("A", "7d"), Some(0.2));
    let problem = f.snapshot().forecast_problem.unwrap();
    assert!(problem.contains("forecasts-broken.parquet"), "{problem}");
}
