//! Sensor faults, reported as such (`AnomalyKind::SensorFault`), never as a
//! machine fault: a stuck sensor (the same value far longer than this series
//! ever repeats one), dropouts (a stream or a channel that stops reporting) and
//! spikes (single readings far from both neighbours, which agree with each other:
//! no machine jumps there and straight back, see [`SpikeTracker`]). Live, a whole
//! stream's gap is one anomaly when it resumes, a channel missing from a stream
//! that keeps reporting is one anomaly while it lasts, and a run of spikes is one
//! anomaly.
//!
//! A gateway's clock set wrong (clock skew) is not judged here: it shifts every
//! timestamp of the machine alike, so the readings stay consistent with each
//! other (same spacing, same values, every stream shifted together). What gives
//! it away is the arrival time, which ingest checks (frames too far ahead of its
//! clock, or too late, are refused); the readings alone show at most a daily
//! pattern running late or early against the machine's history, which a
//! per-series detector cannot tell from a changed schedule.

use super::series::{Debounce, Decay, Episode, EwStats, Kernel, WarmUp, channel_mask, fmt_duration, score, with_unit};
use super::{Anomaly, AnomalyKind, ConfigError, Detector, MachineMap};
use larmor_ingest::{CATALOG, ChannelId, Frame, Stream};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[detect.sensor_fault]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SensorFaultConfig {
    /// Stuck: at least this many identical readings in a row...
    pub stuck_min_readings: u32,
    /// ...lasting at least this long...
    #[serde(with = "humantime_serde")]
    pub stuck_min_duration: Duration,
    /// ...and at most this likely, given how often the series repeats a value.
    pub stuck_probability: f64,
    /// Dropout: a gap of this many usual intervals...
    pub gap_factor: f64,
    /// ...and at least this long.
    #[serde(with = "humantime_serde")]
    pub min_gap: Duration,
    /// Readings a series needs before it is judged.
    pub warm_up_readings: u32,
    /// Normal readings needed to end a stuck episode.
    pub clear_after: u32,
    /// Spike: a reading at least this many usual steps (the mean absolute
    /// difference between consecutive readings) from both neighbours, on the
    /// same side, while the neighbours are within half that jump of each other...
    pub spike_threshold: f64,
    /// ...at least this many of them, each within `spike_window` readings of the
    /// last, make one anomaly (1: every lone spike is reported)...
    pub spike_min_count: u32,
    /// ...which ends after this many readings without a spike.
    pub spike_window: u32,
    /// Channels checked for stuck values, spikes and dropouts (discrete channels repeat by nature).
    pub channels: Vec<String>,
}

impl Default for SensorFaultConfig {
    fn default() -> Self {
        SensorFaultConfig {
            stuck_min_readings: 30,
            stuck_min_duration: Duration::from_secs(15 * 60),
            stuck_probability: 1e-6,
            gap_factor: 10.0,
            min_gap: Duration::from_secs(120),
            warm_up_readings: 100,
            clear_after: 1,
            spike_threshold: 8.0,
            spike_min_count: 2,
            spike_window: 300,
            channels: CATALOG
                .iter()
                .filter(|c| c.name != "door_open" && c.name != "occupancy")
                .map(|c| c.name.to_string())
                .collect(),
        }
    }
}

/// What one kernel needs.
#[derive(Debug, Clone, Copy)]
pub struct SensorFaultParams {
    pub stuck_min_readings: u32,
    pub stuck_min_duration: Duration,
    pub stuck_probability: f64,
    pub gap_factor: f64,
    pub min_gap: Duration,
    pub warm_up_readings: u32,
    /// Judge gaps per series (a CSV). Live, gaps are judged per stream instead.
    pub gaps: bool,
}

impl SensorFaultConfig {
    /// What a [`SpikeTracker`] needs.
    pub fn spike_params(&self) -> SpikeParams {
        SpikeParams {
            threshold: self.spike_threshold,
            min_count: self.spike_min_count.max(1),
            window: u64::from(self.spike_window.max(1)),
            warm_up_readings: u64::from(self.warm_up_readings),
        }
    }

    pub fn params(&self) -> SensorFaultParams {
        SensorFaultParams {
            stuck_min_readings: self.stuck_min_readings.max(2),
            stuck_min_duration: self.stuck_min_duration,
            stuck_probability: self.stuck_probability,
            gap_factor: self.gap_factor,
            min_gap: self.min_gap,
            warm_up_readings: self.warm_up_readings,
            gaps: true,
        }
    }

