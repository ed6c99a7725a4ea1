//! A tally of what was produced: count and sum per machine and channel, to check
//! an archive against.

use larmor_ingest::{ChannelId, Frame};
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    /// (machine, channel) → (count, sum)
    pub cells: BTreeMap<(String, String), (u64, f64)>,
}

impl Tally {
    pub fn add(&mut self, frame: &Frame) {
        for s in &frame.samples {
            for &(c, v) in &s.values {
                let cell = self
                    .cells
                    .entry((frame.machine_id.clone(), ChannelId::name(c).to_string()))
                    .or_default();
                cell.0 += 1;
                cell.1 += v;
            }
        }
    }

    pub fn readings(&self) -> u64 {
        self.cells.values().map(|c| c.0).sum()
    }
}
