//! The Kafka source: consumes the telemetry topics in a consumer group, decodes
//! and verifies each frame, archives it, hands it to downstream observers, and
//! dead-letters what it refuses.
//!
//! A checkpoint stages the archive files, flushes the dead letters, commits a
//! manifest (files + offsets + device sequence numbers: the commit point), then
//! publishes the files and commits the offsets to Kafka. Messages below the
//! manifest's offsets are skipped when they come again (after a crash, or when a
//! partition moves), so each reading is archived exactly once. A rebalance
//! checkpoints before partitions are given up and reloads the ledger after.

use crate::archive::{ArchiveConfig, ArchiveWriter};
use crate::channels::Stream;
use crate::dlq::{DeadLetterQueue, DlqError};
use crate::kafka::{KafkaConfig, KafkaSetupError, TopicsConfig, check_topics};
use crate::manifest::{Ledger, Manifest};
use crate::metrics::IngestMetrics;
use crate::registry::{Device, DeviceRegistry};
use crate::trust::{HEADER_SIGNATURE, TrustConfig, TrustState};
use crate::wire::{self, Frame, Reject, RejectReason};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Headers, Message};
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
    ledger: Ledger,
    dlq: DeadLetterQueue,
    trust: TrustState,
    /// Offsets consumed since the last checkpoint (next offset per partition).
    pending: BTreeMap<(String, i32), i64>,
    /// Offsets below these are already archived: skipped if they come again.
    floors: HashMap<(String, i32), i64>,
    /// Sequence numbers that changed since the last checkpoint.
    dirty_sequences: std::collections::HashSet<(String, Stream)>,
    metrics: IngestMetrics,
    archived_rows: u64,
    archive_files: u64,
}

impl Checkpoint {
    fn run<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), IngestError> {
        let staged = self.archive.stage()?;
        self.dlq.flush(Duration::from_secs(30))?;
        if staged.is_empty() && self.pending.is_empty() {
            return Ok(());
        }
        let seqs = self.trust.sequences();
        let manifest = Manifest {
            writer: self.archive.writer_id().to_string(),
            created_ms: chrono::Utc::now().timestamp_millis(),
            files: staged.iter().map(|f| f.rel_path.clone()).collect(),
            offsets: self
                .pending
                .iter()
                .map(|((t, p), o)| (format!("{t}:{p}"), *o))
                .collect(),
            sequences: self
                .dirty_sequences
                .iter()
                .filter_map(|k| seqs.get(k).map(|s| (format!("{}|{}", k.0, k.1), *s)))
                .collect(),
            removes: vec![],
        };
        // The commit point: from here on these readings count as archived.
        self.ledger.commit(&manifest)?;
        self.dirty_sequences.clear();
        let stats = self.archive.publish(&staged)?;
        for s in Stream::ALL {
            self.metrics
                .archived
                .with_label_values(&[s.as_str()])
                .inc_by(stats.rows_by_stream[s.index()] as u64);
        }
        self.metrics.archive_files.inc_by(stats.files as u64);
        self.archived_rows += stats.rows as u64;
        self.archive_files += stats.files as u64;
        if !self.pending.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for ((t, p), o) in &self.pending {
                tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
                self.floors.insert((t.clone(), *p), *o);
            }
            // Kafka's committed offsets only save re-reading: the manifest is what counts.
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => self.metrics.commits.inc(),
                Err(e) => tracing::warn!(error = %e, "offset commit failed; the manifest keeps the archive exact"),
            }
            self.pending.clear();
        }
        Ok(())
    }

    /// Reloads what every instance has archived (after partitions moved).
    fn reload(&mut self) -> Result<(), IngestError> {
        let state = self.ledger.state()?;
        for (k, v) in state.offsets {
            let e = self.floors.entry(k).or_insert(v);
            *e = (*e).max(v);
        }
        self.trust.restore(state.sequences);
        Ok(())
    }
}

