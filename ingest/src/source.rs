//! The Kafka source: consumes the telemetry topics in a consumer group, decodes
//! and verifies each frame, archives it, hands it to downstream observers, and
//! dead-letters what it refuses.
//!
//! Offsets are committed only at a checkpoint, after the archive files and the
//! dead letters that cover them are durable; a rebalance checkpoints before
//! partitions are given up, so no reading is lost.

use crate::archive::{ArchiveConfig, ArchiveWriter};
use crate::channels::Stream;
use crate::dlq::{DeadLetterQueue, DlqError};
use crate::kafka::{KafkaConfig, KafkaSetupError, TopicsConfig, check_topics};
use crate::metrics::IngestMetrics;
use crate::registry::{Device, DeviceRegistry};
use crate::wire::{self, Frame, Reject, RejectReason};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Receives every accepted frame, after it is buffered for the archive.
pub trait FrameObserver {
    fn on_frame(&mut self, frame: &Frame, device: &Device);
}

/// An observer that does nothing (ingest and archive only).
pub struct NoObserver;
impl FrameObserver for NoObserver {
    fn on_frame(&mut self, _: &Frame, _: &Device) {}
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("Kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot write the archive: {0}. Check that the archive path is writable and the disk has space")]
    Archive(#[from] std::io::Error),
    #[error(transparent)]
    DeadLetter(#[from] DlqError),
    #[error("checkpoint during a rebalance failed: {0}")]
    Rebalance(String),
}

/// Counts for one run of the source.
#[derive(Debug, Default, Clone, Copy)]
pub struct SourceReport {
    pub frames: u64,
    pub readings: u64,
    pub dead_letters: u64,
    pub archived_rows: u64,
    pub archive_files: u64,
    /// True when every message up to the high watermark at stop time was consumed.
    pub drained: bool,
}

/// Archive buffer, dead letters and uncommitted offsets: what a checkpoint makes durable.
struct Checkpoint {
    archive: ArchiveWriter,
    dlq: DeadLetterQueue,
    pending: BTreeMap<(String, i32), i64>,
    metrics: IngestMetrics,
    archived_rows: u64,
    archive_files: u64,
}

impl Checkpoint {
    fn run<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), IngestError> {
        let stats = self.archive.flush()?;
        for s in Stream::ALL {
            self.metrics
                .archived
                .with_label_values(&[s.as_str()])
                .inc_by(stats.rows_by_stream[s.index()] as u64);
        }
        self.metrics.archive_files.inc_by(stats.files as u64);
        self.archived_rows += stats.rows as u64;
        self.archive_files += stats.files as u64;
        self.dlq.flush(Duration::from_secs(30))?;
        if !self.pending.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for ((t, p), o) in &self.pending {
                tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
            }
            consumer.commit(&tpl, CommitMode::Sync)?;
            self.pending.clear();
            self.metrics.commits.inc();
        }
        Ok(())
    }
}

