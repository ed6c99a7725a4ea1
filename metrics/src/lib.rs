//! Every metric Larmor exports on `/metrics`, in one list ([`ALL`]): its name,
//! help text, type and labels. The code that registers a metric does it through
//! its definition here, the dashboards check their queries against this list,
//! and a test compares the list with what a running pipeline exports, so a
//! metric cannot be renamed in one place only.
//!
//! Names follow Prometheus conventions (base units in the name, `_total` on
//! counters). Label values are bounded: streams, reasons, detectors, channels
//! of the catalogue, delivery channels, queues, the topics' partitions, and per
//! machine at most machines x a fixed set (the key channels are one family each,
//! `kind` has three values, `horizon` the three of [`FORECAST_HORIZONS`]). The
//! `machine` label only takes ids of the device registry: frames of any other
//! machine are dead-lettered before they reach the fleet state.

use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// When a family's series exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// From start-up (counters at zero, one series per registered machine, ...).
    FromStart,
    /// Only once there is a value to report: a machine's latest helium level
    /// after its first frame, a forecast once one was made, consumer lag once
    /// librdkafka's first statistics arrive. No series is Prometheus' way of
    /// saying "no value"; the string says what brings the first one.
    OncePopulated(&'static str),
}

/// One metric family's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub presence: Presence,
}

const fn counter(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric {
        name,
        help,
        kind: Kind::Counter,
        labels,
        presence: Presence::FromStart,
    }
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric {
        name,
        help,
        kind: Kind::Gauge,
        labels,
        presence: Presence::FromStart,
    }
}

const fn histogram(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        help,
        kind: Kind::Histogram,
        labels: &[],
        presence: Presence::FromStart,
    }
}

impl Metric {
    /// The same definition, its series present only once populated (see [`Presence`]).
    const fn once_populated(self, by: &'static str) -> Metric {
        Metric {
            presence: Presence::OncePopulated(by),
            ..self
        }
    }
}

// --- ingest -------------------------------------------------------------------
pub const INGEST_FRAMES: Metric = counter("larmor_ingest_frames_total", &["stream"], "Frames accepted from Kafka");
pub const INGEST_READINGS: Metric = counter(
    "larmor_ingest_readings_total",
    &["stream"],
    "Readings accepted from Kafka",
);
pub const INGEST_DUPLICATES_SKIPPED: Metric = counter(
    "larmor_ingest_duplicates_skipped_total",
    &[],
    "Messages skipped because the archive already holds them (redelivery after a crash or rebalance)",
);
pub const ARCHIVE_READINGS: Metric = counter(
    "larmor_archive_readings_total",
    &["stream"],
    "Readings durably written to the Parquet archive",
);
pub const ARCHIVE_FILES: Metric = counter(
    "larmor_archive_files_total",
    &[],
    "Parquet files written to the archive",
);
pub const ARCHIVE_BYTES: Metric = counter(
    "larmor_archive_bytes_total",
    &[],
    "Bytes of the Parquet files written to the archive",
);
pub const DLQ_MESSAGES: Metric = counter(
    "larmor_dlq_messages_total",
    &["reason"],
    "Messages sent to the dead-letter topic, by reason",
);
pub const KAFKA_COMMITS: Metric = counter(
    "larmor_kafka_commits_total",
    &[],
    "Offset commits after durable archive writes",
);
pub const KAFKA_CONSUMER_ERRORS: Metric = counter(
    "larmor_kafka_consumer_errors_total",
    &[],
    "Errors reported by the Kafka consumer",
);
pub const KAFKA_CONSUMER_LAG: Metric = gauge(
    "larmor_kafka_consumer_lag_messages",
    &["topic", "partition"],
    "Messages between this instance's position and the partition's high watermark, per assigned partition (from librdkafka's statistics, every statistics.interval.ms)",
)
.once_populated("librdkafka's first statistics after a partition is assigned");
pub const REGISTRY_RELOADS: Metric = counter(
    "larmor_registry_reloads_total",
    &["result"],
    "Device registry reloads after the file changed, by result (error: the file could not be read or parsed; the previous registry stays in force)",
);

