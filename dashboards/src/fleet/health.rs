//! The health score of a machine: one number from 0 (failing) to 100 (nothing
//! wrong), from its open anomalies and its latest forecast.
//!
//! The rule, in full:
//!
//! ```text
//! health = 100
//!        − Σ over the machine's open anomaly episodes, the worst one per channel:
//!              weight(kind) × (0.5 + 0.5 × severity)      severity: the detector's score, 0..1
//!              weight: machine_health 40, environment 15, sensor_fault 5
//!        − 50 × the highest P(failure) over the latest forecast's horizons
//! clamped to 0..100
//! ```
//!
//! So one severe machine-health episode costs 40, a mild one 20; a room out of
//! its climate range costs 7.5 to 15 (it harms scans before it harms the
//! magnet); a suspect sensor costs a little (it hides what it measures). The
//! worst episode per channel counts, so a flapping channel cannot sink the score
//! alone. A forecast of P = 0.9 costs 45. The weights are judgement, not fitted:
//! the score orders machines for attention, it is not a probability.

use larmor_analytics::AnomalyKind;

/// Points an open episode of this kind costs at full severity.
pub fn weight(kind: AnomalyKind) -> f64 {
    match kind {
        AnomalyKind::MachineHealth => 40.0,
        AnomalyKind::Environment => 15.0,
        AnomalyKind::SensorFault => 5.0,
    }
}

/// Points the forecast costs at P(failure) = 1.
pub const FORECAST_WEIGHT: f64 = 50.0;

/// What one open episode costs.
pub fn penalty(kind: AnomalyKind, severity: f64) -> f64 {
    let s = if severity.is_finite() {
        severity.clamp(0.0, 1.0)
    } else {
        1.0
    };
    weight(kind) * (0.5 + 0.5 * s)
}

/// The score from the open episodes, as (channel, kind, severity), and the
/// highest forecast P(failure), if any.
pub fn score<'a>(open: impl IntoIterator<Item = (&'a str, AnomalyKind, f64)>, p_failure: Option<f64>) -> f64 {
    let mut worst: Vec<(&str, f64)> = Vec::new();
    for (channel, kind, severity) in open {
        let p = penalty(kind, severity);
        match worst.iter_mut().find(|(c, _)| *c == channel) {
            Some((_, w)) => *w = w.max(p),
            None => worst.push((channel, p)),
        }
    }
    let forecast = p_failure.filter(|p| p.is_finite()).unwrap_or(0.0).clamp(0.0, 1.0) * FORECAST_WEIGHT;
    (100.0 - worst.iter().map(|(_, p)| p).sum::<f64>() - forecast).clamp(0.0, 100.0)
}

/// The kind as the `kind` label and the anomalies table spell it.
pub fn kind_name(kind: AnomalyKind) -> &'static str {
    match kind {
        AnomalyKind::MachineHealth => "machine_health",
        AnomalyKind::Environment => "environment",
        AnomalyKind::SensorFault => "sensor_fault",
    }
}

/// Every kind, for series that exist from the start.
pub const KINDS: [AnomalyKind; 3] = [
    AnomalyKind::MachineHealth,
    AnomalyKind::Environment,
    AnomalyKind::SensorFault,
];

#[cfg(test)]
mod tests {
    use super::*;
    use AnomalyKind::*;

    #[test]
    fn nothing_open_and_no_forecast_is_full_health() {
        assert_eq!(score([], None), 100.0);
    }

    #[test]
    fn the_worst_episode_per_channel_counts_once() {
        let one = score([("helium_level_pct", MachineHealth, 1.0)], None);
        assert_eq!(one, 60.0);
        let repeated = score(
            [
                ("helium_level_pct", MachineHealth, 0.2),
                ("helium_level_pct", MachineHealth, 1.0),
                ("helium_level_pct", MachineHealth, 0.5),
            ],
            None,
        );
        assert_eq!(repeated, one, "a flapping channel costs its worst episode");
        let two = score(
            [
                ("helium_level_pct", MachineHealth, 1.0),
                ("room_temp_c", Environment, 0.0),
            ],
            None,
        );
        assert_eq!(two, 100.0 - 40.0 - 7.5);
    }

    #[test]
    fn kinds_weigh_in_order_and_severity_scales_from_half_to_full() {
        assert!(penalty(MachineHealth, 0.5) > penalty(Environment, 0.5));
        assert!(penalty(Environment, 0.5) > penalty(SensorFault, 0.5));
        assert_eq!(penalty(MachineHealth, 0.0), 20.0);
        assert_eq!(penalty(MachineHealth, 7.0), 40.0, "clamped");
        assert_eq!(penalty(SensorFault, f64::NAN), 5.0, "unknown severity counts fully");
    }

    #[test]
    fn forecasts_cost_up_to_fifty_and_the_score_stays_in_range() {
        assert_eq!(score([], Some(0.9)), 55.0);
        assert_eq!(score([], Some(f64::NAN)), 100.0);
        let many: Vec<_> = ["a", "b", "c", "d"].iter().map(|c| (*c, MachineHealth, 1.0)).collect();
        assert_eq!(score(many, Some(1.0)), 0.0);
    }
}
