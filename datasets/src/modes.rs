//! The catalogue of what can go wrong: machine failure modes (each with its
//! precursor signature, lead time and downtime) and sensor faults, which corrupt
//! what is reported without anything being wrong with the machine.

/// A machine failure mode. Each runs precursor → failure (downtime start) → repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureMode {
    /// Worn cold head: the 2nd stage creeps up, the heater backs off, vessel
    /// pressure rises, then helium boils off. Ends in an unplanned cold-head swap.
    ColdHeadDegradation,
    /// Failing helium compressor: supply pressure sags and oscillates, return
    /// rises, motor vibration grows. Ends when the compressor stops.
    CompressorFailure,
    /// Chiller or cooling-water fault: water inlet temperature rises (or flow
    /// falls) until the compressor trips; the cold head stops and helium boils off.
    ChillerFault,
    /// Helium leak: the level falls faster than the machine's baseline; heater
    /// duty rises and vessel pressure wanders.
    HeliumLeak,
    /// Gradient coil cooling fault: the coil heats faster than usual for the
    /// load until the interlock stops scanning.
    GradientCoolingFault,
    /// Room HVAC out of specification: magnet-room temperature or humidity, or
    /// the technical room's temperature, drift out of range.
    HvacOutOfSpec,
    /// Compressor bearing wear: bearing-band energy grows, kurtosis and crest
    /// factor rise, until the compressor seizes.
    CompressorBearingWear,
}

impl FailureMode {
    pub const ALL: [FailureMode; 7] = [
        FailureMode::ColdHeadDegradation,
        FailureMode::CompressorFailure,
        FailureMode::ChillerFault,
        FailureMode::HeliumLeak,
        FailureMode::GradientCoolingFault,
        FailureMode::HvacOutOfSpec,
        FailureMode::CompressorBearingWear,
    ];

    /// Stable name used in the events table.
    pub fn slug(self) -> &'static str {
        match self {
            FailureMode::ColdHeadDegradation => "cold_head_degradation",
            FailureMode::CompressorFailure => "compressor_failure",
            FailureMode::ChillerFault => "chiller_fault",
            FailureMode::HeliumLeak => "helium_leak",
            FailureMode::GradientCoolingFault => "gradient_cooling_fault",
            FailureMode::HvacOutOfSpec => "hvac_out_of_spec",
            FailureMode::CompressorBearingWear => "compressor_bearing_wear",
        }
    }

    pub fn from_slug(s: &str) -> Option<FailureMode> {
        Self::ALL.into_iter().find(|m| m.slug() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            FailureMode::ColdHeadDegradation => "cold-head degradation",
            FailureMode::CompressorFailure => "helium compressor failure",
            FailureMode::ChillerFault => "chiller / cooling-water fault, compressor trip",
            FailureMode::HeliumLeak => "helium leak",
            FailureMode::GradientCoolingFault => "gradient coil cooling fault",
            FailureMode::HvacOutOfSpec => "room HVAC out of specification",
            FailureMode::CompressorBearingWear => "compressor bearing wear",
        }
    }

    /// Precursor onset to failure, hours (min, max).
    pub fn lead_hours(self) -> (f64, f64) {
        match self {
            FailureMode::ColdHeadDegradation => (7.0 * 24.0, 35.0 * 24.0),
            FailureMode::CompressorFailure => (12.0, 14.0 * 24.0),
            FailureMode::ChillerFault => (0.5, 6.0),
            FailureMode::HeliumLeak => (5.0 * 24.0, 20.0 * 24.0),
            FailureMode::GradientCoolingFault => (6.0, 4.0 * 24.0),
            FailureMode::HvacOutOfSpec => (1.0, 8.0),
            FailureMode::CompressorBearingWear => (14.0 * 24.0, 60.0 * 24.0),
        }
    }

    /// Failure to end of repair, hours (min, max).
    pub fn downtime_hours(self) -> (f64, f64) {
        match self {
            FailureMode::ColdHeadDegradation => (18.0, 48.0),
            FailureMode::CompressorFailure => (8.0, 36.0),
            FailureMode::ChillerFault => (4.0, 24.0),
            FailureMode::HeliumLeak => (24.0, 72.0),
            FailureMode::GradientCoolingFault => (4.0, 24.0),
            FailureMode::HvacOutOfSpec => (2.0, 12.0),
            FailureMode::CompressorBearingWear => (8.0, 24.0),
        }
    }

    /// Default occurrences per machine-year.
    pub fn rate_per_year(self) -> f64 {
        match self {
            FailureMode::ColdHeadDegradation => 0.25,
            FailureMode::CompressorFailure => 0.15,
            FailureMode::ChillerFault => 0.3,
            FailureMode::HeliumLeak => 0.1,
            FailureMode::GradientCoolingFault => 0.2,
            FailureMode::HvacOutOfSpec => 0.4,
            FailureMode::CompressorBearingWear => 0.15,
        }
    }

    /// Exponent of the precursor's growth: severity = progress^shape, so wear
    /// that accelerates towards the failure has a shape above 1.
    pub fn shape(self) -> f64 {
        match self {
            FailureMode::ColdHeadDegradation => 1.6,
            FailureMode::CompressorFailure => 1.5,
            FailureMode::ChillerFault => 2.0,
            FailureMode::HeliumLeak => 1.0,
            FailureMode::GradientCoolingFault => 1.2,
            FailureMode::HvacOutOfSpec => 1.0,
            FailureMode::CompressorBearingWear => 2.0,
        }
    }

    /// Slow wear that planned maintenance fixes when it happens during the precursor.
    pub fn averted_by_maintenance(self) -> bool {
        matches!(
            self,
            FailureMode::ColdHeadDegradation | FailureMode::CompressorBearingWear | FailureMode::CompressorFailure
        )
    }

    /// Whether the repair ends with a helium top-up (the cold head was stopped or helium was lost).
    pub fn refills_helium(self) -> bool {
        !matches!(self, FailureMode::GradientCoolingFault | FailureMode::HvacOutOfSpec)
    }

    /// Number of variants (different causes with different signatures).
    pub fn variants(self) -> u8 {
        match self {
            FailureMode::ChillerFault => 2,
            FailureMode::HvacOutOfSpec => 3,
            _ => 1,
        }
    }

    /// What a variant is, for the events table.
    pub fn variant_detail(self, variant: u8) -> &'static str {
        match (self, variant) {
            (FailureMode::ChillerFault, 0) => "water inlet temperature rises",
            (FailureMode::ChillerFault, _) => "water flow falls",
            (FailureMode::HvacOutOfSpec, 0) => "magnet room too warm",
            (FailureMode::HvacOutOfSpec, 1) => "magnet room too humid",
            (FailureMode::HvacOutOfSpec, _) => "technical room too warm",
            _ => "",
        }
    }
}