    pub fn detector(&self) -> Result<SensorFaultDetector, ConfigError> {
        if !(self.stuck_probability > 0.0 && self.stuck_probability < 1.0) {
            return Err(ConfigError::invalid(
                "sensor_fault",
                "stuck_probability must be between 0 and 1",
            ));
        }
        if self.gap_factor.is_nan() || self.gap_factor < 1.0 {
            return Err(ConfigError::invalid("sensor_fault", "gap_factor must be at least 1"));
        }
        if self.spike_threshold.is_nan() || self.spike_threshold <= 0.0 {
            return Err(ConfigError::invalid("sensor_fault", "spike_threshold must be above 0"));
        }
        if self.spike_window == 0 {
            return Err(ConfigError::invalid("sensor_fault", "spike_window must be at least 1"));
        }
        Ok(SensorFaultDetector {
            params: SensorFaultParams {
                gaps: false,
                ..self.params()
            },
            spikes: self.spike_params(),
            debounce: Debounce {
                confirm: 1,
                clear_after: self.clear_after,
            },
            watched: channel_mask("sensor_fault", &self.channels)?,
            machines: MachineMap::default(),
        })
    }
}

/// The usual interval between readings, and gaps much longer than it.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    last_ts: Option<i64>,
    usual: EwStats,
    count: u32,
    factor: f64,
    min_gap_ms: f64,
    warm_up: u32,
}

impl Intervals {
    pub fn new(p: &SensorFaultParams) -> Self {
        Intervals {
            last_ts: None,
            usual: EwStats::default(),
            count: 0,
            factor: p.gap_factor,
            min_gap_ms: p.min_gap.as_secs_f64() * 1000.0,
            warm_up: p.warm_up_readings,
        }
    }

    /// The gap that counts as a dropout, ms.
    pub fn limit_ms(&self) -> f64 {
        (self.factor * self.usual.mean).max(self.min_gap_ms)
    }

    pub fn usual_ms(&self) -> f64 {
        self.usual.mean
    }

    /// Takes a reading's timestamp; returns the gap before it when that is a dropout.
    #[inline]
    pub fn observe(&mut self, ts_ms: i64) -> Option<f64> {
        let Some(last) = self.last_ts else {
            self.last_ts = Some(ts_ms);
            return None;
        };
        let dt = (ts_ms - last) as f64;
        if dt <= 0.0 {
            return None; // repeated or late: not an interval
        }
        self.last_ts = Some(ts_ms);
        let warm = self.count >= self.warm_up;
        if warm && dt > self.limit_ms() {
            return Some(dt);
        }
        self.count = self.count.saturating_add(1);
        // Sample-based weight: the usual interval follows a rate change within a few hundred readings.
        self.usual.push_mean(dt, 1.0 / 256.0);
        None
    }
}

/// Below this share of its usual magnitude a repeated value is a floor (a stopped compressor's vibration).
const FLOOR_SHARE: f64 = 0.2;

/// Stuck values (and, on a plain series, gaps) of one series.
pub struct SensorFaultKernel {
    p: SensorFaultParams,
    intervals: Intervals,
    warm: WarmUp,
    last: f64,
    run: u32,
    run_start: i64,
    /// Share of readings that repeat the previous value, learnt outside long runs.
    repeats: EwStats,
    /// Usual magnitude (7-day half-life): a value near zero against it is a
    /// stopped machine reading its floor, not a frozen sensor.
    magnitude: EwStats,
    magnitude_decay: Decay,
    last_ts: Option<i64>,
    required: f64,
    warm_count: u32,
    min_duration_ms: f64,
    gap_ms: f64,
    cause: Cause,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cause {
    None,
    Stuck,
    Gap,
}

impl SensorFaultKernel {
    fn required_run(&self) -> f64 {
        let p = self.repeats.mean;
        let by_chance = if p <= 0.0 {
            0.0
        } else if p >= 1.0 {
            f64::INFINITY
        } else {
            self.p.stuck_probability.ln() / p.ln()
        };
        by_chance.max(f64::from(self.p.stuck_min_readings))
    }
}

impl Kernel for SensorFaultKernel {
    type Config = SensorFaultParams;

