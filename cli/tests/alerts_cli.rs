//! `larmor channel` and `larmor alerts` as a receiver and an operator use them:
//! keygen, the sender's config naming the public key, open (verify + decrypt),
//! list, acknowledge, silence and resolve (the resolved notice arrives), and
//! a tampered notice refused.

use larmor_alerts::{AlertMetrics, AlertPipeline};
use larmor_analytics::{Anomaly, AnomalyKind};
use larmor_datadir::DataDir;
use larmor_ingest::{Device, DeviceRegistry, Stream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

fn larmor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_larmor")).args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_receiver_opens_its_notices_and_an_operator_handles_the_alert() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 1. The receiver makes its key pair.
    let out = ok(&larmor(&["channel", "keygen", "--out", p(&d.join("aurora"))]));
    assert!(out.contains("aurora.pub"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(d.join("aurora.key")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !larmor(&["channel", "keygen", "--out", p(&d.join("aurora"))])
            .status
            .success(),
        "never overwrites"
    );

    // 2. The hospital's larmor names the public key for aurora's channel.
    let config = d.join("larmor.toml");
    std::fs::write(
        &config,
        format!(
            "[archive]\npath = \"{}\"\n[alerts]\noutbox = \"{}\"\n[[alerts.channel]]\nname = \"manufacturer/aurora\"\nrecipient_key = \"{}\"\n",
            p(&d.join("archive")),
            p(&d.join("outbox")),
            p(&d.join("aurora.pub"))
        ),
    )
    .unwrap();
    let cfg = larmor::config::LarmorConfig::load(&config).unwrap();
    let data = DataDir::around(&cfg.archive.path);
    let registry = Arc::new(
        DeviceRegistry::new(vec![Device {
            machine_id: "MRI-0001".into(),
            site: "st-anne".into(),
            manufacturer: "aurora".into(),
            model: "Vega".into(),
            firmware: "1".into(),
            public_key: None,
            revoked: false,
        }])
        .unwrap(),
    );
    let id = {
        let mut pipeline =
            AlertPipeline::start(cfg.alerts.clone(), registry, &data, AlertMetrics::unregistered()).unwrap();
        let o = pipeline.process(&Anomaly {
            machine_id: "MRI-0001".into(),
            stream: Stream::Temperature,
            channels: vec!["helium_level_pct"],
            ts_ms: chrono::Utc::now().timestamp_millis(),
            value: 12.0,
            score: 0.9,
            detector: "threshold",
            kind: AnomalyKind::MachineHealth,
            explanation: "helium_level_pct 12 below 40".into(),
        });
        o.alert.unwrap().id
    };
    let notices = d.join("outbox/manufacturer/aurora/events.jsonl");
    let signer = data.signing_key().with_extension("pub");

    // 3. The receiver opens what it got.
    let out = ok(&larmor(&[
        "channel",
        "open",
        p(&notices),
        "--key",
        p(&d.join("aurora.key")),
        "--signer",
        p(&signer),
    ]));
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["machine_id"], "MRI-0001");
    assert_eq!(first["status"], "firing");
    assert_eq!(first["suspected_failure_mode"], "helium_leak");

    // Another key opens nothing; a tampered notice is refused.
    ok(&larmor(&["channel", "keygen", "--out", p(&d.join("boreal"))]));
    let o = larmor(&[
        "channel",
        "open",
        p(&notices),
        "--key",
        p(&d.join("boreal.key")),
        "--signer",
        p(&signer),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not sealed to this key"));
    let tampered = d.join("tampered.json");
    let text = std::fs::read_to_string(&notices).unwrap();
    let mut ev: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    ev["time"] = "2001-01-01T00:00:00.000Z".into();
    std::fs::write(&tampered, serde_json::to_string_pretty(&ev).unwrap()).unwrap();
    let o = larmor(&[
        "channel",
        "open",
        p(&tampered),
        "--key",
        p(&d.join("aurora.key")),
        "--signer",
        p(&signer),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("signature check failed"),
        "{o:?}"
    );

    // 4. The operator: list, acknowledge, silence, resolve.
    let cfg_arg = p(&config);
    let out = ok(&larmor(&["alerts", "list", "--config", cfg_arg]));
    assert!(
        out.contains(&id[..12]) && out.contains("firing") && out.contains("helium_leak"),
        "{out}"
    );
    ok(&larmor(&["alerts", "ack", &id[..10], "--config", cfg_arg]));
    let out = ok(&larmor(&[
        "alerts",
        "list",
        "--state",
        "acknowledged",
        "--json",
        "--config",
        cfg_arg,
    ]));
    assert_eq!(out.lines().count(), 1, "{out}");
    let out = ok(&larmor(&[
        "alerts",
        "silence",
        "--machine",
        "MRI-0001",
        "--for",
        "1h",
        "--comment",
        "swap",
        "--config",
        cfg_arg,
    ]));
    assert!(out.starts_with("silence "), "{out}");
    assert!(
        !larmor(&["alerts", "silence", "--machine", "MRI-0001", "--config", cfg_arg])
            .status
            .success(),
        "a silence needs an expiry"
    );
    let out = ok(&larmor(&["alerts", "list", "--config", cfg_arg]));
    assert!(out.contains("silences:") && out.contains("MRI-0001"), "{out}");
    ok(&larmor(&["alerts", "resolve", &id, "--by", "ops", "--config", cfg_arg]));
    assert!(
        !larmor(&["alerts", "resolve", &id, "--config", cfg_arg])
            .status
            .success(),
        "already resolved"
    );
    let out = ok(&larmor(&[
        "channel",
        "open",
        p(&notices),
        "--key",
        p(&d.join("aurora.key")),
        "--signer",
        p(&signer),
    ]));
    let status: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(status, ["firing", "resolved"]);
    let o = larmor(&["alerts", "list", "--data", p(&d.join("nowhere"))]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no alert store"));
}
