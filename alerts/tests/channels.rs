//! Channels with real transports on loopback: an HTTPS receiver with mutual TLS
//! that refuses a client without the right certificate, a sender that refuses
//! a receiver whose certificate its CA did not sign; keys that open only their
//! own party's notices; tampering caught; and a property test of the data
//! policy over random fleets and alerts.

mod support;

use larmor_alerts::alert::{Alert, AlertClass, AlertState, Evidence, Severity};
use larmor_alerts::config::ChannelConfig;
use larmor_alerts::policy::{self, EventType, Party, Status};
use larmor_alerts::seal::{CloudEvent, NoticeSigner, RecipientSecret, SealError};
use larmor_alerts::tls::{self, Receiver};
use larmor_alerts::transport::{Transport, WebhookConfig, WebhookTransport};
use larmor_datadir::DataDir;
use larmor_ingest::{ChannelId, Stream};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use support::*;

fn receiver(pki: &Pki) -> Receiver {
    let cfg = tls::server_config(&pki.server_cert, &pki.server_key, &pki.ca).unwrap();
    Receiver::start("127.0.0.1:0", cfg, Arc::new(|_: &tls::Received| 200)).unwrap()
}

fn webhook(url: String, ca: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> WebhookConfig {
    WebhookConfig {
        url,
        ca_file: ca.into(),
        cert_file: cert.into(),
        key_file: key.into(),
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn mutual_tls_refuses_a_client_without_the_right_certificate_and_a_wrong_server() {
    let dir = tempfile::tempdir().unwrap();
    let good = Pki::generate(dir.path(), "good");
    let other = Pki::generate(dir.path(), "other");
    let rx = receiver(&good);
    let url = format!("https://127.0.0.1:{}/larmor", rx.addr.port());

    let mut ok = WebhookTransport::new(&webhook(url.clone(), &good.ca, &good.client_cert, &good.client_key)).unwrap();
    ok.deliver("key-1", "{\"n\":1}").unwrap();
    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].idem_key.as_str(), got[0].body.as_str()), ("key-1", "{\"n\":1}"));

    // A client certificate from another CA: the receiver refuses the handshake.
    let mut stranger =
        WebhookTransport::new(&webhook(url.clone(), &good.ca, &other.client_cert, &other.client_key)).unwrap();
    assert!(stranger.deliver("key-2", "{}").is_err());
    // A receiver whose certificate our CA did not sign: the sender refuses it.
    let impostor = receiver(&other);
    let mut fooled = WebhookTransport::new(&webhook(
        format!("https://127.0.0.1:{}/larmor", impostor.addr.port()),
        &good.ca,
        &good.client_cert,
        &good.client_key,
    ))
    .unwrap();
    let e = fooled.deliver("key-3", "{}").unwrap_err();
    assert!(e.to_lowercase().contains("certificate") || e.contains("TLS"), "{e}");
    assert!(impostor.received().is_empty());
    assert_eq!(rx.received().len(), 1, "nothing else got through");
    // Plain HTTP is not a webhook.
    assert!(
        WebhookTransport::new(&webhook(
            "http://127.0.0.1:1/".into(),
            &good.ca,
            &good.client_cert,
            &good.client_key
        ))
        .is_err()
    );
}

#[test]
fn the_pipeline_delivers_sealed_notices_over_mutual_tls_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "hook");
    let rx = receiver(&pki);
    let (aurora_key, aurora_pub) = RecipientSecret::generate();
    let pub_path = dir.path().join("aurora.pub");
    std::fs::write(&pub_path, aurora_pub.to_hex()).unwrap();
    let mut cfg = config(dir.path());
    cfg.channel.push(ChannelConfig {
        name: "manufacturer/aurora".into(),
        recipient_key: Some(pub_path),
        events: None,
        webhook: Some(webhook(
            format!("https://127.0.0.1:{}/larmor", rx.addr.port()),
            &pki.ca,
            &pki.client_cert,
            &pki.client_key,
        )),
        kafka: None,
    });
    let mut p = pipeline(dir.path(), cfg);
    let o = p.process(&anomaly("M1", "coldhead_stage2_k", now_ms(), 0.6));
    assert_eq!(o.sent_to, ["admin/st-anne", "manufacturer/aurora"]);
    drop(p); // drains
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let ev: CloudEvent = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(ev.id, got[0].idem_key, "the idempotency key is the event id");
    let vk =
        larmor_alerts::seal::load_verifying_key(&DataDir::new(dir.path()).signing_key().with_extension("pub")).unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&aurora_key.open(&ev, &vk).unwrap()).unwrap();
    assert_eq!(payload["machine_id"], "M1");
    assert_eq!(payload["suspected_failure_mode"], "cold_head_degradation");
}

