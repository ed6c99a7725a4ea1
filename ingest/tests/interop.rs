//! The archive as written is readable, as it is, by DuckDB and polars (from PyPI).

use larmor_ingest::archive::{ArchiveConfig, ArchiveWriter};
use larmor_ingest::{ChannelId, Frame, Sample, Stream};
use std::process::Command;

const SCRIPT: &str = r#"
import sys, duckdb, polars as pl
root = sys.argv[1]
df = pl.read_parquet(f"{root}/**/*.parquet", hive_partitioning=True)
print("polars", df.height, round(df["value"].sum(), 6), sorted(df["stream"].unique().to_list()), df.schema["ts"])
r = duckdb.connect().execute(f"SELECT count(*), round(sum(value), 6), count(DISTINCT date) FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)").fetchone()
print("duckdb", r[0], r[1], r[2])
"#;

#[test]
fn duckdb_and_polars_read_the_archive_as_it_is() {
    let have = Command::new("python3")
        .args(["-c", "import duckdb, polars"])
        .status()
        .map(|s| s.success());
    assert!(
        matches!(have, Ok(true)),
        "python3 with duckdb and polars is needed: `pip install duckdb polars` (scripts/test does it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut w = ArchiveWriter::new(ArchiveConfig {
        path: dir.path().join("archive"),
        ..Default::default()
    })
    .unwrap();
    let he = ChannelId::from_name("helium_level_pct").unwrap();
    let o2 = ChannelId::from_name("room_o2_pct").unwrap();
    let (mut n, mut sum) = (0u64, 0.0f64);
    for i in 0..1000i64 {
        // 50 hours from midnight: three UTC days, two streams
        let ts = 1_764_288_000_000 + i * 180_000;
        for (stream, c, v) in [
            (Stream::Temperature, he, 80.0 - i as f64 / 1000.0),
            (Stream::Room, o2, 20.9),
        ] {
            w.append(&Frame {
                machine_id: format!("MRI-{:04}", i % 7),
                stream,
                seq: i as u64,
                ts_ms: ts,
                samples: vec![Sample {
                    ts_ms: ts,
                    values: vec![(c, v)],
                }],
            });
            n += 1;
            sum += v;
        }
    }
    w.flush().unwrap();
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(dir.path().join("archive"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let sum = (sum * 1e6).round() / 1e6;
    assert!(
        text.contains(&format!(
            "polars {n} {sum} ['room', 'temperature'] Datetime(time_unit='ms', time_zone='UTC')"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("duckdb {n} {sum} 3")), "{text}");
}
