//! Helpers shared by the integration tests: run a machine of a scenario in
//! memory and summarise its channels over time windows.

#![allow(dead_code)]

use larmor_datasets::Scenario;
use larmor_datasets::run::MachineRun;
use larmor_datasets::signals::CHANNELS;
use larmor_datasets::time::DAY_MS;
use larmor_ingest::ChannelId;

/// Every reading of one machine over the whole scenario.
pub struct Series {
    pub ts: Vec<i64>,
    pub values: Vec<[f64; CHANNELS]>,
    pub present: Vec<u64>,
}

pub fn ch(name: &str) -> usize {
    ChannelId::from_name(name)
        .unwrap_or_else(|| panic!("no channel {name}"))
        .0 as usize
}

pub fn simulate(s: &Scenario, machine: usize, resolution_ms: i64) -> Series {
    let mut run = MachineRun::new(&s.fleet.machines[machine], machine, s.plans[machine].clone(), s.seed);
    let mut out = Series {
        ts: Vec::new(),
        values: Vec::new(),
        present: Vec::new(),
    };
    for day in s.start_ms / DAY_MS..s.end_ms / DAY_MS {
        run.run_day(day, resolution_ms, |r| {
            out.ts.push(r.ts_ms);
            out.values.push(*r.values);
            out.present.push(r.present);
        });
    }
    out
}

impl Series {
    /// Values of `channel` reported in `[from, to)`.
    pub fn window(&self, channel: usize, from: i64, to: i64) -> Vec<f64> {
        let a = self.ts.partition_point(|&t| t < from);
        let b = self.ts.partition_point(|&t| t < to);
        (a..b)
            .filter(|&i| self.present[i] & (1 << channel) != 0)
            .map(|i| self.values[i][channel])
            .collect()
    }

    pub fn mean(&self, channel: usize, from: i64, to: i64) -> f64 {
        let w = self.window(channel, from, to);
        assert!(!w.is_empty(), "no readings of channel {channel} in the window");
        w.iter().sum::<f64>() / w.len() as f64
    }

    pub fn max(&self, channel: usize, from: i64, to: i64) -> f64 {
        self.window(channel, from, to).into_iter().fold(f64::MIN, f64::max)
    }

    pub fn min(&self, channel: usize, from: i64, to: i64) -> f64 {
        self.window(channel, from, to).into_iter().fold(f64::MAX, f64::min)
    }

    pub fn std(&self, channel: usize, from: i64, to: i64) -> f64 {
        let w = self.window(channel, from, to);
        let m = w.iter().sum::<f64>() / w.len() as f64;
        (w.iter().map(|x| (x - m).powi(2)).sum::<f64>() / w.len() as f64).sqrt()
    }

    /// Indices of the instants in `[from, to)`.
    pub fn indices(&self, from: i64, to: i64) -> std::ops::Range<usize> {
        self.ts.partition_point(|&t| t < from)..self.ts.partition_point(|&t| t < to)
    }
}
