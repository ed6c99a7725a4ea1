//! The rules and the example scrape config through Prometheus' own checker:
//! `promtool check rules`, `promtool test rules` (the alerting rules' unit tests
//! in `prometheus/tests/`) and `promtool check config`. CI installs Debian's
//! `prometheus` package, which brings promtool.

use std::path::{Path, PathBuf};
use std::process::Command;

fn promtool() -> PathBuf {
    let p = std::env::var_os("PROMTOOL").map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    match Command::new(&p).arg("--version").output() {
        Ok(o) if o.status.success() => p,
        _ => panic!(
            "promtool is not installed: these tests check the rules with Prometheus' own tool; \
             install Debian's prometheus package (apt-get install prometheus; scripts/test does it) \
             or point PROMTOOL at the binary"
        ),
    }
}

fn dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs promtool; returns its output, failing the test with it when promtool fails.
fn run(args: &[&str]) -> String {
    let o = Command::new(promtool()).args(args).current_dir(dir()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn rules_pass_promtool_check_with_the_count_the_parser_sees() {
    let out = run(&["check", "rules", "prometheus/larmor-rules.yml"]);
    let parsed = larmor_dashboards::grafana::rules().unwrap();
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", parsed.len())),
        "promtool and grafana::rules() disagree on the rules: {out}"
    );
}

#[test]
fn alerting_rules_pass_their_unit_tests() {
    let out = run(&["test", "rules", "prometheus/tests/larmor-rules.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alerting rule has a unit test.
    let tests = std::fs::read_to_string(dir().join("prometheus/tests/larmor-rules.test.yml")).unwrap();
    for r in larmor_dashboards::grafana::rules()
        .unwrap()
        .iter()
        .filter(|r| !r.recording)
    {
        assert!(
            tests.contains(&format!("alertname: {}\n", r.name)),
            "no unit test for alert {}",
            r.name
        );
    }
}

#[test]
fn a_broken_unit_test_fails() {
    // The unit tests can fail: the same file with one expected value changed.
    let tests = std::fs::read_to_string(dir().join("prometheus/tests/larmor-rules.test.yml")).unwrap();
    let broken = tests.replace("helium at 35%", "helium at 36%");
    assert_ne!(broken, tests);
    let tmp = std::env::temp_dir().join(format!("larmor-rules-broken-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("tests")).unwrap();
    std::fs::copy(dir().join("prometheus/larmor-rules.yml"), tmp.join("larmor-rules.yml")).unwrap();
    std::fs::write(tmp.join("tests/broken.test.yml"), broken).unwrap();
    let o = Command::new(promtool())
        .args(["test", "rules", "tests/broken.test.yml"])
        .current_dir(&tmp)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&tmp);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("helium at 35%"), "promtool names the mismatch: {out}");
}

#[test]
fn the_example_scrape_config_is_valid() {
    let out = run(&["check", "config", "prometheus/prometheus.example.yml"]);
    assert!(
        out.contains("SUCCESS: prometheus/prometheus.example.yml is valid"),
        "{out}"
    );
}
