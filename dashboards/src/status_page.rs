//! The status page `larmor run` serves at `/`: one server-rendered HTML page,
//! read-only, with its style inline and its trends as inline SVG, so it loads
//! nothing else (its Content-Security-Policy, [`CONTENT_SECURITY_POLICY`],
//! forbids it too). It shows the fleet table (health, latest key values, open
//! episodes, P(failure), a trend of each machine's most telling channel), the
//! open alerts of the alerts store ([`crate::open_alerts`]) and the forecasts
//! (from the `forecasts` table, through the fleet state).

use crate::fleet::{FleetSnapshot, MachineView, Trend, horizon_labels};
use crate::open_alerts::OpenAlerts;
use larmor_alerts::Alert;
use std::fmt::Write;

/// Sent with the page: nothing but its own inline style and `data:` images.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// What the page says besides the fleet.
#[derive(Debug, Clone, Default)]
pub struct PageInfo {
    pub version: String,
    pub generated_ms: i64,
    /// Pipeline totals, e.g. ("readings ingested", "1 234 567").
    pub pipeline: Vec<(String, String)>,
    /// Seconds between automatic reloads (0: none).
    pub refresh_seconds: u32,
    /// Where forecasts come from (the `forecasts` table's directory), said when there are none.
    pub forecasts_table: String,
}

/// Escapes text for HTML content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn probability(p: Option<f64>) -> String {
    p.map_or_else(|| "-".into(), |p| format!("{:.0} %", p * 100.0))
}

