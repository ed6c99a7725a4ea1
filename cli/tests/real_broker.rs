//! Ingest against a real Kafka-compatible broker (tansu): crashes, broker restarts,
//! a consumer group of two, SASL and mutual TLS, a revocation while running, and a
//! corpus of bad input. One group test runs on librdkafka's own cluster instead,
//! because tansu does not expire a dead member's session.

mod support;

use larmor::simulated::{simulated_enrolment, simulated_keys};
use larmor_datasets::live::{LiveConfig, LiveFleet};
use larmor_datasets::{Fleet, Simulator, Tally};
use larmor_ingest::dlq::HEADER_REASON;
use larmor_ingest::kafka::{KafkaConfig, TopicsConfig};
use larmor_ingest::publish::FramePublisher;
use larmor_ingest::registry::{Device, DeviceRegistry};
use larmor_ingest::trust::DeviceKey;
use larmor_ingest::{ChannelId, Frame, Sample, Stream};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::*;

const SEED: u64 = 7;
const MACHINES: usize = 12;

fn client(brokers: &str) -> ClientConfig {
    let mut k = KafkaConfig::default();
    k.properties.insert("enable.idempotence".into(), "false".into());
    k.client_config(brokers).unwrap()
}

fn devices() -> Vec<Device> {
    simulated_enrolment(Fleet::generate(MACHINES, SEED).devices(), SEED)
}

fn write_registry(dir: &Path) -> PathBuf {
    let p = dir.join("devices.toml");
    DeviceRegistry::new(devices()).unwrap().save(&p).unwrap();
    p
}

fn publisher(brokers: &str) -> FramePublisher {
    FramePublisher::new(&client(brokers), &TopicsConfig::default())
        .unwrap()
        .with_keys(simulated_keys(&devices(), SEED))
}

/// The simulated fleet publishing signed frames in the background.
struct Feeder {
    fleet: LiveFleet,
    stop: Arc<AtomicBool>,
    worker: JoinHandle<u64>,
}

impl Feeder {
    fn start(brokers: &str) -> Feeder {
        Feeder::with_publisher(publisher(brokers))
    }

    fn with_publisher(publisher: FramePublisher) -> Feeder {
        let fleet = LiveFleet::new(Simulator::new(Fleet::generate(MACHINES, SEED), SEED));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (fleet, stop) = (fleet.clone(), stop.clone());
            let live = LiveConfig {
                rate_hz: 10.0,
                frame_interval: Duration::from_millis(200),
            };
            std::thread::spawn(move || fleet.run(&publisher, live, &stop).expect("publish"))
        };
        Feeder { fleet, stop, worker }
    }

    /// Stops, waits until every frame is acknowledged, returns what was produced.
    fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let frames = self.worker.join().unwrap();
        assert!(frames > 100, "only {frames} frames produced");
        self.fleet.tally.lock().unwrap().clone()
    }
}

