//! The committed sample (`datasets/sample/`) is exactly what the generator makes
//! for the sample config, and it holds every failure mode and sensor fault kind.
//! Regenerate it with the command in `larmor_datasets::sample::REGENERATE`.

use datafusion::arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use larmor_datadir::naming::archive_partition;
use larmor_datasets::fleet::{machines_csv, service_history_csv};
use larmor_datasets::ical::calendar;
use larmor_datasets::modes::{FailureMode, SensorFaultKind};
use larmor_datasets::run::MachineRun;
use larmor_datasets::time::format_date;
use larmor_datasets::{EventKind, events, sample};
use larmor_ingest::{CATALOG, DeviceRegistry, Stream};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn committed(rel: &str) -> PathBuf {
    let p = sample::committed_dir().join(rel);
    assert!(
        p.exists(),
        "{} is missing; regenerate the sample with `{}`",
        p.display(),
        sample::REGENERATE
    );
    p
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(committed(rel)).unwrap()
}

fn same(rel: &str, expected: &[u8]) {
    assert!(
        read(rel) == expected,
        "datasets/sample/{rel} is not what the generator makes; regenerate with `{}`",
        sample::REGENERATE
    );
}

#[test]
fn the_sample_has_every_failure_mode_and_sensor_fault() {
    let events = sample::config("unused").plan().events();
    for m in FailureMode::ALL {
        assert!(
            events
                .iter()
                .any(|e| e.mode == m.slug() && e.kind == EventKind::Failure),
            "{m:?}"
        );
    }
    for k in SensorFaultKind::ALL {
        assert!(events.iter().any(|e| e.mode == k.slug()), "{k:?}");
    }
    assert!(events.iter().any(|e| e.kind == EventKind::Averted));
    assert!(events.iter().any(|e| e.kind == EventKind::Maintenance));
}

#[test]
fn the_committed_tables_are_what_the_generator_makes() {
    let config = sample::config("unused");
    let s = config.plan();
    same("events.csv", events::to_csv(&s.events()).as_bytes());
    same("machines.csv", machines_csv(&s.fleet).as_bytes());
    same("service_history.csv", service_history_csv(&s.fleet).as_bytes());
    let registry = DeviceRegistry::load(&committed("devices.toml")).unwrap();
    assert_eq!(registry.devices(), s.fleet.devices().as_slice());
    for (i, m) in s.fleet.machines.iter().enumerate() {
        let cal = calendar(m, i, s.seed, &s.plans[i], s.start_ms, s.end_ms);
        same(&format!("schedules/{}.ics", m.id), cal.as_bytes());
    }
    // events.parquet holds the same rows as events.csv.
    let f = std::fs::File::open(committed("events.parquet")).unwrap();
    let rows = SerializedFileReader::new(f)
        .unwrap()
        .metadata()
        .file_metadata()
        .num_rows();
    assert_eq!(rows as usize, s.events().len());
}

fn parquet_rows(path: &Path) -> i64 {
    let f = std::fs::File::open(path).unwrap();
    SerializedFileReader::new(f)
        .unwrap()
        .metadata()
        .file_metadata()
        .num_rows()
}

#[test]
fn the_committed_archive_is_what_the_generator_makes() {
    let config = sample::config("unused");
    let s = config.plan();
    let res = config.resolution_ms();
    let days = config.start_day..config.start_day + i64::from(config.days);
    // Expected rows per (day, stream), and every reading of one chosen day, in archive order.
    let check_day = config.start_day + 20; // the day of machine 2's chiller trip
    let mut counts: BTreeMap<(i64, usize), i64> = BTreeMap::new();
    let mut expected_day: [Vec<(String, i64, &str, f64)>; 3] = Default::default();
    for (i, m) in s.fleet.machines.iter().enumerate() {
        let mut run = MachineRun::new(m, i, s.plans[i].clone(), s.seed);
        for day in days.clone() {
            run.run_day(day, res, |r| {
                for (c, spec) in CATALOG.iter().enumerate() {
                    if r.present & (1 << c) != 0 {
                        let st = spec.stream.index();
                        *counts.entry((day, st)).or_default() += 1;
                        if day == check_day {
                            expected_day[st].push((m.id.clone(), r.ts_ms, spec.name, r.values[c]));
                        }
                    }
                }
            });
        }
    }
    let archive = committed("archive");
    let mut files = 0;
    for day in days {
        for stream in Stream::ALL {
            let p = archive
                .join(archive_partition(day, stream.as_str()))
                .join("part-backfill-0000.parquet");
            assert!(
                p.exists(),
                "{} missing; regenerate with `{}`",
                p.display(),
                sample::REGENERATE
            );
            assert_eq!(
                parquet_rows(&p),
                counts[&(day, stream.index())],
                "rows of {} {stream}",
                format_date(day)
            );
            files += 1;
        }
    }
    let on_disk = walk(&archive).len();
    assert_eq!(on_disk, files, "no other files in the archive");
    for stream in Stream::ALL {
        let p = archive
            .join(archive_partition(check_day, stream.as_str()))
            .join("part-backfill-0000.parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&p).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut got = Vec::new();
        for b in reader {
            let b = b.unwrap();
            let ts = b
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            let m = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            let c = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
            let v = b.column(3).as_any().downcast_ref::<Float64Array>().unwrap();
            for i in 0..b.num_rows() {
                got.push((m.value(i).to_string(), ts.value(i), c.value(i).to_string(), v.value(i)));
            }
        }
        let want = &expected_day[stream.index()];
        assert_eq!(got.len(), want.len(), "{stream}");
        for (g, w) in got.iter().zip(want) {
            assert!(
                g.0 == w.0 && g.1 == w.1 && g.2 == w.2 && g.3.to_bits() == w.3.to_bits(),
                "{stream}: {g:?} vs {w:?}"
            );
        }
    }
}

#[test]
fn the_sample_stays_small() {
    let total: u64 = walk(&sample::committed_dir())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= 20_000_000, "the sample is {total} bytes; keep it under 20 MB");
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)
            .unwrap_or_else(|_| panic!("{} missing; regenerate with `{}`", dir.display(), sample::REGENERATE))
            .flatten()
        {
            let p = e.path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}
