//! Warm-up from the archive, so a restart does not forget the baselines: reads
//! the last `[detect.warm_up] window` of readings with DataFusion, averaged per
//! machine, channel and `resolution` step, and feeds them to the detectors
//! (oldest first, nothing reported). Averages keep the read fast at live rates;
//! kernels that depend on the sampling rate reset their short windows after it.

use super::{DetectorSet, WarmUpConfig};
use crate::sql::{self, QueryError};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use futures::StreamExt;
use larmor_ingest::{ChannelId, Frame, Sample, Stream};
use std::path::Path;
use std::time::{Duration, Instant};

/// What a warm-up read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WarmReport {
    /// Averaged readings fed to the detectors.
    pub readings: u64,
    pub frames: u64,
    pub elapsed: Duration,
}

const DAY_MS: i64 = 86_400_000;

fn day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms.div_euclid(DAY_MS) * DAY_MS)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Streams the archive's readings in `[from_ms, to_ms)` averaged per `step`,
/// as frames ordered by machine, stream and time (one frame per machine and
/// stream holds up to `batch` samples), and hands each to `sink`.
pub async fn archive_frames(
    archive: &Path,
    from_ms: i64,
    to_ms: i64,
    step: Duration,
    mut sink: impl FnMut(Frame),
) -> Result<u64, QueryError> {
    if !archive.is_dir() {
        return Ok(0); // a first start: nothing to learn from yet
    }
    let ctx = sql::open_archive(archive).await?;
    let step_ms = (step.as_millis() as i64).max(1000);
    // Integers only in the SQL text; the date filter prunes partitions, the ts filter rows.
    let query = format!(
        "SELECT machine_id, stream, channel, (CAST(ts AS BIGINT) / {step_ms}) * {step_ms} AS t, avg(value) AS v \
         FROM readings \
         WHERE date >= '{}' AND date <= '{}' AND CAST(ts AS BIGINT) >= {from_ms} AND CAST(ts AS BIGINT) < {to_ms} \
         GROUP BY machine_id, stream, channel, (CAST(ts AS BIGINT) / {step_ms}) * {step_ms} \
         ORDER BY machine_id, stream, t",
        day(from_ms),
        day(to_ms)
    );
    let mut stream = ctx.sql(&query).await?.execute_stream().await?;
    let mut frame: Option<Frame> = None;
    let mut seq = 0u64;
    let mut readings = 0u64;
    const BATCH: usize = 256;
    while let Some(batch) = stream.next().await {
        let b = batch?;
        let m = string_column(b.column(0).as_ref());
        let s = string_column(b.column(1).as_ref());
        let c = string_column(b.column(2).as_ref());
        let t = b.column(3).as_primitive::<Int64Type>();
        let v = b.column(4).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            let (Some(stream_kind), Some(channel)) = (Stream::parse(&s[i]), ChannelId::from_name(&c[i])) else {
                continue;
            };
            if v.is_null(i) {
                continue;
            }
            let ts = t.value(i);
            let keep = frame.as_ref().is_some_and(|f| {
                f.machine_id == m[i]
                    && f.stream == stream_kind
                    && (f.samples.len() < BATCH || f.samples.last().is_some_and(|l| l.ts_ms == ts))
            });
            if !keep {
                if let Some(f) = frame.take() {
                    sink(f);
                }
                seq += 1;
                frame = Some(Frame {
                    machine_id: m[i].clone(),
                    stream: stream_kind,
                    seq,
                    ts_ms: ts,
                    samples: Vec::with_capacity(BATCH),
                });
            }
            let f = frame.as_mut().expect("set above");
            match f.samples.last_mut() {
                Some(last) if last.ts_ms == ts => last.values.push((channel, v.value(i))),
                _ => f.samples.push(Sample {
                    ts_ms: ts,
                    values: vec![(channel, v.value(i))],
                }),
            }
            f.ts_ms = ts;
            readings += 1;
        }
    }
    if let Some(f) = frame.take() {
        sink(f);
    }
    Ok(readings)
}

/// Strings of a Utf8, LargeUtf8, Utf8View or dictionary column.
fn string_column(a: &dyn Array) -> Vec<String> {
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    let owned;
    let a = if a.data_type() == &DataType::Utf8 {
        a
    } else {
        owned = cast(a, &DataType::Utf8).expect("strings cast to Utf8");
        owned.as_ref()
    };
    let s = a.as_string::<i32>();
    (0..s.len()).map(|i| s.value(i).to_string()).collect()
}

/// Warms `set` from the archive's last `config.window` before `now_ms`, on the
/// caller's runtime. A missing archive is not an error.
pub async fn from_archive(
    set: &mut DetectorSet,
    archive: &Path,
    config: &WarmUpConfig,
    now_ms: i64,
) -> Result<WarmReport, QueryError> {
    let started = Instant::now();
    if config.window.is_zero() {
        return Ok(WarmReport::default());
    }
    let from_ms = now_ms - config.window.as_millis() as i64;
    let mut frames = 0u64;
    let read = archive_frames(archive, from_ms, now_ms, config.resolution, |f| {
        frames += 1;
        set.learn(&f);
    })
    .await;
    // Also after a read that failed part-way: what was learnt stays, but nothing
    // tuned to the archive's averages may carry over into live data.
    set.end_warm_up();
    let readings = read?;
    Ok(WarmReport {
        readings,
        frames,
        elapsed: started.elapsed(),
    })
}
