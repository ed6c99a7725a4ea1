//! One machine run through time: its schedule, its plan's failures and service
//! actions, the physics model, and the sensor layer that rounds readings and
//! applies sensor faults. Backfill steps it along a fixed grid; the live
//! simulator steps it at wall-clock (or accelerated) instants.

use crate::fleet::{Machine, Site, mix, tag};
use crate::model::{Effects, MachineModel};
use crate::modes::SensorFaultKind;
use crate::scenario::{Action, MachinePlan};
use crate::schedule::{Activity, ExamCursor, exams_between};
use crate::signals::{ALL_PRESENT, CHANNELS, Noise, Quantizer, stream_mask};
use crate::time::{DAY_MS, HOUR_MS};
use rand::SeedableRng;
use rand::rngs::SmallRng;

/// Active episodes are gathered per UTC day with this margin, which covers the
/// largest clock skew.
const WINDOW_MARGIN_MS: i64 = 6 * HOUR_MS;

/// Per sample: the share of samples that carry a spike during a spikes fault.
const SPIKE_CHANCE: f64 = 0.03;

/// One reading instant: the reported timestamp, every channel's reported value,
/// and which channels are present (bit `c` set = channel `c` was reported).
pub struct Reading<'a> {
    pub ts_ms: i64,
    pub values: &'a [f64; CHANNELS],
    pub present: u64,
}

/// A machine stepping through time.
pub struct MachineRun {
    pub index: usize,
    seed: u64,
    site: &'static Site,
    model: MachineModel,
    plan: MachinePlan,
    quantizer: Quantizer,
    window_day: i64,
    exams: ExamCursor,
    active_failures: Vec<usize>,
    active_visits: Vec<usize>,
    active_faults: Vec<usize>,
    next_action: usize,
    /// The frozen value of each stuck fault, once it started.
    stuck: Vec<Option<f64>>,
    stream_masks: [u64; 3],
    values: [f64; CHANNELS],
}

impl MachineRun {
    pub fn new(machine: &Machine, index: usize, plan: MachinePlan, seed: u64) -> Self {
        let noise = Noise::new(SmallRng::seed_from_u64(mix(seed, index as u64, tag::NOISE)));
        MachineRun {
            index,
            seed,
            site: machine.site(),
            model: MachineModel::new(machine, noise),
            stuck: vec![None; plan.sensor_faults.len()],
            plan,
            quantizer: Quantizer::default(),
            window_day: i64::MIN,
            exams: ExamCursor::default(),
            active_failures: Vec::new(),
            active_visits: Vec::new(),
            active_faults: Vec::new(),
            next_action: 0,
            stream_masks: larmor_ingest::Stream::ALL.map(stream_mask),
            values: [0.0; CHANNELS],
        }
    }

    pub fn plan(&self) -> &MachinePlan {
        &self.plan
    }

    /// The exams of the current day window (for tests and schedules).
    pub fn exams(&self) -> &[crate::schedule::Exam] {
        &self.exams.exams
    }

    /// Gathers what can be active around UTC day `day`.
    fn enter_day(&mut self, day: i64) {
        self.window_day = day;
        let from = day * DAY_MS - WINDOW_MARGIN_MS;
        let to = (day + 1) * DAY_MS + WINDOW_MARGIN_MS;
        let hit = |a: i64, b: i64| a < to && from < b;
        self.exams = ExamCursor::new(exams_between(self.seed, self.index, self.site, from, to));
        let p = &self.plan;
        self.active_failures = (0..p.failures.len())
            .filter(|&i| hit(p.failures[i].onset_ms, p.failures[i].effect_end_ms()))
            .collect();
        self.active_visits = (0..p.maintenance.len())
            .filter(|&i| hit(p.maintenance[i].start_ms, p.maintenance[i].end_ms))
            .collect();
        self.active_faults = (0..p.sensor_faults.len())
            .filter(|&i| hit(p.sensor_faults[i].start_ms, p.sensor_faults[i].end_ms))
            .collect();
    }

