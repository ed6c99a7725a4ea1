#!/usr/bin/env python3
"""Larmor's standard fleet queries in DuckDB and polars, on the same files as DataFusion.

Run by `cargo bench -p larmor-benches --bench sql_engines` (which times DataFusion first
and passes its results with --datafusion), or alone:

    python3 benches/sql_engines.py --data target/larmor-bench-sql [--runs 3]

The data directory is a `larmor dataset generate` output with `larmor detect --archive`
run over it: archive/date=YYYY-MM-DD/stream=<stream>/*.parquet (`readings`),
anomalies/date=YYYY-MM-DD/*.parquet, events.parquet, machines.csv.

DuckDB runs the SQL of analytics/queries/*.sql as it is. Two session-level adaptations,
no change to the SQL text:
  * the hive partition columns are read as VARCHAR (`hive_types`), as DataFusion
    declares them (strings); DuckDB would otherwise turn `date` into a DATE, and
    `substr(date, 1, 7)` in monthly_uptime would not bind;
  * `default_null_order = 'nulls_last_on_asc_first_on_desc'`: DataFusion (like
    PostgreSQL) puts NULLs first in a DESC sort, DuckDB by default last.
The tables are views over the same files, plus `archive_partitions` (Larmor builds
it from the directory listing; here a view over DuckDB's glob of the same files).
polars runs the same queries written with its expression API (LazyFrame, one collect).

Every engine's result is checked against the others: same column names, same number of
rows, strings and integers equal, floats within 1e-9 (relative) -- or within one rounding
step for columns the query rounds, reported separately. A mismatch prints a loud
banner and the script exits with status 1.
"""

import argparse
import importlib
import math
import os
import statistics
import subprocess
import sys
import time

QUERIES = [
    "daily_stats",
    "most_anomalous_machines",
    "helium_boiloff",
    "monthly_uptime",
    "vendor_model_comparison",
]

# Columns a query rounds with round(x, k): engines may legitimately differ by one
# rounding step there (a sum that lands on either side of a ...5 in a different
# summation order, or half-away-from-zero vs half-to-even ties).
ROUNDED = {
    "most_anomalous_machines": {"total_score": 3, "max_score": 3},
    "helium_boiloff": {"boiloff_pct_per_day": 4, "latest_level_pct": 2, "days_to_40_pct": 1},
    "monthly_uptime": {
        "hours": 1,
        "unplanned_downtime_h": 2,
        "planned_downtime_h": 2,
        "uptime_pct": 3,
        "availability_pct": 3,
    },
    "vendor_model_comparison": {
        "failures_per_machine_year": 3,
        "mean_hours_to_repair": 1,
        "episodes_per_machine_day": 3,
        "mean_stage2_k": 3,
        "mean_helium_pct": 2,
    },
}
REL_TOL = 1e-9
ABS_TOL = 1e-9


def ensure(module, package):
    try:
        return importlib.import_module(module)
    except ImportError:
        print(f"installing {package} with pip ...", flush=True)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", package])
        importlib.invalidate_caches()
        return importlib.import_module(module)


# ---------------------------------------------------------------- DuckDB


def duckdb_connect(duckdb, data):
    con = duckdb.connect()
    con.execute("SET default_null_order = 'nulls_last_on_asc_first_on_desc'")
    archive = os.path.join(data, "archive")
    anomalies = os.path.join(data, "anomalies")
    con.execute(
        f"""CREATE VIEW readings AS SELECT ts, machine_id, channel, value, date, stream
            FROM read_parquet('{archive}/**/*.parquet', hive_partitioning = true,
                              hive_types = {{'date': VARCHAR, 'stream': VARCHAR}})"""
    )
    con.execute(
        f"""CREATE VIEW anomalies AS SELECT * FROM read_parquet('{anomalies}/**/*.parquet',
                hive_partitioning = true, hive_types = {{'date': VARCHAR}})"""
    )
    # Larmor's `archive_partitions`: one row per partition directory holding a Parquet file.
    con.execute(
        f"""CREATE VIEW archive_partitions AS
            SELECT DISTINCT regexp_extract(file, 'date=([^/]+)/', 1) AS date,
                            regexp_extract(file, 'stream=([^/]+)/', 1) AS stream
            FROM glob('{archive}/*/*/*.parquet')"""
    )
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{data}/events.parquet')")
    con.execute(f"CREATE VIEW machines AS SELECT * FROM read_csv('{data}/machines.csv', header = true)")
    return con