#[test]
fn each_key_opens_only_its_own_partys_notices_and_tampering_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path(), config(dir.path()));
    let t = now_ms();
    p.process(&anomaly("M1", "helium_level_pct", t, 0.6)); // st-anne admin + aurora
    p.process(&anomaly("M2", "compressor_supply_mpa", t, 0.6)); // st-anne admin + boreal
    drop(p);
    let vk =
        larmor_alerts::seal::load_verifying_key(&DataDir::new(dir.path()).signing_key().with_extension("pub")).unwrap();
    let admin = envelopes(dir.path(), "admin/st-anne");
    let aurora = envelopes(dir.path(), "manufacturer/aurora");
    let boreal = envelopes(dir.path(), "manufacturer/boreal");
    assert_eq!((admin.len(), aurora.len(), boreal.len()), (2, 1, 1));
    let a_key = demo_key(dir.path(), "manufacturer/aurora");
    for ev in admin.iter().chain(&boreal) {
        assert!(
            matches!(a_key.open(ev, &vk), Err(SealError::Decrypt)),
            "aurora opened another party's notice"
        );
    }
    assert!(a_key.open(&aurora[0], &vk).is_ok());
    // Tampered: a byte of the ciphertext, the id, or a signature from someone else.
    let mut t1 = aurora[0].clone();
    t1.data_base64 = t1.data_base64.replacen('A', "B", 1).replacen('a', "b", 1);
    assert!(matches!(a_key.open(&t1, &vk), Err(SealError::BadSignature)));
    let mut t2 = aurora[0].clone();
    t2.time = "2020-01-01T00:00:00.000Z".into();
    assert!(matches!(a_key.open(&t2, &vk), Err(SealError::BadSignature)));
    let forger = NoticeSigner::from_secret([9; 32], "urn:larmor:forger");
    let forged = forger.seal(&aurora[0].id, t, b"{}", &a_key.public()).unwrap();
    assert!(matches!(a_key.open(&forged, &vk), Err(SealError::BadSignature)));
    // Nothing readable in transit. Base64 has no '_', '-' or '"', so these
    // cannot turn up by chance in the ciphertext.
    let raw = std::fs::read_to_string(dir.path().join("outbox/manufacturer/aurora/events.jsonl")).unwrap();
    assert!(!raw.contains("helium_level") && !raw.contains("\"M1\"") && !raw.contains("st-anne"));
}

// --- the data policy, over random fleets and alerts ----------------------------

const SITES: [&str; 3] = ["st-anne", "north", "riverside"];
const VENDORS: [&str; 3] = ["aurora", "boreal", "cygnus"];

