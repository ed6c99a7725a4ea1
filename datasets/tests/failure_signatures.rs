//! Each failure mode leaves its signature in the generated data, sensor faults
//! corrupt data without any failure, and planned maintenance resets degradation.
//! Runs the shipped sample's scenario in memory (no files).

mod common;

use common::{Series, ch, simulate};
use larmor_datasets::modes::{FailureMode, SensorFaultKind};
use larmor_datasets::sample;
use larmor_datasets::scenario::{EventKind, FailureEpisode, Scenario, SensorFault};
use larmor_datasets::schedule::exams_between;
use larmor_datasets::time::{DAY_MS, HOUR_MS, MINUTE_MS};
use larmor_ingest::CATALOG;

const RES: i64 = 5 * MINUTE_MS;

fn scenario() -> Scenario {
    sample::config("unused").plan()
}

fn episode(s: &Scenario, machine: usize, mode: FailureMode, nth: usize) -> FailureEpisode {
    s.plans[machine]
        .failures
        .iter()
        .filter(|f| f.mode == mode)
        .nth(nth)
        .unwrap_or_else(|| panic!("machine {machine} has no {mode:?} #{nth}"))
        .clone()
}

fn downtime(f: &FailureEpisode) -> (i64, i64) {
    f.downtime.expect("a failure with downtime")
}

#[test]
fn cold_head_degradation_creeps_stage2_then_heater_pressure_then_boil_off() {
    let s = scenario();
    let f = episode(&s, 0, FailureMode::ColdHeadDegradation, 0);
    let d = simulate(&s, 0, RES);
    let (stage2, heater, pressure, helium) = (
        ch("coldhead_stage2_k"),
        ch("vessel_heater_pct"),
        ch("vessel_pressure_kpa"),
        ch("helium_level_pct"),
    );
    let base = (f.onset_ms - 3 * DAY_MS, f.onset_ms);
    let late = (f.failure_ms - DAY_MS, f.failure_ms);
    let rise = d.mean(stage2, late.0, late.1) - d.mean(stage2, base.0, base.1);
    assert!(rise > 0.3, "2nd stage rises {rise:.3} K before the failure");
    assert!(d.mean(stage2, late.0, late.1) > 4.3);
    assert!(
        d.mean(heater, late.0, late.1) < d.mean(heater, base.0, base.1) - 10.0,
        "the heater backs off"
    );
    assert!(
        d.mean(pressure, late.0, late.1) > d.mean(pressure, base.0, base.1) + 3.0,
        "vessel pressure rises"
    );
    // Helium: flat before the onset, falling in the last days.
    let drop =
        |to: i64| d.mean(helium, to - 6 * HOUR_MS, to) - d.mean(helium, to - 3 * DAY_MS, to - 3 * DAY_MS + 6 * HOUR_MS);
    let (late_drop, base_drop) = (drop(f.failure_ms), drop(f.onset_ms));
    assert!(late_drop < -0.5, "boil-off before the failure: {late_drop:.3} %");
    assert!(base_drop > -0.15, "no boil-off before the onset: {base_drop:.3} %");
    // Order: the 2nd stage moves first, the heater later (6-hour means).
    let first = |pred: &dyn Fn(i64) -> bool| {
        (0..)
            .map(|k| f.onset_ms + k * HOUR_MS)
            .take_while(|&t| t < f.failure_ms)
            .find(|&t| pred(t))
            .unwrap_or(f.failure_ms)
    };
    let s2_base = d.mean(stage2, base.0, base.1);
    let h_base = d.mean(heater, base.0, base.1);
    let t_stage2 = first(&|t| d.mean(stage2, t - 6 * HOUR_MS, t) > s2_base + 0.1);
    let t_heater = first(&|t| d.mean(heater, t - 6 * HOUR_MS, t) < h_base / 2.0);
    assert!(
        t_stage2 < t_heater,
        "stage 2 ({t_stage2}) before the heater ({t_heater})"
    );
    // Downtime: the compressor is off for the swap, the cold head warms up.
    let (down, up) = downtime(&f);
    assert!(d.max(ch("coldhead_vib_rms_mms"), down + HOUR_MS, up) < 0.2);
    assert!(d.max(stage2, down, up) > 10.0);
    // After the repair: a new cold head, helium topped up.
    let after = (up + 12 * HOUR_MS, up + 2 * DAY_MS);
    assert!(d.mean(stage2, after.0, after.1) < s2_base + 0.05);
    assert!(d.mean(helium, after.0, after.1) > d.mean(helium, down - 6 * HOUR_MS, down) + 1.0);
}

