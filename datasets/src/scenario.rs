//! The ground truth, decided before any reading is generated: for each machine,
//! which failures happen (precursor onset, failure, repair), when planned
//! maintenance comes (and which slow degradations it averts), and which sensor
//! faults corrupt its data. The events table is written from this plan, and the
//! telemetry is generated from it, so the two always agree.

use crate::fleet::{Fleet, Machine, mix, tag};
use crate::modes::{
    FailureMode, MAINTENANCE_HOURS, MAINTENANCE_INTERVAL_DAYS, SENSOR_FAULTS_PER_YEAR, SensorFaultKind,
};
use crate::signals::{CHANNELS, SIGNALS, is_analogue};
use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS, weekday};
use larmor_ingest::{CATALOG, Stream};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// What to put in a simulated period.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioConfig {
    /// Failures per machine-year, indexed like [`FailureMode::ALL`].
    pub failure_rates: [f64; 7],
    /// Sensor faults per machine-year.
    pub sensor_faults_per_year: f64,
    /// Planned maintenance every 90-130 days (it resets slow degradation).
    pub planned_maintenance: bool,
    /// Events placed on purpose, in addition to the random ones.
    pub forced: Vec<ForcedEvent>,
}

impl Default for ScenarioConfig {
    /// Realistic rates: about 1.5 failures and 3 sensor faults per machine-year.
    fn default() -> Self {
        ScenarioConfig {
            failure_rates: FailureMode::ALL.map(FailureMode::rate_per_year),
            sensor_faults_per_year: SENSOR_FAULTS_PER_YEAR,
            planned_maintenance: true,
            forced: Vec::new(),
        }
    }
}

impl ScenarioConfig {
    /// Nothing goes wrong and nobody visits: every machine stays healthy.
    pub fn healthy() -> Self {
        ScenarioConfig {
            failure_rates: [0.0; 7],
            sensor_faults_per_year: 0.0,
            planned_maintenance: false,
            forced: Vec::new(),
        }
    }
}

/// An event placed on purpose (for the shipped sample and for tests).
#[derive(Debug, Clone, PartialEq)]
pub struct ForcedEvent {
    /// Machine index in the fleet.
    pub machine: usize,
    pub what: Forced,
    /// Days after the start of the period: the failure (downtime start), the
    /// maintenance that averts a degradation, or the start of a sensor fault.
    pub at_days: f64,
    /// Precursor length (failures) or fault duration (sensor faults), days.
    /// `None`: drawn from the mode's range.
    pub length_days: Option<f64>,
    /// Which cause, for modes with several (see [`FailureMode::variant_detail`]).
    pub variant: u8,
    /// Failures: how far the signals go, 0..1. Sensor faults: spike height or
    /// final drift (channel unit), or clock offset (ms). `None`: drawn at random.
    pub magnitude: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Forced {
    Failure(FailureMode),
    /// A degradation that planned maintenance catches before it fails.
    Averted(FailureMode),
    /// A sensor fault on a channel (by catalogue name) or, for dropouts, a stream;
    /// `None` picks one.
    SensorFault(SensorFaultKind, Option<&'static str>),
}

/// One failure episode of one machine.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureEpisode {
    pub mode: FailureMode,
    pub variant: u8,
    /// Per-episode severity in 0..1 (how far the signals go).
    pub magnitude: f64,
    pub onset_ms: i64,
    /// When the machine fails (or would have, when averted).
    pub failure_ms: i64,
    /// Downtime `[failure, repair end)`; `None` when planned maintenance averted it.
    pub downtime: Option<(i64, i64)>,
    /// The planned maintenance that averted it.
    pub averted_by: Option<(i64, i64)>,
}

impl FailureEpisode {
    /// When the episode stops affecting the machine.
    pub fn effect_end_ms(&self) -> i64 {
        match (self.downtime, self.averted_by) {
            (Some((_, end)), _) => end,
            (None, Some((start, _))) => start,
            (None, None) => self.failure_ms,
        }
    }

