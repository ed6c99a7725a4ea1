//! The SQL catalogue beside `readings`: registers the tables of a data
//! directory (`anomalies`, `alerts`, `forecasts`, `machines`, `events`) from
//! where `larmor_datadir` says they live, with the schemas it defines.
//!
//! A table whose files are missing is still registered, empty, with its schema:
//! a query over a young data directory returns no rows instead of failing.

use crate::sql::QueryError;
use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use larmor_datadir::{DataDir, Table, naming, schema};
use std::sync::Arc;

fn empty(ctx: &SessionContext, name: &str, schema: SchemaRef) -> Result<(), QueryError> {
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
    Ok(())
}

/// A date-partitioned Parquet table (`date=YYYY-MM-DD/*.parquet`), or an empty one.
async fn register_dated(ctx: &SessionContext, data: &DataDir, table: Table) -> Result<(), QueryError> {
    let (name, dir, schema) = (table.name(), data.table(table), table.schema());
    if !naming::has_data_files(&dir, 3) {
        return empty(ctx, name, schema);
    }
    let abs = std::fs::canonicalize(&dir).map_err(|e| QueryError::Format(format!("{}: {e}", dir.display())))?;
    let options = ListingOptions::new(Arc::new(crate::sql::parquet_format(ctx)))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("date".into(), DataType::Utf8)]);
    ctx.register_listing_table(name, format!("{}/", abs.display()), options, Some(schema), None)
        .await?;
    Ok(())
}

/// Registers `anomalies`, `alerts`, `forecasts`, `machines` and `events` from the
/// data directory around `archive` (`readings` is registered by [`crate::sql`]).
pub async fn register_side_tables(ctx: &SessionContext, dir: &DataDir) -> Result<(), QueryError> {
    for table in Table::DATED {
        register_dated(ctx, dir, table).await?;
    }

    let (events, machines) = (Table::Events.name(), Table::Machines.name());
    let events_file = dir.events();
    if events_file.is_file() {
        ctx.register_parquet(events, events_file.to_string_lossy().as_ref(), Default::default())
            .await?;
    } else {
        empty(ctx, events, schema::events())?;
    }

    let csv = dir.machines_csv();
    let registry = dir.registry();
    if csv.is_file() {
        ctx.register_csv(machines, csv.to_string_lossy().as_ref(), CsvReadOptions::new())
            .await?;
    } else if registry.is_file() {
        let r = larmor_ingest::DeviceRegistry::load(&registry)
            .map_err(|e| QueryError::Format(format!("the machines table: {e}")))?;
        ctx.register_table(machines, Arc::new(machines_table(r.devices())?))?;
    } else {
        empty(ctx, machines, schema::machines())?;
    }
    Ok(())
}

fn machines_table(devices: &[larmor_ingest::Device]) -> Result<MemTable, QueryError> {
    let col = |f: fn(&larmor_ingest::Device) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(devices.iter().map(f)))
    };
    let batch = RecordBatch::try_new(
        schema::machines(),
        vec![
            col(|d| &d.machine_id),
            col(|d| &d.site),
            col(|d| &d.manufacturer),
            col(|d| &d.model),
            col(|d| &d.firmware),
            Arc::new(BooleanArray::from_iter(devices.iter().map(|d| Some(d.revoked)))),
        ],
    )
    .map_err(|e| QueryError::Format(e.to_string()))?;
    Ok(MemTable::try_new(schema::machines(), vec![vec![batch]])?)
}
