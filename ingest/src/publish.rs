//! Publishing frames to Kafka: keyed by machine id, so each machine's frames keep
//! their order within a partition. Used by the simulator and by tools.

use crate::kafka::TopicsConfig;
use crate::wire::Frame;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

pub struct FramePublisher {
    producer: ThreadedProducer<DefaultProducerContext>,
    topics: TopicsConfig,
}

impl FramePublisher {
    pub fn new(config: &ClientConfig, topics: &TopicsConfig) -> KafkaResult<Self> {
        let producer = config
            .clone()
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .set("compression.type", "lz4")
            .create()?;
        Ok(FramePublisher {
            producer,
            topics: topics.clone(),
        })
    }

    /// Sends one frame, waiting while the local queue is full (backpressure).
    pub fn send(&self, frame: &Frame) -> KafkaResult<()> {
        self.send_raw(
            self.topics.for_stream(frame.stream),
            frame.machine_id.as_bytes(),
            &frame.encode(),
        )
    }

    /// Sends arbitrary bytes to a topic (tests and tools that need malformed input).
    pub fn send_raw(&self, topic: &str, key: &[u8], payload: &[u8]) -> KafkaResult<()> {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
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
