//! The evaluation report: `REPORT_DIR/report.md` with every method side by side,
//! the targets, the per-mode table, the mode confusion matrix and PNG plots
//! (plotters): PR curve, calibration curve, lead-time histogram and the forecast
//! timeline of a few failing machines. `metrics.json` holds the same figures.

use crate::HOUR_MS;
use crate::error::{ModelError, Result};
use crate::evaluate::{Ci, Evaluation, HorizonScores, MODEL_METHOD};
use crate::events::EventLog;
use crate::features::FeatureMatrix;
use crate::labels::Labels;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// The targets for failures with a visible precursor at the 7-day horizon.
pub const TARGET_RECALL: f64 = 0.9;
pub const TARGET_LEAD_HOURS: f64 = 72.0;
pub const TARGET_FALSE_ALARMS: f64 = 0.5;

/// What the report says about the data it ran on.
pub struct ReportContext<'a> {
    pub archive: &'a Path,
    pub events: &'a Path,
    pub model: &'a Path,
    pub machines: usize,
    pub period: (String, String),
    pub failures: usize,
    /// e.g. "provisional: first-edition simulator".
    pub note: Option<String>,
    pub command: String,
}

fn ci(c: &Ci, digits: usize) -> String {
    if !c.value.is_finite() {
        return "–".into();
    }
    if c.lo.is_finite() && c.hi.is_finite() {
        format!("{:.d$} [{:.d$}, {:.d$}]", c.value, c.lo, c.hi, d = digits)
    } else {
        format!("{:.d$}", c.value, d = digits)
    }
}

fn opt_ci(c: &Option<Ci>, digits: usize) -> String {
    c.as_ref().map_or("–".into(), |c| ci(c, digits))
}

