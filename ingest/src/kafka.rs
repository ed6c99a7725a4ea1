//! Kafka connection settings and client construction: brokers, TLS/SASL (passed
//! through to librdkafka), topic names, and the embedded in-process cluster used
//! when no brokers are configured.

use crate::channels::Stream;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How to reach Kafka.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list. Empty: start the embedded in-process cluster.
    pub brokers: String,
    /// Consumer group shared by every `larmor` instance that ingests the same fleet.
    pub group_id: String,
    /// TLS and SASL settings, mapped onto librdkafka's properties.
    pub security: SecurityConfig,
    /// Any other librdkafka property, passed through as is (they win over the above).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            group_id: "larmor-ingest".into(),
            security: SecurityConfig::default(),
            properties: BTreeMap::new(),
        }
    }
}

/// TLS (including mutual TLS) and SASL. Paths are PEM files.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (librdkafka `security.protocol`).
    pub protocol: Option<String>,
    /// CA bundle that signed the brokers' certificates.
    pub ca_file: Option<String>,
    /// Client certificate and key, for mutual TLS.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub key_password: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    /// Prefer `sasl_password_env` so the secret stays out of the file.
    pub sasl_password: Option<String>,
    /// Name of an environment variable that holds the SASL password.
    pub sasl_password_env: Option<String>,
}

/// Topic names.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    pub temperature: String,
    pub vibration: String,
    pub room: String,
    /// Dead-letter topic: refused messages with their original bytes and a reason header.
    pub dlq: String,
    /// Partitions per topic when Larmor creates the topics (embedded cluster).
    pub partitions: i32,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            temperature: "mri.telemetry.temperature".into(),
            vibration: "mri.telemetry.vibration".into(),
            room: "mri.telemetry.room".into(),
            dlq: "mri.telemetry.dlq".into(),
            partitions: 6,
        }
    }
}

impl TopicsConfig {
    pub fn for_stream(&self, s: Stream) -> &str {
        match s {
            Stream::Temperature => &self.temperature,
            Stream::Vibration => &self.vibration,
            Stream::Room => &self.room,
        }
    }

    pub fn stream_of(&self, topic: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|&s| self.for_stream(s) == topic)
    }

    pub fn telemetry_topics(&self) -> Vec<&str> {
        Stream::ALL.iter().map(|&s| self.for_stream(s)).collect()
    }

    pub fn all_topics(&self) -> Vec<&str> {
        let mut t = self.telemetry_topics();
        t.push(&self.dlq);
        t
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("invalid Kafka client setting: {0}; check [kafka] in your larmor.toml")]
    Client(#[source] rdkafka::error::KafkaError),
    #[error(
        "cannot reach the Kafka brokers at {brokers}: {source}. Check `kafka.brokers`, the network, and the TLS/SASL settings in [kafka.security]"
    )]
    Unreachable {
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(
        "topic {0} does not exist on the brokers; create it (e.g. `kafka-topics --create --topic {0}`) or fix [topics]"
    )]
    MissingTopic(String),
    #[error("the SASL password variable {0} is not set")]
    MissingSecret(String),
    #[error(
        "the Kafka brokers at {brokers} refused our credentials: {reason}. Check `sasl_mechanism`, `sasl_username` and the password in [kafka.security] (and that the user exists on the cluster)"
    )]
    AuthenticationFailed { brokers: String, reason: String },
    #[error(
        "the TLS handshake with the Kafka brokers at {brokers} failed: {reason}. Check `ca_file` (the CA that signed the brokers' certificates), `cert_file` and `key_file` in [kafka.security]"
    )]
    TlsFailed { brokers: String, reason: String },
    #[error("cannot start the embedded Kafka cluster: {0}")]
    Embedded(#[source] rdkafka::error::KafkaError),
}

impl KafkaConfig {
    /// A librdkafka client configuration with brokers, security and pass-through properties.
    pub fn client_config(&self, brokers: &str) -> Result<ClientConfig, KafkaSetupError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers);
        let s = &self.security;
        let mut set = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                c.set(k, v);
            }
        };
        set("security.protocol", &s.protocol);
        set("ssl.ca.location", &s.ca_file);
        set("ssl.certificate.location", &s.cert_file);
        set("ssl.key.location", &s.key_file);
        set("ssl.key.password", &s.key_password);
        set("sasl.mechanism", &s.sasl_mechanism);
        set("sasl.username", &s.sasl_username);
        set("sasl.password", &s.sasl_password);
        if let Some(var) = &s.sasl_password_env {
            let pw = std::env::var(var).map_err(|_| KafkaSetupError::MissingSecret(var.clone()))?;
            c.set("sasl.password", pw);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        Ok(c)
    }
}

