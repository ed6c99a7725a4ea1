//! Backfill: generates a whole dataset on disk, fast. Under `out/`:
//!
//! - `archive/`: the telemetry in exactly the ingest archive layout
//!   (`date=YYYY-MM-DD/stream=<stream>/part-backfill-<group>.parquet`, the
//!   archive schema, zstd, sorted by machine then time), readable by `larmor query`;
//! - `events.csv`, `events.parquet`: the ground truth;
//! - `machines.csv`, `service_history.csv`, `devices.toml`: the fleet;
//! - `schedules/<machine>.ics`: the scan schedules.
//!
//! Machines are split into fixed groups (by id). A simulating thread takes a
//! group through every day and hands each (day, stream) file's columns to a pool
//! of writer threads, which build the Arrow batch and encode it (the bulk of
//! the work). Each machine's readings come out already in time order, so nothing
//! is sorted, and the output does not depend on the number of threads.

use crate::events;
use crate::fleet::{Fleet, machines_csv, service_history_csv};
use crate::ical::calendar;
use crate::run::{MachineRun, Reading};
use crate::scenario::{Scenario, ScenarioConfig};
use crate::signals::{CHANNELS, stream_of};
use crate::time::{DAY_MS, SECOND_MS, format_date, parse_date};
use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::record_batch::RecordBatch;
use larmor_datadir::durable::write_parquet_file;
use larmor_datadir::naming;
use larmor_datadir::schema::readings as schema;
use larmor_ingest::archive::parquet_settings;
use larmor_ingest::{CATALOG, DeviceRegistry, Stream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to generate.
#[derive(Debug, Clone)]
pub struct BackfillConfig {
    pub machines: usize,
    pub days: u32,
    /// Time between readings; must divide a day.
    pub resolution: Duration,
    pub seed: u64,
    /// First UTC day (day number since 1970-01-01; see [`crate::time::parse_date`]).
    pub start_day: i64,
    pub out: PathBuf,
    pub scenario: ScenarioConfig,
    /// Machines per archive file (per day and stream). Part of the output's
    /// shape, so it is fixed rather than derived from the number of threads.
    pub machines_per_file: usize,
    /// Threads encoding and writing files (the bulk of the work); 0 = twice
    /// the cores. Besides them, up to one thread per core simulates, one
    /// group at a time. The output does not depend on it.
    pub threads: usize,
    /// zstd level of the archive files.
    pub zstd_level: i32,
    /// Replace the outputs of an earlier run in `out` (only the files this writes).
    pub overwrite: bool,
}

impl BackfillConfig {
    /// Default realistic scenario, starting [`crate::fleet::DEFAULT_START`].
    pub fn new(machines: usize, days: u32, resolution: Duration, seed: u64, out: impl Into<PathBuf>) -> Self {
        BackfillConfig {
            machines,
            days,
            resolution,
            seed,
            start_day: crate::fleet::default_start_day(),
            out: out.into(),
            scenario: ScenarioConfig::default(),
            machines_per_file: 25,
            threads: 0,
            zstd_level: 3,
            overwrite: false,
        }
    }

    /// The resolution in milliseconds.
    pub fn resolution_ms(&self) -> i64 {
        self.resolution.as_millis().min(i64::MAX as u128) as i64
    }

    /// Checks the settings; the message says what to change.
    pub fn validate(&self) -> Result<(), BackfillError> {
        let bad = |m: String| Err(BackfillError::InvalidConfig(m));
        if self.machines == 0 || self.machines > 99_999 {
            return bad(format!("--machines must be 1..=99999, not {}", self.machines));
        }
        if self.days == 0 {
            return bad("--days must be at least 1".into());
        }
        let res = self.resolution_ms();
        if res < SECOND_MS || res % SECOND_MS != 0 || DAY_MS % res != 0 {
            return bad(format!(
                "--resolution must be whole seconds that divide a day (e.g. 10s, 1m, 5m, 1h), not {}",
                humanize(self.resolution)
            ));
        }
        let (lo, hi) = (
            parse_date("2000-01-01").unwrap_or(10_957),
            parse_date("2100-01-01").unwrap_or(47_482),
        );
        if self.start_day < lo || self.start_day + i64::from(self.days) > hi {
            return bad(format!(
                "the period {} + {} days must lie between 2000 and 2100 (the wire format's timestamp range)",
                format_date(self.start_day),
                self.days
            ));
        }
        if self.machines_per_file == 0 {
            return bad("machines per file must be at least 1".into());
        }
        if !(1..=22).contains(&self.zstd_level) {
            return bad(format!("zstd level must be 1..=22, not {}", self.zstd_level));
        }
        for f in &self.scenario.forced {
            if f.machine >= self.machines {
                return bad(format!(
                    "a forced event names machine index {} but the fleet has {} machines",
                    f.machine, self.machines
                ));
            }
        }
        Ok(())
    }

    /// The fleet and its plans (the ground truth) for this config.
    pub fn plan(&self) -> Scenario {
        Scenario::plan(self.machines, self.seed, self.start_day, self.days, &self.scenario)
    }

    /// Readings this config produces when no sensor dropout removes any.
    pub fn nominal_readings(&self) -> u64 {
        let per_day = (DAY_MS / self.resolution_ms().max(1)) as u64;
        self.machines as u64 * u64::from(self.days) * per_day * CHANNELS as u64
    }
}

fn humanize(d: Duration) -> String {
    format!("{d:?}")
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("{0}")]
    InvalidConfig(String),
    #[error(
        "{0} already holds a generated dataset; pick an empty directory, or pass --force to replace its dataset files"
    )]
    OutputExists(PathBuf),
    #[error("cannot write {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackfillError + '_ {
    move |error| BackfillError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// What a backfill wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackfillReport {
    pub readings: u64,
    /// Readings per stream, indexed by [`Stream::index`].
    pub readings_by_stream: [u64; 3],
    pub archive_files: usize,
    pub archive_bytes: u64,
    /// Every file written, archive included.
    pub total_bytes: u64,
    pub events: usize,
    pub elapsed: Duration,
    /// Summed over threads: time spent simulating, and building and writing files
    /// (Parquet encoding, zstd, fsync).
    pub simulate_time: Duration,
    pub write_time: Duration,
    /// Simulating plus writing threads.
    pub threads: usize,
}