/// Writes the report; returns the path of `report.md`.
pub fn write_report(
    dir: &Path,
    ctx: &ReportContext,
    evaluations: &[(Evaluation, &FeatureMatrix, &Labels)],
    events: &EventLog,
) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let fonts = register_font();
    let mut md = String::new();
    let _ = writeln!(md, "# Downtime forecasting: evaluation\n");
    if let Some(n) = &ctx.note {
        let _ = writeln!(md, "> **{n}**\n");
    }
    let _ = writeln!(
        md,
        "- archive: `{}`\n- events: `{}`\n- model: `{}`\n- machines: {}, from {} to {}, {} failures in the events table\n- command: `{}`\n",
        ctx.archive.display(),
        ctx.events.display(),
        ctx.model.display(),
        ctx.machines,
        ctx.period.0,
        ctx.period.1,
        ctx.failures,
        ctx.command
    );
    let _ = writeln!(
        md,
        "Intervals are 95 % bootstrap intervals over machines. Row metrics (precision, recall, PR-AUC, Brier) \
         count forecast rows; failure recall counts failures with at least one alarm in the horizon before \
         them; lead time is from the first such alarm to the failure; false alarms are alarm episodes \
         (alarms under a day apart merged) with no failure within the horizon, per machine-year. \
         \"Visible precursor\": the events table's `precursor_visible`, else an onset at least 24 h before \
         the failure.\n"
    );
    let mut json = BTreeMap::new();
    for (k, (ev, m, labels)) in evaluations.iter().enumerate() {
        let slug = format!("s{}", k + 1);
        let _ = writeln!(md, "## {}\n\n{}\n", ev.title, ev.description);
        let my: f64 = ev
            .methods
            .first()
            .and_then(|x| x.horizons.first())
            .map_or(0.0, |h| h.machine_years);
        let _ = writeln!(
            md,
            "{} machines, {:.1} machine-years of forecast rows.\n",
            ev.machines, my
        );
        for (h, hours) in labels.horizons_hours.iter().enumerate() {
            let _ = writeln!(md, "### Horizon {}\n", horizon_name(*hours));
            let _ = writeln!(
                md,
                "| method | threshold | precision | recall | PR-AUC | Brier | failure recall (all) | failure recall (visible precursor) | median lead (h) | false alarms / machine-year |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
            for method in &ev.methods {
                let s = &method.horizons[h];
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} (n={:.0}) | {} (n={:.0}) | {} | {} |",
                    method.name,
                    if s.threshold.is_finite() {
                        format!("{:.3}", s.threshold)
                    } else {
                        "per origin".into()
                    },
                    ci(&s.precision, 3),
                    ci(&s.recall, 3),
                    opt_ci(&s.pr_auc, 3),
                    opt_ci(&s.brier, 4),
                    ci(&s.failure_recall, 3),
                    s.failures,
                    ci(&s.visible_failure_recall, 3),
                    s.visible_failures,
                    ci(&s.median_lead_hours, 0),
                    ci(&s.false_alarms_per_machine_year, 2),
                );
            }
            let _ = writeln!(md);
        }
        // Targets at the longest horizon, visible precursors.
        let model = ev.methods.iter().find(|x| x.name == MODEL_METHOD);
        if let Some(s) = model.and_then(|x| x.horizons.last()) {
            let check = |ok: bool| if ok { "met" } else { "**not met**" };
            let _ = writeln!(
                md,
                "### Targets ({} horizon, failures with a visible precursor)\n",
                horizon_name(s.hours)
            );
            let _ = writeln!(md, "| target | measured | |\n|---|---|---|");
            let _ = writeln!(
                md,
                "| recall ≥ {TARGET_RECALL} | {} | {} |",
                ci(&s.visible_failure_recall, 3),
                check(s.visible_failure_recall.value >= TARGET_RECALL)
            );
            let lead = visible_median_lead(s);
            let _ = writeln!(
                md,
                "| median lead ≥ {TARGET_LEAD_HOURS} h | {:.0} h (visible-precursor failures caught) | {} |",
                lead,
                check(lead >= TARGET_LEAD_HOURS)
            );
            let _ = writeln!(
                md,
                "| ≤ {TARGET_FALSE_ALARMS} false alarms / machine-year | {} | {} |\n",
                ci(&s.false_alarms_per_machine_year, 2),
                check(s.false_alarms_per_machine_year.value <= TARGET_FALSE_ALARMS)
            );
            mode_tables(&mut md, ev, s);
        }
        if fonts {
            let plots = [
                ("pr", pr_plot(dir, &slug, ev)),
                ("calibration", calibration_plot(dir, &slug, ev)),
                ("lead", lead_histogram(dir, &slug, ev)),
                ("timeline", timeline_plot(dir, &slug, ev, m, events)),
            ];
            let _ = writeln!(md, "### Plots\n");
            for (what, r) in plots {
                match r {
                    Ok(Some(file)) => {
                        let _ = writeln!(md, "![{what}]({file})\n");
                    }
                    Ok(None) => {
                        let _ = writeln!(md, "({what}: nothing to plot)\n");
                    }
                    Err(e) => {
                        let _ = writeln!(md, "({what} plot failed: {e})\n");
                    }
                }
            }
        } else {
            let _ = writeln!(
                md,
                "(No plots: no TrueType font found. Install `fonts-dejavu-core` or set LARMOR_FONT to a .ttf file.)\n"
            );
        }
        json.insert(ev.title.clone(), &ev.methods);
    }
    let path = dir.join("report.md");
    std::fs::write(&path, md).map_err(|e| ModelError::io(&path, e))?;
    let mj = dir.join("metrics.json");
    let text = serde_json::to_string_pretty(&json).map_err(|e| ModelError::Input(e.to_string()))?;
    std::fs::write(&mj, text).map_err(|e| ModelError::io(&mj, e))?;
    Ok(path)
}

pub fn horizon_name(hours: u32) -> String {
    if hours.is_multiple_of(24) && hours >= 168 {
        format!("{} d", hours / 24)
    } else {
        format!("{hours} h")
    }
}

fn visible_median_lead(s: &HorizonScores) -> f64 {
    let mut leads: Vec<f64> = s
        .outcomes
        .iter()
        .flat_map(|o| &o.failures)
        .filter(|f| f.visible.unwrap_or(true))
        .filter_map(|f| f.lead_hours)
        .collect();
    leads.sort_by(f64::total_cmp);
    if leads.is_empty() {
        return f64::NAN;
    }
    let n = leads.len();
    if n % 2 == 1 {
        leads[n / 2]
    } else {
        (leads[n / 2 - 1] + leads[n / 2]) / 2.0
    }
}

