//! `larmor detect` round trips: a CSV in, `timestamp,value,anomaly_score` out,
//! one row per input row, the injected anomalies scoring high; the same over an
//! archived channel; errors that say what to do.

use larmor_ingest::archive::{ArchiveConfig, ArchiveWriter};
use larmor_ingest::{ChannelId, Frame, Sample, Stream};
use std::path::Path;
use std::process::Command;

fn larmor(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_larmor")).args(args).output().unwrap()
}

/// Deterministic noise in [-1, 1].
fn jitter(i: usize) -> f64 {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0xD1B5_4A32_D192_ED03;
    (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// A sensor at one reading a minute for two days: noise, a spike at 2000, a step from 2600.
fn series(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let base = 12.0 + 0.05 * jitter(i);
            match i {
                2000 => 16.0,
                _ if i >= 2600 => base + 1.5,
                _ => base,
            }
        })
        .collect()
}

fn read_scores(path: &Path) -> Vec<(String, String, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,value,anomaly_score"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 3, "{l}");
            let s: f64 = f[2].parse().unwrap();
            assert!((0.0..=1.0).contains(&s), "score {s} out of range in {l}");
            (f[0].to_string(), f[1].to_string(), s)
        })
        .collect()
}

#[test]
fn csv_round_trip_with_iso_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("sensor.csv"), dir.path().join("scores.csv"));
    let xs = series(2880);
    let mut csv = String::from("site,time,temp\n");
    for (i, x) in xs.iter().enumerate() {
        let ts = chrono::DateTime::from_timestamp(1_764_288_000 + 60 * i as i64, 0).unwrap();
        csv.push_str(&format!("north,{},{x:.3}\n", ts.format("%Y-%m-%dT%H:%M:%SZ")));
    }
    std::fs::write(&input, &csv).unwrap();
    let o = larmor(&[
        "detect",
        "--input",
        input.to_str().unwrap(),
        "--time-column",
        "time",
        "--value-column",
        "temp",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = read_scores(&out);
    assert_eq!(rows.len(), xs.len(), "one output row per input row");
    // timestamps and values come back exactly as written
    for (row, line) in rows.iter().zip(csv.lines().skip(1)) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!((row.0.as_str(), row.1.as_str()), (f[1], f[2]));
    }
    assert!(rows[2000].2 > 0.8, "the spike scores {}", rows[2000].2);
    assert!(rows[2600..2605].iter().any(|r| r.2 > 0.8), "the step scores high");
    let false_alarms = rows[..1990].iter().filter(|r| r.2 >= 0.5).count();
    assert!(false_alarms <= 2, "{false_alarms} healthy rows at 0.5 or above");
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(summary.contains("2880 rows scored"), "{summary}");
}

#[test]
fn episodes_file_lists_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out, episodes) = (
        dir.path().join("sensor.csv"),
        dir.path().join("scores.csv"),
        dir.path().join("episodes.csv"),
    );
    let mut csv = String::from("timestamp,value\n");
    for (i, x) in series(2880).iter().enumerate() {
        csv.push_str(&format!("{},{x:.3}\n", 1_764_288_000_000i64 + 60_000 * i as i64));
    }
    std::fs::write(&input, csv).unwrap();
    let args = |probation: &str| {
        larmor(&[
            "detect",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--episodes",
            episodes.to_str().unwrap(),
            "--probation",
            probation,
        ])
    };
    let o = args("15%");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let text = std::fs::read_to_string(&episodes).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,detector,kind,score,value,explanation"));
    let starts: Vec<&str> = lines.map(|l| l.split(',').next().unwrap()).collect();
    // The spike (reading 2000) and the step (from 2600), each once.
    let at = |i: i64| chrono::DateTime::from_timestamp_millis(1_764_288_000_000 + 60_000 * i).unwrap();
    let iso = |i: i64| at(i).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    assert_eq!(starts.len(), 2, "{text}");
    assert_eq!(starts[0], iso(2000), "{text}");
    assert!(
        starts[1] >= iso(2600).as_str() && starts[1] <= iso(2605).as_str(),
        "{text}"
    );
    assert!(err.contains("2 episodes to"), "{err}");
    // A bad probation is refused before anything is written.
    std::fs::remove_file(&episodes).unwrap();
    let o = args("150%");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("15%"));
    assert!(!episodes.exists());
}