def arrow_table(con, sql):
    # The whole result, columnar, without the extra copy a DB-API cursor makes
    # (DuckDB 2.x: to_arrow_table; 1.x: arrow).
    rel = con.sql(sql)
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    return fetch()


def duckdb_sql(name):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "analytics", "queries", f"{name}.sql")) as f:
        return f.read()


# ---------------------------------------------------------------- polars


class PolarsTables:
    def __init__(self, pl, data):
        self.pl = pl
        self.readings = pl.scan_parquet(
            os.path.join(data, "archive") + "/",
            hive_partitioning=True,
            hive_schema={"date": pl.String, "stream": pl.String},
            try_parse_hive_dates=False,
        )
        self.anomalies = pl.scan_parquet(
            os.path.join(data, "anomalies") + "/",
            hive_partitioning=True,
            hive_schema={"date": pl.String},
            try_parse_hive_dates=False,
        )
        self.events = pl.scan_parquet(os.path.join(data, "events.parquet"))
        self.machines = pl.scan_csv(os.path.join(data, "machines.csv"))


def polars_queries(pl):
    """name -> function(tables) -> LazyFrame, each the same semantics as its .sql file."""
    col, lit = pl.col, pl.lit

    def rnd(e, k):
        return e.round(k, mode="half_away_from_zero")

    def epoch(c):
        # date_part('epoch', <timestamp>): seconds as a float, millisecond precision.
        return col(c).dt.epoch("ms") / 1000.0

    def sql_sort(lf, by, descending):
        # SQL's default null order: ASC NULLS LAST, DESC NULLS FIRST.
        return lf.sort(by, descending=descending, nulls_last=[not d for d in descending])

    def daily_stats(t):
        lf = t.readings.group_by(["date", "machine_id", "stream", "channel"]).agg(
            readings=pl.len(),
            min_value=col("value").min(),
            mean_value=col("value").mean(),
            max_value=col("value").max(),
            stddev_value=col("value").std(ddof=1),
        )
        return sql_sort(lf, ["date", "machine_id", "channel"], [False, False, False])

    def most_anomalous_machines(t):
        bounds = t.readings.select(
            window_end=col("ts").max(), window_start=col("ts").max() - pl.duration(days=7)
        )
        maintenance = t.events.filter(col("planned") & col("downtime_start").is_not_null()).select(
            "machine_id", "downtime_start", "repair_end"
        )
        a = (
            t.anomalies.join(bounds, how="cross")
            .filter((col("ts") > col("window_start")) & (col("ts") <= col("window_end")))
            .select("machine_id", "kind", "score", "detector", "ts")
            .with_row_index("_row")
        )
        # LEFT JOIN maintenance ON machine_id = AND ts BETWEEN: the matches (one row each,
        # as SQL would give), then the anomalies that matched none.
        matched = (
            a.join(maintenance, on="machine_id", how="inner")
            .filter((col("ts") >= col("downtime_start")) & (col("ts") <= col("repair_end")))
            .select("_row", "machine_id", "kind", "score", "detector", "ts", in_maintenance=lit(True))
        )
        unmatched = a.join(matched.select("_row"), on="_row", how="anti").with_columns(
            in_maintenance=lit(False)
        )
        recent = pl.concat([matched, unmatched], how="vertical").drop("_row")
        counted = (col("kind") != "sensor_fault") & ~col("in_maintenance")
        lf = (
            recent.join(
                t.machines.select("machine_id", "site", "manufacturer", "model"), on="machine_id", how="left"
            )
            .group_by(["machine_id", "site", "manufacturer", "model"])
            .agg(
                episodes=counted.sum().cast(pl.Int64),
                total_score=rnd(col("score").filter(counted).sum(), 3),
                max_score=rnd(col("score").filter(counted).max().fill_null(0.0), 3),
                detectors=col("detector").filter(counted).n_unique().cast(pl.Int64),
                sensor_faults=(col("kind") == "sensor_fault").sum().cast(pl.Int64),
                during_maintenance=((col("kind") != "sensor_fault") & col("in_maintenance")).sum().cast(pl.Int64),
                last_seen=col("ts").max(),
            )
        )
        return sql_sort(lf, ["total_score", "episodes", "machine_id"], [True, True, False]).head(10)

    def helium_boiloff(t):
        daily = (
            t.readings.filter((col("stream") == "temperature") & (col("channel") == "helium_level_pct"))
            .group_by(["machine_id", "date"])
            .agg(level=col("value").mean())
        )
        changes = daily.sort(["machine_id", "date"]).with_columns(
            change=col("level") - col("level").shift(1).over("machine_id"),
            # row_number() OVER (PARTITION BY machine_id ORDER BY date DESC) = 1; dates are unique per machine
            newest=col("date") == col("date").max().over("machine_id"),
        )
        kept = col("change") <= 1.0
        rates = changes.group_by("machine_id").agg(
            days=col("change").filter(kept).count().cast(pl.Int64),
            refills=(col("change") > 1.0).sum().cast(pl.Int64),
            boiloff=-col("change").filter(kept).mean(),
            latest=col("level").filter(col("newest")).max(),
        )
        lf = rates.select(
            "machine_id",
            "days",
            "refills",
            boiloff_pct_per_day=rnd(col("boiloff"), 4),
            latest_level_pct=rnd(col("latest"), 2),
            days_to_40_pct=pl.when(col("boiloff") > 0).then(rnd((col("latest") - 40.0) / col("boiloff"), 1)),
        )
        return sql_sort(lf, ["boiloff_pct_per_day", "machine_id"], [True, False])

    def periods(t):
        day = col("date")
        return (
            t.readings.select("date")
            .unique()
            .group_by(day.str.slice(0, 7).alias("month"))
            .agg(
                period_start=day.min().str.to_date("%Y-%m-%d").dt.epoch("s").cast(pl.Float64),
                period_end=day.max().str.to_date("%Y-%m-%d").dt.epoch("s").cast(pl.Float64) + 86400.0,
            )
        )

    def monthly_uptime(t):
        p = periods(t)
        downtime = (
            t.events.filter(col("downtime_start").is_not_null())
            .join(p, how="cross")
            .filter((epoch("downtime_start") < col("period_end")) & (epoch("repair_end") > col("period_start")))
            .select(
                "machine_id",
                "month",
                "planned",
                hours=pl.max_horizontal(
                    lit(0.0),
                    pl.min_horizontal(epoch("repair_end"), col("period_end"))
                    - pl.max_horizontal(epoch("downtime_start"), col("period_start")),
                )
                / 3600.0,
            )
        )
        span = col("period_end") - col("period_start")
        lf = (
            t.machines.select("machine_id")
            .join(p, how="cross")
            .join(downtime, on=["machine_id", "month"], how="left")
            .group_by(["machine_id", "month", "period_start", "period_end"])
            .agg(
                unplanned=col("hours").filter(~col("planned")).sum(),
                planned_h=col("hours").filter(col("planned")).sum(),
                all_h=col("hours").sum(),
            )
            .select(
                "machine_id",
                "month",
                hours=rnd(span / 3600.0, 1),
                unplanned_downtime_h=rnd(col("unplanned"), 2),
                planned_downtime_h=rnd(col("planned_h"), 2),
                uptime_pct=rnd(100.0 * (1 - col("unplanned") * 3600.0 / span), 3),
                availability_pct=rnd(100.0 * (1 - col("all_h") * 3600.0 / span), 3),
            )
        )
        return sql_sort(lf, ["machine_id", "month"], [False, False])

    def vendor_model_comparison(t):
        span = t.readings.select(days=col("date").n_unique().cast(pl.Int64))
        failures = (
            t.events.filter(
                (col("kind") == "failure")
                & ~col("planned")
                & col("downtime_start").is_not_null()
                & ~col("mode").is_in(["hvac_out_of_spec", "chiller_fault"])
            )
            .group_by("machine_id")
            .agg(
                failures=pl.len().cast(pl.Int64),
                repair_hours=(epoch("repair_end") - epoch("downtime_start")).sum() / 3600.0,
            )
        )
        episodes = (
            t.anomalies.filter(col("kind") != "sensor_fault")
            .group_by("machine_id")
            .agg(episodes=pl.len().cast(pl.Int64))
        )
        cryo = (
            t.readings.filter(
                (col("stream") == "temperature") & col("channel").is_in(["coldhead_stage2_k", "helium_level_pct"])
            )
            .group_by("machine_id")
            .agg(
                stage2_k=col("value").filter(col("channel") == "coldhead_stage2_k").mean(),
                helium_pct=col("value").filter(col("channel") == "helium_level_pct").mean(),
            )
        )
        machine_days = col("machines") * col("days")
        lf = (
            t.machines.select("machine_id", "manufacturer", "model")
            .join(span, how="cross")
            .join(failures, on="machine_id", how="left")
            .join(episodes, on="machine_id", how="left")
            .join(cryo, on="machine_id", how="left")
            .group_by(["manufacturer", "model", "days"])
            .agg(
                machines=pl.len().cast(pl.Int64),
                failures=col("failures").sum(),  # sum of no values is 0: coalesce(sum, 0)
                with_failures=col("failures").count(),
                repair_hours=col("repair_hours").sum(),
                episodes=col("episodes").sum(),
                stage2_k=col("stage2_k").mean(),
                helium_pct=col("helium_pct").mean(),
            )
            .select(
                "manufacturer",
                "model",
                "machines",
                "failures",
                failures_per_machine_year=rnd(col("failures") * 365.0 / machine_days, 3),
                # sum(repair_hours) / sum(failures): NULL when no machine of the model failed
                mean_hours_to_repair=pl.when(col("with_failures") > 0).then(
                    rnd(col("repair_hours") / col("failures"), 1)
                ),
                episodes_per_machine_day=rnd(col("episodes") * 1.0 / machine_days, 3),
                mean_stage2_k=rnd(col("stage2_k"), 3),
                mean_helium_pct=rnd(col("helium_pct"), 2),
            )
        )
        return sql_sort(lf, ["manufacturer", "model"], [False, False])

    return {
        "daily_stats": daily_stats,
        "most_anomalous_machines": most_anomalous_machines,
        "helium_boiloff": helium_boiloff,
        "monthly_uptime": monthly_uptime,
        "vendor_model_comparison": vendor_model_comparison,
    }


