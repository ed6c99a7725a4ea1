//! Shared test fixtures: a small fleet, anomalies, a pipeline in a temporary
//! data directory, opening what a channel received, and a test PKI (rcgen).

#![allow(dead_code)]

use larmor_alerts::config::AlertsConfig;
use larmor_alerts::seal::{CloudEvent, RecipientSecret, load_verifying_key};
use larmor_alerts::{AlertMetrics, AlertPipeline};
use larmor_analytics::{Anomaly, AnomalyKind};
use larmor_datadir::DataDir;
use larmor_ingest::{Device, DeviceRegistry, Stream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub fn device(id: &str, site: &str, vendor: &str) -> Device {
    Device {
        machine_id: id.into(),
        site: site.into(),
        manufacturer: vendor.into(),
        model: "X".into(),
        firmware: "1".into(),
        public_key: None,
        revoked: false,
    }
}

/// M1 (st-anne, aurora), M2 (st-anne, boreal), M3 (north, aurora).
pub fn registry() -> Arc<DeviceRegistry> {
    Arc::new(
        DeviceRegistry::new(vec![
            device("M1", "st-anne", "aurora"),
            device("M2", "st-anne", "boreal"),
            device("M3", "north", "aurora"),
        ])
        .unwrap(),
    )
}

pub fn anomaly(machine: &str, channel: &'static str, ts_ms: i64, score: f64) -> Anomaly {
    let id = larmor_ingest::ChannelId::from_name(channel).expect("a catalogue channel");
    let stream = id.stream();
    Anomaly {
        machine_id: machine.into(),
        stream,
        channels: vec![channel],
        ts_ms,
        value: 1.0,
        score,
        detector: "threshold",
        kind: if stream == Stream::Room {
            AnomalyKind::Environment
        } else {
            AnomalyKind::MachineHealth
        },
        explanation: format!("{channel} out of range"),
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn config(dir: &Path) -> AlertsConfig {
    AlertsConfig {
        outbox: dir.join("outbox"),
        group_interval: Duration::from_millis(0),
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        max_attempts: 3,
        ..Default::default()
    }
}

pub fn pipeline(dir: &Path, cfg: AlertsConfig) -> AlertPipeline {
    AlertPipeline::start(cfg, registry(), &DataDir::new(dir), AlertMetrics::unregistered()).unwrap()
}

/// The demo private key of a channel (made by the pipeline in keys/recipients/).
pub fn demo_key(dir: &Path, channel: &str) -> RecipientSecret {
    RecipientSecret::load(
        &DataDir::new(dir)
            .demo_recipient_keys()
            .join(larmor_datadir::naming::with_suffix(
                &larmor_datadir::naming::channel_path(channel),
                "key",
            )),
    )
    .unwrap()
}

/// The envelopes a file channel received.
pub fn envelopes(dir: &Path, channel: &str) -> Vec<CloudEvent> {
    std::fs::read_to_string(dir.join("outbox").join(channel).join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The payloads a file channel received, opened with its own key.
pub fn opened(dir: &Path, channel: &str) -> Vec<serde_json::Value> {
    let vk = load_verifying_key(&DataDir::new(dir).signing_key().with_extension("pub")).unwrap();
    let key = demo_key(dir, channel);
    envelopes(dir, channel)
        .iter()
        .map(|e| serde_json::from_slice(&key.open(e, &vk).unwrap()).unwrap())
        .collect()
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn generate(dir: &Path, name: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let write = |file: &str, text: String| {
            let p = dir.join(format!("{name}-{file}"));
            std::fs::write(&p, text).unwrap();
            p
        };
        let leaf = |sans: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans).unwrap().signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
        let (client_cert, client_key) = leaf(vec!["larmor".into()]);
        Pki {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server_cert),
            server_key: write("server.key", server_key),
            client_cert: write("client.pem", client_cert),
            client_key: write("client.key", client_key),
        }
    }
}