    fn new(p: &SensorFaultParams) -> Self {
        SensorFaultKernel {
            p: *p,
            intervals: Intervals::new(p),
            warm: WarmUp::new(u64::from(p.warm_up_readings), Duration::ZERO),
            last: f64::NAN,
            run: 0,
            run_start: 0,
            repeats: EwStats::default(),
            magnitude: EwStats::default(),
            magnitude_decay: Decay::new(Duration::from_secs(7 * 86_400)),
            last_ts: None,
            required: f64::INFINITY,
            warm_count: 0,
            min_duration_ms: (p.stuck_min_duration.as_secs_f64() * 1000.0).max(1.0),
            gap_ms: 0.0,
            cause: Cause::None,
        }
    }

    #[inline]
    fn update(&mut self, ts_ms: i64, x: f64) -> f64 {
        let gap = if self.p.gaps {
            self.intervals.observe(ts_ms)
        } else {
            None
        };
        if !x.is_finite() {
            return 0.0;
        }
        let repeat = x == self.last;
        if repeat {
            self.run = self.run.saturating_add(1);
        } else {
            self.run = 1;
            self.run_start = ts_ms;
            self.last = x;
        }
        let dt = ts_ms - self.last_ts.unwrap_or(ts_ms);
        self.last_ts = Some(ts_ms);
        if self.run < self.p.stuck_min_readings {
            self.repeats.push_mean(if repeat { 1.0 } else { 0.0 }, 1.0 / 256.0);
            let a = self.magnitude_decay.alpha(dt);
            self.magnitude.push_mean(x.abs(), a);
        }
        if !self.warm.tick(ts_ms) {
            return 0.0;
        }
        // ln() is the costly part: the repeat share moves slowly, refresh it every 64 readings.
        if self.run >= self.p.stuck_min_readings || self.warm_count & 63 == 0 {
            self.required = self.required_run();
        }
        self.warm_count = self.warm_count.wrapping_add(1);
        // A new value starts a run now: its duration, so the ratio, is 0 (no divisions).
        let stuck = if !repeat || x.abs() < FLOOR_SHARE * self.magnitude.mean {
            0.0
        } else {
            (f64::from(self.run) / self.required).min((ts_ms - self.run_start) as f64 / self.min_duration_ms)
        };
        let gap_ratio = gap.map_or(0.0, |g| g / self.intervals.limit_ms().max(1.0));
        self.gap_ms = gap.unwrap_or(0.0);
        self.cause = if gap_ratio >= 1.0 {
            Cause::Gap
        } else if stuck >= 1.0 {
            Cause::Stuck
        } else {
            Cause::None
        };
        score(stuck.max(gap_ratio))
    }

    fn explain(&self, value: f64, unit: &str) -> String {
        match self.cause {
            Cause::Gap => format!(
                "no reading for {} (usually every {}): the sensor or its link dropped out",
                fmt_ms(self.gap_ms),
                fmt_ms(self.intervals.usual_ms())
            ),
            _ => format!(
                "stuck at {}: {} identical readings (this sensor repeats a value {:.0} % of the time, \
                 so {:.0} in a row is implausible): a sensor fault, not the machine",
                with_unit(value, unit),
                self.run,
                100.0 * self.repeats.mean,
                self.required
            ),
        }
    }

    fn end_warm_up(&mut self) {
        // Archive averages repeat less and arrive less often than live readings.
        self.intervals = Intervals::new(&self.p);
        self.repeats.reset();
        self.warm.restart();
        self.last_ts = None;
        self.run = 0;
    }
}

fn fmt_ms(ms: f64) -> String {
    fmt_duration(Duration::from_secs_f64((ms / 1000.0).max(0.0)))
}

/// What a [`SpikeTracker`] needs (see [`SensorFaultConfig`]).
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

struct ChannelState {
    kernel: SensorFaultKernel,
    episode: Episode,
    spikes: SpikeTracker,
    last_seen: i64,
    missing: bool,
}

struct MachineState {
    streams: [Intervals; 3],
    channels: Vec<Option<ChannelState>>,
}

/// Stuck channels, missing channels and stream dropouts, per machine.
pub struct SensorFaultDetector {
    params: SensorFaultParams,
    spikes: SpikeParams,
    debounce: Debounce,
    watched: Vec<bool>,
    machines: MachineMap<MachineState>,
}

fn sensor_anomaly(
    frame: &Frame,
    channels: Vec<&'static str>,
    ts_ms: i64,
    value: f64,
    score: f64,
    why: String,
) -> Anomaly {
    Anomaly {
        machine_id: frame.machine_id.clone(),
        stream: frame.stream,
        channels,
        ts_ms,
        value,
        score,
        detector: "sensor_fault",
        kind: AnomalyKind::SensorFault,
        explanation: why,
    }
}

impl Detector for SensorFaultDetector {
    fn name(&self) -> &'static str {
        "sensor_fault"
    }

