//! Larmor dashboards: the Grafana dashboards shipped with Larmor (today one,
//! the pipeline overview), checked against the metrics the pipeline exports
//! (the list in `larmor-metrics`).

/// The pipeline overview dashboard (Grafana JSON model).
pub const OVERVIEW: &str = include_str!("../grafana/larmor-overview.json");

/// (file name, JSON) of every shipped dashboard.
pub fn dashboards() -> Vec<(&'static str, &'static str)> {
    vec![("larmor-overview.json", OVERVIEW)]
}

/// Metric names used by a dashboard's panel queries.
pub fn metrics_used(dashboard_json: &str) -> Result<Vec<String>, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_str(dashboard_json)?;
    let mut out = Vec::new();
    for panel in v["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            let mut rest = expr;
            while let Some(i) = rest.find("larmor_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                out.push(name);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboards_only_use_exported_metrics() {
        for (name, json) in dashboards() {
            let used = metrics_used(json).unwrap();
            assert!(!used.is_empty(), "{name} queries nothing");
            for m in used {
                assert!(larmor_metrics::find(&m).is_some(), "{name} uses unknown metric {m}");
            }
        }
    }
}
