//! End-to-end ingest rate against the raw rdkafka consume rate of the same topic
//! bytes, in one run, on the embedded cluster; plus the peak RSS.
//!
//! Run: `cargo bench -p larmor-benches --bench ingest_e2e`
//! Size: `LARMOR_BENCH_READINGS` (default 6000000).

use larmor::pipeline::{simulated_enrolment, simulated_keys};
use larmor_datasets::{Fleet, Simulator};
use larmor_ingest::DeviceRegistry;
use larmor_ingest::archive::ArchiveConfig;
use larmor_ingest::kafka::{EmbeddedKafka, KafkaConfig, TopicsConfig};
use larmor_ingest::metrics::IngestMetrics;
use larmor_ingest::publish::FramePublisher;
use larmor_ingest::source::{KafkaSource, NoObserver};
use larmor_ingest::trust::TrustConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let target: usize = std::env::var("LARMOR_BENCH_READINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6_000_000);
    let seed = 7;
    let machines = 50;
    let topics = TopicsConfig::default();
    let kafka = EmbeddedKafka::start(&topics).expect("embedded cluster");
    let brokers = kafka.bootstrap_servers();
    let kcfg = KafkaConfig::default();
    let devices = simulated_enrolment(Fleet::generate(machines, seed).devices(), seed);
    let registry = Arc::new(DeviceRegistry::new(devices.clone()).unwrap());

    // Produce: frames of 20 samples (a gateway batching 2 s at 10 Hz), signed.
    let publisher = FramePublisher::new(&kcfg.client_config(&brokers).unwrap(), &topics)
        .unwrap()
        .with_keys(simulated_keys(&devices, seed));
    let mut sim = Simulator::new(Fleet::generate(machines, seed), seed);
    let (mut readings, mut frames, mut bytes) = (0usize, 0usize, 0usize);
    let mut t = chrono::Utc::now().timestamp_millis() - 3_600_000;
    while readings < target {
        for f in sim.frames(t, 20, 100) {
            readings += f.reading_count();
            frames += 1;
            bytes += f.encode().len();
            publisher.send(&f).unwrap();
        }
        t += 2_000;
    }
    publisher.flush(Duration::from_secs(120)).unwrap();
    drop(publisher);
    println!(
        "produced {frames} frames, {readings} readings, {:.1} MB of JSON",
        bytes as f64 / 1e6
    );

    // Raw: rdkafka consuming the same messages, touching every payload byte.
    let raw: BaseConsumer = kcfg
        .client_config(&brokers)
        .unwrap()
        .set("group.id", "bench-raw")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    raw.subscribe(&topics.telemetry_topics()).unwrap();
    let start = Instant::now();
    let (mut n, mut checksum) = (0usize, 0u64);
    while n < frames {
        if let Some(Ok(m)) = raw.poll(Duration::from_millis(100)) {
            checksum = checksum.wrapping_add(
                m.payload()
                    .map(|p| p.iter().map(|&b| b as u64).sum::<u64>())
                    .unwrap_or(0),
            );
            n += 1;
        }
    }
    let raw_secs = start.elapsed().as_secs_f64();
    drop(raw);

    // End to end: decode, verify signature/replay/skew, archive (Parquet, fsync, manifest), commit.
    let dir = tempfile::tempdir().unwrap();
    let source = KafkaSource::open(
        &kcfg,
        &brokers,
        &topics,
        ArchiveConfig {
            path: dir.path().join("archive"),
            ..Default::default()
        },
        TrustConfig::default(),
        registry,
        IngestMetrics::register(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap();
    let start = Instant::now();
    let stop = AtomicBool::new(true); // drain everything there is, then stop
    let report = source.run(&stop, Duration::from_secs(600), &mut NoObserver).unwrap();
    let e2e_secs = start.elapsed().as_secs_f64();
    assert!(
        report.drained && report.archived_rows as usize == readings,
        "{report:?} vs {readings}"
    );

    let raw_rate = readings as f64 / raw_secs;
    let e2e_rate = readings as f64 / e2e_secs;
    println!(
        "raw rdkafka consume: {:.2} M readings/s ({:.0} frames/s, {:.2}s, checksum {checksum})",
        raw_rate / 1e6,
        frames as f64 / raw_secs,
        raw_secs
    );
    println!(
        "larmor end-to-end:   {:.2} M readings/s ({:.0} frames/s, {:.2}s, {} files)",
        e2e_rate / 1e6,
        frames as f64 / e2e_secs,
        e2e_secs,
        report.archive_files
    );
    println!("ratio end-to-end/raw: {:.2}x", e2e_rate / raw_rate);
    println!(
        "peak RSS (whole process, includes the in-process broker holding every message): {:.0} MiB",
        peak_rss_mib()
    );
}