    /// Precursor severity at `t_ms`, 0..1.
    pub fn severity(&self, t_ms: i64) -> f64 {
        let x = (t_ms - self.onset_ms) as f64 / (self.failure_ms - self.onset_ms).max(1) as f64;
        x.clamp(0.0, 1.0).powf(self.mode.shape())
    }
}

/// A planned maintenance visit: scanning stops, the compressor is off for a
/// while, and slow degradation is reset.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceVisit {
    pub start_ms: i64,
    pub end_ms: i64,
    /// The cold head is replaced (service interval reached, or a degradation was caught).
    pub coldhead_swap: bool,
}

/// A sensor fault: the machine is fine, its data is not.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorFault {
    pub kind: SensorFaultKind,
    /// The channel (catalogue index) for stuck, spikes and drift.
    pub channel: Option<usize>,
    /// The stream, for dropouts.
    pub stream: Option<Stream>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Spike height or final drift (channel unit), or the clock offset (ms).
    pub magnitude: f64,
}

/// Something the service does at an instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    RefillHelium,
    NewColdHead,
}

/// Everything that happens to one machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachinePlan {
    pub failures: Vec<FailureEpisode>,
    pub maintenance: Vec<MaintenanceVisit>,
    pub sensor_faults: Vec<SensorFault>,
    /// Service actions, sorted by time.
    pub actions: Vec<(i64, Action)>,
}

/// A fleet and its plans over `[start_ms, end_ms)`.
pub struct Scenario {
    pub fleet: Fleet,
    pub plans: Vec<MachinePlan>,
    pub seed: u64,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Scenario {
    /// Plans `days` days from UTC day `start_day` for a fleet of `machines`.
    pub fn plan(machines: usize, seed: u64, start_day: i64, days: u32, config: &ScenarioConfig) -> Scenario {
        let fleet = Fleet::generate_at(machines, seed, start_day);
        let start_ms = start_day * DAY_MS;
        let end_ms = start_ms + i64::from(days) * DAY_MS;
        let plans = fleet
            .machines
            .iter()
            .enumerate()
            .map(|(i, m)| plan_machine(m, i, seed, start_ms, end_ms, config))
            .collect();
        Scenario {
            fleet,
            plans,
            seed,
            start_ms,
            end_ms,
        }
    }

    /// A fleet with no failures, maintenance or faults.
    pub fn healthy(fleet: Fleet, seed: u64) -> Scenario {
        let plans = vec![MachinePlan::default(); fleet.machines.len()];
        let start_ms = fleet.reference_day * DAY_MS;
        Scenario {
            fleet,
            plans,
            seed,
            start_ms,
            end_ms: i64::MAX,
        }
    }

    /// The ground-truth events table, sorted by machine then time.
    pub fn events(&self) -> Vec<Event> {
        let mut out = Vec::new();
        for (m, plan) in self.fleet.machines.iter().zip(&self.plans) {
            let mut rows = Vec::new();
            for f in &plan.failures {
                let mut detail = f.mode.variant_detail(f.variant).to_string();
                let (kind, downtime_start, end, planned) = match (f.downtime, f.averted_by) {
                    (Some((s, e)), _) => (EventKind::Failure, Some(s), e, false),
                    (None, Some((_, e))) => {
                        detail = join(&detail, "averted by planned maintenance");
                        (EventKind::Averted, None, e, true)
                    }
                    (None, None) => (EventKind::Averted, None, f.failure_ms, true),
                };
                rows.push(Event {
                    machine_id: m.id.clone(),
                    kind,
                    mode: f.mode.slug(),
                    channel: None,
                    stream: None,
                    onset_ms: f.onset_ms,
                    downtime_start_ms: downtime_start,
                    repair_end_ms: end,
                    planned,
                    detail,
                });
            }
            for v in &plan.maintenance {
                rows.push(Event {
                    machine_id: m.id.clone(),
                    kind: EventKind::Maintenance,
                    mode: "planned_maintenance",
                    channel: None,
                    stream: None,
                    onset_ms: v.start_ms,
                    downtime_start_ms: Some(v.start_ms),
                    repair_end_ms: v.end_ms,
                    planned: true,
                    detail: if v.coldhead_swap {
                        "inspection, cold-head swap".into()
                    } else {
                        "inspection, filters".into()
                    },
                });
            }
            for s in &plan.sensor_faults {
                let detail = match s.kind {
                    SensorFaultKind::Stuck => "value frozen".to_string(),
                    SensorFaultKind::Spikes => format!("spikes up to {:.3} {}", s.magnitude, unit(s.channel)),
                    SensorFaultKind::Drift => format!("drifts to {:+.3} {}", s.magnitude, unit(s.channel)),
                    SensorFaultKind::Dropout => "no data".to_string(),
                    SensorFaultKind::ClockSkew => format!("timestamps {:+.0} s", s.magnitude / 1000.0),
                };
                rows.push(Event {
                    machine_id: m.id.clone(),
                    kind: EventKind::SensorFault,
                    mode: s.kind.slug(),
                    channel: s.channel.map(|c| CATALOG[c].name),
                    stream: s.stream.or(s.channel.map(|c| CATALOG[c].stream)),
                    onset_ms: s.start_ms,
                    downtime_start_ms: None,
                    repair_end_ms: s.end_ms,
                    planned: false,
                    detail,
                });
            }
            rows.sort_by(|a, b| (a.onset_ms, a.kind, a.mode).cmp(&(b.onset_ms, b.kind, b.mode)));
            out.extend(rows);
        }
        out.sort_by(|a, b| a.machine_id.cmp(&b.machine_id));
        out
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}; {b}")
    }
}

