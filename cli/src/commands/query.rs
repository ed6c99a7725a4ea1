//! `larmor query`: SQL over the archive, one-shot or as an interactive REPL with history.

use super::common::load_config;
use larmor_analytics::queries::{STANDARD, standard};
use larmor_analytics::sql::{self, OutputFormat};
use std::path::PathBuf;

/// Output formats of `larmor query`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    /// Parquet; needs --out.
    Parquet,
}

#[derive(clap::Args)]
pub struct QueryArgs {
    /// The SQL statement. Without it (and without --file or --standard), an interactive
    /// prompt (history in ~/.larmor_history).
    #[arg(conflicts_with_all = ["file", "standard"])]
    sql: Option<String>,
    /// Read the SQL statement from this file (`-` for stdin).
    #[arg(long, conflicts_with = "standard")]
    file: Option<PathBuf>,
    /// Run a standard fleet query (analytics/queries/NAME.sql): daily_stats,
    /// most_anomalous_machines, helium_boiloff, monthly_uptime, vendor_model_comparison.
    /// `--standard list` lists them.
    #[arg(long)]
    standard: Option<String>,
    /// Archive directory. Default: `[archive] path` of the config.
    #[arg(long)]
    archive: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the result to this file instead of the terminal.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
}

async fn run_one(
    ctx: &datafusion::prelude::SessionContext,
    text: &str,
    format: Format,
    out: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let df = ctx.sql(text).await?;
    let schema = df.schema().as_arrow().clone();
    let batches = df.collect().await?;
    if format == Format::Parquet {
        let path = out.ok_or_else(|| anyhow::anyhow!("--format parquet writes a file: add --out FILE.parquet"))?;
        let rows = sql::write_parquet(&batches, std::sync::Arc::new(schema), path)?;
        println!("wrote {rows} rows to {}", path.display());
        return Ok(());
    }
    let f = match format {
        Format::Table => OutputFormat::Table,
        Format::Csv => OutputFormat::Csv,
        _ => OutputFormat::Json,
    };
    let mut text = sql::render(&batches, f)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match out {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            println!(
                "wrote {} rows to {}",
                batches.iter().map(|b| b.num_rows()).sum::<usize>(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

pub async fn query(args: QueryArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.config)?;
    let archive = args.archive.clone().unwrap_or(cfg.archive.path);
    let text = match (&args.sql, &args.file, &args.standard) {
        (Some(text), _, _) => Some(text.clone()),
        (_, Some(f), _) if f.as_os_str() == "-" => Some(std::io::read_to_string(std::io::stdin())?),
        (_, Some(f), _) => Some(
            std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("cannot read the SQL file {}: {e}", f.display()))?,
        ),
        (_, _, Some(name)) => match standard(name) {
            Some(q) => Some(q.sql.to_string()),
            None => {
                let names = STANDARD.iter().map(|q| format!("  {:<26} {}", q.name, q.title()));
                let list = names.collect::<Vec<_>>().join("\n");
                if name == "list" {
                    println!("{list}");
                    return Ok(());
                }
                anyhow::bail!("no standard query named `{name}`; the standard queries are:\n{list}");
            }
        },
        _ => None,
    };
    let ctx = sql::open_archive(&archive).await?;
    match text {
        Some(text) => run_one(&ctx, &text, args.format, args.out.as_ref()).await,
        None => repl(&ctx, args.format).await,
    }
}

/// Statements end with `;`; `\q` quits; history persists across sessions.
async fn repl(ctx: &datafusion::prelude::SessionContext, format: Format) -> anyhow::Result<()> {
    use rustyline::error::ReadlineError;
    let mut rl = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".larmor_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    println!(
        "larmor SQL over the archive: tables readings (ts, machine_id, channel, value, date, stream), archive_partitions, anomalies, alerts, \
         forecasts, machines, events. End statements with `;`, `\\q` quits."
    );
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() { "larmor> " } else { "   ...> " };
        match rl.readline(prompt) {
            Ok(line) => {
                let t = line.trim();
                if buf.is_empty() && (t == "\\q" || t == "quit" || t == "exit") {
                    break;
                }
                buf.push_str(&line);
                buf.push('\n');
                if t.ends_with(';') {
                    let stmt = std::mem::take(&mut buf);
                    let _ = rl.add_history_entry(stmt.trim());
                    let fmt = if format == Format::Parquet {
                        Format::Table
                    } else {
                        format
                    };
                    if let Err(e) = run_one(ctx, &stmt, fmt, None).await {
                        eprintln!("error: {e:#}");
                    }
                }
            }
            Err(ReadlineError::Interrupted) => buf.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    Ok(())
}
