//! The polars scan and the feature rows on the shipped sample (12 MRI machines,
//! 75 days at 5 minutes, with its anomalies table): hourly aggregates equal a
//! plain row read, and features as of t are the same whether the archive ends at t
//! or goes on (no look-ahead).

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, TimestampMillisecondType};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use larmor_models::HOUR_MS;
use larmor_models::events::{EventLog, parse_time};
use larmor_models::features::{RowTimes, ServiceLog, compute, spec_for};
use larmor_models::hourly::{ScanOptions, anomalies_dir, read_anomalies, scan_hourly};
use std::path::{Path, PathBuf};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/sample")
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

#[test]
fn hourly_aggregates_equal_a_plain_row_read() {
    let archive = sample().join("archive");
    let day = parse_time("2025-01-20").unwrap();
    let opts = ScanOptions {
        from_ms: Some(day),
        until_ms: Some(day + 24 * HOUR_MS),
        ..Default::default()
    };
    let hourly = scan_hourly(&archive, &opts, &mut |_, _| {}).unwrap();
    assert_eq!(hourly.machines.len(), 12);
    assert_eq!(hourly.channels.len(), 31, "{:?}", hourly.channels);
    // Every reading of MRI-0003 that day, straight from the files.
    let mut rows: Vec<(i64, String, f64)> = Vec::new();
    for f in parquet_files(&archive.join("date=2025-01-20")) {
        for b in read(&f) {
            let ts = b.column(0).as_primitive::<TimestampMillisecondType>();
            let m = b.column(1).as_string::<i32>();
            let c = b.column(2).as_string::<i32>();
            let v = b.column(3).as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                if m.value(i) == "MRI-0003" {
                    rows.push((ts.value(i), c.value(i).to_string(), v.value(i)));
                }
            }
        }
    }
    assert!(rows.len() > 5000);
    let m = hourly.machine("MRI-0003").unwrap();
    let mut checked = 0;
    for (ci, name) in hourly.channels.iter().enumerate() {
        for h in 0..24 {
            let hour = day / HOUR_MS + h;
            let mut mine: Vec<(i64, f64)> = rows
                .iter()
                .filter(|r| &r.1 == name && r.0.div_euclid(HOUR_MS) == hour)
                .map(|r| (r.0, r.2))
                .collect();
            mine.sort_by_key(|r| r.0);
            let a = m.at(ci, hour).copied().unwrap_or(larmor_models::hourly::HourAgg::EMPTY);
            assert_eq!(a.n as usize, mine.len(), "{name} hour {h}");
            if mine.is_empty() {
                continue;
            }
            let sum: f64 = mine.iter().map(|r| r.1).sum();
            let tv: f64 = mine
                .iter()
                .map(|r| (r.0.rem_euclid(HOUR_MS)) as f64 / HOUR_MS as f64 * r.1)
                .sum();
            assert!(
                (a.sum - sum).abs() < 1e-9 * sum.abs().max(1.0),
                "{name} {h}: {} vs {sum}",
                a.sum
            );
            assert!((a.sum_tv - tv).abs() < 1e-9 * tv.abs().max(1.0));
            let min = mine.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
            assert_eq!(a.min, min as f32);
            assert_eq!(
                a.last,
                mine.last().unwrap().1 as f32,
                "{name} hour {h}: the latest reading"
            );
            checked += 1;
        }
    }
    assert!(checked > 500, "{checked}");
}

/// Copies `src` keeping only rows whose `ts` is before `until`.
fn truncated_copy(src: &Path, dst: &Path, until: i64) {
    for f in parquet_files(src) {
        let rel = f.strip_prefix(src).unwrap();
        let out_dir = dst.join(rel.parent().unwrap());
        let mut kept = Vec::new();
        for b in read(&f) {
            let ts = b.column(0).as_primitive::<TimestampMillisecondType>();
            let mask: datafusion::arrow::array::BooleanArray =
                (0..b.num_rows()).map(|i| Some(ts.value(i) < until)).collect();
            let b = datafusion::arrow::compute::filter_record_batch(&b, &mask).unwrap();
            if b.num_rows() > 0 {
                kept.push(b);
            }
        }
        if kept.is_empty() {
            continue;
        }
        std::fs::create_dir_all(&out_dir).unwrap();
        let batch = datafusion::arrow::compute::concat_batches(&kept[0].schema(), &kept).unwrap();
        larmor_datadir::durable::write_parquet_file(
            &out_dir.join(rel.file_name().unwrap()),
            &batch,
            &larmor_datadir::durable::ParquetSettings::new(1),
        )
        .unwrap();
        assert!(batch.column(0).null_count() == 0);
    }
}

