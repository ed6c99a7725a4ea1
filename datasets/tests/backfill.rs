//! Backfill on disk: the archive is in the ingest layout and readable by the
//! SQL layer with matching row counts, the events files agree, and the same
//! seed gives the same bytes whatever the number of threads.

use datafusion::arrow::array::{AsArray, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use larmor_analytics::sql;
use larmor_datasets::backfill::{self, BackfillConfig, BackfillError};
use larmor_datasets::modes::FailureMode;
use larmor_datasets::scenario::{Forced, ForcedEvent};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn small(out: &Path) -> BackfillConfig {
    let mut c = BackfillConfig::new(5, 3, Duration::from_secs(10 * 60), 5, out);
    c.machines_per_file = 2;
    // Busy enough to exercise failures, maintenance and sensor faults in three days.
    c.scenario.failure_rates = [40.0; 7];
    c.scenario.sensor_faults_per_year = 150.0;
    c.scenario.forced.push(ForcedEvent {
        machine: 4,
        what: Forced::Failure(FailureMode::ChillerFault),
        at_days: 1.5,
        length_days: Some(0.2),
        variant: 0,
        magnitude: None,
    });
    c.scenario.forced.push(ForcedEvent {
        machine: 0,
        what: Forced::SensorFault(larmor_datasets::SensorFaultKind::Dropout, Some("room")),
        at_days: 0.5,
        length_days: Some(0.2),
        variant: 0,
        magnitude: None,
    });
    c
}

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_same_bytes_whatever_the_threads() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ca = small(a.path());
    ca.threads = 1;
    let mut cb = small(b.path());
    cb.threads = 3;
    let ra = backfill::generate(&ca, &mut |_, _| {}).unwrap();
    let rb = backfill::generate(&cb, &mut |_, _| {}).unwrap();
    assert_eq!(ra.readings, rb.readings);
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(v == &fb[k], "{} differs", k.display());
    }
    // A different seed gives different data.
    let c = tempfile::tempdir().unwrap();
    let mut cc = small(c.path());
    cc.seed = 6;
    backfill::generate(&cc, &mut |_, _| {}).unwrap();
    let fc = files(c.path());
    let p = Path::new("archive/date=2025-01-01/stream=temperature/part-backfill-0000.parquet");
    assert_ne!(fa[p], fc[p]);
}

