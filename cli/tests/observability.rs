//! Observability against the real tools: `larmor run`'s topology on the embedded
//! default, a real Prometheus (Debian's package) scraping it on loopback with
//! Larmor's rules loaded, and headless Chromium (Debian's package) on the status
//! page. Every panel expression of every dashboard and every rule expression
//! must evaluate without error and return data; every dashboard variable must
//! resolve; the status page must list the machines and an alert, and load
//! nothing from outside.

mod support;

use larmor::config::LarmorConfig;
use larmor::topology::Topology;
use larmor_dashboards::fleet::forecast::ForecastRow;
use larmor_dashboards::fleet::forecast_table;
use larmor_dashboards::grafana;
use larmor_datadir::{DataDir, DatedWriter, Table};
use larmor_ingest::ChannelId;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A binary from PATH (or the env variable `var`), or a panic saying how to install it.
fn require(name: &str, var: &str, package: &str) -> PathBuf {
    let p = std::env::var_os(var).map_or_else(|| PathBuf::from(name), PathBuf::from);
    match Command::new(&p).arg("--version").output() {
        Ok(o) if o.status.success() => p,
        _ => panic!(
            "{name} is not installed; this test needs it: apt-get install {package} \
             (scripts/test installs it), or set {var} to the binary"
        ),
    }
}

