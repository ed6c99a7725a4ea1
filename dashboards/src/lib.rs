//! Larmor's observability beyond the metric list (`larmor-metrics`):
//!
//! - [`fleet`]: the fleet state `larmor run` feeds (latest key values, open
//!   anomalies, forecasts, health score per machine) and the per-machine gauges;
//! - [`open_alerts`]: the open alerts of the alerts store, as the page lists them;
//! - [`status_page`]: the HTML status page served at `/`;
//! - the Grafana dashboards (`grafana/`) and Prometheus rules (`prometheus/`)
//!   shipped with Larmor, and their checks against the exported metrics.

pub mod fleet;
pub mod grafana;
pub mod open_alerts;
pub mod status_page;
