//! Spikes on one series: single readings far from both neighbours, which agree
//! with each other (see [`SpikeTracker`]); a run of them is one episode.

use crate::detect::series::with_unit;

/// What a [`SpikeTracker`] needs (see [`super::SensorFaultSettings`]).
#[derive(Debug, Clone, Copy)]
pub struct SpikeParams {
    /// In usual steps.
    pub threshold: f64,
    pub min_count: u32,
    /// Readings.
    pub window: u64,
    pub warm_up_readings: u64,
}

/// A run of spikes that became an episode: what its anomaly reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpikeEpisode {
    /// The spike that made the run an episode.
    pub ts_ms: i64,
    pub value: f64,
    /// Its neighbours' mean.
    pub expected: f64,
    /// How far apart its neighbours are, in usual steps.
    pub neighbours_apart: f64,
    /// Spikes in the run so far.
    pub count: u32,
    /// The usual step between readings, and the spike's jump in them.
    pub usual_step: f64,
    pub ratio: f64,
}

/// Spikes of one series: a reading that jumps far from both neighbours, in
/// the same direction, while the neighbours agree with each other. That is a
/// sensor (or its wiring) misreading once, not the machine: no physical level
/// goes there and straight back within one sampling interval. Judged one reading
/// late (the next neighbour is needed). "Far" is in usual steps: the mean
/// absolute difference between consecutive readings over the last few hundred
/// readings, or over the last few if larger (a signal that jumps by nature for a
/// while, a vibration while scanning, raises that one), each step clipped to a
/// few usual steps before it is learnt (so spikes barely raise it), and at least
/// the sensor's resolution. Spikes within `window` readings of each other are one
/// run; a run of `min_count` is one episode, reported once, over after `window`
/// readings without a spike. Every channel is tracked on every reading: plain
/// arithmetic, no division once warm.
#[derive(Debug, Clone)]
pub struct SpikeTracker {
    p: SpikeParams,
    /// The two readings before this one: x[i-2], and x[i-1] with its time.
    before: f64,
    last: f64,
    last_ts: i64,
    /// Mean absolute step between consecutive readings: slow and recent.
    slow: f64,
    recent: f64,
    /// Steps learnt so far (the first ones are plain averages).
    steps: u64,
    /// The finest step seen (infinite until two readings differ).
    resolution: f64,
    readings: u64,
    /// Spikes in the current run, and the reading index of the last one.
    run: u32,
    last_spike: u64,
    open: bool,
}

/// Steps are clipped to this many usual steps before they are learnt.
const SPIKE_STEP_CLIP: f64 = 4.0;
/// Per-reading weights of the usual steps (spikes are per reading, not per time).
const SPIKE_SLOW_STEPS: u64 = 128;
const SPIKE_RECENT_ALPHA: f64 = 1.0 / 8.0;

/// `a.max(b)` for numbers known not to be NaN (one instruction).
#[inline(always)]
fn larger(a: f64, b: f64) -> f64 {
    if a > b { a } else { b }
}

impl SpikeTracker {
    pub fn new(p: SpikeParams) -> Self {
        SpikeTracker {
            p,
            before: f64::NAN,
            last: f64::NAN,
            last_ts: 0,
            slow: 0.0,
            recent: 0.0,
            steps: 0,
            resolution: f64::INFINITY,
            readings: 0,
            run: 0,
            last_spike: 0,
            open: false,
        }
    }

    /// Takes one reading; returns the episode a spike of the previous reading opens.
    #[inline]
    pub fn update(&mut self, ts_ms: i64, x: f64) -> Option<SpikeEpisode> {
        if !x.is_finite() {
            return None;
        }
        let (a, c, c_ts) = (self.before, self.last, self.last_ts);
        self.before = c;
        self.last = x;
        self.last_ts = ts_ms;
        self.readings += 1;
        if self.open && self.readings - self.last_spike > self.p.window {
            self.open = false;
            self.run = 0;
        }
        let step_in = (x - c).abs();
        if step_in.is_nan() {
            return None; // the first reading
        }
        // (`&` rather than `&&`: one branch, rarely taken; whether a value repeats,
        // or is above or below its neighbour, is a coin toss on noise.)
        if (step_in < self.resolution) & (step_in > 0.0) {
            self.resolution = step_in;
        }
        let resolution = if self.resolution.is_finite() {
            self.resolution
        } else {
            0.0
        };
        let usual = larger(larger(self.slow, self.recent), larger(resolution, 1e-9 * c.abs()));
        let (up, down) = (c - a, c - x);
        let jump = up.abs().min(down.abs());
        let apart = (x - a).abs();
        // `a` is NaN on the second reading: no spike then (comparisons are false).
        let spike = (up * down > 0.0)
            & (jump > self.p.threshold * usual)
            & (apart <= 0.5 * jump)
            & (self.readings > self.p.warm_up_readings);
        // Learn the step into `x`; after a spike, the step over it (the spike is no step).
        let step = if spike { apart } else { step_in };
        self.steps += 1;
        let step = if self.steps > 8 {
            step.min(SPIKE_STEP_CLIP * usual)
        } else {
            step
        };
        let k = if self.steps < SPIKE_SLOW_STEPS {
            1.0 / self.steps as f64
        } else {
            1.0 / SPIKE_SLOW_STEPS as f64
        };
        self.slow += k * (step - self.slow);
        self.recent += larger(k, SPIKE_RECENT_ALPHA) * (step - self.recent);
        if !spike {
            return None;
        }
        if self.run > 0 && self.readings - self.last_spike > self.p.window {
            self.run = 0;
        }
        self.run = self.run.saturating_add(1);
        self.last_spike = self.readings;
        if self.open || self.run < self.p.min_count {
            return None;
        }
        self.open = true;
        Some(SpikeEpisode {
            ts_ms: c_ts,
            value: c,
            expected: 0.5 * (a + x),
            neighbours_apart: apart / usual,
            count: self.run,
            usual_step: usual,
            ratio: jump / usual,
        })
    }

    /// Whether a run of spikes is being reported.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Forget everything (after a warm-up on averages, whose steps are not live data's).
    pub fn reset(&mut self) {
        *self = SpikeTracker::new(self.p);
    }
}

pub fn spike_explanation(name: &str, unit: &str, e: &SpikeEpisode, p: &SpikeParams) -> String {
    format!(
        "{name}: spikes: {} read between neighbours at {} ({:.1} apart), {:.0} usual steps ({}) away from both; \
         {} such single readings within {} readings of each other: the sensor or its wiring misreads, \
         not the machine",
        with_unit(e.value, unit),
        with_unit(e.expected, unit),
        e.neighbours_apart,
        e.ratio,
        with_unit(e.usual_step, unit),
        e.count,
        p.window
    )
}