# ---------------------------------------------------------------- results


def normalize(pl, df):
    """A polars DataFrame as (column names, rows): timestamps as epoch ms, decimals as floats."""
    exprs = []
    for name, dtype in df.schema.items():
        c = pl.col(name)
        if dtype == pl.Datetime or isinstance(dtype, pl.Datetime):
            exprs.append(c.dt.epoch("ms"))
        elif dtype == pl.Date or isinstance(dtype, pl.Date):
            exprs.append(c.cast(pl.String))
        elif isinstance(dtype, (pl.Categorical, pl.Enum)):
            exprs.append(c.cast(pl.String))
        elif isinstance(dtype, pl.Decimal) or dtype == pl.Decimal:
            exprs.append(c.cast(pl.Float64))
        else:
            exprs.append(c)
    df = df.select(exprs)
    return list(df.columns), df.rows()


def same_value(a, b, step):
    """0: equal, 1: within one rounding step, 2: different."""
    if a is None or b is None:
        return 0 if a is None and b is None else 2
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return 0 if a == b else 2
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return 0 if math.isnan(fa) and math.isnan(fb) else 2
        if math.isclose(fa, fb, rel_tol=REL_TOL, abs_tol=ABS_TOL):
            return 0
        if step is not None and abs(fa - fb) <= step * 1.000001:
            return 1
        return 2
    return 0 if a == b else 2