fn mode_tables(md: &mut String, ev: &Evaluation, s: &HorizonScores) {
    // Per mode: failures, caught, recall, median lead.
    let mut per: BTreeMap<&str, (usize, usize, Vec<f64>)> = BTreeMap::new();
    for f in s.outcomes.iter().flat_map(|o| &o.failures) {
        let e = per.entry(f.mode.as_str()).or_default();
        e.0 += 1;
        if let Some(l) = f.lead_hours {
            e.1 += 1;
            e.2.push(l);
        }
    }
    let _ = writeln!(md, "### Per failure mode ({} horizon, model)\n", horizon_name(s.hours));
    let _ = writeln!(
        md,
        "| mode | failures | caught | recall | median lead (h) |\n|---|---|---|---|---|"
    );
    for (mode, (n, c, mut leads)) in per {
        leads.sort_by(f64::total_cmp);
        let med = if leads.is_empty() {
            "–".into()
        } else {
            format!("{:.0}", leads[leads.len() / 2])
        };
        let _ = writeln!(md, "| {mode} | {n} | {c} | {:.2} | {med} |", c as f64 / n.max(1) as f64);
    }
    let _ = writeln!(md);
    // Confusion: true mode against the predicted mode at the first correct alarm.
    let names = &ev.mode_names;
    let mut truth: Vec<String> = s
        .outcomes
        .iter()
        .flat_map(|o| &o.failures)
        .map(|f| f.mode.clone())
        .collect();
    truth.sort();
    truth.dedup();
    let mut cm: BTreeMap<(String, String), usize> = BTreeMap::new();
    for f in s.outcomes.iter().flat_map(|o| &o.failures) {
        if let Some(k) = f.first_alarm {
            let probs = &ev.predictions.mode[k];
            let best = probs
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| names.get(i).cloned().unwrap_or_default())
                .unwrap_or_default();
            *cm.entry((f.mode.clone(), best)).or_default() += 1;
        }
    }
    let _ = writeln!(
        md,
        "### Mode confusion (caught failures: true mode in rows, predicted mode at the first alarm in columns)\n"
    );
    let _ = write!(md, "| true \\ predicted |");
    for n in names {
        let _ = write!(md, " {n} |");
    }
    let _ = writeln!(md, " accuracy |");
    let _ = writeln!(md, "|---|{}---|", "---|".repeat(names.len()));
    for t in &truth {
        let _ = write!(md, "| {t} |");
        let mut total = 0;
        for n in names {
            let c = cm.get(&(t.clone(), n.clone())).copied().unwrap_or(0);
            total += c;
            let _ = write!(md, " {c} |");
        }
        let right = cm.get(&(t.clone(), t.clone())).copied().unwrap_or(0);
        let acc = if total > 0 {
            format!("{:.2}", right as f64 / total as f64)
        } else {
            "–".into()
        };
        let _ = writeln!(md, " {acc} |");
    }
    let _ = writeln!(md);
}