/// Checkpoints before partitions are revoked, so their next owner starts exactly
/// where this instance's durable archive ends.
pub struct IngestContext {
    checkpoint: Arc<Mutex<Checkpoint>>,
    failure: Arc<Mutex<Option<String>>>,
}

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            let result = lock(&self.checkpoint).run(consumer);
            if let Err(e) = result {
                tracing::error!(error = %e, "checkpoint before revoke failed");
                *lock(&self.failure) = Some(e.to_string());
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A topic partition.
type PartitionKey = (String, i32);

/// The telemetry consumer.
pub struct KafkaSource {
    consumer: BaseConsumer<IngestContext>,
    failure: Arc<Mutex<Option<String>>>,
    state: SourceState,
}

/// Per-message state, apart from the consumer so a polled message can borrow it.
struct SourceState {
    checkpoint: Arc<Mutex<Checkpoint>>,
    topics: TopicsConfig,
    registry: Arc<DeviceRegistry>,
    metrics: IngestMetrics,
    /// Next offset to read per partition, as far as this instance has consumed.
    positions: HashMap<(String, i32), i64>,
    report: SourceReport,
}

impl KafkaSource {
    /// Connects, checks that the topics exist and subscribes.
    pub fn open(
        kafka: &KafkaConfig,
        brokers: &str,
        topics: &TopicsConfig,
        archive: ArchiveConfig,
        registry: Arc<DeviceRegistry>,
        metrics: IngestMetrics,
    ) -> Result<Self, IngestError> {
        let base = kafka.client_config(brokers)?;
        let dlq = DeadLetterQueue::new(&base, &topics.dlq).map_err(KafkaSetupError::Client)?;
        let checkpoint = Arc::new(Mutex::new(Checkpoint {
            archive: ArchiveWriter::new(archive)?,
            dlq,
            pending: BTreeMap::new(),
            metrics: metrics.clone(),
            archived_rows: 0,
            archive_files: 0,
        }));
        let failure = Arc::new(Mutex::new(None));
        let mut cc = base.clone();
        cc.set("group.id", &kafka.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        // Pass-through properties win over our defaults.
        for (k, v) in &kafka.properties {
            cc.set(k, v);
        }
        let consumer: BaseConsumer<IngestContext> = cc
            .create_with_context(IngestContext {
                checkpoint: checkpoint.clone(),
                failure: failure.clone(),
            })
            .map_err(KafkaSetupError::Client)?;
        check_topics(&consumer, brokers, &topics.all_topics(), Duration::from_secs(10))?;
        consumer.subscribe(&topics.telemetry_topics())?;
        Ok(KafkaSource {
            consumer,
            failure,
            state: SourceState {
                checkpoint,
                topics: topics.clone(),
                registry,
                metrics,
                positions: HashMap::new(),
                report: SourceReport::default(),
            },
        })
    }

    /// Consumes until `stop` is set, then drains to the high watermarks seen at that
    /// moment (bounded by `drain_timeout`) and checkpoints.
    pub fn run(
        mut self,
        stop: &AtomicBool,
        drain_timeout: Duration,
        observer: &mut dyn FrameObserver,
    ) -> Result<SourceReport, IngestError> {
        let mut drain: Option<(Vec<(PartitionKey, i64)>, Instant)> = None;
        loop {
            if let Some(msg) = lock(&self.failure).take() {
                return Err(IngestError::Rebalance(msg));
            }
            if drain.is_none() && stop.load(Ordering::Relaxed) {
                drain = Some((self.high_watermarks()?, Instant::now() + drain_timeout));
                tracing::info!("draining to the high watermarks");
            }
            if let Some((targets, deadline)) = &drain {
                let done = targets
                    .iter()
                    .all(|(tp, high)| self.state.positions.get(tp).copied().unwrap_or(0) >= *high);
                if done || Instant::now() >= *deadline {
                    self.state.report.drained = done;
                    break;
                }
            }
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(msg)) => self.state.handle(&msg, observer)?,
                Some(Err(e)) => {
                    self.state.metrics.consumer_errors.inc();
                    tracing::warn!(error = %e, "Kafka consumer error");
                }
                None => {}
            }
            if lock(&self.state.checkpoint).archive.should_flush() {
                self.checkpoint()?;
            }
        }
        tracing::info!("drained; final checkpoint");
        self.checkpoint()?;
        let cp = lock(&self.state.checkpoint);
        let mut report = self.state.report;
        report.archived_rows = cp.archived_rows;
        report.archive_files = cp.archive_files;
        Ok(report)
    }

    fn checkpoint(&self) -> Result<(), IngestError> {
        lock(&self.state.checkpoint).run(&self.consumer)
    }

    /// High watermark of every assigned partition, with the committed offset as the
    /// starting position for partitions this instance has not read yet.
    fn high_watermarks(&mut self) -> Result<Vec<(PartitionKey, i64)>, IngestError> {
        let assignment = self.consumer.assignment()?;
        if assignment.count() == 0 {
            return Ok(Vec::new());
        }
        let committed = self.consumer.committed(Duration::from_secs(10))?;
        // One ListOffsets round trip for every partition: "latest" is the high watermark.
        let mut latest = TopicPartitionList::new();
        for e in assignment.elements() {
            latest.add_partition_offset(e.topic(), e.partition(), Offset::End)?;
        }
        let latest = self.consumer.offsets_for_times(latest, Duration::from_secs(10))?;
        let mut out = Vec::new();
        for e in latest.elements() {
            let key = (e.topic().to_string(), e.partition());
            if let Some(Offset::Offset(c)) = committed.find_partition(e.topic(), e.partition()).map(|c| c.offset()) {
                let p = self.state.positions.entry(key.clone()).or_insert(c);
                *p = (*p).max(c);
            }
            let high = match e.offset() {
                Offset::Offset(h) => h,
                other => {
                    let (_, h) = self
                        .consumer
                        .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))?;
                    tracing::debug!(?other, high = h, "fell back to fetch_watermarks");
                    h
                }
            };
            out.push((key, high));
        }
        Ok(out)
    }
}

impl SourceState {
    fn handle(&mut self, msg: &BorrowedMessage<'_>, observer: &mut dyn FrameObserver) -> Result<(), IngestError> {
        let key = (msg.topic().to_string(), msg.partition());
        let next = msg.offset() + 1;
        let stream = self.topics.stream_of(msg.topic());
        let decoded = match (stream, msg.payload()) {
            (Some(stream), Some(bytes)) => {
                wire::decode(bytes, stream).and_then(|f| match self.registry.get(&f.machine_id) {
                    Some(d) => Ok((f, d)),
                    None => Err(Reject::new(
                        RejectReason::UnknownDevice,
                        format!("machine {} is not enrolled in the device registry", f.machine_id),
                    )),
                })
            }
            (Some(_), None) => Err(Reject::new(RejectReason::Empty, "message has no payload")),
            (None, _) => Err(Reject::new(
                RejectReason::InvalidField,
                format!("unexpected topic {}", msg.topic()),
            )),
        };
        {
            let mut cp = lock(&self.checkpoint);
            match &decoded {
                Ok((frame, _)) => cp.archive.append(frame),
                Err(reject) => cp.dlq.send(msg, reject)?,
            }
            cp.pending.insert(key.clone(), next);
        }
        self.positions.insert(key, next);
        match decoded {
            Ok((frame, device)) => {
                let s = frame.stream.as_str();
                let n = frame.reading_count() as u64;
                self.metrics.frames.with_label_values(&[s]).inc();
                self.metrics.readings.with_label_values(&[s]).inc_by(n);
                self.report.frames += 1;
                self.report.readings += n;
                observer.on_frame(&frame, device);
            }
            Err(reject) => {
                tracing::debug!(topic = msg.topic(), offset = msg.offset(), %reject, "dead-lettered");
                self.metrics
                    .dead_letters
                    .with_label_values(&[reject.reason.code()])
                    .inc();
                self.report.dead_letters += 1;
            }
        }
        Ok(())
    }
}
