//! End-to-end ingest rate against the raw rdkafka consume rate of the same topic
//! bytes, in one run, on the embedded cluster; plus the peak RSS and CPU time.
//!
//! Each rate is given twice: steady state (first message in hand to the last one
//! handled, which for larmor includes the final checkpoint) and wall clock from
//! subscribing (which adds the consumer-group join, about 3 s on the embedded
//! cluster for either consumer, and so hides most of the difference).
//!
//! Run: `cargo bench -p larmor-benches --bench ingest_e2e`
//! Size: `LARMOR_BENCH_READINGS` (default 6000000); above that, more partitions per
//! topic (`LARMOR_BENCH_PARTITIONS`, default 6), as the embedded cluster caps each
//! partition's log at 5 MB.

use larmor::simulated::{simulated_enrolment, simulated_keys};
use larmor_benches::{cpu_seconds, env};
use larmor_datasets::{Fleet, Simulator};
use larmor_ingest::DeviceRegistry;
use larmor_ingest::Frame;
use larmor_ingest::archive::ArchiveConfig;
use larmor_ingest::kafka::{EmbeddedKafka, KafkaConfig, TopicsConfig};
use larmor_ingest::metrics::IngestMetrics;
use larmor_ingest::publish::FramePublisher;
use larmor_ingest::source::{KafkaSource, SourceSettings, SourceWorkers};
use larmor_ingest::trust::TrustConfig;
use larmor_stage::{Closed, Emit, Sent, Source};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// A `/proc/self/status` figure in MiB (`VmHWM`: peak RSS, `VmRSS`: RSS now).
fn status_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Notes when the first accepted frame comes out of the source.
struct FirstFrame(std::sync::OnceLock<Instant>);
impl Emit<Frame> for FirstFrame {
    fn emit(&self, _: Frame) -> Result<Sent, Closed> {
        self.0.get_or_init(Instant::now);
        Ok(Sent::Queued)
    }
}

fn main() {
    let target: usize = env("LARMOR_BENCH_READINGS", 6_000_000);
    let seed = 7;
    let machines = 50;
    // More partitions hold a larger backlog: the embedded cluster caps each partition's log.
    let topics = TopicsConfig {
        partitions: env("LARMOR_BENCH_PARTITIONS", TopicsConfig::default().partitions),
        ..TopicsConfig::default()
    };
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

    // Raw: rdkafka consuming the same messages, touching every payload byte. Its
    // steady phase is short (a fraction of a second), so it runs three times, each
    // as a new group from the start of the topics; the median run counts.
    let mut raw_runs: Vec<(f64, f64, f64)> = (0..3)
        .map(|i| {
            let raw: BaseConsumer = kcfg
                .client_config(&brokers)
                .unwrap()
                .set("group.id", format!("bench-raw-{i}"))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            raw.subscribe(&topics.telemetry_topics()).unwrap();
            let start = Instant::now();
            let mut first = None;
            let (mut n, mut checksum, mut cpu) = (0usize, 0u64, 0.0);
            while n < frames {
                assert!(
                    start.elapsed() < Duration::from_secs(120),
                    "the raw consumer saw {n} of {frames} frames in 2 minutes: the embedded cluster caps each \
                     partition's log and drops the oldest messages of a larger backlog; use LARMOR_BENCH_READINGS \
                     of 6000000 or less per 6 partitions (LARMOR_BENCH_PARTITIONS)"
                );
                if let Some(Ok(m)) = raw.poll(Duration::from_millis(100)) {
                    if first.is_none() {
                        first = Some(Instant::now());
                        cpu = cpu_seconds();
                    }
                    checksum = checksum.wrapping_add(
                        m.payload()
                            .map(|p| p.iter().map(|&b| b as u64).sum::<u64>())
                            .unwrap_or(0),
                    );
                    n += 1;
                }
            }
            let secs = start.elapsed().as_secs_f64();
            let steady = first.map_or(secs, |t| t.elapsed().as_secs_f64());
            std::hint::black_box(checksum);
            (steady, secs, cpu_seconds() - cpu)
        })
        .collect();
    raw_runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    println!(
        "raw steady runs: {}",
        raw_runs
            .iter()
            .map(|r| format!("{:.2} M readings/s", readings as f64 / r.0 / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (raw_steady, raw_secs, raw_cpu) = raw_runs[1];

    // End to end: decode, verify signature/replay/skew, archive (Parquet, fsync, manifest), commit.
    let dir = tempfile::tempdir().unwrap();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let source = KafkaSource::open(
        SourceSettings {
            kafka: &kcfg,
            brokers: &brokers,
            topics: &topics,
            archive: ArchiveConfig {
                path: dir.path().join("archive"),
                ..Default::default()
            },
            trust: TrustConfig::default(),
            drain_timeout: Duration::from_secs(600),
        },
        registry,
        IngestMetrics::register(&prometheus::Registry::new()).unwrap(),
        SourceWorkers::start(&TrustConfig::default(), cores).unwrap(),
    )
    .unwrap();
    // larmor's own memory: RSS sampled while it works through the whole backlog,
    // against the RSS before (the broker already holds every message by then).
    let rss_before = status_mib("VmRSS:");
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0.0f64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(status_mib("VmRSS:"));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let start = Instant::now();
    let cpu_at_start = cpu_seconds();
    let stop = AtomicBool::new(true); // drain everything there is, then stop
    let first = FirstFrame(Default::default());
    let report = source.run(&stop, &first).unwrap();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let rss_peak = sampler.join().unwrap();
    let e2e_secs = start.elapsed().as_secs_f64();
    // The first frame is seen after its message is verified: a few milliseconds late at most.
    let e2e_steady = first.0.get().map_or(e2e_secs, |t| t.elapsed().as_secs_f64());
    let e2e_cpu = cpu_seconds() - cpu_at_start;
    assert!(
        report.drained && report.archived_rows as usize == readings,
        "{report:?} vs {readings}"
    );

    let rate = |secs: f64| readings as f64 / secs / 1e6;
    println!(
        "raw rdkafka consume (median of 3): steady {:.2} M readings/s ({:.2}s, {:.0} frames/s); wall from subscribe {:.2} M readings/s ({:.2}s); CPU {:.2} core-s",
        rate(raw_steady),
        raw_steady,
        frames as f64 / raw_steady,
        rate(raw_secs),
        raw_secs,
        raw_cpu
    );
    println!(
        "larmor end-to-end:   steady {:.2} M readings/s ({:.2}s, {:.0} frames/s); wall from subscribe {:.2} M readings/s ({:.2}s); CPU {:.2} core-s, {} files",
        rate(e2e_steady),
        e2e_steady,
        frames as f64 / e2e_steady,
        rate(e2e_secs),
        e2e_secs,
        e2e_cpu,
        report.archive_files
    );
    println!(
        "ratio end-to-end/raw: steady {:.2}x, wall from subscribe {:.2}x",
        raw_steady / e2e_steady,
        raw_secs / e2e_secs
    );
    println!(
        "CPU per million readings: raw {:.3} core-s, end-to-end {:.3} core-s",
        raw_cpu / readings as f64 * 1e6,
        e2e_cpu / readings as f64 * 1e6
    );
    println!(
        "peak RSS (whole process, includes the in-process broker holding every message): {:.0} MiB",
        status_mib("VmHWM:")
    );
    println!(
        "RSS during end-to-end: {rss_before:.0} MiB before, {rss_peak:.0} MiB at most (+{:.0} MiB for a {:.0} MB backlog)",
        rss_peak - rss_before,
        bytes as f64 / 1e6
    );
}