    fn observe(&mut self, frame: &Frame, out: &mut Vec<Anomaly>) {
        let (Some(first), Some(last)) = (frame.samples.first(), frame.samples.last()) else {
            return;
        };
        let params = self.params;
        let spike_params = self.spikes;
        let m = match self.machines.get_mut(&frame.machine_id) {
            Some(m) => m,
            None => self
                .machines
                .entry(frame.machine_id.clone())
                .or_insert_with(|| MachineState {
                    streams: [Intervals::new(&params); 3],
                    channels: (0..CATALOG.len()).map(|_| None).collect(),
                }),
        };
        let stream = &mut m.streams[frame.stream.index()];

        // A whole stream silent: one anomaly, when it resumes.
        if let Some(gap) = stream.observe(first.ts_ms) {
            let channels: Vec<&'static str> = stream_channels(frame.stream)
                .filter(|c| m.channels[c.0 as usize].is_some())
                .map(|c| c.name())
                .collect();
            let limit = stream.limit_ms();
            let why = format!(
                "no {} data for {} (usually every {}): the gateway or its link dropped out",
                frame.stream,
                fmt_ms(gap),
                fmt_ms(stream.usual_ms())
            );
            let value = first.values.first().map_or(0.0, |v| v.1);
            out.push(sensor_anomaly(
                frame,
                channels,
                first.ts_ms,
                value,
                score(gap / limit),
                why,
            ));
        }
        for (i, s) in frame.samples.iter().enumerate() {
            if i > 0 {
                stream.observe(s.ts_ms);
            }
            for &(c, v) in &s.values {
                if !self.watched[c.0 as usize] {
                    continue;
                }
                let ch = m.channels[c.0 as usize].get_or_insert_with(|| ChannelState {
                    kernel: SensorFaultKernel::new(&params),
                    episode: Episode::default(),
                    spikes: SpikeTracker::new(spike_params),
                    last_seen: s.ts_ms,
                    missing: false,
                });
                ch.last_seen = ch.last_seen.max(s.ts_ms);
                ch.missing = false;
                let sc = ch.kernel.update(s.ts_ms, v);
                if ch.episode.update(sc, self.debounce) {
                    let spec = c.spec();
                    let why = format!("{}: {}", spec.name, ch.kernel.explain(v, spec.unit));
                    out.push(sensor_anomaly(frame, vec![spec.name], s.ts_ms, v, sc, why));
                }
                if let Some(e) = ch.spikes.update(s.ts_ms, v) {
                    let spec = c.spec();
                    let why = spike_explanation(spec.name, spec.unit, &e, &spike_params);
                    let sc = score(e.ratio / spike_params.threshold);
                    out.push(sensor_anomaly(frame, vec![spec.name], e.ts_ms, e.value, sc, why));
                }
            }
        }

        // Channels gone quiet while their stream keeps reporting: one anomaly per frame that finds them.
        let limit = stream.limit_ms();
        let mut gone = Vec::new();
        let mut longest = 0.0_f64;
        for c in stream_channels(frame.stream) {
            if let Some(ch) = m.channels[c.0 as usize].as_mut() {
                let silent = (last.ts_ms - ch.last_seen) as f64;
                if !ch.missing && silent > limit {
                    ch.missing = true;
                    gone.push(c.name());
                    longest = longest.max(silent);
                }
            }
        }
        if !gone.is_empty() {
            let why = format!(
                "{} missing for {} while the {} stream keeps reporting: a sensor dropped out",
                gone.join(", "),
                fmt_ms(longest),
                frame.stream
            );
            out.push(sensor_anomaly(
                frame,
                gone,
                last.ts_ms,
                0.0,
                score(longest / limit),
                why,
            ));
        }
    }

    fn end_warm_up(&mut self) {
        for m in self.machines.values_mut() {
            m.streams = [Intervals::new(&self.params); 3];
            for ch in m.channels.iter_mut().flatten() {
                ch.kernel.end_warm_up();
                ch.spikes.reset();
            }
        }
    }
}

