//! What a checkpoint makes durable, and in which order: it stages the archive
//! files under hidden names, flushes the dead letters, commits a manifest (the
//! files, Kafka offsets and device sequence numbers: the commit point),
//! publishes the files, then commits the offsets to Kafka. Messages below the manifest's
//! offsets are skipped when they come again (after a crash, or when a partition
//! moves), so each reading is archived exactly once.
//!
//! Checkpoints triggered by size or age run on the checkpoint thread
//! ([`CheckpointThread`], at most one at a time) while consumption goes on: the
//! manifest names exactly the offsets handled before the checkpoint began, and
//! those go to Kafka only once the manifest is durable.

use super::{Counters, IngestError, PartitionKey};
use crate::archive::{ArchiveWriter, Flush, FlushStats, publish};
use crate::channels::Stream;
use crate::dlq::DeadLetterQueue;
use crate::ledger::{Ledger, LedgerState, Manifest};
use crate::metrics::IngestMetrics;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

type Task = Box<dyn FnOnce() + Send>;

/// The thread checkpoints are written on, one at a time, while the consumer
/// thread goes on consuming. Started by the caller, so the topology shows it.
pub struct CheckpointThread {
    tasks: Option<SyncSender<Task>>,
    handle: Option<JoinHandle<()>>,
}

impl CheckpointThread {
    pub fn start() -> std::io::Result<CheckpointThread> {
        let (tx, rx) = sync_channel::<Task>(1);
        let handle = std::thread::Builder::new()
            .name("ingest-checkpoint".into())
            .spawn(move || {
                for task in rx {
                    task();
                }
            })?;
        Ok(CheckpointThread {
            tasks: Some(tx),
            handle: Some(handle),
        })
    }

    /// Runs `f` on the thread; its result comes back on the receiver (which
    /// disconnects if `f` panics).
    fn submit<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<Receiver<R>, IngestError> {
        let (tx, rx) = sync_channel(1);
        let task: Task = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.tasks.as_ref().map(|t| t.send(task)) {
            Some(Ok(())) => Ok(rx),
            _ => Err(IngestError::Archive(std::io::Error::other(
                "the checkpoint thread stopped",
            ))),
        }
    }
}

impl Drop for CheckpointThread {
    fn drop(&mut self) {
        self.tasks.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The checkpoint in flight: the ledger and what committing gave, once done.
type InFlight = Receiver<(Ledger, Result<Committed, IngestError>)>;

/// Archive buffer, dead letters and uncommitted offsets: what a checkpoint makes durable.
pub(super) struct Checkpoint {
    pub archive: ArchiveWriter,
    /// `None` while a checkpoint is in flight: the checkpoint thread holds the ledger.
    ledger: Option<Ledger>,
    in_flight: Option<InFlight>,
    thread: CheckpointThread,
    /// Set when a checkpoint failed: nothing is committed after that (a restart
    /// recovers from the ledger), so no later offset can cover readings that were lost.
    broken: Option<String>,
    pub dlq: Arc<DeadLetterQueue>,
    /// Offsets consumed since the last checkpoint (next offset per partition).
    pub pending: BTreeMap<PartitionKey, i64>,
    /// Offsets below these are already archived: skipped if they come again.
    pub floors: HashMap<PartitionKey, i64>,
    metrics: IngestMetrics,
    counters: Counters,
    pub archived_rows: u64,
    pub archive_files: u64,
}

/// What one checkpoint commits: the readings, offsets and sequence numbers of
/// every message handled up to one moment.
struct CommitJob {
    flush: Flush,
    writer: String,
    offsets: BTreeMap<PartitionKey, i64>,
    sequences: BTreeMap<String, u64>,
}

/// A committed checkpoint, for the consumer thread to account for and commit to Kafka.
struct Committed {
    stats: FlushStats,
    offsets: BTreeMap<PartitionKey, i64>,
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

/// The device sequence numbers a manifest records, as `machine|stream` keys.
pub(super) type Sequences = BTreeMap<String, u64>;

/// `machine|stream` → sequence, for the sequences in `changed`.
pub(super) fn sequence_keys(
    changed: impl IntoIterator<Item = (String, Stream)>,
    all: &HashMap<(String, Stream), u64>,
) -> Sequences {
    changed
        .into_iter()
        .filter_map(|k| all.get(&k).map(|s| (format!("{}|{}", k.0, k.1), *s)))
        .collect()
}

impl Checkpoint {
    pub fn new(
        archive: ArchiveWriter,
        ledger: Ledger,
        thread: CheckpointThread,
        dlq: DeadLetterQueue,
        floors: HashMap<PartitionKey, i64>,
        metrics: IngestMetrics,
        counters: Counters,
    ) -> Self {
        Checkpoint {
            archive,
            ledger: Some(ledger),
            in_flight: None,
            thread,
            broken: None,
            dlq: Arc::new(dlq),
            pending: BTreeMap::new(),
            floors,
            metrics,
            counters,
            archived_rows: 0,
            archive_files: 0,
        }
    }

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

    /// Waits for the checkpoint in flight, then takes everything handled so far
    /// out for the next one (unless an earlier checkpoint failed).
    fn begin<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        sequences: Sequences,
    ) -> Result<CommitJob, IngestError> {
        self.finish(consumer)?;
        self.check_broken()?;
        Ok(CommitJob {
            flush: self.archive.take(),
            writer: self.archive.writer_id().to_string(),
            offsets: std::mem::take(&mut self.pending),
            sequences,
        })
    }

    fn ledger_gone() -> IngestError {
        IngestError::Archive(std::io::Error::other("the archive ledger is gone"))
    }

    /// Checkpoints everything handled so far and waits for it (rebalance, stop).
    pub fn run<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        sequences: Sequences,
    ) -> Result<(), IngestError> {
        let job = self.begin(consumer, sequences)?;
        let Some(ledger) = self.ledger.as_mut() else {
            return Err(Self::ledger_gone());
        };
        match job.commit(ledger, &self.dlq) {
            Ok(c) => self.complete(c, consumer),
            Err(e) => self.fail(e),
        }
    }

    /// Starts checkpointing everything handled so far on the checkpoint thread, once
    /// the previous checkpoint is done: staging, fsyncs and the manifest overlap with
    /// consuming the next messages. Offsets go to Kafka when it is committed.
    pub fn start<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        sequences: Sequences,
    ) -> Result<(), IngestError> {
        let job = self.begin(consumer, sequences)?;
        if job.flush.is_empty() && job.offsets.is_empty() {
            return Ok(());
        }
        let Some(mut ledger) = self.ledger.take() else {
            return Err(Self::ledger_gone());
        };
        let dlq = self.dlq.clone();
        match self.thread.submit(move || {
            let result = job.commit(&mut ledger, &dlq);
            (ledger, result)
        }) {
            Ok(rx) => {
                self.in_flight = Some(rx);
                Ok(())
            }
            Err(e) => self.fail(e),
        }
    }