fn health_class(h: f64) -> &'static str {
    if h >= 80.0 {
        "ok"
    } else if h >= 50.0 {
        "warn"
    } else {
        "bad"
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#1d2430;background:#fafbfc}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .4em}\
.meta{color:#5b6573;font-size:.9em}table{border-collapse:collapse;font-size:.88em;background:#fff}\
th,td{border:1px solid #d8dde3;padding:.25em .5em;text-align:left;vertical-align:middle}\
th{background:#eef1f4}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.ok{background:#d9f2df}.warn{background:#fbeec7}.bad{background:#f8d3d0}\
.pipeline span{display:inline-block;margin-right:1.4em}.empty{color:#5b6573;font-style:italic}\
svg{display:block}";

/// The whole page.
pub fn render(snapshot: &FleetSnapshot, alerts: &OpenAlerts, info: &PageInfo) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width\"><link rel=\"icon\" href=\"data:,\">");
    if info.refresh_seconds > 0 {
        let _ = write!(h, "<meta http-equiv=\"refresh\" content=\"{}\">", info.refresh_seconds);
    }
    let _ = write!(
        h,
        "<title>Larmor fleet status</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        h,
        "<h1>Larmor fleet status</h1><p class=\"meta\">larmor {} · {} machines · generated {} · read-only{}</p>",
        escape(&info.version),
        snapshot.machines.len(),
        time(info.generated_ms),
        if info.refresh_seconds > 0 {
            format!(" · reloads every {} s", info.refresh_seconds)
        } else {
            String::new()
        }
    );
    if !info.pipeline.is_empty() {
        h.push_str("<p class=\"pipeline\">");
        for (k, v) in &info.pipeline {
            let _ = write!(h, "<span>{}: <b>{}</b></span>", escape(k), escape(v));
        }
        h.push_str("</p>");
    }
    fleet_table(&mut h, snapshot);
    open_alerts(&mut h, alerts);
    forecasts(&mut h, snapshot, info);
    h.push_str("</body></html>\n");
    h
}

fn fleet_table(h: &mut String, s: &FleetSnapshot) {
    h.push_str("<h2 id=\"fleet\">Fleet</h2>");
    if s.machines.is_empty() {
        h.push_str("<p class=\"empty\">No machine is enrolled in the device registry.</p>");
        return;
    }
    h.push_str("<table><thead><tr><th>Machine</th><th>Site</th><th>Vendor / model</th><th>Health</th>");
    if let Some(m) = s.machines.first() {
        for (spec, _) in &m.latest {
            let _ = write!(
                h,
                "<th title=\"{}\">{} ({})</th>",
                escape(spec.description),
                escape(spec.name),
                escape(spec.unit)
            );
        }
    }
    h.push_str("<th>Open</th>");
    for l in horizon_labels() {
        let _ = write!(h, "<th>P(fail {l})</th>");
    }
    h.push_str("<th>Trend</th></tr></thead><tbody>");
    for m in &s.machines {
        machine_row(h, m);
    }
    h.push_str("</tbody></table>");
}

fn machine_row(h: &mut String, m: &MachineView) {
    let d = &m.device;
    let _ = write!(
        h,
        "<tr><td>{}</td><td>{}</td><td>{} {}</td><td class=\"num {}\">{:.0}</td>",
        escape(&d.machine_id),
        escape(&d.site),
        escape(&d.manufacturer),
        escape(&d.model),
        health_class(m.health),
        m.health
    );
    for (spec, v) in &m.latest {
        let out_of_range =
            v.is_some_and(|v| spec.alarm_low.is_some_and(|l| v < l) || spec.alarm_high.is_some_and(|l| v > l));
        let _ = write!(
            h,
            "<td class=\"num{}\">{}</td>",
            if out_of_range { " bad" } else { "" },
            v.map_or_else(|| "-".into(), number)
        );
    }
    let _ = write!(h, "<td class=\"num\">{}</td>", m.open_anomalies);
    for i in 0..horizon_labels().len() {
        let _ = write!(
            h,
            "<td class=\"num\">{}</td>",
            probability(m.forecast.as_ref().and_then(|f| f.probability[i]))
        );
    }
    h.push_str("<td>");
    match &m.trend {
        Some(t) => sparkline(h, t),
        None => h.push_str("<span class=\"empty\">no data yet</span>"),
    }
    h.push_str("</td></tr>");
}

/// A small line chart of a trend, with the channel's alarm limits dashed when
/// they fall within its range.
fn sparkline(h: &mut String, t: &Trend) {
    const W: f64 = 160.0;
    const H: f64 = 34.0;
    let spec = t.channel;
    let last = t.points.last().map(|p| p.1);
    let _ = write!(
        h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"{name} trend\"><title>{name}: {last} {unit} (last {n} points)</title>",
        name = escape(spec.name),
        unit = escape(spec.unit),
        last = last.map_or_else(|| "-".into(), number),
        n = t.points.len()
    );
    if t.points.len() >= 2 {
        let (t0, t1) = (t.points[0].0, t.points[t.points.len() - 1].0);
        let (mut lo, mut hi) = t.points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
        if hi - lo < 1e-9 {
            lo -= 1.0;
            hi += 1.0;
        }
        let x = |ts: i64| 2.0 + (ts - t0) as f64 / ((t1 - t0).max(1) as f64) * (W - 4.0);
        let y = |v: f64| 2.0 + (hi - v) / (hi - lo) * (H - 4.0);
        for limit in [spec.alarm_low, spec.alarm_high].into_iter().flatten() {
            if (lo..=hi).contains(&limit) {
                let _ = write!(
                    h,
                    "<line x1=\"0\" x2=\"{W}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#c0392b\" stroke-dasharray=\"3 2\"/>",
                    y = y(limit)
                );
            }
        }
        h.push_str("<polyline fill=\"none\" stroke=\"#2c6fbb\" stroke-width=\"1.5\" points=\"");
        for (i, &(ts, v)) in t.points.iter().enumerate() {
            let _ = write!(h, "{}{:.1},{:.1}", if i > 0 { " " } else { "" }, x(ts), y(v));
        }
        h.push_str("\"/>");
    }
    let _ = write!(
        h,
        "<text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"end\" fill=\"#5b6573\">{}</text></svg>",
        W - 2.0,
        H - 2.0,
        escape(spec.name)
    );
}

fn open_alerts(h: &mut String, alerts: &OpenAlerts) {
    let (alerts, truncated) = match alerts {
        OpenAlerts::NoStore(path) => {
            let _ = write!(
                h,
                "<h2 id=\"alerts\">Open alerts (0)</h2><p class=\"empty\">No open alerts: there is no alert \
                 store yet ({}); the alerts pipeline makes it when it starts.</p>",
                escape(&path.display().to_string())
            );
            return;
        }
        OpenAlerts::Unreadable(e) => {
            let _ = write!(
                h,
                "<h2 id=\"alerts\">Open alerts (unknown)</h2><p class=\"bad\">The alert store cannot be read: {}</p>",
                escape(e)
            );
            return;
        }
        OpenAlerts::Open { alerts, truncated } => (alerts, *truncated),
    };
    let _ = write!(
        h,
        "<h2 id=\"alerts\">Open alerts ({}{})</h2>",
        alerts.len(),
        if truncated { "+" } else { "" }
    );
    if alerts.is_empty() {
        h.push_str("<p class=\"empty\">No open alerts: nothing is firing or acknowledged.</p>");
        return;
    }
    h.push_str(
        "<p class=\"meta\">Firing and acknowledged alerts of the alert store (<code>larmor alerts list</code> \
         shows the same), firing and critical first.</p>\
         <table><thead><tr><th>Started</th><th>State</th><th>Severity</th><th>Machine</th><th>Site</th>\
         <th>Class</th><th>Suspected mode</th><th>Anomalies</th><th>Summary</th><th>Action</th><th>Id</th>\
         </tr></thead><tbody>",
    );
    for a in alerts {
        alert_row(h, a);
    }
    h.push_str("</tbody></table>");
    if truncated {
        h.push_str("<p class=\"meta\">More are open: <code>larmor alerts list</code> lists them all.</p>");
    }
}

fn alert_row(h: &mut String, a: &Alert) {
    let class = if a.severity == larmor_alerts::Severity::Critical {
        "bad"
    } else {
        "warn"
    };
    let _ = write!(
        h,
        "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td class=\"num\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
        time(a.starts_at_ms),
        a.state.as_str(),
        a.severity.as_str(),
        escape(&a.machine_id),
        escape(&a.site),
        a.class.as_str(),
        a.mode.map_or("-", |m| m.slug()),
        a.anomalies,
        escape(&a.summary),
        escape(&a.action),
        escape(a.id.get(..12).unwrap_or(&a.id))
    );
}

fn forecasts(h: &mut String, s: &FleetSnapshot, info: &PageInfo) {
    h.push_str("<h2 id=\"forecasts\">Forecasts</h2>");
    if let Some(problem) = &s.forecast_problem {
        let _ = write!(h, "<p class=\"bad\">{}</p>", escape(problem));
    }
    let with: Vec<&MachineView> = s.machines.iter().filter(|m| m.forecast.is_some()).collect();
    if with.is_empty() {
        let _ = write!(
            h,
            "<p class=\"empty\">No forecasts: the forecasts table ({}) has no forecast for any machine of \
             the fleet. Forecasts appear here once the forecasting refresh writes them.</p>",
            escape(&info.forecasts_table)
        );
        return;
    }
    if let Some((at, rows)) = s.last_forecast_refresh {
        let _ = write!(
            h,
            "<p class=\"meta\">Last read {} ({rows} rows of the latest runs).</p>",
            time(at)
        );
    }
    h.push_str("<table><thead><tr><th>Machine</th><th>Vendor</th>");
    for l in horizon_labels() {
        let _ = write!(h, "<th>P(fail {l})</th>");
    }
    h.push_str("<th>Likely mode</th><th>Predicted failure</th><th>Model</th><th>Issued</th></tr></thead><tbody>");
    let mut with = with;
    with.sort_by(|a, b| {
        let p = |m: &MachineView| m.forecast.as_ref().and_then(|f| f.max_probability()).unwrap_or(0.0);
        p(b).total_cmp(&p(a))
    });
    for m in with {
        let Some(f) = &m.forecast else { continue };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td>",
            escape(&m.device.machine_id),
            escape(&m.device.manufacturer)
        );
        for p in f.probability {
            let _ = write!(h, "<td class=\"num\">{}</td>", probability(p));
        }
        let _ = write!(
            h,
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.likely_mode),
            f.predicted_failure_at_ms.map_or_else(|| "none predicted".into(), time),
            escape(&f.model),
            time(f.issued_at_ms)
        );
    }
    h.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests;
