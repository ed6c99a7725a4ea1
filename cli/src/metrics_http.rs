//! The Prometheus `/metrics` endpoint.

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// A running endpoint; stops when dropped.
pub struct MetricsServer {
    pub addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

async fn metrics(State(registry): State<Registry>) -> impl IntoResponse {
    let mut buf = Vec::new();
    // Encoding our own well-formed families cannot fail.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    ([(CONTENT_TYPE, TextEncoder::new().format_type().to_string())], buf)
}

/// Binds `listen` and serves `/metrics` on the current tokio runtime.
pub fn serve(listen: SocketAddr, registry: Registry) -> anyhow::Result<MetricsServer> {
    let std_listener = std::net::TcpListener::bind(listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for /metrics on {listen}: {e}; set [metrics] listen to a free address (port 0 picks one)"
        )
    })?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let app = Router::new().route("/metrics", get(metrics)).with_state(registry);
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
