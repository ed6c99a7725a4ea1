//! The shipped Grafana dashboards and Prometheus rules as data, and what the
//! checks need from them: every panel expression, every variable, every metric
//! name, the provisioned datasource uid. The checks themselves are this
//! module's tests and `cli/tests/observability.rs` (against a real Prometheus).

use serde_json::Value;
use std::collections::BTreeMap;

/// (file name, JSON) of every shipped dashboard, from `grafana/dashboards/`.
pub const DASHBOARDS: [(&str, &str); 4] = [
    (
        "fleet-overview.json",
        include_str!("../grafana/dashboards/fleet-overview.json"),
    ),
    (
        "machine-drilldown.json",
        include_str!("../grafana/dashboards/machine-drilldown.json"),
    ),
    (
        "forecasts-by-vendor.json",
        include_str!("../grafana/dashboards/forecasts-by-vendor.json"),
    ),
    (
        "pipeline-health.json",
        include_str!("../grafana/dashboards/pipeline-health.json"),
    ),
];

/// Grafana's datasource provisioning file.
pub const DATASOURCE_PROVISIONING: &str = include_str!("../grafana/provisioning/datasources/larmor.yaml");
/// The recording and alerting rules.
pub const RULES: &str = include_str!("../prometheus/larmor-rules.yml");
/// Path of the rules file from the workspace root.
pub const RULES_PATH: &str = "dashboards/prometheus/larmor-rules.yml";

/// Variables Grafana defines itself.
pub const BUILTIN_VARIABLES: [&str; 4] = ["__rate_interval", "__interval", "__range", "__name"];

/// One query of one panel.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelQuery {
    pub dashboard: &'static str,
    pub panel_id: i64,
    pub title: String,
    pub expr: String,
}

/// A dashboard variable of type `query`: `label_values(selector, label)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: String,
    pub selector: String,
    pub label: String,
    pub multi_or_all: bool,
    pub all_value: Option<String>,
}

/// Every panel of a dashboard, those inside collapsed rows too.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Every query of every panel of the shipped dashboards.
pub fn queries() -> Result<Vec<PanelQuery>, serde_json::Error> {
    let mut out = Vec::new();
    for (file, json) in DASHBOARDS {
        let d: Value = serde_json::from_str(json)?;
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(PanelQuery {
                    dashboard: file,
                    panel_id: p["id"].as_i64().unwrap_or(-1),
                    title: p["title"].as_str().unwrap_or_default().to_string(),
                    expr: t["expr"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// A dashboard's variables, in order (a variable may use the ones before it).
/// Errors name a variable whose query is not `label_values(selector, label)`.
pub fn variables(dashboard: &Value) -> Result<Vec<Variable>, String> {
    let mut out = Vec::new();
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let query = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap_or_default();
        let inner = query
            .trim()
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .ok_or_else(|| format!("variable {name}: query {query:?} is not label_values(selector, label)"))?;
        let (selector, label) = inner
            .rsplit_once(',')
            .ok_or_else(|| format!("variable {name}: {query:?} names no label"))?;
        out.push(Variable {
            name,
            selector: selector.trim().to_string(),
            label: label.trim().to_string(),
            multi_or_all: v["multi"].as_bool().unwrap_or(false) || v["includeAll"].as_bool().unwrap_or(false),
            all_value: v["allValue"].as_str().map(str::to_string),
        });
    }
    Ok(out)
}

/// The variables (`$name`, `${name}`) an expression uses.
pub fn variables_used(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let braced = rest.starts_with('{');
        let body = if braced { &rest[1..] } else { rest };
        let name: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

/// The expression with every variable replaced by its value (`$name` and `${name}`).
pub fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut names: Vec<&String> = values.keys().collect();
    // Longest first: `$__rate_interval` before a variable called `$__rate`.
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = expr.to_string();
    for n in names {
        out = out.replace(&format!("${{{n}}}"), &values[n]);
        out = out.replace(&format!("${n}"), &values[n]);
    }
    out
}

/// The metric names an expression selects: identifiers that start with
/// `larmor_` or are recording rules (`level:larmor_…:operation`), outside quotes.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' || c == '\'' {
            // Skip a quoted string (label values), escapes included.
            let mut escaped = false;
            for (_, d) in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if d == '\\' {
                    escaped = true;
                } else if d == c {
                    break;
                }
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &expr[i..end];
            if word.starts_with("larmor_") || (word.contains(':') && word.contains("larmor_")) {
                out.push(word.to_string());
            }
        } else if c.is_ascii_digit() {
            // A number or a duration (`5m`): not a name.
            while chars
                .peek()
                .is_some_and(|&(_, d)| d.is_ascii_alphanumeric() || d == '.')
            {
                chars.next();
            }
        }
    }
    out
}

/// The metric family a series name belongs to (`x_bucket` of histogram `x` is `x`).
pub fn family_of(name: &str) -> Option<&'static larmor_metrics::Metric> {
    larmor_metrics::find(name).or_else(|| {
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let m = larmor_metrics::find(name.strip_suffix(suffix)?)?;
            (m.kind == larmor_metrics::Kind::Histogram).then_some(m)
        })
    })
}

/// A rule of the rules file: (`record` or `alert` name, expression).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub recording: bool,
    pub expr: String,
}

/// The rules of [`RULES`]. The file keeps each `expr:` on one line (checked
/// here: a block scalar is an error), so this needs no YAML parser; the
/// count is compared with promtool's in the tests.
pub fn rules() -> Result<Vec<Rule>, String> {
    let mut out: Vec<Rule> = Vec::new();
    let mut pending: Option<(String, bool)> = None;
    for (n, line) in RULES.lines().enumerate() {
        let t = line.trim().trim_start_matches("- ");
        if let Some(name) = t.strip_prefix("record:") {
            pending = Some((name.trim().to_string(), true));
        } else if let Some(name) = t.strip_prefix("alert:") {
            pending = Some((name.trim().to_string(), false));
        } else if let Some(expr) = t.strip_prefix("expr:") {
            let expr = expr.trim();
            if expr.starts_with('|') || expr.starts_with('>') || expr.is_empty() {
                return Err(format!("{RULES_PATH}:{}: keep each expr on one line", n + 1));
            }
            let (name, recording) = pending
                .take()
                .ok_or_else(|| format!("{RULES_PATH}:{}: expr without a record or alert name", n + 1))?;
            out.push(Rule {
                name,
                recording,
                expr: expr.to_string(),
            });
        }
    }
    Ok(out)
}

/// The uid of the provisioned datasource.
pub fn provisioned_datasource_uid() -> Option<&'static str> {
    DATASOURCE_PROVISIONING
        .lines()
        .find_map(|l| l.trim().strip_prefix("uid:"))
        .map(str::trim)
}

#[cfg(test)]
mod tests;
