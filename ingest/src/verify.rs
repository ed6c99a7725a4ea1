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
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    handle: Option<JoinHandle<()>>,
}

/// The worker threads and the messages in flight between them and the consumer.
pub struct VerifyStage {
    workers: Vec<Worker>,
    sent: usize,
    received: usize,
    capacity: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("the decode and verification thread {0} stopped unexpectedly")]
pub struct StageStopped(pub usize);

impl VerifyStage {
    /// Starts `threads` workers (at least one) with at most `capacity` messages in flight.
    pub fn start(threads: usize, capacity: usize, verifier: &FrameVerifier) -> std::io::Result<VerifyStage> {
        let threads = threads.max(1);
        let capacity = capacity.max(threads);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            // Each worker holds at most `capacity` messages, so no send ever blocks.
            let (job_tx, job_rx) = sync_channel::<Job>(capacity);
            let (done_tx, done_rx) = sync_channel::<Done>(capacity);
            let mut verifier = verifier.clone();
            let handle = std::thread::Builder::new()
                .name(format!("ingest-verify-{i}"))
                .spawn(move || {
                    let mut registry: Option<Arc<DeviceRegistry>> = None;
                    for job in job_rx {
                        // A new registry may carry new keys: forget the parsed ones.
                        if !registry.as_ref().is_some_and(|r| Arc::ptr_eq(r, &job.registry)) {
                            verifier.reload_keys();
                            registry = Some(job.registry.clone());
                        }
                        let examined = job
                            .examine
                            .then(|| examine(&job.msg, job.stream, &job.registry, &mut verifier));
                        if done_tx.send(Done { msg: job.msg, examined }).is_err() {
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
            sent: 0,
            received: 0,
            capacity,
        })
    }

    pub fn in_flight(&self) -> usize {
        self.sent - self.received
    }

    pub fn is_full(&self) -> bool {
        self.in_flight() >= self.capacity
    }

    /// Hands a message to the next worker. The caller takes a result first when full.
    pub fn submit(&mut self, job: Job) -> Result<(), StageStopped> {
        debug_assert!(!self.is_full());
        let i = self.sent % self.workers.len();
        let sent = self.workers[i].jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if !sent {
            return Err(StageStopped(i));
        }
        self.sent += 1;
        Ok(())
    }

    /// The oldest message in flight, once examined; `None` when nothing is in
    /// flight, or (with `wait` false) when the oldest is not ready yet.
    pub fn next(&mut self, wait: bool) -> Result<Option<Done>, StageStopped> {
        if self.in_flight() == 0 {
            return Ok(None);
        }
        let i = self.received % self.workers.len();
        let rx = &self.workers[i].done;
        let got = if wait {
            rx.recv().map_err(|_| StageStopped(i))?
        } else {
            match rx.try_recv() {
                Ok(d) => d,
                Err(TryRecvError::Empty) => return Ok(None),
                Err(TryRecvError::Disconnected) => return Err(StageStopped(i)),
            }
        };
        self.received += 1;
        Ok(Some(got))
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
