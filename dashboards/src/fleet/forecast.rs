//! Forecast rows as the fleet state takes them, and what it keeps of them per
//! machine. A row has the columns of the `forecasts` table
//! (`larmor_datadir::schema::forecasts`), with the horizon as a duration; a
//! refresh hands over every machine's rows at once and replaces the last one.

use larmor_metrics::FORECAST_HORIZONS;
use std::time::Duration;

/// One forecast: P(the failure mode causes downtime within `horizon`).
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastRow {
    pub machine_id: String,
    pub mode: String,
    pub probability: f64,
    /// One of [`FORECAST_HORIZONS`] (24 h, 72 h, 7 d).
    pub horizon: Duration,
    /// When the model expects the failure, if it predicts one.
    pub predicted_failure_at_ms: Option<i64>,
    pub model: String,
    pub issued_at_ms: i64,
}

/// A row the fleet state cannot take; nothing of its refresh is applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    #[error(
        "forecast for {machine}: horizon {horizon:?} is not one of the exported horizons (24h, 72h, 7d); \
         add it to larmor_metrics::FORECAST_HORIZONS (and the dashboards) first"
    )]
    Horizon { machine: String, horizon: Duration },
    #[error("forecast for {machine}: probability {probability} is not within 0..1")]
    Probability { machine: String, probability: f64 },
}

/// The `horizon` label of a horizon, if it is exported.
pub fn horizon_label(h: Duration) -> Option<&'static str> {
    FORECAST_HORIZONS.iter().find(|(_, d)| *d == h).map(|(l, _)| *l)
}

/// Checks every row before any is applied.
pub fn validate(rows: &[ForecastRow]) -> Result<(), ForecastError> {
    for r in rows {
        if horizon_label(r.horizon).is_none() {
            return Err(ForecastError::Horizon {
                machine: r.machine_id.clone(),
                horizon: r.horizon,
            });
        }
        if !(0.0..=1.0).contains(&r.probability) {
            return Err(ForecastError::Probability {
                machine: r.machine_id.clone(),
                probability: r.probability,
            });
        }
    }
    Ok(())
}

/// What the fleet keeps of one machine's rows of a refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineForecast {
    /// P(failure) per exported horizon, in [`FORECAST_HORIZONS`] order: the
    /// most likely mode's (None: no row for that horizon).
    pub probability: [Option<f64>; FORECAST_HORIZONS.len()],
    /// The mode with the highest probability at any horizon.
    pub likely_mode: String,
    /// The earliest predicted failure over the machine's rows.
    pub predicted_failure_at_ms: Option<i64>,
    pub model: String,
    pub issued_at_ms: i64,
}

impl MachineForecast {
    /// Folds one machine's (validated) rows.
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = &'a ForecastRow>) -> Option<MachineForecast> {
        let mut out: Option<MachineForecast> = None;
        let mut best = f64::NEG_INFINITY;
        for r in rows {
            let f = out.get_or_insert_with(|| MachineForecast {
                probability: [None; FORECAST_HORIZONS.len()],
                likely_mode: r.mode.clone(),
                predicted_failure_at_ms: None,
                model: r.model.clone(),
                issued_at_ms: r.issued_at_ms,
            });
            let Some(i) = FORECAST_HORIZONS.iter().position(|(_, d)| *d == r.horizon) else {
                continue;
            };
            f.probability[i] = Some(f.probability[i].map_or(r.probability, |p: f64| p.max(r.probability)));
            if r.probability > best {
                best = r.probability;
                f.likely_mode = r.mode.clone();
            }
            if let Some(t) = r.predicted_failure_at_ms {
                f.predicted_failure_at_ms = Some(f.predicted_failure_at_ms.map_or(t, |e| e.min(t)));
            }
            f.issued_at_ms = f.issued_at_ms.max(r.issued_at_ms);
        }
        out
    }

    /// The highest P(failure) over the horizons (for the health score).
    pub fn max_probability(&self) -> Option<f64> {
        self.probability.iter().flatten().copied().reduce(f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mode: &str, p: f64, hours: u64, at: Option<i64>) -> ForecastRow {
        ForecastRow {
            machine_id: "MRI-0001".into(),
            mode: mode.into(),
            probability: p,
            horizon: Duration::from_secs(hours * 3600),
            predicted_failure_at_ms: at,
            model: "m1".into(),
            issued_at_ms: 1_000,
        }
    }

    #[test]
    fn rows_fold_to_the_most_likely_mode_per_horizon() {
        let rows = [
            row("coldhead_wear", 0.1, 24, None),
            row("helium_leak", 0.3, 24, Some(9_000)),
            row("coldhead_wear", 0.6, 168, Some(5_000)),
        ];
        let f = MachineForecast::from_rows(&rows).unwrap();
        assert_eq!(f.probability, [Some(0.3), None, Some(0.6)]);
        assert_eq!(f.likely_mode, "coldhead_wear");
        assert_eq!(f.predicted_failure_at_ms, Some(5_000));
        assert_eq!(f.max_probability(), Some(0.6));
        assert_eq!(MachineForecast::from_rows(&[]), None);
    }

    #[test]
    fn unknown_horizons_and_probabilities_out_of_range_are_refused() {
        let e = validate(&[row("x", 0.5, 48, None)]).unwrap_err();
        assert!(e.to_string().contains("FORECAST_HORIZONS"), "{e}");
        let e = validate(&[row("x", 1.5, 24, None)]).unwrap_err();
        assert!(matches!(e, ForecastError::Probability { .. }));
        assert!(validate(&[row("x", f64::NAN, 24, None)]).is_err());
        validate(&[row("x", 1.0, 72, None), row("x", 0.0, 24, None)]).unwrap();
    }
}
