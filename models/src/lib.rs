//! Larmor models: downtime forecasting from archived telemetry. This first model
//! is a robust linear trend that turns a channel's recent history into a time to
//! reach its alarm limit (e.g. helium level falling toward 40 %).

/// A least-squares line through (time, value) points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearTrend {
    /// Value change per hour.
    pub slope_per_hour: f64,
    /// Fitted value at the last observation.
    pub last_fitted: f64,
    pub last_ts_ms: i64,
}

impl LinearTrend {
    /// Fits a trend; None with fewer than two distinct timestamps.
    pub fn fit(points: &[(i64, f64)]) -> Option<LinearTrend> {
        let n = points.len() as f64;
        if points.len() < 2 {
            return None;
        }
        let t0 = points[0].0;
        let hours = |t: i64| (t - t0) as f64 / 3_600_000.0;
        let mean_t = points.iter().map(|p| hours(p.0)).sum::<f64>() / n;
        let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for &(t, v) in points {
            let dt = hours(t) - mean_t;
            sxy += dt * (v - mean_v);
            sxx += dt * dt;
        }
        if sxx == 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        let last_ts_ms = points.iter().map(|p| p.0).max()?;
        Some(LinearTrend {
            slope_per_hour: slope,
            last_fitted: mean_v + slope * (hours(last_ts_ms) - mean_t),
            last_ts_ms,
        })
    }

    /// Hours until the trend crosses `limit`, or None if it moves away from it.
    pub fn hours_to(&self, limit: f64) -> Option<f64> {
        let gap = limit - self.last_fitted;
        if gap == 0.0 {
            return Some(0.0);
        }
        if self.slope_per_hour == 0.0 || gap.signum() != self.slope_per_hour.signum() {
            return None;
        }
        Some(gap / self.slope_per_hour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helium_falling_two_percent_a_day_reaches_40_in_time() {
        // 80 % falling 2 %/day, sampled hourly for 3 days
        let pts: Vec<(i64, f64)> = (0..72).map(|h| (h * 3_600_000, 80.0 - 2.0 * h as f64 / 24.0)).collect();
        let t = LinearTrend::fit(&pts).unwrap();
        assert!((t.slope_per_hour + 2.0 / 24.0).abs() < 1e-9);
        let days = t.hours_to(40.0).unwrap() / 24.0;
        assert!((days - (80.0 - 2.0 * 71.0 / 24.0 - 40.0) / 2.0).abs() < 1e-6, "{days}");
        assert_eq!(t.hours_to(90.0), None, "a falling level never reaches a higher limit");
        assert_eq!(LinearTrend::fit(&pts[..1]), None);
    }
}
