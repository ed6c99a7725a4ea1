//! The fleet state: per machine of the device registry, its latest key values,
//! a short trend of each, its open anomaly episodes, its latest forecast and its
//! health score. `larmor run`'s topology feeds it (every frame and anomaly the
//! detect stage handles, through [`Observed`]; forecasts from the `forecasts`
//! table through [`FleetState::follow_forecasts_table`], or handed over with
//! [`FleetState::record_forecasts`]); it keeps the per-machine gauges of
//! `larmor-metrics` current and gives the status page a [`FleetSnapshot`].
//!
//! Memory is bounded per machine: six key channels × [`TREND_POINTS`] trend
//! points, at most [`OPEN_PER_MACHINE`] open episodes, one forecast.

pub mod forecast;
pub mod forecast_table;
pub mod health;

use forecast::{ForecastError, ForecastRow, MachineForecast, horizon_label};
use larmor_analytics::{Anomaly, AnomalyKind};
use larmor_ingest::{ChannelId, ChannelSpec, Device, DeviceRegistry, Frame, SharedRegistry};
use larmor_metrics::{FORECAST_HORIZONS, KEY_CHANNELS};
use prometheus::{Gauge, GaugeVec, Histogram, IntGauge, IntGaugeVec, Registry};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// `[status]`: what the status page and the per-machine gauges count as open,
/// and how much history the trends span.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    /// An anomaly episode counts as open (in the status page's open alerts,
    /// `larmor_machine_open_anomalies` and the health score) for this long after it started.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// History shown by each machine's trend on the status page.
    #[serde(with = "humantime_serde")]
    pub trend_window: Duration,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            open_for: Duration::from_secs(3600),
            trend_window: Duration::from_secs(15 * 60),
        }
    }
}

/// Points kept per machine and key channel (one per `trend_window / TREND_POINTS`).
pub const TREND_POINTS: usize = 120;
/// Open episodes kept per machine, the newest.
pub const OPEN_PER_MACHINE: usize = 64;
const KEYS: usize = KEY_CHANNELS.len();

/// A key channel: the catalogue's entry and its gauge.
struct Key {
    id: ChannelId,
    factor: f64,
    gauge: GaugeVec,
}

struct Gauges {
    info: IntGaugeVec,
    health: GaugeVec,
    open: IntGaugeVec,
    last_frame: GaugeVec,
    failure_probability: GaugeVec,
    predicted_failure: GaugeVec,
    refresh: Histogram,
}

/// One open anomaly episode, as the status page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAnomaly {
    pub machine_id: String,
    pub ts_ms: i64,
    pub channel: &'static str,
    pub detector: &'static str,
    pub kind: AnomalyKind,
    pub severity: f64,
    pub value: f64,
    pub explanation: String,
}

struct Machine {
    device: Device,
    latest: [Option<(i64, f64)>; KEYS],
    trend: [VecDeque<(i64, f64)>; KEYS],
    last_frame_ms: Option<i64>,
    open: VecDeque<OpenAnomaly>,
    forecast: Option<MachineForecast>,
    health: f64,
    health_gauge: Gauge,
    open_gauges: [IntGauge; 3],
    key_gauges: [Option<Gauge>; KEYS],
    last_frame_gauge: Option<Gauge>,
}

struct Inner {
    config: StatusConfig,
    devices: SharedRegistry,
    /// The registry the machines were last synced with.
    seen: Option<Arc<DeviceRegistry>>,
    machines: BTreeMap<String, Machine>,
    /// When the last forecast refresh was handed over, and its row count.
    last_refresh: Option<(i64, usize)>,
    /// The forecasts table's files when it was last read, and what reading it said.
    table_seen: Option<forecast_table::Signature>,
    table_problem: Option<String>,
}

/// The shared fleet state (cheap to clone).
#[derive(Clone)]
pub struct FleetState {
    inner: Arc<Mutex<Inner>>,
    keys: Arc<[Key; KEYS]>,
    gauges: Arc<Gauges>,
}

/// What a forecast refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForecastApplied {
    pub machines: usize,
    /// Machines of the rows that are not (or no longer) in the registry: their rows are ignored.
    pub unknown_machines: Vec<String>,
}

