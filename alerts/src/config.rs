//! `[alerts]`: the stages' timings, the channels and their transports, inhibition
//! rules, forecast and maintenance-window rules, digest schedules.

use crate::forecast::ForecastPolicy;
use crate::transport::{KafkaTopicConfig, WebhookConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the alert stages and their delivery.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Root of the encrypted file channels (`<root>/admin/<site>/events.jsonl`,
    /// `<root>/manufacturer/<vendor>/events.jsonl`); by default `outbox/` in the data directory.
    pub outbox: PathBuf,
    /// An episode (one alert per machine and class) stays open while anomalies
    /// keep coming within this gap; after it, the alert resolves and a resolved notice goes out.
    #[serde(with = "humantime_serde")]
    pub group_gap: Duration,
    /// How often open alerts are re-evaluated: silences that ended, inhibitions
    /// lifted, repeats due, stale episodes resolved, digests due.
    #[serde(with = "humantime_serde")]
    pub group_interval: Duration,
    /// A firing alert that nobody acknowledged is sent again after this long.
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Duration,
    /// Notification log entries older than this are pruned.
    #[serde(with = "humantime_serde")]
    pub notification_log_retention: Duration,
    /// A notice still undelivered this long after it was made is dead (counted
    /// and raised to the site admin); `larmor alerts requeue` sends it again.
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Delivery attempts per notice before it is dead; 0 = no limit by count,
    /// only `give_up_after` ends it.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubled each time, at most `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// On stop, how long delivery keeps going for what is due; the rest waits in
    /// the outbox for the next start.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Channels without a `recipient_key` get a key pair made in
    /// `keys/recipients/` (the embedded demo). Off: such channels are refused.
    pub demo_keys: bool,
    /// Channels with their own transport, key or hooks; a party not listed gets
    /// the encrypted file outbox and the default hooks.
    pub channel: Vec<ChannelConfig>,
    /// Alertmanager's inhibition rules: a firing source alert mutes matching targets.
    pub inhibit: Vec<InhibitRule>,
    pub forecast: ForecastPolicy,
    pub maintenance: MaintenanceConfig,
    pub digest: DigestConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            outbox: larmor_datadir::DataDir::default().outbox(),
            group_gap: Duration::from_secs(30 * 60),
            group_interval: Duration::from_secs(10),
            repeat_interval: Duration::from_secs(4 * 3600),
            notification_log_retention: Duration::from_secs(5 * 86_400),
            give_up_after: Duration::from_secs(24 * 3600),
            max_attempts: 0,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(5),
            demo_keys: true,
            channel: Vec::new(),
            inhibit: InhibitRule::defaults(),
            forecast: ForecastPolicy::default(),
            maintenance: MaintenanceConfig::default(),
            digest: DigestConfig::default(),
        }
    }
}

/// One channel's settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// `admin/<site>` or `manufacturer/<vendor>`.
    pub name: String,
    /// The party's X25519 public key (hex, from `larmor channel keygen`).
    pub recipient_key: Option<PathBuf>,
    /// The hooks it takes: `anomaly`, `forecast`, `service_request`, `digest`,
    /// `delivery_dead`. Unset: the defaults for its kind.
    pub events: Option<Vec<crate::policy::EventType>>,
    /// HTTPS with mutual TLS instead of the file outbox.
    pub webhook: Option<WebhookConfig>,
    /// A Kafka topic of the party's own instead of the file outbox.
    pub kafka: Option<KafkaTopicConfig>,
}

/// `source` alerts that fire mute `target` alerts equal on the `equal` labels.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    pub source: BTreeMap<String, String>,
    pub target: BTreeMap<String, String>,
    pub equal: Vec<String>,
}

impl InhibitRule {
    fn rule(source: &[(&str, &str)], target: &[(&str, &str)], equal: &[&str]) -> InhibitRule {
        let m = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        InhibitRule {
            source: m(source),
            target: m(target),
            equal: equal.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn defaults() -> Vec<InhibitRule> {
        vec![
            // A hot room heats the gradient chain and trips the compressor: tell the cause.
            InhibitRule::rule(
                &[("mode", "hvac_out_of_spec")],
                &[("mode", "gradient_cooling_fault")],
                &["machine"],
            ),
            InhibitRule::rule(
                &[("mode", "hvac_out_of_spec")],
                &[("mode", "compressor_failure")],
                &["machine"],
            ),
            // A failure that is happening mutes the forecast of it (its precursor).
            InhibitRule::rule(
                &[("origin", "anomaly"), ("severity", "critical")],
                &[("origin", "forecast")],
                &["machine", "mode"],
            ),
        ]
    }
}

/// Maintenance windows proposed before a forecast failure.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Length of a service visit.
    #[serde(with = "humantime_serde")]
    pub visit: Duration,
    /// When vendors' engineers work, UTC (`"Mon-Fri 08:00-18:00"`).
    pub service_hours: String,
    /// Per vendor, when not `service_hours`.
    pub vendor_service_hours: BTreeMap<String, String>,
    /// Time for the part to arrive, per failure mode.
    pub lead_time: BTreeMap<String, humantime_serde::Serde<Duration>>,
    /// Windows start on this grid.
    #[serde(with = "humantime_serde")]
    pub step: Duration,
    /// How often the schedules (`schedules/` in the data directory) are reread.
    #[serde(with = "humantime_serde")]
    pub reload_every: Duration,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        let d = |h: u64| Duration::from_secs(h * 3600);
        MaintenanceConfig {
            visit: d(4),
            service_hours: "Mon-Fri 08:00-18:00".into(),
            vendor_service_hours: BTreeMap::new(),
            lead_time: [
                ("cold_head_degradation", d(72)),
                ("compressor_failure", d(48)),
                ("chiller_fault", d(4)),
                ("helium_leak", d(24)),
                ("gradient_cooling_fault", d(24)),
                ("hvac_out_of_spec", d(2)),
                ("compressor_bearing_wear", d(120)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect(),
            step: Duration::from_secs(1800),
            reload_every: Duration::from_secs(600),
        }
    }
}

/// Scheduled digests, as cron expressions (UTC; five fields); `""` turns one off.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DigestConfig {
    /// The fleet forecast each manufacturer gets for its own machines.
    pub vendor_forecast: String,
    /// The summary each site admin gets of its site's alerts.
    pub site_summary: String,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            vendor_forecast: "0 6 * * *".into(),
            site_summary: "0 7 * * MON".into(),
        }
    }
}