def compare(name, ref_engine, ref, other_engine, other):
    """Problems (list of strings) and rounding-step notes between two normalized results."""
    problems, notes = [], []
    (rcols, rrows), (ocols, orows) = ref, other
    if rcols != ocols:
        problems.append(f"columns differ: {ref_engine} {rcols} vs {other_engine} {ocols}")
        return problems, notes
    if len(rrows) != len(orows):
        problems.append(f"row counts differ: {ref_engine} {len(rrows)} vs {other_engine} {len(orows)}")
    rounded = ROUNDED.get(name, {})
    for i, (r, o) in enumerate(zip(rrows, orows)):
        for c, a, b in zip(rcols, r, o):
            step = 10.0 ** -rounded[c] if c in rounded else None
            s = same_value(a, b, step)
            if s == 2:
                problems.append(f"row {i} column {c}: {ref_engine} {a!r} vs {other_engine} {b!r}")
            elif s == 1:
                notes.append(f"row {i} column {c}: {ref_engine} {a!r} vs {other_engine} {b!r} (one rounding step)")
        if len(problems) > 10:
            problems.append("... (more)")
            break
    return problems, notes


def timed(fn, runs):
    """(best wall s, median wall s, median CPU s of this process, all threads), last result."""
    secs, cpus, out = [], [], None
    for _ in range(runs):
        c = time.process_time()
        t = time.perf_counter()
        out = fn()
        secs.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return (min(secs), statistics.median(secs), statistics.median(cpus)), out