/// Files and directories a backfill owns inside `out`.
const OUTPUTS: [&str; 8] = [
    "archive",
    "schedules",
    "events.csv",
    "events.parquet",
    "machines.csv",
    "service_history.csv",
    "devices.toml",
    "README.txt",
];

/// Generates the dataset. `progress(done, total)` is called from this thread,
/// with `done` and `total` counted in machine-days.
pub fn generate(config: &BackfillConfig, progress: &mut dyn FnMut(u64, u64)) -> Result<BackfillReport, BackfillError> {
    let started = Instant::now();
    config.validate()?;
    prepare_out(config)?;
    let scenario = config.plan();
    let out = &config.out;
    let events = scenario.events();
    events::write(out, &events).map_err(io(&out.join("events.parquet")))?;
    write_file(&out.join("machines.csv"), machines_csv(&scenario.fleet).as_bytes())?;
    write_file(
        &out.join("service_history.csv"),
        service_history_csv(&scenario.fleet).as_bytes(),
    )?;
    let registry = DeviceRegistry::new(scenario.fleet.devices())
        .map_err(|e| BackfillError::InvalidConfig(format!("the generated fleet is not a valid registry: {e}")))?;
    registry
        .save(&out.join("devices.toml"))
        .map_err(io(&out.join("devices.toml")))?;
    write_file(&out.join("README.txt"), readme(config, &scenario).as_bytes())?;
    std::fs::create_dir_all(out.join("archive")).map_err(io(&out.join("archive")))?;
    std::fs::create_dir_all(out.join("schedules")).map_err(io(&out.join("schedules")))?;

    let groups = machine_groups(&scenario.fleet, config.machines_per_file);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // Encoding dominates: twice as many writers as cores keeps every core busy
    // while some wait on fsync (measured: 89 s vs 100 s with cores + 1 for the
    // 100-machine year on 2 cores). Simulation is light; each group is one
    // thread's sequence of days.
    let writers = match config.threads {
        0 => 2 * cores,
        n => n,
    };
    let simulators = writers.min(cores).min(groups.len()).max(1);
    let total = config.machines as u64 * u64::from(config.days);
    let done = AtomicU64::new(0);
    let next_group = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::sync_channel::<FileJob>(2 * writers);
    let rx = Mutex::new(rx);
    let results: Vec<Result<WorkerStats, BackfillError>> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for _ in 0..simulators {
            let tx = tx.clone();
            let (groups, next_group) = (&groups, &next_group);
            let shared = Shared {
                config,
                scenario: &scenario,
                done: &done,
                failed: &failed,
            };
            handles.push(s.spawn(move || {
                let mut stats = WorkerStats::default();
                loop {
                    let g = next_group.fetch_add(1, Ordering::Relaxed) as usize;
                    if g >= groups.len() || shared.failed.load(Ordering::Relaxed) {
                        return Ok(stats);
                    }
                    if let Err(e) = simulate_group(&shared, g, &groups[g], &tx, &mut stats) {
                        shared.failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }));
        }
        drop(tx); // the writers stop once every simulator has hung up
        for _ in 0..writers {
            let (rx, failed) = (&rx, &failed);
            handles.push(s.spawn(move || {
                let mut stats = WorkerStats::default();
                let mut error = None;
                // Keep draining after an error, so no simulator blocks on a full queue.
                loop {
                    // Its own statement, so the lock is released before the job is written.
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(job) = next else { break };
                    if failed.load(Ordering::Relaxed) {
                        continue;
                    }
                    if let Err(e) = write_job(config, job, &mut stats) {
                        failed.store(true, Ordering::Relaxed);
                        error.get_or_insert(e);
                    }
                }
                error.map_or(Ok(stats), Err)
            }));
        }
        while !handles.iter().all(|h| h.is_finished()) {
            progress(done.load(Ordering::Relaxed), total);
            std::thread::sleep(Duration::from_millis(100));
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BackfillError::InvalidConfig("a worker panicked".into())))
            })
            .collect()
    });
    progress(done.load(Ordering::Relaxed), total);

    let mut report = BackfillReport {
        events: events.len(),
        threads: simulators + writers,
        ..Default::default()
    };
    for r in results {
        let s = r?;
        report.readings += s.readings_by_stream.iter().sum::<u64>();
        for k in 0..3 {
            report.readings_by_stream[k] += s.readings_by_stream[k];
        }
        report.archive_files += s.files;
        report.archive_bytes += s.bytes;
        report.simulate_time += s.simulate_time;
        report.write_time += s.write_time;
    }
    report.total_bytes = dir_size(out);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// [`generate`] with an indicatif progress bar on stderr.