#[test]
fn compressor_failure_sags_supply_raises_return_and_vibration() {
    let s = scenario();
    let f = episode(&s, 1, FailureMode::CompressorFailure, 0);
    let d = simulate(&s, 1, RES);
    let (supply, ret, vib) = (
        ch("compressor_supply_mpa"),
        ch("compressor_return_mpa"),
        ch("compressor_vib_rms_mms"),
    );
    let base = (f.onset_ms - 2 * DAY_MS, f.onset_ms);
    let late = (f.failure_ms - 12 * HOUR_MS, f.failure_ms);
    assert!(d.mean(supply, late.0, late.1) < d.mean(supply, base.0, base.1) - 0.1);
    assert!(d.mean(ret, late.0, late.1) > d.mean(ret, base.0, base.1) + 0.1);
    assert!(
        d.std(supply, late.0, late.1) > 3.0 * d.std(supply, base.0, base.1),
        "supply oscillates"
    );
    assert!(d.mean(vib, late.0, late.1) > 1.5 * d.mean(vib, base.0, base.1));
    assert!(
        d.mean(ch("compressor_band_motor_mms"), late.0, late.1)
            > 1.5 * d.mean(ch("compressor_band_motor_mms"), base.0, base.1)
    );
    // Stopped: both sides equalise, the cold head warms.
    let (down, up) = downtime(&f);
    let gap = d.mean(supply, down + HOUR_MS, up) - d.mean(ret, down + HOUR_MS, up);
    assert!(gap.abs() < 0.15, "pressures equalise: {gap}");
    assert!(d.max(ch("coldhead_stage2_k"), down, up) > 8.0);
}

#[test]
fn chiller_fault_heats_the_water_before_the_trip_then_boils_off() {
    let s = scenario();
    let d = simulate(&s, 2, RES);
    let (inlet, flow, supply, stage2, helium) = (
        ch("water_inlet_c"),
        ch("water_flow_lpm"),
        ch("compressor_supply_mpa"),
        ch("coldhead_stage2_k"),
        ch("helium_level_pct"),
    );
    let f = episode(&s, 2, FailureMode::ChillerFault, 0);
    assert_eq!(f.variant, 0);
    let base = d.mean(inlet, f.onset_ms - DAY_MS, f.onset_ms);
    let before_trip = d.mean(inlet, f.failure_ms - 30 * MINUTE_MS, f.failure_ms);
    assert!(
        before_trip > 28.0 && before_trip > base + 8.0,
        "{base:.1} -> {before_trip:.1} °C"
    );
    assert!(
        d.mean(
            inlet,
            f.failure_ms - 2 * HOUR_MS - 30 * MINUTE_MS,
            f.failure_ms - 2 * HOUR_MS
        ) > base + 1.0,
        "already rising two hours before"
    );
    let (down, up) = downtime(&f);
    assert!(d.mean(supply, down + HOUR_MS, up) < 1.8, "the compressor tripped");
    assert!(d.max(stage2, down, up) > 8.0, "the cold head stopped");
    assert!(
        d.mean(helium, up - HOUR_MS, up) < d.mean(helium, down - HOUR_MS, down) - 0.05,
        "boil-off"
    );

    let f = episode(&s, 2, FailureMode::ChillerFault, 1);
    assert_eq!(f.variant, 1);
    let base = d.mean(flow, f.onset_ms - DAY_MS, f.onset_ms);
    let before_trip = d.mean(flow, f.failure_ms - 30 * MINUTE_MS, f.failure_ms);
    assert!(
        before_trip < 6.0 && before_trip < 0.7 * base,
        "flow {base:.1} -> {before_trip:.1}"
    );
    let outlet = ch("water_outlet_c");
    let (o0, o1) = (
        d.mean(outlet, f.onset_ms - DAY_MS, f.onset_ms),
        d.mean(outlet, f.failure_ms - 30 * MINUTE_MS, f.failure_ms),
    );
    assert!(o1 > o0 + 10.0, "less flow, hotter outlet: {o0:.1} -> {o1:.1} °C");
}

