//! The alerts sink: anomalies (and forecasts) through the stages of
//! [`crate::stages`] (group → inhibit → silence → dedup), then routed to each
//! party's channel with what the policy allows ([`crate::policy`]), sealed
//! ([`crate::seal`]) and committed to the durable outbox in one transaction
//! with the alert's state and the notification log. Delivery runs on its own
//! threads ([`crate::delivery`]). Every notice is also recorded, with the
//! channels it went to, in the `alerts` table. Periodic work (resolving ended
//! episodes, repeats, expired silences, digests, schedule reloads) runs on the
//! sink's flush tick.

use crate::alert::{Alert, AlertClass, AlertState, Severity};
use crate::alert_table::{self, AlertTable};
use crate::config::AlertsConfig;
use crate::delivery::{Delivery, DeliveryMetrics};
use crate::digest::Digests;
use crate::forecast::Forecast;
use crate::policy::{self, EventType, Party, Status};
use crate::schedule::{self, Proposal, Schedules, WindowRules};
use crate::seal::NoticeSigner;
use crate::stages::{Decision, Deduplicator, Grouped, Grouper, Inhibitor, Silencer, told};
use crate::store::{NflogEntry, Silence, Store};
use larmor_analytics::Anomaly;
use larmor_datadir::DataDir;
use larmor_ingest::SharedRegistry;
use prometheus::{IntCounter, IntCounterVec, Registry};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The stage counters (delivery's are in [`DeliveryMetrics`]).
#[derive(Clone)]
pub struct AlertMetrics {
    /// Anomalies folded into an open alert (grouping), per detector.
    pub grouped: IntCounterVec,
    /// Notifications held back, per stage (`inhibit`, `silence`, `dedup`).
    pub muted: IntCounterVec,
    pub delivery: DeliveryMetrics,
}

impl AlertMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = AlertMetrics {
            grouped: larmor_metrics::ALERTS_DEDUPLICATED.int_counter_vec(r)?,
            muted: larmor_metrics::ALERTS_MUTED.int_counter_vec(r)?,
            delivery: DeliveryMetrics::register(r)?,
        };
        for s in ["inhibit", "silence", "dedup"] {
            m.muted.with_label_values(&[s]);
        }
        Ok(m)
    }

    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a fresh registry accepts every metric")
    }

    /// Starts the grouping counter of each detector at zero.
    pub fn init_detectors(&self, detectors: &[&str]) {
        for d in detectors {
            self.grouped.with_label_values(&[d]);
        }
    }
}

/// What happened to one anomaly or forecast.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// The alert it opened or joined.
    pub alert: Option<Alert>,
    /// Folded into an alert already open (no new alert).
    pub grouped: bool,
    /// The channels a notice was queued for.
    pub sent_to: Vec<String>,
    /// Why nothing was sent, when nothing was: `inhibit`, `silence`, `dedup`.
    pub muted: Option<&'static str>,
}

