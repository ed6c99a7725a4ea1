//! Who may be told what. There is one admin channel per hospital site and one
//! manufacturer channel per vendor. Each notice is built field by field from
//! an allow-list per party kind, event type and alert class ([`allowed`]): a
//! field not on the list is never copied into the payload, so nothing has to be
//! removed afterwards. A manufacturer gets its own machines' health, alerts and
//! forecasts; never room occupancy, door or climate data, appointments, site
//! names or other vendors' machines; an environment problem only as the flag
//! `environment_out_of_spec`. An admin gets everything about its own site and
//! nothing about another.

use crate::alert::{Alert, AlertClass};
use crate::schedule::Proposal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Who receives a channel's notices.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    /// A hospital site's administrators: everything about their site.
    SiteAdmin(String),
    /// A manufacturer's service team: its own machines' health only.
    Vendor(String),
}

impl Party {
    /// The channel's name: `admin/<site>` or `manufacturer/<vendor>` (also its
    /// outbox directory and its metrics label).
    pub fn channel_name(&self) -> String {
        match self {
            Party::SiteAdmin(s) => format!("admin/{s}"),
            Party::Vendor(v) => format!("manufacturer/{v}"),
        }
    }

    pub fn parse(s: &str) -> Option<Party> {
        // Any site or vendor name: files are named through
        // `larmor_datadir::naming::channel_path`, which keeps them safe.
        let (kind, name) = s.split_once('/')?;
        if name.is_empty() {
            return None;
        }
        match kind {
            "admin" => Some(Party::SiteAdmin(name.into())),
            "manufacturer" => Some(Party::Vendor(name.into())),
            _ => None,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Party::SiteAdmin(_))
    }

    /// Whether the alert is about this party's own machines.
    pub fn concerns(&self, a: &Alert) -> bool {
        match self {
            Party::SiteAdmin(s) => a.site == *s,
            Party::Vendor(v) => a.vendor == *v,
        }
    }
}

/// The kinds of notice, each a hook that can be switched on per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// An alert from anomalies: firing, updated, resolved.
    Anomaly,
    /// An alert from a forecast (with a maintenance proposal for the admin).
    Forecast,
    /// A manufacturer's service request for a forecast failure.
    ServiceRequest,
    /// A scheduled digest.
    Digest,
    /// A notice that could not be delivered (to the site's admin).
    DeliveryDead,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::Anomaly,
        EventType::Forecast,
        EventType::ServiceRequest,
        EventType::Digest,
        EventType::DeliveryDead,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Anomaly => "anomaly",
            EventType::Forecast => "forecast",
            EventType::ServiceRequest => "service_request",
            EventType::Digest => "digest",
            EventType::DeliveryDead => "delivery_dead",
        }
    }
    /// The hooks a channel has when its configuration names none.
    pub fn defaults_for(party: &Party) -> Vec<EventType> {
        match party {
            Party::SiteAdmin(_) => vec![
                EventType::Anomaly,
                EventType::Forecast,
                EventType::Digest,
                EventType::DeliveryDead,
            ],
            Party::Vendor(_) => vec![EventType::Anomaly, EventType::ServiceRequest, EventType::Digest],
        }
    }
}

/// Every field a notice can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Type,
    Status,
    AlertId,
    Machine,
    Site,
    Vendor,
    Model,
    Class,
    Severity,
    Mode,
    StartsAt,
    EndsAt,
    Summary,
    Action,
    AnomalyCount,
    /// Every piece of evidence, room channels included.
    Evidence,
    /// Evidence from the machine's own streams (temperature, vibration) only.
    MachineEvidence,
    /// `environment_out_of_spec: true`, and nothing about the environment itself.
    EnvironmentFlag,
    Forecast,
    /// The maintenance window as an iCalendar VEVENT, with the booked exams it
    /// moves counted (never named).
    MaintenanceProposal,
    /// The window alone (start, end, latest safe date): no appointment detail.
    ServiceWindow,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Type => "type",
            Field::Status => "status",
            Field::AlertId => "alert_id",
            Field::Machine => "machine_id",
            Field::Site => "site",
            Field::Vendor => "manufacturer",
            Field::Model => "model",
            Field::Class => "class",
            Field::Severity => "severity",
            Field::Mode => "suspected_failure_mode",
            Field::StartsAt => "starts_at",
            Field::EndsAt => "ends_at",
            Field::Summary => "summary",
            Field::Action => "recommended_action",
            Field::AnomalyCount => "anomalies",
            Field::Evidence | Field::MachineEvidence => "evidence",
            Field::EnvironmentFlag => "environment_out_of_spec",
            Field::Forecast => "forecast",
            Field::MaintenanceProposal => "maintenance_proposal",
            Field::ServiceWindow => "service_window",
        }
    }
}

use Field::*;

const ADMIN_ALERT: &[Field] = &[
    Type,
    Field::Status,
    AlertId,
    Machine,
    Site,
    Vendor,
    Model,
    Class,
    Severity,
    Mode,
    StartsAt,
    EndsAt,
    Summary,
    Action,
    AnomalyCount,
    Evidence,
    Forecast,
    MaintenanceProposal,
];
const VENDOR_MACHINE_ALERT: &[Field] = &[
    Type,
    Field::Status,
    AlertId,
    Machine,
    Vendor,
    Model,
    Class,
    Severity,
    Mode,
    StartsAt,
    EndsAt,
    Action,
    AnomalyCount,
    MachineEvidence,
    Forecast,
];
const VENDOR_ENVIRONMENT_ALERT: &[Field] = &[
    Type,
    Field::Status,
    AlertId,
    Machine,
    Model,
    StartsAt,
    EndsAt,
    EnvironmentFlag,
];
const VENDOR_SERVICE_REQUEST: &[Field] = &[
    Type,
    AlertId,
    Machine,
    Vendor,
    Model,
    Severity,
    Mode,
    MachineEvidence,
    Forecast,
    ServiceWindow,
];