/// Remembers why librdkafka could not talk to the brokers: a refused login or a
/// failed TLS handshake deserve their own start-up error, not "unreachable".
#[derive(Default)]
struct ConnectionDiagnosis {
    auth: std::sync::Mutex<Option<String>>,
    tls: std::sync::Mutex<Option<String>>,
}

impl ConnectionDiagnosis {
    fn note(&self, message: &str, auth: bool, tls: bool) {
        let tls = tls
            || message.contains("SSL handshake")
            || message.contains("SSL routines")
            || message.contains("certificate verify");
        let auth = auth || message.contains("SASL authentication") || message.contains("Authentication failed");
        let slot = if auth {
            &self.auth
        } else if tls {
            &self.tls
        } else {
            return;
        };
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.to_string());
    }
}

impl rdkafka::ClientContext for ConnectionDiagnosis {
    // librdkafka logs from its own threads: the reason arrives even while fetch_metadata waits.
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.note(message, false, false);
        tracing::debug!(target: "librdkafka", fac, "{message}");
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode;
        let code = error.rdkafka_error_code();
        self.note(
            reason,
            code == Some(RDKafkaErrorCode::Authentication),
            code == Some(RDKafkaErrorCode::SSL),
        );
    }
}

impl rdkafka::consumer::ConsumerContext for ConnectionDiagnosis {}

/// Checks, before anything starts, that the brokers answer with these credentials
/// and that every topic exists; each failure gets an error that says what to fix.
pub fn preflight(
    config: &ClientConfig,
    brokers: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    let mut c = config.clone();
    c.set("group.id", "larmor-preflight");
    let consumer: BaseConsumer<ConnectionDiagnosis> = c
        .create_with_context(ConnectionDiagnosis::default())
        .map_err(KafkaSetupError::Client)?;
    match check_topics(&consumer, brokers, topics, timeout) {
        Err(KafkaSetupError::Unreachable { brokers, source }) => {
            let d = consumer.context();
            let take = |m: &std::sync::Mutex<Option<String>>| m.lock().unwrap_or_else(|p| p.into_inner()).take();
            // The broker thread may fail the request a moment before it logs why.
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            loop {
                let _ = consumer.poll(Duration::ZERO); // serves queued error events
                if let Some(reason) = take(&d.auth) {
                    return Err(KafkaSetupError::AuthenticationFailed { brokers, reason });
                }
                if let Some(reason) = take(&d.tls) {
                    return Err(KafkaSetupError::TlsFailed { brokers, reason });
                }
                if std::time::Instant::now() >= deadline {
                    return Err(KafkaSetupError::Unreachable { brokers, source });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        other => other,
    }
}

/// Fails with a clear message when the brokers cannot be reached or a topic is missing.
pub fn check_topics(
    consumer: &BaseConsumer<impl rdkafka::consumer::ConsumerContext>,
    brokers: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    let md = consumer
        .fetch_metadata(None, timeout)
        .map_err(|source| KafkaSetupError::Unreachable {
            brokers: brokers.to_string(),
            source,
        })?;
    for t in topics {
        let found = md
            .topics()
            .iter()
            .any(|mt| mt.name() == *t && mt.error().is_none() && !mt.partitions().is_empty());
        if !found {
            return Err(KafkaSetupError::MissingTopic(t.to_string()));
        }
    }
    Ok(())
}

/// librdkafka's in-process Kafka cluster: the real protocol, nothing to install.
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedKafka {
    /// Starts a cluster and creates every topic in `topics`.
    pub fn start(topics: &TopicsConfig) -> Result<Self, KafkaSetupError> {
        let cluster = MockCluster::new(1).map_err(KafkaSetupError::Embedded)?;
        for t in topics.all_topics() {
            cluster
                .create_topic(t, topics.partitions.max(1), 1)
                .map_err(KafkaSetupError::Embedded)?;
        }
        Ok(EmbeddedKafka { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}
