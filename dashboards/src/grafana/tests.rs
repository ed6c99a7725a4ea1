use super::*;
use std::collections::BTreeSet;

fn parsed() -> Vec<(&'static str, Value)> {
    DASHBOARDS
        .iter()
        .map(|(f, j)| (*f, serde_json::from_str(j).unwrap_or_else(|e| panic!("{f}: {e}"))))
        .collect()
}

/// Every datasource reference in a JSON tree: (where, object).
fn datasource_refs<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "datasource" {
                    out.push((path.clone(), x));
                }
                datasource_refs(x, format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                datasource_refs(x, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn dashboards_have_unique_uids_and_unique_panel_ids() {
    let mut uids = BTreeSet::new();
    for (file, d) in parsed() {
        let uid = d["uid"].as_str().unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} twice");
        assert!(d["title"].as_str().is_some_and(|t| t.starts_with("Larmor: ")), "{file}");
        let mut ids = BTreeSet::new();
        let panels = panels(&d);
        assert!(panels.len() >= 5, "{file}: {} panels", panels.len());
        for p in panels {
            let id = p["id"].as_i64().unwrap_or_else(|| panic!("{file}: a panel without id"));
            assert!(ids.insert(id), "{file}: panel id {id} twice");
            let g = &p["gridPos"];
            assert!(
                g["w"]
                    .as_i64()
                    .is_some_and(|w| w > 0 && g["x"].as_i64().unwrap_or(99) + w <= 24),
                "{file}: panel {id} does not fit the 24-column grid: {g}"
            );
        }
    }
    assert_eq!(uids.len(), 4);
}

#[test]
fn every_datasource_reference_is_the_provisioned_one() {
    let uid = provisioned_datasource_uid().expect("the provisioning file names a uid");
    assert_eq!(uid, "larmor-prometheus");
    assert!(DATASOURCE_PROVISIONING.contains("type: prometheus"));
    for (file, d) in parsed() {
        let mut refs = Vec::new();
        datasource_refs(&d, String::new(), &mut refs);
        let queries = panels(&d)
            .iter()
            .map(|p| p["targets"].as_array().map_or(0, |t| t.len()))
            .sum::<usize>();
        assert!(
            refs.len() > queries,
            "{file}: panels and their targets name their datasource"
        );
        for (at, r) in refs {
            assert_eq!(r["uid"], uid, "{file}{at}: datasource {r}");
            assert_eq!(r["type"], "prometheus", "{file}{at}");
        }
    }
}

#[test]
fn variables_resolve_from_exported_labels_and_every_used_one_is_defined() {
    for (file, d) in parsed() {
        let vars = variables(&d).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut defined: BTreeSet<String> = BUILTIN_VARIABLES.iter().map(|s| s.to_string()).collect();
        for v in &vars {
            // A variable's query uses only variables defined before it.
            for used in variables_used(&v.selector) {
                assert!(
                    defined.contains(&used),
                    "{file}: variable {} uses ${used} before it is defined",
                    v.name
                );
            }
            // label_values(metric, label): the metric is exported with that label.
            let names = metric_names(&v.selector);
            assert_eq!(names.len(), 1, "{file}: variable {} selects {names:?}", v.name);
            let m = family_of(&names[0]).unwrap_or_else(|| panic!("{file}: {} is not exported", names[0]));
            assert!(
                m.labels.contains(&v.label.as_str()),
                "{file}: variable {}: {} has no label {}",
                v.name,
                m.name,
                v.label
            );
            if v.multi_or_all {
                assert_eq!(
                    v.all_value.as_deref(),
                    Some(".*"),
                    "{file}: {}: All must match every value",
                    v.name
                );
            }
            defined.insert(v.name.clone());
        }
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or_default();
            let exprs = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| t["expr"].as_str().unwrap_or_default());
            for text in exprs.chain([title]) {
                for used in variables_used(text) {
                    assert!(
                        defined.contains(&used),
                        "{file}: panel {title:?} uses undefined ${used}"
                    );
                }
            }
        }
    }
}

