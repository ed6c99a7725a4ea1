//! Larmor alerts: turns anomalies into alerts and delivers them to each party
//! over its own channel, through explicit stages (dedup, route, deliver, retry).
//! Each party gets only what it may see.

pub mod alert;
pub mod alert_table;
pub mod outbox;
pub mod pipeline;

pub use alert::{Alert, ManufacturerNotice, Severity};
pub use outbox::Party;
pub use pipeline::{AlertMetrics, AlertPipeline, AlertsConfig, Outcome};
