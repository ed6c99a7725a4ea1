//! Stuck sensors and gaps on one series: the same value far longer than this
//! series ever repeats one (a repeated value near zero against the series' usual
//! magnitude is a stopped machine reading its floor, not a frozen sensor), and,
//! on a plain series (a CSV), a gap of many usual intervals.

use super::{SensorFaultParams, fmt_ms};
use crate::detect::series::{Decay, EwStats, Kernel, WarmUp, score, with_unit};
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::sensor_fault::SensorFaultConfig;
    use crate::detect::series::{Debounce, Episode};
    use crate::detect::testing::{noise, run_kernel, starts};

    fn kernel() -> SensorFaultKernel {
        SensorFaultKernel::new(&SensorFaultConfig::default().settings.params())
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
}