    fn effects(&self, t: i64) -> Effects {
        let mut fx = Effects::default();
        for &i in &self.active_failures {
            let f = &self.plan.failures[i];
            if t < f.onset_ms || t >= f.effect_end_ms() {
                continue;
            }
            let down = f.downtime.is_some_and(|(s, _)| t >= s);
            f.mode.apply(f.variant, f.magnitude, f.severity(t), down, &mut fx);
        }
        for &i in &self.active_visits {
            let v = &self.plan.maintenance[i];
            if t >= v.start_ms && t < v.end_ms {
                fx.scanning_blocked = true;
                // The compressor is off for the first part of the visit (adsorber, cold head).
                fx.compressor_stopped |= t < v.start_ms + (v.end_ms - v.start_ms) * 35 / 100;
            }
        }
        fx
    }

    /// The reading reported at `reported_ms`, `dt_ms` after the previous one.
    pub fn sample(&mut self, reported_ms: i64, dt_ms: i64) -> Reading<'_> {
        let day = reported_ms.div_euclid(DAY_MS);
        if day != self.window_day {
            self.enter_day(day);
        }
        // A skewed gateway clock reports what happened at t under the timestamp t + skew.
        let mut skew = 0;
        for &i in &self.active_faults {
            let f = &self.plan.sensor_faults[i];
            if f.kind == SensorFaultKind::ClockSkew && reported_ms >= f.start_ms && reported_ms < f.end_ms {
                skew = f.magnitude as i64;
            }
        }
        let t = reported_ms - skew;
        while let Some(&(at, action)) = self.plan.actions.get(self.next_action) {
            if at > t {
                break;
            }
            match action {
                Action::RefillHelium => self.model.refill_helium(),
                Action::NewColdHead => self.model.new_cold_head(),
            }
            self.next_action += 1;
        }
        let fx = if self.active_failures.is_empty() && self.active_visits.is_empty() {
            Effects::default()
        } else {
            self.effects(t)
        };
        let u = self.model.noise.uniform();
        let act = match self.exams.at(t) {
            Some(e) if !fx.scanning_blocked => Activity::during(e, t, u),
            _ => Activity::idle(u),
        };
        self.model.step(t, dt_ms, &act, &fx, &mut self.values);
        for c in 0..CHANNELS {
            self.values[c] = self.quantizer.apply(c, self.values[c]);
        }
        let mut present = ALL_PRESENT;
        if !self.active_faults.is_empty() {
            present = self.apply_sensor_faults(t);
        }
        Reading {
            ts_ms: reported_ms,
            values: &self.values,
            present,
        }
    }

    fn apply_sensor_faults(&mut self, t: i64) -> u64 {
        let mut present = ALL_PRESENT;
        for k in 0..self.active_faults.len() {
            let i = self.active_faults[k];
            let f = &self.plan.sensor_faults[i];
            if t < f.start_ms || t >= f.end_ms {
                continue;
            }
            let Some(c) = f.channel else {
                if f.kind == SensorFaultKind::Dropout
                    && let Some(s) = f.stream
                {
                    present &= !self.stream_masks[s.index()];
                }
                continue;
            };
            let v = self.values[c];
            let reported = match f.kind {
                SensorFaultKind::Stuck => *self.stuck[i].get_or_insert(v),
                SensorFaultKind::Spikes => {
                    let u = self.model.noise.uniform();
                    if u < SPIKE_CHANCE {
                        let sign = if u < SPIKE_CHANCE / 2.0 { -1.0 } else { 1.0 };
                        v + sign * f.magnitude * (0.6 + 0.4 * self.model.noise.uniform())
                    } else {
                        v
                    }
                }
                SensorFaultKind::Drift => {
                    // A calibration step, then a steady drift to the full offset.
                    let progress = (t - f.start_ms) as f64 / (f.end_ms - f.start_ms).max(1) as f64;
                    v + f.magnitude * (0.3 + 0.7 * progress)
                }
                SensorFaultKind::Dropout | SensorFaultKind::ClockSkew => v,
            };
            self.values[c] = self.quantizer.apply(c, reported);
        }
        present
    }

    /// Steps through UTC day `day` at `resolution_ms` and hands every reading to `sink`.
    pub fn run_day(&mut self, day: i64, resolution_ms: i64, mut sink: impl FnMut(&Reading<'_>)) {
        let start = day * DAY_MS;
        let mut ts = start;
        while ts < start + DAY_MS {
            let r = self.sample(ts, resolution_ms);
            sink(&r);
            ts += resolution_ms;
        }
    }
}