#[test]
fn helium_leak_drains_faster_than_healthy_machines() {
    let s = scenario();
    let f = episode(&s, 3, FailureMode::HeliumLeak, 0);
    let helium = ch("helium_level_pct");
    let slope = |d: &Series| {
        let end = f.failure_ms;
        let start = end - 5 * DAY_MS;
        (d.mean(helium, end - 6 * HOUR_MS, end) - d.mean(helium, start, start + 6 * HOUR_MS)) / 5.0
    };
    let leaking = slope(&simulate(&s, 3, RES));
    assert!(leaking < -0.5, "leak: {leaking:.3} %/day");
    for healthy in [10, 11] {
        let h = slope(&simulate(&s, healthy, RES));
        assert!(h > -0.05, "healthy machine {healthy}: {h:.3} %/day");
        assert!(leaking < 10.0 * h.min(-0.001), "{leaking} vs {h}");
    }
    let d = simulate(&s, 3, RES);
    let heater = ch("vessel_heater_pct");
    assert!(
        d.mean(heater, f.failure_ms - DAY_MS, f.failure_ms) > d.mean(heater, f.onset_ms - DAY_MS, f.onset_ms) + 10.0,
        "the heater works harder to hold the pressure"
    );
}

#[test]
fn gradient_cooling_fault_heats_the_coil_more_for_the_same_load() {
    let s = scenario();
    let f = episode(&s, 4, FailureMode::GradientCoolingFault, 0);
    let d = simulate(&s, 4, RES);
    let (coil, vib) = (ch("gradient_coil_c"), ch("gradient_vib_rms_mms"));
    // Mean coil temperature while scanning (gradient vibration well above idle).
    let scanning_coil = |from: i64, to: i64| {
        let r = d.indices(from, to);
        let xs: Vec<f64> = r
            .filter(|&i| d.values[i][vib] > 0.8)
            .map(|i| d.values[i][coil])
            .collect();
        assert!(xs.len() > 20, "enough scanning samples: {}", xs.len());
        xs.iter().sum::<f64>() / xs.len() as f64
    };
    let healthy = scanning_coil(s.start_ms, f.onset_ms - DAY_MS);
    let late = scanning_coil(f.failure_ms - DAY_MS, f.failure_ms);
    assert!(
        late > healthy + 6.0,
        "coil while scanning: {healthy:.1} -> {late:.1} °C"
    );
    assert!(d.max(coil, f.failure_ms - DAY_MS, f.failure_ms) > d.max(coil, s.start_ms, f.onset_ms) + 8.0);
    // Down: no scanning, the coil cools.
    let (down, up) = downtime(&f);
    assert!(d.max(vib, down + 10 * MINUTE_MS, up) < 0.5, "no exams while down");
}

#[test]
fn hvac_faults_push_room_conditions_out_of_range() {
    let s = scenario();
    let d = simulate(&s, 5, RES);
    for (variant, channel, limit) in [
        (0, "room_temp_c", 24.0),
        (1, "room_humidity_pct", 65.0),
        (2, "tech_room_temp_c", 28.0),
    ] {
        let f = episode(&s, 5, FailureMode::HvacOutOfSpec, variant);
        assert_eq!(f.variant as usize, variant);
        let c = ch(channel);
        let before = d.max(c, f.onset_ms - DAY_MS, f.onset_ms);
        let at_failure = d.mean(c, f.failure_ms - 30 * MINUTE_MS, f.failure_ms);
        assert!(before < limit - 1.0, "{channel} in range before: {before}");
        assert!(
            at_failure > limit,
            "{channel} out of range at the failure: {at_failure}"
        );
        assert_eq!(CATALOG[c].alarm_high, Some(limit));
    }
}

#[test]
fn bearing_wear_grows_the_bearing_band_kurtosis_and_crest() {
    let s = scenario();
    let f = episode(&s, 6, FailureMode::CompressorBearingWear, 0);
    let d = simulate(&s, 6, RES);
    let (band, kurt, crest) = (
        ch("compressor_band_bearing_mms"),
        ch("compressor_vib_kurtosis"),
        ch("compressor_vib_crest"),
    );
    let base = (f.onset_ms - 3 * DAY_MS, f.onset_ms);
    let late = (f.failure_ms - DAY_MS, f.failure_ms);
    let b0 = d.mean(band, base.0, base.1);
    assert!(d.mean(band, late.0, late.1) > 3.0 * b0 && d.mean(band, late.0, late.1) > 1.5);
    assert!(d.mean(kurt, late.0, late.1) > 5.5);
    assert!(d.mean(crest, late.0, late.1) > 5.0);
    // Wear accelerates: each third of the precursor is worse than the one before.
    let third = (f.failure_ms - f.onset_ms) / 3;
    let means: Vec<f64> = (0..3)
        .map(|k| d.mean(band, f.onset_ms + k * third, f.onset_ms + (k + 1) * third))
        .collect();
    assert!(means[0] < means[1] && means[1] < means[2], "{means:?}");
    let (down, up) = downtime(&f);
    assert!(d.max(ch("compressor_vib_rms_mms"), down + HOUR_MS, up) < 0.3, "seized");
}