// --- detection and alerts -----------------------------------------------------
pub const ANOMALIES: Metric = counter(
    "larmor_anomalies_total",
    &["detector", "channel"],
    "Anomaly episodes detected",
);
pub const DETECTION_LATENCY: Metric = histogram(
    "larmor_detection_latency_seconds",
    "Seconds from a frame's newest reading (device clock) until every detector has seen it; 0 when the device clock runs ahead",
);
/// Bucket bounds of [`DETECTION_LATENCY`]: a healthy pipeline detects within a
/// second or two; a backlog shows as minutes.
pub const DETECTION_LATENCY_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];
pub const ALERTS: Metric = counter(
    "larmor_alerts_total",
    &["channel"],
    "Notices delivered, per delivery channel",
);
pub const ALERTS_DEDUPLICATED: Metric = counter(
    "larmor_alerts_deduplicated_total",
    &["detector"],
    "Anomalies folded into an alert already open for the same machine episode (grouping)",
);
pub const ALERTS_FAILED: Metric = counter(
    "larmor_alerts_failed_total",
    &["channel"],
    "Delivery attempts that failed (each is retried with backoff until the notice is dead)",
);
pub const ALERTS_MUTED: Metric = counter(
    "larmor_alerts_muted_total",
    &["stage"],
    "Notifications not sent, by the stage that held them back (inhibit, silence, dedup)",
);
pub const ALERTS_DEAD: Metric = counter(
    "larmor_alerts_dead_total",
    &["channel"],
    "Notices given up after the configured number of attempts (raised to the site admin)",
);
pub const ALERTS_OUTBOX_PENDING: Metric = gauge(
    "larmor_alerts_outbox_pending",
    &["channel"],
    "Notices in the durable outbox waiting for delivery",
);
pub const ALERTS_DELIVERY_SECONDS: Metric = Metric {
    name: "larmor_alerts_delivery_seconds",
    help: "Time from a notice entering the outbox to its delivery",
    kind: Kind::Histogram,
    labels: &["channel"],
    presence: Presence::FromStart,
};
pub const TABLE_WRITE_ERRORS: Metric = counter(
    "larmor_table_write_errors_total",
    &["table"],
    "Failed writes of a table beside the archive (the rows stay buffered and are retried)",
);

// --- the topology's queues ----------------------------------------------------
pub const QUEUE_ITEMS: Metric = gauge(
    "larmor_queue_items",
    &["queue"],
    "Items waiting in a queue between two stages",
);
pub const QUEUE_CAPACITY: Metric = gauge(
    "larmor_queue_capacity",
    &["queue"],
    "Capacity of a queue between two stages",
);
pub const QUEUE_DROPPED: Metric = counter(
    "larmor_queue_dropped_total",
    &["queue"],
    "Items dropped because a queue that drops when full was full (its consumer is too slow)",
);
pub const QUEUE_BLOCKED_SECONDS: Metric = counter(
    "larmor_queue_blocked_seconds_total",
    &["queue"],
    "Time a stage waited to put an item into a full queue that blocks when full",
);

// --- forecasts --------------------------------------------------------------
pub const FORECAST_REFRESH_DURATION: Metric = histogram(
    "larmor_forecast_refresh_duration_seconds",
    "Seconds one forecast refresh took (scoring every machine), as reported with its rows",
);
pub const FORECAST_REFRESH_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];
/// The forecast horizons P(failure) is exported for: the `horizon` label's only values.
pub const FORECAST_HORIZONS: [(&str, std::time::Duration); 3] = [
    ("24h", std::time::Duration::from_secs(24 * 3600)),
    ("72h", std::time::Duration::from_secs(72 * 3600)),
    ("7d", std::time::Duration::from_secs(7 * 24 * 3600)),
];