fn unit(channel: Option<usize>) -> &'static str {
    channel.map(|c| CATALOG[c].unit).unwrap_or("")
}

/// What kind of row an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// An unplanned failure: precursor, downtime, repair.
    Failure,
    /// A degradation caught by planned maintenance before it failed.
    Averted,
    Maintenance,
    /// A data fault, not a machine fault: never any downtime.
    SensorFault,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Failure => "failure",
            EventKind::Averted => "averted",
            EventKind::Maintenance => "maintenance",
            EventKind::SensorFault => "sensor_fault",
        }
    }
}

/// One row of the ground-truth events table.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub machine_id: String,
    pub kind: EventKind,
    /// Failure mode slug, `planned_maintenance`, or sensor fault kind.
    pub mode: &'static str,
    /// Affected channel (sensor faults on one channel).
    pub channel: Option<&'static str>,
    /// Affected stream (sensor faults; `None` = every stream, e.g. clock skew).
    pub stream: Option<Stream>,
    /// Precursor onset (failures), visit start (maintenance), fault start (sensor faults).
    pub onset_ms: i64,
    /// The failure: when the machine stops scanning. `None` for sensor faults and averted failures.
    pub downtime_start_ms: Option<i64>,
    /// Back in service (failures, maintenance) or fault cleared (sensor faults).
    pub repair_end_ms: i64,
    pub planned: bool,
    pub detail: String,
}

fn poisson(rng: &mut SmallRng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    let limit = (-lambda).exp();
    let (mut k, mut p) = (0, rng.random::<f64>());
    while p > limit && k < 1000 {
        k += 1;
        p *= rng.random::<f64>();
    }
    k
}

/// Log-uniform draw in [lo, hi]: spans of hours to weeks are spread evenly in scale.
fn log_uniform(rng: &mut SmallRng, (lo, hi): (f64, f64)) -> f64 {
    (rng.random_range(lo.ln()..=hi.ln())).exp()
}

/// Hours as milliseconds, rounded to the minute so event times read cleanly.
fn hours_ms(hours: f64) -> i64 {
    (hours * 60.0).round() as i64 * MINUTE_MS
}

