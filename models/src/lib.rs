//! Larmor models: downtime forecasting from archived telemetry.
//!
//! The path from data to a forecast:
//!
//! 1. [`hourly`] scans the Parquet archive with polars (lazy, hive-partitioned) and
//!    reduces every machine's channels to hourly aggregates.
//! 2. [`features`] turns the hourly aggregates, the `anomalies` table and the service
//!    log into one feature row per machine and time, using only data before that time;
//!    [`spec`] names and hashes the columns.
//! 3. [`events`] reads a generic events table and [`labels`] derives the targets:
//!    failure within each horizon, failure mode, time to failure (censored, not dropped).
//! 4. [`model`] trains the artefact: calibrated gradient-boosted classifiers per horizon,
//!    a logistic-regression baseline (linfa), a failure-mode classifier (linfa), a
//!    time-to-failure regressor, and the fixed-threshold baseline.
//! 5. [`evaluate`] scores models and baselines without leakage; [`report`] writes the
//!    Markdown report and its plots; [`live`] produces forecasts for `larmor forecast`
//!    and `larmor run`.

pub mod data;
pub mod error;
pub mod evaluate;
pub mod events;
pub mod features;
pub mod hourly;
pub mod labels;
pub mod linalg;
pub mod live;
pub mod model;
pub mod report;
pub mod spec;

pub use error::ModelError;
pub use events::EventLog;
pub use features::{FeatureMatrix, FeatureOptions};
pub use hourly::HourlyArchive;
pub use live::{Forecast, forecast_as_of};
pub use model::{ForecastModel, TrainOptions};
pub use spec::FeatureSpec;

/// Milliseconds per hour: every window, horizon and lead time is a whole number of hours.
pub const HOUR_MS: i64 = 3_600_000;
