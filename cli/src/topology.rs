//! `larmor run`'s topology, built in one place: [`Topology::start`] creates
//! every stage, every queue between them and every thread, in this order.
//!
//! ```text
//!  simulator ─► Kafka ─► [source] ingest ───────────────────► archive (Parquet, exactly once)
//!   (thread       │        consume (thread "ingest")         └─ checkpoints (thread "ingest-checkpoint")
//!   "simulator")  │        decode + verify (threads "ingest-verify-N")
//!                 │        dead letters ─► Kafka DLQ topic
//!                 ▼ frames: queue "detect" (blocks when full)
//!          [transform] detect (thread "detect")
//!                 │ anomalies, to both queues:
//!       ┌─────────┴──────────────────────────┐
//!       ▼ queue "anomalies_table" (blocks)   ▼ queue "alerts" (drops when full, counted)
//!  [sink] anomalies table                [sink] alerts: group → inhibit → silence → dedup
//!  (thread "anomalies-table")            (thread "alerts") ─► alerts.db: state, nflog, outbox
//!                                                 │ sealed notices (HPKE + Ed25519)
//!                                        delivery, a thread per channel ("deliver-<channel>"):
//!                                        file outbox, mTLS webhook or Kafka; retries with backoff
//! ```
//!
//! The fleet state (`larmor_dashboards::fleet`) watches the detect stage: it
//! sees each frame before detection and each anomaly after it (on the detect
//! thread), keeps the per-machine gauges current and feeds the status page that
//! the `/metrics` endpoint serves at `/`, with the open alerts of the alerts
//! store. Forecasts reach it from the `forecasts` table, read again whenever
//! its files change (checked at each scrape and page view).
//!
//! The archive has priority: it is written by the source itself, before a
//! frame goes on. Detection is local CPU work and may hold ingest back
//! (`larmor_queue_blocked_seconds_total{queue="detect"}`); alert delivery may
//! not: when its queue is full, the anomaly is still recorded in the anomalies
//! table, and its alert is dropped and counted
//! (`larmor_queue_dropped_total{queue="alerts"}`; `run.alert_queue_full = "block"`
//! trades that for backpressure). The alerts sink itself never waits for a
//! receiver: it commits sealed notices to the durable outbox, and each
//! channel's delivery thread retries on its own. On stop, each stage finishes after the one
//! before it: the simulator, then the source (drain, final checkpoint), then
//! detection, then the sinks (final flush).

use crate::config::LarmorConfig;
use crate::metrics_http::{self, MetricsServer};
use crate::simulated::simulated_enrolment;
use anyhow::Context;
use larmor_alerts::{AlertMetrics, AlertPipeline};
use larmor_analytics::detect::warm;
use larmor_analytics::stages::{AnomalyTableSink, DetectStage};
use larmor_analytics::{Anomaly, DetectorSet};
use larmor_dashboards::fleet::{FleetState, Observed};
use larmor_datadir::DataDir;
use larmor_datasets::live::{LiveConfig, LiveFleet};
use larmor_datasets::{Fleet, Simulator, Tally};
use larmor_ingest::kafka::EmbeddedKafka;
use larmor_ingest::metrics::IngestMetrics;
use larmor_ingest::publish::FramePublisher;
use larmor_ingest::source::{IngestError, KafkaSource, SourceReport, SourceSettings, SourceWorkers};
use larmor_ingest::{DeviceRegistry, Frame, RegistryWatch, SharedRegistry};
use larmor_stage::{QueueMetrics, Source, Tee, WhenFull, queue, spawn_sink, spawn_transform};
use prometheus::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub elapsed: Duration,
    pub source: SourceReport,
    pub frames_sent: u64,
    /// What the simulator produced, when it ran.
    pub produced: Option<Tally>,
}

/// Every thread of a running topology, stopped in this order.
struct Threads {
    simulator: Option<JoinHandle<anyhow::Result<u64>>>,
    ingest: Option<JoinHandle<Result<SourceReport, IngestError>>>,
    detect: Option<JoinHandle<()>>,
    sinks: Vec<JoinHandle<()>>,
}