/// The fields `party` may receive for an alert of `class` as an `event` notice;
/// empty when it may receive none.
pub fn allowed(party: &Party, event: EventType, class: AlertClass) -> &'static [Field] {
    match (party, event, class) {
        (Party::SiteAdmin(_), EventType::Anomaly | EventType::Forecast, _) => ADMIN_ALERT,
        (Party::SiteAdmin(_), _, _) => &[],
        // An environment problem reaches a vendor only as a flag, whatever the notice.
        (Party::Vendor(_), EventType::Anomaly | EventType::Forecast, AlertClass::Environment) => {
            VENDOR_ENVIRONMENT_ALERT
        }
        (Party::Vendor(_), EventType::Anomaly | EventType::Forecast, _) => VENDOR_MACHINE_ALERT,
        (Party::Vendor(_), EventType::ServiceRequest, AlertClass::Forecast) => VENDOR_SERVICE_REQUEST,
        (Party::Vendor(_), _, _) => &[],
    }
}

/// Whether the alert is firing or resolved, as told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

fn time(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

/// The payload for `party` about `alert`, or None when it may not be told.
pub fn alert_payload(
    party: &Party,
    event: EventType,
    alert: &Alert,
    status: Status,
    proposal: Option<&Proposal>,
) -> Option<Map<String, Value>> {
    if !party.concerns(alert) {
        return None;
    }
    let fields = allowed(party, event, alert.class);
    if fields.is_empty() {
        return None;
    }
    // A vendor hears of a sensor fault only when it is one of its machine's own sensors.
    let machine_evidence: Vec<&crate::alert::Evidence> = alert
        .evidence
        .iter()
        .filter(|e| !e.stream.is_hospital_private())
        .collect();
    if !party.is_admin()
        && alert.class != AlertClass::Environment
        && machine_evidence.is_empty()
        && alert.forecast.is_none()
    {
        return None;
    }
    let mut out = Map::new();
    for f in fields {
        let v = match f {
            Type => json!(event.as_str()),
            Field::Status => json!(status),
            AlertId => json!(alert.id),
            Machine => json!(alert.machine_id),
            Site => json!(alert.site),
            Vendor => json!(alert.vendor),
            Model => json!(alert.model),
            Class => json!(alert.class),
            Severity => json!(alert.severity),
            Mode => json!(alert.mode.map(|m| m.slug())),
            StartsAt => time(alert.starts_at_ms),
            EndsAt => alert.ends_at_ms.map(time).unwrap_or(Value::Null),
            Summary => json!(alert.summary),
            Action => json!(alert.action),
            AnomalyCount => json!(alert.anomalies),
            Evidence => json!(alert.evidence),
            MachineEvidence => json!(machine_evidence),
            EnvironmentFlag => json!(true),
            Forecast => match &alert.forecast {
                Some(f) => json!(f),
                None => continue,
            },
            MaintenanceProposal => match proposal {
                Some(p) => json!({
                    "vevent": p.vevent(&alert.machine_id, alert.mode),
                    "start": time(p.start_ms),
                    "end": time(p.end_ms),
                    "latest_safe_start": time(p.deadline_ms),
                    "booked_exams_affected": p.affected_exams,
                }),
                None => continue,
            },
            ServiceWindow => match proposal {
                Some(p) => {
                    json!({"start": time(p.start_ms), "end": time(p.end_ms), "latest_safe_start": time(p.deadline_ms)})
                }
                None => {
                    json!({"start": null, "end": null, "note": "no window found before the predicted failure: please call the site"})
                }
            },
        };
        out.insert(f.name().to_string(), v);
    }
    Some(out)
}

/// A delivery that died, told to the site's admin: which channel, what kind, why.
pub fn dead_letter_payload(
    dead_channel: &str,
    event_type: &str,
    idem_key: &str,
    attempts: u32,
    error: &str,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!(EventType::DeliveryDead.as_str()));
    m.insert("channel".into(), json!(dead_channel));
    m.insert("event_type".into(), json!(event_type));
    m.insert("notice_id".into(), json!(idem_key));
    m.insert("attempts".into(), json!(attempts));
    m.insert("last_error".into(), json!(error));
    m.insert(
        "action".into(),
        json!("check the channel's receiver and its keys, then `larmor alerts requeue --channel CHANNEL` sends its dead notices again (one such notice per channel per hour)"),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip_whatever_the_registry_calls_a_party() {
        for p in [
            Party::SiteAdmin("st-anne".into()),
            Party::Vendor("aurora".into()),
            Party::SiteAdmin("../x".into()),
            Party::SiteAdmin("a/b".into()),
        ] {
            assert_eq!(Party::parse(&p.channel_name()), Some(p));
        }
        assert_eq!(Party::parse("admin/"), None);
        assert_eq!(Party::parse("someone/x"), None);
    }

    #[test]
    fn vendors_never_get_site_summary_or_raw_evidence_fields() {
        for class in [
            AlertClass::MachineHealth,
            AlertClass::Environment,
            AlertClass::SensorFault,
            AlertClass::Forecast,
        ] {
            for ev in EventType::ALL {
                let f = allowed(&Party::Vendor("v".into()), ev, class);
                for banned in [Site, Summary, Evidence, MaintenanceProposal] {
                    assert!(!f.contains(&banned), "{banned:?} in {ev:?}/{class:?}");
                }
            }
        }
    }
}