/// One machine's line of the status page.
#[derive(Debug, Clone)]
pub struct MachineView {
    pub device: Device,
    pub health: f64,
    /// Latest value per key channel (in the channel's own unit), in [`KEY_CHANNELS`] order.
    pub latest: Vec<(&'static ChannelSpec, Option<f64>)>,
    pub open_anomalies: usize,
    pub last_frame_ms: Option<i64>,
    pub forecast: Option<MachineForecast>,
    pub trend: Option<Trend>,
}

/// The history of one channel of one machine.
#[derive(Debug, Clone)]
pub struct Trend {
    pub channel: &'static ChannelSpec,
    pub points: Vec<(i64, f64)>,
}

/// Everything the status page shows, read at once.
#[derive(Debug, Clone)]
pub struct FleetSnapshot {
    pub machines: Vec<MachineView>,
    /// Every open episode of the fleet, newest first.
    pub open: Vec<OpenAnomaly>,
    pub open_for: Duration,
    pub last_forecast_refresh: Option<(i64, usize)>,
    /// What reading the forecasts table last said, when it was not clean.
    pub forecast_problem: Option<String>,
}

/// Same `larmor_machine_info` labels (a new key or firmware keeps the machine's state).
fn same_labels(a: &Device, b: &Device) -> bool {
    (&a.site, &a.manufacturer, &a.model) == (&b.site, &b.manufacturer, &b.model)
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl FleetState {
    /// Registers the per-machine families in `registry` and starts one series per
    /// machine of `devices` (info, health 100, no open anomalies); the registry is
    /// followed as it is reloaded.
    pub fn register(registry: &Registry, devices: SharedRegistry, config: StatusConfig) -> prometheus::Result<Self> {
        use larmor_metrics as defs;
        let mut keys = Vec::with_capacity(KEYS);
        for (name, metric, factor) in KEY_CHANNELS {
            let id = ChannelId::from_name(name)
                .ok_or_else(|| prometheus::Error::Msg(format!("key channel {name} is not in the catalogue")))?;
            keys.push(Key {
                id,
                factor,
                gauge: metric.gauge_vec(registry)?,
            });
        }
        let keys: [Key; KEYS] = keys
            .try_into()
            .map_err(|_| prometheus::Error::Msg("key channels".into()))?;
        let gauges = Gauges {
            info: defs::MACHINE_INFO.int_gauge_vec(registry)?,
            health: defs::MACHINE_HEALTH_SCORE.gauge_vec(registry)?,
            open: defs::MACHINE_OPEN_ANOMALIES.int_gauge_vec(registry)?,
            last_frame: defs::MACHINE_LAST_FRAME.gauge_vec(registry)?,
            failure_probability: defs::MACHINE_FAILURE_PROBABILITY.gauge_vec(registry)?,
            predicted_failure: defs::MACHINE_PREDICTED_FAILURE.gauge_vec(registry)?,
            refresh: defs::FORECAST_REFRESH_DURATION.histogram(registry, defs::FORECAST_REFRESH_BUCKETS.to_vec())?,
        };
        let state = FleetState {
            inner: Arc::new(Mutex::new(Inner {
                config,
                devices,
                seen: None,
                machines: BTreeMap::new(),
                last_refresh: None,
                table_seen: None,
                table_problem: None,
            })),
            keys: Arc::new(keys),
            gauges: Arc::new(gauges),
        };
        state.sync(&mut lock(&state.inner));
        Ok(state)
    }

    /// Follows the device registry: new machines get their series, removed or
    /// revoked ones lose them.
    fn sync(&self, inner: &mut Inner) {
        let current = inner.devices.current();
        if inner.seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &current)) {
            return;
        }
        let wanted: HashMap<&str, &Device> = current
            .devices()
            .iter()
            .filter(|d| !d.revoked)
            .map(|d| (d.machine_id.as_str(), d))
            .collect();
        let gone: Vec<String> = inner
            .machines
            .iter()
            .filter(|(id, m)| wanted.get(id.as_str()).is_none_or(|d| !same_labels(d, &m.device)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(m) = inner.machines.remove(&id) {
                self.remove_series(&m);
            }
        }
        for (id, d) in wanted {
            if !inner.machines.contains_key(id) {
                inner.machines.insert(id.to_string(), self.new_machine(d.clone()));
            }
        }
        inner.seen = Some(current);
    }

    fn new_machine(&self, device: Device) -> Machine {
        let g = &self.gauges;
        let id = device.machine_id.as_str();
        g.info
            .with_label_values(&[
                id,
                device.site.as_str(),
                device.manufacturer.as_str(),
                device.model.as_str(),
            ])
            .set(1);
        let health_gauge = g.health.with_label_values(&[id]);
        health_gauge.set(100.0);
        let open_gauges = health::KINDS.map(|k| g.open.with_label_values(&[id, health::kind_name(k)]));
        Machine {
            device,
            latest: [None; KEYS],
            trend: Default::default(),
            last_frame_ms: None,
            open: VecDeque::new(),
            forecast: None,
            health: 100.0,
            health_gauge,
            open_gauges,
            key_gauges: Default::default(),
            last_frame_gauge: None,
        }
    }

    fn remove_series(&self, m: &Machine) {
        let g = &self.gauges;
        let d = &m.device;
        let id = d.machine_id.as_str();
        let _ = g
            .info
            .remove_label_values(&[id, d.site.as_str(), d.manufacturer.as_str(), d.model.as_str()]);
        let _ = g.health.remove_label_values(&[id]);
        let _ = g.last_frame.remove_label_values(&[id]);
        let _ = g.predicted_failure.remove_label_values(&[id]);
        for k in health::KINDS {
            let _ = g.open.remove_label_values(&[id, health::kind_name(k)]);
        }
        for k in self.keys.iter() {
            let _ = k.gauge.remove_label_values(&[id]);
        }
        for (h, _) in FORECAST_HORIZONS {
            let _ = g.failure_probability.remove_label_values(&[id, h]);
        }
    }

    /// Takes in a frame's key values (the newest of each channel) and its time.
    pub fn observe_frame(&self, frame: &Frame) {
        let mut inner = lock(&self.inner);
        if !inner.machines.contains_key(&frame.machine_id) {
            // Enrolled by a registry reload since the last sync?
            self.sync(&mut inner);
        }
        let step_ms = (inner.config.trend_window.as_millis() as i64 / TREND_POINTS as i64).max(1);
        let window_ms = inner.config.trend_window.as_millis() as i64;
        let Some(m) = inner.machines.get_mut(&frame.machine_id) else {
            return;
        };
        let mut changed = [false; KEYS];
        let mut newest = m.last_frame_ms;
        for s in &frame.samples {
            newest = Some(newest.map_or(s.ts_ms, |n| n.max(s.ts_ms)));
            for &(ch, v) in &s.values {
                let Some(k) = self.keys.iter().position(|k| k.id == ch) else {
                    continue;
                };
                if !v.is_finite() || m.latest[k].is_some_and(|(t, _)| t > s.ts_ms) {
                    continue;
                }
                m.latest[k] = Some((s.ts_ms, v));
                changed[k] = true;
                let trend = &mut m.trend[k];
                if trend.back().is_none_or(|&(t, _)| s.ts_ms >= t + step_ms) {
                    trend.push_back((s.ts_ms, v));
                }
                while trend.front().is_some_and(|&(t, _)| t < s.ts_ms - window_ms) || trend.len() > TREND_POINTS {
                    trend.pop_front();
                }
            }
        }
        for (k, key) in self.keys.iter().enumerate().filter(|(k, _)| changed[*k]) {
            let value = m.latest[k].map(|(_, v)| v * key.factor).unwrap_or(f64::NAN);
            m.key_gauges[k]
                .get_or_insert_with(|| key.gauge.with_label_values(&[frame.machine_id.as_str()]))
                .set(value);
        }
        if newest != m.last_frame_ms
            && let Some(t) = newest
        {
            m.last_frame_ms = newest;
            m.last_frame_gauge
                .get_or_insert_with(|| self.gauges.last_frame.with_label_values(&[frame.machine_id.as_str()]))
                .set(t as f64 / 1000.0);
        }
        let open_for = inner.config.open_for;
        if let Some(m) = inner.machines.get_mut(&frame.machine_id) {
            m.update(now_ms(), open_for);
        }
    }

    /// Takes in anomaly episodes as the detectors report them.
    pub fn observe_anomalies(&self, anomalies: &[Anomaly]) {
        if anomalies.is_empty() {
            return;
        }
        let mut inner = lock(&self.inner);
        let open_for = inner.config.open_for;
        for a in anomalies {
            let Some(m) = inner.machines.get_mut(&a.machine_id) else {
                continue;
            };
            m.open.push_back(OpenAnomaly {
                machine_id: a.machine_id.clone(),
                ts_ms: a.ts_ms,
                channel: a.channel(),
                detector: a.detector,
                kind: a.kind,
                severity: a.score,
                value: a.value,
                explanation: a.explanation.clone(),
            });
            while m.open.len() > OPEN_PER_MACHINE {
                m.open.pop_front();
            }
            m.update(now_ms(), open_for);
        }
    }

    /// Closes episodes older than the open window, follows the registry and
    /// recomputes every health score: called before each scrape and page.
    pub fn refresh(&self) {
        let mut inner = lock(&self.inner);
        self.sync(&mut inner);
        let open_for = inner.config.open_for;
        let now = now_ms();
        for m in inner.machines.values_mut() {
            m.update(now, open_for);
        }
    }

    /// Replaces the fleet's forecasts with a refresh's rows (every machine's),
    /// and records how long the refresh took. Rows are checked first: a bad
    /// horizon or probability refuses the whole refresh, and the last one stays.
    pub fn record_forecasts(&self, rows: &[ForecastRow], took: Duration) -> Result<ForecastApplied, ForecastError> {
        forecast::validate(rows)?;
        let applied = self.apply_forecasts(rows);
        self.gauges.refresh.observe(took.as_secs_f64());
        Ok(applied)
    }

    /// Follows the `forecasts` table of `data`: when its newest files changed
    /// since the last call, each machine's latest run replaces the fleet's
    /// forecasts (rows the fleet cannot take are skipped, see
    /// [`forecast_table`]). A table that cannot be read keeps the last forecasts
    /// and is reported on the status page. Cheap when nothing changed (a
    /// directory listing): called before each scrape and page.
    pub fn follow_forecasts_table(&self, data: &larmor_datadir::DataDir) {
        let sig = forecast_table::signature(data);
        if let Ok(sig) = &sig
            && lock(&self.inner).table_seen.as_ref() == Some(sig)
        {
            return;
        }
        let read = sig.and_then(|sig| forecast_table::read(&sig).map(|t| (sig, t)));
        match read {
            Ok((sig, t)) => {
                if !sig.is_empty() || lock(&self.inner).last_refresh.is_some() {
                    self.apply_forecasts(&t.rows);
                }
                let mut inner = lock(&self.inner);
                inner.table_seen = Some(sig);
                inner.table_problem = (t.skipped > 0).then(|| {
                    format!(
                        "{} rows of the latest runs skipped: horizon not 24h/72h/7d, or probability outside 0..1",
                        t.skipped
                    )
                });
            }
            Err(e) => {
                let e = e.to_string();
                let mut inner = lock(&self.inner);
                if inner.table_problem.as_deref() != Some(e.as_str()) {
                    tracing::warn!(error = %e, "forecasts table not read; the last forecasts stay");
                }
                inner.table_seen = None;
                inner.table_problem = Some(e);
            }
        }
    }

    /// Replaces the fleet's forecasts with these (valid) rows.
    fn apply_forecasts(&self, rows: &[ForecastRow]) -> ForecastApplied {
        let mut by_machine: BTreeMap<&str, Vec<&ForecastRow>> = BTreeMap::new();
        for r in rows {
            by_machine.entry(r.machine_id.as_str()).or_default().push(r);
        }
        let mut inner = lock(&self.inner);
        self.sync(&mut inner);
        let g = &self.gauges;
        let unknown_machines: Vec<String> = by_machine
            .keys()
            .filter(|id| !inner.machines.contains_key(**id))
            .map(|id| id.to_string())
            .collect();
        let mut machines = 0;
        let open_for = inner.config.open_for;
        let now = now_ms();
        for (id, m) in inner.machines.iter_mut() {
            m.forecast = by_machine
                .get(id.as_str())
                .and_then(|rows| MachineForecast::from_rows(rows.iter().copied()));
            for (i, (h, _)) in FORECAST_HORIZONS.iter().enumerate() {
                match m.forecast.as_ref().and_then(|f| f.probability[i]) {
                    Some(p) => g.failure_probability.with_label_values(&[id.as_str(), *h]).set(p),
                    None => {
                        let _ = g.failure_probability.remove_label_values(&[id.as_str(), *h]);
                    }
                }
            }
            match m.forecast.as_ref().and_then(|f| f.predicted_failure_at_ms) {
                Some(t) => g.predicted_failure.with_label_values(&[id]).set(t as f64 / 1000.0),
                None => {
                    let _ = g.predicted_failure.remove_label_values(&[id]);
                }
            }
            machines += usize::from(m.forecast.is_some());
            m.update(now, open_for);
        }
        inner.last_refresh = Some((now, rows.len()));
        if !unknown_machines.is_empty() {
            tracing::warn!(machines = ?unknown_machines, "forecasts for machines not in the device registry ignored");
        }
        ForecastApplied {
            machines,
            unknown_machines,
        }
    }

    /// The whole fleet as the status page shows it.
    pub fn snapshot(&self) -> FleetSnapshot {
        let mut inner = lock(&self.inner);
        self.sync(&mut inner);
        let now = now_ms();
        let open_for = inner.config.open_for;
        let mut open = Vec::new();
        let mut machines = Vec::with_capacity(inner.machines.len());
        for m in inner.machines.values_mut() {
            m.update(now, open_for);
            open.extend(m.open.iter().cloned());
            let telling = m.most_telling_channel(&self.keys);
            machines.push(MachineView {
                device: m.device.clone(),
                health: m.health,
                latest: self
                    .keys
                    .iter()
                    .zip(&m.latest)
                    .map(|(k, l)| (k.id.spec(), l.map(|(_, v)| v)))
                    .collect(),
                open_anomalies: m.open.len(),
                last_frame_ms: m.last_frame_ms,
                forecast: m.forecast.clone(),
                trend: telling.map(|k| Trend {
                    channel: self.keys[k].id.spec(),
                    points: m.trend[k].iter().copied().collect(),
                }),
            });
        }
        open.sort_by(|a, b| b.ts_ms.cmp(&a.ts_ms).then_with(|| a.machine_id.cmp(&b.machine_id)));
        FleetSnapshot {
            machines,
            open,
            open_for,
            last_forecast_refresh: inner.last_refresh,
            forecast_problem: inner.table_problem.clone(),
        }
    }
}

impl Machine {
    /// Closes old episodes and sets the open-anomaly and health gauges. "Now" is
    /// the later of the wall clock and the machine's newest reading, so a fleet
    /// replayed ahead of the clock still closes its episodes.
    fn update(&mut self, wall_now_ms: i64, open_for: Duration) {
        let now = self.last_frame_ms.map_or(wall_now_ms, |t| t.max(wall_now_ms));
        let oldest = now - open_for.as_millis() as i64;
        self.open.retain(|a| a.ts_ms >= oldest);
        for (i, k) in health::KINDS.iter().enumerate() {
            self.open_gauges[i].set(self.open.iter().filter(|a| a.kind == *k).count() as i64);
        }
        self.health = health::score(
            self.open.iter().map(|a| (a.channel, a.kind, a.severity)),
            self.forecast.as_ref().and_then(|f| f.max_probability()),
        );
        self.health_gauge.set(self.health);
    }

