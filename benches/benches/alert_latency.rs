//! Threshold-crossing reading → encrypted, delivered alert, under the
//! simulator's default load (20 machines, 10 Hz, a frame every 500 ms) on the
//! embedded cluster. Every 300 ms one machine's helium level is pushed below
//! its alarm limit for one reading; each manufacturer's channel is an HTTPS
//! webhook with mutual TLS on loopback, whose receiver verifies and decrypts
//! each notice and takes the time from the reading's own timestamp (in the
//! notice's evidence) to its arrival. The figure includes the gateway's
//! batching: a reading waits for its frame (up to `frame_interval`) before
//! Larmor can see it; the bench also prints the time from the frame's publication.
//!
//! Run: `cargo bench -p larmor-benches --bench alert_latency`
//! Settings: `LARMOR_BENCH_SECONDS` (default 60), `LARMOR_BENCH_FRAME_MS` (default 500).

use larmor::config::LarmorConfig;
use larmor::topology::Topology;
use larmor_alerts::seal::{CloudEvent, RecipientSecret, load_verifying_key};
use larmor_alerts::tls::{self, Receiver};
use larmor_benches::{Pki, env, quantile};
use larmor_datadir::DataDir;
use larmor_ingest::ChannelId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

fn main() {
    let seconds: u64 = env("LARMOR_BENCH_SECONDS", 60);
    let frame_ms: u64 = env("LARMOR_BENCH_FRAME_MS", 500);
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::generate(dir.path());

    let mut cfg = LarmorConfig::default();
    cfg.archive.path = dir.path().join("archive");
    cfg.metrics.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.alerts.outbox = dir.path().join("outbox");
    cfg.simulator.frame_interval = Duration::from_millis(frame_ms);
    // Each injection is its own episode: a machine is hit again only every 6 s.
    cfg.alerts.group_gap = Duration::from_secs(2);
    cfg.alerts.group_interval = Duration::from_millis(200);
    let fleet = larmor_datasets::Fleet::generate(cfg.simulator.machines, cfg.simulator.seed);
    let devices = fleet.devices();
    let mut vendors: Vec<String> = devices.iter().map(|d| d.manufacturer.clone()).collect();
    vendors.sort();
    vendors.dedup();

    // The receiver: one mutual-TLS server for every vendor's channel, a key per vendor.
    let mut keys = BTreeMap::new();
    for v in &vendors {
        let (sk, pk) = RecipientSecret::generate();
        let path = dir.path().join(format!("{v}.key"));
        sk.save(&path).expect("key");
        keys.insert(pk.id(), sk);
    }
    let latencies: Arc<Mutex<Vec<(f64, i64)>>> = Arc::default();
    let signer: Arc<OnceLock<ed25519_dalek::VerifyingKey>> = Arc::default();
    let rx = {
        let (latencies, signer) = (latencies.clone(), signer.clone());
        let data = DataDir::around(&cfg.archive.path);
        Receiver::start(
            "127.0.0.1:0",
            tls::server_config(&pki.server_cert, &pki.server_key, &pki.ca).expect("server TLS"),
            Arc::new(move |r: &tls::Received| {
                let now = chrono::Utc::now().timestamp_millis();
                let vk = signer.get_or_init(|| {
                    load_verifying_key(&data.signing_key().with_extension("pub")).expect("signing key")
                });
                let Ok(ev) = serde_json::from_str::<CloudEvent>(&r.body) else {
                    return 400;
                };
                let Some(key) = keys.get(&ev.larmorrecipient) else {
                    return 400;
                };
                let Ok(plain) = key.open(&ev, vk) else { return 400 };
                let p: serde_json::Value = serde_json::from_slice(&plain).unwrap_or_default();
                if p["type"] == "anomaly"
                    && p["status"] == "firing"
                    && let Some(e) = p["evidence"]
                        .as_array()
                        .and_then(|e| e.iter().find(|e| e["channel"] == "helium_level_pct"))
                    && let Some(ts) = e["ts_ms"].as_i64()
                {
                    latencies.lock().unwrap().push(((now - ts) as f64, ts));
                }
                200
            }),
        )
        .expect("receiver")
    };
    let url = format!("https://127.0.0.1:{}/larmor", rx.addr.port());
    for v in &vendors {
        let pub_path = dir.path().join(format!("{v}.pub"));
        cfg.alerts
            .channel
            .push(pki.channel(&format!("manufacturer/{v}"), &url, &pub_path));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut p = rt.block_on(Topology::start(cfg)).expect("larmor starts");
    std::thread::sleep(Duration::from_secs(3));
    let helium = ChannelId::from_name("helium_level_pct").expect("channel");
    let sim = p.fleet.clone().expect("simulator").simulator;
    let started = Instant::now();
    let mut injected = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let m = &devices[injected % devices.len()].machine_id;
        sim.lock().unwrap().inject(m, helium, 12.0);
        injected += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(3));
    let report = p.stop().expect("stop");

    let mut l: Vec<f64> = latencies.lock().unwrap().iter().map(|x| x.0).collect();
    // An injection that never arrived counts as over any budget, not as absent.
    let missing = injected.saturating_sub(l.len());
    let delivered = l.len();
    l.extend(std::iter::repeat_n(f64::INFINITY, missing));
    l.sort_by(f64::total_cmp);
    // The injected reading is the first sample of the next frame: it was published
    // about (samples per frame - 1) sample intervals after its timestamp.
    let samples = (frame_ms as f64 / 1000.0 * 10.0).round().max(1.0);
    let batching_ms = (samples - 1.0) * 100.0;
    println!(
        "alert latency, reading → verified and decrypted at a manufacturer's mTLS webhook \
         ({} machines, 10 Hz, {frame_ms} ms frames, {} readings archived in {:.0} s)",
        devices.len(),
        report.source.archived_rows,
        report.elapsed.as_secs_f64()
    );
    println!("  injected {injected}, delivered {delivered} alerts; {missing} missing (counted as infinitely late)");
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        let v = quantile(&l, q);
        println!(
            "  {name}: {v:.0} ms from the reading's timestamp; {:.0} ms from its frame's publication",
            v - batching_ms
        );
    }
}