/// `GET path` over HTTP/1.0 (no chunked bodies): (status, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server scraping one target every second, with Larmor's rules.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    fn start(bin: &Path, dir: &Path, target: SocketAddr) -> Prometheus {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(grafana::RULES_PATH);
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: larmor\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules.canonicalize().unwrap().display()
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", support::free_port()).parse().unwrap();
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(addr).is_err() || http_get(addr, "/-/ready").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "Prometheus did not get ready: {}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an API path; its `data`, or the error Prometheus gave.
    fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.addr, path);
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("HTTP {status}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"].clone())
    }

    /// An instant query's result (a vector's samples; a scalar as one).
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)))?;
        Ok(match data["resultType"].as_str() {
            Some("scalar") | Some("string") => vec![data["result"].clone()],
            _ => data["result"].as_array().cloned().unwrap_or_default(),
        })
    }

    /// `label_values(selector, label)` as Grafana resolves it.
    fn label_values(&self, selector: &str, label: &str) -> Result<Vec<String>, String> {
        let series = self.api(&format!("/api/v1/series?match[]={}", encode(selector)))?;
        let mut values: Vec<String> = series
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s[label].as_str().map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builtins as Grafana would set them for a short time range and 1 s scrapes.
fn builtins() -> BTreeMap<String, String> {
    [("__rate_interval", "10s"), ("__interval", "1s"), ("__range", "1m")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every (where, expression) to evaluate: each dashboard's panel queries with
/// its variables resolved through Prometheus (failing on one that resolves to
/// nothing), then every rule.
fn expressions(prom: &Prometheus, prefer_machine: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (file, json) in grafana::DASHBOARDS {
        let d: Value = serde_json::from_str(json).unwrap();
        let mut values = builtins();
        for v in grafana::variables(&d)? {
            let selector = grafana::substitute(&v.selector, &values);
            let found = prom.label_values(&selector, &v.label)?;
            if found.is_empty() {
                return Err(format!(
                    "{file}: variable {} resolves to nothing ({selector}, {})",
                    v.name, v.label
                ));
            }
            let value = match (&v.all_value, v.multi_or_all) {
                (Some(all), true) => all.clone(),
                _ if found.iter().any(|f| f == prefer_machine) => prefer_machine.to_string(),
                _ => found[0].clone(),
            };
            values.insert(v.name, value);
        }
        let queries = grafana::queries().unwrap();
        for q in queries.iter().filter(|q| q.dashboard == file) {
            out.push((
                format!("{file} panel {} {:?}", q.panel_id, q.title),
                grafana::substitute(&q.expr, &values),
            ));
        }
    }
    Ok(out)
}

/// (where, expression, why) of every expression that returns nothing; errors end the test at once.
fn without_data(prom: &Prometheus, exprs: &[(String, String)]) -> Vec<String> {
    let mut empty = Vec::new();
    for (at, expr) in exprs {
        match prom.query(expr) {
            Ok(r) if !r.is_empty() => {}
            Ok(_) => empty.push(format!("{at}: {expr}")),
            Err(e) => panic!("{at}: {expr} fails in Prometheus: {e}"),
        }
    }
    empty
}

fn forecasts(machines: &[String], now_ms: i64) -> Vec<ForecastRow> {
    let mut rows = Vec::new();
    for (i, m) in machines.iter().enumerate() {
        let risky = m == "MRI-0002";
        for (h, d) in larmor_metrics::FORECAST_HORIZONS {
            let p = if risky { 0.9 } else { 0.01 * (i % 7) as f64 };
            rows.push(ForecastRow {
                machine_id: m.clone(),
                mode: if risky { "coldhead_wear".into() } else { "none".into() },
                probability: if h == "24h" { p / 3.0 } else { p },
                horizon: d,
                predicted_failure_at_ms: Some(now_ms + if risky { 3 } else { 40 + i as i64 } * 86_400_000),
                model: "test-rows".into(),
                issued_at_ms: now_ms,
            });
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_rules_evaluate_with_data_in_real_prometheus_and_the_status_page_renders_in_chromium() {
    let prometheus_bin = require("prometheus", "PROMETHEUS", "prometheus");
    let chromium_bin = require("chromium", "CHROMIUM", "chromium");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LarmorConfig::default();
    cfg.archive.path = dir.path().join("archive");
    cfg.alerts.outbox = dir.path().join("outbox");
    cfg.metrics.listen = "127.0.0.1:0".parse().unwrap();
    // A minute of history (a point every 0.5 s), so the trends have points
    // however quickly the test gets to the page.
    cfg.status.trend_window = std::time::Duration::from_secs(60);
    let data = DataDir::around(&cfg.archive.path);
    let mut p = Topology::start(cfg).await.unwrap();
    let larmor = p.metrics_addr();
    let machines: Vec<String> = p.registry.devices().iter().map(|d| d.machine_id.clone()).collect();
    assert_eq!(machines.len(), 20, "the embedded default's fleet");

    // A helium fault on MRI-0002 and an oxygen fault in MRI-0003's room.
    {
        let fleet = p.fleet.clone().unwrap();
        let mut sim = fleet.simulator.lock().unwrap();
        assert!(sim.inject("MRI-0002", ChannelId::from_name("helium_level_pct").unwrap(), 12.0));
        assert!(sim.inject("MRI-0003", ChannelId::from_name("room_o2_pct").unwrap(), 18.0));
    }

    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let fleet_state = p.fleet_state.clone();
    tokio::task::block_in_place(|| {
        let prom = Prometheus::start(&prometheus_bin, &prom_dir, larmor);
        let deadline = Instant::now() + Duration::from_secs(60);
        while prom
            .query("up{job=\"larmor\"} == 1")
            .map(|r| r.is_empty())
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "Prometheus never scraped larmor: {}",
                prom.log_text()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        // A forecasting run, written to the forecasts table as the forecasting
        // refresh writes it: the fleet state picks it up at the next scrape.
        let now = chrono::Utc::now().timestamp_millis();
        let mut table = DatedWriter::new(&data, Table::Forecasts, forecast_table::to_batch);
        for row in forecasts(&machines, now) {
            table.push(row.issued_at_ms, row);
        }
        assert_eq!(table.flush().unwrap(), 20 * 3);
        let deadline = Instant::now() + Duration::from_secs(30);
        while fleet_state
            .snapshot()
            .machines
            .iter()
            .filter(|m| m.forecast.is_some())
            .count()
            < 20
        {
            assert!(Instant::now() < deadline, "the forecasts table was not picked up");
            std::thread::sleep(Duration::from_millis(250));
        }

        // Every panel and rule expression returns data, eventually (rates need two
        // scrapes, consumer lag librdkafka's statistics every 5 s).
        let rules: Vec<(String, String)> = grafana::rules()
            .unwrap()
            .into_iter()
            .filter(|r| r.recording)
            .map(|r| (format!("recording rule {}", r.name), r.expr))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(90);
        let checked = loop {
            let mut exprs = expressions(&prom, "MRI-0002").unwrap_or_else(|e| {
                if Instant::now() > deadline {
                    panic!("{e}")
                }
                Vec::new()
            });
            if exprs.is_empty() {
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
            exprs.extend(rules.iter().cloned());
            let empty = without_data(&prom, &exprs);
            if empty.is_empty() {
                break exprs.len();
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} expressions return no data:\n{}",
                empty.len(),
                exprs.len(),
                empty.join("\n")
            );
            std::thread::sleep(Duration::from_secs(2));
        };
        let panel_queries = grafana::queries().unwrap().len();
        assert!(checked >= panel_queries + 7, "{checked} expressions checked");

        // Every rule as Prometheus loaded it: evaluated without error; the
        // alerting rules' selectors all have data, and the faults fire theirs.
        let loaded = prom.api("/api/v1/rules").unwrap();
        let mut names = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        for g in loaded["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                let (name, query) = (r["name"].as_str().unwrap(), r["query"].as_str().unwrap());
                names.push(name.to_string());
                assert_ne!(
                    r["health"], "err",
                    "rule {name} fails in Prometheus: {}",
                    r["lastError"]
                );
                assert!(prom.query(query).is_ok(), "rule {name}: {query}");
                for metric in grafana::metric_names(query) {
                    while prom.query(&metric).unwrap().is_empty() {
                        assert!(Instant::now() < deadline, "rule {name}: {metric} has no data");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        }
        assert_eq!(
            names.len(),
            grafana::rules().unwrap().len(),
            "every rule loaded: {names:?}"
        );
        let fired = |alert: &str| -> Vec<String> {
            let rule = grafana::rules().unwrap().into_iter().find(|r| r.name == alert).unwrap();
            prom.query(&rule.expr)
                .unwrap()
                .iter()
                .filter_map(|s| s["metric"]["machine"].as_str().map(str::to_string))
                .collect()
        };
        assert_eq!(fired("LarmorFailureLikely"), ["MRI-0002"]);
        assert!(
            fired("LarmorMachineUnhealthy").contains(&"MRI-0002".to_string()),
            "helium anomaly and P(failure) 0.9: health below 50"
        );
        println!(
            "{checked} panel and recording-rule expressions returned data; {} rules loaded",
            names.len()
        );
    });

    // The status page, in a real browser.
    tokio::task::block_in_place(|| status_page_in_chromium(&chromium_bin, larmor, &machines, dir.path()));

    tokio::task::block_in_place(|| p.stop()).unwrap();
}

/// Runs headless Chromium with the flags known to work here, recording every
/// network request it makes in a NetLog; returns its stdout.
fn chromium(bin: &Path, work: &Path, args: &[String]) -> (String, String) {
    let profile = tempfile::tempdir_in(work).unwrap();
    let netlog = work.join(format!("netlog-{}.json", args.len()));
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = reader.join().unwrap();
    let log = std::fs::read_to_string(&netlog).unwrap_or_default();
    (out, log)
}

/// The URL of every request a NetLog shows the page at `origin` making: those
/// it initiated, and those in its network partition (the main frame's own).
/// The browser's own background requests (time sync, account checks) have
/// neither and are not the page's doing.
fn page_requests(netlog: &str, origin: &str) -> Vec<String> {
    let text = netlog.trim_end().trim_end_matches(',');
    // A NetLog cut short (the browser exited) lacks its closing brackets.
    let v: Value = serde_json::from_str(text)
        .or_else(|_| serde_json::from_str(&format!("{text}]}}")))
        .expect("chromium wrote a NetLog");
    let start_job = &v["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"];
    assert!(start_job.is_u64(), "the NetLog names its event types");
    let site = origin.rsplit_once(':').map_or(origin, |(s, _)| s);
    let mut urls = Vec::new();
    for e in v["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == *start_job)
    {
        let p = &e["params"];
        let mine = p["initiator"] == origin
            || p["network_isolation_key"]
                .as_str()
                .is_some_and(|k| k.split(' ').next() == Some(site));
        if let (true, Some(u)) = (mine, p["url"].as_str()) {
            urls.push(u.to_string());
        }
    }
    urls.sort();
    urls.dedup();
    urls
}

fn status_page_in_chromium(bin: &Path, larmor: SocketAddr, machines: &[String], work: &Path) {
    let url = format!("http://{larmor}/");
    // The page's text as the browser rendered it.
    let (dom, netlog) = chromium(bin, work, &["--dump-dom".to_string(), url.clone()]);
    for m in machines {
        assert!(dom.contains(&format!("<td>{m}</td>")), "{m} is not listed:\n{dom}");
    }
    let alerts = &dom[dom.find("id=\"alerts\"").expect("an alerts section")..];
    assert!(
        !alerts.starts_with("id=\"alerts\">Open alerts (0)"),
        "no alert shown:\n{alerts}"
    );
    assert!(
        alerts.contains("MRI-0002") && alerts.contains("helium_level_pct"),
        "the helium alert:\n{alerts}"
    );
    assert!(dom.contains("coldhead_wear"), "the forecasts table");
    assert!(dom.contains("<polyline"), "the trends");

    // Nothing loaded from anywhere but the page itself.
    let origin = format!("http://{larmor}");
    let urls = page_requests(&netlog, &origin);
    assert!(
        urls.contains(&url),
        "the NetLog records the page's own request: {urls:?}"
    );
    let outside: Vec<_> = urls.iter().filter(|u| !u.starts_with(&url)).collect();
    assert!(outside.is_empty(), "the status page loaded {outside:?}");

    // A screenshot, kept for people to look at.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let (_, netlog) = chromium(
        bin,
        work,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1600,1300".to_string(),
            url.clone(),
        ],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(png.len() > 20_000, "a page, not a blank: {} bytes", png.len());
    let outside: Vec<_> = page_requests(&netlog, &origin)
        .into_iter()
        .filter(|u| !u.starts_with(&url))
        .collect();
    assert!(outside.is_empty(), "rendering the page loaded {outside:?}");
    println!("status page screenshot: {}", shot.display());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("larmor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[archive]\npath = \"{}\"\n[alerts]\noutbox = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[simulator]\nmachines = 3\n",
            dir.path().join("archive").display(),
            dir.path().join("outbox").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_larmor"))
        .args([
            "--log",
            "info",
            "--log-format",
            "json",
            "run",
            "--for",
            "3s",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{stderr}");
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["target"].is_string(),
            "{l}"
        );
        assert!(l["fields"]["message"].is_string(), "{l}");
    }
    // Structured fields stay fields, not text.
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "simulator stopped" && l["fields"]["frames_sent"].is_u64()),
        "{stderr}"
    );
}

/// The NetLog filter above, on the events Chromium 148 logged for a page at
/// 127.0.0.1:18777 with two outside images, beside its own background requests.
#[test]
fn page_requests_catch_what_a_page_loads_from_outside() {
    let event = |initiator: &str, nik: &str, url: &str| serde_json::json!({"type": 7, "params": {"initiator": initiator, "network_isolation_key": nik, "url": url}});
    let log = serde_json::json!({
        "constants": {"logEventTypes": {"URL_REQUEST_START_JOB": 7, "REQUEST_ALIVE": 3}},
        "events": [
            event("not an origin", "null null", "http://clients2.google.com/time/1/current"),
            event("not an origin", "https://google.com https://google.com", "https://accounts.google.com/ListAccounts"),
            event("not an origin", "http://127.0.0.1 http://127.0.0.1", "http://127.0.0.1:18777/"),
            event("http://127.0.0.1:18777", "http://127.0.0.1 http://127.0.0.1", "http://example.invalid/x.png"),
            {"type": 3, "params": {"url": "http://127.0.0.3:9/ignored-event-type"}},
            event("http://127.0.0.1:18777", "http://127.0.0.1 http://127.0.0.1", "http://127.0.0.3:9/y.png"),
        ]
    });
    // Written cut short, as a browser that exits may leave it.
    let text = log.to_string();
    let cut = text.strip_suffix("]}").unwrap().to_string() + ",";
    assert_eq!(
        page_requests(&cut, "http://127.0.0.1:18777"),
        [
            "http://127.0.0.1:18777/",
            "http://127.0.0.3:9/y.png",
            "http://example.invalid/x.png"
        ]
    );
}