/// A sensor or gateway fault: the machine is fine, the data is not. Never a
/// failure, and must not be forecast as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SensorFaultKind {
    /// One channel repeats the same value.
    Stuck,
    /// One channel has isolated large excursions.
    Spikes,
    /// A whole stream of the machine is missing (gateway link down).
    Dropout,
    /// One channel's calibration steps and then drifts away.
    Drift,
    /// The gateway clock is off: every timestamp of the machine is shifted.
    ClockSkew,
}

impl SensorFaultKind {
    pub const ALL: [SensorFaultKind; 5] = [
        SensorFaultKind::Stuck,
        SensorFaultKind::Spikes,
        SensorFaultKind::Dropout,
        SensorFaultKind::Drift,
        SensorFaultKind::ClockSkew,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            SensorFaultKind::Stuck => "stuck",
            SensorFaultKind::Spikes => "spikes",
            SensorFaultKind::Dropout => "dropout",
            SensorFaultKind::Drift => "drift",
            SensorFaultKind::ClockSkew => "clock_skew",
        }
    }

    pub fn from_slug(s: &str) -> Option<SensorFaultKind> {
        Self::ALL.into_iter().find(|m| m.slug() == s)
    }

    /// Duration range, hours.
    pub fn duration_hours(self) -> (f64, f64) {
        match self {
            SensorFaultKind::Stuck => (2.0, 4.0 * 24.0),
            SensorFaultKind::Spikes => (6.0, 3.0 * 24.0),
            SensorFaultKind::Dropout => (0.25, 2.0 * 24.0),
            SensorFaultKind::Drift => (3.0 * 24.0, 30.0 * 24.0),
            SensorFaultKind::ClockSkew => (24.0, 20.0 * 24.0),
        }
    }
}

/// Default sensor faults per machine-year.
pub const SENSOR_FAULTS_PER_YEAR: f64 = 3.0;

/// Planned maintenance: every 90-130 days, 4-8 hours, on a Sunday morning.
pub const MAINTENANCE_INTERVAL_DAYS: (i64, i64) = (90, 130);
pub const MAINTENANCE_HOURS: (f64, f64) = (4.0, 8.0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_round_trip_and_ranges_are_sane() {
        for m in FailureMode::ALL {
            assert_eq!(FailureMode::from_slug(m.slug()), Some(m));
            let (a, b) = m.lead_hours();
            assert!(0.0 < a && a < b, "{m:?}");
            let (a, b) = m.downtime_hours();
            assert!(0.0 < a && a < b, "{m:?}");
        }
        for k in SensorFaultKind::ALL {
            assert_eq!(SensorFaultKind::from_slug(k.slug()), Some(k));
        }
    }
}
