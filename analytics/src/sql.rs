//! SQL over the Parquet archive with DataFusion. The archive is a listing table
//! with hive partitions (`date`, `stream`), so filters on them prune directories
//! and Parquet statistics prune row groups.
//!
//! Strings are read as `Utf8View`: the archive's dictionary-encoded `machine_id`
//! and `channel` then decode into views of the dictionary instead of one copied
//! string per row, and the partition values (at most 12 bytes) sit inline in the
//! view. On the 111 M-reading bench archive that takes `daily_stats` from 1.6× to
//! about 1.0× DuckDB's time (benches/README.md). Results carry `Utf8View` columns
//! for those strings; cast to `Utf8` where a consumer needs `StringArray`.

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};
use larmor_datadir::naming;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("no archive at {0}; run `larmor run` (or point --archive at an existing archive) first")]
    NoArchive(String),
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("cannot format the result: {0}")]
    Format(String),
}

/// A DataFusion session with the archive registered as `readings`, the
/// partitions it holds as `archive_partitions`, and the other tables of its data
/// directory (see [`crate::tables`]).
pub async fn open_archive(archive: &Path) -> Result<SessionContext, QueryError> {
    open_archive_with(archive, SessionConfig::new()).await
}

/// [`open_archive`] with session settings (e.g. `datafusion.execution.*`), which
/// apply to the Parquet scans of every table too.
pub async fn open_archive_with(archive: &Path, config: SessionConfig) -> Result<SessionContext, QueryError> {
    if !archive.is_dir() {
        return Err(QueryError::NoArchive(archive.display().to_string()));
    }
    let abs = std::fs::canonicalize(archive).map_err(|_| QueryError::NoArchive(archive.display().to_string()))?;
    let ctx = SessionContext::new_with_config(config);
    let options = ListingOptions::new(Arc::new(parquet_format(&ctx)))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![
            ("date".into(), DataType::Utf8View),
            ("stream".into(), DataType::Utf8View),
        ]);
    register_functions(&ctx);
    let url = format!("{}/", abs.display());
    ctx.register_listing_table("readings", &url, options, Some(readings_schema()), None)
        .await?;
    ctx.register_table("archive_partitions", Arc::new(archive_partitions(&abs)?))?;
    crate::tables::register_side_tables(&ctx, &larmor_datadir::DataDir::around(&abs)).await?;
    Ok(ctx)
}

/// The Parquet format with the session's Parquet settings: a bare
/// `ParquetFormat::default()` carries its own defaults and would ignore
/// `SET datafusion.execution.parquet.*`.
pub fn parquet_format(ctx: &SessionContext) -> ParquetFormat {
    ParquetFormat::default().with_options(ctx.state().default_table_options().parquet.clone())
}