// --- the fleet, per machine ---------------------------------------------------
pub const MACHINE_INFO: Metric = gauge(
    "larmor_machine_info",
    &["machine", "site", "manufacturer", "model"],
    "Always 1, one series per machine of the device registry: join on `machine` for site and vendor",
);
pub const MACHINE_HEALTH_SCORE: Metric = gauge(
    "larmor_machine_health_score",
    &["machine"],
    "0 (failing) to 100 (nothing wrong): 100 less a penalty per open anomaly by kind and severity and for P(failure); see dashboards/README.md",
);
pub const MACHINE_OPEN_ANOMALIES: Metric = gauge(
    "larmor_machine_open_anomalies",
    &["machine", "kind"],
    "Anomaly episodes that started within the open window ([status] open_for), by kind (machine_health, environment, sensor_fault)",
);
pub const MACHINE_LAST_FRAME: Metric = gauge(
    "larmor_machine_last_frame_timestamp_seconds",
    &["machine"],
    "Device time of the machine's newest reading seen by the detectors (Unix seconds)",
)
.once_populated("the machine's first frame");
const FIRST_VALUE: &str = "the machine's first reading of the channel";
pub const MACHINE_HELIUM_LEVEL: Metric = gauge(
    "larmor_machine_helium_level_ratio",
    &["machine"],
    "Latest liquid helium level in the magnet vessel, as a ratio of full (channel helium_level_pct / 100)",
)
.once_populated(FIRST_VALUE);
pub const MACHINE_COLDHEAD_STAGE2_TEMPERATURE: Metric = gauge(
    "larmor_machine_coldhead_stage2_temperature_kelvin",
    &["machine"],
    "Latest cold head 2nd-stage (recondenser) temperature (channel coldhead_stage2_k)",
)
.once_populated(FIRST_VALUE);
pub const MACHINE_COMPRESSOR_SUPPLY_PRESSURE: Metric = gauge(
    "larmor_machine_compressor_supply_pressure_pascals",
    &["machine"],
    "Latest helium compressor supply (high) pressure (channel compressor_supply_mpa x 1e6)",
)
.once_populated(FIRST_VALUE);
pub const MACHINE_WATER_INLET_TEMPERATURE: Metric = gauge(
    "larmor_machine_water_inlet_temperature_celsius",
    &["machine"],
    "Latest compressor cooling-water inlet temperature (channel water_inlet_c)",
)
.once_populated(FIRST_VALUE);
pub const MACHINE_ROOM_TEMPERATURE: Metric = gauge(
    "larmor_machine_room_temperature_celsius",
    &["machine"],
    "Latest magnet room temperature (channel room_temp_c); hospital data, not for manufacturers",
)
.once_populated(FIRST_VALUE);
pub const MACHINE_ROOM_HUMIDITY: Metric = gauge(
    "larmor_machine_room_humidity_ratio",
    &["machine"],
    "Latest magnet room relative humidity, as a ratio (channel room_humidity_pct / 100); hospital data, not for manufacturers",
)
.once_populated(FIRST_VALUE);
/// The key channels exported per machine: (wire channel name, family, factor
/// from the channel's unit to the family's base unit).
pub const KEY_CHANNELS: [(&str, Metric, f64); 6] = [
    ("helium_level_pct", MACHINE_HELIUM_LEVEL, 0.01),
    ("coldhead_stage2_k", MACHINE_COLDHEAD_STAGE2_TEMPERATURE, 1.0),
    ("compressor_supply_mpa", MACHINE_COMPRESSOR_SUPPLY_PRESSURE, 1e6),
    ("water_inlet_c", MACHINE_WATER_INLET_TEMPERATURE, 1.0),
    ("room_temp_c", MACHINE_ROOM_TEMPERATURE, 1.0),
    ("room_humidity_pct", MACHINE_ROOM_HUMIDITY, 0.01),
];
const FORECAST_MADE: &str = "a forecast for the machine (forecasting is not wired into larmor run yet)";
pub const MACHINE_FAILURE_PROBABILITY: Metric = gauge(
    "larmor_machine_failure_probability",
    &["machine", "horizon"],
    "Forecast probability (0-1) that the machine fails within the horizon (24h, 72h, 7d): the most likely failure mode's",
)
.once_populated(FORECAST_MADE);
pub const MACHINE_PREDICTED_FAILURE: Metric = gauge(
    "larmor_machine_predicted_failure_timestamp_seconds",
    &["machine"],
    "When the latest forecast expects the machine to fail (Unix seconds); time to failure is this minus time(). No series: no failure predicted",
)
.once_populated(FORECAST_MADE);

// --- the process --------------------------------------------------------------
pub const BUILD_INFO: Metric = gauge(
    "larmor_build_info",
    &["version"],
    "Always 1; the version label says which Larmor is running",
);

/// Every metric family Larmor exports.
pub const ALL: &[Metric] = &[
    INGEST_FRAMES,
    INGEST_READINGS,
    INGEST_DUPLICATES_SKIPPED,
    ARCHIVE_READINGS,
    ARCHIVE_FILES,
    ARCHIVE_BYTES,
    DLQ_MESSAGES,
    KAFKA_COMMITS,
    KAFKA_CONSUMER_ERRORS,
    KAFKA_CONSUMER_LAG,
    REGISTRY_RELOADS,
    DETECTION_LATENCY,
    ANOMALIES,
    ALERTS,
    ALERTS_DEDUPLICATED,
    ALERTS_FAILED,
    ALERTS_MUTED,
    ALERTS_DEAD,
    ALERTS_OUTBOX_PENDING,
    ALERTS_DELIVERY_SECONDS,
    TABLE_WRITE_ERRORS,
    QUEUE_ITEMS,
    QUEUE_CAPACITY,
    QUEUE_DROPPED,
    QUEUE_BLOCKED_SECONDS,
    FORECAST_REFRESH_DURATION,
    MACHINE_INFO,
    MACHINE_HEALTH_SCORE,
    MACHINE_OPEN_ANOMALIES,
    MACHINE_LAST_FRAME,
    MACHINE_HELIUM_LEVEL,
    MACHINE_COLDHEAD_STAGE2_TEMPERATURE,
    MACHINE_COMPRESSOR_SUPPLY_PRESSURE,
    MACHINE_WATER_INLET_TEMPERATURE,
    MACHINE_ROOM_TEMPERATURE,
    MACHINE_ROOM_HUMIDITY,
    MACHINE_FAILURE_PROBABILITY,
    MACHINE_PREDICTED_FAILURE,
    BUILD_INFO,
];

