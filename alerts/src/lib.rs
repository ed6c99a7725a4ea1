//! Larmor alerts: anomalies and forecasts become alerts (machine, severity,
//! suspected failure mode, evidence, recommended action, stable id) through
//! Alertmanager's stages ([`stages`]: group, inhibit, silence, dedup with a
//! persistent notification log and repeat interval; acknowledge and resolve).
//! Each party gets only what its allow-list lets through ([`policy`]), sealed
//! to its own key and signed ([`seal`]), from a durable outbox ([`store`],
//! [`delivery`]) over its own transport ([`transport`], [`tls`]). Scheduling
//! hooks propose maintenance windows ([`schedule`]); digests go out by cron
//! ([`digest`]).

pub mod alert;
pub mod alert_table;
pub mod config;
pub mod delivery;
pub mod digest;
pub mod forecast;
pub mod pipeline;
pub mod policy;
pub mod schedule;
pub mod seal;
pub mod stages;
pub mod store;
pub mod tls;
pub mod transport;

pub use alert::{Alert, AlertClass, AlertState, Evidence, Severity};
pub use config::AlertsConfig;
pub use forecast::{Forecast, TimeToFailure};
pub use pipeline::{AlertMetrics, AlertPipeline, Outcome};
pub use policy::{EventType, Party};