impl MaintenanceConfig {
    /// The part's lead time for `mode` (none configured: no wait).
    pub fn lead_time(&self, mode: larmor_datasets::FailureMode) -> Duration {
        self.lead_time.get(mode.slug()).map(|d| **d).unwrap_or_default()
    }

    /// The service hours of `vendor`.
    pub fn hours(&self, vendor: &str) -> crate::schedule::ServiceHours {
        let text = self.vendor_service_hours.get(vendor).unwrap_or(&self.service_hours);
        crate::schedule::ServiceHours::parse(text).unwrap_or(crate::schedule::ServiceHours {
            days: [true, true, true, true, true, false, false],
            start_min: 8 * 60,
            end_min: 18 * 60,
        })
    }
}

impl AlertsConfig {
    /// Checks what serde cannot: names, hours, cron expressions, modes.
    pub fn validate(&self) -> Result<(), String> {
        let mut keys: BTreeMap<&std::path::Path, &str> = BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        for c in &self.channel {
            if crate::policy::Party::parse(&c.name).is_none() {
                return Err(format!(
                    "[[alerts.channel]] name {:?}: want \"admin/<site>\" or \"manufacturer/<vendor>\"",
                    c.name
                ));
            }
            if !names.insert(c.name.as_str()) {
                return Err(format!("[[alerts.channel]] {:?} is configured twice: keep one", c.name));
            }
            // Separate parties, separate keys: one key for two channels would let
            // either party read the other's notices.
            if let Some(k) = &c.recipient_key
                && let Some(other) = keys.insert(k, &c.name)
            {
                return Err(format!(
                    "[[alerts.channel]] {:?} and {other:?} share the recipient key {}: give each party its own (`larmor channel keygen`)",
                    c.name,
                    k.display()
                ));
            }
        }
        crate::schedule::ServiceHours::parse(&self.maintenance.service_hours)?;
        for h in self.maintenance.vendor_service_hours.values() {
            crate::schedule::ServiceHours::parse(h)?;
        }
        for m in self.maintenance.lead_time.keys() {
            if larmor_datasets::FailureMode::from_slug(m).is_none() {
                return Err(format!("[alerts.maintenance.lead_time] {m:?} is not a failure mode"));
            }
        }
        for (name, expr) in [
            ("vendor_forecast", &self.digest.vendor_forecast),
            ("site_summary", &self.digest.site_summary),
        ] {
            if !expr.trim().is_empty() {
                croner::Cron::new(expr)
                    .parse()
                    .map_err(|e| format!("[alerts.digest] {name} = {expr:?}: {e}"))?;
            }
        }
        if self.give_up_after.is_zero() {
            return Err("alerts.give_up_after must be more than 0 (e.g. \"24h\")".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str, key: Option<&str>) -> ChannelConfig {
        ChannelConfig {
            name: name.into(),
            recipient_key: key.map(PathBuf::from),
            events: None,
            webhook: None,
            kafka: None,
        }
    }

    #[test]
    fn two_parties_never_share_a_key_or_a_name() {
        let mut c = AlertsConfig {
            channel: vec![
                channel("admin/st-anne", Some("/k/st-anne.pub")),
                channel("manufacturer/aurora", Some("/k/aurora.pub")),
            ],
            ..Default::default()
        };
        assert_eq!(c.validate(), Ok(()));
        c.channel.push(channel("manufacturer/boreal", Some("/k/aurora.pub")));
        let e = c.validate().unwrap_err();
        assert!(e.contains("share the recipient key") && e.contains("boreal"), "{e}");
        c.channel.pop();
        c.channel.push(channel("admin/st-anne", None));
        assert!(c.validate().unwrap_err().contains("configured twice"));
        c.channel.pop();
        c.give_up_after = Duration::ZERO;
        assert!(c.validate().unwrap_err().contains("give_up_after"));
    }
}