#[tokio::test(flavor = "current_thread")]
async fn the_archive_is_the_ingest_layout_and_sql_reads_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(dir.path());
    let mut calls = 0;
    let report = backfill::generate(&config, &mut |done, total| {
        calls += 1;
        assert!(done <= total && total == 15);
    })
    .unwrap();
    assert!(calls >= 1);
    assert!(report.readings > 0 && report.readings <= config.nominal_readings());
    assert!(
        report.readings < config.nominal_readings(),
        "sensor dropouts remove some readings"
    );

    // Layout: date=YYYY-MM-DD/stream=<stream>/part-backfill-<group>.parquet, 3 days x 3 streams x 3 groups.
    let all = files(&dir.path().join("archive"));
    assert_eq!(all.len(), 27);
    assert_eq!(report.archive_files, 27);
    for p in all.keys() {
        let parts: Vec<String> = p.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(parts.len(), 3, "{}", p.display());
        assert!(parts[0].starts_with("date=2025-01-0"), "{}", p.display());
        assert!(["stream=temperature", "stream=vibration", "stream=room"].contains(&parts[1].as_str()));
        assert!(parts[2].starts_with("part-backfill-000") && parts[2].ends_with(".parquet"));
    }

    // Sorted by machine then time inside a file.
    let f = std::fs::File::open(
        dir.path()
            .join("archive/date=2025-01-02/stream=vibration/part-backfill-0000.parquet"),
    )
    .unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    assert_eq!(reader.schema().as_ref(), larmor_datadir::schema::readings().as_ref());
    let mut rows = Vec::new();
    for b in reader.build().unwrap() {
        let b = b.unwrap();
        let ts = b
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap()
            .clone();
        let m = b.column(1).as_any().downcast_ref::<StringArray>().unwrap().clone();
        for i in 0..b.num_rows() {
            rows.push((m.value(i).to_string(), ts.value(i)));
        }
    }
    assert!(rows.windows(2).all(|w| w[0] <= w[1]), "sorted by machine then time");
    assert_eq!(
        rows.iter()
            .map(|r| r.0.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        2
    );

    // SQL over the archive: every reading, per stream, every machine.
    let ctx = sql::open_archive(&dir.path().join("archive")).await.unwrap();
    let batches = sql::run(&ctx, "SELECT stream, count(*) AS n FROM readings GROUP BY stream")
        .await
        .unwrap();
    let mut by_stream = BTreeMap::new();
    for b in &batches {
        let (s, n) = (b.column(0).as_string_view(), b.column(1).as_primitive::<Int64Type>());
        for i in 0..b.num_rows() {
            by_stream.insert(s.value(i).to_string(), n.value(i) as u64);
        }
    }
    assert_eq!(by_stream["temperature"], report.readings_by_stream[0]);
    assert_eq!(by_stream["vibration"], report.readings_by_stream[1]);
    assert_eq!(by_stream["room"], report.readings_by_stream[2]);
    assert_eq!(by_stream.values().sum::<u64>(), report.readings);
    let b = sql::run(
        &ctx,
        "SELECT count(DISTINCT machine_id), count(DISTINCT channel) FROM readings",
    )
    .await
    .unwrap();
    assert_eq!(b[0].column(0).as_primitive::<Int64Type>().value(0), 5);
    assert_eq!(b[0].column(1).as_primitive::<Int64Type>().value(0), 31);

    // Events: the Parquet and CSV tables hold the same rows; the forced chiller trip is there.
    let csv = std::fs::read_to_string(dir.path().join("events.csv")).unwrap();
    assert!(
        csv.starts_with(
            "event_id,machine_id,kind,mode,channel,stream,onset,downtime_start,repair_end,planned,detail\n"
        )
    );
    assert!(
        csv.lines().any(|l| l.contains(",MRI-0005,failure,chiller_fault,")),
        "{csv}"
    );
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_parquet(
        "events",
        dir.path().join("events.parquet").to_str().unwrap(),
        Default::default(),
    )
    .await
    .unwrap();
    let b = sql::run(
        &ctx,
        "SELECT count(*) FROM events WHERE kind = 'sensor_fault' AND downtime_start IS NULL",
    )
    .await
    .unwrap();
    let sensor_rows = csv.lines().filter(|l| l.contains(",sensor_fault,")).count() as i64;
    assert!(sensor_rows > 0);
    assert_eq!(b[0].column(0).as_primitive::<Int64Type>().value(0), sensor_rows);
    let b = sql::run(&ctx, "SELECT count(*) FROM events").await.unwrap();
    assert_eq!(
        b[0].column(0).as_primitive::<Int64Type>().value(0) as usize,
        csv.lines().count() - 1
    );
    assert_eq!(report.events, csv.lines().count() - 1);

    // The fleet files and one calendar per machine.
    let registry = larmor_ingest::DeviceRegistry::load(&dir.path().join("devices.toml")).unwrap();
    assert_eq!(registry.len(), 5);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("machines.csv"))
            .unwrap()
            .lines()
            .count(),
        6
    );
    for id in ["MRI-0001", "MRI-0005"] {
        let cal = std::fs::read_to_string(dir.path().join(format!("schedules/{id}.ics"))).unwrap();
        assert!(cal.starts_with("BEGIN:VCALENDAR\r\n") && cal.contains("BEGIN:VEVENT\r\n"));
    }
}

#[test]
fn an_existing_dataset_is_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BackfillConfig::new(2, 1, Duration::from_secs(3600), 1, dir.path());
    backfill::generate(&c, &mut |_, _| {}).unwrap();
    let keep = dir.path().join("notes.txt");
    std::fs::write(&keep, "mine").unwrap();
    let err = backfill::generate(&c, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, BackfillError::OutputExists(_)));
    assert!(err.to_string().contains("--force"), "{err}");
    c.overwrite = true;
    c.machines = 1;
    backfill::generate(&c, &mut |_, _| {}).unwrap();
    assert_eq!(
        std::fs::read_to_string(&keep).unwrap(),
        "mine",
        "other files are left alone"
    );
    let machines = std::fs::read_to_string(dir.path().join("machines.csv")).unwrap();
    assert_eq!(machines.lines().count(), 2, "replaced by the one-machine dataset");
}
