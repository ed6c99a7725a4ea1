//! Larmor's standard fleet queries (`analytics/queries/*.sql`) in DataFusion, against
//! DuckDB and polars on the same files, in one run.
//! Run: `cargo bench -p larmor-benches --bench sql_engines`
//!
//! 1. Generates the dataset (`larmor dataset generate --machines 100 --days 25
//!    --resolution 1m --seed 7`, ~111 M readings) into `LARMOR_BENCH_DIR`, unless a
//!    marker file says it is already there with the same settings; then the
//!    whole-archive detector scan (`larmor detect --archive DIR/archive --step 1m`)
//!    for the `anomalies` table, unless it is there too. Both are timed.
//! 2. Times every standard query in DataFusion in-process (`open_archive`, the SQL
//!    of `queries::STANDARD`, every row collected): best and median of N runs.
//!    Results go to `DIR/results/datafusion/<query>.parquet`, times to
//!    `DIR/results/datafusion_times.tsv`.
//! 3. Runs `benches/sql_engines.py`: the same queries in DuckDB and polars, their
//!    times, a check that all three engines return the same rows (a mismatch fails
//!    the bench), and the table of ratios.
//!
//! Environment (defaults in brackets): `LARMOR_BENCH_DIR` [`target/larmor-bench-sql`],
//! `LARMOR_BENCH_MACHINES` [100], `LARMOR_BENCH_DAYS` [25], `LARMOR_BENCH_RESOLUTION_S`
//! [60], `LARMOR_BENCH_RUNS` [3], `LARMOR_BENCH_QUERIES` [all; comma-separated names],
//! `LARMOR_BENCH_PYTHON` [python3], `LARMOR_BENCH_ENGINES` [duckdb,polars; `none` skips
//! the script], `LARMOR_BENCH_DF_SET` [none; `key=value,...` DataFusion settings given
//! to `open_archive_with`, for experiments], `LARMOR_BENCH_EXPLAIN=1` (print
//! `EXPLAIN ANALYZE` of each query once), `LARMOR_BENCH_DF_READINGS` [none; what-if
//! experiments that re-register `readings` differently from `open_archive`, comma-separated:
//! `utf8_columns` (`machine_id`/`channel` read as `Utf8`, not `Utf8View`), `utf8_partitions`
//! (partition columns as `Utf8`), `dict_partitions` (as `Dictionary(UInt16, Utf8)`),
//! `dict_columns` (strings read as `Dictionary(Int32, Utf8)`, the files' own encoding),
//! `dict_channel` (only `channel` so),
//! `sort_order` (files declared sorted by `machine_id, ts`)]. Besides wall time, each engine's process CPU time per query is
//! reported (user + system, all threads): on a busy machine it moves less than wall time.

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::{SessionConfig, SessionContext, col};
use larmor_analytics::queries::{STANDARD, StandardQuery};
use larmor_analytics::sql;
use larmor_benches::{cpu_seconds, env};
use larmor_datasets::backfill::{self, BackfillConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEED: u64 = 7;
const MARKER: &str = ".larmor-bench-sql";
const ANOMALIES_MARKER: &str = ".larmor-bench-sql-anomalies";

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("sql_engines: {msg}");
    std::process::exit(1);
}

fn default_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("larmor-bench-sql")
}

/// Parquet files and their bytes under `dir`.
fn parquet_size(dir: &Path) -> (usize, u64) {
    let (mut files, mut bytes) = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            let (f, b) = parquet_size(&p);
            files += f;
            bytes += b;
        } else if p.extension().is_some_and(|x| x == "parquet") {
            files += 1;
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    (files, bytes)
}

