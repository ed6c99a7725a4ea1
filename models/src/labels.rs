//! Targets for each feature row at time t, from the events table:
//!
//! - failure within H, for each horizon H: true when a failure starts in [t, t+H);
//!   false when none does and the machine was observed until t+H; unknown
//!   (censored) when observation stops before t+H with no failure yet. A machine
//!   that has not failed keeps all its rows, negatives where its observation covers
//!   the horizon.
//! - the mode of the next failure, when it falls within the longest horizon;
//! - the time to the next failure, capped: the cap when no failure comes within it,
//!   unknown when observation stops first.
//!
//! Observation ends at the machine's last data, or earlier at a cut-off (a backtest's
//! origin: what was known then). Rows inside a downtime (failure to repair) get no
//! label: there is nothing to forecast while the machine is down.

use crate::HOUR_MS;
use crate::events::EventLog;
use crate::features::FeatureMatrix;
use std::collections::HashMap;

/// 24 h, 72 h, 7 d.
pub const DEFAULT_HORIZONS_HOURS: [u32; 3] = [24, 72, 168];

#[derive(Debug, Clone, PartialEq)]
pub struct RowLabel {
    /// Per horizon: Some(failure within it) or None (censored, in downtime, after cut-off).
    pub y: Vec<Option<bool>>,
    /// Index into [`Labels::modes`] of the next failure within the longest horizon.
    pub mode: Option<u16>,
    /// Hours to the next failure, capped; None when censored before the cap.
    pub ttf_hours: Option<f64>,
    /// Index of the next known failure in the machine's failure list.
    pub next_failure: Option<u32>,
    pub in_downtime: bool,
}

#[derive(Debug, Clone)]
pub struct Labels {
    pub horizons_hours: Vec<u32>,
    pub modes: Vec<String>,
    pub rows: Vec<RowLabel>,
}

impl Labels {
    /// Rows with a known label at horizon `h` (index into `horizons_hours`).
    pub fn known(&self, h: usize) -> impl Iterator<Item = (usize, bool)> + '_ {
        self.rows
            .iter()
            .enumerate()
            .filter_map(move |(i, r)| r.y[h].map(|y| (i, y)))
    }
}

