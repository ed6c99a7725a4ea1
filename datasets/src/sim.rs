//! The telemetry simulator: turns the fleet into frames on all three streams.
//! Healthy machines only in this version: values sit near their nominal levels
//! with sensor noise, gradient heat and vibration follow a scan-load cycle.

use crate::fleet::{Fleet, SITES};
use larmor_ingest::{ChannelId, Frame, Sample, Stream};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// Nominal level and noise (one standard deviation) of a healthy channel.
fn nominal(channel: &str) -> (f64, f64) {
    match channel {
        "helium_level_pct" => (80.0, 0.02),
        "vessel_pressure_kpa" => (14.0, 0.3),
        "vessel_heater_pct" => (35.0, 2.0),
        "coldhead_stage1_k" => (42.0, 0.3),
        "coldhead_stage2_k" => (4.05, 0.02),
        "compressor_supply_mpa" => (2.1, 0.01),
        "compressor_return_mpa" => (0.75, 0.01),
        "water_inlet_c" => (15.0, 0.2),
        "water_outlet_c" => (24.0, 0.3),
        "water_flow_lpm" => (8.5, 0.1),
        "gradient_coil_c" => (24.0, 0.3),
        "gradient_amp_c" => (30.0, 0.3),
        "rf_amp_c" => (32.0, 0.3),
        "coldhead_vib_rms_mms" => (1.2, 0.05),
        "coldhead_vib_peak_mms" => (3.4, 0.15),
        "coldhead_vib_crest" => (2.9, 0.05),
        "coldhead_vib_kurtosis" => (3.0, 0.1),
        "coldhead_band_displacer_mms" => (0.9, 0.04),
        "compressor_vib_rms_mms" => (2.2, 0.08),
        "compressor_vib_peak_mms" => (6.3, 0.25),
        "compressor_vib_crest" => (2.9, 0.05),
        "compressor_vib_kurtosis" => (3.0, 0.1),
        "compressor_band_motor_mms" => (1.6, 0.06),
        "compressor_band_bearing_mms" => (0.3, 0.02),
        "gradient_vib_rms_mms" => (0.5, 0.05),
        "room_temp_c" => (20.0, 0.1),
        "room_humidity_pct" => (45.0, 0.5),
        "room_o2_pct" => (20.9, 0.02),
        "tech_room_temp_c" => (21.0, 0.2),
        _ => (0.0, 0.0),
    }
}

/// Generates frames for a fleet, deterministically from a seed.
pub struct Simulator {
    fleet: Fleet,
    rng: SmallRng,
    seq: HashMap<(usize, Stream), u64>,
    injections: Vec<(usize, ChannelId, f64)>,
}

impl Simulator {
    pub fn new(fleet: Fleet, seed: u64) -> Simulator {
        Simulator {
            fleet,
            rng: SmallRng::seed_from_u64(seed ^ 0x5eed_1a2b),
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
        match self.fleet.machines.iter().position(|m| m.id == machine_id) {
            Some(i) => {
                self.injections.push((i, channel, value));
                true
            }
            None => false,
        }
    }

    /// One frame per machine and stream with `samples` samples spaced `interval_ms`
    /// apart, ending at `end_ms`.
    pub fn frames(&mut self, end_ms: i64, samples: usize, interval_ms: i64) -> Vec<Frame> {
        let mut out = Vec::with_capacity(self.fleet.machines.len() * 3);
        for mi in 0..self.fleet.machines.len() {
            for stream in Stream::ALL {
                let start = end_ms - interval_ms * (samples as i64 - 1);
                let samples: Vec<Sample> = (0..samples)
                    .map(|k| {
                        let ts = start + k as i64 * interval_ms;
                        Sample {
                            ts_ms: ts,
                            values: self.sample(mi, stream, ts),
                        }
                    })
                    .collect();
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

    fn sample(&mut self, mi: usize, stream: Stream, ts_ms: i64) -> Vec<(ChannelId, f64)> {
        let m = &self.fleet.machines[mi];
        // Scan load: a 40-minute exam cycle, busy two thirds of the time.
        let phase = ((ts_ms / 1000 + mi as i64 * 377) % 2400) as f64 / 2400.0;
        let load = if phase < 0.66 { 1.0 } else { 0.0 };
        let mut values = Vec::with_capacity(16);
        for c in ChannelId::of_stream(stream) {
            let (mean, sd) = nominal(c.name());
            let base = match c.name() {
                "helium_level_pct" => m.helium_level_pct,
                "coldhead_stage2_k" => m.stage2_k,
                "room_temp_c" => SITES[m.site].room_temp_c,
                "gradient_coil_c" => mean + 8.0 * load,
                "gradient_amp_c" => mean + 5.0 * load,
                "gradient_vib_rms_mms" => mean + 2.0 * load,
                "door_open" => {
                    values.push((c, if self.rng.random::<f64>() < 0.02 { 1.0 } else { 0.0 }));
                    continue;
                }
                "occupancy" => {
                    values.push((c, if load > 0.0 { 2.0 } else { 0.0 }));
                    continue;
                }
                _ => mean,
            };
            let v = base + sd * gaussian(&mut self.rng);
            let spec = c.spec();
            values.push((c, v.clamp(spec.physical_min, spec.physical_max)));
        }
        let mut k = 0;
        while k < self.injections.len() {
            let (imi, ic, iv) = self.injections[k];
            if imi == mi && ic.stream() == stream {
                if let Some(slot) = values.iter_mut().find(|(c, _)| *c == ic) {
                    slot.1 = iv;
                }
                self.injections.swap_remove(k);
            } else {
                k += 1;
            }
        }
        values
    }
}

/// Standard normal deviate (Box-Muller).
fn gaussian(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
