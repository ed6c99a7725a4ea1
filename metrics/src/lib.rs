//! Every metric Larmor exports on `/metrics`, in one list ([`ALL`]): its name,
//! help text, type and labels. The code that registers a metric does it through
//! its definition here, the dashboards check their queries against this list,
//! and a test compares the list with what a running pipeline exports, so a
//! metric cannot be renamed in one place only.
//!
//! Names follow Prometheus conventions (base units in the name, `_total` on
//! counters). Label values are bounded: streams, reasons, detectors, channels
//! of the catalogue, delivery channels, queues.

use prometheus::{
    Counter, CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
}

const fn counter(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric {
        name,
        help,
        kind: Kind::Counter,
        labels,
    }
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric {
        name,
        help,
        kind: Kind::Gauge,
        labels,
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
    DLQ_MESSAGES,
    KAFKA_COMMITS,
    KAFKA_CONSUMER_ERRORS,
    REGISTRY_RELOADS,
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
