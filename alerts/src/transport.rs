//! How sealed notices leave: an encrypted file outbox (the embedded default),
//! an HTTPS webhook with mutual TLS, or a Kafka topic of the party's own with
//! its own credentials. A transport delivers one envelope or says why not; the
//! outbox worker retries. Each carries the idempotency key (file: the event
//! id; webhook: `Idempotency-Key` header; Kafka: the message key).

use crate::tls;
use larmor_ingest::kafka::KafkaConfig;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Delivers one sealed notice.
pub trait Transport: Send {
    fn deliver(&mut self, idem_key: &str, envelope: &str) -> Result<(), String>;
}

/// Appends each envelope as one JSON line to `<dir>/events.jsonl`, fsynced.
pub struct FileTransport {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl FileTransport {
    pub fn new(dir: &Path) -> FileTransport {
        FileTransport {
            path: dir.join("events.jsonl"),
            file: None,
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Transport for FileTransport {
    fn deliver(&mut self, _idem_key: &str, envelope: &str) -> Result<(), String> {
        let io = |e: std::io::Error| format!("{}: {e}", self.path.display());
        if self.file.is_none() {
            if let Some(d) = self.path.parent() {
                std::fs::create_dir_all(d).map_err(io)?;
            }
            self.file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(io)?,
            );
        }
        let f = self.file.as_mut().expect("opened above");
        let mut line = String::with_capacity(envelope.len() + 1);
        line.push_str(envelope);
        line.push('\n');
        let r = f.write_all(line.as_bytes()).and_then(|_| f.sync_data());
        if r.is_err() {
            self.file = None; // reopen next time (a rotated or deleted file)
        }
        r.map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// An HTTPS webhook with mutual TLS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://host:port/path`.
    pub url: String,
    /// CA that signed the receiver's certificate (PEM).
    pub ca_file: PathBuf,
    /// Larmor's client certificate and key for this receiver (PEM).
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

pub struct WebhookTransport {
    host: String,
    port: u16,
    path: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl WebhookTransport {
    pub fn new(c: &WebhookConfig) -> Result<WebhookTransport, String> {
        let rest = c
            .url
            .strip_prefix("https://")
            .ok_or_else(|| format!("webhook url {:?}: only https:// is allowed", c.url))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
                h.trim_matches(['[', ']']).to_string(),
                p.parse().map_err(|_| format!("webhook url {:?}: bad port", c.url))?,
            ),
            _ => (authority.trim_matches(['[', ']']).to_string(), 443),
        };
        let server_name =
            ServerName::try_from(host.clone()).map_err(|e| format!("webhook url {:?}: host: {e}", c.url))?;
        Ok(WebhookTransport {
            tls: Arc::new(tls::client_config(&c.ca_file, &c.cert_file, &c.key_file)?),
            host,
            port,
            path: path.to_string(),
            server_name,
            timeout: c.timeout,
        })
    }

    fn post(&self, idem_key: &str, body: &str) -> Result<u16, String> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{}: no address", self.host))?;
        let sock = TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| format!("connect {addr}: {e}"))?;
        sock.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        sock.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(self.tls.clone(), self.server_name.clone())
            .map_err(|e| format!("TLS: {e}"))?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/cloudevents+json\r\nIdempotency-Key: {idem_key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.host,
            body.len()
        );
        tls.write_all(head.as_bytes())
            .and_then(|_| tls.write_all(body.as_bytes()))
            .and_then(|_| tls.flush())
            .map_err(|e| format!("TLS to {addr}: {e}"))?;
        // The status line is all we need.
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.windows(2).any(|w| w == b"\r\n") {
            let n = tls.read(&mut chunk).map_err(|e| format!("TLS from {addr}: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 8192 {
                break;
            }
        }
        let line = String::from_utf8_lossy(&buf);
        line.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{addr}: not an HTTP response: {:?}", line.lines().next().unwrap_or("")))
    }
}

impl Transport for WebhookTransport {
    fn deliver(&mut self, idem_key: &str, envelope: &str) -> Result<(), String> {
        match self.post(idem_key, envelope)? {
            s if (200..300).contains(&s) => Ok(()),
            s => Err(format!("the receiver answered HTTP {s}")),
        }
    }
}

/// A Kafka topic of the party's own, with its own credentials.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTopicConfig {
    pub topic: String,
    /// Brokers, TLS and SASL for this party (not the ingest cluster's).
    pub kafka: KafkaConfig,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

pub struct KafkaTransport {
    producer: rdkafka::producer::FutureProducer,
    topic: String,
    timeout: Duration,
}

impl KafkaTransport {
    pub fn new(c: &KafkaTopicConfig) -> Result<KafkaTransport, String> {
        let mut cfg = c.kafka.client_config(&c.kafka.brokers).map_err(|e| e.to_string())?;
        cfg.set("message.timeout.ms", c.timeout.as_millis().max(1000).to_string());
        Ok(KafkaTransport {
            producer: cfg.create().map_err(|e| format!("kafka producer: {e}"))?,
            topic: c.topic.clone(),
            timeout: c.timeout,
        })
    }
}

impl Transport for KafkaTransport {
    fn deliver(&mut self, idem_key: &str, envelope: &str) -> Result<(), String> {
        let record = rdkafka::producer::FutureRecord::to(&self.topic)
            .key(idem_key)
            .payload(envelope);
        futures::executor::block_on(self.producer.send(record, self.timeout))
            .map(drop)
            .map_err(|(e, _)| format!("kafka topic {}: {e}", self.topic))
    }
}
