//! Training, evaluation and forecasting on generic run-to-failure data: channels
//! outside Larmor's catalogue (`bearing_temp`, `oil_pressure`, `load`) on a
//! 15-minute step, an events CSV with `machine_id,time,kind,mode,precursor_visible`.
//! Half the failures announce themselves (the bearing warms over 4 days), the others
//! come without warning. A model must find the first kind on machines it never saw.

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use larmor_datadir::durable::ParquetSettings;
use larmor_models::HOUR_MS;
use larmor_models::data;
use larmor_models::evaluate::{MODEL_METHOD, held_out};
use larmor_models::events::{EventLog, parse_time};
use larmor_models::labels::label;
use larmor_models::live::{Issued, forecast_as_of, forecast_batch};
use larmor_models::model::{ForecastModel, TrainOptions};
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

const DAYS: i64 = 120;
const STEP_MS: i64 = 15 * 60_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A fleet of `machines`; returns the events CSV text. `rename` renames `oil_pressure`.
fn fleet(dir: &Path, machines: usize, seed: u64, rename: Option<&str>) -> String {
    let start = parse_time("2024-03-01").unwrap();
    let mut rng = Rng(seed * 7919 + 1);
    let mut csv = String::from("machine_id,time,kind,mode,precursor_visible\n");
    // Per day: (ts, machine, channel, value)
    let mut days: Vec<Vec<(i64, String, &str, f64)>> = vec![Vec::new(); DAYS as usize];
    for m in 0..machines {
        let id = format!("unit-{m:03}");
        let base = 60.0 + 5.0 * rng.next();
        // Failures every 25-45 days; even ones have a 4-day precursor.
        let mut failures = Vec::new();
        let mut t = start + ((10.0 + 20.0 * rng.next()) * 24.0) as i64 * HOUR_MS;
        while t < start + (DAYS - 2) * 24 * HOUR_MS {
            let visible = failures.len() % 2 == 0;
            failures.push((t, visible));
            let mode = if visible { "bearing_overheat" } else { "electrical_trip" };
            let _ = writeln!(
                csv,
                "{id},{},failure,{mode},{visible}",
                larmor_models::live::format_time(t)
            );
            t += ((25.0 + 20.0 * rng.next()) * 24.0) as i64 * HOUR_MS;
        }
        let _ = writeln!(
            csv,
            "{id},{},maintenance,,",
            larmor_models::live::format_time(start + 50 * 24 * HOUR_MS)
        );
        let pressure = rename.unwrap_or("oil_pressure");
        let mut k = 0i64;
        while k * STEP_MS < DAYS * 24 * HOUR_MS {
            let ts = start + k * STEP_MS;
            // Down for 12 h after each failure: no data.
            if failures.iter().any(|&(f, _)| ts >= f && ts < f + 12 * HOUR_MS) {
                k += 1;
                continue;
            }
            let warm: f64 = failures
                .iter()
                .filter(|&&(f, v)| v && ts < f && ts >= f - 96 * HOUR_MS)
                .map(|&(f, _)| 8.0 * (1.0 - (f - ts) as f64 / (96 * HOUR_MS) as f64).powi(2))
                .sum();
            let hour = (ts / HOUR_MS % 24) as f64;
            let load = 0.5 + 0.4 * (hour / 24.0 * std::f64::consts::TAU).sin() + 0.05 * rng.normal();
            let day = ((ts - start) / (24 * HOUR_MS)) as usize;
            days[day].push((
                ts,
                id.clone(),
                "bearing_temp",
                base + 4.0 * load + warm + 0.8 * rng.normal(),
            ));
            days[day].push((ts, id.clone(), pressure, 3.0 + 0.1 * rng.normal()));
            days[day].push((ts, id.clone(), "load", load));
            k += 1;
        }
    }
    for (d, rows) in days.into_iter().enumerate() {
        let date = larmor_models::live::format_time(start + d as i64 * 24 * HOUR_MS)[..10].to_string();
        let part = dir.join("archive").join(format!("date={date}")).join("stream=sensors");
        std::fs::create_dir_all(&part).unwrap();
        let mut rows = rows;
        rows.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.0)).with_timezone("UTC")),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ];
        let batch = RecordBatch::try_new(larmor_datadir::schema::readings(), cols).unwrap();
        larmor_datadir::durable::write_parquet_file(&part.join("part-0.parquet"), &batch, &ParquetSettings::new(1))
            .unwrap();
    }
    std::fs::write(dir.join("events.csv"), &csv).unwrap();
    csv
}

