//! The decode-and-verify stage: JSON decoding, the registry lookup and the Ed25519
//! signature and clock checks of each message run on worker threads, so they
//! overlap with each other and with archive work on the consumer thread.
//!
//! Messages go to the workers round robin and their results are taken back in
//! the same round-robin order, so the consumer sees them exactly in poll order:
//! the replay check, archiving, dead-lettering and offset tracking stay
//! sequential, on the consumer thread. At most `capacity` messages are in flight
//! (bounded queues: a slow stage holds the consumer back, nothing piles up).

use crate::channels::Stream;
use crate::registry::DeviceRegistry;
use crate::trust::{FrameVerifier, HEADER_SIGNATURE};
use crate::wire::{self, Frame, Reject, RejectReason};
use rdkafka::message::{Headers, Message, OwnedMessage};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

/// Decodes a message of `stream`'s topic (`None`: not a telemetry topic) and runs
/// every check that needs no memory of earlier frames: known, unrevoked device,
/// signature, clock. The replay check comes after, in arrival order.
pub fn examine(
    msg: &impl Message,
    stream: Option<Stream>,
    registry: &DeviceRegistry,
    verifier: &mut FrameVerifier,
) -> Result<Frame, Reject> {
    match (stream, msg.payload()) {
        (Some(stream), Some(bytes)) => {
            let f = wire::decode(bytes, stream)?;
            let device = registry.get(&f.machine_id).ok_or_else(|| {
                Reject::new(
                    RejectReason::UnknownDevice,
                    format!("machine {} is not enrolled in the device registry", f.machine_id),
                )
            })?;
            let sig = msg
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == HEADER_SIGNATURE))
                .and_then(|h| h.value);
            verifier.verify(&f, device, bytes, sig, chrono::Utc::now().timestamp_millis())?;
            Ok(f)
        }
        (Some(_), None) => Err(Reject::new(RejectReason::Empty, "message has no payload")),
        (None, _) => Err(Reject::new(
            RejectReason::InvalidField,
            format!("unexpected topic {}", msg.topic()),
        )),
    }
}

/// A polled message on its way through the stage.
pub struct Job {
    pub msg: OwnedMessage,
    pub stream: Option<Stream>,
    /// The device registry as it was when the message was polled.
    pub registry: Arc<DeviceRegistry>,
    /// False for a message the archive already holds (it is skipped, not examined).
    pub examine: bool,
}

/// A message and what [`examine`] made of it (`None`: not examined).
pub struct Done {
    pub msg: OwnedMessage,
    pub examined: Option<Result<Frame, Reject>>,
}

struct Worker {
    jobs: Option<SyncSender<Vec<Job>>>,
    done: Receiver<Vec<Done>>,
    handle: Option<JoinHandle<()>>,
}

/// Messages go to the workers in batches of this many (fewer when the consumer has
/// nothing more to poll): a thread wakes up once per batch, not once per message.
const BATCH: usize = 16;

/// The worker threads and the messages in flight between them and the consumer.
pub struct VerifyStage {
    workers: Vec<Worker>,
    /// The batch being filled, not yet handed to a worker.
    filling: Vec<Job>,
    /// Results taken back from a worker, not yet handed on.
    ready: VecDeque<Done>,
    batches_sent: usize,
    batches_received: usize,
    /// Messages submitted and not yet handed on.
    in_flight: usize,
    capacity: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("the decode and verification thread {0} stopped unexpectedly")]
pub struct StageStopped(pub usize);

impl VerifyStage {
    /// Starts `threads` workers (at least one) with at most `capacity` messages in flight.
    pub fn start(threads: usize, capacity: usize, verifier: &FrameVerifier) -> std::io::Result<VerifyStage> {
        let threads = threads.max(1);
        let capacity = capacity.max(BATCH);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            // A worker never holds more than `capacity` messages, so no send ever blocks.
            let batches = capacity.div_ceil(BATCH) + 1;
            let (job_tx, job_rx) = sync_channel::<Vec<Job>>(batches);
            let (done_tx, done_rx) = sync_channel::<Vec<Done>>(batches);
            let mut verifier = verifier.clone();
            let handle = std::thread::Builder::new()
                .name(format!("ingest-verify-{i}"))
                .spawn(move || {
                    let mut registry: Option<Arc<DeviceRegistry>> = None;
                    for batch in job_rx {
                        let mut done = Vec::with_capacity(batch.len());
                        for job in batch {
                            // A new registry may carry new keys: forget the parsed ones.
                            if !registry.as_ref().is_some_and(|r| Arc::ptr_eq(r, &job.registry)) {
                                verifier.reload_keys();
                                registry = Some(job.registry.clone());
                            }
                            let examined = job
                                .examine
                                .then(|| examine(&job.msg, job.stream, &job.registry, &mut verifier));
                            done.push(Done { msg: job.msg, examined });
                        }
                        if done_tx.send(done).is_err() {
                            break;
                        }
                    }
                })?;
            workers.push(Worker {
                jobs: Some(job_tx),
                done: done_rx,
                handle: Some(handle),
            });
        }
        Ok(VerifyStage {
            workers,
            filling: Vec::with_capacity(BATCH),
            ready: VecDeque::new(),
            batches_sent: 0,
            batches_received: 0,
            in_flight: 0,
            capacity,
        })
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn is_full(&self) -> bool {
        self.in_flight >= self.capacity
    }

    /// Queues a message for the workers (handed over once a batch is full, or at the
    /// next [`VerifyStage::flush`]). The caller takes a result first when full.
    pub fn submit(&mut self, job: Job) -> Result<(), StageStopped> {
        debug_assert!(!self.is_full());
        self.filling.push(job);
        self.in_flight += 1;
        if self.filling.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the batch being filled to the next worker.
    pub fn flush(&mut self) -> Result<(), StageStopped> {
        if self.filling.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.filling, Vec::with_capacity(BATCH));
        let i = self.batches_sent % self.workers.len();
        let sent = self.workers[i].jobs.as_ref().is_some_and(|tx| tx.send(batch).is_ok());
        if !sent {
            return Err(StageStopped(i));
        }
        self.batches_sent += 1;
        Ok(())
    }

    /// The oldest message in flight, once examined; `None` when nothing is in
    /// flight, or (with `wait` false) when the oldest is not ready yet.
    pub fn next(&mut self, wait: bool) -> Result<Option<Done>, StageStopped> {
        if self.ready.is_empty() {
            if self.in_flight == 0 {
                return Ok(None);
            }
            if self.batches_received == self.batches_sent {
                // The oldest message is still in the batch being filled.
                if !wait {
                    return Ok(None);
                }
                self.flush()?;
            }
            let i = self.batches_received % self.workers.len();
            let rx = &self.workers[i].done;
            let batch = if wait {
                rx.recv().map_err(|_| StageStopped(i))?
            } else {
                match rx.try_recv() {
                    Ok(b) => b,
                    Err(TryRecvError::Empty) => return Ok(None),
                    Err(TryRecvError::Disconnected) => return Err(StageStopped(i)),
                }
            };
            self.batches_received += 1;
            self.ready.extend(batch);
        }
        let done = self.ready.pop_front();
        if done.is_some() {
            self.in_flight -= 1;
        }
        Ok(done)
    }
}

impl Drop for VerifyStage {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.jobs = None; // disconnects: the worker finishes its queue and ends
        }
        for w in &mut self.workers {
            while w.done.recv().is_ok() {} // unblocks a worker waiting to hand back
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}
