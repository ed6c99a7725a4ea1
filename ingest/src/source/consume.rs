//! The consume loop, on the consumer thread. Each polled message goes to the
//! decode-and-verify workers ([`crate::verify`]); results come back in poll
//! order and are handled here one by one: the replay check, then the archive
//! buffer or the dead-letter queue, then the offset. Accepted frames are
//! emitted to the next stage (detection) after they are buffered for the
//! archive. On stop, the loop drains to the high watermarks and checkpoints.

use super::checkpoint::{Checkpoint, Sequences, sequence_keys};
use super::{Counters, IngestError, KafkaSource, PartitionKey, SourceReport, lock};
use crate::channels::Stream;
use crate::kafka::TopicsConfig;
use crate::metrics::IngestMetrics;
use crate::registry::{DeviceRegistry, RegistryWatch, SharedRegistry};
use crate::trust::TrustState;
use crate::verify::{Done, Job, VerifyStage, examine};
use crate::wire::Frame;
use larmor_stage::Emit;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Everything a message changes. Only the consumer thread touches it (the
/// rebalance callbacks run inside its `poll`); the mutex lets the callbacks reach it.
pub(super) struct SourceState {
    pub checkpoint: Checkpoint,
    pub stage: VerifyStage,
    /// Device sequence numbers (the replay check), restored from the ledger.
    pub trust: TrustState,
    /// Sequence numbers that changed since the last checkpoint.
    pub dirty_sequences: HashSet<(String, Stream)>,
    pub topics: TopicsConfig,
    /// The registry in force (a handle on `shared`'s, taken at each reload).
    pub registry: Arc<DeviceRegistry>,
    pub shared: SharedRegistry,
    /// Reloads the registry file when it changes (`None`: fixed for the run).
    pub watch: Option<RegistryWatch>,
    pub metrics: IngestMetrics,
    pub counters: Counters,
    /// Next offset to read per partition, as far as this instance has handled.
    pub positions: HashMap<PartitionKey, i64>,
    /// Accepted frames not yet emitted, in order.
    pub accepted: VecDeque<Frame>,
    pub report: SourceReport,
}

impl KafkaSource {
    /// Consumes until `stop` is set, then drains to the high watermarks seen at that
    /// moment (bounded by the drain timeout) and checkpoints.
    pub(super) fn consume(self, stop: &AtomicBool, out: &dyn Emit<Frame>) -> Result<SourceReport, IngestError> {
        let mut drain: Option<(Vec<(PartitionKey, i64)>, Instant)> = None;
        let started = Instant::now();
        loop {
            if let Some(msg) = lock(&self.failure).take() {
                return Err(IngestError::Rebalance(msg));
            }
            // A drain needs the partitions first: before the group assigns them there is
            // nothing to measure it against (wait for that, bounded by the drain timeout).
            let ready = self.assigned.load(Ordering::Relaxed) || started.elapsed() >= self.drain_timeout;
            if drain.is_none() && stop.load(Ordering::Relaxed) && ready {
                drain = Some((self.high_watermarks()?, Instant::now() + self.drain_timeout));
                tracing::info!("draining to the high watermarks");
            }
            if let Some((targets, deadline)) = &drain {
                let mut state = lock(&self.state);
                let done = targets
                    .iter()
                    .all(|(tp, high)| state.positions.get(tp).copied().unwrap_or(0) >= *high);
                if done || Instant::now() >= *deadline {
                    state.report.drained = done;
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
            let mut state = lock(&self.state);
            match polled {
                Some(Ok(msg)) => state.submit(msg.detach())?,
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
                let sequences = state.take_sequences();
                state.checkpoint.start(&self.consumer, sequences)?;
            }
            let accepted = std::mem::take(&mut state.accepted);
            drop(state);
            emit(out, accepted);
        }
        tracing::info!("drained; final checkpoint");
        let mut state = lock(&self.state);
        // Messages still in flight were polled: handle them, as the checkpoint covers them.
        state.settle()?;
        state.checkpoint_now(&self.consumer)?;
        let accepted = std::mem::take(&mut state.accepted);
        let mut report = state.report;
        report.archived_rows = state.checkpoint.archived_rows;
        report.archive_files = state.checkpoint.archive_files;
        drop(state);
        emit(out, accepted);
        Ok(report)
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
                let mut state = lock(&self.state);
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

/// Hands accepted frames to the next stage, in order.
fn emit(out: &dyn Emit<Frame>, frames: VecDeque<Frame>) {
    for frame in frames {
        if out.emit(frame).is_err() {
            tracing::debug!("the detection stage has stopped; frames are archived but not analysed");
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

    /// The sequence numbers that changed since the last checkpoint, for the next one.
    pub fn take_sequences(&mut self) -> Sequences {
        sequence_keys(self.dirty_sequences.drain(), self.trust.sequences())
    }

    /// Checkpoints everything handled so far and waits for it (rebalance, stop).
    pub fn checkpoint_now<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), IngestError> {
        let sequences = self.take_sequences();
        self.checkpoint.run(consumer, sequences)
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
                self.trust.reload_keys();
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
    pub fn settle(&mut self) -> Result<(), IngestError> {
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
                self.trust.verifier_mut(),
            ),
        };
        // The replay check, in arrival order: after the stateless checks, as in `TrustState::check`.
        let decoded = examined.and_then(|f| self.trust.admit(&f).map(|()| f));
        let cp = &mut self.checkpoint;
        match &decoded {
            Ok(frame) => {
                cp.archive.append(frame);
                self.dirty_sequences.insert((frame.machine_id.clone(), frame.stream));
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