/// Registers a TrueType font for plot text (ab_glyph has no system lookup of its own).
fn register_font() -> bool {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DONE.get_or_init(|| {
        let candidates = std::env::var("LARMOR_FONT")
            .into_iter()
            .map(std::path::PathBuf::from)
            .chain(
                [
                    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/TTF/DejaVuSans.ttf",
                    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
                    "/System/Library/Fonts/Supplemental/Arial.ttf",
                ]
                .into_iter()
                .map(std::path::PathBuf::from),
            );
        for p in candidates {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

type PlotResult = std::result::Result<Option<String>, Box<dyn std::error::Error>>;

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn pr_plot(dir: &Path, slug: &str, ev: &Evaluation) -> PlotResult {
    let file = format!("{slug}-pr.png");
    let path = dir.join(&file);
    let root = BitMapBackend::new(&path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Precision-recall (solid: model, dashed: logistic regression)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart.configure_mesh().x_desc("recall").y_desc("precision").draw()?;
    let mut any = false;
    for (mi, method) in ev
        .methods
        .iter()
        .filter(|m| !m.horizons[0].pr_curve.is_empty())
        .take(2)
        .enumerate()
    {
        for (h, s) in method.horizons.iter().enumerate() {
            let color = COLORS[h % COLORS.len()];
            let pts: Vec<(f64, f64)> = s.pr_curve.clone();
            any |= !pts.is_empty();
            let style = ShapeStyle::from(&color).stroke_width(if mi == 0 { 2 } else { 1 });
            if mi == 0 {
                chart
                    .draw_series(LineSeries::new(pts, style))?
                    .label(format!(
                        "{} (AP {:.2})",
                        horizon_name(s.hours),
                        s.pr_auc.map_or(f64::NAN, |c| c.value)
                    ))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            } else {
                chart.draw_series(DashedLineSeries::new(pts, 6, 4, style))?;
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(any.then_some(file))
}

fn calibration_plot(dir: &Path, slug: &str, ev: &Evaluation) -> PlotResult {
    let file = format!("{slug}-calibration.png");
    let path = dir.join(&file);
    let root = BitMapBackend::new(&path, (700, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Calibration of the model (reliability)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("predicted probability")
        .y_desc("observed frequency")
        .draw()?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4)))?;
    let Some(model) = ev.methods.iter().find(|m| m.name == MODEL_METHOD) else {
        return Ok(None);
    };
    for (h, s) in model.horizons.iter().enumerate() {
        let color = COLORS[h % COLORS.len()];
        let pts: Vec<(f64, f64)> = s.reliability.iter().map(|r| (r.0, r.1)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), ShapeStyle::from(&color).stroke_width(2)))?
            .label(horizon_name(s.hours))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(Some(file))
}

fn lead_histogram(dir: &Path, slug: &str, ev: &Evaluation) -> PlotResult {
    let Some(s) = ev
        .methods
        .iter()
        .find(|m| m.name == MODEL_METHOD)
        .and_then(|m| m.horizons.last())
    else {
        return Ok(None);
    };
    let leads: Vec<f64> = s
        .outcomes
        .iter()
        .flat_map(|o| &o.failures)
        .filter_map(|f| f.lead_hours)
        .collect();
    if leads.is_empty() {
        return Ok(None);
    }
    let file = format!("{slug}-lead.png");
    let bin = 12u32;
    let bins = s.hours.div_ceil(bin);
    let mut counts = vec![0u32; bins as usize];
    for l in &leads {
        counts[((*l as u32) / bin).min(bins - 1) as usize] += 1;
    }
    let path = dir.join(&file);
    let root = BitMapBackend::new(&path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Lead time of the first correct warning ({} horizon, {} failures caught)",
                horizon_name(s.hours),
                leads.len()
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(
            (0u32..bins * bin).step(bin).into_segmented(),
            0u32..counts.iter().copied().max().unwrap_or(1) + 1,
        )?;
    chart
        .configure_mesh()
        .x_desc("hours before the failure")
        .y_desc("failures")
        .draw()?;
    chart.draw_series(
        Histogram::vertical(&chart)
            .style(COLORS[0].filled())
            .margin(2)
            .data(leads.iter().map(|l| (((*l as u32) / bin).min(bins - 1) * bin, 1))),
    )?;
    root.present()?;
    Ok(Some(file))
}

/// P(failure within the longest horizon) over time for up to four machines with
/// failures, with their failures (red) and the alarm threshold (grey).
fn timeline_plot(dir: &Path, slug: &str, ev: &Evaluation, m: &FeatureMatrix, events: &EventLog) -> PlotResult {
    let Some(model) = ev.methods.iter().find(|x| x.name == MODEL_METHOD) else {
        return Ok(None);
    };
    let h = model.horizons.len() - 1;
    let s = &model.horizons[h];
    // Machines with the most failures in the evaluated rows.
    let mut machines: Vec<(usize, u32)> = s
        .outcomes
        .iter()
        .filter(|o| !o.failures.is_empty())
        .map(|o| (o.failures.len(), o.machine))
        .collect();
    machines.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    machines.truncate(4);
    if machines.is_empty() {
        return Ok(None);
    }
    let file = format!("{slug}-timeline.png");
    let path = dir.join(&file);
    let root = BitMapBackend::new(&path, (1100, 250 * machines.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((machines.len(), 1));
    let scores = &ev.predictions.model[h];
    for (panel, &(_, machine)) in panels.iter().zip(&machines) {
        let pts: Vec<(f64, f64)> = ev
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| m.rows[**r].machine == machine)
            .map(|(k, r)| (m.rows[*r].t_ms as f64 / (24 * HOUR_MS) as f64, scores[k]))
            .collect();
        let (Some(x0), Some(x1)) = (pts.first().map(|p| p.0), pts.last().map(|p| p.0)) else {
            continue;
        };
        let name = &m.machines[machine as usize];
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{name}: P(failure within {}) and failures", horizon_name(s.hours)),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|d| {
                chrono::DateTime::from_timestamp((*d * 86_400.0) as i64, 0)
                    .map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_default()
            })
            .y_desc("P")
            .draw()?;
        chart.draw_series(LineSeries::new(pts, ShapeStyle::from(&COLORS[0]).stroke_width(1)))?;
        if s.threshold.is_finite() {
            chart.draw_series(LineSeries::new([(x0, s.threshold), (x1, s.threshold)], BLACK.mix(0.35)))?;
        }
        for f in events.failures.get(name).into_iter().flatten() {
            let d = f.time_ms as f64 / (24 * HOUR_MS) as f64;
            if d >= x0 && d <= x1 {
                chart.draw_series(LineSeries::new(
                    [(d, 0.0), (d, 1.0)],
                    ShapeStyle::from(&RED).stroke_width(2),
                ))?;
            }
        }
    }
    root.present()?;
    Ok(Some(file))
}
