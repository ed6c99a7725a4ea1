//! Live publishing: runs the simulator against the wall clock, optionally
//! accelerated, and publishes its frames to Kafka until told to stop.

use crate::{Simulator, Tally};
use larmor_ingest::publish::FramePublisher;
use rdkafka::error::KafkaResult;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How fast the simulated fleet talks.
#[derive(Debug, Clone, Copy)]
pub struct LiveConfig {
    /// Samples per second per machine and stream (wall-clock seconds).
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

/// Maps wall-clock time to simulated time: simulated time starts at the wall
/// clock and runs `speed` times faster (3600 = one simulated hour per second).
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    origin_ms: i64,
    started: Instant,
    speed: f64,
}

impl SimClock {
    pub fn start(speed: f64) -> SimClock {
        SimClock {
            origin_ms: wall_now_ms(),
            started: Instant::now(),
            speed: sanitize_speed(speed),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.origin_ms + (self.started.elapsed().as_secs_f64() * 1000.0 * self.speed) as i64
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }
}

fn sanitize_speed(speed: f64) -> f64 {
    if speed.is_finite() && speed > 0.0 { speed } else { 1.0 }
}

/// A simulator shared with whoever wants to inject faults, and the tally of what it sent.
#[derive(Clone)]
pub struct LiveFleet {
    pub simulator: Arc<Mutex<Simulator>>,
    pub tally: Arc<Mutex<Tally>>,
    speed: f64,
}

impl LiveFleet {
    pub fn new(simulator: Simulator) -> Self {
        LiveFleet {
            simulator: Arc::new(Mutex::new(simulator)),
            tally: Arc::default(),
            speed: 1.0,
        }
    }

    /// Time acceleration: simulated seconds per wall-clock second (default 1;
    /// 3600 runs a simulated hour per second, so failures planned with
    /// [`Simulator::with_scenario`] unfold in minutes). The sample rate stays per
    /// wall-clock second, so samples are `speed / rate_hz` simulated seconds apart.
    /// Note: at 3600 the simulated clock passes 2100, the wire format's limit, after about 8 days.
    pub fn with_speed(mut self, speed: f64) -> Self {
        self.speed = sanitize_speed(speed);
        self
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// Publishes until `stop` is set, then waits for every frame to be acknowledged.
    /// Returns the number of frames sent.
    pub fn run(&self, publisher: &FramePublisher, config: LiveConfig, stop: &AtomicBool) -> KafkaResult<u64> {
        let clock = SimClock::start(self.speed);
        let interval_ms = (1000.0 * clock.speed() / config.rate_hz.max(0.001)).max(1.0) as i64;
        let mut owed = 0.0_f64;
        let mut sent = 0u64;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            owed += config.rate_hz * config.frame_interval.as_secs_f64();
            let samples = owed.floor() as usize;
            if samples > 0 {
                owed -= samples as f64;
                let frames = self.simulator.lock().unwrap_or_else(|p| p.into_inner()).frames(
                    clock.now_ms(),
                    samples,
                    interval_ms,
                );
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

fn wall_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_runs_at_its_speed() {
        let c = SimClock {
            origin_ms: 1_000,
            started: Instant::now() - Duration::from_secs(2),
            speed: 3600.0,
        };
        let t = c.now_ms();
        assert!(
            (7_201_000..30_000_000).contains(&t),
            "two seconds at 3600x is two hours: {t}"
        );
        assert_eq!(SimClock::start(f64::NAN).speed(), 1.0);
        assert_eq!(SimClock::start(-3.0).speed(), 1.0);
    }
}