/// The definition of a metric family by name.
pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().find(|m| m.name == name)
}

impl Metric {
    fn opts(&self) -> Opts {
        Opts::new(self.name, self.help)
    }

    fn check(&self, kind: Kind, labelled: bool) {
        debug_assert_eq!(self.kind, kind, "{} is a {:?}", self.name, self.kind);
        debug_assert_eq!(
            !self.labels.is_empty(),
            labelled,
            "{} labels: {:?}",
            self.name,
            self.labels
        );
    }

    /// Registers an unlabelled integer counter.
    pub fn int_counter(&self, r: &Registry) -> prometheus::Result<IntCounter> {
        self.check(Kind::Counter, false);
        let c = IntCounter::with_opts(self.opts())?;
        r.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// Registers a labelled integer counter.
    pub fn int_counter_vec(&self, r: &Registry) -> prometheus::Result<IntCounterVec> {
        self.check(Kind::Counter, true);
        let c = IntCounterVec::new(self.opts(), self.labels)?;
        r.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// Registers a labelled floating-point counter (e.g. seconds).
    pub fn counter_vec(&self, r: &Registry) -> prometheus::Result<CounterVec> {
        self.check(Kind::Counter, true);
        let c = CounterVec::new(self.opts(), self.labels)?;
        r.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// Registers an unlabelled floating-point counter.
    pub fn counter(&self, r: &Registry) -> prometheus::Result<Counter> {
        self.check(Kind::Counter, false);
        let c = Counter::with_opts(self.opts())?;
        r.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// Registers an unlabelled integer gauge.
    pub fn int_gauge(&self, r: &Registry) -> prometheus::Result<IntGauge> {
        self.check(Kind::Gauge, false);
        let g = IntGauge::with_opts(self.opts())?;
        r.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// Registers a labelled integer gauge.
    pub fn int_gauge_vec(&self, r: &Registry) -> prometheus::Result<IntGaugeVec> {
        self.check(Kind::Gauge, true);
        let g = IntGaugeVec::new(self.opts(), self.labels)?;
        r.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// Registers a labelled floating-point gauge.
    pub fn gauge_vec(&self, r: &Registry) -> prometheus::Result<GaugeVec> {
        self.check(Kind::Gauge, true);
        let g = GaugeVec::new(self.opts(), self.labels)?;
        r.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// Registers an unlabelled floating-point gauge.
    pub fn gauge(&self, r: &Registry) -> prometheus::Result<Gauge> {
        self.check(Kind::Gauge, false);
        let g = Gauge::with_opts(self.opts())?;
        r.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// Registers an unlabelled histogram with these bucket bounds.
    pub fn histogram(&self, r: &Registry, buckets: Vec<f64>) -> prometheus::Result<Histogram> {
        self.check(Kind::Histogram, false);
        let h = Histogram::with_opts(HistogramOpts::new(self.name, self.help).buckets(buckets))?;
        r.register(Box::new(h.clone()))?;
        Ok(h)
    }

    /// Registers a labelled histogram with these bucket bounds.
    pub fn histogram_vec(&self, r: &Registry, buckets: Vec<f64>) -> prometheus::Result<HistogramVec> {
        self.check(Kind::Histogram, true);
        let h = HistogramVec::new(HistogramOpts::new(self.name, self.help).buckets(buckets), self.labels)?;
        r.register(Box::new(h.clone()))?;
        Ok(h)
    }
}

/// Registers `larmor_build_info` with this build's version.
pub fn register_build_info(r: &Registry, version: &str) -> prometheus::Result<()> {
    BUILD_INFO.int_gauge_vec(r)?.with_label_values(&[version]).set(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("larmor_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: _total on counters only",
                m.name
            );
            assert!(!m.help.is_empty(), "{}", m.name);
        }
        assert_eq!(find("larmor_archive_files_total"), Some(&ARCHIVE_FILES));
    }

    #[test]
    fn registering_through_a_definition_exports_that_definition() {
        let r = Registry::new();
        DLQ_MESSAGES
            .int_counter_vec(&r)
            .unwrap()
            .with_label_values(&["bad_json"])
            .inc();
        ARCHIVE_FILES.int_counter(&r).unwrap().inc();
        register_build_info(&r, "0.1.0").unwrap();
        let families = r.gather();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "larmor_archive_files_total",
                "larmor_build_info",
                "larmor_dlq_messages_total"
            ]
        );
        assert!(
            ARCHIVE_FILES.int_counter(&r).is_err(),
            "a second registration is refused"
        );
    }
}
