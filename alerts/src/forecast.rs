//! What the alerts need from a forecast, as their own small type: the models
//! crate maps its output onto [`Forecast`]. A forecast becomes an alert (class
//! `forecast`, one per machine and mode) when its probability within the alert
//! horizon reaches [`ForecastPolicy::min_probability`]; it carries the
//! maintenance-window proposal when the machine's schedule is known.

use larmor_datasets::FailureMode;
use serde::{Deserialize, Serialize};

/// Predicted time to failure, hours from `issued_at_ms`: a central value and an
/// interval (e.g. the 10th and 90th percentiles).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeToFailure {
    pub lower_hours: f64,
    pub median_hours: f64,
    pub upper_hours: f64,
}

/// One model run's forecast for one machine and failure mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub machine_id: String,
    #[serde(with = "crate::alert::mode_slug")]
    pub mode: FailureMode,
    pub issued_at_ms: i64,
    /// P(failure within the horizon), per horizon in hours, ascending.
    pub probabilities: Vec<(f64, f64)>,
    pub time_to_failure: Option<TimeToFailure>,
    /// Which model produced it (for the evidence).
    pub model: String,
}

impl Forecast {
    /// The probability of failure within `hours` (the largest horizon not past it;
    /// 0 when every horizon is longer).
    pub fn probability_within(&self, hours: f64) -> f64 {
        self.probabilities
            .iter()
            .filter(|(h, _)| *h <= hours + 1e-9)
            .map(|&(_, p)| p)
            .fold(0.0, f64::max)
    }

    /// The earliest time the failure may come, by the interval's lower bound
    /// (the median is not enough: half the failures come before it).
    pub fn earliest_failure_ms(&self) -> Option<i64> {
        self.time_to_failure
            .map(|t| self.issued_at_ms + (t.lower_hours.max(0.0) * 3_600_000.0) as i64)
    }

    /// Checks what came from outside: a machine, probabilities in 0..=1, an ordered interval.
    pub fn validate(&self) -> Result<(), String> {
        if self.machine_id.is_empty() {
            return Err("forecast without a machine".into());
        }
        for &(h, p) in &self.probabilities {
            if !(h.is_finite() && h > 0.0 && (0.0..=1.0).contains(&p)) {
                return Err(format!(
                    "forecast for {}: bad horizon/probability ({h}, {p})",
                    self.machine_id
                ));
            }
        }
        if let Some(t) = self.time_to_failure
            && !(t.lower_hours.is_finite()
                && t.upper_hours.is_finite()
                && t.lower_hours <= t.median_hours
                && t.median_hours <= t.upper_hours)
        {
            return Err(format!("forecast for {}: interval not ordered: {t:?}", self.machine_id));
        }
        Ok(())
    }
}

/// When a forecast becomes an alert.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastPolicy {
    /// A forecast alerts when P(failure within `horizon`) reaches this.
    pub min_probability: f64,
    #[serde(with = "humantime_serde")]
    pub horizon: std::time::Duration,
    /// At or above this probability the alert is critical.
    pub critical_probability: f64,
}

impl Default for ForecastPolicy {
    fn default() -> Self {
        ForecastPolicy {
            min_probability: 0.5,
            horizon: std::time::Duration::from_secs(14 * 86_400),
            critical_probability: 0.8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f() -> Forecast {
        Forecast {
            machine_id: "M".into(),
            mode: FailureMode::ColdHeadDegradation,
            issued_at_ms: 0,
            probabilities: vec![(24.0, 0.1), (168.0, 0.4), (336.0, 0.7)],
            time_to_failure: Some(TimeToFailure {
                lower_hours: 100.0,
                median_hours: 250.0,
                upper_hours: 400.0,
            }),
            model: "test".into(),
        }
    }

    #[test]
    fn probabilities_and_the_earliest_failure() {
        let f = f();
        assert_eq!(f.probability_within(200.0), 0.4);
        assert_eq!(f.probability_within(336.0), 0.7);
        assert_eq!(f.probability_within(1.0), 0.0);
        assert_eq!(f.earliest_failure_ms(), Some(100 * 3_600_000));
        assert!(f.validate().is_ok());
        let mut bad = f.clone();
        bad.probabilities.push((500.0, 1.5));
        assert!(bad.validate().is_err());
    }
}
