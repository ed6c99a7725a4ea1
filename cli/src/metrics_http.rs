//! The HTTP endpoint of `larmor run`: Prometheus' `/metrics`, and the status
//! page at `/` (read-only: GET only, loopback by default).

use axum::Router;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::response::IntoResponse;
use axum::routing::get;
use larmor_dashboards::fleet::FleetState;
use larmor_dashboards::open_alerts;
use larmor_dashboards::status_page::{self, PageInfo};
use larmor_datadir::DataDir;
use larmor_metrics as names;
use prometheus::{Encoder, Registry, TextEncoder};
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// A running endpoint; stops when dropped.
pub struct MetricsServer {
    pub addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

#[derive(Clone)]
struct Served {
    registry: Registry,
    fleet: FleetState,
    /// The data directory: the alerts store and the forecasts table.
    data: DataDir,
}

async fn metrics(State(s): State<Served>) -> impl IntoResponse {
    // New forecasts in the table, episodes older than the open window close, health scores follow.
    let (fleet, data) = (s.fleet.clone(), s.data.clone());
    let _ = tokio::task::spawn_blocking(move || {
        fleet.follow_forecasts_table(&data);
        fleet.refresh();
    })
    .await;
    let mut buf = Vec::new();
    // Encoding our own well-formed families cannot fail.
    let _ = TextEncoder::new().encode(&s.registry.gather(), &mut buf);
    ([(CONTENT_TYPE, TextEncoder::new().format_type().to_string())], buf)
}

async fn status(State(s): State<Served>) -> impl IntoResponse {
    let (fleet, data) = (s.fleet.clone(), s.data.clone());
    let (snapshot, alerts) = tokio::task::spawn_blocking(move || {
        fleet.follow_forecasts_table(&data);
        (fleet.snapshot(), open_alerts::read(&data))
    })
    .await
    .unwrap_or_else(|e| {
        (
            s.fleet.snapshot(),
            open_alerts::OpenAlerts::Unreadable(format!("reading the alert store failed: {e}")),
        )
    });
    let r = &s.registry;
    let total = |name: &str| format_count(counter_total(r, name));
    let info = PageInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        generated_ms: chrono::Utc::now().timestamp_millis(),
        pipeline: vec![
            ("readings ingested".into(), total(names::INGEST_READINGS.name)),
            ("archived".into(), total(names::ARCHIVE_READINGS.name)),
            ("dead letters".into(), total(names::DLQ_MESSAGES.name)),
            ("anomalies".into(), total(names::ANOMALIES.name)),
            ("notices delivered".into(), total(names::ALERTS.name)),
        ],
        refresh_seconds: 15,
        forecasts_table: s.data.forecasts().display().to_string(),
    };
    let html = status_page::render(&snapshot, &alerts, &info);
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, status_page::CONTENT_SECURITY_POLICY),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (CACHE_CONTROL, "no-store"),
        ],
        html,
    )
}

/// 1234567 as "1 234 567".
fn format_count(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Binds `listen` and serves `/metrics` and the status page `/` on the current
/// tokio runtime.
pub fn serve(
    listen: SocketAddr,
    registry: Registry,
    fleet: FleetState,
    data: DataDir,
) -> anyhow::Result<MetricsServer> {
    let std_listener = std::net::TcpListener::bind(listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for /metrics and the status page on {listen}: {e}; set [metrics] listen to a free address (port 0 picks one)"
        )
    })?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(status))
        .with_state(Served { registry, fleet, data });
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    Ok(MetricsServer { addr, _shutdown: tx })
}

/// Sum of every series of a counter family.
pub fn counter_total(registry: &Registry, name: &str) -> f64 {
    counter_by_label(registry, name, "").values().sum()
}

/// A counter family's values keyed by one label's value ("" key if `label` is "").
pub fn counter_by_label(registry: &Registry, name: &str, label: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for fam in registry.gather().iter().filter(|f| f.name() == name) {
        for m in fam.get_metric() {
            let key = m
                .get_label()
                .iter()
                .find(|l| l.name() == label)
                .map(|l| l.value().to_string())
                .unwrap_or_default();
            *out.entry(key).or_insert(0.0) += m.get_counter().get_value();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(super::format_count(0.0), "0");
        assert_eq!(super::format_count(999.0), "999");
        assert_eq!(super::format_count(1234567.0), "1 234 567");
        assert_eq!(super::format_count(100000.0), "100 000");
    }
}
