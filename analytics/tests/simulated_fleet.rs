//! The detectors on the simulated fleet of `larmor-datasets`: each catches the
//! failure-mode signature it exists for (the shipped sample's scenario, where
//! every failure mode and sensor fault happens at a known time), healthy
//! machines stay within a false-positive budget, and a warm-up from the archive
//! leaves the detectors ready at once.

use larmor_analytics::detect::{DetectConfig, warm};
use larmor_analytics::{Anomaly, AnomalyKind, DetectorSet};
use larmor_datasets::modes::{FailureMode, SensorFaultKind};
use larmor_datasets::run::MachineRun;
use larmor_datasets::scenario::ScenarioConfig;
use larmor_datasets::time::{DAY_MS, HOUR_MS, MINUTE_MS};
use larmor_datasets::{Fleet, Scenario, Simulator};
use larmor_ingest::archive::{ArchiveConfig, ArchiveWriter};
use larmor_ingest::{ChannelId, Frame, Sample, Stream};

const RES: i64 = 5 * MINUTE_MS;

/// One machine of a scenario as hourly frames per stream (what a gateway
/// batching 5-minute readings would send), in time order.
fn machine_frames(s: &Scenario, machine: usize, resolution_ms: i64, mut sink: impl FnMut(Frame)) {
    let m = &s.fleet.machines[machine];
    let mut run = MachineRun::new(m, machine, s.plans[machine].clone(), s.seed);
    let per_frame = (HOUR_MS / resolution_ms).max(1) as usize;
    let mut pending: [Vec<Sample>; 3] = Default::default();
    let mut seq = 0;
    let mut flush = |stream: Stream, samples: &mut Vec<Sample>| {
        if let Some(last) = samples.last() {
            seq += 1;
            sink(Frame {
                machine_id: m.id.clone(),
                stream,
                seq,
                ts_ms: last.ts_ms,
                samples: std::mem::take(samples),
            });
        }
    };
    for day in s.start_ms / DAY_MS..s.end_ms / DAY_MS {
        let mut readings = Vec::new();
        run.run_day(day, resolution_ms, |r| readings.push((r.ts_ms, *r.values, r.present)));
        for (ts, values, present) in readings {
            for stream in Stream::ALL {
                let v: Vec<(ChannelId, f64)> = ChannelId::of_stream(stream)
                    .filter(|c| present & (1 << c.0) != 0)
                    .map(|c| (c, values[c.0 as usize]))
                    .collect();
                let p = &mut pending[stream.index()];
                if !v.is_empty() {
                    p.push(Sample { ts_ms: ts, values: v });
                }
                if p.len() >= per_frame {
                    flush(stream, p);
                }
            }
        }
    }
    for stream in Stream::ALL {
        flush(stream, &mut pending[stream.index()]);
    }
}

fn detect_machine(s: &Scenario, machine: usize) -> Vec<Anomaly> {
    let mut set = DetectorSet::from_config(&DetectConfig::default()).unwrap();
    let mut out = Vec::new();
    machine_frames(s, machine, RES, |f| set.observe(&f, &mut out));
    out
}

fn day(s: &Scenario, ts: i64) -> f64 {
    (ts - s.start_ms) as f64 / DAY_MS as f64
}

/// The first anomaly of `detector` on `channel` (named first) within `[from, to)`.
fn first<'a>(found: &'a [Anomaly], detector: &str, channel: &str, from: i64, to: i64) -> Option<&'a Anomaly> {
    found
        .iter()
        .find(|a| a.detector == detector && a.channel() == channel && a.ts_ms >= from && a.ts_ms < to)
}