fn sleep(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn archive_files_by(archive: &Path, writer: &str) -> usize {
    fn walk(p: &Path, prefix: &str, n: &mut usize) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, prefix, n);
            } else if e.file_name().to_string_lossy().starts_with(prefix) {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(archive, &format!("part-{writer}-"), &mut n);
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_leaves_an_exact_archive() {
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(dir.path());
    let registry = write_registry(dir.path());
    let cfg = write_config(dir.path(), "a", &tansu.brokers(), &registry, "w1", "");
    let log = dir.path().join("larmor.log");
    let feeder = Feeder::start(&tansu.brokers());
    // Kill points spread over start-up, steady consumption and checkpoints.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for k in 0..5u64 {
        let mut c = spawn_larmor(&cfg, &log, &[]);
        sleep(1200 + (seed.wrapping_mul(k + 7919) % 2300));
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        // Restart after the dead member's session (6 s) expired, as a supervisor with a
        // restart delay would: tansu 0.6 otherwise keeps assigning partitions to it.
        sleep(6500);
    }
    let produced = feeder.stop();
    let mut c = spawn_larmor(&cfg, &log, &[]);
    sleep(4000);
    interrupt(&mut c, &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("larmor: Kafka on").count(),
        6,
        "five killed runs and a final one"
    );
    assert_archive_equals(&dir.path().join("archive"), &produced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut tansu = Tansu::start(dir.path());
    let registry = write_registry(dir.path());
    let cfg = write_config(dir.path(), "a", &tansu.brokers(), &registry, "w1", "");
    let log = dir.path().join("larmor.log");
    let feeder = Feeder::start(&tansu.brokers());
    let mut c = spawn_larmor(&cfg, &log, &[]);
    sleep(3000);
    tansu.kill();
    sleep(2000);
    tansu.restart();
    sleep(4000);
    let produced = feeder.stop();
    sleep(1000);
    interrupt(&mut c, &log);
    assert_archive_equals(&dir.path().join("archive"), &produced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_partitions_and_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(dir.path());
    let registry = write_registry(dir.path());
    let cfg_a = write_config(dir.path(), "a", &tansu.brokers(), &registry, "w1", "");
    let cfg_b = write_config(dir.path(), "b", &tansu.brokers(), &registry, "w2", "");
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let archive = dir.path().join("archive");
    let feeder = Feeder::start(&tansu.brokers());
    let mut a = spawn_larmor(&cfg_a, &log_a, &[]);
    let mut b = spawn_larmor(&cfg_b, &log_b, &[]);
    sleep(8000);
    assert!(
        archive_files_by(&archive, "w1") > 0,
        "instance a archived nothing: the group did not share"
    );
    assert!(
        archive_files_by(&archive, "w2") > 0,
        "instance b archived nothing: the group did not share"
    );
    // SIGKILL a mid-stream; its supervisor restarts it. tansu 0.6 expires a dead member
    // when the group next rebalances (here: the restart joining), not on its own.
    a.kill().unwrap();
    a.wait().unwrap();
    sleep(2000);
    let mut a = spawn_larmor(&cfg_a, &log_a, &[]);
    sleep(9000);
    // A clean leave: b takes over every partition a held.
    interrupt(&mut a, &log_a);
    sleep(3000);
    let produced = feeder.stop();
    sleep(1000);
    interrupt(&mut b, &log_b);
    let b_log = std::fs::read_to_string(&log_b).unwrap();
    assert!(
        b_log
            .lines()
            .any(|l| l.contains("assigned") && l.matches("mri.telemetry.").count() == 9),
        "b took over every partition after a left: {b_log}"
    );
    assert_archive_equals(&archive, &produced).await;
}

/// Two `larmor run` instances, writers w1 (a) and w2 (b), on librdkafka's own
/// cluster, with the simulated fleet publishing. `a_buffer_age` replaces a's
/// archive `max_buffer_age`.
struct EmbeddedPair {
    _kafka: larmor_ingest::kafka::EmbeddedKafka,
    feeder: Feeder,
    a: Larmor,
    b: Larmor,
    log_a: PathBuf,
    log_b: PathBuf,
    archive: PathBuf,
}

fn embedded_pair(dir: &Path, a_buffer_age: Option<&str>) -> EmbeddedPair {
    let kafka = larmor_ingest::kafka::EmbeddedKafka::start(&TopicsConfig::default()).unwrap();
    let brokers = kafka.bootstrap_servers();
    let registry = write_registry(dir);
    let cfg_a = write_config(dir, "a", &brokers, &registry, "w1", "");
    if let Some(age) = a_buffer_age {
        let text = std::fs::read_to_string(&cfg_a)
            .unwrap()
            .replace("max_buffer_age = \"300ms\"", &format!("max_buffer_age = \"{age}\""));
        std::fs::write(&cfg_a, text).unwrap();
    }
    let cfg_b = write_config(dir, "b", &brokers, &registry, "w2", "");
    let (log_a, log_b) = (dir.join("a.log"), dir.join("b.log"));
    let feeder = Feeder::start(&brokers);
    EmbeddedPair {
        a: spawn_larmor(&cfg_a, &log_a, &[]),
        b: spawn_larmor(&cfg_b, &log_b, &[]),
        _kafka: kafka,
        feeder,
        log_a,
        log_b,
        archive: dir.join("archive"),
    }
}

fn log_len(log: &Path) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().len()
}

/// A log line saying this instance was given every partition of the three topics.
fn assigns_every_partition(line: &str) -> bool {
    let all = 3 * TopicsConfig::default().partitions as usize;
    line.contains("assigned") && line.matches("mri.telemetry.").count() == all
}

/// Waits (at most 45 s) until `log`, after its first `since` bytes, says every partition was assigned.
fn wait_for_every_partition(log: &Path, since: usize) {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text[since.min(text.len())..].lines().any(assigns_every_partition) {
            return;
        }
        assert!(Instant::now() < deadline, "never took over every partition:\n{text}");
        sleep(250);
    }
}