def report(engine, name, t, runs, rows):
    print(
        f"{engine}/{name:<25} best {t[0]:>8.3f}s  median {t[1]:>8.3f}s  of {runs}  cpu {t[2]:>7.2f}s  ({rows} rows)",
        flush=True,
    )


def read_datafusion_times(path):
    times = {}
    if not path or not os.path.isfile(path):
        return times
    with open(path) as f:
        next(f, None)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 4:
                times[parts[0]] = (float(parts[1]), float(parts[2]), float(parts[3]))
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="data directory (archive/, anomalies/, events.parquet, machines.csv)")
    ap.add_argument("--runs", type=int, default=3, help="runs per query and engine (best and median reported)")
    ap.add_argument("--engines", default="duckdb,polars")
    ap.add_argument("--queries", default=",".join(QUERIES))
    ap.add_argument("--datafusion", help="directory with datafusion/<query>.parquet and datafusion_times.tsv")
    args = ap.parse_args()
    data = os.path.abspath(args.data)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    names = [q.strip() for q in args.queries.split(",") if q.strip()]
    unknown = [n for n in names if n not in QUERIES]
    if unknown:
        sys.exit(f"unknown queries: {unknown}")
    runs = max(1, args.runs)

    pl = ensure("polars", "polars")
    ensure("pyarrow", "pyarrow")  # DuckDB's columnar result (to_arrow_table) and polars.from_arrow
    duckdb = ensure("duckdb", "duckdb") if "duckdb" in engines else None
    print(
        f"engines: duckdb {duckdb.__version__ if duckdb else '-'}, "
        f"polars {pl.__version__} (thread pool {pl.thread_pool_size()}), python {sys.version.split()[0]}, "
        f"{runs} runs each",
        flush=True,
    )

    results = {}  # name -> engine -> normalized
    times = {}  # name -> engine -> (best, median)
    df_times = read_datafusion_times(os.path.join(args.datafusion, "datafusion_times.tsv") if args.datafusion else None)
    for name in names:
        results[name], times[name] = {}, {}
        if name in df_times:
            times[name]["datafusion"] = df_times[name]
            path = os.path.join(args.datafusion, "datafusion", f"{name}.parquet")
            if os.path.isfile(path):
                results[name]["datafusion"] = normalize(pl, pl.read_parquet(path))

    if duckdb:
        con = duckdb_connect(duckdb, data)
        threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
        print(f"duckdb: threads {threads}", flush=True)
        for name in names:
            sql = duckdb_sql(name)
            t, table = timed(lambda: arrow_table(con, sql), runs)
            results[name]["duckdb"] = normalize(pl, pl.from_arrow(table))
            times[name]["duckdb"] = t
            report("duckdb", name, t, runs, table.num_rows)
        con.close()

    if "polars" in engines:
        tables = PolarsTables(pl, data)
        qs = polars_queries(pl)
        for name in names:
            lf = qs[name](tables)
            t, df = timed(lambda: lf.collect(), runs)
            results[name]["polars"] = normalize(pl, df)
            times[name]["polars"] = t
            report("polars", name, t, runs, df.height)

    # Same results everywhere: every engine against the first one present (DataFusion when given).
    mismatches = []
    print("\nresult check:")
    for name in names:
        engs = list(results[name])
        if len(engs) < 2:
            print(f"  {name}: only {engs}, nothing to compare")
            continue
        ref = engs[0]
        line = []
        for other in engs[1:]:
            problems, notes = compare(name, ref, results[name][ref], other, results[name][other])
            if problems:
                mismatches.append((name, ref, other, problems))
                line.append(f"{other} MISMATCH")
            else:
                line.append(f"{other} same" + (f" ({len(notes)} values one rounding step apart)" if notes else ""))
            for n in notes[:5]:
                print(f"    note {name} {other}: {n}")
        print(f"  {name}: {len(results[name][ref][1])} rows; {ref} vs " + ", ".join(line))

    def cell(name, engine, i):
        t = times[name].get(engine)
        return f"{t[i]:.3f}" if t else "-"

    def ratio(name, a, b, i):
        ta, tb = times[name].get(a), times[name].get(b)
        if not (ta and tb and tb[i] > 0):
            return "-"
        r = ta[i] / tb[i]
        return f"{r:.2f}x" if r >= 0.1 else f"{r:.3f}x"

    for label, i in (
        (f"wall time, best of {runs}", 0),
        (f"wall time, median of {runs}", 1),
        (f"process CPU time (user + system, all threads), median of {runs}", 2),
    ):
        print(f"\n{label} (seconds):\n")
        print("| query | DataFusion s | DuckDB s | polars s | DataFusion/DuckDB | DataFusion/polars |")
        print("|---|---:|---:|---:|---:|---:|")
        for name in names:
            print(
                f"| {name} | {cell(name, 'datafusion', i)} | {cell(name, 'duckdb', i)} | {cell(name, 'polars', i)} "
                f"| {ratio(name, 'datafusion', 'duckdb', i)} | {ratio(name, 'datafusion', 'polars', i)} |"
            )

    if mismatches:
        bar = "!" * 78
        print(f"\n{bar}\n!!! RESULT MISMATCH: the engines disagree on {len(mismatches)} comparison(s)\n{bar}")
        for name, ref, other, problems in mismatches:
            print(f"{name}: {ref} vs {other}:")
            for p in problems:
                print(f"    {p}")
        print(bar)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
