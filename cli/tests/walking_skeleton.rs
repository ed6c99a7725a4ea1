//! The whole slice on the embedded Kafka cluster: simulator → Kafka → ingest →
//! archive + detectors → alerts → outboxes, with `/metrics` checked against the archive.

mod support;

use larmor::config::LarmorConfig;
use larmor::topology::Topology;
use larmor_ingest::dlq::HEADER_REASON;
use larmor_ingest::publish::FramePublisher;
use larmor_ingest::{ChannelId, Stream};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// Sum of every sample of a metric family in Prometheus text format.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_slice_on_the_embedded_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LarmorConfig::default();
    cfg.archive.path = dir.path().join("archive");
    cfg.archive.max_buffer_age = Duration::from_secs(1);
    cfg.alerts.outbox = dir.path().join("outbox");
    cfg.metrics.listen = "127.0.0.1:0".parse().unwrap();
    cfg.simulator.machines = 20;
    cfg.simulator.rate_hz = 20.0;
    cfg.simulator.frame_interval = Duration::from_millis(200);
    let mut p = Topology::start(cfg).await.unwrap();

    // Faults injected through the simulator, so they are ordinary signed-and-sequenced frames.
    let helium = ChannelId::from_name("helium_level_pct").unwrap();
    let oxygen = ChannelId::from_name("room_o2_pct").unwrap();
    let (helium_machine, oxygen_machine) = ("MRI-0002", "MRI-0003");
    let maker = p.registry.get(helium_machine).unwrap().manufacturer.clone();
    {
        let fleet = p.fleet.clone().unwrap();
        let mut sim = fleet.simulator.lock().unwrap();
        assert!(sim.inject(helium_machine, helium, 12.0));
        assert!(sim.inject(oxygen_machine, oxygen, 18.0));
    }
    // A malformed message straight onto the temperature topic.
    let malformed = br#"{"version":"1.0","machine_id":"MRI-0001","stream":"#.to_vec();
    let publisher = FramePublisher::new(&p.config.kafka.client_config(&p.brokers).unwrap(), &p.config.topics).unwrap();
    publisher
        .send_raw(&p.config.topics.temperature, b"MRI-0001", &malformed)
        .unwrap();
    publisher.flush(Duration::from_secs(10)).unwrap();

    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = tokio::task::block_in_place(|| p.stop()).unwrap();
    assert!(report.source.drained, "every produced message was consumed before stop");
    let produced = report.produced.clone().unwrap();
    assert!(
        produced.readings() > 10_000,
        "the simulator produced {}",
        produced.readings()
    );

    // 1. The archive holds every produced reading exactly once.
    support::assert_archive_equals(&p.config.archive.path, &produced).await;
    let total = produced.readings();
    assert_eq!(report.source.archived_rows, total);

    // 2. The out-of-range readings alerted the admin of each machine's site, and the
    // machine fault only its maker. Every channel gets sealed CloudEvents: opened here
    // as its receiver would, with the channel's (demo) key and larmor's signing key.
    let data = larmor_datadir::DataDir::around(&p.config.archive.path);
    let outbox = &p.config.alerts.outbox;
    let signer = larmor_alerts::seal::load_verifying_key(&data.signing_key().with_extension("pub")).unwrap();
    let open = |channel: &str| -> Vec<serde_json::Value> {
        let key = larmor_alerts::seal::RecipientSecret::load(&data.demo_recipient_keys().join(
            larmor_datadir::naming::with_suffix(&larmor_datadir::naming::channel_path(channel), "key"),
        ))
        .unwrap();
        read_jsonl(&outbox.join(channel).join("events.jsonl"))
            .into_iter()
            .map(|v| {
                let ev: larmor_alerts::seal::CloudEvent = serde_json::from_value(v).unwrap();
                serde_json::from_slice(&key.open(&ev, &signer).unwrap()).unwrap()
            })
            .collect()
    };
    let hit = |v: &serde_json::Value, m: &str, c: &str| {
        v["machine_id"] == m
            && v["evidence"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["channel"] == c))
    };
    let site_of = |m: &str| p.registry.get(m).unwrap().site.clone();
    let sites: std::collections::BTreeSet<String> = p.registry.devices().iter().map(|d| d.site.clone()).collect();
    let admin: Vec<serde_json::Value> = sites.iter().flat_map(|s| open(&format!("admin/{s}"))).collect();
    let helium_admin = open(&format!("admin/{}", site_of(helium_machine)));
    assert!(
        helium_admin.iter().any(|a| hit(a, helium_machine, "helium_level_pct")),
        "{helium_admin:?}"
    );
    let oxygen_admin = open(&format!("admin/{}", site_of(oxygen_machine)));
    assert!(
        oxygen_admin.iter().any(|a| hit(a, oxygen_machine, "room_o2_pct")),
        "{oxygen_admin:?}"
    );
    for s in &sites {
        for a in open(&format!("admin/{s}")) {
            assert_eq!(
                site_of(a["machine_id"].as_str().unwrap()),
                *s,
                "another site's alert reached {s}"
            );
        }
    }
    let makers = p.registry.manufacturers();
    assert_eq!(makers.len(), 3);
    let mut maker_notices = 0;
    for m in &makers {
        let notices = open(&format!("manufacturer/{m}"));
        maker_notices += notices.len();
        let has_helium = notices.iter().any(|a| hit(a, helium_machine, "helium_level_pct"));
        assert_eq!(
            has_helium,
            *m == maker,
            "helium alert reaches {maker} only (checked {m})"
        );
        // 3. No room-sensor value reaches any manufacturer, and only its own machines do;
        // a room problem only as the environment flag.
        for n in &notices {
            let text = n.to_string();
            for room in ChannelId::of_stream(Stream::Room) {
                assert!(!text.contains(room.name()), "room data leaked to {m}: {n}");
            }
            let machine = n["machine_id"].as_str().unwrap();
            assert_eq!(p.registry.get(machine).unwrap().manufacturer, *m);
            assert!(n.get("site").is_none() && !text.contains(&site_of(machine)));
            if machine == oxygen_machine && n.get("environment_out_of_spec").is_some() {
                assert!(n.get("evidence").is_none(), "{n}");
            }
        }
    }

    // 3b. The same alerts, with the channels they went to, are in the `alerts` table, and
    // every anomaly episode is in the `anomalies` table (both beside the archive).
    let ctx = larmor_analytics::sql::open_archive(&p.config.archive.path)
        .await
        .unwrap();
    let q = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let b = larmor_analytics::sql::run(&ctx, sql).await.unwrap();
            larmor_analytics::sql::render(&b, larmor_analytics::sql::OutputFormat::Csv).unwrap()
        }
    };
    assert_eq!(
        q("SELECT count(*) AS n FROM alerts").await,
        format!("n\n{}\n", admin.len()),
        "one row per notice, and each went to the site's admin"
    );
    let routed =
        q("SELECT machine_id, channel, delivered_to FROM alerts WHERE delivered_to LIKE '%manufacturer/%'").await;
    assert!(
        routed.contains(&format!(
            "{helium_machine},helium_level_pct,\"admin/{},manufacturer/{maker}\"",
            site_of(helium_machine)
        )),
        "{routed}"
    );
    let anomalies: usize = q("SELECT count(*) AS n FROM anomalies")
        .await
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        anomalies >= admin.len(),
        "{anomalies} anomalies, {} alerts",
        admin.len()
    );

    // 4. The malformed message is in the dead-letter topic with its reason.
    let consumer: BaseConsumer = p
        .config
        .kafka
        .client_config(&p.brokers)
        .unwrap()
        .set("group.id", "test-dlq-reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for part in 0..p.config.topics.partitions {
        tpl.add_partition_offset(&p.config.topics.dlq, part, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut found = None;
    while found.is_none() && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200))
            && m.payload() == Some(&malformed[..])
        {
            let reason = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == HEADER_REASON)
                    .and_then(|h| h.value.map(|v| v.to_vec()))
            });
            found = Some(String::from_utf8(reason.unwrap()).unwrap());
        }
    }
    assert_eq!(found.as_deref(), Some("malformed_json"));

    // 5. /metrics agrees with the archive.
    let text = scrape(p.metrics_addr()).await;
    assert_eq!(metric_sum(&text, "larmor_archive_readings_total"), total as f64);
    assert_eq!(metric_sum(&text, "larmor_ingest_readings_total"), total as f64);
    assert_eq!(metric_sum(&text, "larmor_dlq_messages_total"), 1.0);
    assert!(text.contains("larmor_dlq_messages_total{reason=\"malformed_json\"} 1"));
    assert_eq!(
        metric_sum(&text, "larmor_alerts_total"),
        (admin.len() + maker_notices) as f64,
        "every notice the channels received, delivered once"
    );

    // 6. The exported metric families are the ones `larmor-metrics` lists (those
    // present from the start, and those populated in this run): renaming a metric
    // in one place only breaks this.
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let listed: std::collections::BTreeSet<&str> = larmor_metrics::ALL.iter().map(|m| m.name).collect();
    let from_start: std::collections::BTreeSet<&str> = larmor_metrics::ALL
        .iter()
        .filter(|m| m.presence == larmor_metrics::Presence::FromStart)
        .map(|m| m.name)
        .collect();
    assert!(
        exported.is_subset(&listed),
        "exported but not listed in larmor-metrics: {:?}",
        exported.difference(&listed).collect::<Vec<_>>()
    );
    assert!(
        from_start.is_subset(&exported),
        "listed as present from the start but not exported: {:?}",
        from_start.difference(&exported).collect::<Vec<_>>()
    );
    for m in larmor_metrics::ALL.iter().filter(|m| exported.contains(m.name)) {
        assert!(
            text.contains(&format!(
                "# TYPE {} {}",
                m.name,
                match m.kind {
                    larmor_metrics::Kind::Counter => "counter",
                    larmor_metrics::Kind::Gauge => "gauge",
                    larmor_metrics::Kind::Histogram => "histogram",
                }
            )),
            "{} is exported with another type",
            m.name
        );
    }
}