pub fn generate_with_progress_bar(config: &BackfillConfig) -> Result<BackfillReport, BackfillError> {
    let total = config.machines as u64 * u64::from(config.days);
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} machine-days ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let r = generate(config, &mut |done, _| bar.set_position(done));
    bar.finish_and_clear();
    r
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BackfillError> {
    std::fs::write(path, bytes).map_err(io(path))
}

/// Refuses to mix two datasets in one directory; with `overwrite`, removes the earlier one's files.
fn prepare_out(config: &BackfillConfig) -> Result<(), BackfillError> {
    let out = &config.out;
    let existing: Vec<PathBuf> = OUTPUTS.iter().map(|n| out.join(n)).filter(|p| p.exists()).collect();
    if !existing.is_empty() {
        if !config.overwrite {
            return Err(BackfillError::OutputExists(out.clone()));
        }
        for p in existing {
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.map_err(io(&p))?;
        }
    }
    std::fs::create_dir_all(out).map_err(io(out))
}

/// Machine indices in id order, cut into groups of at most `per_group`, as even as possible.
fn machine_groups(fleet: &Fleet, per_group: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..fleet.machines.len()).collect();
    order.sort_by(|&a, &b| fleet.machines[a].id.cmp(&fleet.machines[b].id));
    let n = order.len().div_ceil(per_group.max(1)).max(1);
    let (base, extra) = (order.len() / n, order.len() % n);
    let mut groups = Vec::with_capacity(n);
    let mut at = 0;
    for g in 0..n {
        let len = base + usize::from(g < extra);
        groups.push(order[at..at + len].to_vec());
        at += len;
    }
    groups
}

#[derive(Default)]
struct WorkerStats {
    readings_by_stream: [u64; 3],
    files: usize,
    bytes: u64,
    simulate_time: Duration,
    write_time: Duration,
}

/// Column buffers of one (day, stream) file, filled in archive order.
#[derive(Default)]
struct StreamColumns {
    ts: Vec<i64>,
    channel: Vec<u8>,
    value: Vec<f64>,
    /// (position in the group, rows): machines in id order, each a contiguous run.
    machine_runs: Vec<(usize, usize)>,
}