/// Generates the dataset unless the marker says this one is already there.
fn dataset(dir: &Path, machines: usize, days: u32, resolution_s: u64) {
    let settings = format!("machines={machines} days={days} resolution_s={resolution_s} seed={SEED}\n");
    let marker = dir.join(MARKER);
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == settings) && dir.join("archive").is_dir() {
        println!("dataset: reusing {} ({})", dir.display(), settings.trim());
        return;
    }
    let _ = std::fs::remove_file(&marker);
    let _ = std::fs::remove_file(dir.join(ANOMALIES_MARKER));
    let mut config = BackfillConfig::new(machines, days, Duration::from_secs(resolution_s), SEED, dir);
    config.overwrite = true;
    println!(
        "dataset: generating {machines} machines x {days} days at {resolution_s}s, seed {SEED} ({} readings nominal) into {}",
        config.nominal_readings(),
        dir.display()
    );
    let r = backfill::generate(&config, &mut |_, _| {}).unwrap_or_else(|e| fail(format!("backfill failed: {e}")));
    println!(
        "dataset: {} readings, {} archive files, {:.1} MB, generated in {:.1}s",
        r.readings,
        r.archive_files,
        r.archive_bytes as f64 / 1e6,
        r.elapsed.as_secs_f64()
    );
    std::fs::write(&marker, settings).unwrap_or_else(|e| fail(format!("{}: {e}", marker.display())));
}

/// The whole-archive detector scan (what `larmor detect --archive DIR/archive --step 1m` runs).
async fn anomalies(dir: &Path) {
    let marker = dir.join(ANOMALIES_MARKER);
    if marker.is_file() && dir.join("anomalies").is_dir() {
        let m = std::fs::read_to_string(&marker).unwrap_or_default();
        println!("anomalies: reusing {} ({})", dir.join("anomalies").display(), m.trim());
        return;
    }
    println!("anomalies: scanning the whole archive with the default detectors, step 1m ...");
    let config = larmor::config::LarmorConfig::default().detect;
    let r = larmor_analytics::fleet_scan::scan(&dir.join("archive"), &config, Duration::from_secs(60), true)
        .await
        .unwrap_or_else(|e| fail(format!("detector scan failed: {e}")));
    let line = format!(
        "{} readings over {} days scanned in {:.1}s ({:.2} M readings/s), {} anomalies",
        r.readings,
        r.days,
        r.elapsed.as_secs_f64(),
        r.readings as f64 / r.elapsed.as_secs_f64().max(1e-9) / 1e6,
        r.anomalies
    );
    println!("anomalies: {line}");
    std::fs::write(&marker, line + "\n").unwrap_or_else(|e| fail(format!("{}: {e}", marker.display())));
}

async fn open(archive: &Path, settings: &[(String, String)], variant: &[String]) -> SessionContext {
    // Settings go in before the tables are registered: the Parquet scans take theirs then.
    let mut config = SessionConfig::new();
    for (k, v) in settings {
        if let Err(e) = config.options_mut().set(k, v) {
            fail(format!("setting {k} = {v}: {e}"));
        }
    }
    let ctx = sql::open_archive_with(archive, config)
        .await
        .unwrap_or_else(|e| fail(format!("open_archive: {e}")));
    if !variant.is_empty() {
        reregister_readings(&ctx, archive, variant).await;
    }
    ctx
}

/// What-if: `readings` registered as `open_archive` does (strings and partition
/// values as `Utf8View`), but with the listed changes.
async fn reregister_readings(ctx: &SessionContext, archive: &Path, variant: &[String]) {
    let has = |v: &str| variant.iter().any(|x| x == v);
    for v in variant {
        if ![
            "utf8_columns",
            "utf8_partitions",
            "dict_partitions",
            "dict_columns",
            "dict_channel",
            "sort_order",
        ]
        .contains(&v.as_str())
        {
            fail(format!("LARMOR_BENCH_DF_READINGS: unknown {v:?}"));
        }
    }
    let part = if has("dict_partitions") {
        DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Utf8))
    } else if has("utf8_partitions") {
        DataType::Utf8
    } else {
        DataType::Utf8View
    };
    let base = larmor_datadir::schema::readings();
    let strings = if has("dict_columns") {
        // Keeps the Parquet dictionary encoding: no string is materialized per row.
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
    } else if has("utf8_columns") {
        DataType::Utf8
    } else {
        DataType::Utf8View
    };
    let fields: Vec<Field> = base
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 if f.name() == "channel" && has("dict_channel") => f.as_ref().clone().with_data_type(
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            ),
            DataType::Utf8 => f.as_ref().clone().with_data_type(strings.clone()),
            _ => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let mut options = ListingOptions::new(Arc::new(sql::parquet_format(ctx)))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("date".into(), part.clone()), ("stream".into(), part)]);
    if has("sort_order") {
        options = options.with_file_sort_order(vec![vec![
            col("machine_id").sort(true, false),
            col("ts").sort(true, false),
        ]]);
    }
    let abs = std::fs::canonicalize(archive).unwrap_or_else(|e| fail(format!("{}: {e}", archive.display())));
    let _ = ctx.deregister_table("readings");
    ctx.register_listing_table("readings", format!("{}/", abs.display()), options, Some(schema), None)
        .await
        .unwrap_or_else(|e| fail(format!("re-registering readings: {e}")));
}