pub struct AlertPipeline {
    config: AlertsConfig,
    registry: SharedRegistry,
    store: Store,
    delivery: Arc<Delivery>,
    grouper: Grouper,
    inhibitor: Inhibitor,
    silencer: Silencer,
    dedup: Deduplicator,
    metrics: AlertMetrics,
    data: DataDir,
    schedules: Schedules,
    schedules_read: Option<Instant>,
    /// The latest forecast per machine and mode (for digests).
    forecasts: BTreeMap<(String, String), Forecast>,
    digests: Digests,
    last_tick: Option<Instant>,
    /// False while the tick re-evaluates open alerts: what stays muted then is not counted again.
    counting: bool,
    /// Latest event time seen: ended episodes are judged against it (or the clock, whichever is later).
    latest_event_ms: i64,
    /// When (wall clock) the latest anomaly came in.
    latest_event_at: Option<Instant>,
    record: Option<(AlertTable, IntCounter)>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl AlertPipeline {
    /// Opens the store in `data`, Larmor's signing key (made on first use) and
    /// the configured channels, and starts their delivery workers.
    pub fn start(
        config: AlertsConfig,
        registry: impl Into<SharedRegistry>,
        data: &DataDir,
        metrics: AlertMetrics,
    ) -> Result<AlertPipeline, String> {
        config.validate()?;
        let store = Store::open(&data.alert_store()).map_err(|e| e.to_string())?;
        let source = format!("urn:larmor:{}", hostname());
        let signer = NoticeSigner::load_or_create(&data.signing_key(), &source).map_err(|e| e.to_string())?;
        let delivery = Delivery::new(
            signer,
            &data.alert_store(),
            config.clone(),
            &data.demo_recipient_keys(),
            metrics.delivery.clone(),
        );
        delivery.start_configured()?;
        // Notices left waiting by the last run (or requeued) go out now, not
        // only when their channel next has something new.
        for name in store.channels_with_pending().map_err(|e| e.to_string())? {
            match Party::parse(&name) {
                Some(party) => {
                    if let Err(e) = delivery.channel(&party) {
                        tracing::error!(channel = %name, error = %e, "cannot resume the channel's waiting notices");
                    }
                }
                None => tracing::error!(channel = %name, "outbox notices for an unknown channel stay undelivered"),
            }
        }
        let digests = Digests::new(&config.digest)?;
        let mut p = AlertPipeline {
            grouper: Grouper { gap: config.group_gap },
            inhibitor: Inhibitor {
                rules: config.inhibit.clone(),
            },
            silencer: Silencer::new(config.group_interval.min(Duration::from_secs(10))),
            dedup: Deduplicator {
                repeat_interval: config.repeat_interval,
            },
            config,
            registry: registry.into(),
            store,
            delivery,
            metrics,
            data: data.clone(),
            schedules: Schedules::default(),
            schedules_read: None,
            forecasts: BTreeMap::new(),
            digests,
            last_tick: None,
            counting: true,
            latest_event_ms: 0,
            latest_event_at: None,
            record: None,
        };
        p.reload_schedules();
        Ok(p)
    }

