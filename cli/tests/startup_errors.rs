//! Start-up failures end the process with an error that says what to do next.

use std::process::Command;

fn run_with(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("larmor.toml");
    std::fs::write(&cfg, config.replace("DIR", &dir.path().display().to_string())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_larmor"))
        .args(["run", "--for", "5s", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn unreachable_brokers_are_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ok, err) = run_with(&format!(
        "[kafka]\nbrokers = \"127.0.0.1:{port}\"\n[archive]\npath = \"DIR/a\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
    ));
    assert!(!ok);
    assert!(
        err.contains(&format!("cannot reach the Kafka brokers at 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("kafka.brokers"), "says which setting to check: {err}");
}

#[test]
fn a_bad_config_key_is_named() {
    let (ok, err) = run_with("[archive]\npathh = \"DIR/a\"\n");
    assert!(!ok);
    assert!(err.contains("pathh"), "{err}");
}

#[test]
fn a_missing_registry_is_named() {
    let (ok, err) = run_with("[registry]\npath = \"DIR/nope.toml\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    assert!(!ok);
    assert!(
        err.contains("cannot read the device registry") && err.contains("nope.toml"),
        "{err}"
    );
}