#[test]
fn each_detector_catches_the_failure_mode_it_exists_for() {
    let s = larmor_datasets::sample::config("unused").plan();
    let failure = |machine: usize, mode: FailureMode, variant: u8| {
        s.plans[machine]
            .failures
            .iter()
            .find(|f| f.mode == mode && f.variant == variant)
            .unwrap_or_else(|| panic!("machine {machine} has no {mode:?}"))
            .clone()
    };
    let mut report = Vec::new();
    // (machine, mode, variant, detector, channel, least lead before the failure)
    let cases = [
        (
            0,
            FailureMode::ColdHeadDegradation,
            0,
            "drift",
            "coldhead_stage2_k",
            7 * DAY_MS,
        ),
        (
            0,
            FailureMode::ColdHeadDegradation,
            0,
            "multivariate",
            "vessel_pressure_kpa",
            7 * DAY_MS,
        ),
        (
            1,
            FailureMode::CompressorFailure,
            0,
            "drift",
            "compressor_return_mpa",
            2 * DAY_MS,
        ),
        (
            1,
            FailureMode::CompressorFailure,
            0,
            "multivariate",
            "coldhead_stage2_k",
            2 * DAY_MS,
        ),
        (
            1,
            FailureMode::CompressorFailure,
            0,
            "vibration",
            "compressor_band_motor_mms",
            12 * HOUR_MS,
        ),
        (2, FailureMode::ChillerFault, 0, "rate", "water_inlet_c", 2 * HOUR_MS),
        (2, FailureMode::ChillerFault, 1, "drift", "water_flow_lpm", HOUR_MS),
        (
            2,
            FailureMode::ChillerFault,
            1,
            "multivariate",
            "water_outlet_c",
            HOUR_MS,
        ),
        (3, FailureMode::HeliumLeak, 0, "drift", "helium_level_pct", 5 * DAY_MS),
        (
            3,
            FailureMode::HeliumLeak,
            0,
            "multivariate",
            "vessel_pressure_kpa",
            5 * DAY_MS,
        ),
        (
            4,
            FailureMode::GradientCoolingFault,
            0,
            "multivariate",
            "gradient_coil_c",
            DAY_MS,
        ),
        (5, FailureMode::HvacOutOfSpec, 0, "rate", "room_temp_c", 2 * HOUR_MS),
        (
            5,
            FailureMode::HvacOutOfSpec,
            1,
            "drift",
            "room_humidity_pct",
            2 * HOUR_MS,
        ),
        (
            5,
            FailureMode::HvacOutOfSpec,
            2,
            "rate",
            "tech_room_temp_c",
            2 * HOUR_MS,
        ),
        (
            6,
            FailureMode::CompressorBearingWear,
            0,
            "vibration",
            "compressor_band_bearing_mms",
            7 * DAY_MS,
        ),
    ];
    let mut found: Vec<Option<Vec<Anomaly>>> = vec![None; s.fleet.machines.len()];
    for (machine, mode, variant, detector, channel, lead) in cases {
        let f = failure(machine, mode, variant);
        let all = found[machine].get_or_insert_with(|| detect_machine(&s, machine));
        let hit = first(all, detector, channel, f.onset_ms, f.failure_ms);
        let hit = hit.unwrap_or_else(|| {
            panic!(
                "{detector} missed {mode:?} on {channel} (machine {machine}, onset day {:.2})",
                day(&s, f.onset_ms)
            )
        });
        assert!(
            f.failure_ms - hit.ts_ms >= lead,
            "{detector} caught {mode:?} on {channel} only {:.1} h before the failure",
            (f.failure_ms - hit.ts_ms) as f64 / HOUR_MS as f64
        );
        assert!((0.5..1.0).contains(&hit.score), "{hit:?}");
        assert!(!hit.explanation.is_empty() && hit.kind != AnomalyKind::SensorFault);
        report.push(format!(
            "{mode:?}: {detector} on {channel} {:.1} days into the precursor, {:.1} days before the failure",
            day(&s, hit.ts_ms) - day(&s, f.onset_ms),
            (f.failure_ms - hit.ts_ms) as f64 / DAY_MS as f64
        ));
    }

    // Robust: a step. The compressor stops at the failure: the return pressure jumps.
    let f = failure(1, FailureMode::CompressorFailure, 0);
    let (down, _) = f.downtime.unwrap();
    let all = found[1].as_ref().unwrap();
    assert!(first(all, "robust", "compressor_return_mpa", down, down + HOUR_MS).is_some());

    // Sensor faults, reported as such.
    let fault = |machine: usize, kind: SensorFaultKind| {
        s.plans[machine]
            .sensor_faults
            .iter()
            .find(|x| x.kind == kind)
            .unwrap()
            .clone()
    };
    let stuck = fault(8, SensorFaultKind::Stuck);
    let all = detect_machine(&s, 8);
    let hit = first(&all, "sensor_fault", "coldhead_stage2_k", stuck.start_ms, stuck.end_ms).expect("stuck sensor");
    assert_eq!(hit.kind, AnomalyKind::SensorFault);
    assert!(hit.explanation.contains("stuck"), "{}", hit.explanation);
    assert!(
        first(&all, "drift", "coldhead_stage2_k", stuck.start_ms, stuck.end_ms).is_none(),
        "a frozen sensor is not a drift"
    );
    let dropout = fault(10, SensorFaultKind::Dropout);
    let all = detect_machine(&s, 10);
    let gaps: Vec<&Anomaly> = all
        .iter()
        .filter(|a| a.detector == "sensor_fault" && a.ts_ms >= dropout.start_ms && a.ts_ms <= dropout.end_ms + HOUR_MS)
        .collect();
    assert_eq!(gaps.len(), 1, "one anomaly for the stream's dropout: {gaps:?}");
    assert_eq!(gaps[0].kind, AnomalyKind::SensorFault);
    assert_eq!(Some(gaps[0].stream), dropout.stream);
    println!("{}", report.join("\n"));
}

