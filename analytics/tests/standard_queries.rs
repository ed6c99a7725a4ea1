//! The standard fleet queries (analytics/queries/*.sql) on the committed sample
//! (datasets/sample): every answer is recomputed here from plain row reads and
//! the ground-truth CSV files, without the query's own logic.

use larmor_analytics::queries::{STANDARD, standard};
use larmor_analytics::sql::{self, OutputFormat};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Row = BTreeMap<String, String>;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/sample")
}

async fn ctx() -> datafusion::prelude::SessionContext {
    sql::open_archive(&sample().join("archive")).await.unwrap()
}

async fn rows(ctx: &datafusion::prelude::SessionContext, text: &str) -> Vec<Row> {
    let batches = sql::run(ctx, text).await.unwrap_or_else(|e| panic!("{e}\n{text}"));
    let csv = sql::render(&batches, OutputFormat::Csv).unwrap();
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .map(String::from)
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// A standard query as a subquery, so a test can slice it (`WHERE date = ...`).
fn inner(name: &str) -> String {
    standard(name).unwrap().sql.trim().trim_end_matches(';').to_string()
}

fn num(r: &Row, k: &str) -> f64 {
    r[k].parse().unwrap_or_else(|_| panic!("{k} = {:?} in {r:?}", r[k]))
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: query {a}, recomputed {b}");
}

fn csv_rows(name: &str) -> Vec<Row> {
    let mut r = csv::Reader::from_path(sample().join(name)).unwrap();
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .map(String::from)
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect()
}

fn epoch_s(text: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp() as f64
}

#[test]
fn every_standard_query_is_documented() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    let built_in: BTreeSet<String> = STANDARD.iter().map(|q| format!("{}.sql", q.name)).collect();
    assert_eq!(
        files, built_in,
        "every file in analytics/queries is built into `larmor query --standard`"
    );
    for q in STANDARD {
        let comment = q.sql.lines().take_while(|l| l.starts_with("--")).count();
        assert!(comment >= 4, "{} needs a documentation comment", q.name);
        assert!(!q.title().is_empty());
    }
}

