//! Where each table and file of a data directory lives. A data directory is
//! the archive's parent:
//!
//! ```text
//! larmor-data/
//!   archive/            readings   date=YYYY-MM-DD/stream=<stream>/*.parquet
//!     _manifests/                  the archive's commit ledger (see `naming`)
//!   anomalies/          anomalies  date=YYYY-MM-DD/*.parquet
//!   alerts/             alerts     date=YYYY-MM-DD/*.parquet
//!   forecasts/          forecasts  date=YYYY-MM-DD/*.parquet
//!   events.parquet      events     failures, maintenance, sensor faults (+ events.csv)
//!   machines.csv        machines   the fleet inventory, or, without it,
//!   devices.toml                   the device registry
//!   outbox/             the encrypted file channels: <channel>/events.jsonl, sealed CloudEvents
//!   alerts.db           alert state, silences, notification log, delivery outbox (SQLite)
//!   schedules/          booked scans as iCalendar, one file per machine
//!   service_history.csv service visits before a generated period
//!   models/ audit/ keys/  forecasting models, the audit log, key material
//!     keys/larmor-signing.{key,pub}   Larmor's Ed25519 key that signs every notice
//!     keys/recipients/<channel>.{key,pub}  demo recipient key pairs (channels without a configured key;
//!                                          <channel> is naming::channel_path, e.g. admin/st-anne)
//! ```

use crate::schema;
use datafusion::arrow::datatypes::SchemaRef;
use std::path::{Path, PathBuf};

/// The data directory `larmor run` uses when no config says otherwise.
pub const DEFAULT_ROOT: &str = "larmor-data";

/// Every table Larmor keeps, by its SQL name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Readings,
    Anomalies,
    Alerts,
    Forecasts,
    Events,
    Machines,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::Readings,
        Table::Anomalies,
        Table::Alerts,
        Table::Forecasts,
        Table::Events,
        Table::Machines,
    ];
    /// The tables kept as `date=YYYY-MM-DD/*.parquet` directories beside the archive.
    pub const DATED: [Table; 3] = [Table::Anomalies, Table::Alerts, Table::Forecasts];

    /// The table's name in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Table::Readings => "readings",
            Table::Anomalies => "anomalies",
            Table::Alerts => "alerts",
            Table::Forecasts => "forecasts",
            Table::Events => "events",
            Table::Machines => "machines",
        }
    }

    /// The schema its files are written with.
    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Readings => schema::readings(),
            Table::Anomalies => schema::anomalies(),
            Table::Alerts => schema::alerts(),
            Table::Forecasts => schema::forecasts(),
            Table::Events => schema::events(),
            Table::Machines => schema::machines(),
        }
    }
}

/// The paths of one data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
    archive: PathBuf,
}

impl Default for DataDir {
    fn default() -> Self {
        DataDir::new(DEFAULT_ROOT)
    }
}

impl DataDir {
    /// A data directory rooted at `root`, its archive in `root/archive`.
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        let root = root.into();
        DataDir {
            archive: root.join("archive"),
            root,
        }
    }

    /// The data directory around an archive: the archive's parent holds the other
    /// tables, whatever the archive directory itself is called.
    pub fn around(archive: &Path) -> DataDir {
        let root = archive
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        DataDir {
            archive: archive.to_path_buf(),
            root,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The readings archive (hive-partitioned by date and stream).
    pub fn archive(&self) -> &Path {
        &self.archive
    }

    /// The directory or file a table's data is kept in (`Machines`: the CSV).
    pub fn table(&self, table: Table) -> PathBuf {
        match table {
            Table::Readings => self.archive.clone(),
            Table::Anomalies | Table::Alerts | Table::Forecasts => self.root.join(table.name()),
            Table::Events => self.events(),
            Table::Machines => self.machines_csv(),
        }
    }

    pub fn anomalies(&self) -> PathBuf {
        self.table(Table::Anomalies)
    }
    pub fn alerts(&self) -> PathBuf {
        self.table(Table::Alerts)
    }
    pub fn forecasts(&self) -> PathBuf {
        self.table(Table::Forecasts)
    }
    /// `events.parquet`, the typed events table.
    pub fn events(&self) -> PathBuf {
        self.root.join("events.parquet")
    }
    /// `events.csv`, the same rows as text.
    pub fn events_csv(&self) -> PathBuf {
        self.root.join("events.csv")
    }
    pub fn machines_csv(&self) -> PathBuf {
        self.root.join("machines.csv")
    }
    /// The device registry (`machines` falls back to it without `machines.csv`).
    pub fn registry(&self) -> PathBuf {
        self.root.join("devices.toml")
    }
    pub fn service_history_csv(&self) -> PathBuf {
        self.root.join("service_history.csv")
    }
    /// Booked scans, `<machine>.ics` per machine.
    pub fn schedules(&self) -> PathBuf {
        self.root.join("schedules")
    }
    /// The schedule of one machine.
    pub fn schedule(&self, machine_id: &str) -> PathBuf {
        self.schedules().join(format!("{machine_id}.ics"))
    }
    /// The encrypted file channels: one directory per channel, sealed notices.
    pub fn outbox(&self) -> PathBuf {
        self.root.join("outbox")
    }
    /// The alerts' embedded store (SQLite): alert state, silences, the
    /// notification log and the delivery outbox.
    pub fn alert_store(&self) -> PathBuf {
        self.root.join("alerts.db")
    }
    /// Trained forecasting models.
    pub fn models(&self) -> PathBuf {
        self.root.join("models")
    }
    /// The audit log.
    pub fn audit(&self) -> PathBuf {
        self.root.join("audit")
    }
    /// Key material (keyrings, channel keys).
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// Larmor's Ed25519 signing key (hex secret); its public half beside it as `.pub`.
    pub fn signing_key(&self) -> PathBuf {
        self.keys().join("larmor-signing.key")
    }
    /// Recipient key pairs Larmor made itself for channels that have none
    /// configured (the embedded demo): `<channel>.key` and `<channel>.pub`.
    pub fn demo_recipient_keys(&self) -> PathBuf {
        self.keys().join("recipients")
    }
    /// The archive's commit ledger.
    pub fn manifests(&self) -> PathBuf {
        self.archive.join(crate::naming::MANIFEST_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_sit_beside_the_archive_whatever_it_is_called() {
        let d = DataDir::around(Path::new("/data/fleet/telemetry"));
        assert_eq!(d.root(), Path::new("/data/fleet"));
        assert_eq!(d.table(Table::Readings), Path::new("/data/fleet/telemetry"));
        assert_eq!(d.anomalies(), Path::new("/data/fleet/anomalies"));
        assert_eq!(d.events(), Path::new("/data/fleet/events.parquet"));
        assert_eq!(d.manifests(), Path::new("/data/fleet/telemetry/_manifests"));
        assert_eq!(d.schedule("MRI-0001"), Path::new("/data/fleet/schedules/MRI-0001.ics"));
        // A bare archive name: the tables go in the working directory.
        assert_eq!(DataDir::around(Path::new("archive")).root(), Path::new("."));
        assert_eq!(DataDir::new("x"), DataDir::around(Path::new("x/archive")));
    }

    #[test]
    fn every_table_has_its_own_name_and_a_schema() {
        let names: std::collections::HashSet<_> = Table::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), Table::ALL.len());
        for t in Table::ALL {
            assert!(!t.schema().fields().is_empty(), "{t:?}");
        }
    }
}
