//! A receiver that is down slows nothing upstream. Two runs of `larmor run`
//! (embedded cluster, simulator at a heavy load, a helium fault injected every
//! 100 ms so alerts keep coming), each starting with an hour's backlog of
//! notices in the outbox (one a second per channel): every channel a mutual-TLS
//! webhook, (1) to a healthy receiver, (2) to a receiver that is down (it
//! accepts connections and never answers, so every attempt waits out its
//! 10 s timeout). Prints the readings produced, ingested and archived per
//! second, the time the detection queue blocked ingest, alerts dropped, the
//! stop's drain time and the CPU time, for both.
//!
//! Run: `cargo bench -p larmor-benches --bench alert_outage`
//! Settings: `LARMOR_BENCH_SECONDS` (default 30), `LARMOR_BENCH_MACHINES` (50),
//! `LARMOR_BENCH_RATE_HZ` (50).

use larmor::config::LarmorConfig;
use larmor::metrics_http::counter_total;
use larmor::topology::Topology;
use larmor_alerts::seal::RecipientSecret;
use larmor_alerts::store::{OutboxRow, Store};
use larmor_alerts::tls::{self, Receiver};
use larmor_benches::{Pki, cpu_seconds, env};
use larmor_datadir::DataDir;
use larmor_ingest::ChannelId;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Figures {
    produced: u64,
    archived: u64,
    seconds: f64,
    blocked_s: f64,
    dropped: f64,
    delivered: f64,
    failed: f64,
    stop_s: f64,
    cpu_s: f64,
}

fn run(down: bool, seconds: u64, machines: usize, rate_hz: f64) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::generate(dir.path());
    let mut cfg = LarmorConfig::default();
    cfg.archive.path = dir.path().join("archive");
    cfg.metrics.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.alerts.outbox = dir.path().join("outbox");
    cfg.alerts.group_gap = Duration::from_secs(1);
    cfg.alerts.group_interval = Duration::from_millis(500);
    cfg.simulator.machines = machines;
    cfg.simulator.rate_hz = rate_hz;
    let devices = larmor_datasets::Fleet::generate(machines, cfg.simulator.seed).devices();
    let mut parties: Vec<String> = devices
        .iter()
        .flat_map(|d| [format!("admin/{}", d.site), format!("manufacturer/{}", d.manufacturer)])
        .collect();
    parties.sort();
    parties.dedup();

    // A healthy receiver, or one that takes connections and never answers.
    let healthy = Receiver::start(
        "127.0.0.1:0",
        tls::server_config(&pki.server_cert, &pki.server_key, &pki.ca).expect("server TLS"),
        Arc::new(|_: &tls::Received| 200),
    )
    .expect("receiver");
    let blackhole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (l, held) = (blackhole.try_clone().expect("listener"), held.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                held.lock().unwrap().push(s);
            }
        });
    }
    let port = if down {
        blackhole.local_addr().expect("addr").port()
    } else {
        healthy.addr.port()
    };
    let url = format!("https://127.0.0.1:{port}/larmor");
    for name in &parties {
        let (sk, _) = RecipientSecret::generate();
        let key = dir.path().join(format!("{}.key", name.replace('/', "-")));
        let pub_path = sk.save(&key).expect("key");
        cfg.alerts.channel.push(pki.channel(name, &url, &pub_path));
    }
    // An hour of notices already waiting, one a second per channel.
    {
        let data = DataDir::around(&cfg.archive.path);
        let mut store = Store::open(&data.alert_store()).expect("store");
        let now = chrono::Utc::now().timestamp_millis();
        for name in &parties {
            let rows: Vec<_> = (0..3600)
                .map(|i| {
                    (
                        OutboxRow {
                            channel: name.clone(),
                            idem_key: format!("backlog-{i}"),
                            event_type: "anomaly".into(),
                            site: String::new(),
                            envelope: format!("{{\"backlog\":{i}}}"),
                        },
                        None,
                    )
                })
                .collect();
            store.commit_notices(None, &rows, now - 3_600_000).expect("backlog");
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cpu0 = cpu_seconds();
    let mut p = rt.block_on(Topology::start(cfg)).expect("larmor starts");
    let helium = ChannelId::from_name("helium_level_pct").expect("channel");
    let sim = p.fleet.clone().expect("simulator").simulator;
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        sim.lock()
            .unwrap()
            .inject(&devices[i % devices.len()].machine_id, helium, 12.0);
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop = Instant::now();
    let report = p.stop().expect("stop");
    let stop_s = stop.elapsed().as_secs_f64();
    let m = &p.metrics;
    Figures {
        produced: report.produced.map(|t| t.readings()).unwrap_or(0),
        archived: report.source.archived_rows,
        seconds: report.elapsed.as_secs_f64(),
        blocked_s: counter_total(m, larmor_metrics::QUEUE_BLOCKED_SECONDS.name),
        dropped: counter_total(m, larmor_metrics::QUEUE_DROPPED.name),
        delivered: counter_total(m, larmor_metrics::ALERTS.name),
        failed: counter_total(m, larmor_metrics::ALERTS_FAILED.name),
        stop_s,
        cpu_s: cpu_seconds() - cpu0,
    }
}

fn main() {
    let seconds: u64 = env("LARMOR_BENCH_SECONDS", 30);
    let machines: usize = env("LARMOR_BENCH_MACHINES", 50);
    let rate: f64 = env("LARMOR_BENCH_RATE_HZ", 50.0);
    println!(
        "{machines} machines at {rate} Hz for {seconds} s, a helium fault every 100 ms, an hour of notices queued"
    );
    println!(
        "{:<14} {:>12} {:>14} {:>14} {:>10} {:>8} {:>10} {:>8} {:>7} {:>7}",
        "receivers",
        "produced/s",
        "archived/s",
        "archived",
        "blocked s",
        "dropped",
        "delivered",
        "failed",
        "stop s",
        "CPU s"
    );
    for down in [false, true] {
        let f = run(down, seconds, machines, rate);
        println!(
            "{:<14} {:>12.0} {:>14.0} {:>14} {:>10.2} {:>8} {:>10} {:>8} {:>7.1} {:>7.1}",
            if down { "down" } else { "healthy" },
            f.produced as f64 / f.seconds,
            f.archived as f64 / f.seconds,
            format!("{}/{}", f.archived, f.produced),
            f.blocked_s,
            f.dropped,
            f.delivered,
            f.failed,
            f.stop_s,
            f.cpu_s
        );
    }
}