#[tokio::test]
async fn daily_stats_match_the_raw_readings() {
    let ctx = ctx().await;
    let day = "2025-02-10";
    let got = rows(
        &ctx,
        &format!("SELECT * FROM ({}) WHERE date = '{day}'", inner("daily_stats")),
    )
    .await;
    // (n, min, max, values) per machine and channel, from the plain rows
    let mut want: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for r in rows(
        &ctx,
        &format!("SELECT machine_id, channel, value FROM readings WHERE date = '{day}'"),
    )
    .await
    {
        want.entry((r["machine_id"].clone(), r["channel"].clone()))
            .or_default()
            .push(num(&r, "value"));
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(want.len(), 12 * 31, "12 machines × 31 channels");
    for r in &got {
        let v = &want[&(r["machine_id"].clone(), r["channel"].clone())];
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let what = format!("{} {}", r["machine_id"], r["channel"]);
        assert_eq!(num(r, "readings"), n, "{what}");
        close(
            num(r, "min_value"),
            v.iter().cloned().fold(f64::MAX, f64::min),
            0.0,
            &what,
        );
        close(
            num(r, "max_value"),
            v.iter().cloned().fold(f64::MIN, f64::max),
            0.0,
            &what,
        );
        close(num(r, "mean_value"), mean, 1e-9 * mean.abs().max(1.0), &what);
        close(num(r, "stddev_value"), sd, 1e-6 * sd.max(1e-3), &what);
    }
    // 5-minute resolution: 288 readings a day, fewer where a dropout was injected
    assert!(got.iter().all(|r| num(r, "readings") <= 288.0));
}

#[tokio::test]
async fn helium_boiloff_recomputed_and_the_leaking_magnet_comes_first() {
    let ctx = ctx().await;
    let got = rows(&ctx, &inner("helium_boiloff")).await;
    let mut daily: BTreeMap<String, BTreeMap<String, (f64, f64)>> = BTreeMap::new();
    for r in rows(
        &ctx,
        "SELECT machine_id, date, value FROM readings WHERE stream = 'temperature' AND channel = 'helium_level_pct'",
    )
    .await
    {
        let e = daily
            .entry(r["machine_id"].clone())
            .or_default()
            .entry(r["date"].clone())
            .or_default();
        e.0 += num(&r, "value");
        e.1 += 1.0;
    }
    assert_eq!(got.len(), daily.len());
    for r in &got {
        let levels: Vec<f64> = daily[&r["machine_id"]].values().map(|(s, n)| s / n).collect();
        let changes: Vec<f64> = levels.windows(2).map(|w| w[1] - w[0]).collect();
        let kept: Vec<f64> = changes.iter().copied().filter(|c| *c <= 1.0).collect();
        let rate = -kept.iter().sum::<f64>() / kept.len() as f64;
        let latest = *levels.last().unwrap();
        let what = &r["machine_id"];
        assert_eq!(num(r, "days"), kept.len() as f64, "{what}");
        assert_eq!(num(r, "refills"), (changes.len() - kept.len()) as f64, "{what}");
        close(num(r, "boiloff_pct_per_day"), rate, 5.1e-5, what);
        close(num(r, "latest_level_pct"), latest, 5.1e-3, what);
        if rate > 0.0 {
            close(
                num(r, "days_to_40_pct"),
                (latest - 40.0) / rate,
                0.051 + 1e-3 * latest / rate,
                what,
            );
        } else {
            assert_eq!(r["days_to_40_pct"], "", "{what}");
        }
    }
    let rates: Vec<f64> = got.iter().map(|r| num(r, "boiloff_pct_per_day")).collect();
    assert!(rates.windows(2).all(|w| w[0] >= w[1]), "fastest first: {rates:?}");
    // Ground truth: the magnet with the helium leak loses the most.
    let leak = csv_rows("events.csv")
        .into_iter()
        .find(|e| e["mode"] == "helium_leak")
        .unwrap();
    assert_eq!(got[0]["machine_id"], leak["machine_id"]);
    assert!(rates[0] > 1.5 * rates[2], "the leak stands out: {rates:?}");
}

#[tokio::test]
async fn monthly_uptime_recomputed_from_the_events_file() {
    let ctx = ctx().await;
    let got = rows(&ctx, &inner("monthly_uptime")).await;
    // The sample covers 2025-01-01 .. 2025-03-16 (75 days).
    let periods = [
        ("2025-01", "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z"),
        ("2025-02", "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z"),
        ("2025-03", "2025-03-01T00:00:00Z", "2025-03-17T00:00:00Z"),
    ];
    let machines = csv_rows("machines.csv");
    let events = csv_rows("events.csv");
    assert_eq!(got.len(), machines.len() * periods.len());
    let mut i = 0;
    for m in &machines {
        for (month, start, end) in periods {
            let (start, end) = (epoch_s(start), epoch_s(end));
            let (mut unplanned, mut planned) = (0.0, 0.0);
            for e in events.iter().filter(|e| e["machine_id"] == m["machine_id"]) {
                if e["downtime_start"].is_empty() {
                    continue;
                }
                let h =
                    (epoch_s(&e["repair_end"]).min(end) - epoch_s(&e["downtime_start"]).max(start)).max(0.0) / 3600.0;
                if e["planned"] == "true" {
                    planned += h;
                } else {
                    unplanned += h;
                }
            }
            let hours = (end - start) / 3600.0;
            let r = &got[i];
            i += 1;
            let what = format!("{} {month}", m["machine_id"]);
            assert_eq!(
                (r["machine_id"].as_str(), r["month"].as_str()),
                (m["machine_id"].as_str(), month)
            );
            close(num(r, "hours"), hours, 0.051, &what);
            close(num(r, "unplanned_downtime_h"), unplanned, 0.0051, &what);
            close(num(r, "planned_downtime_h"), planned, 0.0051, &what);
            close(num(r, "uptime_pct"), 100.0 * (1.0 - unplanned / hours), 5.1e-4, &what);
            close(
                num(r, "availability_pct"),
                100.0 * (1.0 - (unplanned + planned) / hours),
                5.1e-4,
                &what,
            );
        }
    }
    // Spot check by hand: MRI-0004's helium leak, down 2025-02-06 09:36 → 02-08 19:50.
    let leak = got
        .iter()
        .find(|r| r["machine_id"] == "MRI-0004" && r["month"] == "2025-02")
        .unwrap();
    close(
        num(leak, "unplanned_downtime_h"),
        58.0 + 14.0 / 60.0,
        0.0051,
        "MRI-0004 2025-02",
    );
}

#[tokio::test]
async fn vendor_and_model_comparison_recomputed() {
    let ctx = ctx().await;
    let got = rows(&ctx, &inner("vendor_model_comparison")).await;
    let machines = csv_rows("machines.csv");
    let model_of: BTreeMap<String, (String, String)> = machines
        .iter()
        .map(|m| (m["machine_id"].clone(), (m["manufacturer"].clone(), m["model"].clone())))
        .collect();
    let days = 75.0;
    #[derive(Default)]
    struct Acc {
        machines: f64,
        failures: f64,
        repair_h: f64,
        episodes: f64,
        stage2: Vec<f64>,
        helium: Vec<f64>,
    }
    let mut acc: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for m in &machines {
        acc.entry(model_of[&m["machine_id"]].clone()).or_default().machines += 1.0;
    }
    for e in csv_rows("events.csv") {
        let site_fault = e["mode"] == "hvac_out_of_spec" || e["mode"] == "chiller_fault";
        if e["kind"] == "failure" && e["planned"] == "false" && !e["downtime_start"].is_empty() && !site_fault {
            let a = acc.get_mut(&model_of[&e["machine_id"]]).unwrap();
            a.failures += 1.0;
            a.repair_h += (epoch_s(&e["repair_end"]) - epoch_s(&e["downtime_start"])) / 3600.0;
        }
    }
    for r in rows(&ctx, "SELECT machine_id, kind FROM anomalies").await {
        if r["kind"] != "sensor_fault" {
            acc.get_mut(&model_of[&r["machine_id"]]).unwrap().episodes += 1.0;
        }
    }
    let mut per_machine: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    for r in rows(
        &ctx,
        "SELECT machine_id, channel, value FROM readings WHERE stream = 'temperature' \
         AND channel IN ('coldhead_stage2_k', 'helium_level_pct')",
    )
    .await
    {
        let e = per_machine
            .entry((r["machine_id"].clone(), r["channel"].clone()))
            .or_default();
        e.0 += num(&r, "value");
        e.1 += 1.0;
    }
    for ((m, c), (s, n)) in per_machine {
        let a = acc.get_mut(&model_of[&m]).unwrap();
        match c.as_str() {
            "coldhead_stage2_k" => a.stage2.push(s / n),
            _ => a.helium.push(s / n),
        }
    }
    assert_eq!(got.len(), acc.len());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    for (r, ((maker, model), a)) in got.iter().zip(&acc) {
        let what = format!("{maker} {model}");
        assert_eq!((&r["manufacturer"], &r["model"]), (maker, model));
        assert_eq!(num(r, "machines"), a.machines, "{what}");
        assert_eq!(num(r, "failures"), a.failures, "{what}");
        close(
            num(r, "failures_per_machine_year"),
            a.failures * 365.0 / (a.machines * days),
            5.1e-4,
            &what,
        );
        if a.failures > 0.0 {
            close(num(r, "mean_hours_to_repair"), a.repair_h / a.failures, 0.051, &what);
        } else {
            assert_eq!(r["mean_hours_to_repair"], "", "{what}");
        }
        close(
            num(r, "episodes_per_machine_day"),
            a.episodes / (a.machines * days),
            5.1e-4,
            &what,
        );
        close(num(r, "mean_stage2_k"), mean(&a.stage2), 5.1e-4, &what);
        close(num(r, "mean_helium_pct"), mean(&a.helium), 5.1e-3, &what);
    }
    assert!(
        acc.values().map(|a| a.failures).sum::<f64>() >= 4.0,
        "the sample has machine failures"
    );
}

#[tokio::test]
async fn most_anomalous_machines_recomputed_on_the_sample() {
    let ctx = ctx().await;
    let got = rows(&ctx, &inner("most_anomalous_machines")).await;
    let end = rows(&ctx, "SELECT CAST(max(ts) AS BIGINT) AS t FROM readings").await[0]["t"]
        .parse::<i64>()
        .unwrap();
    let start = end - 7 * 86_400_000;
    let maintenance: Vec<(String, i64, i64)> = csv_rows("events.csv")
        .into_iter()
        .filter(|e| e["planned"] == "true" && !e["downtime_start"].is_empty())
        .map(|e| {
            let ms = |k: &str| chrono::DateTime::parse_from_rfc3339(&e[k]).unwrap().timestamp_millis();
            (e["machine_id"].clone(), ms("downtime_start"), ms("repair_end"))
        })
        .collect();
    // machine → (episodes, score, sensor faults, during maintenance)
    let mut want: BTreeMap<String, (f64, f64, f64, f64)> = BTreeMap::new();
    for r in rows(
        &ctx,
        "SELECT machine_id, kind, score, CAST(ts AS BIGINT) AS t FROM anomalies",
    )
    .await
    {
        let t: i64 = r["t"].parse().unwrap();
        if t <= start || t > end {
            continue;
        }
        let m = r["machine_id"].clone();
        let in_maintenance = maintenance.iter().any(|(id, a, b)| *id == m && t >= *a && t <= *b);
        let e = want.entry(m).or_default();
        if r["kind"] == "sensor_fault" {
            e.2 += 1.0;
        } else if in_maintenance {
            e.3 += 1.0;
        } else {
            e.0 += 1.0;
            e.1 += num(&r, "score");
        }
    }
    assert!(!want.is_empty(), "the sample's last week has anomalies");
    assert_eq!(got.len(), want.len().min(10));
    let scores: Vec<f64> = got.iter().map(|r| num(r, "total_score")).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for r in &got {
        let (episodes, score, faults, maint) = want[&r["machine_id"]];
        let what = &r["machine_id"];
        assert_eq!(num(r, "episodes"), episodes, "{what}");
        close(num(r, "total_score"), score, 5.1e-4, what);
        assert_eq!(num(r, "sensor_faults"), faults, "{what}");
        assert_eq!(num(r, "during_maintenance"), maint, "{what}");
        assert!(!r["manufacturer"].is_empty(), "joined with machines");
    }
}

#[tokio::test]
async fn archive_partitions_lists_exactly_the_partitions_that_hold_readings() {
    let ctx = ctx().await;
    let q = |sql: &str| {
        let ctx = ctx.clone();
        let sql = sql.to_string();
        async move {
            rows(&ctx, &sql)
                .await
                .into_iter()
                .map(|r| (r["date"].clone(), r["stream"].clone()))
                .collect::<BTreeSet<_>>()
        }
    };
    let listed = q("SELECT date, stream FROM archive_partitions").await;
    let scanned = q("SELECT DISTINCT date, stream FROM readings").await;
    assert_eq!(listed, scanned);
    assert_eq!(listed.len(), 75 * 3, "75 days × 3 streams in the sample");
}
