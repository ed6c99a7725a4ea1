//! The SQL catalogue: every table is there (empty on a young data directory),
//! the side tables are read from where the pipeline writes them, and the
//! most-anomalous ranking keeps maintenance and sensor faults apart.

use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::record_batch::RecordBatch;
use larmor_analytics::anomaly_table;
use larmor_analytics::sql::{self, OutputFormat};
use larmor_analytics::{Anomaly, AnomalyKind};
use larmor_datadir::{DataDir, Table};
use larmor_ingest::archive::{ArchiveConfig, ArchiveWriter};
use larmor_ingest::{ChannelId, Device, DeviceRegistry, Frame, Stream};
use std::path::Path;
use std::sync::Arc;

const DAY: i64 = 86_400_000;
const T: i64 = 1_764_288_000_000 + 10 * DAY; // newest reading: 2025-12-08T00:00Z

fn archive(dir: &Path) {
    let mut w = ArchiveWriter::new(ArchiveConfig {
        path: dir.into(),
        ..Default::default()
    })
    .unwrap();
    let he = ChannelId::from_name("helium_level_pct").unwrap();
    for m in ["A", "B", "C"] {
        for d in 0..=10 {
            w.append(&Frame::single(
                m,
                Stream::Temperature,
                d as u64 + 1,
                T - (10 - d) * DAY,
                he,
                80.0,
            ));
        }
    }
    w.flush().unwrap();
}

async fn csv(ctx: &datafusion::prelude::SessionContext, q: &str) -> String {
    sql::render(&sql::run(ctx, q).await.unwrap(), OutputFormat::Csv).unwrap()
}

#[tokio::test]
async fn a_young_data_dir_has_every_table_empty_with_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("archive");
    archive(&a);
    let ctx = sql::open_archive(&a).await.unwrap();
    for table in Table::ALL.into_iter().filter(|t| *t != Table::Readings) {
        let (name, schema) = (table.name(), table.schema());
        assert_eq!(
            csv(&ctx, &format!("SELECT count(*) AS n FROM {name}")).await,
            "n\n0\n",
            "{name}"
        );
        let t = ctx.table(name).await.unwrap();
        let got: Vec<_> = t.schema().fields().iter().map(|f| f.name().clone()).collect();
        let want: Vec<_> = schema.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(csv(&ctx, "SELECT count(*) AS n FROM readings").await, "n\n33\n");
}

fn anomaly(machine: &str, ts_ms: i64, score: f64, kind: AnomalyKind) -> Anomaly {
    Anomaly {
        machine_id: machine.into(),
        stream: Stream::Temperature,
        channels: vec!["coldhead_stage2_k", "compressor_supply_mpa"],
        ts_ms,
        value: 4.9,
        score,
        detector: if kind == AnomalyKind::SensorFault {
            "sensor_fault"
        } else {
            "multivariate"
        },
        kind,
        explanation: "2nd stage warm for the compressor pressure".into(),
    }
}

fn events(path: &Path, rows: &[(&str, i64, i64)]) {
    let n = rows.len();
    let ts = |f: &dyn Fn(&(&str, i64, i64)) -> i64| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(f)).with_timezone("UTC"))
    };
    let text = |s: &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(std::iter::repeat_n(s, n))) };
    let batch = RecordBatch::try_new(
        larmor_datadir::schema::events(),
        vec![
            Arc::new(UInt32Array::from_iter_values(1..=n as u32)),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            text("maintenance"),
            text("planned_maintenance"),
            Arc::new(StringArray::from(vec![None::<&str>; n])),
            Arc::new(StringArray::from(vec![None::<&str>; n])),
            ts(&|r| r.1),
            ts(&|r| r.1),
            ts(&|r| r.2),
            Arc::new(BooleanArray::from(vec![true; n])),
            text("inspection"),
        ],
    )
    .unwrap();
    larmor_datadir::durable::write_parquet_file(path, &batch, &larmor_datadir::durable::ParquetSettings::new(3))
        .unwrap();
}

#[tokio::test]
async fn side_tables_are_read_and_the_ranking_keeps_maintenance_and_sensor_faults_apart() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("archive");
    archive(&a);
    let data = DataDir::around(&a);
    let mut log = anomaly_table::writer(&data);
    use AnomalyKind::*;
    for x in [
        anomaly("A", T - DAY, 0.6, MachineHealth),
        anomaly("A", T - 2 * DAY, 0.7, MachineHealth),
        anomaly("A", T - 6 * DAY, 0.9, Environment),
        anomaly("B", T - 3 * DAY, 0.95, MachineHealth),
        anomaly("B", T - 2 * DAY + 3_600_000, 0.99, MachineHealth), // in maintenance
        anomaly("B", T - 2 * DAY + 7_200_000, 0.99, MachineHealth), // in maintenance
        anomaly("B", T - 4 * DAY, 0.8, SensorFault),
        anomaly("C", T - 8 * DAY, 0.99, MachineHealth), // before the window
    ] {
        log.push(x.ts_ms, x);
    }
    assert_eq!(log.flush().unwrap(), 8);
    events(&data.events(), &[("B", T - 2 * DAY, T - DAY - 1)]);
    let device = |id: &str, maker: &str| Device {
        machine_id: id.into(),
        site: "st-anne".into(),
        manufacturer: maker.into(),
        model: "Vega".into(),
        firmware: "1".into(),
        public_key: None,
        revoked: false,
    };
    DeviceRegistry::new(vec![
        device("A", "aurora"),
        device("B", "boreal"),
        device("C", "cygnus"),
    ])
    .unwrap()
    .save(&data.registry())
    .unwrap();

    let ctx = sql::open_archive(&a).await.unwrap();
    assert_eq!(
        csv(
            &ctx,
            "SELECT date, count(*) AS n FROM anomalies GROUP BY date ORDER BY date"
        )
        .await,
        "date,n\n2025-11-30,1\n2025-12-02,1\n2025-12-04,1\n2025-12-05,1\n2025-12-06,3\n2025-12-07,1\n",
        "one partition per day"
    );
    assert_eq!(
        csv(
            &ctx,
            "SELECT channel, channels, kind FROM anomalies WHERE machine_id = 'C'"
        )
        .await,
        "channel,channels,kind\ncoldhead_stage2_k,\"coldhead_stage2_k,compressor_supply_mpa\",machine_health\n"
    );
    let q = larmor_analytics::queries::standard("most_anomalous_machines")
        .unwrap()
        .sql;
    let got = csv(
        &ctx,
        &format!(
            "SELECT machine_id, manufacturer, episodes, total_score, max_score, sensor_faults, during_maintenance FROM ({})",
            q.trim().trim_end_matches(';')
        ),
    )
    .await;
    assert_eq!(
        got,
        "machine_id,manufacturer,episodes,total_score,max_score,sensor_faults,during_maintenance\n\
         A,aurora,3,2.2,0.9,0,0\n\
         B,boreal,1,0.95,0.95,1,2\n"
    );
}