fn overlaps(a: (i64, i64), b: (i64, i64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Local 08:00 (plus `extra_ms`) of the UTC day containing `t_ms`, at the machine's site.
fn local_morning(machine: &Machine, day: i64, extra_ms: i64) -> i64 {
    day * DAY_MS + 8 * HOUR_MS - i64::from(machine.site().utc_offset_min) * MINUTE_MS + extra_ms
}

fn plan_machine(
    machine: &Machine,
    index: usize,
    seed: u64,
    start_ms: i64,
    end_ms: i64,
    config: &ScenarioConfig,
) -> MachinePlan {
    let mut rng = SmallRng::seed_from_u64(mix(seed, index as u64, tag::PLAN));
    let years = (end_ms - start_ms) as f64 / (365.0 * DAY_MS as f64);
    let mut plan = MachinePlan::default();
    // Windows other events must keep clear of: forced events stay exactly as asked.
    let mut reserved: Vec<(i64, i64)> = Vec::new();
    let at = |days: f64| start_ms + hours_ms(days * 24.0);

    for f in config.forced.iter().filter(|f| f.machine == index) {
        match f.what {
            Forced::Failure(mode) => {
                let failure_ms = at(f.at_days);
                let lead = f
                    .length_days
                    .map(|d| d * 24.0)
                    .unwrap_or_else(|| log_uniform(&mut rng, mode.lead_hours()));
                let down = rng.random_range(mode.downtime_hours().0..=mode.downtime_hours().1);
                let magnitude = rng.random();
                let ep = FailureEpisode {
                    mode,
                    variant: f.variant % mode.variants(),
                    magnitude: f.magnitude.unwrap_or(magnitude),
                    onset_ms: failure_ms - hours_ms(lead),
                    failure_ms,
                    downtime: Some((failure_ms, failure_ms + hours_ms(down))),
                    averted_by: None,
                };
                reserved.push((ep.onset_ms - DAY_MS, ep.effect_end_ms() + DAY_MS));
                plan.failures.push(ep);
            }
            Forced::Averted(mode) => {
                let visit_start = local_morning(machine, at(f.at_days).div_euclid(DAY_MS), 0);
                let visit_end = visit_start + 6 * HOUR_MS;
                let lead = f
                    .length_days
                    .map(|d| d * 24.0)
                    .unwrap_or_else(|| log_uniform(&mut rng, mode.lead_hours()));
                // Caught two thirds of the way into the precursor.
                let onset_ms = visit_start - hours_ms(lead * 2.0 / 3.0);
                let failure_ms = visit_start + hours_ms(lead / 3.0);
                plan.maintenance.push(MaintenanceVisit {
                    start_ms: visit_start,
                    end_ms: visit_end,
                    coldhead_swap: mode == FailureMode::ColdHeadDegradation,
                });
                let magnitude = rng.random();
                plan.failures.push(FailureEpisode {
                    mode,
                    variant: f.variant % mode.variants(),
                    magnitude: f.magnitude.unwrap_or(magnitude),
                    onset_ms,
                    failure_ms,
                    downtime: None,
                    averted_by: Some((visit_start, visit_end)),
                });
                reserved.push((onset_ms - DAY_MS, visit_end + DAY_MS));
            }
            Forced::SensorFault(kind, target) => {
                let start = at(f.at_days);
                let hours = f
                    .length_days
                    .map(|d| d * 24.0)
                    .unwrap_or_else(|| log_uniform(&mut rng, kind.duration_hours()));
                let mut fault = sensor_fault(&mut rng, kind, start, start + hours_ms(hours));
                if let Some(name) = target {
                    if let Some(c) = CATALOG.iter().position(|c| c.name == name) {
                        fault.channel = Some(c);
                        fault.magnitude = fault_magnitude(&mut rng, kind, Some(c));
                    } else if let Some(s) = Stream::parse(name) {
                        fault.stream = Some(s);
                    }
                }
                if let Some(m) = f.magnitude {
                    fault.magnitude = m;
                }
                reserved.push((fault.start_ms, fault.end_ms));
                plan.sensor_faults.push(fault);
            }
        }
    }

    if config.planned_maintenance {
        let mut hours = machine.coldhead_hours;
        let mut last = machine.last_maintenance_day * DAY_MS;
        let mut day =
            machine.last_maintenance_day + rng.random_range(MAINTENANCE_INTERVAL_DAYS.0..MAINTENANCE_INTERVAL_DAYS.1);
        loop {
            let sunday = day + (6 - i64::from(weekday(day)));
            let start = local_morning(machine, sunday, rng.random_range(0..=2) * HOUR_MS);
            if start >= end_ms {
                break;
            }
            let duration = rng.random_range(MAINTENANCE_HOURS.0..=MAINTENANCE_HOURS.1);
            let end = start + hours_ms(duration);
            hours += (start - last) as f64 / HOUR_MS as f64;
            last = start;
            let clash = reserved.iter().any(|&r| overlaps(r, (start, end)))
                || plan
                    .maintenance
                    .iter()
                    .any(|v| overlaps((v.start_ms, v.end_ms), (start, end)));
            if start >= start_ms && !clash {
                let coldhead_swap = hours >= 14_000.0;
                if coldhead_swap {
                    hours = 0.0;
                }
                plan.maintenance.push(MaintenanceVisit {
                    start_ms: start,
                    end_ms: end,
                    coldhead_swap,
                });
            }
            day = sunday + rng.random_range(MAINTENANCE_INTERVAL_DAYS.0..MAINTENANCE_INTERVAL_DAYS.1);
        }
    }

    for (k, mode) in FailureMode::ALL.into_iter().enumerate() {
        for _ in 0..poisson(&mut rng, config.failure_rates[k] * years) {
            let lead_h = log_uniform(&mut rng, mode.lead_hours());
            let down_h = rng.random_range(mode.downtime_hours().0..=mode.downtime_hours().1);
            let lead = hours_ms(lead_h);
            let earliest = start_ms + lead;
            if earliest >= end_ms {
                continue;
            }
            let failure_ms = rng.random_range(earliest / MINUTE_MS..end_ms / MINUTE_MS) * MINUTE_MS;
            let mut ep = FailureEpisode {
                mode,
                variant: rng.random_range(0..mode.variants()),
                magnitude: rng.random(),
                onset_ms: failure_ms - lead,
                failure_ms,
                downtime: Some((failure_ms, failure_ms + hours_ms(down_h))),
                averted_by: None,
            };
            let window = (ep.onset_ms - DAY_MS, ep.effect_end_ms() + DAY_MS);
            if reserved.iter().any(|&r| overlaps(r, window))
                || plan
                    .failures
                    .iter()
                    .any(|f| overlaps((f.onset_ms - DAY_MS, f.effect_end_ms() + DAY_MS), window))
            {
                continue; // one problem at a time per machine keeps the ground truth unambiguous
            }
            // Planned maintenance during the precursor catches slow wear; any
            // other visit that would clash with the episode is cancelled.
            let catching = plan
                .maintenance
                .iter()
                .position(|v| v.start_ms > ep.onset_ms && v.start_ms < ep.failure_ms);
            match catching {
                Some(i) if mode.averted_by_maintenance() => {
                    let v = &mut plan.maintenance[i];
                    v.coldhead_swap |= mode == FailureMode::ColdHeadDegradation;
                    ep.downtime = None;
                    ep.averted_by = Some((v.start_ms, v.end_ms));
                }
                _ => {}
            }
            let (from, to) = (ep.onset_ms, ep.effect_end_ms());
            plan.maintenance.retain(|v| {
                Some((v.start_ms, v.end_ms)) == ep.averted_by || !overlaps((v.start_ms, v.end_ms), (from, to))
            });
            plan.failures.push(ep);
        }
    }

    for _ in 0..poisson(&mut rng, config.sensor_faults_per_year * years) {
        let kind = SensorFaultKind::ALL[rng.random_range(0..SensorFaultKind::ALL.len())];
        let hours = log_uniform(&mut rng, kind.duration_hours());
        let start = rng.random_range(start_ms / MINUTE_MS..end_ms / MINUTE_MS) * MINUTE_MS;
        let fault = sensor_fault(&mut rng, kind, start, start + hours_ms(hours));
        let window = (fault.start_ms, fault.end_ms);
        let busy = reserved.iter().any(|&r| overlaps(r, window))
            || plan
                .failures
                .iter()
                .any(|f| overlaps((f.onset_ms, f.effect_end_ms()), window))
            || plan
                .maintenance
                .iter()
                .any(|v| overlaps((v.start_ms, v.end_ms), window))
            || plan
                .sensor_faults
                .iter()
                .any(|s| overlaps((s.start_ms, s.end_ms), window));
        if !busy {
            plan.sensor_faults.push(fault);
        }
    }

    plan.failures.sort_by_key(|f| f.onset_ms);
    plan.maintenance.sort_by_key(|v| v.start_ms);
    plan.sensor_faults.sort_by_key(|s| s.start_ms);
    for f in &plan.failures {
        if let Some((_, end)) = f.downtime {
            if f.mode.refills_helium() {
                plan.actions.push((end, Action::RefillHelium));
            }
            if f.mode == FailureMode::ColdHeadDegradation {
                plan.actions.push((end, Action::NewColdHead));
            }
        }
    }
    for v in &plan.maintenance {
        if v.coldhead_swap {
            plan.actions.push((v.end_ms, Action::NewColdHead));
        }
    }
    plan.actions.sort_by_key(|a| a.0);
    plan
}

fn sensor_fault(rng: &mut SmallRng, kind: SensorFaultKind, start_ms: i64, end_ms: i64) -> SensorFault {
    let analogue: Vec<usize> = (0..CHANNELS).filter(|&c| is_analogue(c)).collect();
    let (channel, stream) = match kind {
        SensorFaultKind::Stuck | SensorFaultKind::Spikes | SensorFaultKind::Drift => {
            (Some(analogue[rng.random_range(0..analogue.len())]), None)
        }
        SensorFaultKind::Dropout => (None, Some(Stream::ALL[rng.random_range(0..3)])),
        SensorFaultKind::ClockSkew => (None, None),
    };
    SensorFault {
        kind,
        channel,
        stream,
        start_ms,
        end_ms,
        magnitude: fault_magnitude(rng, kind, channel),
    }
}

fn fault_magnitude(rng: &mut SmallRng, kind: SensorFaultKind, channel: Option<usize>) -> f64 {
    let scale = channel.map(|c| SIGNALS[c].fault_scale).unwrap_or(1.0);
    let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    match kind {
        SensorFaultKind::Spikes => scale * rng.random_range(0.6..1.0),
        SensorFaultKind::Drift => sign * scale * rng.random_range(0.4..1.0),
        // 1 minute to 3 hours, either way.
        SensorFaultKind::ClockSkew => sign * log_uniform(rng, (60.0, 3.0 * 3600.0)).round() * 1000.0,
        SensorFaultKind::Stuck | SensorFaultKind::Dropout => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rates_give_every_mode_in_a_big_fleet_year() {
        let s = Scenario::plan(100, 7, 20_089, 365, &ScenarioConfig::default());
        let events = s.events();
        for m in FailureMode::ALL {
            assert!(events.iter().any(|e| e.mode == m.slug()), "{m:?}");
        }
        for k in SensorFaultKind::ALL {
            assert!(events.iter().any(|e| e.mode == k.slug()), "{k:?}");
        }
        let failures = events.iter().filter(|e| e.kind == EventKind::Failure).count();
        assert!(
            (80..250).contains(&failures),
            "{failures} failures in 100 machine-years"
        );
        assert!(events.iter().any(|e| e.kind == EventKind::Averted));
        for e in &events {
            assert!(e.onset_ms <= e.repair_end_ms, "{e:?}");
            if let Some(d) = e.downtime_start_ms {
                assert!(e.onset_ms <= d && d < e.repair_end_ms, "{e:?}");
            }
            if e.kind == EventKind::SensorFault {
                assert_eq!(e.downtime_start_ms, None);
                assert!(!e.planned);
            }
        }
        assert!(events.windows(2).all(|w| w[0].machine_id <= w[1].machine_id));
    }

    #[test]
    fn one_problem_at_a_time_per_machine() {
        let s = Scenario::plan(50, 11, 20_089, 365, &ScenarioConfig::default());
        for p in &s.plans {
            for w in p.failures.windows(2) {
                assert!(w[0].effect_end_ms() <= w[1].onset_ms);
            }
            for v in &p.maintenance {
                for f in &p.failures {
                    if f.averted_by != Some((v.start_ms, v.end_ms)) {
                        assert!(!overlaps((v.start_ms, v.end_ms), (f.onset_ms, f.effect_end_ms())));
                    }
                }
            }
        }
    }

    #[test]
    fn healthy_config_plans_nothing() {
        let s = Scenario::plan(10, 1, 20_089, 365, &ScenarioConfig::healthy());
        assert!(s.events().is_empty());
    }
}
