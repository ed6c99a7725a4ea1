//! Delivery from the durable outbox: one worker thread per channel takes the
//! channel's due notices from the store, hands each to its transport, and
//! records the outcome: delivered; failed, retried after an exponential
//! backoff; or, after `give_up_after` (or `max_attempts`), dead: counted and
//! raised to the site's admin. A failure holds back the whole channel for the
//! backoff, so a dead receiver costs one attempt per backoff, not one per
//! waiting notice. Nothing here runs on the alerts sink's thread, so a slow or dead
//! receiver never holds the pipeline back. At least once: a notice is marked
//! delivered only after its transport confirmed it, and carries its
//! idempotency key so the receiver can drop repeats.

use crate::config::{AlertsConfig, ChannelConfig};
use crate::policy::{self, EventType, Party};
use crate::seal::{NoticeSigner, RecipientKey, RecipientSecret};
use crate::store::{OutboxRow, PendingDelivery, Store};
use crate::transport::{FileTransport, KafkaTransport, Transport, WebhookTransport};
use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Registry};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The delivery metrics, registered through their definitions in larmor-metrics.
#[derive(Clone)]
pub struct DeliveryMetrics {
    pub delivered: IntCounterVec,
    pub failed: IntCounterVec,
    pub dead: IntCounterVec,
    pub pending: IntGaugeVec,
    pub latency: HistogramVec,
}

impl DeliveryMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(DeliveryMetrics {
            delivered: larmor_metrics::ALERTS.int_counter_vec(r)?,
            failed: larmor_metrics::ALERTS_FAILED.int_counter_vec(r)?,
            dead: larmor_metrics::ALERTS_DEAD.int_counter_vec(r)?,
            pending: larmor_metrics::ALERTS_OUTBOX_PENDING.int_gauge_vec(r)?,
            latency: larmor_metrics::ALERTS_DELIVERY_SECONDS.histogram_vec(
                r,
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0],
            )?,
        })
    }

    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a fresh registry accepts every metric")
    }

    /// Every series of a channel, at zero, so dashboards see it before the first notice.
    fn init(&self, channel: &str) {
        self.delivered.with_label_values(&[channel]);
        self.failed.with_label_values(&[channel]);
        self.dead.with_label_values(&[channel]);
        self.pending.with_label_values(&[channel]);
        self.latency.with_label_values(&[channel]);
    }
}

/// A channel: its party, the key its notices are sealed to, the hooks it takes.
pub struct ChannelSpec {
    pub name: String,
    pub party: Party,
    pub recipient: RecipientKey,
    pub hooks: Vec<EventType>,
}

struct Worker {
    spec: Arc<ChannelSpec>,
    wake: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

/// The channels and their workers. Channels are made on first use: a party
/// without configuration gets the default transport (the encrypted file outbox).
pub struct Delivery {
    signer: NoticeSigner,
    store_path: PathBuf,
    config: AlertsConfig,
    demo_keys: PathBuf,
    pub metrics: DeliveryMetrics,
    workers: Mutex<BTreeMap<String, Worker>>,
    stop: AtomicBool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Delivery {
    pub fn new(
        signer: NoticeSigner,
        store_path: &Path,
        config: AlertsConfig,
        demo_keys: &Path,
        metrics: DeliveryMetrics,
    ) -> Arc<Delivery> {
        Arc::new(Delivery {
            signer,
            store_path: store_path.to_path_buf(),
            config,
            demo_keys: demo_keys.to_path_buf(),
            metrics,
            workers: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
        })
    }

    pub fn signer(&self) -> &NoticeSigner {
        &self.signer
    }

    /// Starts a worker for every configured channel, and checks their settings.
    pub fn start_configured(self: &Arc<Self>) -> Result<(), String> {
        for c in &self.config.channel {
            let party = Party::parse(&c.name).ok_or_else(|| {
                format!(
                    "[[alerts.channel]] name {:?}: want \"admin/<site>\" or \"manufacturer/<vendor>\"",
                    c.name
                )
            })?;
            self.channel(&party)?;
        }
        Ok(())
    }

    fn config_of(&self, name: &str) -> Option<&ChannelConfig> {
        self.config.channel.iter().find(|c| c.name == name)
    }

    /// The channel of `party`, made (key loaded, transport built, worker started) on first use.
    pub fn channel(self: &Arc<Self>, party: &Party) -> Result<Arc<ChannelSpec>, String> {
        let name = party.channel_name();
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = workers.get(&name) {
            return Ok(w.spec.clone());
        }
        let cfg = self.config_of(&name);
        let recipient = match cfg.and_then(|c| c.recipient_key.as_ref()) {
            Some(p) => RecipientKey::load(p).map_err(|e| format!("channel {name}: {e}"))?,
            None if self.config.demo_keys => self.demo_key(&name)?,
            None => {
                return Err(format!(
                    "channel {name} has no recipient_key and alerts.demo_keys is off: add a [[alerts.channel]] with the party's public key (`larmor channel keygen`)"
                ));
            }
        };
        let transport: Box<dyn Transport> = match cfg {
            Some(c) if c.webhook.is_some() && c.kafka.is_some() => {
                return Err(format!("channel {name}: set webhook or kafka, not both"));
            }
            Some(ChannelConfig { webhook: Some(w), .. }) => {
                Box::new(WebhookTransport::new(w).map_err(|e| format!("channel {name}: {e}"))?)
            }
            Some(ChannelConfig { kafka: Some(k), .. }) => {
                Box::new(KafkaTransport::new(k).map_err(|e| format!("channel {name}: {e}"))?)
            }
            _ => Box::new(FileTransport::new(
                &self.config.outbox.join(larmor_datadir::naming::channel_path(&name)),
            )),
        };
        let spec = Arc::new(ChannelSpec {
            hooks: cfg
                .and_then(|c| c.events.clone())
                .unwrap_or_else(|| EventType::defaults_for(party)),
            name: name.clone(),
            party: party.clone(),
            recipient,
        });
        self.metrics.init(&name);
        let (wake, woken) = std::sync::mpsc::channel();
        let thread = {
            let (me, spec) = (self.clone(), spec.clone());
            std::thread::Builder::new()
                .name(format!("deliver-{}", name.replace('/', "-")))
                .spawn(move || me.work(&spec, transport, woken))
                .map_err(|e| format!("channel {name}: cannot start its worker: {e}"))?
        };
        workers.insert(
            name,
            Worker {
                spec: spec.clone(),
                wake,
                thread: Some(thread),
            },
        );
        Ok(spec)
    }

    /// A key pair Larmor makes itself for a channel without one (the embedded demo).
    fn demo_key(&self, name: &str) -> Result<RecipientKey, String> {
        use larmor_datadir::naming::{channel_path, with_suffix};
        let stem = self.demo_keys.join(channel_path(name));
        let pub_path = with_suffix(&stem, "pub");
        if !pub_path.exists() {
            let (sk, _) = RecipientSecret::generate();
            if let Some(dir) = stem.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("channel {name}: cannot make {}: {e}", dir.display()))?;
            }
            sk.save(&with_suffix(&stem, "key")).map_err(|e| {
                format!(
                    "channel {name}: cannot write a demo key in {}: {e}",
                    self.demo_keys.display()
                )
            })?;
            tracing::warn!(
                channel = name,
                key = %with_suffix(&stem, "key").display(),
                "no recipient key configured: made a demo key pair; give the party its own (`larmor channel keygen`) and set recipient_key"
            );
        }
        RecipientKey::load(&pub_path).map_err(|e| e.to_string())
    }