/// The schema `readings` is read with: the archive's, strings as `Utf8View`.
pub fn readings_schema() -> SchemaRef {
    let fields: Vec<Field> = larmor_datadir::schema::readings()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// One row (`date`, `stream`) per archive partition that holds a visible Parquet
/// file, from the directory listing. Queries that only need the days the archive
/// covers read this instead of `SELECT DISTINCT date FROM readings`, which
/// DataFusion answers by producing and grouping every reading's partition value
/// (1 s per use on 111 M readings, against 14 ms here). A snapshot: taken when the
/// session opens, like the listing table's own file list.
fn archive_partitions(archive: &Path) -> Result<MemTable, QueryError> {
    let io = |dir: &Path, e: std::io::Error| DataFusionError::Execution(format!("cannot list {}: {e}", dir.display()));
    let (mut dates, mut streams) = (Vec::new(), Vec::new());
    for (date, day_dir) in naming::partitions(archive, "date").map_err(|e| io(archive, e))? {
        for (stream, stream_dir) in naming::partitions(&day_dir, "stream").map_err(|e| io(&day_dir, e))? {
            // Hidden names are files being written or not yet committed.
            let has_data = std::fs::read_dir(&stream_dir)
                .map_err(|e| io(&stream_dir, e))?
                .flatten()
                .any(|f| naming::is_data_file(&f.file_name().to_string_lossy()));
            if has_data {
                dates.push(date.clone());
                streams.push(stream);
            }
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("date", DataType::Utf8, false),
        Field::new("stream", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(dates)), Arc::new(StringArray::from(streams))],
    )
    .map_err(DataFusionError::from)?;
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}

/// Larmor's SQL helpers: `time_bucket('1 hour', ts)` floors a timestamp to
/// buckets counted from the Unix epoch (the same as `date_bin` with two arguments).
pub fn register_functions(ctx: &SessionContext) {
    let bucket = datafusion::functions::datetime::date_bin()
        .as_ref()
        .clone()
        .with_aliases(["time_bucket"]);
    ctx.register_udf(bucket);
}

/// Runs one SQL statement and collects the result.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Writes a query result as a zstd Parquet file; returns the row count.
pub fn write_parquet(
    batches: &[RecordBatch],
    schema: datafusion::arrow::datatypes::SchemaRef,
    path: &Path,
) -> Result<usize, QueryError> {
    use datafusion::arrow::compute::cast;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::basic::{Compression, ZstdLevel};
    use datafusion::parquet::file::properties::WriterProperties;
    let err = |e: String| QueryError::Format(format!("{}: {e}", path.display()));
    // Strings as plain Utf8: `Utf8View` (how the archive is read) is recorded in the
    // file's Arrow schema, and older Arrow readers do not know it.
    let plain = |t: &DataType| {
        if *t == DataType::Utf8View {
            DataType::Utf8
        } else {
            t.clone()
        }
    };
    let out_schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_data_type(plain(f.data_type())))
            .collect::<Vec<_>>(),
    ));
    let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut w = ArrowWriter::try_new(file, out_schema.clone(), Some(props)).map_err(|e| err(e.to_string()))?;
    let mut rows = 0;
    for b in batches {
        let columns = b
            .columns()
            .iter()
            .zip(out_schema.fields())
            .map(|(c, f)| cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        let b = RecordBatch::try_new(out_schema.clone(), columns).map_err(|e| err(e.to_string()))?;
        w.write(&b).map_err(|e| err(e.to_string()))?;
        rows += b.num_rows();
    }
    w.close().map_err(|e| err(e.to_string()))?;
    Ok(rows)
}

/// Output formats of `larmor query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

