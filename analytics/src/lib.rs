//! Larmor analytics: the streaming anomaly detectors that run inside the
//! pipeline, and SQL (DataFusion) over the Parquet archive.

pub mod detect;
pub mod sql;

pub use detect::{Anomaly, AnomalyKind, DetectConfig, Detector, DetectorSet};
