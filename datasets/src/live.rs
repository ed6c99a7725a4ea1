//! Live publishing: runs the simulator against the wall clock and publishes its
//! frames to Kafka until told to stop.

use crate::{Simulator, Tally};
use larmor_ingest::publish::FramePublisher;
use rdkafka::error::KafkaResult;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How fast the simulated fleet talks.
#[derive(Debug, Clone, Copy)]
pub struct LiveConfig {
    /// Samples per second per machine and stream.
    pub rate_hz: f64,
    /// How often each machine sends a frame (a frame batches the samples since the last).
    pub frame_interval: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            rate_hz: 10.0,
            frame_interval: Duration::from_millis(500),
        }
    }
}

/// A simulator shared with whoever wants to inject faults, and the tally of what it sent.
#[derive(Clone)]
pub struct LiveFleet {
    pub simulator: Arc<Mutex<Simulator>>,
    pub tally: Arc<Mutex<Tally>>,
}

impl LiveFleet {
    pub fn new(simulator: Simulator) -> Self {
        LiveFleet {
            simulator: Arc::new(Mutex::new(simulator)),
            tally: Arc::default(),
        }
    }

    /// Publishes until `stop` is set, then waits for every frame to be acknowledged.
    /// Returns the number of frames sent.
    pub fn run(&self, publisher: &FramePublisher, config: LiveConfig, stop: &AtomicBool) -> KafkaResult<u64> {
        let interval_ms = (1000.0 / config.rate_hz.max(0.001)).max(1.0) as i64;
        let mut owed = 0.0_f64;
        let mut sent = 0u64;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            owed += config.rate_hz * config.frame_interval.as_secs_f64();
            let samples = owed.floor() as usize;
            if samples > 0 {
                owed -= samples as f64;
                let now_ms = chrono_now_ms();
                let frames =
                    self.simulator
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .frames(now_ms, samples, interval_ms);
                for f in &frames {
                    publisher.send(f)?;
                }
                let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
                for f in &frames {
                    tally.add(f);
                }
                sent += frames.len() as u64;
            }
            next += config.frame_interval;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now; // running behind: do not try to catch up in a burst
            }
        }
        publisher.flush(Duration::from_secs(30))?;
        Ok(sent)
    }
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