    /// Records every notice in `data`'s `alerts` table; `errors` counts failed writes.
    pub fn recording_to(mut self, data: &DataDir, errors: IntCounter) -> Self {
        self.record = Some((alert_table::writer(data), errors));
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn delivery(&self) -> &Arc<Delivery> {
        &self.delivery
    }

    /// Opens the channel of every site's admin and every vendor in `registry`
    /// (others open when their first notice comes).
    pub fn open_channels(&self, registry: &larmor_ingest::DeviceRegistry) {
        let mut parties: Vec<Party> = registry
            .devices()
            .iter()
            .flat_map(|d| [Party::SiteAdmin(d.site.clone()), Party::Vendor(d.manufacturer.clone())])
            .collect();
        parties.sort();
        parties.dedup();
        for p in parties {
            if let Err(e) = self.delivery.channel(&p) {
                tracing::error!(error = %e, "channel unavailable; its notices are not sent");
            }
        }
    }

    /// One anomaly through the stages.
    pub fn process(&mut self, anomaly: &Anomaly) -> Outcome {
        self.latest_event_ms = self.latest_event_ms.max(anomaly.ts_ms);
        self.latest_event_at = Some(Instant::now());
        let registry = self.registry.current();
        let Some(device) = registry.get(&anomaly.machine_id) else {
            tracing::warn!(machine = %anomaly.machine_id, "anomaly for a machine missing from the registry");
            return Outcome::default();
        };
        let (alert, grouped, ended) = match self.grouper.group(&self.store, anomaly, device) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "alert store unavailable; the anomaly is in the anomalies table only");
                return Outcome::default();
            }
        };
        if let Some(ended) = ended {
            self.resolve(ended, "episode ended");
        }
        if grouped != Grouped::Opened {
            self.metrics.grouped.with_label_values(&[anomaly.detector]).inc();
        }
        let event = EventType::Anomaly;
        let at = alert.updated_at_ms;
        let mut out = self.notify(alert, event, None, at);
        out.grouped = grouped != Grouped::Opened;
        out
    }

    /// One forecast: an alert (class `forecast`) when its probability within the
    /// horizon is high enough, with a maintenance proposal; a resolved notice
    /// when a forecast alert's probability fell back.
    pub fn forecast(&mut self, f: &Forecast) -> Outcome {
        if let Err(e) = f.validate() {
            tracing::warn!(error = %e, "forecast refused");
            return Outcome::default();
        }
        self.forecasts
            .insert((f.machine_id.clone(), f.mode.slug().to_string()), f.clone());
        let registry = self.registry.current();
        let Some(device) = registry.get(&f.machine_id) else {
            tracing::warn!(machine = %f.machine_id, "forecast for a machine missing from the registry");
            return Outcome::default();
        };
        let policy = self.config.forecast;
        let p = f.probability_within(policy.horizon.as_secs_f64() / 3600.0);
        let key = Alert::group_key(&f.machine_id, AlertClass::Forecast, Some(f.mode));
        let open = self.store.open_alert(&key).ok().flatten();
        if p < policy.min_probability {
            if let Some(a) = open {
                self.resolve(a, "forecast probability fell");
            }
            return Outcome::default();
        }
        let severity = if p >= policy.critical_probability {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let mut alert = open.unwrap_or_else(|| Alert {
            id: crate::alert::stable_id(&[&f.machine_id, "forecast", f.mode.slug(), &f.issued_at_ms.to_string()]),
            machine_id: f.machine_id.clone(),
            site: device.site.clone(),
            vendor: device.manufacturer.clone(),
            model: device.model.clone(),
            class: AlertClass::Forecast,
            severity,
            mode: Some(f.mode),
            state: AlertState::Firing,
            starts_at_ms: f.issued_at_ms,
            updated_at_ms: f.issued_at_ms,
            ends_at_ms: None,
            evidence: Vec::new(),
            anomalies: 0,
            summary: String::new(),
            action: String::new(),
            forecast: None,
        });
        alert.severity = severity;
        alert.updated_at_ms = f.issued_at_ms;
        alert.forecast = Some(f.clone());
        let proposal = self.propose(f, &device.manufacturer);
        alert.summary = format!(
            "{}: {} forecast, P = {:.0} % within {}{}",
            f.machine_id,
            f.mode.describe(),
            p * 100.0,
            humantime::format_duration(policy.horizon),
            match &proposal {
                Some(w) => format!("; service window proposed, {} booked exams to move", w.affected_exams),
                None => "; no service window fits before the earliest predicted failure".into(),
            }
        );
        alert.action = match &proposal {
            Some(_) => "confirm the proposed service window with the manufacturer".into(),
            None => "call the manufacturer's service now: the failure may come before any planned window".into(),
        };
        let at = alert.updated_at_ms;
        self.notify(alert, EventType::Forecast, proposal.as_ref(), at)
    }

    /// The maintenance window for a forecast, from the machine's schedule.
    fn propose(&mut self, f: &Forecast, vendor: &str) -> Option<Proposal> {
        self.reload_schedules_if_due();
        let m = &self.config.maintenance;
        let failure_ms = f
            .earliest_failure_ms()
            .unwrap_or(f.issued_at_ms + self.config.forecast.horizon.as_millis() as i64);
        schedule::choose_window(
            self.schedules.machine(&f.machine_id),
            &WindowRules {
                now_ms: f.issued_at_ms.max(now_ms()),
                failure_ms,
                lead_time: m.lead_time(f.mode),
                visit: m.visit,
                hours: m.hours(vendor),
                step: m.step,
            },
        )
    }

    /// Inhibit → silence → per channel: policy, dedup, seal; then one transaction.
    /// Sends `alert` through inhibit, silence and dedup to every party's
    /// channel; silences are judged at `silence_at_ms`.
    fn notify(&mut self, alert: Alert, event: EventType, proposal: Option<&Proposal>, silence_at_ms: i64) -> Outcome {
        let resolved = alert.state == AlertState::Resolved;
        let mut out = Outcome::default();
        if !resolved {
            let firing = self.store.open_alerts_of(&alert.machine_id).unwrap_or_default();
            if let Some(src) = self.inhibitor.inhibited_by(&alert, &firing) {
                tracing::debug!(alert = %alert.id, by = %src.id, "inhibited");
                return self.muted(alert, "inhibit");
            }
            match self.silencer.silenced_by(&self.store, &alert, silence_at_ms) {
                Ok(Some(s)) => {
                    tracing::debug!(alert = %alert.id, silence = %s.id, "silenced");
                    return self.muted(alert, "silence");
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read silences; notifying"),
            }
        }
        let now = now_ms();
        let told = told(&alert, resolved);
        let status = if resolved { Status::Resolved } else { Status::Firing };
        let mut rows = Vec::new();
        for party in [
            Party::SiteAdmin(alert.site.clone()),
            Party::Vendor(alert.vendor.clone()),
        ] {
            let spec = match self.delivery.channel(&party) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "channel unavailable; its notices are not sent");
                    continue;
                }
            };
            // The notice itself, and for a forecast the vendor's service request:
            // each through the notification log under its own group.
            let mut kinds = Vec::new();
            if spec.hooks.contains(&event) {
                kinds.push((event, alert.key()));
            }
            if event == EventType::Forecast && !resolved && spec.hooks.contains(&EventType::ServiceRequest) {
                kinds.push((EventType::ServiceRequest, format!("{}/service_request", alert.key())));
            }
            for (kind, group) in kinds {
                let Some(payload) = policy::alert_payload(&party, kind, &alert, status, proposal) else {
                    continue;
                };
                let last = self.store.nflog(&spec.name, &group).ok().flatten();
                let keyspace = format!("{}:{}", spec.name, kind.as_str());
                let idem_key = match self.dedup.decide(&keyspace, &alert, &told, last.as_ref(), now) {
                    Decision::Send { idem_key } => idem_key,
                    Decision::Duplicate => continue,
                };
                match self.delivery.seal(&spec, &idem_key, kind, &alert.site, &payload, now) {
                    Ok(row) => {
                        let log = NflogEntry {
                            alert_id: alert.id.clone(),
                            told: told.clone(),
                            sent_at_ms: now,
                        };
                        rows.push((row, Some((group, log))));
                    }
                    Err(e) => tracing::error!(channel = %spec.name, error = %e, "cannot seal a notice"),
                }
            }
        }
        if rows.is_empty() {
            if self.counting {
                self.metrics.muted.with_label_values(&["dedup"]).inc();
            }
            out.muted = Some("dedup");
        }
        // A re-evaluation that sends nothing changes nothing: no write.
        let changed = self.counting || !rows.is_empty();
        match self.store.commit_notices(changed.then_some(&alert), &rows, now) {
            Ok(inserted) => {
                for ((row, _), new) in rows.iter().zip(inserted) {
                    if new {
                        out.sent_to.push(row.channel.clone());
                        self.delivery.wake(&row.channel);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot commit notices to the outbox"),
        }
        out.sent_to.dedup();
        if !out.sent_to.is_empty()
            && let Some((table, _)) = &mut self.record
        {
            table.push(alert.updated_at_ms, (alert.clone(), out.sent_to.join(",")));
        }
        out.alert = Some(alert);
        out
    }

    fn muted(&mut self, alert: Alert, stage: &'static str) -> Outcome {
        if self.counting {
            self.metrics.muted.with_label_values(&[stage]).inc();
        }
        if let Err(e) = self.store.put_alert(&alert) {
            tracing::error!(error = %e, "cannot record the alert");
        }
        Outcome {
            alert: Some(alert),
            muted: Some(stage),
            ..Default::default()
        }
    }

    /// Ends an alert and tells every channel that heard of it.
    pub fn resolve(&mut self, mut alert: Alert, why: &str) -> Outcome {
        tracing::info!(alert = %alert.id, why, "alert resolved");
        alert.state = AlertState::Resolved;
        alert.ends_at_ms = Some(alert.ends_at_ms.unwrap_or(now_ms().max(alert.updated_at_ms)));
        let event = match alert.class {
            AlertClass::Forecast => EventType::Forecast,
            _ => EventType::Anomaly,
        };
        let at = alert.updated_at_ms;
        self.notify(alert, event, None, at)
    }

    /// `larmor alerts resolve`: resolves an alert by id (prefix), sending its resolved notices.
    pub fn resolve_by_id(&mut self, id: &str, by: &str) -> Result<Alert, String> {
        let a = self.find(id)?;
        if a.state == AlertState::Resolved {
            return Err(format!("alert {} is already resolved", a.id));
        }
        Ok(self
            .resolve(a, &format!("resolved by {by}"))
            .alert
            .expect("resolve returns the alert"))
    }

    /// `larmor alerts ack`: acknowledged alerts are not repeated; they still resolve.
    pub fn acknowledge(&mut self, id: &str, by: &str) -> Result<Alert, String> {
        let mut a = self.find(id)?;
        if a.state != AlertState::Firing {
            return Err(format!("alert {} is {}, not firing", a.id, a.state.as_str()));
        }
        a.state = AlertState::Acknowledged;
        self.store.put_alert(&a).map_err(|e| e.to_string())?;
        self.store.set_acked_by(&a.id, by).map_err(|e| e.to_string())?;
        Ok(a)
    }

    fn find(&self, id: &str) -> Result<Alert, String> {
        self.store
            .find(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no alert (or more than one) with id {id:?}: see `larmor alerts list`"))
    }

    /// The periodic work, at most every `group_interval`.
    pub fn tick(&mut self) {
        if self.last_tick.is_some_and(|t| t.elapsed() < self.config.group_interval) {
            return;
        }
        self.last_tick = Some(Instant::now());
        // Episodes end in event time: while anomalies keep coming (a backlog
        // replayed after an outage is hours old) an episode is judged against
        // the latest one seen; only when the input has been quiet for the
        // group gap does the wall clock move time on.
        let quiet = self
            .latest_event_at
            .is_none_or(|t| t.elapsed() >= self.config.group_gap);
        let now = if quiet {
            now_ms().max(self.latest_event_ms)
        } else {
            self.latest_event_ms
        };
        // Episodes that ended: resolved, and told.
        let gap = self.config.group_gap.as_millis() as i64;
        for a in self.store.stale_alerts(now - gap).unwrap_or_default() {
            self.resolve(a, "no anomaly within the group gap");
        }
        // Open alerts again through the stages: silences that ended, lifted
        // inhibitions and due repeats send now; the rest is muted as before.
        self.silencer.invalidate();
        self.counting = false;
        for a in self.store.list(Some(AlertState::Firing), 1000).unwrap_or_default() {
            let event = if a.class == AlertClass::Forecast {
                EventType::Forecast
            } else {
                EventType::Anomaly
            };
            let proposal = a.forecast.clone().and_then(|f| self.propose(&f, &a.vendor.clone()));
            // Silences are judged by the wall clock: one that has ended lets the alert out.
            let at = now_ms().max(a.updated_at_ms);
            self.notify(a, event, proposal.as_ref(), at);
        }
        self.counting = true;
        let retention = self.config.notification_log_retention.as_millis() as i64;
        if let Err(e) = self
            .store
            .prune_nflog(now_ms() - retention)
            .and_then(|_| self.store.prune_silences(now_ms() - retention))
            .and_then(|_| self.store.prune_delivered(now_ms() - retention))
        {
            tracing::warn!(error = %e, "cannot prune the notification log");
        }
        self.reload_schedules_if_due();
        self.run_digests(now_ms());
    }

    fn run_digests(&mut self, now: i64) {
        let registry = self.registry.current();
        let due = match self.digests.due(&self.store, now) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check digests");
                return;
            }
        };
        for (kind, run_ms) in due {
            let mut rows = Vec::new();
            for (party, payload) in self.digests.build(kind, &registry, &self.store, &self.forecasts, now) {
                let Ok(spec) = self.delivery.channel(&party) else {
                    continue;
                };
                if !spec.hooks.contains(&EventType::Digest) {
                    continue;
                }
                // Keyed by the cron time: a digest rebuilt after a crash is the same notice.
                let key = crate::alert::stable_id(&[&spec.name, kind.name(), &run_ms.to_string()]);
                let site = match &party {
                    Party::SiteAdmin(s) => s.clone(),
                    Party::Vendor(_) => String::new(),
                };
                if let Ok(r) = self.delivery.seal(&spec, &key, EventType::Digest, &site, &payload, now) {
                    rows.push((r, None));
                }
            }
            match self.store.commit_digest(kind.name(), run_ms, &rows, now) {
                Ok(_) => rows.iter().for_each(|(r, _)| self.delivery.wake(&r.channel)),
                Err(e) => tracing::error!(error = %e, "cannot queue digests; they are built again at the next tick"),
            }
        }
    }

    fn reload_schedules_if_due(&mut self) {
        if self
            .schedules_read
            .is_none_or(|t| t.elapsed() >= self.config.maintenance.reload_every)
        {
            self.reload_schedules();
        }
    }

    /// Rereads the schedules; each planned maintenance visit silences its machine while it lasts.
    pub fn reload_schedules(&mut self) {
        self.schedules_read = Some(Instant::now());
        match Schedules::load_dir(&self.data.schedules()) {
            Ok(s) => {
                for why in &s.skipped {
                    tracing::warn!(file = %why, "schedule file skipped; fix or remove it");
                }
                self.schedules = s;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the schedules; keeping the ones loaded before");
                return;
            }
        }
        let horizon = now_ms() - self.config.notification_log_retention.as_millis() as i64;
        for (machine, b) in self.schedules.maintenance() {
            if b.end_ms < horizon {
                continue;
            }
            let s = Silence {
                id: format!("maintenance:{machine}:{}", b.uid),
                matchers: [("machine".to_string(), machine.to_string())].into(),
                starts_at_ms: b.start_ms,
                ends_at_ms: b.end_ms,
                created_by: crate::stages::MAINTENANCE_SILENCE_AUTHOR.into(),
                comment: "planned maintenance".into(),
            };
            if let Err(e) = self.store.add_silence(&s) {
                tracing::warn!(error = %e, "cannot record a maintenance silence");
                return;
            }
        }
        self.silencer.invalidate();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The alerts sink: the end of the anomalies' path in `larmor run`.
impl larmor_stage::Sink for AlertPipeline {
    type Input = Anomaly;

    fn consume(&mut self, anomaly: Anomaly) {
        self.process(&anomaly);
    }

    fn flush(&mut self) {
        self.tick();
        if let Some((table, errors)) = &mut self.record
            && !table.flush_or_keep()
        {
            errors.inc();
        }
    }
}

impl Drop for AlertPipeline {
    /// Delivery finishes what is due (at most `drain_timeout`); the rest waits in the outbox.
    fn drop(&mut self) {
        if let Some((table, errors)) = &mut self.record
            && !table.flush_or_keep()
        {
            errors.inc();
        }
        self.delivery.shutdown();
    }
}