#[test]
fn healthy_machines_stay_within_the_false_positive_budget() {
    // 20 healthy machines (no failures, faults or maintenance), 30 days of 5-minute readings.
    let s = Scenario::plan(20, 11, 20_089, 30, &ScenarioConfig::healthy());
    let mut per_detector = std::collections::BTreeMap::<&str, Vec<String>>::new();
    for m in 0..s.fleet.machines.len() {
        for a in detect_machine(&s, m) {
            per_detector.entry(a.detector).or_default().push(format!(
                "{} day {:.2}: {}",
                a.machine_id,
                day(&s, a.ts_ms),
                a.explanation
            ));
        }
    }
    // Budget: at most one anomaly per detector per 200 machine-days (3 here), none from the threshold.
    println!(
        "600 healthy machine-days: {:?}",
        per_detector.iter().map(|(d, f)| (d, f.len())).collect::<Vec<_>>()
    );
    for (detector, found) in &per_detector {
        let budget = if *detector == "threshold" { 0 } else { 3 };
        assert!(
            found.len() <= budget,
            "{detector}: {} on a healthy fleet:\n{}",
            found.len(),
            found.join("\n")
        );
    }
}

#[test]
fn live_rate_healthy_fleet_with_injected_spikes_stays_quiet() {
    // The default live fleet at 10 Hz in 500 ms frames, as `larmor run` sees it, for
    // 10 minutes; then the walking skeleton's two single-reading faults.
    let mut sim = Simulator::new(Fleet::generate(20, 7), 7);
    let mut set = DetectorSet::from_config(&DetectConfig::default()).unwrap();
    let mut out = Vec::new();
    let t0 = 1_764_300_000_000;
    for k in 1..=1200 {
        for f in sim.frames(t0 + k * 500, 5, 100) {
            set.observe(&f, &mut out);
        }
    }
    assert!(out.is_empty(), "{out:?}");
    assert!(sim.inject("MRI-0002", ChannelId::from_name("helium_level_pct").unwrap(), 12.0));
    assert!(sim.inject("MRI-0003", ChannelId::from_name("room_o2_pct").unwrap(), 18.0));
    for k in 1201..=1300 {
        for f in sim.frames(t0 + k * 500, 5, 100) {
            set.observe(&f, &mut out);
        }
    }
    let who: Vec<(&str, &str)> = out.iter().map(|a| (a.detector, a.channel())).collect();
    assert_eq!(
        who,
        vec![("threshold", "helium_level_pct"), ("threshold", "room_o2_pct")],
        "{out:?}"
    );
}