#[test]
fn features_as_of_t_ignore_everything_after_t() {
    let root = sample();
    let t = parse_time("2025-02-20T12:00:00Z").unwrap();
    let unaligned = t + 17 * 60_000; // 12:17, inside an hour
    let from = t - 40 * 24 * HOUR_MS;
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path();
    truncated_copy(&root.join("archive"), &cut.join("archive"), unaligned);
    truncated_copy(&root.join("anomalies"), &cut.join("anomalies"), unaligned);
    let events = EventLog::load(&root.join("events.parquet")).unwrap();
    let service = ServiceLog::from_events(&events);

    let scan = |archive: &Path, until: Option<i64>| {
        scan_hourly(
            archive,
            &ScanOptions {
                from_ms: Some(from),
                until_ms: until,
                ..Default::default()
            },
            &mut |_, _| {},
        )
        .unwrap()
    };
    let full = scan(&root.join("archive"), None);
    let trunc = scan(&cut.join("archive"), None);
    let an_full = read_anomalies(&anomalies_dir(&root.join("archive")).unwrap(), None).unwrap();
    let an_trunc = read_anomalies(&anomalies_dir(&cut.join("archive")).unwrap(), None).unwrap();
    assert!(
        an_full.by_machine.values().map(Vec::len).sum::<usize>()
            > an_trunc.by_machine.values().map(Vec::len).sum::<usize>()
    );
    let spec = spec_for(&full, Some(&an_full), true);
    assert_eq!(spec, spec_for(&trunc, Some(&an_trunc), true));
    assert!(spec.width() > 700, "{}", spec.width());

    // Strided rows up to t: the same on both archives.
    let stride = RowTimes::Stride {
        every_hours: 6,
        warm_up_hours: 24,
        from_ms: None,
        until_ms: Some(t + 1),
    };
    let a = compute(&spec, &full, Some(&an_full), Some(&service), stride);
    let b = compute(&spec, &trunc, Some(&an_trunc), Some(&service), stride);
    assert_eq!(a.rows, b.rows);
    assert!(a.rows.iter().any(|r| r.t_ms == t));
    let same = |x: f32, y: f32| x == y || (x.is_nan() && y.is_nan());
    for i in 0..a.len() {
        for (j, (x, y)) in a.row(i).iter().zip(b.row(i)).enumerate() {
            assert!(same(*x, *y), "row {i} column {}: {x} vs {y}", spec.columns[j]);
        }
    }
    // As of an unaligned time: the full archive scanned up to it equals the truncated one.
    let full_until = scan(&root.join("archive"), Some(unaligned));
    let an_until = read_anomalies(&anomalies_dir(&root.join("archive")).unwrap(), Some(unaligned)).unwrap();
    let a = compute(
        &spec,
        &full_until,
        Some(&an_until),
        Some(&service),
        RowTimes::AsOf(unaligned),
    );
    let b = compute(
        &spec,
        &trunc,
        Some(&an_trunc),
        Some(&service),
        RowTimes::AsOf(unaligned),
    );
    assert_eq!(a.len(), 12);
    for i in 0..a.len() {
        for (j, (x, y)) in a.row(i).iter().zip(b.row(i)).enumerate() {
            assert!(same(*x, *y), "as of: row {i} column {}: {x} vs {y}", spec.columns[j]);
        }
    }
    // And those rows really differ from rows that could see the future.
    let leaky = compute(&spec, &full, Some(&an_full), Some(&service), RowTimes::AsOf(unaligned));
    assert_eq!(
        leaky.len(),
        0,
        "a scan that goes past the as-of time is refused (no rows), not used"
    );
}