/// Checkpoints before partitions are revoked, so their next owner starts exactly
/// where this instance's durable archive ends.
pub struct IngestContext {
    checkpoint: Arc<Mutex<Checkpoint>>,
    failure: Arc<Mutex<Option<String>>>,
    /// True while the group has given this instance its partitions (false during a rebalance).
    assigned: Arc<AtomicBool>,
}

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "revoking: checkpoint first");
            // Until the next assignment there is nothing to drain against.
            self.assigned.store(false, Ordering::Relaxed);
            let result = lock(&self.checkpoint).run(consumer);
            if let Err(e) = result {
                tracing::error!(error = %e, "checkpoint before revoke failed");
                *lock(&self.failure) = Some(e.to_string());
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<String> = tpl
                .elements()
                .iter()
                .map(|e| format!("{}:{}", e.topic(), e.partition()))
                .collect();
            tracing::info!(partitions = %parts.join(","), "assigned");
            self.assigned.store(true, Ordering::Relaxed);
            let result = lock(&self.checkpoint).reload();
            if let Err(e) = result {
                tracing::error!(error = %e, "cannot reload the archive ledger after a rebalance");
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
    assigned: Arc<AtomicBool>,
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
        trust: TrustConfig,
        registry: Arc<DeviceRegistry>,
        metrics: IngestMetrics,
    ) -> Result<Self, IngestError> {
        let base = kafka.client_config(brokers)?;
        let dlq = DeadLetterQueue::new(&base, &topics.dlq).map_err(KafkaSetupError::Client)?;
        let archive = ArchiveWriter::new(archive)?;
        let mut ledger = Ledger::open(archive.root(), archive.writer_id())?;
        let recovered = ledger.recover()?;
        let mut trust = TrustState::new(trust);
        trust.restore(recovered.sequences);
        let checkpoint = Arc::new(Mutex::new(Checkpoint {
            archive,
            ledger,
            dlq,
            trust,
            pending: BTreeMap::new(),
            floors: recovered.offsets,
            dirty_sequences: Default::default(),
            metrics: metrics.clone(),
            archived_rows: 0,
            archive_files: 0,
        }));
        let failure = Arc::new(Mutex::new(None));
        let assigned = Arc::new(AtomicBool::new(false));
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
                assigned: assigned.clone(),
            })
            .map_err(KafkaSetupError::Client)?;
        check_topics(&consumer, brokers, &topics.all_topics(), Duration::from_secs(10))?;
        consumer.subscribe(&topics.telemetry_topics())?;
        Ok(KafkaSource {
            consumer,
            failure,
            assigned,
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
        let started = Instant::now();
        loop {
            if let Some(msg) = lock(&self.failure).take() {
                return Err(IngestError::Rebalance(msg));
            }
            // A drain needs the partitions first: before the group assigns them there is
            // nothing to measure it against (wait for that, bounded by the drain timeout).
            let ready = self.assigned.load(Ordering::Relaxed) || started.elapsed() >= drain_timeout;
            if drain.is_none() && stop.load(Ordering::Relaxed) && ready {
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
        let floors = lock(&self.state.checkpoint).floors.clone();
        let mut out = Vec::new();
        for e in latest.elements() {
            let key = (e.topic().to_string(), e.partition());
            if let Some(&f) = floors.get(&key) {
                let p = self.state.positions.entry(key.clone()).or_insert(f);
                *p = (*p).max(f);
            }
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
        let mut cp = lock(&self.checkpoint);
        if cp.floors.get(&key).is_some_and(|&floor| msg.offset() < floor) {
            // Archived before a crash or by the partition's previous owner.
            drop(cp);
            self.positions.insert(key, next);
            self.metrics.duplicates_skipped.inc();
            return Ok(());
        }
        let stream = self.topics.stream_of(msg.topic());
        let decoded = match (stream, msg.payload()) {
            (Some(stream), Some(bytes)) => wire::decode(bytes, stream).and_then(|f| {
                let device = self.registry.get(&f.machine_id).ok_or_else(|| {
                    Reject::new(
                        RejectReason::UnknownDevice,
                        format!("machine {} is not enrolled in the device registry", f.machine_id),
                    )
                })?;
                let sig = msg
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == HEADER_SIGNATURE))
                    .and_then(|h| h.value);
                cp.trust
                    .check(&f, device, bytes, sig, chrono::Utc::now().timestamp_millis())?;
                Ok((f, device))
            }),
            (Some(_), None) => Err(Reject::new(RejectReason::Empty, "message has no payload")),
            (None, _) => Err(Reject::new(
                RejectReason::InvalidField,
                format!("unexpected topic {}", msg.topic()),
            )),
        };
        match &decoded {
            Ok((frame, _)) => {
                cp.archive.append(frame);
                cp.dirty_sequences.insert((frame.machine_id.clone(), frame.stream));
            }
            Err(reject) => cp.dlq.send(msg, reject)?,
        }
        cp.pending.insert(key.clone(), next);
        drop(cp);
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
