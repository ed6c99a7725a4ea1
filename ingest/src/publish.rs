//! Publishing frames to Kafka: keyed by machine id, so each machine's frames keep
//! their order within a partition. Used by the simulator and by tools.

use crate::kafka::TopicsConfig;
use crate::trust::{DeviceKey, HEADER_SIGNATURE};
use crate::wire::Frame;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashMap;
use std::time::Duration;

pub struct FramePublisher {
    producer: ThreadedProducer<DefaultProducerContext>,
    topics: TopicsConfig,
    /// Signing keys by machine id; frames of machines without a key go unsigned.
    keys: HashMap<String, DeviceKey>,
}

impl FramePublisher {
    pub fn new(config: &ClientConfig, topics: &TopicsConfig) -> KafkaResult<Self> {
        let mut c = config.clone();
        // Defaults that pass-through properties (already in `config`) may override.
        for (k, v) in [
            ("enable.idempotence", "true"),
            ("linger.ms", "20"),
            ("compression.type", "lz4"),
        ] {
            if c.get(k).is_none() {
                c.set(k, v);
            }
        }
        let producer = c.create()?;
        Ok(FramePublisher {
            producer,
            topics: topics.clone(),
            keys: HashMap::new(),
        })
    }

    /// Signs each machine's frames with its key, as the device itself would.
    pub fn with_keys(mut self, keys: HashMap<String, DeviceKey>) -> Self {
        self.keys = keys;
        self
    }

    /// Sends one frame (signed when its machine has a key), waiting while the local
    /// queue is full (backpressure).
    pub fn send(&self, frame: &Frame) -> KafkaResult<()> {
        let payload = frame.encode();
        let sig = self.keys.get(&frame.machine_id).map(|k| k.sign(&payload));
        self.send_with(
            self.topics.for_stream(frame.stream),
            frame.machine_id.as_bytes(),
            &payload,
            sig.as_deref(),
        )
    }

    /// Sends arbitrary bytes to a topic (tests and tools that need malformed input).
    pub fn send_raw(&self, topic: &str, key: &[u8], payload: &[u8]) -> KafkaResult<()> {
        self.send_with(topic, key, payload, None)
    }

    /// Sends bytes with an optional `larmor-sig` header (tools, forged-input tests).
    pub fn send_with(&self, topic: &str, key: &[u8], payload: &[u8], signature: Option<&str>) -> KafkaResult<()> {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        if let Some(sig) = signature {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: HEADER_SIGNATURE,
                value: Some(sig),
            }));
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Waits until every sent frame is acknowledged by the brokers.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.producer.flush(timeout)
    }
}