#[test]
fn warm_up_from_the_archive_leaves_baselines_ready() {
    // Two days of one healthy machine archived at 1-minute resolution.
    let s = Scenario::plan(1, 3, 20_089, 3, &ScenarioConfig::healthy());
    let dir = tempfile::tempdir().unwrap();
    let mut frames = Vec::new();
    machine_frames(&s, 0, MINUTE_MS, |f| frames.push(f));
    let split = s.start_ms + 2 * DAY_MS;
    let (past, live): (Vec<Frame>, Vec<Frame>) = frames.into_iter().partition(|f| f.ts_ms <= split);
    let mut w = ArchiveWriter::new(ArchiveConfig {
        path: dir.path().into(),
        ..Default::default()
    })
    .unwrap();
    for f in &past {
        w.append(f);
    }
    w.flush().unwrap();

    let stage2 = ChannelId::from_name("coldhead_stage2_k").unwrap();
    // The next two hours, with the cold head's 2nd stage 0.2 K warmer from the start.
    let next: Vec<Frame> = live
        .into_iter()
        .filter(|f| f.ts_ms <= split + 2 * HOUR_MS + HOUR_MS)
        .map(|mut f| {
            for smp in &mut f.samples {
                for (c, v) in &mut smp.values {
                    if *c == stage2 {
                        *v += 0.2;
                    }
                }
            }
            f
        })
        .collect();
    let drift_on_stage2 = |set: &mut DetectorSet| {
        let mut out = Vec::new();
        for f in &next {
            set.observe(f, &mut out);
        }
        out.iter()
            .any(|a| a.detector == "drift" && a.channel() == "coldhead_stage2_k")
    };

    let config = DetectConfig::default();
    let mut cold = DetectorSet::from_config(&config).unwrap();
    assert!(
        !drift_on_stage2(&mut cold),
        "without history the drift detector is still warming up"
    );

    let mut warmed = DetectorSet::from_config(&config).unwrap();
    let r = warm::from_archive(&mut warmed, dir.path(), &config.warm_up, split + 1).unwrap();
    let minutes = (config.warm_up.window.as_millis() as i64 / MINUTE_MS) as u64;
    assert!(
        r.readings > minutes * 25 && r.readings <= (minutes + 2) * 31,
        "{} averaged readings",
        r.readings
    );
    assert!(
        drift_on_stage2(&mut warmed),
        "warmed from the archive, the drift is caught at once"
    );

    // A missing archive is a first start, not an error.
    let none = warm::from_archive(&mut warmed, &dir.path().join("nope"), &config.warm_up, split).unwrap();
    assert_eq!(none.readings, 0);
}

#[test]
#[ignore = "exploration: prints every anomaly of the sample scenario"]
fn explore() {
    let s = larmor_datasets::sample::config("unused").plan();
    for e in s.events() {
        println!(
            "EVENT {} {:?} {} {:?} onset d{:.2} down {:?} end d{:.2}",
            e.machine_id,
            e.kind,
            e.mode,
            e.channel,
            day(&s, e.onset_ms),
            e.downtime_start_ms.map(|d| format!("d{:.2}", day(&s, d))),
            day(&s, e.repair_end_ms)
        );
    }
    for m in 0..s.fleet.machines.len() {
        for a in detect_machine(&s, m) {
            if a.detector != "threshold" {
                println!(
                    "{} d{:.2} {} {:?} {:.2} {}",
                    a.machine_id,
                    day(&s, a.ts_ms),
                    a.detector,
                    a.channels,
                    a.score,
                    a.explanation
                );
            }
        }
    }
}
