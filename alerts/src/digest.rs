//! Scheduled digests, by cron expression: a fleet forecast to each manufacturer
//! (its own machines only: latest forecast per mode, open machine alerts) and a
//! summary to each site admin (its site's alerts of the period). Each digest's
//! last run is kept in the store, so a restart neither repeats nor skips one;
//! the first start only records the time. Entries are built with the same
//! allow-lists as single alerts.

use crate::alert::{AlertClass, AlertState};
use crate::config::DigestConfig;
use crate::forecast::Forecast;
use crate::policy::{self, EventType, Party, Status};
use crate::store::{Store, StoreError};
use larmor_ingest::DeviceRegistry;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestKind {
    VendorForecast,
    SiteSummary,
}

impl DigestKind {
    pub fn name(self) -> &'static str {
        match self {
            DigestKind::VendorForecast => "vendor_forecast",
            DigestKind::SiteSummary => "site_summary",
        }
    }
}

pub struct Digests {
    crons: Vec<(DigestKind, croner::Cron)>,
}

impl Digests {
    pub fn new(c: &DigestConfig) -> Result<Digests, String> {
        let mut crons = Vec::new();
        for (kind, expr) in [
            (DigestKind::VendorForecast, &c.vendor_forecast),
            (DigestKind::SiteSummary, &c.site_summary),
        ] {
            if expr.trim().is_empty() {
                continue;
            }
            let cron = croner::Cron::new(expr)
                .parse()
                .map_err(|e| format!("[alerts.digest] {} = {expr:?}: {e}", kind.name()))?;
            crons.push((kind, cron));
        }
        Ok(Digests { crons })
    }

    /// The digests whose next run after their last one has come, each with its
    /// cron time; the caller records the run with the digest's notices
    /// (`Store::commit_digest`). A first start only records the time.
    pub fn due(&self, store: &Store, now_ms: i64) -> Result<Vec<(DigestKind, i64)>, StoreError> {
        let mut out = Vec::new();
        for (kind, cron) in &self.crons {
            match store.digest_last_run(kind.name())? {
                None => store.set_digest_last_run(kind.name(), now_ms)?,
                Some(last) => {
                    let Some(last_t) = chrono::DateTime::from_timestamp_millis(last) else {
                        continue;
                    };
                    // Runs missed while Larmor was down collapse into the latest one.
                    let mut run = None;
                    // (At most 1000 steps a tick, so a per-second cron after a
                    // long stop cannot stall the alerts thread.)
                    let mut t = last_t;
                    for _ in 0..1000 {
                        match cron.find_next_occurrence(&t, false) {
                            Ok(next) if next.timestamp_millis() <= now_ms => {
                                run = Some(next.timestamp_millis());
                                t = next;
                            }
                            _ => break,
                        }
                    }
                    if let Some(run) = run {
                        out.push((*kind, run));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The digest of `kind` for every party it goes to.
    pub fn build(
        &self,
        kind: DigestKind,
        registry: &DeviceRegistry,
        store: &Store,
        forecasts: &BTreeMap<(String, String), Forecast>,
        now_ms: i64,
    ) -> Vec<(Party, Map<String, Value>)> {
        match kind {
            DigestKind::VendorForecast => vendor_forecasts(registry, store, forecasts, now_ms),
            DigestKind::SiteSummary => site_summaries(registry, store, now_ms),
        }
    }
}

fn header(kind: DigestKind, now_ms: i64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!(EventType::Digest.as_str()));
    m.insert("digest".into(), json!(kind.name()));
    m.insert(
        "at".into(),
        json!(chrono::DateTime::from_timestamp_millis(now_ms).map(|t| t.to_rfc3339())),
    );
    m
}

/// Per vendor: each of its machines with its latest forecasts and open alerts (as the vendor may see them).
pub fn vendor_forecasts(
    registry: &DeviceRegistry,
    store: &Store,
    forecasts: &BTreeMap<(String, String), Forecast>,
    now_ms: i64,
) -> Vec<(Party, Map<String, Value>)> {
    let vendors: BTreeSet<&str> = registry.devices().iter().map(|d| d.manufacturer.as_str()).collect();
    let mut out = Vec::new();
    for v in vendors {
        let party = Party::Vendor(v.to_string());
        let mut machines = Vec::new();
        for d in registry.devices().iter().filter(|d| d.manufacturer == v) {
            let fc: Vec<&Forecast> = forecasts
                .range((d.machine_id.clone(), String::new())..)
                .take_while(|((m, _), _)| *m == d.machine_id)
                .map(|(_, f)| f)
                .collect();
            let alerts: Vec<Map<String, Value>> = store
                .open_alerts_of(&d.machine_id)
                .unwrap_or_default()
                .iter()
                .filter_map(|a| {
                    let ev = if a.class == AlertClass::Forecast {
                        EventType::Forecast
                    } else {
                        EventType::Anomaly
                    };
                    policy::alert_payload(&party, ev, a, Status::Firing, None)
                })
                .collect();
            machines
                .push(json!({"machine_id": d.machine_id, "model": d.model, "forecasts": fc, "open_alerts": alerts}));
        }
        let mut m = header(DigestKind::VendorForecast, now_ms);
        m.insert("machines".into(), Value::Array(machines));
        out.push((party, m));
    }
    out
}

/// Per site: the week's alerts (opened, resolved, still open) with what the admin may see.
pub fn site_summaries(registry: &DeviceRegistry, store: &Store, now_ms: i64) -> Vec<(Party, Map<String, Value>)> {
    let sites: BTreeSet<&str> = registry.devices().iter().map(|d| d.site.as_str()).collect();
    let week = 7 * 86_400_000;
    let all = store.alerts_between(now_ms - week, now_ms).unwrap_or_default();
    let mut out = Vec::new();
    for s in sites {
        let party = Party::SiteAdmin(s.to_string());
        let mine: Vec<_> = all.iter().filter(|a| party.concerns(a)).collect();
        let count = |st: AlertState| mine.iter().filter(|a| a.state == st).count();
        let alerts: Vec<Map<String, Value>> = mine
            .iter()
            .filter_map(|a| {
                let (ev, st) = (
                    if a.class == AlertClass::Forecast {
                        EventType::Forecast
                    } else {
                        EventType::Anomaly
                    },
                    if a.state == AlertState::Resolved {
                        Status::Resolved
                    } else {
                        Status::Firing
                    },
                );
                policy::alert_payload(&party, ev, a, st, None)
            })
            .collect();
        let mut m = header(DigestKind::SiteSummary, now_ms);
        m.insert("site".into(), json!(s));
        m.insert(
            "counts".into(),
            json!({"firing": count(AlertState::Firing), "acknowledged": count(AlertState::Acknowledged), "resolved": count(AlertState::Resolved)}),
        );
        m.insert(
            "outbox".into(),
            json!(
                store
                    .outbox_counts(Some(&party.channel_name()))
                    .ok()
                    .map(|c| json!({"pending": c.pending, "dead": c.dead}))
            ),
        );
        m.insert(
            "alerts".into(),
            Value::Array(alerts.into_iter().map(Value::Object).collect()),
        );
        out.push((party, m));
    }
    out
}