fn arb_alert() -> impl Strategy<Value = Alert> {
    let channels: Vec<&'static str> = ChannelId::all().map(|c| c.name()).collect();
    (
        0usize..3,
        0usize..3,
        0u32..6,
        prop::sample::subsequence(channels, 1..6),
        0usize..4,
        any::<bool>(),
        prop::option::of(0usize..7),
    )
        .prop_map(|(site, vendor, m, chans, class, critical, mode)| {
            let class = [
                AlertClass::MachineHealth,
                AlertClass::Environment,
                AlertClass::SensorFault,
                AlertClass::Forecast,
            ][class];
            let mode = mode.map(|i| larmor_datasets::FailureMode::ALL[i]);
            Alert {
                id: format!("a{site}{vendor}{m}"),
                machine_id: format!("MRI-{}{}{m}", site, vendor),
                site: SITES[site].into(),
                vendor: VENDORS[vendor].into(),
                model: "Vega".into(),
                class,
                severity: if critical {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                mode,
                state: AlertState::Firing,
                starts_at_ms: 1_700_000_000_000,
                updated_at_ms: 1_700_000_000_000,
                ends_at_ms: None,
                anomalies: chans.len() as u32,
                evidence: chans
                    .iter()
                    .map(|c| Evidence {
                        channel: c.to_string(),
                        stream: ChannelId::from_name(c).unwrap().stream(),
                        detector: "threshold".into(),
                        ts_ms: 1_700_000_000_000,
                        value: 1.0,
                        score: 0.7,
                        explanation: format!("{c} out of range"),
                    })
                    .collect(),
                summary: format!("summary mentioning {}", SITES[site]),
                action: "do something".into(),
                forecast: (class == AlertClass::Forecast).then(|| larmor_alerts::Forecast {
                    machine_id: format!("MRI-{}{}{m}", site, vendor),
                    mode: mode.unwrap_or(larmor_datasets::FailureMode::HeliumLeak),
                    issued_at_ms: 1_700_000_000_000,
                    probabilities: vec![(24.0, 0.7)],
                    time_to_failure: None,
                    model: "m".into(),
                }),
            }
        })
}

fn room_channels() -> Vec<&'static str> {
    ChannelId::of_stream(Stream::Room).map(|c| c.name()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn no_forbidden_field_reaches_a_manufacturer_and_no_site_reaches_another(
        alerts in prop::collection::vec(arb_alert(), 1..12),
        with_proposal in any::<bool>(),
    ) {
        let proposal = with_proposal.then_some(larmor_alerts::schedule::Proposal {
            start_ms: 1_700_100_000_000, end_ms: 1_700_114_400_000, deadline_ms: 1_700_200_000_000, affected_exams: 7,
        });
        for a in &alerts {
            for ev in EventType::ALL {
                for status in [Status::Firing, Status::Resolved] {
                    for v in VENDORS {
                        let party = Party::Vendor(v.into());
                        let Some(p) = policy::alert_payload(&party, ev, a, status, proposal.as_ref()) else { continue };
                        prop_assert_eq!(&a.vendor, v, "another vendor's machine");
                        let text = serde_json::to_string(&p).unwrap();
                        for s in SITES {
                            prop_assert!(!text.contains(s), "site name in {}", text);
                        }
                        for c in room_channels() {
                            prop_assert!(!text.contains(c), "room channel {} in {}", c, text);
                        }
                        for banned in ["site", "summary", "maintenance_proposal", "booked", "VEVENT", "explanation_room"] {
                            prop_assert!(!p.contains_key(banned) && !text.contains(&format!("\"{banned}\"")), "{} in {}", banned, text);
                        }
                        if a.class == AlertClass::Environment {
                            let keys: Vec<&str> = p.keys().map(|k| k.as_str()).collect();
                            prop_assert!(keys.iter().all(|k| ["type", "status", "alert_id", "machine_id", "model", "starts_at", "ends_at", "environment_out_of_spec"].contains(k)), "{:?}", keys);
                        }
                    }
                    for s in SITES {
                        let party = Party::SiteAdmin(s.into());
                        if let Some(p) = policy::alert_payload(&party, ev, a, status, proposal.as_ref()) {
                            prop_assert_eq!(&a.site, s, "another site's alert reached {}", s);
                            prop_assert_eq!(p["site"].as_str(), Some(s));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_kafka_transport_keys_each_notice_by_its_idempotency_key() {
    use larmor_alerts::transport::{KafkaTopicConfig, KafkaTransport};
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("larmor.notices.aurora", 1, 1).unwrap();
    let kafka = larmor_ingest::kafka::KafkaConfig {
        brokers: cluster.bootstrap_servers(),
        ..Default::default()
    };
    let mut t = KafkaTransport::new(&KafkaTopicConfig {
        topic: "larmor.notices.aurora".into(),
        kafka: kafka.clone(),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    t.deliver("key-1", "{\"sealed\":1}").unwrap();
    t.deliver("key-2", "{\"sealed\":2}").unwrap();
    let consumer: BaseConsumer = kafka
        .client_config(&kafka.brokers)
        .unwrap()
        .set("group.id", "receiver")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["larmor.notices.aurora"]).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got.len() < 2 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            got.push((
                String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
            ));
        }
    }
    assert_eq!(
        got,
        [
            ("key-1".to_string(), "{\"sealed\":1}".to_string()),
            ("key-2".to_string(), "{\"sealed\":2}".to_string())
        ]
    );
}
