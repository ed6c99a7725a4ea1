//! The archive reduced to hours: a lazy, hive-partitioned polars scan of
//! `archive/date=YYYY-MM-DD/stream=<stream>/*.parquet` (`ts, machine_id, channel,
//! value`) grouped by machine, channel and hour. Each hour keeps what the feature
//! windows need to be combined exactly later: count, sums of values, of squares, of
//! time and of time × value (time as the fraction of the hour), min, max and the
//! last value.
//!
//! Only readings strictly before `until` are read, so everything built on top is
//! "as of" that time. Any channel name is accepted: channels outside Larmor's
//! catalogue are just more numeric series. The scan runs a few days at a time, so
//! memory stays bounded and progress can be reported.

use crate::HOUR_MS;
use crate::error::{ModelError, Result};
use polars::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One channel of one machine over one hour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourAgg {
    /// Readings in the hour (0: no data).
    pub n: u32,
    pub sum: f64,
    pub sum_sq: f64,
    /// Σ t·v, Σ t, Σ t² with t the reading's time as a fraction of the hour, in [0, 1)
    /// (the last two are small and need no more than f32: 48 bytes a slot).
    pub sum_tv: f64,
    pub sum_t: f32,
    pub sum_tt: f32,
    pub min: f32,
    pub max: f32,
    /// The hour's latest reading.
    pub last: f32,
}

impl HourAgg {
    pub const EMPTY: HourAgg = HourAgg {
        n: 0,
        sum: 0.0,
        sum_sq: 0.0,
        sum_t: 0.0,
        sum_tt: 0.0,
        sum_tv: 0.0,
        min: f32::NAN,
        max: f32::NAN,
        last: f32::NAN,
    };

    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.sum / self.n as f64
        }
    }
}

/// Every channel of one machine, hour by hour from `first_hour`.
#[derive(Debug, Clone)]
pub struct MachineHours {
    pub machine_id: String,
    /// Hour index (ms since the epoch / 3,600,000) of slot 0.
    pub first_hour: i64,
    /// Per channel of [`HourlyArchive::channels`]: `n_hours` slots, or None when the machine never reported it.
    pub channels: Vec<Option<Vec<HourAgg>>>,
    pub n_hours: usize,
}

impl MachineHours {
    /// The hour index after the last slot.
    pub fn end_hour(&self) -> i64 {
        self.first_hour + self.n_hours as i64
    }

    /// The slot of a channel at an absolute hour, if inside the range.
    pub fn at(&self, channel: usize, hour: i64) -> Option<&HourAgg> {
        let slots = self.channels.get(channel)?.as_ref()?;
        let i = hour - self.first_hour;
        if i < 0 { None } else { slots.get(i as usize) }
    }
}

/// The archive as hourly aggregates, machines and channels sorted by name.
#[derive(Debug, Clone, Default)]
pub struct HourlyArchive {
    pub channels: Vec<String>,
    pub machines: Vec<MachineHours>,
    /// Readings read.
    pub readings: u64,
}

/// Which part of the archive to read.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Only readings at or after this time (ms).
    pub from_ms: Option<i64>,
    /// Only readings strictly before this time (ms): the "as of" time.
    pub until_ms: Option<i64>,
    /// Days per polars query (memory against per-query overhead).
    pub days_per_chunk: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            from_ms: None,
            until_ms: None,
            days_per_chunk: 8,
        }
    }
}

/// The `date=` partitions of an archive, sorted (only directories that hold a `stream=` directory).
pub fn partition_dates(archive: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(archive).map_err(|e| {
        ModelError::Input(format!(
            "cannot read the archive {}: {e}; pass the `archive` directory of a data directory \
             (e.g. the --out directory of `larmor dataset generate` followed by /archive)",
            archive.display()
        ))
    })?;
    let mut dates = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(d) = name.strip_prefix("date=")
            && d.len() == 10
            && e.path().is_dir()
        {
            dates.push(d.to_string());
        }
    }
    dates.sort();
    Ok(dates)
}

fn day_string(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The lazy scan of a whole hive-partitioned table (`dir/date=../[stream=../]*.parquet`),
/// with partition columns read as strings.
pub(crate) fn scan_hive(dir: &Path, pattern: &str, hive_columns: &[&str]) -> Result<LazyFrame> {
    let abs = std::fs::canonicalize(dir).map_err(|e| ModelError::io(dir, e))?;
    let glob = format!("{}/{pattern}", abs.display());
    let hive_schema: Schema = hive_columns
        .iter()
        .map(|c| Field::new((*c).into(), DataType::String))
        .collect();
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(true),
            hive_start_idx: 0,
            schema: Some(Arc::new(hive_schema)),
            try_parse_dates: false,
        },
        ..Default::default()
    };
    Ok(LazyFrame::scan_parquet(PlRefPath::new(glob.as_str()), args)?)
}

