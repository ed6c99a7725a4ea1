//! `larmor run`: wires the layers together. Kafka (embedded or configured) →
//! ingest source (verify, archive, dead-letter) → detectors → alert pipeline →
//! outboxes, with the simulator feeding Kafka and `/metrics` watching it all.
//!
//! Threads, joined by bounded queues: the simulator, the ingest loop (which runs
//! the detectors inline), and alert delivery (which also writes the `anomalies`
//! and `alerts` tables beside the archive).

use crate::config::LarmorConfig;
use crate::metrics_http::{self, MetricsServer};
use anyhow::Context;
use larmor_alerts::{AlertLog, AlertMetrics, AlertPipeline};
use larmor_analytics::anomaly_log::AnomalyLog;
use larmor_analytics::detect::warm;
use larmor_analytics::tables::DataDir;
use larmor_analytics::{Anomaly, DetectorSet};
use larmor_datasets::live::{LiveConfig, LiveFleet};
use larmor_datasets::{Fleet, Simulator, Tally};
use larmor_ingest::kafka::EmbeddedKafka;
use larmor_ingest::metrics::IngestMetrics;
use larmor_ingest::publish::FramePublisher;
use larmor_ingest::source::{FrameObserver, IngestError, KafkaSource, SourceReport};
use larmor_ingest::trust::DeviceKey;
use larmor_ingest::{Device, DeviceRegistry, Frame, RegistryWatch};
use prometheus::Registry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs detectors on each accepted frame and queues anomalies for delivery.
struct DetectingObserver {
    detectors: DetectorSet,
    found: Vec<Anomaly>,
    alerts: SyncSender<Anomaly>,
}

impl FrameObserver for DetectingObserver {
    fn on_frame(&mut self, frame: &Frame, _device: &Device) {
        self.detectors.observe(frame, &mut self.found);
        for a in self.found.drain(..) {
            // A full queue blocks ingest: backpressure rather than lost alerts.
            if self.alerts.send(a).is_err() {
                tracing::error!("alert delivery stopped; anomaly dropped");
            }
        }
    }
}

/// Enrols simulated machines with their deterministic keys.
pub fn simulated_enrolment(mut devices: Vec<Device>, seed: u64) -> Vec<Device> {
    for d in &mut devices {
        d.public_key = Some(DeviceKey::simulated(seed, &d.machine_id).public_hex());
    }
    devices
}

/// The signing keys of simulated machines, as their devices would hold them.
pub fn simulated_keys(devices: &[Device], seed: u64) -> HashMap<String, DeviceKey> {
    devices
        .iter()
        .map(|d| (d.machine_id.clone(), DeviceKey::simulated(seed, &d.machine_id)))
        .collect()
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub elapsed: Duration,
    pub source: SourceReport,
    pub frames_sent: u64,
    /// What the simulator produced, when it ran.
    pub produced: Option<Tally>,
}

/// A running pipeline.
pub struct Pipeline {
    pub config: LarmorConfig,
    pub brokers: String,
    pub registry: Arc<DeviceRegistry>,
    pub metrics: Registry,
    pub metrics_server: MetricsServer,
    pub fleet: Option<LiveFleet>,
    started: Instant,
    stop_sim: Arc<AtomicBool>,
    stop_ingest: Arc<AtomicBool>,
    sim: Option<JoinHandle<anyhow::Result<u64>>>,
    ingest: Option<JoinHandle<Result<SourceReport, IngestError>>>,
    alerts: Option<JoinHandle<()>>,
    // Declared last: dropped after every client above.
    _embedded: Option<EmbeddedKafka>,
}

