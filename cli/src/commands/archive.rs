//! `larmor archive`: maintenance of the Parquet archive.

use super::common::load_config;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum ArchiveCommand {
    /// Merge each partition's small files into one, sorted, without changing a row.
    /// Safe while ingest runs: the swap is committed atomically in the archive's ledger.
    Compact {
        /// Archive directory. Default: `[archive] path` of the config.
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Only partitions with at least this many files.
        #[arg(long, default_value_t = 2)]
        min_files: usize,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub fn archive(cmd: ArchiveCommand) -> anyhow::Result<()> {
    match cmd {
        ArchiveCommand::Compact {
            archive,
            min_files,
            config,
        } => {
            let cfg = load_config(&config)?;
            let root = archive.unwrap_or(cfg.archive.path);
            if !root.is_dir() {
                anyhow::bail!("no archive at {}; pass --archive DIR", root.display());
            }
            let r = larmor_ingest::compact::compact(&root, min_files, cfg.archive.zstd_level)?;
            println!(
                "compacted {} partitions: {} files → {} ({} rows, unchanged)",
                r.partitions, r.files_before, r.files_after, r.rows
            );
        }
    }
    Ok(())
}
