//! The shipped sample dataset (`datasets/sample/`): a small fleet over a few
//! weeks in which every failure mode and every sensor fault kind happens at
//! least once, placed on purpose. Regenerate it with [`REGENERATE`]; a test
//! checks the committed copy is what this config produces.

use crate::backfill::BackfillConfig;
use crate::modes::{FailureMode, SensorFaultKind};
use crate::scenario::{Forced, ForcedEvent, ScenarioConfig};
use std::path::PathBuf;
use std::time::Duration;

pub const MACHINES: usize = 12;
pub const DAYS: u32 = 75;
pub const RESOLUTION: Duration = Duration::from_secs(5 * 60);
pub const SEED: u64 = 7;

/// The command that rewrites `datasets/sample/` (run from the workspace root).
pub const REGENERATE: &str =
    "cargo run --release -p larmor -- dataset generate --preset sample --out datasets/sample --force";

/// Where the committed sample lives.
pub fn committed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample")
}

fn forced(machine: usize, what: Forced, at_days: f64, length_days: f64, variant: u8) -> ForcedEvent {
    ForcedEvent {
        machine,
        what,
        at_days,
        length_days: Some(length_days),
        variant,
        magnitude: None,
    }
}

/// Machines 0-7 each get machine failures (one mode each, HVAC and the chiller
/// in every variant), machine 7 a cold-head degradation that planned
/// maintenance catches, machines 8-11 only sensor faults. Day 0 is 2025-01-01.
pub fn events() -> Vec<ForcedEvent> {
    use FailureMode::*;
    use Forced::{Averted, Failure, SensorFault};
    use SensorFaultKind::*;
    vec![
        forced(0, Failure(ColdHeadDegradation), 40.3, 21.0, 0),
        forced(1, Failure(CompressorFailure), 30.6, 6.0, 0),
        forced(2, Failure(ChillerFault), 20.45, 0.25, 0),
        forced(2, Failure(ChillerFault), 55.6, 0.2, 1),
        forced(3, Failure(HeliumLeak), 36.4, 12.0, 0),
        forced(4, Failure(GradientCoolingFault), 27.6, 3.0, 0),
        forced(5, Failure(HvacOutOfSpec), 15.5, 0.25, 0),
        forced(5, Failure(HvacOutOfSpec), 45.55, 0.3, 1),
        forced(5, Failure(HvacOutOfSpec), 62.4, 0.25, 2),
        forced(6, Failure(CompressorBearingWear), 50.4, 35.0, 0),
        forced(7, Averted(ColdHeadDegradation), 46.0, 24.0, 0),
        forced(8, SensorFault(Stuck, Some("coldhead_stage2_k")), 10.3, 2.0, 0),
        ForcedEvent {
            magnitude: Some(45.0 * 60_000.0), // 45 minutes ahead
            ..forced(8, SensorFault(ClockSkew, None), 40.0, 10.0, 0)
        },
        forced(9, SensorFault(Spikes, Some("helium_level_pct")), 20.2, 2.0, 0),
        forced(10, SensorFault(Dropout, Some("vibration")), 30.5, 1.0, 0),
        ForcedEvent {
            magnitude: Some(4.0),
            ..forced(11, SensorFault(Drift, Some("water_inlet_c")), 15.0, 20.0, 0)
        },
    ]
}

/// The sample's generator settings, writing to `out`.
pub fn config(out: impl Into<PathBuf>) -> BackfillConfig {
    let mut c = BackfillConfig::new(MACHINES, DAYS, RESOLUTION, SEED, out);
    c.scenario = ScenarioConfig {
        forced: events(),
        ..ScenarioConfig::healthy()
    };
    c.scenario.planned_maintenance = true;
    // One file per (day, stream): the sample stays small and easy to browse.
    c.machines_per_file = MACHINES;
    c.zstd_level = 9;
    c
}