impl StreamColumns {
    fn reserve(&mut self, rows: usize) {
        self.ts.reserve(rows);
        self.channel.reserve(rows);
        self.value.reserve(rows);
    }

    /// Builds the archive batch and empties the buffers.
    fn take_batch(&mut self, ids: &[String]) -> datafusion::arrow::error::Result<RecordBatch> {
        let rows = self.ts.len();
        let mut offsets: Vec<i32> = Vec::with_capacity(rows + 1);
        offsets.push(0);
        let id_len = ids.first().map_or(0, |s| s.len());
        let mut bytes: Vec<u8> = Vec::with_capacity(rows * id_len);
        for &(m, n) in &self.machine_runs {
            let id = ids[m].as_bytes();
            for _ in 0..n {
                bytes.extend_from_slice(id);
                offsets.push(bytes.len() as i32);
            }
        }
        let machine = string_array(offsets, bytes)?;
        let mut offsets: Vec<i32> = Vec::with_capacity(rows + 1);
        offsets.push(0);
        let mut bytes: Vec<u8> = Vec::with_capacity(rows * 20);
        for &c in &self.channel {
            bytes.extend_from_slice(CATALOG[c as usize].name.as_bytes());
            offsets.push(bytes.len() as i32);
        }
        let channel = string_array(offsets, bytes)?;
        let ts =
            TimestampMillisecondArray::new(ScalarBuffer::from(std::mem::take(&mut self.ts)), None).with_timezone("UTC");
        let value = Float64Array::new(ScalarBuffer::from(std::mem::take(&mut self.value)), None);
        self.channel.clear();
        self.machine_runs.clear();
        let cols: Vec<ArrayRef> = vec![Arc::new(ts), Arc::new(machine), Arc::new(channel), Arc::new(value)];
        RecordBatch::try_new(schema(), cols)
    }
}

fn string_array(offsets: Vec<i32>, bytes: Vec<u8>) -> datafusion::arrow::error::Result<StringArray> {
    StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(bytes),
        None,
    )
}

/// One (day, stream) file of one group, from a simulating thread to a writer.
struct FileJob {
    day: i64,
    stream: Stream,
    group: usize,
    columns: StreamColumns,
    ids: Arc<[String]>,
}

/// What every simulating thread shares.
struct Shared<'a> {
    config: &'a BackfillConfig,
    scenario: &'a Scenario,
    /// Machine-days simulated.
    done: &'a AtomicU64,
    failed: &'a AtomicBool,
}

/// Every day of one machine group, handed to the writers a file at a time; then the group's schedules.
fn simulate_group(
    shared: &Shared<'_>,
    group: usize,
    machines: &[usize],
    files: &SyncSender<FileJob>,
    stats: &mut WorkerStats,
) -> Result<(), BackfillError> {
    let Shared {
        config,
        scenario,
        done,
        failed,
    } = *shared;
    let fleet = &scenario.fleet;
    let ids: Arc<[String]> = machines.iter().map(|&m| fleet.machines[m].id.clone()).collect();
    let mut runs: Vec<MachineRun> = machines
        .iter()
        .map(|&m| MachineRun::new(&fleet.machines[m], m, scenario.plans[m].clone(), scenario.seed))
        .collect();
    let stream_index: [usize; CHANNELS] = std::array::from_fn(|c| stream_of(c).index());
    let per_stream: [usize; 3] = std::array::from_fn(|s| stream_index.iter().filter(|&&k| k == s).count());
    let res = config.resolution_ms();
    let instants = (DAY_MS / res) as usize;
    for day in config.start_day..config.start_day + i64::from(config.days) {
        if failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let clock = Instant::now();
        let mut columns: [StreamColumns; 3] = Default::default();
        for (s, c) in columns.iter_mut().enumerate() {
            c.reserve(instants * machines.len() * per_stream[s]);
        }
        for (pos, run) in runs.iter_mut().enumerate() {
            let before = columns.each_ref().map(|c| c.ts.len());
            run.run_day(day, res, |r: &Reading<'_>| {
                for c in 0..CHANNELS {
                    if r.present & (1 << c) != 0 {
                        let col = &mut columns[stream_index[c]];
                        col.ts.push(r.ts_ms);
                        col.channel.push(c as u8);
                        col.value.push(r.values[c]);
                    }
                }
            });
            for (s, col) in columns.iter_mut().enumerate() {
                let n = col.ts.len() - before[s];
                if n > 0 {
                    col.machine_runs.push((pos, n));
                }
            }
        }
        stats.simulate_time += clock.elapsed();
        for (stream, columns) in Stream::ALL.into_iter().zip(columns) {
            if columns.ts.is_empty() {
                continue;
            }
            let job = FileJob {
                day,
                stream,
                group,
                columns,
                ids: ids.clone(),
            };
            if files.send(job).is_err() {
                return Ok(()); // the writers are gone: they failed and say why
            }
        }
        done.fetch_add(machines.len() as u64, Ordering::Relaxed);
    }
    let (from, to) = (
        config.start_day * DAY_MS,
        (config.start_day + i64::from(config.days)) * DAY_MS,
    );
    for &m in machines {
        let machine = &fleet.machines[m];
        let path = config.out.join("schedules").join(format!("{}.ics", machine.id));
        let cal = calendar(machine, m, scenario.seed, &scenario.plans[m], from, to);
        write_file(&path, cal.as_bytes())?;
    }
    Ok(())
}

