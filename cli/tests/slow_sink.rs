//! A failing alert channel never holds ingest back: with every delivery failing
//! (and retried with backoff on the channels' own threads) and a tiny alert
//! queue, the archive still gets every reading and the anomalies table every
//! episode; alerts that did not fit the queue are dropped and counted, as
//! `run.alert_queue_full = "drop"` says, and never more than there were.

mod support;

use larmor::config::LarmorConfig;
use larmor::metrics_http::counter_total;
use larmor::topology::Topology;
use larmor_ingest::ChannelId;
use larmor_stage::WhenFull;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_alert_channel_drops_alerts_not_readings() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LarmorConfig::default();
    cfg.archive.path = dir.path().join("archive");
    cfg.archive.max_buffer_age = Duration::from_secs(1);
    // The outbox root is a file: every delivery fails and is retried (a broken channel).
    let outbox = dir.path().join("outbox");
    std::fs::write(&outbox, b"not a directory").unwrap();
    cfg.alerts.outbox = outbox;
    cfg.run.alert_queue = 1;
    assert_eq!(cfg.run.alert_queue_full, WhenFull::Drop, "the default");
    cfg.metrics.listen = "127.0.0.1:0".parse().unwrap();
    cfg.simulator.machines = 12;
    cfg.simulator.rate_hz = 20.0;
    cfg.simulator.frame_interval = Duration::from_millis(200);
    let mut p = Topology::start(cfg).await.unwrap();

    // Several machines out of range at once: a burst of anomalies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let fleet = p.fleet.clone().unwrap();
        let mut sim = fleet.simulator.lock().unwrap();
        let helium = ChannelId::from_name("helium_level_pct").unwrap();
        let oxygen = ChannelId::from_name("room_o2_pct").unwrap();
        for i in 1..=12 {
            let m = format!("MRI-{i:04}");
            assert!(sim.inject(&m, helium, 12.0));
            assert!(sim.inject(&m, oxygen, 18.0));
        }
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = tokio::task::block_in_place(|| p.stop()).unwrap();
    assert!(report.source.drained);

    // Every reading archived, whatever happened to the alerts.
    let produced = report.produced.clone().unwrap();
    support::assert_archive_equals(&p.config.archive.path, &produced).await;

    let m = &p.metrics;
    let anomalies = counter_total(m, larmor_metrics::ANOMALIES.name);
    let dropped = counter_total(m, larmor_metrics::QUEUE_DROPPED.name);
    let failed = counter_total(m, larmor_metrics::ALERTS_FAILED.name);
    assert!(anomalies >= 24.0, "{anomalies} anomalies");
    assert!(failed > 0.0, "the alerts that got through failed to deliver");
    assert!(dropped < anomalies, "{dropped} of {anomalies} dropped");

    // The anomalies table's queue blocks instead: every episode is recorded.
    let ctx = larmor_analytics::sql::open_archive(&p.config.archive.path)
        .await
        .unwrap();
    let b = larmor_analytics::sql::run(&ctx, "SELECT count(*) AS n FROM anomalies")
        .await
        .unwrap();
    let csv = larmor_analytics::sql::render(&b, larmor_analytics::sql::OutputFormat::Csv).unwrap();
    assert_eq!(csv, format!("n\n{anomalies}\n"));
}
