//! Series from the MRI simulator (`larmor-datasets`): one channel of one
//! machine over 16 days at 5-minute readings, around one failure or sensor
//! fault placed on purpose, labelled where the event begins to show (the
//! precursor's onset for fast precursors, the failure itself for slow ones,
//! the start of a sensor fault); and healthy channels with no label. Scored
//! here by the generic ensemble, as `larmor detect --input` would score an
//! exported channel (the pipeline's physics-aware detectors are tested in
//! `tests/simulated_fleet.rs`).

use super::generators::{Category, Series};
use super::suite::Seeds;
use larmor_datasets::Scenario;
use larmor_datasets::modes::{FailureMode, SensorFaultKind};
use larmor_datasets::run::MachineRun;
use larmor_datasets::scenario::{Forced, ForcedEvent, ScenarioConfig};
use larmor_datasets::time::{DAY_MS, MINUTE_MS};
use larmor_ingest::ChannelId;

const DAYS: u32 = 16;
const RES: i64 = 5 * MINUTE_MS;

/// Where the label goes.
#[derive(Clone, Copy)]
enum Label {
    Onset,
    Failure,
    None,
}

/// (what, variant, channel, label, day of the failure or fault start)
const CASES: [(Option<Forced>, u8, &str, Label, f64); 8] = [
    (
        Some(Forced::Failure(FailureMode::ChillerFault)),
        0,
        "water_inlet_c",
        Label::Onset,
        10.3,
    ),
    (
        Some(Forced::Failure(FailureMode::HvacOutOfSpec)),
        0,
        "room_temp_c",
        Label::Onset,
        9.6,
    ),
    (
        Some(Forced::Failure(FailureMode::CompressorFailure)),
        0,
        "compressor_return_mpa",
        Label::Failure,
        11.2,
    ),
    (
        Some(Forced::SensorFault(SensorFaultKind::Stuck, Some("water_outlet_c"))),
        0,
        "water_outlet_c",
        Label::Onset,
        8.4,
    ),
    (
        Some(Forced::SensorFault(
            SensorFaultKind::Spikes,
            Some("vessel_pressure_kpa"),
        )),
        0,
        "vessel_pressure_kpa",
        Label::Onset,
        10.1,
    ),
    (
        Some(Forced::SensorFault(SensorFaultKind::Drift, Some("room_humidity_pct"))),
        0,
        "room_humidity_pct",
        Label::Onset,
        7.7,
    ),
    (None, 0, "gradient_coil_c", Label::None, 0.0),
    (None, 0, "compressor_supply_mpa", Label::None, 0.0),
];

/// `per` series (cycling through the cases), from the seed range of `seeds`.
pub fn series(seeds: Seeds, per: usize) -> Vec<Series> {
    let first = match seeds {
        Seeds::Development => 101,
        Seeds::Report => 7_100_001,
    };
    (0..per as u64)
        .map(|k| one(first + k, CASES[k as usize % CASES.len()]))
        .collect()
}

fn one(seed: u64, case: (Option<Forced>, u8, &str, Label, f64)) -> Series {
    let (what, variant, channel, label, at_days) = case;
    let mut config = ScenarioConfig::healthy();
    // A little jitter so that events do not all fall at the same hour.
    let at_days = at_days + (seed % 7) as f64 * 0.11;
    if let Some(what) = what {
        config.forced.push(ForcedEvent {
            machine: 0,
            what,
            at_days,
            length_days: match what {
                Forced::SensorFault(..) => Some(2.0),
                _ => None,
            },
            variant,
            magnitude: None,
        });
    }
    let s = Scenario::plan(1, seed, 20_089, DAYS, &config);
    let plan = &s.plans[0];
    let label_ms = match label {
        Label::None => None,
        Label::Onset => plan
            .failures
            .first()
            .map(|f| f.onset_ms)
            .or_else(|| plan.sensor_faults.first().map(|f| f.start_ms)),
        Label::Failure => plan.failures.first().map(|f| f.failure_ms),
    };
    let c = ChannelId::from_name(channel).expect("a catalogue channel").0 as usize;
    let mut run = MachineRun::new(&s.fleet.machines[0], 0, plan.clone(), s.seed);
    let (mut ts, mut values) = (Vec::new(), Vec::new());
    for day in s.start_ms / DAY_MS..s.end_ms / DAY_MS {
        run.run_day(day, RES, |r| {
            if r.present & (1 << c) != 0 {
                ts.push(r.ts_ms);
                values.push(r.values[c]);
            }
        });
    }
    let labels = label_ms
        .and_then(|at| ts.iter().position(|&t| t >= at))
        .into_iter()
        .collect();
    let what = what.map_or("healthy".to_string(), |w| match w {
        Forced::Failure(m) => m.slug().to_string(),
        Forced::SensorFault(k, _) => format!("sensor-{}", k.slug()),
        Forced::Averted(m) => m.slug().to_string(),
    });
    Series {
        name: format!("simulator-{what}-{channel}-{seed}"),
        category: Category::Simulator,
        ts,
        values,
        labels,
    }
}