#[test]
fn drill_down_has_machine_and_site_variables_and_forecasts_filter_by_vendor() {
    let d: BTreeMap<_, _> = parsed().into_iter().collect();
    let names = |f: &str| -> Vec<String> { variables(&d[f]).unwrap().into_iter().map(|v| v.name).collect() };
    assert_eq!(names("machine-drilldown.json"), ["site", "machine"]);
    assert_eq!(names("forecasts-by-vendor.json"), ["vendor"]);
    assert_eq!(names("fleet-overview.json"), ["site"]);
    // Every query of the vendor dashboard is restricted to the vendor's machines
    // (or is a vendor-wide count), and none shows site or room data.
    for q in queries()
        .unwrap()
        .iter()
        .filter(|q| q.dashboard == "forecasts-by-vendor.json")
    {
        assert!(q.expr.contains("manufacturer=\"$vendor\""), "{q:?}");
        for private in ["site", "room_", "larmor_machine_health_score"] {
            assert!(!q.expr.contains(private), "the vendor dashboard shows {private}: {q:?}");
        }
    }
}

#[test]
fn every_metric_a_dashboard_or_rule_uses_is_exported_or_recorded() {
    let rules = rules().unwrap();
    let recorded: BTreeSet<&str> = rules.iter().filter(|r| r.recording).map(|r| r.name.as_str()).collect();
    let mut used_families = BTreeSet::new();
    let exprs = queries()
        .unwrap()
        .into_iter()
        .map(|q| (format!("{} panel {} {:?}", q.dashboard, q.panel_id, q.title), q.expr))
        .chain(rules.iter().map(|r| (format!("rule {}", r.name), r.expr.clone())));
    for (at, expr) in exprs {
        assert!(!expr.trim().is_empty(), "{at}: empty expression");
        for name in metric_names(&expr) {
            match family_of(&name) {
                Some(m) => {
                    used_families.insert(m.name);
                }
                None => assert!(
                    recorded.contains(name.as_str()),
                    "{at}: {name} is neither exported nor recorded"
                ),
            }
        }
    }
    // And the dashboards and rules between them show every exported family.
    let unused: Vec<_> = larmor_metrics::ALL
        .iter()
        .map(|m| m.name)
        .filter(|n| !used_families.contains(n))
        .collect();
    assert!(unused.is_empty(), "exported but shown nowhere: {unused:?}");
}

#[test]
fn the_rules_parse_and_the_helium_alarm_matches_the_catalogue() {
    let rules = rules().unwrap();
    assert_eq!(
        rules.len(),
        19,
        "promtool check rules counts 19 (dashboards/tests/promtool.rs)"
    );
    assert_eq!(rules.iter().filter(|r| r.recording).count(), 7);
    for r in &rules {
        if r.recording {
            let parts: Vec<_> = r.name.split(':').collect();
            assert!(
                (2..=3).contains(&parts.len()) && parts[1].starts_with("larmor_"),
                "{}: level:metric[:operations]",
                r.name
            );
        } else {
            assert!(r.name.starts_with("Larmor"), "{}", r.name);
        }
    }
    let helium = larmor_ingest::ChannelId::from_name("helium_level_pct").unwrap().spec();
    let low = helium.alarm_low.unwrap() / 100.0;
    let rule = rules.iter().find(|r| r.name == "LarmorHeliumLevelLow").unwrap();
    assert_eq!(rule.expr, format!("larmor_machine_helium_level_ratio < {low}"));
}

#[test]
fn metric_names_skip_quoted_strings_numbers_and_durations() {
    assert_eq!(
        metric_names(r#"sum by (site) (rate(larmor_ingest_frames_total{job="larmor_x"}[5m])) / 1e3"#),
        ["larmor_ingest_frames_total"]
    );
    assert_eq!(
        metric_names("site:larmor_machine_health_score:min < 50"),
        ["site:larmor_machine_health_score:min"]
    );
    assert_eq!(
        family_of("larmor_detection_latency_seconds_bucket").unwrap().name,
        "larmor_detection_latency_seconds"
    );
    assert!(
        family_of("larmor_archive_files_total_sum").is_none(),
        "only histograms have _sum"
    );
    let values = BTreeMap::from([
        ("site".to_string(), ".*".to_string()),
        ("s".to_string(), "x".to_string()),
    ]);
    assert_eq!(
        substitute(r#"{site=~"$site", a="${s}"}"#, &values),
        r#"{site=~".*", a="x"}"#
    );
    assert_eq!(
        variables_used("a $site b ${machine} $__rate_interval"),
        ["site", "machine", "__rate_interval"]
    );
}