    /// The key channel the status page draws: the one with the costliest open
    /// episode; else the one whose latest value lies nearest an alarm limit, as
    /// a share of the channel's physical range.
    fn most_telling_channel(&self, keys: &[Key; KEYS]) -> Option<usize> {
        let anomalous = self
            .open
            .iter()
            .filter_map(|a| {
                let k = keys.iter().position(|k| k.id.name() == a.channel)?;
                Some((k, health::penalty(a.kind, a.severity)))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((k, _)) = anomalous {
            return Some(k);
        }
        keys.iter()
            .enumerate()
            .filter_map(|(k, key)| {
                let (_, v) = self.latest[k]?;
                let spec = key.id.spec();
                let range = (spec.physical_max - spec.physical_min).max(f64::EPSILON);
                let margin = [spec.alarm_low, spec.alarm_high]
                    .into_iter()
                    .flatten()
                    .map(|limit| (v - limit).abs() / range)
                    .reduce(f64::min)?;
                Some((k, margin))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(k, _)| k)
    }
}

/// A detect transform with the fleet state watching: every frame goes to the
/// fleet state before detection, every anomaly after it, and the time from the
/// frame's newest reading to the end of detection goes to
/// `larmor_detection_latency_seconds`.
pub struct Observed<T> {
    inner: T,
    fleet: FleetState,
    latency: Histogram,
}

impl<T> Observed<T> {
    pub fn new(inner: T, fleet: FleetState, registry: &Registry) -> prometheus::Result<Self> {
        let latency = larmor_metrics::DETECTION_LATENCY
            .histogram(registry, larmor_metrics::DETECTION_LATENCY_BUCKETS.to_vec())?;
        Ok(Observed { inner, fleet, latency })
    }
}

impl<T> larmor_stage::Transform for Observed<T>
where
    T: larmor_stage::Transform<Input = Frame, Output = Anomaly>,
{
    type Input = Frame;
    type Output = Anomaly;

    fn transform(&mut self, frame: Frame, out: &mut Vec<Anomaly>) {
        self.fleet.observe_frame(&frame);
        let newest = frame.samples.iter().map(|s| s.ts_ms).max().unwrap_or(frame.ts_ms);
        let before = out.len();
        self.inner.transform(frame, out);
        self.fleet.observe_anomalies(&out[before..]);
        self.latency.observe(((now_ms() - newest).max(0)) as f64 / 1000.0);
    }
}

/// The label of each exported horizon, for the page's column heads.
pub fn horizon_labels() -> [&'static str; FORECAST_HORIZONS.len()] {
    FORECAST_HORIZONS.map(|(l, d)| {
        debug_assert_eq!(horizon_label(d), Some(l));
        l
    })
}

#[cfg(test)]
mod tests;
