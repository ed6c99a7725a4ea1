//! `larmor train`, `larmor forecast` and `larmor evaluate` on a copy of the shipped
//! sample fleet: a versioned model file, one forecast per machine in every format,
//! forecasts as of a time that do not change when everything after it is deleted,
//! the `forecasts` table readable by `larmor query`, a report with its plots, and
//! errors that say what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn larmor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_larmor")).args(args).output().unwrap()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "larmor failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn failed(o: Output) -> String {
    assert!(
        !o.status.success(),
        "larmor should have failed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A copy of `datasets/sample` (forecast --write adds a table beside the archive).
fn sample_copy(into: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/sample");
    let dst = into.join("sample");
    copy_dir(&src, &dst);
    dst
}

/// Deletes every `date=` partition of `table` on or after `first_gone` (YYYY-MM-DD).
fn cut(table: &Path, first_gone: &str) -> usize {
    let mut gone = 0;
    for e in std::fs::read_dir(table).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(day) = name.strip_prefix("date=")
            && day >= first_gone
        {
            std::fs::remove_dir_all(e.path()).unwrap();
            gone += 1;
        }
    }
    gone
}

/// The archive's days (`date=` partitions), sorted.
fn days(archive: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(archive)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("date=")
                .map(str::to_string)
        })
        .collect();
    out.sort();
    out
}

