//! The telemetry simulator behind live publishing: turns the fleet into frames
//! on all three streams at any instants asked for. By default every machine is
//! healthy (no failures, maintenance or sensor faults); a planned [`Scenario`]
//! switches them on. Scan load follows each machine's booked exams.

use crate::fleet::Fleet;
use crate::run::MachineRun;
use crate::scenario::Scenario;
use larmor_ingest::{ChannelId, Frame, Sample, Stream};
use std::collections::HashMap;

/// Generates frames for a fleet, deterministically from a seed.
pub struct Simulator {
    fleet: Fleet,
    runs: Vec<MachineRun>,
    last_ts: Vec<Option<i64>>,
    seq: HashMap<(usize, Stream), u64>,
    injections: Vec<(usize, ChannelId, f64)>,
}

impl Simulator {
    /// A healthy fleet: values stay inside every alarm range.
    pub fn new(fleet: Fleet, seed: u64) -> Simulator {
        Self::with_scenario(Scenario::healthy(fleet, seed))
    }

    /// A fleet living through a planned scenario (failures, maintenance, sensor
    /// faults), e.g. `Scenario::plan(n, seed, today, 365, &ScenarioConfig::default())`;
    /// frames then show whatever the plan has going on at their timestamps.
    pub fn with_scenario(scenario: Scenario) -> Simulator {
        let Scenario { fleet, plans, seed, .. } = scenario;
        let runs = plans
            .into_iter()
            .enumerate()
            .map(|(i, plan)| MachineRun::new(&fleet.machines[i], i, plan, seed))
            .collect();
        Simulator {
            last_ts: vec![None; fleet.machines.len()],
            fleet,
            runs,
            seq: HashMap::new(),
            injections: Vec::new(),
        }
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// Makes the next sample of `machine_id` carry `value` on `channel` (a fault
    /// injected on purpose). Returns false for an unknown machine.
    pub fn inject(&mut self, machine_id: &str, channel: ChannelId, value: f64) -> bool {
        match self.fleet.index_of(machine_id) {
            Some(i) => {
                self.injections.push((i, channel, value));
                true
            }
            None => false,
        }
    }

    /// One frame per machine and stream with `samples` samples spaced `interval_ms`
    /// apart, ending at `end_ms`. A stream with nothing to report (a sensor
    /// dropout) sends no frame.
    pub fn frames(&mut self, end_ms: i64, samples: usize, interval_ms: i64) -> Vec<Frame> {
        let mut out = Vec::with_capacity(self.fleet.machines.len() * 3);
        let start = end_ms - interval_ms * (samples as i64 - 1);
        for mi in 0..self.fleet.machines.len() {
            let mut per_stream: [Vec<Sample>; 3] = Default::default();
            for k in 0..samples {
                let ts = start + k as i64 * interval_ms;
                let dt = self.last_ts[mi].map_or(interval_ms, |last| ts - last).max(0);
                if self.last_ts[mi].is_none_or(|last| ts > last) {
                    self.last_ts[mi] = Some(ts);
                }
                let r = self.runs[mi].sample(ts, dt);
                for stream in Stream::ALL {
                    let mut values: Vec<(ChannelId, f64)> = ChannelId::of_stream(stream)
                        .filter(|c| r.present & (1 << c.0) != 0)
                        .map(|c| (c, r.values[c.0 as usize]))
                        .collect();
                    apply_injections(&mut self.injections, mi, stream, &mut values);
                    if !values.is_empty() {
                        per_stream[stream.index()].push(Sample { ts_ms: r.ts_ms, values });
                    }
                }
            }
            for stream in Stream::ALL {
                let samples = std::mem::take(&mut per_stream[stream.index()]);
                if samples.is_empty() {
                    continue;
                }
                let seq = self.seq.entry((mi, stream)).or_insert(0);
                *seq += 1;
                out.push(Frame {
                    machine_id: self.fleet.machines[mi].id.clone(),
                    stream,
                    seq: *seq,
                    ts_ms: end_ms,
                    samples,
                });
            }
        }
        out
    }
}

fn apply_injections(
    injections: &mut Vec<(usize, ChannelId, f64)>,
    mi: usize,
    stream: Stream,
    values: &mut Vec<(ChannelId, f64)>,
) {
    let mut k = 0;
    while k < injections.len() {
        let (imi, ic, iv) = injections[k];
        if imi == mi && ic.stream() == stream {
            match values.iter_mut().find(|(c, _)| *c == ic) {
                Some(slot) => slot.1 = iv,
                None => values.push((ic, iv)),
            }
            injections.swap_remove(k);
        } else {
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Forced, ForcedEvent, ScenarioConfig};
    use crate::time::{DAY_MS, HOUR_MS};

    #[test]
    fn same_seed_same_frames() {
        let a = Simulator::new(Fleet::generate(5, 7), 7).frames(1_764_300_000_000, 3, 100);
        let b = Simulator::new(Fleet::generate(5, 7), 7).frames(1_764_300_000_000, 3, 100);
        assert_eq!(a, b);
        assert_eq!(a.len(), 15);
    }

    #[test]
    fn healthy_values_stay_inside_alarm_ranges() {
        let mut sim = Simulator::new(Fleet::generate(20, 1), 1);
        for t in 0..50 {
            for f in sim.frames(1_764_300_000_000 + t * 10_000, 10, 1000) {
                for s in &f.samples {
                    for &(c, v) in &s.values {
                        let spec = c.spec();
                        assert!(spec.alarm_low.is_none_or(|lo| v > lo), "{} = {v}", spec.name);
                        assert!(spec.alarm_high.is_none_or(|hi| v < hi), "{} = {v}", spec.name);
                    }
                }
            }
        }
    }

    #[test]
    fn healthy_fleet_stays_in_range_through_weeks_of_scanning() {
        // The default live fleet (20 machines, seed 7), sampled every 5 minutes for
        // three weeks of busy schedules: no reading may reach an alarm limit.
        let mut sim = Simulator::new(Fleet::generate(20, 7), 7);
        let start = 1_764_288_000_000;
        let mut checked = 0;
        for step in 0..(21 * 24) {
            for f in sim.frames(start + step * HOUR_MS, 12, 5 * 60_000) {
                for s in &f.samples {
                    for &(c, v) in &s.values {
                        let spec = c.spec();
                        assert!(
                            spec.alarm_low.is_none_or(|lo| v > lo),
                            "{} {} = {v}",
                            f.machine_id,
                            spec.name
                        );
                        assert!(
                            spec.alarm_high.is_none_or(|hi| v < hi),
                            "{} {} = {v}",
                            f.machine_id,
                            spec.name
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 3_000_000, "{checked}");
    }

    #[test]
    fn injection_lands_in_the_next_sample_only() {
        let mut sim = Simulator::new(Fleet::generate(3, 1), 1);
        let he = ChannelId::from_name("helium_level_pct").unwrap();
        assert!(sim.inject("MRI-0002", he, 12.5));
        assert!(!sim.inject("MRI-9999", he, 12.5));
        let frames = sim.frames(1_764_300_000_000, 2, 1000);
        let hits: Vec<_> = frames
            .iter()
            .flat_map(|f| f.samples.iter().map(move |s| (f, s)))
            .filter(|(_, s)| s.values.contains(&(he, 12.5)))
            .map(|(f, _)| f.machine_id.clone())
            .collect();
        assert_eq!(hits, vec!["MRI-0002"]);
    }

    #[test]
    fn a_planned_scenario_shows_up_in_live_frames() {
        let start_day = 20_089;
        let config = ScenarioConfig {
            forced: vec![ForcedEvent {
                machine: 0,
                what: Forced::Failure(crate::modes::FailureMode::ChillerFault),
                at_days: 2.0,
                length_days: Some(0.25),
                variant: 0,
                magnitude: None,
            }],
            ..ScenarioConfig::healthy()
        };
        let mut sim = Simulator::with_scenario(Scenario::plan(2, 3, start_day, 5, &config));
        let inlet = ChannelId::from_name("water_inlet_c").unwrap();
        let mut max_inlet: f64 = 0.0;
        // Accelerated: a sample every 5 simulated minutes over the first 3 days.
        for h in 0..72 {
            let end = start_day * DAY_MS + (h + 1) * HOUR_MS;
            for f in sim.frames(end, 12, 5 * 60_000) {
                if f.machine_id == "MRI-0001" {
                    for s in &f.samples {
                        for &(c, v) in &s.values {
                            if c == inlet {
                                max_inlet = max_inlet.max(v);
                            }
                        }
                    }
                }
            }
        }
        assert!(
            max_inlet > 28.0,
            "the chiller fault heats the water to a trip: {max_inlet}"
        );
    }
}