/// One run: plan and collect every row.
async fn run_once(
    ctx: &SessionContext,
    q: &StandardQuery,
) -> (Duration, f64, datafusion::arrow::datatypes::SchemaRef, Vec<RecordBatch>) {
    let cpu = cpu_seconds();
    let started = Instant::now();
    let df = ctx
        .sql(q.sql)
        .await
        .unwrap_or_else(|e| fail(format!("{}: planning failed: {e}", q.name)));
    let schema = df.schema().inner().clone();
    let batches = df
        .collect()
        .await
        .unwrap_or_else(|e| fail(format!("{}: execution failed: {e}", q.name)));
    (started.elapsed(), cpu_seconds() - cpu, schema, batches)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn main() {
    let dir: PathBuf = std::env::var_os("LARMOR_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(default_dir);
    let machines: usize = env("LARMOR_BENCH_MACHINES", 100);
    let days: u32 = env("LARMOR_BENCH_DAYS", 25);
    let resolution_s: u64 = env("LARMOR_BENCH_RESOLUTION_S", 60);
    let runs: usize = env("LARMOR_BENCH_RUNS", 3usize).max(1);
    let python: String = env("LARMOR_BENCH_PYTHON", "python3".to_string());
    let engines: String = env("LARMOR_BENCH_ENGINES", "duckdb,polars".to_string());
    let explain = std::env::var("LARMOR_BENCH_EXPLAIN").is_ok_and(|v| v == "1");
    let only: Option<Vec<String>> = std::env::var("LARMOR_BENCH_QUERIES")
        .ok()
        .map(|s| s.split(',').map(|q| q.trim().to_string()).collect());
    let settings: Vec<(String, String)> = std::env::var("LARMOR_BENCH_DF_SET")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => fail(format!("LARMOR_BENCH_DF_SET: {s:?} is not key=value")),
        })
        .collect();
    let variant: Vec<String> = std::env::var("LARMOR_BENCH_DF_READINGS")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let queries: Vec<&StandardQuery> = STANDARD
        .iter()
        .filter(|q| only.as_ref().is_none_or(|o| o.iter().any(|n| n == q.name)))
        .collect();
    if queries.is_empty() {
        fail("LARMOR_BENCH_QUERIES names no standard query");
    }

    std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(format!("{}: {e}", dir.display())));
    let dir = std::fs::canonicalize(&dir).unwrap_or_else(|e| fail(format!("{}: {e}", dir.display())));
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("sql_engines: {cores} cores, data directory {}", dir.display());
    dataset(&dir, machines, days, resolution_s);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("tokio runtime: {e}")));
    let archive = dir.join("archive");
    rt.block_on(anomalies(&dir));

    let results = dir.join("results");
    let df_results = results.join("datafusion");
    let _ = std::fs::remove_dir_all(&results);
    std::fs::create_dir_all(&df_results).unwrap_or_else(|e| fail(format!("{}: {e}", df_results.display())));

    let mut times = String::from("query\tbest_s\tmedian_s\tcpu_median_s\truns_s\n");
    rt.block_on(async {
        let opened = Instant::now();
        let ctx = open(&archive, &settings, &variant).await;
        let open_s = opened.elapsed().as_secs_f64();
        let readings = sql::run(&ctx, "SELECT count(*) FROM readings")
            .await
            .ok()
            .and_then(|b| {
                use datafusion::arrow::array::AsArray;
                use datafusion::arrow::datatypes::Int64Type;
                b.first().map(|b| b.column(0).as_primitive::<Int64Type>().value(0))
            })
            .unwrap_or(0);
        let (files, bytes) = parquet_size(&archive);
        let (afiles, abytes) = parquet_size(&dir.join("anomalies"));
        println!(
            "dataset: {readings} readings in {files} archive files, {:.1} MB ({:.2} bytes/reading); \
             anomalies {afiles} files, {:.2} MB",
            bytes as f64 / 1e6,
            bytes as f64 / readings.max(1) as f64,
            abytes as f64 / 1e6
        );
        let target_partitions = ctx.state().config().target_partitions();
        println!(
            "datafusion: open_archive {open_s:.3}s, target_partitions {target_partitions}{}{}",
            if settings.is_empty() {
                String::new()
            } else {
                format!(", with SET {settings:?}")
            },
            if variant.is_empty() {
                String::new()
            } else {
                format!(", WHAT-IF readings registered with {variant:?}")
            }
        );
        for q in &queries {
            if explain {
                match sql::run(&ctx, &format!("EXPLAIN ANALYZE {}", q.sql)).await {
                    Ok(b) => {
                        use datafusion::arrow::util::display::array_value_to_string;
                        println!("--- EXPLAIN ANALYZE {}", q.name);
                        for b in &b {
                            for i in 0..b.num_rows() {
                                let plan = array_value_to_string(b.column(b.num_columns() - 1), i);
                                println!("{}", plan.unwrap_or_else(|e| e.to_string()));
                            }
                        }
                    }
                    Err(e) => eprintln!("EXPLAIN ANALYZE {}: {e}", q.name),
                }
            }
            let mut secs = Vec::with_capacity(runs);
            let mut cpus = Vec::with_capacity(runs);
            let mut last = None;
            for _ in 0..runs {
                let (t, cpu, schema, batches) = run_once(&ctx, q).await;
                secs.push(t.as_secs_f64());
                cpus.push(cpu);
                last = Some((schema, batches));
            }
            let (schema, batches) = last.expect("at least one run");
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let path = df_results.join(format!("{}.parquet", q.name));
            sql::write_parquet(&batches, schema, &path).unwrap_or_else(|e| fail(format!("{}: {e}", q.name)));
            let list = secs.iter().map(|s| format!("{s:.4}")).collect::<Vec<_>>().join(",");
            secs.sort_by(f64::total_cmp);
            cpus.sort_by(f64::total_cmp);
            let (best, med, cpu) = (secs[0], median(&secs), median(&cpus));
            println!(
                "datafusion/{:<25} best {best:>8.3}s  median {med:>8.3}s  of {runs}  cpu {cpu:>7.2}s  ({rows} rows)",
                q.name
            );
            times.push_str(&format!("{}\t{best}\t{med}\t{cpu}\t{list}\n", q.name));
        }
    });
    drop(rt);
    let times_path = results.join("datafusion_times.tsv");
    std::fs::write(&times_path, &times).unwrap_or_else(|e| fail(format!("{}: {e}", times_path.display())));

    if engines.trim() == "none" {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql_engines.py");
    let names: Vec<&str> = queries.iter().map(|q| q.name).collect();
    println!("running {} ...", script.display());
    let status = std::process::Command::new(&python)
        .arg(&script)
        .arg("--data")
        .arg(&dir)
        .arg("--runs")
        .arg(runs.to_string())
        .arg("--engines")
        .arg(engines.trim())
        .arg("--queries")
        .arg(names.join(","))
        .arg("--datafusion")
        .arg(&results)
        .status()
        .unwrap_or_else(|e| fail(format!("cannot run {python} {}: {e}", script.display())));
    if !status.success() {
        fail(format!(
            "{} failed ({status}): see above; a RESULT MISMATCH means the engines disagree",
            script.display()
        ));
    }
}