/// A running pipeline.
pub struct Topology {
    pub config: LarmorConfig,
    pub brokers: String,
    pub registry: Arc<DeviceRegistry>,
    pub metrics: Registry,
    pub metrics_server: MetricsServer,
    /// The simulated fleet, when the simulator runs.
    pub fleet: Option<LiveFleet>,
    /// Per-machine state behind the fleet gauges and the status page; it follows
    /// the `forecasts` table (a refresh may also hand it rows with
    /// [`FleetState::record_forecasts`]).
    pub fleet_state: FleetState,
    started: Instant,
    stop_simulator: Arc<AtomicBool>,
    stop_ingest: Arc<AtomicBool>,
    threads: Threads,
    // Declared last: dropped after every client above.
    _embedded: Option<EmbeddedKafka>,
}

impl Topology {
    /// Builds and starts the whole pipeline. Runs on the caller's tokio runtime
    /// (for `/metrics` and the detectors' warm-up query).
    pub async fn start(config: LarmorConfig) -> anyhow::Result<Topology> {
        // Kafka: the embedded cluster, or the configured brokers (checked before anything starts).
        let embedded = config
            .embedded()
            .then(|| EmbeddedKafka::start(&config.topics))
            .transpose()?;
        let brokers = match &embedded {
            Some(e) => e.bootstrap_servers(),
            None => config.kafka.brokers.clone(),
        };
        if embedded.is_none() {
            // Refused credentials, a failed TLS handshake or a missing topic: say which.
            larmor_ingest::kafka::preflight(
                &config.kafka.client_config(&brokers)?,
                &brokers,
                &config.topics.all_topics(),
                Duration::from_secs(10),
            )?;
        }
        let data = DataDir::around(&config.archive.path);

        // Devices: the registry file (watched for changes), or the simulated fleet enrolled.
        let fleet = config.simulator.enabled.then(|| {
            let f = Fleet::generate(config.simulator.machines, config.simulator.seed);
            LiveFleet::new(Simulator::new(f, config.simulator.seed))
        });
        // Watch first, then load: a change made while starting up is reloaded, not missed.
        let watch = config
            .registry
            .path
            .as_ref()
            .map(|p| RegistryWatch::new(p, config.registry.watch_interval));
        let registry = Arc::new(load_registry(&config, fleet.as_ref(), &data)?);

        // The registry in force, shared by ingest, alerts and the fleet state as it is reloaded.
        let devices = SharedRegistry::new(registry.clone());

        // Metrics, the fleet state, and `/metrics` and the status page on the caller's runtime.
        let metrics = Registry::new();
        larmor_metrics::register_build_info(&metrics, env!("CARGO_PKG_VERSION"))?;
        let ingest_metrics = IngestMetrics::register(&metrics)?;
        let table_errors = larmor_metrics::TABLE_WRITE_ERRORS.int_counter_vec(&metrics)?;
        let fleet_state = FleetState::register(&metrics, devices.clone(), config.status.clone())?;
        let metrics_server = metrics_http::serve(
            config.metrics.listen,
            metrics.clone(),
            fleet_state.clone(),
            data.clone(),
        )?;

        // The queues between the stages.
        let queues = QueueMetrics::register(&metrics)?;
        let run = &config.run;
        let (frames_out, frames_in) = queue::<Frame>("detect", run.detect_queue, WhenFull::Block, &queues);
        let (to_table, table_in) = queue::<Anomaly>("anomalies_table", run.alert_queue, WhenFull::Block, &queues);
        let (to_alerts, alerts_in) = queue::<Anomaly>("alerts", run.alert_queue, run.alert_queue_full, &queues);

        // The source, connected and subscribed; it starts consuming on its thread below.
        let source = KafkaSource::open(
            SourceSettings {
                kafka: &config.kafka,
                brokers: &brokers,
                topics: &config.topics,
                archive: config.archive.clone(),
                trust: config.trust.clone(),
                drain_timeout: run.drain_timeout,
            },
            devices,
            ingest_metrics,
            SourceWorkers::start(&config.trust, cores())?,
        )?;
        let source = match watch {
            Some(w) => source.watch_registry(w),
            None => source,
        };
        // The sinks, started before anything can reach them.
        let flush_every = config.archive.max_buffer_age.max(Duration::from_millis(100));
        let detectors = DetectorSet::from_config(&config.detect)?;
        let alert_metrics = AlertMetrics::register(&metrics)?;
        alert_metrics.init_detectors(&detectors.names());
        let alerts = AlertPipeline::start(config.alerts.clone(), source.registry(), &data, alert_metrics)
            .map_err(|e| anyhow::anyhow!("alerts: {e}"))?
            .recording_to(&data, table_errors.with_label_values(&["alerts"]));
        // Every site's admin channel and every vendor's, so each delivery worker runs from the start.
        alerts.open_channels(&registry);
        let anomalies = AnomalyTableSink::new(&data, table_errors.with_label_values(&["anomalies"]));
        let sinks = vec![
            spawn_sink("alerts", alerts, alerts_in, flush_every)?,
            spawn_sink("anomalies-table", anomalies, table_in, flush_every)?,
        ];

        // Detection, its baselines relearnt from the archive so a restart does not forget them.
        let mut detectors = detectors;
        let now_ms = chrono::Utc::now().timestamp_millis();
        match warm::from_archive(&mut detectors, &config.archive.path, &config.detect.warm_up, now_ms).await {
            Ok(r) => {
                tracing::info!(readings = r.readings, elapsed = ?r.elapsed, "detectors warmed up from the archive")
            }
            Err(e) => tracing::warn!(error = %e, "detector warm-up from the archive failed; baselines start cold"),
        }
        let detect = spawn_transform(
            "detect",
            Observed::new(DetectStage::new(detectors, &metrics)?, fleet_state.clone(), &metrics)?,
            frames_in,
            Tee(vec![to_table, to_alerts]),
        )?;

        // The simulator's publisher (made before any thread starts, so a failure leaves none running).
        let publisher = match &fleet {
            Some(_) => Some(
                FramePublisher::new(&config.kafka.client_config(&brokers)?, &config.topics)?.with_keys(
                    crate::simulated::simulated_keys(registry.devices(), config.simulator.seed),
                ),
            ),
            None => None,
        };

        // The source: consumes until stopped, then drains and checkpoints.
        let stop_ingest = Arc::new(AtomicBool::new(false));
        let ingest = {
            let stop = stop_ingest.clone();
            std::thread::Builder::new()
                .name("ingest".into())
                .spawn(move || source.run(&stop, &frames_out))?
        };

        // The simulator, publishing the fleet's signed frames to Kafka.
        let stop_simulator = Arc::new(AtomicBool::new(false));
        let simulator = match (&fleet, publisher) {
            (Some(f), Some(publisher)) => {
                let (f, stop) = (f.clone(), stop_simulator.clone());
                let live = LiveConfig {
                    rate_hz: config.simulator.rate_hz,
                    frame_interval: config.simulator.frame_interval,
                };
                let spawned = std::thread::Builder::new().name("simulator".into()).spawn(move || {
                    f.run(&publisher, live, &stop)
                        .context("the simulator could not publish to Kafka")
                });
                match spawned {
                    Ok(h) => Some(h),
                    Err(e) => {
                        stop_ingest.store(true, Ordering::Relaxed);
                        return Err(e.into());
                    }
                }
            }
            _ => None,
        };

        Ok(Topology {
            config,
            brokers,
            registry,
            metrics,
            metrics_server,
            fleet,
            fleet_state,
            started: Instant::now(),
            stop_simulator,
            stop_ingest,
            threads: Threads {
                simulator,
                ingest: Some(ingest),
                detect: Some(detect),
                sinks,
            },
            _embedded: embedded,
        })
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_server.addr
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// True when a stage stopped on its own (an error): the caller should stop.
    pub fn failed(&self) -> bool {
        fn done<T>(h: &Option<JoinHandle<T>>) -> bool {
            h.as_ref().is_some_and(|h| h.is_finished())
        }
        let t = &self.threads;
        done(&t.ingest) || done(&t.simulator) || done(&t.detect) || t.sinks.iter().any(|h| h.is_finished())
    }

    /// Stops the stages in order: the simulator, then ingest (drained and
    /// checkpointed), then detection and the sinks, which finish what they hold.
    /// Every stage is stopped and joined even when one failed; the first failure
    /// is returned. `/metrics` and the embedded cluster stay up until the
    /// topology is dropped.
    pub fn stop(&mut self) -> anyhow::Result<RunReport> {
        let mut first_error: Option<anyhow::Error> = None;
        let mut keep = |e: anyhow::Error| {
            tracing::error!(error = %e, "stopping");
            first_error.get_or_insert(e);
        };
        self.stop_simulator.store(true, Ordering::Relaxed);
        let frames_sent = match self.threads.simulator.take().map(|h| h.join()) {
            Some(Ok(Ok(n))) => n,
            Some(Ok(Err(e))) => {
                keep(e);
                0
            }
            Some(Err(_)) => {
                keep(anyhow::anyhow!("the simulator thread panicked"));
                0
            }
            None => 0,
        };
        tracing::info!(frames_sent, "simulator stopped");
        self.stop_ingest.store(true, Ordering::Relaxed);
        let source = match self.threads.ingest.take().map(|h| h.join()) {
            Some(Ok(Ok(report))) => Some(report),
            Some(Ok(Err(e))) => {
                keep(e.into());
                None
            }
            Some(Err(_)) => {
                keep(anyhow::anyhow!("the ingest thread panicked"));
                None
            }
            None => {
                keep(anyhow::anyhow!("the pipeline was already stopped"));
                None
            }
        };
        // The source's queue is closed now: detection and then the sinks finish.
        if let Some(Err(_)) = self.threads.detect.take().map(|h| h.join()) {
            keep(anyhow::anyhow!("the detection thread panicked"));
        }
        for h in self.threads.sinks.drain(..) {
            if h.join().is_err() {
                keep(anyhow::anyhow!("a sink thread panicked"));
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let source = source.expect("no error: the source reported");
        tracing::info!(drained = source.drained, "ingest stopped");
        let produced = self
            .fleet
            .as_ref()
            .map(|f| f.tally.lock().unwrap_or_else(|p| p.into_inner()).clone());
        Ok(RunReport {
            elapsed: self.started.elapsed(),
            source,
            frames_sent,
            produced,
        })
    }
}

impl Drop for Topology {
    /// A topology dropped without [`Topology::stop`] (an error on the way) still
    /// stops its threads: each finishes what it holds, nothing waits for them.
    fn drop(&mut self) {
        self.stop_simulator.store(true, Ordering::Relaxed);
        self.stop_ingest.store(true, Ordering::Relaxed);
    }
}

/// The registry file, or the simulated fleet enrolled with its keys (and saved
/// beside the archive for reference).
fn load_registry(config: &LarmorConfig, fleet: Option<&LiveFleet>, data: &DataDir) -> anyhow::Result<DeviceRegistry> {
    match (&config.registry.path, fleet) {
        (Some(p), _) => Ok(DeviceRegistry::load(p)?),
        (None, Some(f)) => {
            let devices = f.simulator.lock().unwrap_or_else(|p| p.into_inner()).fleet().devices();
            let r = DeviceRegistry::new(simulated_enrolment(devices, config.simulator.seed))?;
            std::fs::create_dir_all(data.root())?;
            r.save(&data.registry())?;
            Ok(r)
        }
        (None, None) => anyhow::bail!(
            "no device registry: set [registry] path in the config, or enable [simulator] to enrol the simulated fleet"
        ),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