fn probabilities(forecast: &serde_json::Value) -> Vec<(u64, f64)> {
    forecast["horizons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["hours"].as_u64().unwrap(), h["probability"].as_f64().unwrap()))
        .collect()
}

#[test]
fn train_forecast_and_evaluate_the_sample_fleet() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = sample_copy(tmp.path());
    let archive = sample.join("archive");
    let events = sample.join("events.csv");
    let model = tmp.path().join("model.json");
    let (a, e, m) = (
        archive.to_str().unwrap(),
        events.to_str().unwrap(),
        model.to_str().unwrap(),
    );

    // Train: a small model (debug build), written as versioned JSON with its metadata.
    let o = larmor(&[
        "train",
        "--archive",
        a,
        "--events",
        e,
        "--out",
        m,
        "--quiet",
        "--stride-hours",
        "12",
        "--trees",
        "20",
        "--logistic-iterations",
        "20",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    ok(o);
    assert!(stderr.contains("trained larmor-gbt-"), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    assert_eq!(json["format"], "larmor-forecast-model");
    assert_eq!(json["version"], 1);
    let md = &json["metadata"];
    let machines = md["machines"].as_array().unwrap().len();
    let listed = std::fs::read_to_string(sample.join("machines.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(machines, listed, "every machine of the sample");
    assert!(md["failures"].as_u64().unwrap() > 0);
    assert_eq!(md["feature_schema_hash"], json["spec"]["hash"]);

    // Forecast as JSON: one per machine, probabilities in [0, 1] and non-decreasing in the horizon.
    // Two thirds into the sample: the days after it are deleted below.
    let all_days = days(&archive);
    let cut_day = all_days[all_days.len() * 2 / 3].clone();
    let as_of = format!("{cut_day}T00:00:00Z");
    let as_of = as_of.as_str();
    let out = ok(larmor(&[
        "forecast",
        "--archive",
        a,
        "--model",
        m,
        "--as-of",
        as_of,
        "--format",
        "json",
    ]));
    let full: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(full.len(), machines);
    for f in &full {
        let p = probabilities(f);
        assert_eq!(p.iter().map(|x| x.0).collect::<Vec<_>>(), vec![24, 72, 168]);
        assert!(p.iter().all(|x| (0.0..=1.0).contains(&x.1)), "{f}");
        assert!(p.windows(2).all(|w| w[0].1 <= w[1].1), "{f}");
        assert!(f["ttf_low_hours"].as_f64().unwrap() <= f["ttf_hours"].as_f64().unwrap());
        assert!(f["ttf_hours"].as_f64().unwrap() <= f["ttf_high_hours"].as_f64().unwrap());
        assert!(!f["mode"].as_str().unwrap().is_empty());
    }

    // CSV and table say the same.
    let csv = ok(larmor(&[
        "forecast",
        "--archive",
        a,
        "--model",
        m,
        "--as-of",
        as_of,
        "--format",
        "csv",
    ]));
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("machine_id,as_of,p_24h,"));
    assert_eq!(lines.count(), machines);
    let table = ok(larmor(&["forecast", "--archive", a, "--model", m, "--as-of", as_of]));
    for f in &full {
        assert!(table.contains(f["machine_id"].as_str().unwrap()), "{table}");
    }

    // As of a time, nothing after it counts: delete every later day of the archive and
    // of the anomalies table, and the forecasts are the same.
    let cut_copy = tmp.path().join("cut");
    copy_dir(&sample, &cut_copy);
    assert!(cut(&cut_copy.join("archive"), &cut_day) > 0);
    cut(&cut_copy.join("anomalies"), &cut_day);
    let cut_archive = cut_copy.join("archive");
    let out = ok(larmor(&[
        "forecast",
        "--archive",
        cut_archive.to_str().unwrap(),
        "--model",
        m,
        "--as-of",
        as_of,
        "--format",
        "json",
    ]));
    let truncated: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(truncated, full, "forecasts as of {as_of} must not depend on later data");

    // A later time gives other forecasts (the as-of time is really used).
    let later = ok(larmor(&[
        "forecast",
        "--archive",
        a,
        "--model",
        m,
        "--as-of",
        &format!("{}T00:00:00Z", all_days.last().unwrap()),
        "--format",
        "json",
    ]));
    let later: Vec<serde_json::Value> = serde_json::from_str(&later).unwrap();
    assert_ne!(later, full);
    let err = failed(larmor(&[
        "forecast",
        "--archive",
        a,
        "--model",
        m,
        "--as-of",
        "yesterday-ish",
    ]));
    assert!(err.contains("--as-of"), "{err}");

    // --write appends to the `forecasts` table, which the SQL catalogue reads.
    let o = larmor(&["forecast", "--archive", a, "--model", m, "--as-of", as_of, "--write"]);
    ok(o);
    let counted = ok(larmor(&[
        "query",
        "--archive",
        a,
        "--format",
        "csv",
        "SELECT count(*) AS n, count(DISTINCT machine_id) AS machines FROM forecasts",
    ]));
    let expected = format!("{},{machines}", machines * 3);
    assert_eq!(counted.lines().nth(1), Some(expected.as_str()), "{counted}");

    // Evaluate: every machine was seen in training, so only the backtest scores.
    let report = tmp.path().join("report");
    let o = larmor(&[
        "evaluate",
        "--archive",
        a,
        "--events",
        e,
        "--model",
        m,
        "--out",
        report.to_str().unwrap(),
        "--origins",
        "1",
        "--resamples",
        "20",
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    ok(o);
    assert!(stderr.contains("no held-out scores"), "{stderr}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for section in [
        "Rolling-origin backtest",
        "logistic regression",
        "fixed thresholds",
        "streaming detectors",
    ] {
        assert!(md.contains(section), "report.md lacks {section}:\n{md}");
    }
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("metrics.json")).unwrap()).unwrap();
    assert!(metrics.to_string().contains("failure_recall"));
    let pngs = std::fs::read_dir(&report)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".png"))
        .count();
    assert!(
        pngs >= 2 || md.contains("font"),
        "plots, or the reason there are none:\n{md}"
    );
}

#[test]
fn bad_inputs_are_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/sample");
    let archive = sample.join("archive");
    let a = archive.to_str().unwrap();
    let out = tmp.path().join("model.json");

    let missing = tmp.path().join("no-such-events.csv");
    let err = failed(larmor(&[
        "train",
        "--archive",
        a,
        "--events",
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]));
    assert!(err.contains("no-such-events.csv"), "{err}");
    assert!(!out.exists(), "no model written");

    let not_a_model = tmp.path().join("other.json");
    std::fs::write(&not_a_model, r#"{"format": "larmor-forecast-model", "version": 99}"#).unwrap();
    let err = failed(larmor(&[
        "forecast",
        "--archive",
        a,
        "--model",
        not_a_model.to_str().unwrap(),
    ]));
    assert!(err.contains("retrain"), "{err}");
    std::fs::write(&not_a_model, "[1, 2]").unwrap();
    let err = failed(larmor(&[
        "forecast",
        "--archive",
        a,
        "--model",
        not_a_model.to_str().unwrap(),
    ]));
    assert!(err.contains("larmor train"), "{err}");
}