#[test]
fn csv_with_epoch_milliseconds_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("export.csv");
    let xs = series(2880);
    let mut csv = String::from("timestamp,value\n");
    for (i, x) in xs.iter().enumerate() {
        csv.push_str(&format!("{},{x:.3}\n", 1_764_288_000_000i64 + 60_000 * i as i64));
    }
    std::fs::write(&input, csv).unwrap();
    let o = larmor(&["detect", "--input", input.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("stdout.csv");
    std::fs::write(&out, &o.stdout).unwrap();
    let rows = read_scores(&out);
    assert_eq!(rows.len(), xs.len());
    assert!(rows[2000].2 > 0.8);
}

#[test]
fn archived_channel_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ArchiveWriter::new(ArchiveConfig {
        path: dir.path().into(),
        ..Default::default()
    })
    .unwrap();
    let stage2 = ChannelId::from_name("coldhead_stage2_k").unwrap();
    let xs = series(2880);
    for (k, chunk) in xs.chunks(60).enumerate() {
        let t0 = 1_764_288_000_000 + k as i64 * 3_600_000;
        w.append(&Frame {
            machine_id: "MRI-0042".into(),
            stream: Stream::Temperature,
            seq: k as u64 + 1,
            ts_ms: t0,
            samples: chunk
                .iter()
                .enumerate()
                .map(|(i, &v)| Sample {
                    ts_ms: t0 + i as i64 * 60_000,
                    values: vec![(stage2, v / 3.0)],
                })
                .collect(),
        });
    }
    w.flush().unwrap();
    let out = dir.path().join("scores.csv");
    let archive = dir.path().to_str().unwrap();
    let o = larmor(&[
        "detect",
        "--archive",
        archive,
        "--machine",
        "MRI-0042",
        "--channel",
        "coldhead_stage2_k",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = read_scores(&out);
    assert_eq!(rows.len(), xs.len());
    assert_eq!(rows[0].0, "2025-11-28T00:00:00.000Z");
    assert!(rows[2000].2 > 0.8);

    let o = larmor(&[
        "detect",
        "--archive",
        archive,
        "--machine",
        "MRI-9999",
        "--channel",
        "coldhead_stage2_k",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("SELECT DISTINCT machine_id"));
}

#[test]
fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.csv");
    std::fs::write(&input, "time,temp\n2025-01-01T00:00:00Z,1\n").unwrap();
    let o = larmor(&["detect", "--input", input.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--time-column") && err.contains("time, temp"), "{err}");

    std::fs::write(&input, "timestamp,value\nyesterday,1\n").unwrap();
    let out = dir.path().join("scores.csv");
    let o = larmor(&[
        "detect",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("line 2") && err.contains("ISO-8601"),
        "{err}"
    );
    assert!(!out.exists(), "no half-written scores");

    let o = larmor(&["detect", "--input", dir.path().join("missing.csv").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("check the path"), "{err}");

    let o = larmor(&["detect"]);
    assert!(!o.status.success());
}

#[test]
fn whole_archive_scan_writes_the_anomalies_table() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let mut w = ArchiveWriter::new(ArchiveConfig {
        path: archive.clone(),
        ..Default::default()
    })
    .unwrap();
    let stage2 = ChannelId::from_name("coldhead_stage2_k").unwrap();
    let xs = series(2880);
    for (k, chunk) in xs.chunks(60).enumerate() {
        let t0 = 1_764_288_000_000 + k as i64 * 3_600_000;
        for m in ["MRI-0042", "MRI-0043"] {
            w.append(&Frame {
                machine_id: m.into(),
                stream: Stream::Temperature,
                seq: k as u64 + 1,
                ts_ms: t0,
                samples: chunk
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| Sample {
                        ts_ms: t0 + i as i64 * 60_000,
                        // only MRI-0042 has the spike and the step
                        values: vec![(
                            stage2,
                            if m == "MRI-0042" {
                                v / 3.0
                            } else {
                                4.0 + 0.015 * jitter(7 * (k * 60 + i) + 3)
                            },
                        )],
                    })
                    .collect(),
            });
        }
    }
    w.flush().unwrap();
    let a = archive.to_str().unwrap();
    let o = larmor(&["detect", "--archive", a]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("5760 readings over 2 days"), "{err}");
    assert!(dir.path().join("anomalies").is_dir());

    let query = |args: &[&str]| {
        let o = larmor(&[&["query", "--archive", a, "--format", "csv"], args].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let count = || query(&["SELECT machine_id, count(*) AS n, max(score) >= 0.5 AS high FROM anomalies GROUP BY 1"]);
    let first = count();
    let mut lines = first.lines();
    assert_eq!(lines.next(), Some("machine_id,n,high"));
    let row = lines.next().unwrap();
    assert!(row.starts_with("MRI-0042,") && row.ends_with(",true"), "{first}");
    assert_eq!(lines.next(), None, "the healthy machine has no anomalies: {first}");
    // The spike (reading 2000) is among them, at its time.
    let spike = query(&[
        "SELECT count(*) AS n FROM anomalies WHERE ts = TIMESTAMP '2025-11-29T09:20:00Z' AND channel = 'coldhead_stage2_k'",
    ]);
    assert_eq!(spike, "n\n1\n", "one episode at the spike");

    // A second scan would count every episode twice: refused unless --replace.
    let o = larmor(&["detect", "--archive", a]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--replace"));
    let o = larmor(&["detect", "--archive", a, "--replace"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(count(), first, "a replaced scan gives the same table");

    // The standard queries run over it.
    let top = query(&["--standard", "most_anomalous_machines"]);
    assert!(top.lines().nth(1).unwrap().starts_with("MRI-0042,"), "{top}");
    let list = query(&["--standard", "list"]);
    assert!(
        list.contains("helium_boiloff") && list.contains("monthly_uptime"),
        "{list}"
    );
    let o = larmor(&["query", "--archive", a, "--standard", "nope"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("vendor_model_comparison"));
}