    /// Finishes the checkpoint in flight, if it is done already.
    pub fn poll<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), IngestError> {
        let Some(rx) = &self.in_flight else { return Ok(()) };
        match rx.try_recv() {
            Err(TryRecvError::Empty) => Ok(()),
            Ok(done) => {
                self.in_flight = None;
                self.completed(done, consumer)
            }
            Err(TryRecvError::Disconnected) => {
                self.in_flight = None;
                self.fail(Self::thread_died())
            }
        }
    }

    fn thread_died() -> IngestError {
        IngestError::Archive(std::io::Error::other("the checkpoint thread panicked"))
    }

    /// Waits for the checkpoint in flight, if any, and commits its offsets to Kafka.
    pub fn finish<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), IngestError> {
        let Some(rx) = self.in_flight.take() else {
            return Ok(());
        };
        match rx.recv() {
            Ok(done) => self.completed(done, consumer),
            Err(_) => self.fail(Self::thread_died()),
        }
    }

    fn completed<C: ConsumerContext>(
        &mut self,
        (ledger, result): (Ledger, Result<Committed, IngestError>),
        consumer: &BaseConsumer<C>,
    ) -> Result<(), IngestError> {
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
        self.metrics.archive_bytes.inc_by(c.stats.bytes);
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

    /// Claims newly assigned partitions and reloads what every instance has archived
    /// (after partitions moved). Returns the ledger's state, whose device sequence
    /// numbers the caller restores.
    pub fn reload<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        assigned: &[PartitionKey],
    ) -> Result<LedgerState, IngestError> {
        self.finish(consumer)?;
        let Some(ledger) = self.ledger.as_mut() else {
            return Err(Self::ledger_gone());
        };
        // Claim first: from then on a previous owner that wakes up cannot commit these partitions.
        // Without the claim (or the floors) nothing may be committed: fail for good.
        let state = match ledger.claim(assigned) {
            Ok(s) => s,
            Err(e) => return self.fail(IngestError::Archive(e)),
        };
        for (k, &v) in &state.offsets {
            let e = self.floors.entry(k.clone()).or_insert(v);
            *e = (*e).max(v);
        }
        Ok(state)
    }
}

/// A ledger error as the source reports it: fencing has its own message.
fn ledger_error(e: std::io::Error) -> IngestError {
    match e.get_ref().and_then(|i| i.downcast_ref::<crate::ledger::Fenced>()) {
        Some(f) => IngestError::Fenced(f.to_string()),
        None => IngestError::Archive(e),
    }
}