#[test]
fn planned_maintenance_resets_a_degrading_cold_head() {
    let s = scenario();
    let f = episode(&s, 7, FailureMode::ColdHeadDegradation, 0);
    let (visit_start, visit_end) = f.averted_by.expect("caught by planned maintenance");
    assert!(f.downtime.is_none());
    assert!(
        s.plans[7]
            .maintenance
            .iter()
            .any(|v| v.start_ms == visit_start && v.coldhead_swap)
    );
    let d = simulate(&s, 7, RES);
    let stage2 = ch("coldhead_stage2_k");
    let base = d.mean(stage2, f.onset_ms - 2 * DAY_MS, f.onset_ms);
    let before_visit = d.mean(stage2, visit_start - 12 * HOUR_MS, visit_start);
    let after_visit = d.mean(stage2, visit_end + 6 * HOUR_MS, visit_end + 3 * DAY_MS);
    assert!(before_visit > base + 0.1, "degrading: {base:.3} -> {before_visit:.3} K");
    assert!(
        after_visit < base + 0.05,
        "reset: {after_visit:.3} K (baseline {base:.3})"
    );
    let later = d.mean(stage2, f.failure_ms + DAY_MS, f.failure_ms + 3 * DAY_MS);
    assert!(
        later < base + 0.05,
        "and no failure where it would have been: {later:.3}"
    );
    let events = s.events();
    let m7: Vec<_> = events.iter().filter(|e| e.machine_id == "MRI-0008").collect();
    assert!(m7.iter().all(|e| e.kind != EventKind::Failure), "{m7:?}");
    let averted = m7
        .iter()
        .find(|e| e.kind == EventKind::Averted)
        .expect("an averted row");
    assert!(averted.planned && averted.downtime_start_ms.is_none());
}

fn fault(s: &Scenario, machine: usize, kind: SensorFaultKind) -> SensorFault {
    s.plans[machine]
        .sensor_faults
        .iter()
        .find(|f| f.kind == kind)
        .unwrap_or_else(|| panic!("machine {machine} has no {kind:?}"))
        .clone()
}

#[test]
fn sensor_faults_corrupt_data_but_are_never_failures() {
    let s = scenario();
    let events = s.events();
    let faulty: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::SensorFault)
        .map(|e| e.machine_id.as_str())
        .collect();
    assert_eq!(faulty.len(), 4);
    for e in &events {
        if e.kind == EventKind::SensorFault {
            assert_eq!(e.downtime_start_ms, None, "{e:?}");
            assert!(!e.planned);
        }
        if faulty.contains(e.machine_id.as_str()) {
            assert!(
                matches!(e.kind, EventKind::SensorFault | EventKind::Maintenance),
                "sensor-fault machines have no failure events: {e:?}"
            );
        }
    }

    // Stuck: one value for the whole fault.
    let f = fault(&s, 8, SensorFaultKind::Stuck);
    let d8 = simulate(&s, 8, RES);
    let c = f.channel.unwrap();
    let w = d8.window(c, f.start_ms, f.end_ms);
    assert!(w.len() > 100 && w.iter().all(|&v| v == w[0]), "stuck");
    assert!(d8.std(c, f.end_ms, f.end_ms + DAY_MS) > 0.0, "moves again afterwards");

    // Spikes: jumps far beyond the noise, only during the fault.
    let f = fault(&s, 9, SensorFaultKind::Spikes);
    let d9 = simulate(&s, 9, RES);
    let c = f.channel.unwrap();
    let jumps = |from: i64, to: i64| {
        let w = d9.window(c, from, to);
        w.windows(2).filter(|p| (p[1] - p[0]).abs() > 3.0).count()
    };
    assert!(jumps(f.start_ms, f.end_ms) >= 5, "{}", jumps(f.start_ms, f.end_ms));
    assert_eq!(jumps(s.start_ms, f.start_ms - HOUR_MS), 0);

    // Dropout: the stream is missing, the others are not.
    let f = fault(&s, 10, SensorFaultKind::Dropout);
    let d10 = simulate(&s, 10, RES);
    let stream = f.stream.unwrap();
    let (gone, kept) = (ch("compressor_vib_rms_mms"), ch("coldhead_stage2_k"));
    assert_eq!(stream, larmor_ingest::Stream::Vibration);
    assert!(d10.window(gone, f.start_ms, f.end_ms).is_empty());
    assert_eq!(
        d10.window(kept, f.start_ms, f.end_ms).len(),
        ((f.end_ms - f.start_ms) / RES) as usize
    );
    assert!(!d10.window(gone, f.end_ms, f.end_ms + HOUR_MS).is_empty());

    // Drift: a step, then a slow walk away; back once cleared.
    let f = fault(&s, 11, SensorFaultKind::Drift);
    let d11 = simulate(&s, 11, RES);
    let c = f.channel.unwrap();
    let before = d11.mean(c, f.start_ms - DAY_MS, f.start_ms);
    let end = d11.mean(c, f.end_ms - DAY_MS, f.end_ms);
    let after = d11.mean(c, f.end_ms, f.end_ms + DAY_MS);
    assert!(end - before > 3.0, "drifted {before:.2} -> {end:.2}");
    assert!((after - before).abs() < 1.0, "recovered {before:.2} -> {after:.2}");

    // No machine-level anomaly on these machines outside the faulted channel and maintenance.
    for (m, d) in [(8, &d8), (9, &d9), (10, &d10), (11, &d11)] {
        let plan = &s.plans[m];
        let faulted: Vec<usize> = plan.sensor_faults.iter().filter_map(|f| f.channel).collect();
        for i in 0..d.ts.len() {
            let t = d.ts[i];
            if plan
                .maintenance
                .iter()
                .any(|v| t >= v.start_ms - HOUR_MS && t < v.end_ms + 6 * HOUR_MS)
            {
                continue;
            }
            for (c, spec) in CATALOG.iter().enumerate() {
                if faulted.contains(&c) || d.present[i] & (1 << c) == 0 {
                    continue;
                }
                let v = d.values[i][c];
                assert!(
                    spec.alarm_low.is_none_or(|lo| v > lo) && spec.alarm_high.is_none_or(|hi| v < hi),
                    "machine {m} {} = {v} at {t}",
                    spec.name
                );
            }
        }
    }
}

