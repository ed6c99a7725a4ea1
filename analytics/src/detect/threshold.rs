//! Hard limits: a reading outside a channel's alarm range starts an episode; the
//! episode ends after the channel is back inside the range for a few samples
//! (hysteresis), so one excursion is one anomaly.

use super::{Anomaly, Detector, MachineMap, kind_of};
use larmor_ingest::{CATALOG, ChannelId, Frame};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Alarm limits of one channel; either side may be absent.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// Settings of the threshold detector.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ThresholdConfig {
    /// In-range samples needed to end an episode.
    pub clear_after: u32,
    /// Per-channel limits replacing the catalogue defaults, e.g.
    /// `helium_level_pct = { low = 45.0 }`.
    pub limits: BTreeMap<String, Limits>,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        ThresholdConfig {
            clear_after: 3,
            limits: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct ChannelState {
    in_alarm: bool,
    in_range_run: u32,
}

pub struct ThresholdDetector {
    limits: Vec<Limits>,
    /// The limits as numbers (a missing side: infinite), for the common case: in range.
    bounds: Vec<(f64, f64)>,
    clear_after: u32,
    state: MachineMap<Vec<ChannelState>>,
}

#[derive(Debug, thiserror::Error)]
#[error("detect.threshold.limits names an unknown channel {0:?}; see the channel list in ingest/README.md")]
pub struct UnknownChannel(pub String);

impl ThresholdDetector {
    pub fn new(config: &ThresholdConfig) -> Result<Self, UnknownChannel> {
        let mut limits: Vec<Limits> = CATALOG
            .iter()
            .map(|c| Limits {
                low: c.alarm_low,
                high: c.alarm_high,
            })
            .collect();
        for (name, l) in &config.limits {
            let id = ChannelId::from_name(name).ok_or_else(|| UnknownChannel(name.clone()))?;
            limits[id.0 as usize] = *l;
        }
        Ok(ThresholdDetector {
            bounds: limits
                .iter()
                .map(|l| (l.low.unwrap_or(f64::NEG_INFINITY), l.high.unwrap_or(f64::INFINITY)))
                .collect(),
            limits,
            clear_after: config.clear_after.max(1),
            state: MachineMap::default(),
        })
    }
}

impl Detector for ThresholdDetector {
    fn name(&self) -> &'static str {
        "threshold"
    }

    fn observe(&mut self, frame: &Frame, out: &mut Vec<Anomaly>) {
        let states = match self.state.get_mut(&frame.machine_id) {
            Some(s) => s,
            None => self
                .state
                .entry(frame.machine_id.clone())
                .or_insert_with(|| vec![ChannelState::default(); CATALOG.len()]),
        };
        for s in &frame.samples {
            for &(c, v) in &s.values {
                let st = &mut states[c.0 as usize];
                let (lo, hi) = self.bounds[c.0 as usize];
                // (NaN breaches no limit, as below)
                let breach = v < lo || v > hi;
                if !st.in_alarm && !breach {
                    continue; // in range, nothing open
                }
                let l = self.limits[c.0 as usize];
                let breach = match (l.low, l.high) {
                    (Some(lo), _) if v < lo => Some(("below", lo)),
                    (_, Some(hi)) if v > hi => Some(("above", hi)),
                    _ => None,
                };
                match breach {
                    Some((side, limit)) => {
                        st.in_range_run = 0;
                        if !st.in_alarm {
                            st.in_alarm = true;
                            let spec = c.spec();
                            // 0.5 at the limit, 1.0 at the physical end of the scale.
                            let span = if side == "below" {
                                limit - spec.physical_min
                            } else {
                                spec.physical_max - limit
                            };
                            let score = (0.5 + 0.5 * (v - limit).abs() / span.max(f64::EPSILON)).clamp(0.0, 1.0);
                            out.push(Anomaly {
                                machine_id: frame.machine_id.clone(),
                                stream: frame.stream,
                                channels: vec![c.name()],
                                ts_ms: s.ts_ms,
                                value: v,
                                score,
                                detector: "threshold",
                                kind: kind_of(c),
                                explanation: format!(
                                    "{} = {v} {} is {side} the alarm limit {limit}",
                                    c.name(),
                                    spec.unit
                                ),
                            });
                        }
                    }
                    None if st.in_alarm => {
                        st.in_range_run += 1;
                        if st.in_range_run >= self.clear_after {
                            st.in_alarm = false;
                            st.in_range_run = 0;
                        }
                    }
                    None => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use larmor_ingest::{Sample, Stream};

    fn frame(values: &[f64]) -> Frame {
        let he = ChannelId::from_name("helium_level_pct").unwrap();
        Frame {
            machine_id: "M1".into(),
            stream: Stream::Temperature,
            seq: 1,
            ts_ms: 1_764_300_000_000,
            samples: values
                .iter()
                .enumerate()
                .map(|(i, &v)| Sample {
                    ts_ms: 1_764_300_000_000 + i as i64,
                    values: vec![(he, v)],
                })
                .collect(),
        }
    }

    #[test]
    fn one_episode_one_anomaly_with_hysteresis() {
        let mut d = ThresholdDetector::new(&ThresholdConfig::default()).unwrap();
        let mut out = vec![];
        // breach, flicker back for 2 samples (< clear_after), breach again: still one episode
        d.observe(&frame(&[80.0, 30.0, 29.0, 50.0, 50.0, 31.0]), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value, 30.0);
        assert!(out[0].score > 0.5 && out[0].score <= 1.0);
        // back in range long enough, then a new breach: a second episode
        d.observe(&frame(&[50.0, 50.0, 50.0, 20.0]), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].value, 20.0);
    }

    #[test]
    fn config_overrides_limits() {
        let mut cfg = ThresholdConfig::default();
        cfg.limits.insert(
            "helium_level_pct".into(),
            Limits {
                low: Some(85.0),
                high: None,
            },
        );
        let mut d = ThresholdDetector::new(&cfg).unwrap();
        let mut out = vec![];
        d.observe(&frame(&[80.0]), &mut out);
        assert_eq!(out.len(), 1);
        cfg.limits.insert("no_such".into(), Limits::default());
        assert!(ThresholdDetector::new(&cfg).is_err());
    }
}
