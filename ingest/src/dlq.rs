//! The dead-letter queue: refused messages are re-published, bytes unchanged, to
//! the dead-letter topic with headers that say why and where they came from.

use crate::wire::Reject;
use rdkafka::ClientContext;
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Header names on dead-lettered messages.
pub const HEADER_REASON: &str = "larmor-dlq-reason";
pub const HEADER_DETAIL: &str = "larmor-dlq-detail";
pub const HEADER_SOURCE_TOPIC: &str = "larmor-source-topic";
pub const HEADER_SOURCE_PARTITION: &str = "larmor-source-partition";
pub const HEADER_SOURCE_OFFSET: &str = "larmor-source-offset";

/// Counts failed deliveries so a checkpoint never commits past a lost dead letter.
#[derive(Default, Clone)]
pub struct DeliveryWatch {
    failed: Arc<AtomicU64>,
}

impl ClientContext for DeliveryWatch {}

impl ProducerContext for DeliveryWatch {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            tracing::error!(error = %e, "dead letter not delivered");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct DeadLetterQueue {
    producer: ThreadedProducer<DeliveryWatch>,
    topic: String,
    watch: DeliveryWatch,
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("cannot publish to the dead-letter topic {topic}: {source}")]
    Kafka {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("{0} dead letters were not delivered to {1}; offsets stay uncommitted so they are retried")]
    Undelivered(u64, String),
}

impl DeadLetterQueue {
    pub fn new(config: &rdkafka::ClientConfig, topic: &str) -> KafkaResult<Self> {
        let watch = DeliveryWatch::default();
        let mut c = config.clone();
        if c.get("enable.idempotence").is_none() {
            c.set("enable.idempotence", "true");
        }
        let producer = c.create_with_context(watch.clone())?;
        Ok(DeadLetterQueue {
            producer,
            topic: topic.to_string(),
            watch,
        })
    }

    /// Publishes the original message with reason headers.
    pub fn send(&self, msg: &impl Message, reject: &Reject) -> Result<(), DlqError> {
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        // Header values must stay small: a huge malformed message must not produce a huge header.
        let detail: String = reject.detail.chars().take(512).collect();
        // Keep the original headers (the device's signature among them) for forensics.
        let mut headers = OwnedHeaders::new();
        if let Some(original) = msg.headers() {
            for h in original
                .iter()
                .filter(|h| !h.key.starts_with("larmor-dlq-") && !h.key.starts_with("larmor-source-"))
            {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let headers = headers
            .insert(Header {
                key: HEADER_REASON,
                value: Some(reject.reason.code()),
            })
            .insert(Header {
                key: HEADER_DETAIL,
                value: Some(&detail),
            })
            .insert(Header {
                key: HEADER_SOURCE_TOPIC,
                value: Some(msg.topic()),
            })
            .insert(Header {
                key: HEADER_SOURCE_PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: HEADER_SOURCE_OFFSET,
                value: Some(&offset),
            });
        let payload = msg.payload().unwrap_or_default();
        let key = msg.key().unwrap_or_default();
        let mut record = BaseRecord::to(&self.topic).payload(payload).key(key).headers(headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    // Backpressure: wait for the producer queue to drain.
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((source, _)) => {
                    return Err(DlqError::Kafka {
                        topic: self.topic.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Waits until every dead letter is acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<(), DlqError> {
        self.producer.flush(timeout).map_err(|source| DlqError::Kafka {
            topic: self.topic.clone(),
            source,
        })?;
        let failed = self.watch.failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            return Err(DlqError::Undelivered(failed, self.topic.clone()));
        }
        Ok(())
    }
}
