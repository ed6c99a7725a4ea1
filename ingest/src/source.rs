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
//!
//! Threads: the consumer thread polls, and hands each message to the
//! decode-and-verify stage ([`crate::verify`], one worker per core); it takes the
//! results back in poll order and does the rest itself (replay check, archive
//! buffer, dead letters, offsets), so per-partition order is kept. Checkpoints
//! triggered by size or age are written on a background thread (at most one at a
//! time) while consumption goes on: the manifest still names exactly the offsets
//! handled before the checkpoint began, and those go to Kafka only once the
//! manifest is durable. A rebalance or the end of a run first handles every
//! message in flight and waits for the checkpoint in flight.

use crate::archive::{ArchiveConfig, ArchiveWriter, Flush, FlushStats, publish};
use crate::channels::Stream;
use crate::dlq::{DeadLetterQueue, DlqError};
use crate::kafka::{KafkaConfig, KafkaSetupError, TopicsConfig, check_topics};
use crate::manifest::{Ledger, Manifest};
use crate::metrics::IngestMetrics;
use crate::registry::{Device, DeviceRegistry, RegistryWatch, SharedRegistry};
use crate::trust::{TrustConfig, TrustState};
use crate::verify::{Done, Job, StageStopped, VerifyStage, examine};
use crate::wire::{Frame, RejectReason};
use prometheus::IntCounter;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
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
    /// Another instance owns partitions this one still meant to commit (see `manifest::Fenced`).
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

/// Archive buffer, dead letters and uncommitted offsets: what a checkpoint makes durable.
struct Checkpoint {
    archive: ArchiveWriter,
    /// `None` while a checkpoint is in flight: its thread holds the ledger.
    ledger: Option<Ledger>,
    /// The checkpoint being written on a background thread, at most one.
    in_flight: Option<JoinHandle<(Ledger, Result<Committed, IngestError>)>>,
    /// Set when a checkpoint failed: nothing is committed after that (a restart
    /// recovers from the ledger), so no later offset can cover readings that were lost.
    broken: Option<String>,
    dlq: Arc<DeadLetterQueue>,
    trust: TrustState,
    /// Offsets consumed since the last checkpoint (next offset per partition).
    pending: BTreeMap<(String, i32), i64>,
    /// Offsets below these are already archived: skipped if they come again.
    floors: HashMap<(String, i32), i64>,
    /// Sequence numbers that changed since the last checkpoint.
    dirty_sequences: std::collections::HashSet<(String, Stream)>,
    metrics: IngestMetrics,
    counters: Counters,
    archived_rows: u64,
    archive_files: u64,
}

/// What one checkpoint commits: the readings, offsets and sequence numbers of
/// every message handled up to one moment.
struct CommitJob {
    flush: Flush,
    writer: String,
    offsets: BTreeMap<(String, i32), i64>,
    sequences: BTreeMap<String, u64>,
}

/// A committed checkpoint, for the consumer thread to account for and commit to Kafka.
struct Committed {
    stats: FlushStats,
    offsets: BTreeMap<(String, i32), i64>,
}

impl CommitJob {
    /// Stages the files, waits for the dead letters, commits the manifest (the commit
    /// point), then publishes the files.
    fn commit(self, ledger: &mut Ledger, dlq: &DeadLetterQueue) -> Result<Committed, IngestError> {
        let staged = self.flush.stage()?;
        dlq.flush(Duration::from_secs(30))?;
        if staged.is_empty() && self.offsets.is_empty() {
            return Ok(Committed {
                stats: FlushStats::default(),
                offsets: self.offsets,
            });
        }
        let manifest = Manifest {
            writer: self.writer,
            created_ms: chrono::Utc::now().timestamp_millis(),
            files: staged.iter().map(|f| f.rel_path.clone()).collect(),
            offsets: self
                .offsets
                .iter()
                .map(|((t, p), o)| (format!("{t}:{p}"), *o))
                .collect(),
            sequences: self.sequences,
            removes: vec![],
            claims: Default::default(),
        };
        // The commit point: from here on these readings count as archived.
        ledger.commit(&manifest).map_err(ledger_error)?;
        let stats = publish(self.flush.root(), &staged)?;
        Ok(Committed {
            stats,
            offsets: self.offsets,
        })
    }
}