/// Reads the archive into hourly aggregates; `progress(done_days, total_days)`.
pub fn scan_hourly(
    archive: &Path,
    opts: &ScanOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<HourlyArchive> {
    let mut dates = partition_dates(archive)?;
    if let Some(from) = opts.from_ms {
        let d = day_string(from);
        dates.retain(|x| *x >= d);
    }
    if let Some(until) = opts.until_ms {
        // The day holding `until - 1 ms` is the last one with readings before `until`.
        let d = day_string(until - 1);
        dates.retain(|x| *x <= d);
    }
    if dates.is_empty() {
        return Err(ModelError::Input(format!(
            "no `date=YYYY-MM-DD` partitions in {} for the requested period",
            archive.display()
        )));
    }
    let day_ms = |d: &str| crate::events::parse_time(d).unwrap_or(0);
    let mut first_hour = day_ms(&dates[0]).div_euclid(HOUR_MS);
    let mut end_hour = (day_ms(&dates[dates.len() - 1]) + 24 * HOUR_MS).div_euclid(HOUR_MS);
    if let Some(from) = opts.from_ms {
        first_hour = first_hour.max(from.div_euclid(HOUR_MS));
    }
    if let Some(until) = opts.until_ms {
        end_hour = end_hour.min((until + HOUR_MS - 1).div_euclid(HOUR_MS));
    }
    let mut acc = Accumulator::new(first_hour, end_hour);
    let total = dates.len();
    progress(0, total);
    for (i, chunk) in dates.chunks(opts.days_per_chunk.max(1)).enumerate() {
        let df = hourly_chunk(archive, &chunk[0], &chunk[chunk.len() - 1], opts)?;
        acc.absorb(&df)?;
        progress((i * opts.days_per_chunk.max(1) + chunk.len()).min(total), total);
    }
    Ok(acc.finish())
}

/// One polars query: the hourly aggregates of the days `first..=last`.
fn hourly_chunk(archive: &Path, first: &str, last: &str, opts: &ScanOptions) -> Result<DataFrame> {
    let mut lf = scan_hive(archive, "date=*/stream=*/*.parquet", &["date", "stream"])?
        .filter(col("date").gt_eq(lit(first)).and(col("date").lt_eq(lit(last))));
    let t = col("ts").cast(DataType::Int64);
    if let Some(from) = opts.from_ms {
        lf = lf.filter(t.clone().gt_eq(lit(from)));
    }
    if let Some(until) = opts.until_ms {
        lf = lf.filter(t.clone().lt(lit(until)));
    }
    let hour_ms = lit(HOUR_MS);
    let frac = (t.clone() % hour_ms.clone()).cast(DataType::Float64) / lit(HOUR_MS as f64);
    let v = || col("value");
    let f = || col("frac");
    let df = lf
        .select([
            col("machine_id"),
            col("channel"),
            // Exact: the dividend is a multiple of an hour (timestamps are not negative).
            ((t.clone() - t.clone() % hour_ms.clone()) / hour_ms)
                .cast(DataType::Int64)
                .alias("hour"),
            frac.alias("frac"),
            v(),
        ])
        .group_by([col("machine_id"), col("channel"), col("hour")])
        .agg([
            len().alias("n"),
            v().sum().alias("sum"),
            (v() * v()).sum().alias("sum_sq"),
            f().sum().alias("sum_t"),
            (f() * f()).sum().alias("sum_tt"),
            (f() * v()).sum().alias("sum_tv"),
            v().min().alias("min"),
            v().max().alias("max"),
            // Files are sorted by machine then time and an hour lies in one file: the
            // group's last row is its latest reading (checked against row reads in the tests).
            v().last().alias("last"),
        ])
        .collect()?;
    let mut df = df;
    // One chunk per column: `get(i)` below is then a plain index.
    df.rechunk_mut_par();
    Ok(df)
}

/// Hourly slots filled in place: every machine gets the whole scanned hour range,
/// trimmed to its own data at the end.
struct Accumulator {
    first_hour: i64,
    n_hours: usize,
    channels: HashMap<String, usize>,
    machines: HashMap<String, usize>,
    /// Per machine, per channel (arrival index): dense slots.
    slots: Vec<Vec<Option<Vec<HourAgg>>>>,
    readings: u64,
}

impl Accumulator {
    fn new(first_hour: i64, end_hour: i64) -> Accumulator {
        Accumulator {
            first_hour,
            n_hours: (end_hour - first_hour).max(0) as usize,
            channels: HashMap::new(),
            machines: HashMap::new(),
            slots: Vec::new(),
            readings: 0,
        }
    }

    fn absorb(&mut self, df: &DataFrame) -> Result<()> {
        let c = |name: &str| df.column(name).map_err(ModelError::from);
        let machine = c("machine_id")?.str()?.clone();
        let channel = c("channel")?.str()?.clone();
        let hour = c("hour")?.i64()?.clone();
        let n = c("n")?.cast(&DataType::UInt32)?;
        let n = n.u32()?;
        let f64col = |name: &str| -> Result<Float64Chunked> { Ok(c(name)?.cast(&DataType::Float64)?.f64()?.clone()) };
        let (sum, sum_sq, sum_t, sum_tt, sum_tv) = (
            f64col("sum")?,
            f64col("sum_sq")?,
            f64col("sum_t")?,
            f64col("sum_tt")?,
            f64col("sum_tv")?,
        );
        let (min, max, last) = (f64col("min")?, f64col("max")?, f64col("last")?);
        let mut last_m: Option<(&str, usize)> = None;
        let mut last_c: Option<(&str, usize)> = None;
        for i in 0..df.height() {
            let (Some(m), Some(ch), Some(h), Some(count)) = (machine.get(i), channel.get(i), hour.get(i), n.get(i))
            else {
                continue; // null keys: not a reading anyone can use
            };
            let slot = h - self.first_hour;
            if slot < 0 || slot as usize >= self.n_hours {
                continue; // a timestamp outside its date partition: not this scan's
            }
            let mi = match last_m {
                Some((name, idx)) if name == m => idx,
                _ => {
                    let next = self.machines.len();
                    let idx = *self.machines.entry(m.to_string()).or_insert(next);
                    if idx == self.slots.len() {
                        self.slots.push(Vec::new());
                    }
                    last_m = Some((m, idx));
                    idx
                }
            };
            let ci = match last_c {
                Some((name, idx)) if name == ch => idx,
                _ => {
                    let next = self.channels.len();
                    let idx = *self.channels.entry(ch.to_string()).or_insert(next);
                    last_c = Some((ch, idx));
                    idx
                }
            };
            let g = |col: &Float64Chunked| col.get(i).unwrap_or(f64::NAN);
            self.readings += count as u64;
            let agg = HourAgg {
                n: count,
                sum: g(&sum),
                sum_sq: g(&sum_sq),
                sum_t: g(&sum_t) as f32,
                sum_tt: g(&sum_tt) as f32,
                sum_tv: g(&sum_tv),
                min: g(&min) as f32,
                max: g(&max) as f32,
                last: g(&last) as f32,
            };
            let per_machine = &mut self.slots[mi];
            if per_machine.len() <= ci {
                per_machine.resize(ci + 1, None);
            }
            let n_hours = self.n_hours;
            let target = &mut per_machine[ci].get_or_insert_with(|| vec![HourAgg::EMPTY; n_hours])[slot as usize];
            if target.n == 0 {
                *target = agg;
            } else {
                merge(target, &agg); // the same hour split across files (e.g. two writers)
            }
        }
        Ok(())
    }

    fn finish(self) -> HourlyArchive {
        // Channels and machines sorted by name, so the layout does not depend on file order.
        let mut channel_names: Vec<(String, usize)> = self.channels.into_iter().collect();
        channel_names.sort();
        let mut machine_names: Vec<(String, usize)> = self.machines.into_iter().collect();
        machine_names.sort();
        let mut slots = self.slots;
        let machines = machine_names
            .into_iter()
            .map(|(machine_id, idx)| {
                let mut per: Vec<Option<Vec<HourAgg>>> = std::mem::take(&mut slots[idx]);
                per.resize(channel_names.len(), None);
                // Trim to the hours where this machine has data.
                let has = |i: usize| per.iter().flatten().any(|s| s[i].n > 0);
                let first = (0..self.n_hours).find(|&i| has(i)).unwrap_or(0);
                let end = (0..self.n_hours).rev().find(|&i| has(i)).map_or(first, |i| i + 1);
                let channels = channel_names
                    .iter()
                    .map(|(_, old)| {
                        per[*old].take().map(|mut v| {
                            v.truncate(end);
                            v.drain(..first);
                            v
                        })
                    })
                    .collect();
                MachineHours {
                    machine_id,
                    first_hour: self.first_hour + first as i64,
                    channels,
                    n_hours: end - first,
                }
            })
            .collect();
        HourlyArchive {
            channels: channel_names.into_iter().map(|(n, _)| n).collect(),
            machines,
            readings: self.readings,
        }
    }
}

/// Adds `b` into `a`; `last` keeps the reading that is later within the hour.
fn merge(a: &mut HourAgg, b: &HourAgg) {
    let a_last_t = if a.n > 0 { a.sum_t / a.n as f32 } else { f32::MIN };
    let b_last_t = b.sum_t / b.n.max(1) as f32;
    a.n += b.n;
    a.sum += b.sum;
    a.sum_sq += b.sum_sq;
    a.sum_t += b.sum_t;
    a.sum_tt += b.sum_tt;
    a.sum_tv += b.sum_tv;
    a.min = a.min.min(b.min);
    a.max = a.max.max(b.max);
    if b_last_t >= a_last_t {
        a.last = b.last;
    }
}

impl HourlyArchive {
    pub fn channel_index(&self, name: &str) -> Option<usize> {
        self.channels.binary_search_by(|c| c.as_str().cmp(name)).ok()
    }
    pub fn machine(&self, id: &str) -> Option<&MachineHours> {
        self.machines.iter().find(|m| m.machine_id == id)
    }
    /// First and last (exclusive) hour over all machines.
    pub fn hour_range(&self) -> Option<(i64, i64)> {
        let first = self.machines.iter().map(|m| m.first_hour).min()?;
        let end = self.machines.iter().map(|m| m.end_hour()).max()?;
        Some((first, end))
    }
}

/// The anomaly episodes of the `anomalies` table next to an archive, per machine,
/// sorted by time: `(ts_ms, detector, kind)`.
#[derive(Debug, Clone, Default)]
pub struct AnomalyLog {
    pub detectors: Vec<String>,
    pub kinds: Vec<String>,
    pub by_machine: HashMap<String, Vec<(i64, u16, u16)>>,
}

/// The `anomalies` directory beside an archive, if it holds any Parquet file.
pub fn anomalies_dir(archive: &Path) -> Option<PathBuf> {
    let dir = larmor_datadir::DataDir::around(archive).anomalies();
    larmor_datadir::naming::has_data_files(&dir, 1).then_some(dir)
}

/// Reads the anomalies before `until_ms` (all when None).
pub fn read_anomalies(dir: &Path, until_ms: Option<i64>) -> Result<AnomalyLog> {
    let mut lf = scan_hive(dir, "date=*/*.parquet", &["date"])?.select([
        col("ts").cast(DataType::Int64).alias("t"),
        col("machine_id"),
        col("detector"),
        col("kind"),
    ]);
    if let Some(u) = until_ms {
        lf = lf.filter(col("t").lt(lit(u)));
    }
    let df = lf.collect()?;
    let t = df.column("t")?.i64()?.clone();
    let m = df.column("machine_id")?.str()?.clone();
    let d = df.column("detector")?.str()?.clone();
    let k = df.column("kind")?.str()?.clone();
    let mut log = AnomalyLog::default();
    let mut det_idx: HashMap<String, u16> = HashMap::new();
    let mut kind_idx: HashMap<String, u16> = HashMap::new();
    for i in 0..df.height() {
        let (Some(t), Some(m), Some(d), Some(k)) = (t.get(i), m.get(i), d.get(i), k.get(i)) else {
            continue;
        };
        let n = det_idx.len() as u16;
        let di = *det_idx.entry(d.to_string()).or_insert(n);
        let n = kind_idx.len() as u16;
        let ki = *kind_idx.entry(k.to_string()).or_insert(n);
        log.by_machine.entry(m.to_string()).or_default().push((t, di, ki));
    }
    let mut dets: Vec<(String, u16)> = det_idx.into_iter().collect();
    dets.sort_by_key(|x| x.1);
    log.detectors = dets.into_iter().map(|x| x.0).collect();
    let mut kinds: Vec<(String, u16)> = kind_idx.into_iter().collect();
    kinds.sort_by_key(|x| x.1);
    log.kinds = kinds.into_iter().map(|x| x.0).collect();
    for v in log.by_machine.values_mut() {
        v.sort_unstable();
    }
    Ok(log)
}
