//! Kafka connection settings and client construction: brokers, TLS/SASL (passed
//! through to librdkafka), topic names, and the embedded in-process cluster used
//! when no brokers are configured.

use crate::channels::Stream;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How to reach Kafka.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