impl Checkpoint {
    fn check_broken(&self) -> Result<(), IngestError> {
        match &self.broken {
            Some(e) => Err(IngestError::Archive(std::io::Error::other(format!(
                "an earlier checkpoint failed ({e}); nothing more is committed until a restart recovers from the ledger"
            )))),
            None => Ok(()),
        }
    }

    /// Records a checkpoint failure (see `broken`) and passes it on.
    fn fail<T>(&mut self, e: IngestError) -> Result<T, IngestError> {
        self.broken = Some(e.to_string());
        Err(e)
    }

    /// Takes everything handled so far out for one checkpoint.
    fn take_job(&mut self) -> CommitJob {
        let seqs = self.trust.sequences();
        let sequences = self
            .dirty_sequences
            .drain()
            .filter_map(|k| seqs.get(&k).map(|s| (format!("{}|{}", k.0, k.1), *s)))
            .collect();
        CommitJob {
            flush: self.archive.take(),
            writer: self.archive.writer_id().to_string(),
            offsets: std::mem::take(&mut self.pending),
            sequences,
        }
    }

    /// Checkpoints everything handled so far and waits for it (rebalance, stop).
    fn run<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), IngestError> {
        self.finish(consumer)?;
        self.check_broken()?;
        let job = self.take_job();
        let Some(ledger) = self.ledger.as_mut() else {
            return Err(IngestError::Archive(std::io::Error::other(
                "the archive ledger is gone",
            )));
        };
        match job.commit(ledger, &self.dlq) {
            Ok(c) => self.complete(c, consumer),
            Err(e) => self.fail(e),
        }
    }

    /// Starts checkpointing everything handled so far on a background thread, once the
    /// previous checkpoint is done: staging, fsyncs and the manifest overlap with
    /// consuming the next messages. Offsets go to Kafka when it is committed.
    fn start<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), IngestError> {
        self.finish(consumer)?;
        self.check_broken()?;
        let job = self.take_job();
        if job.flush.is_empty() && job.offsets.is_empty() {
            return Ok(());
        }
        let Some(mut ledger) = self.ledger.take() else {
            return Err(IngestError::Archive(std::io::Error::other(
                "the archive ledger is gone",
            )));
        };
        let dlq = self.dlq.clone();
        let spawned = std::thread::Builder::new()
            .name("ingest-checkpoint".into())
            .spawn(move || {
                let result = job.commit(&mut ledger, &dlq);
                (ledger, result)
            });
        match spawned {
            Ok(h) => {
                self.in_flight = Some(h);
                Ok(())
            }
            Err(e) => self.fail(IngestError::Archive(e)),
        }
    }

    /// Finishes the checkpoint in flight, if it is done already.
    fn poll<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), IngestError> {
        if self.in_flight.as_ref().is_some_and(|h| h.is_finished()) {
            self.finish(consumer)?;
        }
        Ok(())
    }

    /// Waits for the checkpoint in flight, if any, and commits its offsets to Kafka.
    fn finish<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), IngestError> {
        let Some(h) = self.in_flight.take() else {
            return Ok(());
        };
        let Ok((ledger, result)) = h.join() else {
            return self.fail(IngestError::Archive(std::io::Error::other(
                "the checkpoint thread panicked",
            )));
        };
        self.ledger = Some(ledger);
        match result {
            Ok(c) => self.complete(c, consumer),
            Err(e) => self.fail(e),
        }
    }

    /// Accounts for a committed checkpoint and commits its offsets to Kafka.
    fn complete<C: ConsumerContext>(&mut self, c: Committed, consumer: &BaseConsumer<C>) -> Result<(), IngestError> {
        for s in Stream::ALL {
            self.counters.archived[s.index()].inc_by(c.stats.rows_by_stream[s.index()] as u64);
        }
        self.metrics.archive_files.inc_by(c.stats.files as u64);
        self.archived_rows += c.stats.rows as u64;
        self.archive_files += c.stats.files as u64;
        if !c.offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for ((t, p), o) in &c.offsets {
                tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
                self.floors.insert((t.clone(), *p), *o);
            }
            // Kafka's committed offsets only save re-reading: the manifest is what counts.
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => self.metrics.commits.inc(),
                Err(e) => tracing::warn!(error = %e, "offset commit failed; the manifest keeps the archive exact"),
            }
        }
        Ok(())
    }

    /// Reloads what every instance has archived (after partitions moved).
    fn reload<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        assigned: &[PartitionKey],
    ) -> Result<(), IngestError> {
        self.finish(consumer)?;
        let Some(ledger) = self.ledger.as_mut() else {
            return Err(IngestError::Archive(std::io::Error::other(
                "the archive ledger is gone",
            )));
        };
        // Claim first: from then on a previous owner that wakes up cannot commit these partitions.
        // Without the claim (or the floors) nothing may be committed: fail for good.
        let state = match ledger.claim(assigned) {
            Ok(s) => s,
            Err(e) => return self.fail(IngestError::Archive(e)),
        };
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
    state: Arc<Mutex<SourceState>>,
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
            let mut state = lock(&self.state);
            // Every message polled so far is archived (or dead-lettered) and covered
            // by this checkpoint, as if the messages had been handled one by one.
            let result = state.settle().and_then(|()| state.checkpoint.run(consumer));
            if let Err(e) = result {
                tracing::error!(error = %e, "checkpoint before revoke failed");
                *lock(&self.failure) = Some(e.to_string());
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<String> = tpl
                .elements()
                .iter()
                .map(|e| format!("{}:{}", e.topic(), e.partition()))
                .collect();
            tracing::info!(partitions = %parts.join(","), "assigned");
            self.assigned.store(true, Ordering::Relaxed);
            let assigned: Vec<PartitionKey> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            let result = lock(&self.state).checkpoint.reload(consumer, &assigned);
            if let Err(e) = result {
                tracing::error!(error = %e, "cannot reload the archive ledger after a rebalance");
                *lock(&self.failure) = Some(e.to_string());
            }
        }
    }
}

