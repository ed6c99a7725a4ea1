//! Larmor analytics: the streaming anomaly detectors that run inside the
//! pipeline, batch scans of an archive, and SQL (DataFusion) over the archive
//! and the tables beside it (anomalies, alerts, forecasts, machines, events).

pub mod anomaly_table;
pub mod detect;
pub mod fleet_scan;
pub mod queries;
pub mod sql;
pub mod stages;
pub mod tables;

pub use detect::{Anomaly, AnomalyKind, DetectConfig, Detector, DetectorSet};