/// Renders batches as a table, CSV (with header) or JSON lines.
pub fn render(batches: &[RecordBatch], format: OutputFormat) -> Result<String, QueryError> {
    use datafusion::arrow;
    let err = |e: arrow::error::ArrowError| QueryError::Format(e.to_string());
    match format {
        OutputFormat::Table => Ok(arrow::util::pretty::pretty_format_batches(batches)
            .map_err(err)?
            .to_string()),
        OutputFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut buf);
                for b in batches {
                    w.write(b).map_err(err)?;
                }
            }
            String::from_utf8(buf).map_err(|e| QueryError::Format(e.to_string()))
        }
        OutputFormat::Json => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
                for b in batches {
                    w.write(b).map_err(err)?;
                }
                w.finish().map_err(err)?;
            }
            String::from_utf8(buf).map_err(|e| QueryError::Format(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use larmor_ingest::archive::{ArchiveConfig, ArchiveWriter};
    use larmor_ingest::{ChannelId, Frame, Sample, Stream};

    fn archive(dir: &Path) {
        let mut w = ArchiveWriter::new(ArchiveConfig {
            path: dir.into(),
            ..Default::default()
        })
        .unwrap();
        let he = ChannelId::from_name("helium_level_pct").unwrap();
        let o2 = ChannelId::from_name("room_o2_pct").unwrap();
        let t0 = 1_764_288_000_000;
        for (m, stream, c, v, day) in [
            ("A", Stream::Temperature, he, 80.0, 0),
            ("A", Stream::Temperature, he, 79.0, 1),
            ("B", Stream::Temperature, he, 70.0, 0),
            ("B", Stream::Room, o2, 20.9, 1),
        ] {
            let ts = t0 + day * 86_400_000;
            w.append(&Frame {
                machine_id: m.into(),
                stream,
                seq: 1,
                ts_ms: ts,
                samples: vec![Sample {
                    ts_ms: ts,
                    values: vec![(c, v)],
                }],
            });
        }
        w.flush().unwrap();
    }

    #[tokio::test]
    async fn queries_with_partition_columns() {
        let dir = tempfile::tempdir().unwrap();
        archive(dir.path());
        let ctx = open_archive(dir.path()).await.unwrap();
        let b = run(
            &ctx,
            "SELECT machine_id, count(*) AS n, sum(value) AS s FROM readings \
             WHERE stream = 'temperature' GROUP BY machine_id ORDER BY machine_id",
        )
        .await
        .unwrap();
        assert_eq!(
            render(&b, OutputFormat::Csv).unwrap(),
            "machine_id,n,s\nA,2,159.0\nB,1,70.0\n"
        );
        let b = run(
            &ctx,
            "SELECT date, stream, value FROM readings WHERE date = '2025-11-29' ORDER BY value",
        )
        .await
        .unwrap();
        assert_eq!(
            render(&b, OutputFormat::Json).unwrap(),
            "{\"date\":\"2025-11-29\",\"stream\":\"room\",\"value\":20.9}\n{\"date\":\"2025-11-29\",\"stream\":\"temperature\",\"value\":79.0}\n"
        );
        assert!(render(&b, OutputFormat::Table).unwrap().contains("| 2025-11-29 | room"));
        let b = run(
            &ctx,
            "SELECT time_bucket('1 day', ts) AS day, count(*) AS n FROM readings GROUP BY 1 ORDER BY 1",
        )
        .await
        .unwrap();
        assert_eq!(
            render(&b, OutputFormat::Csv).unwrap(),
            "day,n\n2025-11-28T00:00:00Z,2\n2025-11-29T00:00:00Z,2\n"
        );
    }

    #[tokio::test]
    async fn parquet_output_has_plain_strings_and_archive_partitions_lists_what_holds_data() {
        let dir = tempfile::tempdir().unwrap();
        archive(dir.path());
        // A partition with only a file being written does not count.
        let pending = dir.path().join("date=2025-11-30/stream=room");
        std::fs::create_dir_all(&pending).unwrap();
        std::fs::write(pending.join(".part-w1-9-000001.parquet.tmp"), b"").unwrap();
        let ctx = open_archive(dir.path()).await.unwrap();
        let b = run(
            &ctx,
            "SELECT date, stream FROM archive_partitions ORDER BY date, stream",
        )
        .await
        .unwrap();
        assert_eq!(
            render(&b, OutputFormat::Csv).unwrap(),
            "date,stream\n2025-11-28,temperature\n2025-11-29,room\n2025-11-29,temperature\n"
        );

        let df = ctx
            .sql("SELECT machine_id, channel, value FROM readings ORDER BY machine_id, value")
            .await
            .unwrap();
        let schema = Arc::new(df.schema().as_arrow().clone());
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8View);
        let b = df.collect().await.unwrap();
        let out = dir.path().join("out.parquet");
        assert_eq!(write_parquet(&b, schema, &out).unwrap(), 4);
        let file = std::fs::File::open(&out).unwrap();
        let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let back: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(back[0].schema().field(0).data_type(), &DataType::Utf8);
        assert_eq!(back[0].schema().field(1).data_type(), &DataType::Utf8);
        assert_eq!(
            render(&back, OutputFormat::Csv).unwrap(),
            "machine_id,channel,value\nA,helium_level_pct,79.0\nA,helium_level_pct,80.0\nB,room_o2_pct,20.9\nB,helium_level_pct,70.0\n"
        );
    }

    #[tokio::test]
    async fn missing_archive_says_what_to_do() {
        match open_archive(Path::new("/nonexistent/larmor")).await {
            Err(e) => assert!(e.to_string().contains("larmor run"), "{e}"),
            Ok(_) => panic!("a missing archive must be an error"),
        }
    }
}