/// tansu 0.6 never expires a dead member's session, so the test above restarts the
/// killed instance. librdkafka's own cluster does expire sessions, as Kafka does: on
/// it, a SIGKILLed instance stays dead and the survivor must take over by itself
/// (after `session.timeout.ms`, 6 s here) and pick up exactly where the dead one's
/// last committed checkpoint ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_s_partitions_move_to_the_survivor_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let EmbeddedPair {
        _kafka,
        feeder,
        mut a,
        mut b,
        log_b,
        archive,
        ..
    } = embedded_pair(dir.path(), None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !archive.exists() || archive_files_by(&archive, "w1") == 0 || archive_files_by(&archive, "w2") == 0 {
        assert!(Instant::now() < deadline, "the group did not share the partitions");
        sleep(200);
    }
    sleep(1000);
    // b's log from the kill on: it may well have held every partition before a joined.
    let before_kill = log_len(&log_b);
    a.kill().unwrap();
    a.wait().unwrap();
    // No restart: the survivor must notice (session timeout) and take every partition.
    wait_for_every_partition(&log_b, before_kill);
    sleep(3000);
    let produced = feeder.stop();
    sleep(1000);
    interrupt(&mut b, &log_b);
    assert_archive_equals(&archive, &produced).await;
}

/// An instance that stalls past the session timeout (SIGSTOP, as a long VM pause
/// or a hung disk would) loses its partitions to the other; when it wakes up
/// (SIGCONT) it still holds readings it had read but not committed, which the
/// survivor has archived by then. The ledger's partition claims fence it off:
/// it refuses to commit them and stops, so nothing is archived twice. (Its dead
/// letters, flushed before the commit is refused, may repeat the survivor's: the
/// DLQ is at least once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_instance_that_wakes_up_is_fenced_off_its_old_partitions() {
    let dir = tempfile::tempdir().unwrap();
    // A long buffer age: when a stops it surely holds readings it has not committed.
    let EmbeddedPair {
        _kafka,
        feeder,
        mut a,
        mut b,
        log_a,
        log_b,
        archive,
    } = embedded_pair(dir.path(), Some("30s"));
    // Generous: on a loaded 2-core machine the rebalance alone took over 25 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    let read_by_a = || std::fs::read_to_string(&log_a).unwrap_or_default().contains("assigned");
    while !read_by_a() || !archive.exists() || archive_files_by(&archive, "w2") == 0 {
        assert!(Instant::now() < deadline, "the group did not share the partitions");
        sleep(200);
    }
    sleep(2000);
    let before_stop = log_len(&log_b);
    let signal = |sig: &str, pid: u32| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP", a.id());
    // b takes every partition once a's session expires (6 s).
    wait_for_every_partition(&log_b, before_stop);
    sleep(2000);
    signal("-CONT", a.id());
    // a wakes up holding readings it has not committed (its buffer age is 30 s): it
    // is fenced off, and stops.
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.try_wait().unwrap().is_none() && Instant::now() < deadline {
        sleep(250);
    }
    let a_log = std::fs::read_to_string(&log_a).unwrap_or_default();
    let status = a.try_wait().unwrap();
    assert!(
        status.is_some_and(|s| !s.success()) && a_log.contains("was fenced off"),
        "a should have been fenced and stopped: {status:?}\n{a_log}"
    );
    // a may have rejoined for a moment while failing (then b holds half until a's
    // session expires): wait until b's latest assignment is every partition again.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let log = std::fs::read_to_string(&log_b).unwrap_or_default();
        let last = log
            .lines()
            .rev()
            .find(|l| l.contains("larmor_ingest::source::rebalance: assigned") || l.contains("revoking"));
        if last.is_some_and(assigns_every_partition) {
            break;
        }
        assert!(Instant::now() < deadline, "b does not hold every partition:\n{log}");
        sleep(250);
    }
    sleep(2000);
    let produced = feeder.stop();
    sleep(1000);
    interrupt(&mut b, &log_b);
    assert_archive_equals(&archive, &produced).await;
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn temperature_frame(machine: &str, seq: u64, ts: i64, channel: &str, value: f64) -> Frame {
    Frame {
        machine_id: machine.into(),
        stream: Stream::Temperature,
        seq,
        ts_ms: ts,
        samples: vec![Sample {
            ts_ms: ts,
            values: vec![(ChannelId::from_name(channel).unwrap(), value)],
        }],
    }
}