    /// The channels made so far.
    pub fn channels(&self) -> Vec<Arc<ChannelSpec>> {
        let w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        w.values().map(|w| w.spec.clone()).collect()
    }

    /// Seals `payload` for `spec` as an outbox row.
    pub fn seal(
        &self,
        spec: &ChannelSpec,
        idem_key: &str,
        event: EventType,
        site: &str,
        payload: &serde_json::Map<String, serde_json::Value>,
        now_ms: i64,
    ) -> Result<OutboxRow, String> {
        let body = serde_json::to_vec(payload).expect("payloads serialize");
        let ev = self
            .signer
            .seal(idem_key, now_ms, &body, &spec.recipient)
            .map_err(|e| e.to_string())?;
        Ok(OutboxRow {
            channel: spec.name.clone(),
            idem_key: idem_key.to_string(),
            event_type: event.as_str().to_string(),
            site: site.to_string(),
            envelope: ev.to_json(),
        })
    }

    /// Tells a channel's worker that it has something new.
    pub fn wake(&self, channel: &str) {
        if let Some(w) = self.workers.lock().unwrap_or_else(|p| p.into_inner()).get(channel) {
            let _ = w.wake.send(());
        }
    }

    /// Stops every worker: each first delivers what is due (for at most
    /// `drain_timeout`);
    /// the rest stays in the outbox for the next start.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads: Vec<JoinHandle<()>> = {
            let mut w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            w.values_mut()
                .filter_map(|w| {
                    let _ = w.wake.send(());
                    w.thread.take()
                })
                .collect()
        };
        for t in threads {
            let _ = t.join();
        }
    }

    fn backoff(&self, attempts: u32, seq: i64) -> Duration {
        let base = self.config.retry_initial.as_secs_f64() * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
        // Jitter (50-100 %), fixed per notice, so retries of many notices spread out.
        let jitter = 0.5 + (seq.wrapping_mul(2_654_435_761) as u64 % 1000) as f64 / 2000.0;
        Duration::from_secs_f64(base.min(self.config.retry_max.as_secs_f64()) * jitter)
    }

    fn work(self: Arc<Self>, spec: &ChannelSpec, mut transport: Box<dyn Transport>, woken: Receiver<()>) {
        let name = spec.name.as_str();
        let store = loop {
            match Store::open(&self.store_path) {
                Ok(s) => break s,
                Err(e) => {
                    tracing::error!(channel = name, error = %e, "delivery cannot open the alert store; retrying");
                    if self.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        };
        let mut drain_until: Option<Instant> = None;
        // After a failed attempt the channel waits out its backoff.
        let mut failures_in_a_row = 0u32;
        let mut held_until: Option<Instant> = None;
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            if stopping && drain_until.is_none() {
                drain_until = Some(Instant::now() + self.config.drain_timeout);
            }
            let held = held_until.is_some_and(|t| Instant::now() < t) && !stopping;
            let due = match if held {
                Ok(Vec::new())
            } else {
                store.due(name, now_ms(), 32)
            } {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(channel = name, error = %e, "cannot read the outbox");
                    Vec::new()
                }
            };
            for d in &due {
                if drain_until.is_some_and(|t| Instant::now() > t) {
                    break;
                }
                if self.attempt(&store, d, transport.as_mut()) {
                    failures_in_a_row = 0;
                } else {
                    failures_in_a_row += 1;
                    held_until = Some(Instant::now() + self.backoff(failures_in_a_row, d.seq));
                    break;
                }
            }
            if let Ok(c) = store.outbox_counts(Some(name)) {
                self.metrics.pending.with_label_values(&[name]).set(c.pending as i64);
            }
            let failed = failures_in_a_row > 0 && held_until.is_some_and(|t| Instant::now() < t);
            if stopping && (due.is_empty() || failed || drain_until.is_some_and(|t| Instant::now() > t)) {
                return;
            }
            if !due.is_empty() && !failed {
                continue;
            }
            let wait = match (held_until.filter(|t| Instant::now() < *t), store.next_due(name)) {
                (Some(t), _) => t
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(5), Duration::from_secs(1)),
                (None, Ok(Some(t))) => Duration::from_millis((t - now_ms()).clamp(5, 1000) as u64),
                _ => Duration::from_secs(1),
            };
            match woken.recv_timeout(wait) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// One delivery attempt; whether the receiver took it.
    fn attempt(&self, store: &Store, d: &PendingDelivery, transport: &mut dyn Transport) -> bool {
        let name = d.channel.as_str();
        match transport.deliver(&d.idem_key, &d.envelope) {
            Ok(()) => {
                let now = now_ms();
                if let Err(e) = store.mark_delivered(d.seq, now) {
                    // Delivered but not recorded: it goes again (at least once; the key dedups).
                    tracing::error!(channel = name, error = %e, "delivered, but the outbox could not record it");
                }
                self.metrics.delivered.with_label_values(&[name]).inc();
                self.metrics
                    .latency
                    .with_label_values(&[name])
                    .observe((now - d.created_ms).max(0) as f64 / 1000.0);
                true
            }
            Err(err) => {
                self.metrics.failed.with_label_values(&[name]).inc();
                let attempts = d.attempts + 1;
                let too_old = now_ms() - d.created_ms >= self.config.give_up_after.as_millis() as i64;
                let too_many = self.config.max_attempts > 0 && attempts >= self.config.max_attempts;
                if too_old || too_many {
                    tracing::error!(channel = name, notice = %d.idem_key, attempts, error = %err, "delivery dead");
                    let _ = store.mark_failed(d.seq, &err, None);
                    self.metrics.dead.with_label_values(&[name]).inc();
                    self.raise_dead(store, d, attempts, &err);
                } else {
                    let next = now_ms() + self.backoff(attempts, d.seq).as_millis() as i64;
                    tracing::warn!(channel = name, attempts, error = %err, "delivery failed; will retry");
                    let _ = store.mark_failed(d.seq, &err, Some(next));
                }
                false
            }
        }
    }

    /// Tells the site's admin (every site's, for a fleet-wide notice) that a notice died.
    fn raise_dead(&self, store: &Store, d: &PendingDelivery, attempts: u32, err: &str) {
        if Party::parse(&d.channel).is_some_and(|p| p.is_admin()) {
            return; // the admin's own channel is the one failing: metrics and logs only
        }
        let admins: Vec<Arc<ChannelSpec>> = self
            .channels()
            .into_iter()
            .filter(|c| match &c.party {
                Party::SiteAdmin(s) => d.site.is_empty() || *s == d.site,
                Party::Vendor(_) => false,
            })
            .filter(|c| c.hooks.contains(&EventType::DeliveryDead))
            .collect();
        let payload = policy::dead_letter_payload(&d.channel, &d.event_type, &d.idem_key, attempts, err);
        let now = now_ms();
        let mut rows = Vec::new();
        // One notice per failing channel per hour: an outage that kills a
        // thousand notices is one problem to the admin, not a thousand.
        let hour = (now / 3_600_000).to_string();
        for a in &admins {
            let key = crate::alert::stable_id(&["dead", &a.name, &d.channel, &hour]);
            match self.seal(a, &key, EventType::DeliveryDead, &d.site, &payload, now) {
                Ok(r) => rows.push((r, None)),
                Err(e) => tracing::error!(channel = %a.name, error = %e, "cannot seal a dead-delivery notice"),
            }
        }
        // A separate connection's transaction: the store serializes writers.
        match Store::open(store.path()).and_then(|mut s| s.commit_notices(None, &rows, now)) {
            Ok(_) => admins.iter().for_each(|a| self.wake(&a.name)),
            Err(e) => tracing::error!(error = %e, "cannot queue the dead-delivery notice"),
        }
    }
}