/// Labels every row of `m`. `observed_until[machine]` is the end of its data (ms);
/// `cutoff_ms` hides everything at or after it (failures included).
pub fn label(
    m: &FeatureMatrix,
    events: &EventLog,
    observed_until: &HashMap<String, i64>,
    horizons_hours: &[u32],
    ttf_cap_hours: f64,
    cutoff_ms: Option<i64>,
) -> Labels {
    let modes = events.modes();
    let mode_index: HashMap<&str, u16> = modes.iter().enumerate().map(|(i, s)| (s.as_str(), i as u16)).collect();
    let max_h = horizons_hours.iter().copied().max().unwrap_or(0) as i64 * HOUR_MS;
    let empty = Vec::new();
    let rows = m
        .rows
        .iter()
        .map(|key| {
            let machine = &m.machines[key.machine as usize];
            let t = key.t_ms;
            let known_until = observed_until
                .get(machine)
                .copied()
                .unwrap_or(i64::MIN)
                .min(cutoff_ms.unwrap_or(i64::MAX));
            let failures = events.failures.get(machine).unwrap_or(&empty);
            let in_downtime = failures
                .iter()
                .any(|f| f.time_ms <= t && f.end_ms.is_some_and(|e| t < e) && f.time_ms < known_until);
            let unknown = RowLabel {
                y: vec![None; horizons_hours.len()],
                mode: None,
                ttf_hours: None,
                next_failure: None,
                in_downtime,
            };
            if in_downtime || t >= known_until {
                return unknown;
            }
            let next = failures.partition_point(|f| f.time_ms < t);
            let next_known = failures.get(next).filter(|f| f.time_ms < known_until);
            let y = horizons_hours
                .iter()
                .map(|&h| {
                    let end = t + h as i64 * HOUR_MS;
                    match next_known {
                        Some(f) if f.time_ms < end => Some(true),
                        _ if end <= known_until => Some(false),
                        _ => None,
                    }
                })
                .collect();
            let cap_ms = (ttf_cap_hours * HOUR_MS as f64) as i64;
            let ttf_hours = match next_known {
                Some(f) => Some(((f.time_ms - t) as f64 / HOUR_MS as f64).min(ttf_cap_hours)),
                None if t + cap_ms <= known_until => Some(ttf_cap_hours),
                None => None,
            };
            RowLabel {
                y,
                mode: next_known
                    .filter(|f| f.time_ms < t + max_h)
                    .and_then(|f| mode_index.get(f.mode.as_str()).copied()),
                ttf_hours,
                next_failure: next_known.map(|_| next as u32),
                in_downtime,
            }
        })
        .collect();
    Labels {
        horizons_hours: horizons_hours.to_vec(),
        modes,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Failure;
    use crate::features::RowKey;
    use crate::spec::FeatureSpec;

    #[test]
    fn horizons_censoring_downtime_and_cutoff() {
        let h = HOUR_MS;
        let mut events = EventLog::default();
        let fail = |t: i64, end: Option<i64>, mode: &str| Failure {
            time_ms: t,
            mode: mode.into(),
            end_ms: end,
            onset_ms: None,
            precursor_visible: None,
            extra: Default::default(),
        };
        events.failures.insert(
            "a".into(),
            vec![fail(100 * h, Some(110 * h), "pump"), fail(300 * h, None, "valve")],
        );
        let spec = FeatureSpec::new(vec![], vec![], vec![], vec![], false);
        let times = [0, 30, 90, 105, 200, 299, 390];
        let m = FeatureMatrix {
            spec,
            machines: vec!["a".into(), "b".into()],
            rows: times
                .iter()
                .map(|&t| RowKey {
                    machine: 0,
                    t_ms: t * h,
                })
                .chain([
                    RowKey {
                        machine: 1,
                        t_ms: 350 * h,
                    },
                    RowKey {
                        machine: 1,
                        t_ms: 100 * h,
                    },
                ])
                .collect(),
            values: vec![],
        };
        let until: HashMap<String, i64> = [("a".to_string(), 400 * h), ("b".to_string(), 400 * h)].into();
        let l = label(&m, &events, &until, &[24, 72], 168.0, None);
        let y = |i: usize| l.rows[i].y.clone();
        assert_eq!(y(0), vec![Some(false), Some(false)], "failure 100 h ahead");
        assert_eq!(y(1), vec![Some(false), Some(true)]);
        assert_eq!(l.rows[1].ttf_hours, Some(70.0));
        assert_eq!(l.modes[l.rows[1].mode.unwrap() as usize], "pump");
        assert_eq!(y(2), vec![Some(true), Some(true)]);
        assert!(l.rows[3].in_downtime && y(3) == vec![None, None], "inside the repair");
        assert_eq!(l.rows[4].ttf_hours, Some(100.0));
        assert_eq!(y(5), vec![Some(true), Some(true)], "one hour before the second failure");
        assert_eq!(y(6), vec![None, None], "390 h + 24 h is past the data: censored");
        assert_eq!(l.rows[6].ttf_hours, None);
        assert_eq!(
            y(7),
            vec![Some(false), None],
            "a machine that never failed is censored, not dropped"
        );
        assert_eq!(l.rows[8].ttf_hours, Some(168.0));
        // With a cut-off at 95 h the first failure is not known yet.
        let l = label(&m, &events, &until, &[24, 72], 168.0, Some(95 * h));
        assert_eq!(l.rows[1].y, vec![Some(false), None]);
        assert_eq!(l.rows[1].mode, None);
        assert_eq!(l.rows[2].y, vec![None, None], "its horizons reach past the cut-off");
    }
}
