//! Test support: a real Kafka-compatible broker (tansu, sqlite storage) on a free
//! loopback port, `larmor` subprocesses, and archive read-back.

#![allow(dead_code)]

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use larmor_datasets::Tally;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOPICS: [&str; 4] = [
    "mri.telemetry.temperature",
    "mri.telemetry.vibration",
    "mri.telemetry.room",
    "mri.telemetry.dlq",
];

fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU") {
        return PathBuf::from(p);
    }
    let cargo_bin = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"))
        .join("bin/tansu");
    if cargo_bin.exists() {
        return cargo_bin;
    }
    panic!(
        "tansu is not installed; these tests need a real Kafka-compatible broker: \
         `cargo install tansu --locked --features dynostore,libsql` (scripts/test does it)"
    )
}

/// A tansu broker with sqlite storage in `dir`, on a fixed loopback port across restarts.
pub struct Tansu {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Clients must authenticate (SASL); set by [`Tansu::require_authentication`].
    authentication: bool,
    /// The port clients are told to connect to (a TLS proxy's), when not `port`.
    advertised: Option<u16>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Tansu {
    pub fn start(dir: &Path) -> Tansu {
        Tansu::start_advertising(dir, None)
    }

    /// A broker that tells clients to connect to `advertised` (e.g. a TLS-terminating proxy in front of it).
    pub fn start_advertising(dir: &Path, advertised: Option<u16>) -> Tansu {
        let mut t = Tansu {
            port: free_port(),
            dir: dir.to_path_buf(),
            child: None,
            authentication: false,
            advertised,
        };
        t.restart();
        for topic in TOPICS {
            let out = Command::new(tansu_bin())
                .args(["topic", "create", topic, "--partitions", "3", "--broker", &t.url()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "tansu topic create {topic}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        t
    }

    /// Creates a SCRAM-SHA-512 user (while the broker still accepts anonymous clients).
    pub fn create_user(&self, name: &str, password: &str) {
        let out = Command::new(tansu_bin())
            .args([
                "user",
                "create",
                name,
                password,
                "--mechanism",
                "scram512",
                "--broker",
                &self.url(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu user create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Restarts the broker so that every client must log in with SASL.
    pub fn require_authentication(&mut self) {
        self.kill();
        self.authentication = true;
        self.restart();
    }

    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the broker on the same port and storage; waits until it accepts connections.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .unwrap();
        let child = Command::new(tansu_bin())
            .arg("broker")
            // tansu resolves the sqlite path against its working directory
            .current_dir(&self.dir)
            .arg("--storage-engine")
            .arg("sqlite://tansu.db")
            .arg("--listener-url")
            .arg(self.url())
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{}", self.advertised.unwrap_or(self.port)))
            .args(self.authentication.then_some("--authentication"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start; see {}/tansu.log",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: the broker dies without any shutdown.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A test PKI made with the `openssl` command: a CA, a server certificate for
/// 127.0.0.1 and a client certificate, all signed by the CA.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("the mutual-TLS test needs the `openssl` command (apt-get install openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let rsa = ["-newkey", "rsa:2048", "-nodes"];
        run(&[
            &["req", "-x509"],
            &rsa[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=larmor-test-ca",
            ],
        ]
        .concat());
        std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        for (name, cn, ext) in [
            ("server", "/CN=127.0.0.1", true),
            ("client", "/CN=larmor-ingest", false),
        ] {
            let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
            run(&[&["req"], &rsa[..], &["-keyout", &key, "-out", &csr, "-subj", cn]].concat());
            let mut sign = vec![
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
            ];
            if ext {
                sign.extend(["-extfile", "san.cnf"]);
            }
            run(&sign);
        }
        Pki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

/// socat terminating TLS on `port` (client certificates required, signed by the
/// PKI's CA) and forwarding plaintext to `upstream`: a TLS listener in front of
/// tansu, whose own TLS cannot be enabled from its 0.6 command line.
pub struct TlsProxy {
    child: Child,
}

impl TlsProxy {
    pub fn start(port: u16, upstream: u16, pki: &Pki, log: &Path) -> TlsProxy {
        let log = std::fs::File::create(log).unwrap();
        let listen = format!(
            "openssl-listen:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify=1",
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca.display()
        );
        let child = Command::new("socat")
            .args([listen, format!("tcp:127.0.0.1:{upstream}")])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the mutual-TLS test needs socat (apt-get install socat; scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "socat did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsProxy { child }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a larmor.toml for `brokers` with the simulator off and the registry at `registry`.
pub fn write_config(dir: &Path, name: &str, brokers: &str, registry: &Path, writer: &str, extra: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "larmor-test"
[kafka.properties]
"enable.idempotence" = "false"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
[registry]
path = "{registry}"
[archive]
path = "{archive}"
max_buffer_age = "300ms"
writer_id = "{writer}"
[simulator]
enabled = false
[alerts]
outbox = "{outbox}"
[metrics]
listen = "127.0.0.1:0"
[run]
summary_interval = "1s"
drain_timeout = "60s"
{extra}
"#,
            registry = registry.display(),
            archive = dir.join("archive").display(),
            outbox = dir.join("outbox").display(),
        ),
    )
    .unwrap();
    p
}

/// A `larmor run` subprocess, killed when dropped: a failing test must not leave
/// it running against a broker that is gone.
pub struct Larmor(Child);

impl std::ops::Deref for Larmor {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Larmor {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Larmor {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `larmor run --config CFG` as a subprocess, its output appended to `log`.
pub fn spawn_larmor(cfg: &Path, log: &Path, extra_args: &[&str]) -> Larmor {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_larmor"))
        .args(["--log", "info", "run", "--config"])
        .arg(cfg)
        .args(extra_args)
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .map(Larmor)
        .expect("start larmor")
}

/// Ctrl-C: a clean stop (drain, flush, commit); waits for the exit.
pub fn interrupt(child: &mut Child, log: &Path) {
    unsafe_sigint(child.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "larmor exited with {status}; see {}", log.display());
            return;
        }
        assert!(Instant::now() < deadline, "larmor did not stop; see {}", log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn unsafe_sigint(pid: u32) {
    let ok = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Count and sum per (machine, channel) in the archive.
pub async fn archive_cells(archive: &Path) -> BTreeMap<(String, String), (u64, f64)> {
    let ctx = larmor_analytics::sql::open_archive(archive).await.unwrap();
    let batches = larmor_analytics::sql::run(
        &ctx,
        "SELECT machine_id, channel, count(*) AS n, sum(value) AS s FROM readings GROUP BY machine_id, channel",
    )
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for b in &batches {
        let (m, c) = (b.column(0).as_string_view(), b.column(1).as_string_view());
        let (n, s) = (
            b.column(2).as_primitive::<Int64Type>(),
            b.column(3).as_primitive::<Float64Type>(),
        );
        for i in 0..b.num_rows() {
            out.insert(
                (m.value(i).to_string(), c.value(i).to_string()),
                (n.value(i) as u64, s.value(i)),
            );
        }
    }
    out
}

/// Asserts the archive holds exactly what was produced: no loss, no duplicate.
pub async fn assert_archive_equals(archive: &Path, produced: &Tally) {
    let archived = archive_cells(archive).await;
    let total: u64 = archived.values().map(|v| v.0).sum();
    assert_eq!(total, produced.readings(), "archived vs produced readings");
    assert_eq!(archived.len(), produced.cells.len());
    for (cell, (n, s)) in &produced.cells {
        let (an, asum) = archived
            .get(cell)
            .unwrap_or_else(|| panic!("{cell:?} missing from the archive"));
        assert_eq!(an, n, "count of {cell:?}");
        assert!(
            (asum - s).abs() <= 1e-9 * s.abs().max(1.0),
            "sum of {cell:?}: {asum} vs {s}"
        );
    }
}
