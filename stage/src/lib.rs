//! The pipeline's building blocks, in Vector's words: a **source** brings
//! events in, a **transform** turns each event into zero or more others, a
//! **sink** takes events out of the pipeline (a table, a delivery channel).
//! Stages run on their own threads and are joined by bounded [`queue`]s, each
//! with a stated policy for when it is full. The topology that connects them
//! is built in one place (`cli/src/topology.rs`).

pub mod queue;

pub use queue::{Closed, Discard, Emit, Inlet, Outlet, QueueMetrics, Sent, Tee, WhenFull, queue};

use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Brings events into the pipeline until `stop` is set, then finishes cleanly.
pub trait Source: Send {
    type Output: Send;
    /// What the source did, for the end-of-run report.
    type Report: Send;
    type Error: Send;
    fn run(self, stop: &AtomicBool, out: &dyn Emit<Self::Output>) -> Result<Self::Report, Self::Error>;
}

/// Turns each input into zero or more outputs.
pub trait Transform: Send + 'static {
    type Input: Send + 'static;
    type Output: Send + 'static;
    fn transform(&mut self, input: Self::Input, out: &mut Vec<Self::Output>);
}

/// The end of a path: takes each input out of the pipeline.
pub trait Sink: Send + 'static {
    type Input: Send + 'static;
    fn consume(&mut self, input: Self::Input);
    /// Writes what is buffered. Called at least every flush interval while the
    /// sink runs, and once when its input closes.
    fn flush(&mut self) {}
}

/// Runs a transform on its own thread until its input closes; then its output
/// closes too (the outlets are dropped), so the stages downstream finish in turn.
pub fn spawn_transform<T, E>(
    name: &str,
    mut transform: T,
    input: Inlet<T::Input>,
    output: E,
) -> std::io::Result<JoinHandle<()>>
where
    T: Transform,
    E: Emit<T::Output> + 'static,
{
    let name = name.to_string();
    std::thread::Builder::new().name(name.clone()).spawn(move || {
        let mut out = Vec::new();
        while let Some(item) = input.recv() {
            transform.transform(item, &mut out);
            for o in out.drain(..) {
                if output.emit(o).is_err() {
                    tracing::error!(stage = %name, "every queue after this stage is closed; its output is lost");
                }
            }
        }
    })
}

/// Runs a sink on its own thread until its input closes, flushing at least
/// every `flush_every` and once at the end.
pub fn spawn_sink<S: Sink>(
    name: &str,
    mut sink: S,
    input: Inlet<S::Input>,
    flush_every: Duration,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_string()).spawn(move || {
        let mut last_flush = Instant::now();
        loop {
            let wait = flush_every.saturating_sub(last_flush.elapsed());
            match input.recv_timeout(wait) {
                Ok(item) => sink.consume(item),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if last_flush.elapsed() >= flush_every {
                sink.flush();
                last_flush = Instant::now();
            }
        }
        sink.flush();
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Doubler;
    impl Transform for Doubler {
        type Input = u32;
        type Output = u32;
        fn transform(&mut self, x: u32, out: &mut Vec<u32>) {
            if x.is_multiple_of(2) {
                out.extend([x, x]);
            }
        }
    }

    struct Collect(Arc<Mutex<(Vec<u32>, usize)>>);
    impl Sink for Collect {
        type Input = u32;
        fn consume(&mut self, x: u32) {
            self.0.lock().unwrap().0.push(x);
        }
        fn flush(&mut self) {
            self.0.lock().unwrap().1 += 1;
        }
    }

    #[test]
    fn stages_run_until_their_input_closes_and_flush_at_the_end() {
        let m = QueueMetrics::unregistered();
        let (src, t_in) = queue("numbers", 8, WhenFull::Block, &m);
        let (t_out, s_in) = queue("doubled", 8, WhenFull::Block, &m);
        let seen = Arc::new(Mutex::new((Vec::new(), 0)));
        let t = spawn_transform("double", Doubler, t_in, t_out).unwrap();
        let s = spawn_sink("collect", Collect(seen.clone()), s_in, Duration::from_secs(3600)).unwrap();
        for i in 0..6 {
            src.send(i).unwrap();
        }
        drop(src);
        t.join().unwrap();
        s.join().unwrap();
        let (items, flushes) = seen.lock().unwrap().clone();
        assert_eq!(items, [0, 0, 2, 2, 4, 4]);
        assert_eq!(flushes, 1, "flushed once, when the input closed");
    }

    #[test]
    fn a_sink_flushes_on_its_interval_while_idle() {
        let m = QueueMetrics::unregistered();
        let (src, s_in) = queue::<u32>("idle", 1, WhenFull::Block, &m);
        let seen = Arc::new(Mutex::new((Vec::new(), 0)));
        let s = spawn_sink("collect", Collect(seen.clone()), s_in, Duration::from_millis(20)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop(src);
        s.join().unwrap();
        assert!(seen.lock().unwrap().1 >= 3, "{:?}", seen.lock().unwrap());
    }
}