/// A ledger error as the source reports it: fencing has its own message.
fn ledger_error(e: std::io::Error) -> IngestError {
    match e.get_ref().and_then(|i| i.downcast_ref::<crate::manifest::Fenced>()) {
        Some(f) => IngestError::Fenced(f.to_string()),
        None => IngestError::Archive(e),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A topic partition.
type PartitionKey = (String, i32);

/// Messages in flight through the decode-and-verify stage, at most.
const STAGE_CAPACITY: usize = 512;

/// The telemetry consumer.
pub struct KafkaSource {
    consumer: BaseConsumer<IngestContext>,
    failure: Arc<Mutex<Option<String>>>,
    assigned: Arc<AtomicBool>,
    state: Arc<Mutex<SourceState>>,
}

/// Everything a message changes. Only the consumer thread touches it (the
/// rebalance callbacks run inside its `poll`); the mutex lets the callbacks reach it.
struct SourceState {
    checkpoint: Checkpoint,
    stage: VerifyStage,
    topics: TopicsConfig,
    /// The registry in force (a handle on `shared`'s, taken at each reload).
    registry: Arc<DeviceRegistry>,
    shared: SharedRegistry,
    /// Reloads the registry file when it changes (`None`: fixed for the run).
    watch: Option<RegistryWatch>,
    metrics: IngestMetrics,
    counters: Counters,
    /// Next offset to read per partition, as far as this instance has handled.
    positions: HashMap<(String, i32), i64>,
    /// Accepted frames not yet shown to the observer, in order.
    accepted: VecDeque<Frame>,
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
        registry: impl Into<SharedRegistry>,
        metrics: IngestMetrics,
    ) -> Result<Self, IngestError> {
        let shared = registry.into();
        let base = kafka.client_config(brokers)?;
        let dlq = DeadLetterQueue::new(&base, &topics.dlq).map_err(KafkaSetupError::Client)?;
        let archive = ArchiveWriter::new(archive)?;
        let mut ledger = Ledger::open(archive.root(), archive.writer_id())?;
        let recovered = ledger.recover()?;
        let mut trust = TrustState::new(trust);
        trust.restore(recovered.sequences);
        let verifier = trust.verifier();
        let counters = Counters::new(&metrics);
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let stage = VerifyStage::start(threads, STAGE_CAPACITY, &verifier)?;
        let state = Arc::new(Mutex::new(SourceState {
            checkpoint: Checkpoint {
                archive,
                ledger: Some(ledger),
                in_flight: None,
                broken: None,
                dlq: Arc::new(dlq),
                trust,
                pending: BTreeMap::new(),
                floors: recovered.offsets,
                dirty_sequences: Default::default(),
                metrics: metrics.clone(),
                counters: counters.clone(),
                archived_rows: 0,
                archive_files: 0,
            },
            stage,
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
            .set("fetch.queue.backoff.ms", "50");
        // Pass-through properties win over our defaults.
        for (k, v) in &kafka.properties {
            cc.set(k, v);
        }
        let consumer: BaseConsumer<IngestContext> = cc
            .create_with_context(IngestContext {
                state: state.clone(),
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
            state,
        })
    }

    /// Reloads the registry whenever `watch` sees its file change, so a revocation,
    /// a new enrolment or a new key takes effect without a restart: messages polled
    /// after the reload are checked against the new registry.
    pub fn watch_registry(self, watch: RegistryWatch) -> Self {
        self.state_mut().watch = Some(watch);
        self
    }

    /// The registry in force, as reloads replace it.
    pub fn registry(&self) -> SharedRegistry {
        lock(&self.state).shared.clone()
    }

    /// Consumes until `stop` is set, then drains to the high watermarks seen at that
    /// moment (bounded by `drain_timeout`) and checkpoints.
    pub fn run(
        self,
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
                let state = lock(&self.state);
                let done = targets
                    .iter()
                    .all(|(tp, high)| state.positions.get(tp).copied().unwrap_or(0) >= *high);
                if done || Instant::now() >= *deadline {
                    drop(state);
                    self.state_mut().report.drained = done;
                    break;
                }
            }
            // While messages are in flight, poll without waiting: the stage has work.
            let busy = lock(&self.state).stage.in_flight() > 0;
            let polled = self.consumer.poll(if busy {
                Duration::ZERO
            } else {
                Duration::from_millis(50)
            });
            let mut state = self.state_mut();
            match polled {
                Some(Ok(msg)) => {
                    let msg = msg.detach();
                    state.submit(msg)?;
                }
                Some(Err(e)) => {
                    state.metrics.consumer_errors.inc();
                    tracing::warn!(error = %e, "Kafka consumer error");
                }
                // Nothing new: hand the workers what there is and wait for the oldest result.
                None => {
                    state.stage.flush()?;
                    state.apply_next(true)?;
                }
            }
            // Take every result that is ready, in order.
            while state.apply_next(false)? {}
            state.checkpoint.poll(&self.consumer)?;
            state.reload_registry();
            if state.checkpoint.archive.should_flush() {
                state.checkpoint.start(&self.consumer)?;
            }
            let accepted = std::mem::take(&mut state.accepted);
            let registry = state.registry.clone();
            drop(state);
            notify(observer, &registry, accepted);
        }
        tracing::info!("drained; final checkpoint");
        let mut state = self.state_mut();
        // Messages still in flight were polled: handle them, as the checkpoint covers them.
        state.settle()?;
        state.checkpoint.run(&self.consumer)?;
        let accepted = std::mem::take(&mut state.accepted);
        let registry = state.registry.clone();
        let mut report = state.report;
        report.archived_rows = state.checkpoint.archived_rows;
        report.archive_files = state.checkpoint.archive_files;
        drop(state);
        notify(observer, &registry, accepted);
        Ok(report)
    }

    fn state_mut(&self) -> MutexGuard<'_, SourceState> {
        lock(&self.state)
    }

    /// High watermark of every assigned partition, with the committed offset as the
    /// starting position for partitions this instance has not read yet.
    fn high_watermarks(&self) -> Result<Vec<(PartitionKey, i64)>, IngestError> {
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
            {
                let mut state = self.state_mut();
                let state = &mut *state;
                if let Some(&f) = state.checkpoint.floors.get(&key) {
                    let p = state.positions.entry(key.clone()).or_insert(f);
                    *p = (*p).max(f);
                }
                if let Some(Offset::Offset(c)) = committed.find_partition(e.topic(), e.partition()).map(|c| c.offset())
                {
                    let p = state.positions.entry(key.clone()).or_insert(c);
                    *p = (*p).max(c);
                }
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

/// Shows accepted frames to the observer, in order.
fn notify(observer: &mut dyn FrameObserver, registry: &DeviceRegistry, frames: VecDeque<Frame>) {
    for frame in frames {
        match registry.get(&frame.machine_id) {
            Some(device) => observer.on_frame(&frame, device),
            // Accepted (and archived) just before a registry reload removed the machine.
            None => {
                tracing::debug!(machine = %frame.machine_id, "frame not shown to the detectors: its machine left the registry")
            }
        }
    }
}

impl SourceState {
    fn is_archived(&self, msg: &impl Message) -> bool {
        // Offsets below the floor were archived before a crash or by the partition's previous owner.
        self.checkpoint
            .floors
            .iter()
            .any(|((t, p), &floor)| *p == msg.partition() && msg.offset() < floor && t == msg.topic())
    }

    /// Takes the registry file's new content, if the watch saw it change. A file
    /// that cannot be read or parsed leaves the registry in force (and is retried).
    fn reload_registry(&mut self) {
        let Some(watch) = &mut self.watch else { return };
        match watch.poll() {
            None => {}
            Some(Ok(new)) => {
                let revoked = new.devices().iter().filter(|d| d.revoked).count();
                tracing::info!(path = %watch.path().display(), devices = new.len(), revoked, "device registry reloaded");
                let new = Arc::new(new);
                self.shared.replace(new.clone());
                self.registry = new;
                // Keys may have changed: the consumer thread's verifier parses them again
                // (the stage's workers notice the new registry in the jobs they get).
                self.checkpoint.trust.reload_keys();
                self.metrics.registry_reloads.with_label_values(&["ok"]).inc();
            }
            Some(Err(e)) => {
                tracing::error!(path = %watch.path().display(), error = %e, "cannot reload the device registry; the previous one stays in force until the file is fixed");
                self.metrics.registry_reloads.with_label_values(&["error"]).inc();
            }
        }
    }

    /// Sends a polled message into the decode-and-verify stage (first taking back
    /// the oldest result when the stage is full).
    fn submit(&mut self, msg: OwnedMessage) -> Result<(), IngestError> {
        if self.stage.is_full() {
            self.apply_next(true)?;
        }
        let stream = self.topics.stream_of(msg.topic());
        let examine = !self.is_archived(&msg);
        self.stage.submit(Job {
            msg,
            stream,
            registry: self.registry.clone(),
            examine,
        })?;
        Ok(())
    }

    /// Handles every message in flight.
    fn settle(&mut self) -> Result<(), IngestError> {
        while self.apply_next(true)? {}
        Ok(())
    }

    /// Handles the oldest message in flight, if there is one (and, with `wait`
    /// false, if it is examined already). True when a message was handled.
    fn apply_next(&mut self, wait: bool) -> Result<bool, IngestError> {
        match self.stage.next(wait)? {
            Some(done) => {
                self.apply(done)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Archives or dead-letters one examined message, in poll order.
    fn apply(&mut self, done: Done) -> Result<(), IngestError> {
        let Done { msg, examined } = done;
        let key = (msg.topic().to_string(), msg.partition());
        let next = msg.offset() + 1;
        if self.is_archived(&msg) {
            self.positions.insert(key, next);
            self.metrics.duplicates_skipped.inc();
            return Ok(());
        }
        let examined = match examined {
            Some(r) => r,
            // Not examined by the stage (it looked archived when polled): examine it here.
            None => examine(
                &msg,
                self.topics.stream_of(msg.topic()),
                &self.registry,
                self.checkpoint.trust.verifier_mut(),
            ),
        };
        let cp = &mut self.checkpoint;
        // The replay check, in arrival order: after the stateless checks, as in `TrustState::check`.
        let decoded = examined.and_then(|f| cp.trust.admit(&f).map(|()| f));
        match &decoded {
            Ok(frame) => {
                cp.archive.append(frame);
                cp.dirty_sequences.insert((frame.machine_id.clone(), frame.stream));
            }
            Err(reject) => cp.dlq.send(&msg, reject)?,
        }
        match cp.pending.get_mut(&key) {
            Some(o) => *o = next,
            None => {
                cp.pending.insert(key.clone(), next);
            }
        }
        match self.positions.get_mut(&key) {
            Some(o) => *o = next,
            None => {
                self.positions.insert(key, next);
            }
        }
        match decoded {
            Ok(frame) => {
                let s = frame.stream.index();
                let n = frame.reading_count() as u64;
                self.counters.frames[s].inc();
                self.counters.readings[s].inc_by(n);
                self.report.frames += 1;
                self.report.readings += n;
                self.accepted.push_back(frame);
            }
            Err(reject) => {
                tracing::debug!(topic = msg.topic(), offset = msg.offset(), %reject, "dead-lettered");
                self.counters.dead_letter(reject.reason).inc();
                self.report.dead_letters += 1;
            }
        }
        Ok(())
    }
}