#[test]
fn clock_skew_shifts_the_reported_timeline() {
    let s = scenario();
    let f = fault(&s, 8, SensorFaultKind::ClockSkew);
    let skew = f.magnitude as i64;
    assert_eq!(skew, 45 * MINUTE_MS);
    let d = simulate(&s, 8, RES);
    let m = &s.fleet.machines[8];
    let vib = ch("gradient_vib_rms_mms");
    // Per day: when the first scan shows up in the data vs when the schedule says it ran.
    let offset_on = |day: i64| -> Option<i64> {
        let exams = exams_between(s.seed, 8, m.site(), day * DAY_MS, (day + 1) * DAY_MS);
        let first = exams.iter().find(|e| e.start_ms >= day * DAY_MS + 2 * HOUR_MS)?;
        let scan_start = first.start_ms + 4 * MINUTE_MS; // after positioning
        let r = d.indices(first.start_ms - 2 * HOUR_MS, first.end_ms + 2 * HOUR_MS);
        let seen = r.map(|i| (d.ts[i], d.values[i][vib])).find(|&(_, v)| v > 0.6)?.0;
        Some(seen - scan_start)
    };
    let (mut inside, mut outside) = (0, 0);
    for day in s.start_ms / DAY_MS..s.end_ms / DAY_MS {
        let Some(offset) = offset_on(day) else { continue };
        let noon = day * DAY_MS + 12 * HOUR_MS;
        if noon > f.start_ms + DAY_MS && noon < f.end_ms - DAY_MS {
            assert!(
                (offset - skew).abs() <= 10 * MINUTE_MS,
                "day {day}: seen {offset} ms late"
            );
            inside += 1;
        } else if noon < f.start_ms - DAY_MS || noon > f.end_ms + DAY_MS {
            assert!(offset.abs() <= 10 * MINUTE_MS, "day {day}: seen {offset} ms off");
            outside += 1;
        }
    }
    assert!(
        inside >= 3 && outside >= 10,
        "{inside} skewed days, {outside} normal days"
    );
}

#[test]
fn healthy_machines_stay_in_range_outside_their_events() {
    let s = scenario();
    for m in [10, 11] {
        let d = simulate(&s, m, RES);
        let plan = &s.plans[m];
        let busy = |t: i64| {
            plan.maintenance
                .iter()
                .any(|v| t >= v.start_ms - HOUR_MS && t < v.end_ms + 6 * HOUR_MS)
                || plan
                    .sensor_faults
                    .iter()
                    .any(|f| t >= f.start_ms && t < f.end_ms + DAY_MS)
        };
        for i in 0..d.ts.len() {
            if busy(d.ts[i]) {
                continue;
            }
            for (c, spec) in CATALOG.iter().enumerate() {
                let v = d.values[i][c];
                assert!(
                    spec.alarm_low.is_none_or(|lo| v > lo) && spec.alarm_high.is_none_or(|hi| v < hi),
                    "machine {m} {} = {v}",
                    spec.name
                );
            }
        }
    }
}
