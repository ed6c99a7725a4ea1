//! `larmor alerts`: list, acknowledge, silence and resolve alerts in the alert
//! store of a data directory, while `larmor run` works on it or not. A resolve
//! sends its resolved notices (sealed, through the outbox) before returning.

use super::common::load_config;
use larmor_alerts::store::{Silence, Store};
use larmor_alerts::{AlertMetrics, AlertPipeline, AlertState};
use larmor_datadir::DataDir;
use larmor_ingest::DeviceRegistry;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Where {
    /// Settings file: its `[archive] path` says where the data directory is.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The data directory (holding alerts.db). Default: the archive's parent.
    #[arg(long, global = true)]
    data: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum AlertsCommand {
    /// Alerts, newest first; also the active silences and the outbox's state.
    List {
        /// firing, acknowledged or resolved. Default: all.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an alert: no more repeats; it still resolves.
    Ack {
        /// Alert id (or a unique prefix).
        id: String,
        #[arg(long, default_value = "operator")]
        by: String,
    },
    /// Resolve an alert now and send its resolved notices.
    Resolve {
        id: String,
        #[arg(long, default_value = "operator")]
        by: String,
    },
    /// Silence alerts matching every given label for a time (or end a silence with --expire).
    Silence {
        #[arg(long)]
        machine: Option<String>,
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        vendor: Option<String>,
        /// Failure mode slug, e.g. cold_head_degradation.
        #[arg(long)]
        mode: Option<String>,
        /// How long, e.g. `4h`.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long, default_value = "operator")]
        by: String,
        /// End the silence with this id now.
        #[arg(long)]
        expire: Option<String>,
    },
    /// Send dead notices again (after their receiver is fixed): they go back to
    /// pending with their attempts reset, and a running `larmor run` delivers them.
    Requeue {
        /// Only this channel's, e.g. `manufacturer/aurora`. Default: every channel's.
        #[arg(long)]
        channel: Option<String>,
    },
}

fn data_dir(w: &Where) -> anyhow::Result<(DataDir, larmor::config::LarmorConfig)> {
    let cfg = load_config(&w.config)?;
    let data = match &w.data {
        Some(d) => DataDir::new(d),
        None => DataDir::around(&cfg.archive.path),
    };
    Ok((data, cfg))
}

fn open_store(data: &DataDir) -> anyhow::Result<Store> {
    let p = data.alert_store();
    if !p.exists() {
        anyhow::bail!(
            "no alert store at {}: run `larmor run` first, or pass --data DIR / --config FILE",
            p.display()
        );
    }
    Ok(Store::open(&p)?)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

pub fn alerts(cmd: AlertsCommand, w: Where) -> anyhow::Result<()> {
    let (data, cfg) = data_dir(&w)?;
    match cmd {
        AlertsCommand::List { state, limit, json } => {
            let state = state
                .map(|s| {
                    AlertState::parse(&s)
                        .ok_or_else(|| anyhow::anyhow!("--state {s:?}: firing, acknowledged or resolved"))
                })
                .transpose()?;
            let store = open_store(&data)?;
            let alerts = store.list(state, limit)?;
            if json {
                for a in &alerts {
                    println!("{}", serde_json::to_string(a)?);
                }
                return Ok(());
            }
            println!(
                "{:<12} {:<12} {:<9} {:<10} {:<15} {:<24} {:<19} summary",
                "id", "state", "severity", "machine", "class", "mode", "since"
            );
            for a in &alerts {
                println!(
                    "{:<12} {:<12} {:<9} {:<10} {:<15} {:<24} {:<19} {}",
                    &a.id[..12.min(a.id.len())],
                    a.state.as_str(),
                    a.severity.as_str(),
                    a.machine_id,
                    a.class.as_str(),
                    a.mode.map(|m| m.slug()).unwrap_or("-"),
                    time(a.starts_at_ms),
                    a.summary
                );
            }
            let silences = store.silences(now_ms())?;
            if !silences.is_empty() {
                println!("\nsilences:");
                for s in silences {
                    println!(
                        "  {}  {:?}  {} → {}  by {}  {}",
                        s.id,
                        s.matchers,
                        time(s.starts_at_ms),
                        time(s.ends_at_ms),
                        s.created_by,
                        s.comment
                    );
                }
            }
            let c = store.outbox_counts(None)?;
            println!(
                "\noutbox: {} pending, {} delivered, {} dead",
                c.pending, c.delivered, c.dead
            );
        }
        AlertsCommand::Ack { id, by } => {
            let mut p = pipeline(&data, &cfg)?;
            let a = p.acknowledge(&id, &by).map_err(anyhow::Error::msg)?;
            println!("acknowledged {} ({}): no more repeats", a.id, a.summary);
        }
        AlertsCommand::Resolve { id, by } => {
            let mut p = pipeline(&data, &cfg)?;
            let a = p.resolve_by_id(&id, &by).map_err(anyhow::Error::msg)?;
            drop(p); // delivers the resolved notices (at most alerts.drain_timeout)
            let store = open_store(&data)?;
            let c = store.outbox_counts(None)?;
            println!(
                "resolved {} ({}); outbox: {} pending, {} dead",
                a.id, a.summary, c.pending, c.dead
            );
        }
        AlertsCommand::Silence {
            machine,
            site,
            vendor,
            mode,
            duration,
            comment,
            by,
            expire,
        } => {
            let store = open_store(&data).or_else(|_| Ok::<_, anyhow::Error>(Store::open(&data.alert_store())?))?;
            if let Some(id) = expire {
                if !store.expire_silence(&id, now_ms())? {
                    anyhow::bail!("no silence {id:?}: see `larmor alerts list`");
                }
                println!("silence {id} ended");
                return Ok(());
            }
            let matchers: BTreeMap<String, String> =
                [("machine", machine), ("site", site), ("vendor", vendor), ("mode", mode)]
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
                    .collect();
            if matchers.is_empty() {
                anyhow::bail!("say what to silence: --machine, --site, --vendor and/or --mode");
            }
            if let Some(m) = matchers.get("mode")
                && larmor_datasets::FailureMode::from_slug(m).is_none()
            {
                anyhow::bail!("--mode {m:?} is not a failure mode (e.g. cold_head_degradation)");
            }
            let Some(d) = duration else {
                anyhow::bail!("say for how long: --for 4h (a silence always expires)");
            };
            let now = now_ms();
            let Some(ends_at_ms) = i64::try_from(d.as_millis()).ok().and_then(|ms| now.checked_add(ms)) else {
                anyhow::bail!(
                    "--for {}: too long; give a duration of at most a few years",
                    humantime::format_duration(d)
                );
            };
            let s = Silence {
                id: larmor_alerts::alert::stable_id(&[&format!("{matchers:?}"), &now.to_string()])[..12].to_string(),
                matchers,
                starts_at_ms: now,
                ends_at_ms,
                created_by: by,
                comment,
            };
            store.add_silence(&s)?;
            println!("silence {} until {} UTC", s.id, time(s.ends_at_ms));
        }
        AlertsCommand::Requeue { channel } => {
            let store = open_store(&data)?;
            let n = store.requeue_dead(channel.as_deref(), now_ms())?;
            println!(
                "{n} dead notice(s) back in the outbox{}; `larmor run` delivers them",
                channel.map(|c| format!(" for {c}")).unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// The stages and delivery, without the rest of `larmor run`.
fn pipeline(data: &DataDir, cfg: &larmor::config::LarmorConfig) -> anyhow::Result<AlertPipeline> {
    open_store(data)?;
    let registry = match &cfg.registry.path {
        Some(p) => DeviceRegistry::load(p)?,
        None if data.registry().exists() => DeviceRegistry::load(&data.registry())?,
        None => DeviceRegistry::new(Vec::new())?,
    };
    AlertPipeline::start(
        cfg.alerts.clone(),
        Arc::new(registry),
        data,
        AlertMetrics::unregistered(),
    )
    .map_err(anyhow::Error::msg)
}