fn spike_explanation(name: &str, unit: &str, e: &SpikeEpisode, p: &SpikeParams) -> String {
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

fn stream_channels(stream: Stream) -> impl Iterator<Item = ChannelId> {
    ChannelId::of_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{noise, run_kernel, starts};
    use larmor_ingest::Sample;

    fn kernel() -> SensorFaultKernel {
        SensorFaultKernel::new(&SensorFaultConfig::default().params())
    }

    fn quantised(seed: u64, n: usize) -> Vec<f64> {
        noise(seed, n, 0.006)
            .iter()
            .map(|e| ((4.05 + e) * 1000.0).round() / 1000.0)
            .collect()
    }

    #[test]
    fn a_stuck_value_is_one_episode() {
        let mut xs = quantised(21, 3000);
        let v = xs[1500];
        for x in &mut xs[1500..1800] {
            *x = v;
        }
        // one reading a minute: 15 min and 30 readings needed
        let (_, eps) = run_kernel(kernel(), &xs, 60_000, 1, 1);
        assert_eq!(starts(&eps), vec![1529], "opens at 30 identical readings (and 15 min)");
    }

    #[test]
    fn a_gap_is_one_episode() {
        let xs = quantised(22, 400);
        let mut k = kernel();
        let mut opened = vec![];
        let mut e = Episode::default();
        let d = Debounce {
            confirm: 1,
            clear_after: 1,
        };
        for (i, &x) in xs.iter().enumerate() {
            // 5-minute readings; 2 hours missing after reading 200
            let ts = i as i64 * 300_000 + if i > 200 { 6_900_000 } else { 0 };
            if e.update(k.update(ts, x), d) {
                opened.push((i, k.explain(x, "K")));
            }
        }
        assert_eq!(opened.len(), 1, "{opened:?}");
        assert_eq!(opened[0].0, 201);
        assert!(opened[0].1.contains("no reading for 2 h"), "{}", opened[0].1);
    }

    #[test]
    fn quiet_on_noise_within_budget() {
        // A coarsely quantised quiet sensor repeats often; 100k readings, no episode.
        let xs: Vec<f64> = noise(23, 100_000, 0.02)
            .iter()
            .map(|e| ((81.0 + e) * 100.0).round() / 100.0)
            .collect();
        let (_, eps) = run_kernel(kernel(), &xs, 100, 1, 1);
        assert!(starts(&eps).is_empty(), "{:?}", starts(&eps));
    }

    fn frame(stream: Stream, t0: i64, n: usize, channels: &[&str], value: impl Fn(usize) -> f64) -> Frame {
        Frame {
            machine_id: "M1".into(),
            stream,
            seq: 1,
            ts_ms: t0,
            samples: (0..n)
                .map(|i| Sample {
                    ts_ms: t0 + i as i64 * 100,
                    values: channels
                        .iter()
                        .map(|c| (ChannelId::from_name(c).unwrap(), value(i)))
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn stream_dropout_and_missing_channel_are_one_anomaly_each() {
        let mut d = SensorFaultConfig::default().detector().unwrap();
        let mut out = vec![];
        let t0 = 1_764_000_000_000;
        let both = ["compressor_vib_rms_mms", "compressor_band_bearing_mms"];
        let e = noise(4, 20_000, 0.05);
        let mut t = t0;
        // 10 Hz, 5 samples per frame: 100 s of both channels
        for k in 0..200 {
            d.observe(&frame(Stream::Vibration, t, 5, &both, |i| 1.0 + e[k * 5 + i]), &mut out);
            t += 500;
        }
        assert!(out.is_empty(), "{out:?}");
        // the stream stops for 10 minutes, then comes back: one anomaly
        t += 600_000;
        d.observe(&frame(Stream::Vibration, t, 5, &both, |i| 1.0 + e[i]), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].kind, AnomalyKind::SensorFault);
        assert_eq!(out[0].channels.len(), 2);
        assert!(
            out[0].explanation.contains("no vibration data for 10 min"),
            "{}",
            out[0].explanation
        );
        // one channel stops while the other goes on: one anomaly after the limit, not one per frame
        for k in 0..600 {
            t += 500;
            d.observe(
                &frame(Stream::Vibration, t, 5, &both[..1], |i| 1.0 + e[k * 5 + i]),
                &mut out,
            );
        }
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[1].channels, vec!["compressor_band_bearing_mms"]);
    }
}
