//! Bounded queues between stages. Each queue has a name (its `queue` label in
//! the metrics), a capacity and a stated policy for when it is full
//! ([`WhenFull`]): block the producer (backpressure, timed in
//! `larmor_queue_blocked_seconds_total`) or drop the item (counted in
//! `larmor_queue_dropped_total`). Nothing piles up unbounded, and nothing is
//! lost without a counter saying so.

use prometheus::{CounterVec, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// What a producer does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: the producer slows down to the consumer's pace.
    Block,
    /// Drop the new item and count it: the producer never waits for this consumer.
    Drop,
}

/// The metrics every queue reports, by queue name.
#[derive(Clone)]
pub struct QueueMetrics {
    items: IntGaugeVec,
    capacity: IntGaugeVec,
    dropped: IntCounterVec,
    blocked_seconds: CounterVec,
}

impl QueueMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(QueueMetrics {
            items: larmor_metrics::QUEUE_ITEMS.int_gauge_vec(r)?,
            capacity: larmor_metrics::QUEUE_CAPACITY.int_gauge_vec(r)?,
            dropped: larmor_metrics::QUEUE_DROPPED.int_counter_vec(r)?,
            blocked_seconds: larmor_metrics::QUEUE_BLOCKED_SECONDS.counter_vec(r)?,
        })
    }

    /// Metrics registered nowhere (tools and tests that run stages without `/metrics`).
    pub fn unregistered() -> Self {
        QueueMetrics::register(&Registry::new()).expect("a fresh registry takes every queue metric")
    }
}

/// The producing end of a queue.
pub struct Outlet<T> {
    name: &'static str,
    tx: SyncSender<T>,
    when_full: WhenFull,
    items: IntGauge,
    dropped: prometheus::IntCounter,
    blocked_seconds: prometheus::Counter,
}

/// The consuming end of a queue. Dropped with items still queued (its stage
/// stopped), it counts them as dropped.
pub struct Inlet<T> {
    rx: Receiver<T>,
    items: IntGauge,
    dropped: prometheus::IntCounter,
}

/// The consumer is gone: nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// What happened to a sent item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Queued,
    /// The queue was full and drops when full.
    Dropped,
}

/// A bounded queue named `name` (the `queue` label of its metrics).
pub fn queue<T>(name: &'static str, capacity: usize, when_full: WhenFull, m: &QueueMetrics) -> (Outlet<T>, Inlet<T>) {
    let capacity = capacity.max(1);
    let (tx, rx) = sync_channel(capacity);
    m.capacity.with_label_values(&[name]).set(capacity as i64);
    let items = m.items.with_label_values(&[name]);
    let dropped = m.dropped.with_label_values(&[name]);
    let outlet = Outlet {
        name,
        tx,
        when_full,
        items: items.clone(),
        dropped: dropped.clone(),
        blocked_seconds: m.blocked_seconds.with_label_values(&[name]),
    };
    (outlet, Inlet { rx, items, dropped })
}

impl<T> Outlet<T> {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Puts an item in the queue, as the queue's policy says when it is full. An
    /// item sent to a closed queue (its consumer stopped) counts as dropped.
    pub fn send(&self, item: T) -> Result<Sent, Closed> {
        // Counted before it can be received, so the gauge never goes below zero
        // (an item a blocked producer is handing over counts too).
        self.items.inc();
        let outcome = match self.tx.try_send(item) {
            Ok(()) => Ok(Sent::Queued),
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
                Err(Closed)
            }
            Err(TrySendError::Full(item)) => match self.when_full {
                WhenFull::Drop => {
                    self.dropped.inc();
                    // Said at the 1st, 2nd, 4th, 8th... drop: loud at first, never a flood.
                    let n = self.dropped.get();
                    if n.is_power_of_two() {
                        tracing::warn!(
                            queue = self.name,
                            dropped = n,
                            "queue full: its consumer is too slow, items are dropped"
                        );
                    }
                    Ok(Sent::Dropped)
                }
                WhenFull::Block => {
                    let waited = Instant::now();
                    let r = self.tx.send(item).map(|()| Sent::Queued).map_err(|_| {
                        self.dropped.inc();
                        Closed
                    });
                    self.blocked_seconds.inc_by(waited.elapsed().as_secs_f64());
                    r
                }
            },
        };
        if outcome != Ok(Sent::Queued) {
            self.items.dec();
        }
        outcome
    }
}

impl<T> Inlet<T> {
    /// The next item, waiting at most `timeout`. `Disconnected` once every outlet
    /// is gone and the queue is empty.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let item = self.rx.recv_timeout(timeout)?;
        self.items.dec();
        Ok(item)
    }

    /// The next item; `None` once every outlet is gone and the queue is empty.
    pub fn recv(&self) -> Option<T> {
        let item = self.rx.recv().ok()?;
        self.items.dec();
        Some(item)
    }
}

