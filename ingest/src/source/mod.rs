//! The Kafka source: consumes the telemetry topics in a consumer group,
//! decodes and verifies each frame, archives it exactly once, dead-letters what
//! it refuses, and emits every accepted frame to the next stage.
//!
//! - [`consume`]: the consume loop, in poll order (verify → replay check →
//!   archive buffer or dead letter → emit), and the drain on stop;
//! - [`checkpoint`]: what a checkpoint makes durable and in which order
//!   (files, manifest, offsets), on the checkpoint thread;
//! - [`rebalance`]: checkpoint before partitions are revoked, claim them when
//!   they are assigned.
//!
//! Threads: the consumer thread runs [`KafkaSource::run`]; the decode-and-verify
//! workers and the checkpoint thread ([`SourceWorkers`]) are started by the
//! caller, so the topology shows them.

mod checkpoint;
mod consume;
mod rebalance;

pub use checkpoint::CheckpointThread;
pub use rebalance::IngestContext;

use crate::archive::{ArchiveConfig, ArchiveWriter};
use crate::channels::Stream;
use crate::dlq::{DeadLetterQueue, DlqError};
use crate::kafka::{KafkaConfig, KafkaSetupError, TopicsConfig, check_topics};
use crate::ledger::Ledger;
use crate::metrics::IngestMetrics;
use crate::registry::{RegistryWatch, SharedRegistry};
use crate::trust::{FrameVerifier, TrustConfig, TrustState};
use crate::verify::{StageStopped, VerifyStage};
use crate::wire::{Frame, RejectReason};
use checkpoint::Checkpoint;
use consume::SourceState;
use larmor_stage::Emit;
use prometheus::IntCounter;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("Kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot write the archive: {0}. Check that the archive path is writable and the disk has space")]
    Archive(#[from] std::io::Error),
    /// Another instance owns partitions this one still meant to commit (see `ledger::Fenced`).
    #[error("{0}")]
    Fenced(String),
    #[error(transparent)]
    DeadLetter(#[from] DlqError),
    #[error("checkpoint during a rebalance failed: {0}")]
    Rebalance(String),
    #[error(transparent)]
    Stage(#[from] StageStopped),
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

/// Handles of the labelled counters touched per message, looked up once.
#[derive(Clone)]
struct Counters {
    frames: [IntCounter; 3],
    readings: [IntCounter; 3],
    archived: [IntCounter; 3],
    dead_letters: [IntCounter; RejectReason::ALL.len()],
}

impl Counters {
    fn new(m: &IngestMetrics) -> Self {
        let by_stream = |c: &prometheus::IntCounterVec| Stream::ALL.map(|s| c.with_label_values(&[s.as_str()]));
        Counters {
            frames: by_stream(&m.frames),
            readings: by_stream(&m.readings),
            archived: by_stream(&m.archived),
            dead_letters: RejectReason::ALL.map(|r| m.dead_letters.with_label_values(&[r.code()])),
        }
    }

    fn dead_letter(&self, reason: RejectReason) -> &IntCounter {
        let i = RejectReason::ALL.iter().position(|&r| r == reason).unwrap_or(0);
        &self.dead_letters[i]
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A topic partition.
type PartitionKey = (String, i32);

/// Messages in flight through the decode-and-verify stage, at most.
pub const VERIFY_CAPACITY: usize = 512;

/// The threads the source hands work to.
pub struct SourceWorkers {
    /// Decode and verify, one worker per core (threads `ingest-verify-N`).
    pub verify: VerifyStage,
    /// Writes checkpoints while consumption goes on (thread `ingest-checkpoint`).
    pub checkpoints: CheckpointThread,
}

impl SourceWorkers {
    pub fn start(trust: &TrustConfig, verify_threads: usize) -> std::io::Result<SourceWorkers> {
        Ok(SourceWorkers {
            verify: VerifyStage::start(verify_threads, VERIFY_CAPACITY, &FrameVerifier::new(trust.clone()))?,
            checkpoints: CheckpointThread::start()?,
        })
    }
}

/// Where and how the source reads and archives.
#[derive(Debug, Clone)]
pub struct SourceSettings<'a> {
    pub kafka: &'a KafkaConfig,
    pub brokers: &'a str,
    pub topics: &'a TopicsConfig,
    pub archive: ArchiveConfig,
    pub trust: TrustConfig,
    /// How long a stop waits for the drain to the high watermarks.
    pub drain_timeout: Duration,
}

/// The telemetry consumer.
pub struct KafkaSource {
    consumer: BaseConsumer<IngestContext>,
    failure: Arc<Mutex<Option<String>>>,
    assigned: Arc<AtomicBool>,
    state: Arc<Mutex<SourceState>>,
    drain_timeout: Duration,
}

impl KafkaSource {
    /// Connects, recovers the archive from its ledger, checks that the topics exist
    /// and subscribes.
    pub fn open(
        settings: SourceSettings<'_>,
        registry: impl Into<SharedRegistry>,
        metrics: IngestMetrics,
        workers: SourceWorkers,
    ) -> Result<Self, IngestError> {
        let SourceSettings {
            kafka,
            brokers,
            topics,
            archive,
            trust,
            drain_timeout,
        } = settings;
        let shared = registry.into();
        let base = kafka.client_config(brokers)?;
        let dlq = DeadLetterQueue::new(&base, &topics.dlq).map_err(KafkaSetupError::Client)?;
        let archive = ArchiveWriter::new(archive)?;
        let mut ledger = Ledger::open(archive.root(), archive.writer_id())?;
        let recovered = ledger.recover()?;
        let mut trust = TrustState::new(trust);
        trust.restore(recovered.sequences);
        let counters = Counters::new(&metrics);
        let lag = metrics.consumer_lag.clone();
        let checkpoint = Checkpoint::new(
            archive,
            ledger,
            workers.checkpoints,
            dlq,
            recovered.offsets,
            metrics.clone(),
            counters.clone(),
        );
        let state = Arc::new(Mutex::new(SourceState {
            checkpoint,
            stage: workers.verify,
            trust,
            dirty_sequences: Default::default(),
            topics: topics.clone(),
            registry: shared.current(),
            shared,
            watch: None,
            metrics,
            counters,
            positions: HashMap::new(),
            accepted: VecDeque::new(),
            report: SourceReport::default(),
        }));
        let failure = Arc::new(Mutex::new(None));
        let assigned = Arc::new(AtomicBool::new(false));
        let mut cc = base.clone();
        cc.set("group.id", &kafka.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Verifying and archiving take longer than fetching: with a backlog the prefetch
            // queue fills up (queued.max.messages.kbytes), and librdkafka then postpones the
            // next fetch by this much. At its default (1 s) the queue runs dry first and
            // ingest stalls; a short backoff keeps it topped up.
            .set("fetch.queue.backoff.ms", "50")
            // The consumer-lag gauge is refreshed from librdkafka's statistics this often.
            .set("statistics.interval.ms", "5000");
        // Pass-through properties win over our defaults.
        for (k, v) in &kafka.properties {
            cc.set(k, v);
        }
        let consumer: BaseConsumer<IngestContext> = cc
            .create_with_context(IngestContext {
                state: state.clone(),
                failure: failure.clone(),
                assigned: assigned.clone(),
                lag,
                lag_series: Default::default(),
            })
            .map_err(KafkaSetupError::Client)?;
        check_topics(&consumer, brokers, &topics.all_topics(), Duration::from_secs(10))?;
        consumer.subscribe(&topics.telemetry_topics())?;
        Ok(KafkaSource {
            consumer,
            failure,
            assigned,
            state,
            drain_timeout,
        })
    }

    /// Reloads the registry whenever `watch` sees its file change, so a revocation,
    /// a new enrolment or a new key takes effect without a restart: messages polled
    /// after the reload are checked against the new registry.
    pub fn watch_registry(self, watch: RegistryWatch) -> Self {
        lock(&self.state).watch = Some(watch);
        self
    }

    /// The registry in force, as reloads replace it.
    pub fn registry(&self) -> SharedRegistry {
        lock(&self.state).shared.clone()
    }
}

impl larmor_stage::Source for KafkaSource {
    type Output = Frame;
    type Report = SourceReport;
    type Error = IngestError;

    /// Consumes until `stop` is set, then drains to the high watermarks seen at that
    /// moment (bounded by the drain timeout) and checkpoints.
    fn run(self, stop: &AtomicBool, out: &dyn Emit<Frame>) -> Result<SourceReport, IngestError> {
        self.consume(stop, out)
    }
}