/// tansu, the simulated fleet's registry, and one `larmor run` against them
/// (registry path, log path, process).
fn one_instance(dir: &Path) -> (Tansu, PathBuf, PathBuf, Larmor) {
    let tansu = Tansu::start(dir);
    let registry = write_registry(dir);
    let cfg = write_config(dir, "a", &tansu.brokers(), &registry, "w1", "");
    let log = dir.join("larmor.log");
    let c = spawn_larmor(&cfg, &log, &[]);
    (tansu, registry, log, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_corpus_lands_in_the_dlq_with_reasons_while_good_traffic_flows() {
    let dir = tempfile::tempdir().unwrap();
    let (tansu, _registry, log, mut c) = one_instance(dir.path());
    let publisher = publisher(&tansu.brokers());
    let topic = TopicsConfig::default().temperature;
    let key = DeviceKey::simulated(SEED, "MRI-0001");
    let stranger = DeviceKey::generate().unwrap();
    let mut sim = Simulator::new(Fleet::generate(MACHINES, SEED), SEED);
    let mut produced = Tally::default();
    let good = |sim: &mut Simulator, produced: &mut Tally| {
        for f in sim.frames(now_ms(), 5, 100) {
            publisher.send(&f).unwrap();
            produced.add(&f);
        }
    };
    good(&mut sim, &mut produced);

    let signed = |f: &Frame| {
        let p = f.encode();
        let s = key.sign(&p);
        (p, Some(s))
    };
    let resign = |p: Vec<u8>| {
        let s = key.sign(&p);
        (p, Some(s))
    };
    let base = String::from_utf8(temperature_frame("MRI-0001", 1 << 40, now_ms(), "helium_level_pct", 77.25).encode())
        .unwrap();
    let mut corpus: Vec<(&str, Vec<u8>, Option<String>, &str)> = vec![
        (
            "broken json",
            br#"{"version":"1.0","machine_id":"#.to_vec(),
            None,
            "malformed_json",
        ),
        ("empty", Vec::new(), None, "empty"),
        (
            "huge",
            format!(r#"{{"version":"1.0","pad":"{}"}}"#, "x".repeat(300 << 10)).into_bytes(),
            None,
            "too_large",
        ),
    ];
    let mut add = |name, (p, s): (Vec<u8>, Option<String>), reason| corpus.push((name, p, s, reason));
    add(
        "wrong type",
        resign(base.replace("77.25", "\"high\"").into_bytes()),
        "invalid_field",
    );
    add("NaN", resign(base.replace("77.25", "NaN").into_bytes()), "non_finite");
    add(
        "Infinity",
        resign(base.replace("77.25", "\"-Infinity\"").into_bytes()),
        "non_finite",
    );
    add(
        "impossible",
        signed(&temperature_frame(
            "MRI-0001",
            1 << 40,
            now_ms(),
            "helium_level_pct",
            -5.0,
        )),
        "impossible_value",
    );
    let unknown = temperature_frame("MRI-9999", 1, now_ms(), "helium_level_pct", 70.0);
    let p = unknown.encode();
    let s = stranger.sign(&p);
    add("unknown device", (p, Some(s)), "unknown_device");
    let forged = temperature_frame("MRI-0001", 1 << 40, now_ms(), "helium_level_pct", 12.0);
    let p = forged.encode();
    let s = stranger.sign(&p);
    add("bad signature", (p, Some(s)), "bad_signature");
    add(
        "clock skew",
        signed(&temperature_frame(
            "MRI-0001",
            1 << 40,
            now_ms() + 3_600_000,
            "helium_level_pct",
            70.0,
        )),
        "clock_skew",
    );
    // A replay: a frame already delivered (and archived) is sent again.
    let replayed = sim
        .frames(now_ms(), 5, 100)
        .into_iter()
        .find(|f| f.machine_id == "MRI-0001" && f.stream == Stream::Temperature)
        .unwrap();
    publisher.send(&replayed).unwrap();
    produced.add(&replayed);
    add("replay", signed(&replayed), "replay");

    for (_, payload, sig, _) in &corpus {
        publisher
            .send_with(&topic, b"MRI-0001", payload, sig.as_deref())
            .unwrap();
    }
    for _ in 0..5 {
        good(&mut sim, &mut produced);
        sleep(200);
    }
    publisher.flush(Duration::from_secs(30)).unwrap();
    sleep(1500);
    interrupt(&mut c, &log);

    // Every corpus item is in the DLQ with the right reason.
    let dead = read_dlq(&tansu.brokers(), corpus.len());
    let found: HashMap<&[u8], &str> = dead.iter().map(|(p, r)| (p.as_slice(), r.as_str())).collect();
    for (name, payload, _, reason) in &corpus {
        assert_eq!(
            found.get(payload.as_slice()).copied(),
            Some(*reason),
            "corpus item {name:?}"
        );
    }
    assert_eq!(dead.len(), corpus.len(), "nothing else was dead-lettered");
    // Good traffic, before and after the corpus, is archived exactly once.
    assert_archive_equals(&dir.path().join("archive"), &produced).await;
}

/// Up to `expected` dead letters (payload, reason), reading the DLQ for at most 20 s.
fn read_dlq(brokers: &str, expected: usize) -> Vec<(Vec<u8>, String)> {
    let consumer: BaseConsumer = client(brokers).set("group.id", "dlq-check").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("mri.telemetry.dlq", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut dead: Vec<(Vec<u8>, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dead.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let reason = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == HEADER_REASON))
                .and_then(|h| h.value)
                .unwrap();
            dead.push((
                m.payload().unwrap_or_default().to_vec(),
                String::from_utf8(reason.to_vec()).unwrap(),
            ));
        }
    }
    // Anything beyond what was expected shows up too, if it is there already.
    while let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
        dead.push((m.payload().unwrap_or_default().to_vec(), String::new()));
    }
    dead
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_takes_effect_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let (tansu, registry, log, mut c) = one_instance(dir.path());
    let publisher = publisher(&tansu.brokers());
    let mut sim = Simulator::new(Fleet::generate(MACHINES, SEED), SEED);
    let mut produced = Tally::default();
    for _ in 0..3 {
        for f in sim.frames(now_ms(), 5, 100) {
            publisher.send(&f).unwrap();
            produced.add(&f);
        }
        sleep(200);
    }
    publisher.flush(Duration::from_secs(30)).unwrap();

    // The hospital's IT revokes a machine while larmor runs.
    let revoke = std::process::Command::new(env!("CARGO_BIN_EXE_larmor"))
        .args(["device", "revoke", "--registry"])
        .arg(&registry)
        .arg("MRI-0002")
        .output()
        .unwrap();
    assert!(revoke.status.success(), "{}", String::from_utf8_lossy(&revoke.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("device registry reloaded")
    {
        assert!(
            Instant::now() < deadline,
            "no registry reload logged; see {}",
            log.display()
        );
        sleep(100);
    }

    // From now on MRI-0002's frames are refused as revoked; the others flow on.
    let mut refused: Vec<Vec<u8>> = Vec::new();
    for _ in 0..3 {
        for f in sim.frames(now_ms(), 5, 100) {
            publisher.send(&f).unwrap();
            if f.machine_id == "MRI-0002" {
                refused.push(f.encode());
            } else {
                produced.add(&f);
            }
        }
        sleep(200);
    }
    publisher.flush(Duration::from_secs(30)).unwrap();
    sleep(1500);
    interrupt(&mut c, &log);

    assert!(!refused.is_empty());
    let dead = read_dlq(&tansu.brokers(), refused.len());
    assert_eq!(
        dead.len(),
        refused.len(),
        "only the revoked machine's later frames are dead letters"
    );
    for payload in &refused {
        assert!(
            dead.iter().any(|(p, r)| p == payload && r == "revoked_device"),
            "a frame of the revoked machine is missing from the DLQ"
        );
    }
    assert_archive_equals(&dir.path().join("archive"), &produced).await;
}

#[test]
fn a_missing_topic_is_named_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(dir.path());
    let registry = write_registry(dir.path());
    let cfg = write_config(
        dir.path(),
        "a",
        &tansu.brokers(),
        &registry,
        "w1",
        "[topics]\nroom = \"mri.telemetry.nope\"\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_larmor"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("topic mri.telemetry.nope does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_against_a_broker_that_requires_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut tansu = Tansu::start(dir.path());
    tansu.create_user("larmor", "s3cret-pw");
    tansu.require_authentication();
    let registry = write_registry(dir.path());
    let sasl = "[kafka.security]\nprotocol = \"sasl_plaintext\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"larmor\"\n";

    // The devices' publisher logs in too; anonymous clients are turned away.
    let mut k = KafkaConfig::default();
    k.properties.insert("enable.idempotence".into(), "false".into());
    k.security.protocol = Some("sasl_plaintext".into());
    k.security.sasl_mechanism = Some("SCRAM-SHA-512".into());
    k.security.sasl_username = Some("larmor".into());
    k.security.sasl_password = Some("s3cret-pw".into());
    let publisher = FramePublisher::new(&k.client_config(&tansu.brokers()).unwrap(), &TopicsConfig::default())
        .unwrap()
        .with_keys(simulated_keys(&devices(), SEED));
    let feeder = Feeder::with_publisher(publisher);

    let cfg = write_config(
        dir.path(),
        "a",
        &tansu.brokers(),
        &registry,
        "w1",
        &format!("{sasl}sasl_password = \"s3cret-pw\"\n"),
    );
    let log = dir.path().join("larmor.log");
    let mut c = spawn_larmor(&cfg, &log, &[]);
    sleep(4000);
    let produced = feeder.stop();
    sleep(1000);
    interrupt(&mut c, &log);
    assert_archive_equals(&dir.path().join("archive"), &produced).await;

    // A wrong password (from the environment, as in production) is named as such at start-up.
    let bad = write_config(
        dir.path(),
        "bad",
        &tansu.brokers(),
        &registry,
        "w2",
        &format!("{sasl}sasl_password_env = \"LARMOR_TEST_KAFKA_PASSWORD\"\n"),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_larmor"))
        .env("LARMOR_TEST_KAFKA_PASSWORD", "not-the-password")
        .args(["run", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("refused our credentials") && err.contains("sasl_username"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_to_the_brokers() {
    let dir = tempfile::tempdir().unwrap();
    let tls_port = free_port();
    let tansu = Tansu::start_advertising(dir.path(), Some(tls_port));
    let pki = Pki::generate(dir.path());
    let _proxy = TlsProxy::start(tls_port, tansu.port, &pki, &dir.path().join("socat.log"));
    let brokers = format!("127.0.0.1:{tls_port}");
    let registry = write_registry(dir.path());
    let security = |ca: &Path, client: bool| {
        let mut s = format!("[kafka.security]\nprotocol = \"ssl\"\nca_file = \"{}\"\n", ca.display());
        if client {
            s += &format!(
                "cert_file = \"{}\"\nkey_file = \"{}\"\n",
                pki.client_cert.display(),
                pki.client_key.display()
            );
        }
        s
    };

    let mut k = KafkaConfig::default();
    k.properties.insert("enable.idempotence".into(), "false".into());
    k.security.protocol = Some("ssl".into());
    k.security.ca_file = Some(pki.ca.display().to_string());
    k.security.cert_file = Some(pki.client_cert.display().to_string());
    k.security.key_file = Some(pki.client_key.display().to_string());
    let publisher = FramePublisher::new(&k.client_config(&brokers).unwrap(), &TopicsConfig::default())
        .unwrap()
        .with_keys(simulated_keys(&devices(), SEED));
    let feeder = Feeder::with_publisher(publisher);
    let cfg = write_config(dir.path(), "a", &brokers, &registry, "w1", &security(&pki.ca, true));
    let log = dir.path().join("larmor.log");
    let mut c = spawn_larmor(&cfg, &log, &[]);
    sleep(4000);
    let produced = feeder.stop();
    sleep(1000);
    interrupt(&mut c, &log);
    assert_archive_equals(&dir.path().join("archive"), &produced).await;

    // A CA that did not sign the brokers' certificate, and a missing client
    // certificate, are each named at start-up.
    let start = |name: &str, extra: &str| {
        let cfg = write_config(dir.path(), name, &brokers, &registry, name, extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_larmor"))
            .args(["run", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = start("wrong-ca", &security(&pki.client_cert, true));
    assert!(err.contains("TLS handshake") && err.contains("ca_file"), "{err}");
    let err = start("no-client-cert", &security(&pki.ca, false));
    assert!(err.contains("TLS handshake") && err.contains("cert_file"), "{err}");
}