impl Pipeline {
    /// Starts every component. Must be called inside a tokio runtime (for `/metrics`).
    pub fn start(config: LarmorConfig) -> anyhow::Result<Pipeline> {
        let embedded = if config.embedded() {
            Some(EmbeddedKafka::start(&config.topics)?)
        } else {
            None
        };
        let brokers = match &embedded {
            Some(e) => e.bootstrap_servers(),
            None => config.kafka.brokers.clone(),
        };

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
        let registry = Arc::new(match (&config.registry.path, &fleet) {
            (Some(p), _) => DeviceRegistry::load(p)?,
            (None, Some(f)) => {
                let devices = f.simulator.lock().unwrap_or_else(|p| p.into_inner()).fleet().devices();
                let r = DeviceRegistry::new(simulated_enrolment(devices, config.simulator.seed))?;
                if let Some(dir) = config.archive.path.parent() {
                    std::fs::create_dir_all(dir)?;
                    r.save(&dir.join("devices.toml"))?;
                }
                r
            }
            (None, None) => anyhow::bail!(
                "no device registry: set [registry] path in the config, or enable [simulator] to enrol the simulated fleet"
            ),
        });

        let metrics = Registry::new();
        let ingest_metrics = IngestMetrics::register(&metrics)?;
        let alert_metrics = AlertMetrics::register(&metrics)?;
        let metrics_server = metrics_http::serve(config.metrics.listen, metrics.clone())?;

        if embedded.is_none() {
            // Refused credentials, a failed TLS handshake or a missing topic: say which, before starting anything.
            larmor_ingest::kafka::preflight(
                &config.kafka.client_config(&brokers)?,
                &brokers,
                &config.topics.all_topics(),
                Duration::from_secs(10),
            )?;
        }
        let source = KafkaSource::open(
            &config.kafka,
            &brokers,
            &config.topics,
            config.archive.clone(),
            config.trust.clone(),
            registry.clone(),
            ingest_metrics,
        )?;
        let source = match watch {
            Some(w) => source.watch_registry(w),
            None => source,
        };

        let (tx, rx) = sync_channel::<Anomaly>(config.run.alert_queue.max(1));
        let mut alert_pipeline = AlertPipeline::new(config.alerts.clone(), source.registry(), alert_metrics);
        let data_dir = DataDir::around(&config.archive.path);
        let (mut anomaly_log, mut alert_log) = (
            AnomalyLog::new(&data_dir.anomalies()),
            AlertLog::new(&data_dir.alerts()),
        );
        let flush_every = config.archive.max_buffer_age.max(Duration::from_millis(100));
        let alerts = std::thread::Builder::new().name("alerts".into()).spawn(move || {
            let rx: Receiver<Anomaly> = rx;
            let mut last_flush = Instant::now();
            let flush = |anomalies: &mut AnomalyLog, alerts: &mut AlertLog| {
                // The tables are a record, not the delivery: a failed write is retried at the next flush.
                if let Err(e) = anomalies.flush() {
                    tracing::warn!(error = %e, pending = anomalies.pending(), "cannot write the anomalies table; will retry");
                }
                if let Err(e) = alerts.flush() {
                    tracing::warn!(error = %e, pending = alerts.pending(), "cannot write the alerts table; will retry");
                }
            };
            loop {
                match rx.recv_timeout(flush_every) {
                    Ok(a) => {
                        anomaly_log.push(&a);
                        let outcome = alert_pipeline.process(&a);
                        if let Some(alert) = &outcome.alert {
                            alert_log.push(alert, &outcome.delivered_to);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if last_flush.elapsed() >= flush_every {
                    flush(&mut anomaly_log, &mut alert_log);
                    last_flush = Instant::now();
                }
            }
            flush(&mut anomaly_log, &mut alert_log);
        })?;

        let mut detectors = DetectorSet::from_config(&config.detect)?;
        // Relearn the baselines from the archive, so a restart does not forget them.
        let now_ms = chrono::Utc::now().timestamp_millis();
        match warm::from_archive(&mut detectors, &config.archive.path, &config.detect.warm_up, now_ms) {
            Ok(r) => {
                tracing::info!(readings = r.readings, elapsed = ?r.elapsed, "detectors warmed up from the archive")
            }
            Err(e) => tracing::warn!(error = %e, "detector warm-up from the archive failed; baselines start cold"),
        }
        let stop_ingest = Arc::new(AtomicBool::new(false));
        let drain_timeout = config.run.drain_timeout;
        let ingest = {
            let stop = stop_ingest.clone();
            std::thread::Builder::new().name("ingest".into()).spawn(move || {
                let mut observer = DetectingObserver {
                    detectors,
                    found: Vec::new(),
                    alerts: tx,
                };
                source.run(&stop, drain_timeout, &mut observer)
            })?
        };

        let stop_sim = Arc::new(AtomicBool::new(false));
        let sim = match &fleet {
            Some(f) => {
                let publisher = FramePublisher::new(&config.kafka.client_config(&brokers)?, &config.topics)?
                    .with_keys(simulated_keys(registry.devices(), config.simulator.seed));
                let (f, stop) = (f.clone(), stop_sim.clone());
                let live = LiveConfig {
                    rate_hz: config.simulator.rate_hz,
                    frame_interval: config.simulator.frame_interval,
                };
                Some(std::thread::Builder::new().name("simulator".into()).spawn(move || {
                    f.run(&publisher, live, &stop)
                        .context("the simulator could not publish to Kafka")
                })?)
            }
            None => None,
        };

        Ok(Pipeline {
            config,
            brokers,
            registry,
            metrics,
            metrics_server,
            fleet,
            started: Instant::now(),
            stop_sim,
            stop_ingest,
            sim,
            ingest: Some(ingest),
            alerts: Some(alerts),
            _embedded: embedded,
        })
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_server.addr
    }

    /// True when a component stopped on its own (an error): the caller should stop.
    pub fn failed(&self) -> bool {
        self.ingest.as_ref().is_some_and(|h| h.is_finished()) || self.sim.as_ref().is_some_and(|h| h.is_finished())
    }

    /// Stops the simulator, drains and checkpoints ingest, then lets alert delivery
    /// finish. `/metrics` and the embedded cluster stay up until the pipeline is dropped.
    pub fn stop(&mut self) -> anyhow::Result<RunReport> {
        self.stop_sim.store(true, Ordering::Relaxed);
        let frames_sent = match self.sim.take() {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("the simulator thread panicked"))??,
            None => 0,
        };
        tracing::info!(frames_sent, "simulator stopped");
        self.stop_ingest.store(true, Ordering::Relaxed);
        let source = match self.ingest.take() {
            Some(h) => h.join().map_err(|_| anyhow::anyhow!("the ingest thread panicked"))??,
            None => anyhow::bail!("the pipeline was already stopped"),
        };
        tracing::info!(drained = source.drained, "ingest stopped");
        if let Some(h) = self.alerts.take() {
            h.join().map_err(|_| anyhow::anyhow!("the alert thread panicked"))?;
        }
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

/// Shared by the summary printer: last totals and when they were read.
pub struct Summary {
    last: Mutex<(Instant, f64, f64)>,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            last: Mutex::new((Instant::now(), 0.0, 0.0)),
        }
    }
}

impl Summary {
    /// One line: rates since the last call, totals, anomalies per channel and alerts per delivery channel.
    pub fn line(&self, p: &Pipeline) -> String {
        use metrics_http::{counter_by_label, counter_total};
        let r = &p.metrics;
        let frames = counter_total(r, "larmor_ingest_frames_total");
        let readings = counter_total(r, "larmor_ingest_readings_total");
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let dt = last.0.elapsed().as_secs_f64().max(1e-9);
        let (fps, rps) = ((frames - last.1) / dt, (readings - last.2) / dt);
        *last = (Instant::now(), frames, readings);
        let fmt_map = |m: std::collections::BTreeMap<String, f64>| {
            let parts: Vec<String> = m
                .into_iter()
                .filter(|(_, v)| *v > 0.0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if parts.is_empty() {
                "-".to_string()
            } else {
                parts.join(" ")
            }
        };
        format!(
            "[{:>5.0}s] {fps:>7.0} frames/s {rps:>9.0} readings/s | archived {} | dlq {} | anomalies {} | alerts {}",
            p.started.elapsed().as_secs_f64(),
            counter_total(r, "larmor_archive_readings_total"),
            counter_total(r, "larmor_dlq_messages_total"),
            fmt_map(counter_by_label(r, "larmor_anomalies_total", "channel")),
            fmt_map(counter_by_label(r, "larmor_alerts_total", "channel")),
        )
    }
}