impl<T> Drop for Inlet<T> {
    fn drop(&mut self) {
        while self.rx.try_recv().is_ok() {
            self.items.dec();
            self.dropped.inc();
        }
    }
}

/// Where a stage puts what it produces: one queue, or several ([`Tee`]).
pub trait Emit<T>: Send {
    fn emit(&self, item: T) -> Result<Sent, Closed>;
}

impl<T: Send> Emit<T> for Outlet<T> {
    fn emit(&self, item: T) -> Result<Sent, Closed> {
        self.send(item)
    }
}

/// Emits nowhere: for a source run without stages after it (tools, benchmarks).
pub struct Discard;

impl<T: Send> Emit<T> for Discard {
    fn emit(&self, _: T) -> Result<Sent, Closed> {
        Ok(Sent::Queued)
    }
}

/// Every item to each of several queues (a fan-out), each with its own policy.
pub struct Tee<T>(pub Vec<Outlet<T>>);

impl<T: Clone + Send> Emit<T> for Tee<T> {
    /// `Closed` only when every queue is closed; `Dropped` when any queue dropped it.
    fn emit(&self, item: T) -> Result<Sent, Closed> {
        let mut open = false;
        let mut sent = Sent::Queued;
        for o in &self.0 {
            match o.send(item.clone()) {
                Ok(s) => {
                    open = true;
                    if s == Sent::Dropped {
                        sent = Sent::Dropped;
                    }
                }
                Err(Closed) => tracing::debug!(queue = o.name, "queue closed"),
            }
        }
        if open { Ok(sent) } else { Err(Closed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gathered(r: &Registry, name: &str, queue: &str) -> f64 {
        r.gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| m.get_label().iter().any(|l| l.value() == queue))
            .map(|m| m.get_gauge().get_value() + m.get_counter().get_value())
            .sum()
    }

    #[test]
    fn a_dropping_queue_never_waits_and_counts_what_it_drops() {
        let r = Registry::new();
        let m = QueueMetrics::register(&r).unwrap();
        let (out, inlet) = queue::<u32>("alerts", 4, WhenFull::Drop, &m);
        // Nobody consumes: the producer still finishes at once.
        let sent: Vec<Sent> = (0..10).map(|i| out.send(i).unwrap()).collect();
        assert_eq!(sent.iter().filter(|s| **s == Sent::Queued).count(), 4);
        assert_eq!(gathered(&r, "larmor_queue_dropped_total", "alerts"), 6.0);
        assert_eq!(gathered(&r, "larmor_queue_items", "alerts"), 4.0);
        assert_eq!(gathered(&r, "larmor_queue_capacity", "alerts"), 4.0);
        // The first four are kept, in order.
        let got: Vec<u32> = (0..4).map(|_| inlet.recv().unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 3]);
        assert_eq!(gathered(&r, "larmor_queue_items", "alerts"), 0.0);
        assert_eq!(out.send(9), Ok(Sent::Queued));
        // A consumer that stops with items queued: they count as dropped, as does
        // what is sent to its closed queue.
        drop(inlet);
        assert_eq!(gathered(&r, "larmor_queue_items", "alerts"), 0.0);
        assert_eq!(out.send(1), Err(Closed));
        assert_eq!(gathered(&r, "larmor_queue_dropped_total", "alerts"), 8.0);
    }

    #[test]
    fn a_blocking_queue_waits_for_room_and_times_the_wait() {
        let r = Registry::new();
        let m = QueueMetrics::register(&r).unwrap();
        let (out, inlet) = queue::<u32>("detect", 1, WhenFull::Block, &m);
        out.send(1).unwrap();
        let consumer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let a = inlet.recv();
            let b = inlet.recv();
            (a, b, inlet.recv())
        });
        assert_eq!(out.send(2), Ok(Sent::Queued), "blocked until the consumer made room");
        drop(out);
        assert_eq!(consumer.join().unwrap(), (Some(1), Some(2), None));
        assert!(gathered(&r, "larmor_queue_blocked_seconds_total", "detect") >= 0.05);
        assert_eq!(gathered(&r, "larmor_queue_dropped_total", "detect"), 0.0);
    }

    #[test]
    fn a_tee_feeds_every_queue_and_closes_with_the_last() {
        let m = QueueMetrics::unregistered();
        let (a, ra) = queue::<u8>("a", 2, WhenFull::Block, &m);
        let (b, rb) = queue::<u8>("b", 1, WhenFull::Drop, &m);
        let tee = Tee(vec![a, b]);
        assert_eq!(tee.emit(1), Ok(Sent::Queued));
        assert_eq!(tee.emit(2), Ok(Sent::Dropped), "b is full");
        assert_eq!((ra.recv(), ra.recv(), rb.recv()), (Some(1), Some(2), Some(1)));
        drop(rb);
        assert_eq!(tee.emit(3), Ok(Sent::Queued), "a is still open");
        drop(ra);
        assert_eq!(tee.emit(4), Err(Closed));
    }
}