#[test]
fn trains_on_generic_channels_and_finds_visible_precursors_on_unseen_machines() {
    let tmp = tempfile::tempdir().unwrap();
    let (train_dir, test_dir, renamed) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    fleet(&train_dir, 16, 1, None);
    fleet(&test_dir, 10, 2, None);
    let opts = TrainOptions {
        logistic_iterations: 60,
        ..Default::default()
    };
    let d = data::load(
        &train_dir.join("archive"),
        &train_dir.join("events.csv"),
        &opts.features,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(d.matrix.spec.channels, vec!["bearing_temp", "load", "oil_pressure"]);
    assert!(
        !d.anomalies && d.matrix.spec.detectors.is_empty(),
        "no anomalies table here"
    );
    let labels = label(
        &d.matrix,
        &d.events,
        &d.observed_until,
        &opts.horizons_hours,
        opts.ttf_cap_hours,
        None,
    );
    let model = ForecastModel::train(
        &d.matrix,
        &labels,
        &d.events,
        None,
        d.fingerprints.clone(),
        &opts,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(model.modes.modes, vec!["bearing_overheat", "electrical_trip"]);
    assert_eq!(model.metadata.machines.len(), 16);
    assert_eq!(model.metadata.feature_schema_hash, d.matrix.spec.hash);

    // Saved and loaded: the same predictions.
    let path = tmp.path().join("model.json");
    model.save(&path).unwrap();
    let loaded = ForecastModel::load(&path).unwrap();
    let p1 = model.predict(&d.matrix).unwrap();
    let p2 = loaded.predict(&d.matrix).unwrap();
    assert_eq!(p1.model, p2.model);
    for h in 1..p1.model.len() {
        assert!(
            p1.model[h].iter().zip(&p1.model[h - 1]).all(|(a, b)| a >= b),
            "monotone in the horizon"
        );
    }

    // Another fleet: every machine is unseen (same names as none, other data).
    let t = data::load(
        &test_dir.join("archive"),
        &test_dir.join("events.csv"),
        &opts.features,
        &mut |_, _, _| {},
    )
    .unwrap();
    let tl = label(
        &t.matrix,
        &t.events,
        &t.observed_until,
        &opts.horizons_hours,
        opts.ttf_cap_hours,
        None,
    );
    let ev = held_out(&loaded, &t.matrix, &tl, &t.events, &t.fingerprints, 50).unwrap();
    assert_eq!(ev.machines, 10);
    let model_scores = ev.methods.iter().find(|m| m.name == MODEL_METHOD).unwrap();
    let week = model_scores.horizons.last().unwrap();
    let base_rate = week.positives as f64 / week.rows as f64;
    let auc = week.pr_auc.unwrap().value;
    assert!(auc > 2.0 * base_rate, "PR-AUC {auc} vs base rate {base_rate}");
    assert!(
        week.visible_failure_recall.value >= 0.6,
        "visible failures caught: {:?}",
        week.visible_failure_recall
    );
    assert!(
        week.visible_failures < week.failures,
        "sudden failures are counted apart"
    );
    assert!(week.median_lead_hours.value >= 12.0, "{:?}", week.median_lead_hours);
    assert!(week.precision.lo <= week.precision.value && week.precision.value <= week.precision.hi);

    // Forecast as of 40 h before a visible failure of the other fleet.
    let events = EventLog::load(&test_dir.join("events.csv")).unwrap();
    let (machine, f) = events
        .failures
        .iter()
        .flat_map(|(m, fs)| fs.iter().map(move |f| (m, f)))
        .find(|(_, f)| f.precursor_visible == Some(true) && f.time_ms > parse_time("2024-04-15").unwrap())
        .unwrap();
    let as_of = f.time_ms - 40 * HOUR_MS;
    let (forecasts, _) = forecast_as_of(&loaded, &test_dir.join("archive"), Some(&events), as_of).unwrap();
    assert_eq!(forecasts.len(), 10);
    let mine = forecasts.iter().find(|x| &x.machine_id == machine).unwrap();
    let week_p = |x: &larmor_models::live::Forecast| x.horizons.last().unwrap().probability;
    let rank = forecasts.iter().filter(|x| week_p(x) > week_p(mine)).count();
    assert!(rank <= 1, "the warming machine ranks first or second: {forecasts:#?}");
    assert_eq!(mine.mode, "bearing_overheat");
    assert!(mine.ttf_hours < mine.ttf_cap_hours);
    assert!(
        mine.top_features.iter().any(|(n, _)| n.starts_with("bearing_temp")),
        "{:?}",
        mine.top_features
    );
    let issued: Vec<Issued> = forecasts
        .iter()
        .map(|f| Issued {
            issued_at_ms: as_of,
            forecast: f.clone(),
        })
        .collect();
    let batch = forecast_batch(&issued).unwrap();
    assert_eq!(batch.num_rows(), 10 * 3);
    assert_eq!(batch.schema(), larmor_datadir::Table::Forecasts.schema());

    // An archive whose channel differs is refused, naming the column.
    fleet(&renamed, 3, 3, Some("oil_pressure_bar"));
    let events = EventLog::load(&renamed.join("events.csv")).unwrap();
    let e = forecast_as_of(&loaded, &renamed.join("archive"), Some(&events), as_of)
        .unwrap_err()
        .to_string();
    assert!(e.contains("oil_pressure"), "{e}");
    // And a model needing the service log refuses to run without it.
    let e = forecast_as_of(&loaded, &test_dir.join("archive"), None, as_of)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--events"), "{e}");
}