/// Builds one archive file and writes it durably.
fn write_job(config: &BackfillConfig, mut job: FileJob, stats: &mut WorkerStats) -> Result<(), BackfillError> {
    let clock = Instant::now();
    let dir = config
        .out
        .join("archive")
        .join(naming::archive_partition(job.day, job.stream.as_str()));
    let name = naming::backfill_file(job.group);
    let rows = job.columns.ts.len() as u64;
    let batch = job.columns.take_batch(&job.ids).map_err(|e| BackfillError::Io {
        path: dir.join(&name),
        error: std::io::Error::other(e),
    })?;
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let bytes = write_parquet_file(&dir.join(&name), &batch, &parquet_settings(config.zstd_level))
        .map_err(io(&dir.join(&name)))?;
    stats.files += 1;
    stats.bytes += bytes;
    stats.readings_by_stream[job.stream.index()] += rows;
    stats.write_time += clock.elapsed();
    Ok(())
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// A short description written beside the data.
fn readme(config: &BackfillConfig, scenario: &Scenario) -> String {
    format!(
        "Larmor synthetic MRI fleet dataset\n\
         machines: {}\nstart: {}\ndays: {}\nresolution: {} s\nseed: {}\n\
         archive/: telemetry, table `readings` (query with `larmor query --archive <this directory>/archive \"SELECT ...\"`)\n\
         events.csv / events.parquet: ground truth (failures, averted failures, maintenance, sensor faults)\n\
         machines.csv, service_history.csv, devices.toml: the fleet\n\
         schedules/: scan schedules as iCalendar\n\
         Data dictionary: datasets/README.md in the Larmor repository.\n",
        scenario.fleet.machines.len(),
        format_date(config.start_day),
        config.days,
        config.resolution_ms() / 1000,
        config.seed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_even_and_in_id_order() {
        let f = Fleet::generate(10, 1);
        let g = machine_groups(&f, 4);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 3, 3]);
        assert_eq!(g.concat(), (0..10).collect::<Vec<_>>());
        assert_eq!(machine_groups(&f, 25).len(), 1);
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let ok = BackfillConfig::new(3, 2, Duration::from_secs(60), 1, "/nonexistent");
        assert!(ok.validate().is_ok());
        let msg = |c: BackfillConfig| c.validate().unwrap_err().to_string();
        assert!(
            msg(BackfillConfig {
                machines: 0,
                ..ok.clone()
            })
            .contains("--machines")
        );
        assert!(msg(BackfillConfig { days: 0, ..ok.clone() }).contains("--days"));
        assert!(
            msg(BackfillConfig {
                resolution: Duration::from_secs(7 * 60),
                ..ok.clone()
            })
            .contains("divide a day")
        );
        assert!(
            msg(BackfillConfig {
                resolution: Duration::from_millis(10),
                ..ok.clone()
            })
            .contains("--resolution")
        );
        assert!(
            msg(BackfillConfig {
                start_day: parse_date("2099-12-01").unwrap(),
                days: 60,
                ..ok.clone()
            })
            .contains("2100")
        );
    }
}
