//! Wire format v1: one JSON frame per Kafka message (see `ingest/README.md`).
//!
//! Decoding never panics on outside input: every failure is a [`Reject`] with a
//! machine-readable reason (used as the dead-letter header) and a human detail.

use crate::channels::{ChannelId, Stream};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// Major version this build understands; minor versions only add optional fields.
pub const WIRE_MAJOR: u32 = 1;
pub const WIRE_VERSION: &str = "1.0";
/// Larger messages are rejected before parsing. A frame of 100 samples of every
/// temperature channel is about 60 KiB; anything near this limit is not telemetry.
pub const MAX_FRAME_BYTES: usize = 256 << 10;
/// Timestamps outside 2000-01-01 .. 2100-01-01 are not plausible telemetry.
const TS_MIN_MS: i64 = 946_684_800_000;
const TS_MAX_MS: i64 = 4_102_444_800_000;

/// One sample: every channel value measured at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub ts_ms: i64,
    pub values: Vec<(ChannelId, f64)>,
}

/// A telemetry frame from one machine on one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub machine_id: String,
    pub stream: Stream,
    /// Per (machine, stream) sequence number, strictly increasing.
    pub seq: u64,
    /// When the frame was sent (UTC, ms since the Unix epoch).
    pub ts_ms: i64,
    pub samples: Vec<Sample>,
}

impl Frame {
    /// A frame holding one reading (tools and tests).
    pub fn single(machine_id: &str, stream: Stream, seq: u64, ts_ms: i64, channel: ChannelId, value: f64) -> Frame {
        Frame {
            machine_id: machine_id.to_string(),
            stream,
            seq,
            ts_ms,
            samples: vec![Sample {
                ts_ms,
                values: vec![(channel, value)],
            }],
        }
    }

    pub fn reading_count(&self) -> usize {
        self.samples.iter().map(|s| s.values.len()).sum()
    }

    /// Encodes the frame as wire format v1 JSON.
    pub fn encode(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Out<'a> {
            version: &'static str,
            machine_id: &'a str,
            stream: Stream,
            seq: u64,
            ts: i64,
            samples: Vec<OutSample<'a>>,
        }
        #[derive(Serialize)]
        struct OutSample<'a> {
            ts: i64,
            values: OutValues<'a>,
        }
        struct OutValues<'a>(&'a [(ChannelId, f64)]);
        impl Serialize for OutValues<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (c, v) in self.0 {
                    m.serialize_entry(c.name(), v)?;
                }
                m.end()
            }
        }
        let out = Out {
            version: WIRE_VERSION,
            machine_id: &self.machine_id,
            stream: self.stream,
            seq: self.seq,
            ts: self.ts_ms,
            samples: self
                .samples
                .iter()
                .map(|s| OutSample {
                    ts: s.ts_ms,
                    values: OutValues(&s.values),
                })
                .collect(),
        };
        serde_json::to_vec(&out).expect("frames always serialize")
    }
}

/// Why a message was refused. `code()` is stable: it is the dead-letter header
/// value and the `reason` label of `larmor_dlq_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    Empty,
    TooLarge,
    MalformedJson,
    UnsupportedVersion,
    InvalidField,
    NonFinite,
    UnknownChannel,
    StreamMismatch,
    ImpossibleValue,
    BadTimestamp,
    UnknownDevice,
    RevokedDevice,
    BadSignature,
    Replay,
    ClockSkew,
}

impl RejectReason {
    pub const ALL: [RejectReason; 15] = [
        RejectReason::Empty,
        RejectReason::TooLarge,
        RejectReason::MalformedJson,
        RejectReason::UnsupportedVersion,
        RejectReason::InvalidField,
        RejectReason::NonFinite,
        RejectReason::UnknownChannel,
        RejectReason::StreamMismatch,
        RejectReason::ImpossibleValue,
        RejectReason::BadTimestamp,
        RejectReason::UnknownDevice,
        RejectReason::RevokedDevice,
        RejectReason::BadSignature,
        RejectReason::Replay,
        RejectReason::ClockSkew,
    ];

    pub fn code(self) -> &'static str {
        match self {
            RejectReason::Empty => "empty",
            RejectReason::TooLarge => "too_large",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::NonFinite => "non_finite",
            RejectReason::UnknownChannel => "unknown_channel",
            RejectReason::StreamMismatch => "stream_mismatch",
            RejectReason::ImpossibleValue => "impossible_value",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::UnknownDevice => "unknown_device",
            RejectReason::RevokedDevice => "revoked_device",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::Replay => "replay",
            RejectReason::ClockSkew => "clock_skew",
        }
    }
}

/// A refused message: the reason code and a detail for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Reject {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow)]
    version: Cow<'a, str>,
    #[serde(borrow)]
    machine_id: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    seq: u64,
    ts: i64,
    #[serde(borrow)]
    samples: Vec<RawSample<'a>>,
}

#[derive(Deserialize)]
struct RawSample<'a> {
    ts: i64,
    #[serde(borrow)]
    values: RawValues<'a>,
}

/// Channel values kept in message order, names borrowed from the input.
struct RawValues<'a>(Vec<(Cow<'a, str>, RawNumber)>);

/// A value as sent: a finite number, or a spelling of NaN/Inf (rejected later
/// with its own reason rather than as broken JSON).
#[derive(Clone, Copy)]
enum RawNumber {
    Finite(f64),
    NonFinite,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawValues<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawValues<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of channel name to number")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(16));
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    let v = m.next_value::<NumberOrSpelling>()?;
                    out.push((k, v.0));
                }
                Ok(RawValues(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

struct NumberOrSpelling(RawNumber);

impl<'de> Deserialize<'de> for NumberOrSpelling {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NumberOrSpelling;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(NumberOrSpelling(if v.is_finite() {
                    RawNumber::Finite(v)
                } else {
                    RawNumber::NonFinite
                }))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(NumberOrSpelling(RawNumber::Finite(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(NumberOrSpelling(RawNumber::Finite(v as f64)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v.trim_start_matches(['+', '-']).to_ascii_lowercase().as_str() {
                    "nan" | "inf" | "infinity" => Ok(NumberOrSpelling(RawNumber::NonFinite)),
                    _ => Err(E::invalid_type(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn classify_json_error(bytes: &[u8], e: &serde_json::Error) -> Reject {
    use serde_json::error::Category;
    let msg = e.to_string();
    match e.classify() {
        Category::Syntax | Category::Eof => {
            // JSON has no NaN/Infinity literals; producers that emit them get a precise reason.
            let text = String::from_utf8_lossy(bytes);
            if msg.contains("number out of range") || text.contains("NaN") || text.contains("Infinity") {
                Reject::new(RejectReason::NonFinite, msg)
            } else {
                Reject::new(RejectReason::MalformedJson, msg)
            }
        }
        Category::Data | Category::Io => {
            // A frame of a newer major version may not match v1 fields at all: say so.
            #[derive(Deserialize)]
            struct Probe<'a> {
                #[serde(borrow)]
                version: Cow<'a, str>,
            }
            if let Ok(p) = serde_json::from_slice::<Probe>(bytes)
                && major_of(&p.version) != Some(WIRE_MAJOR)
            {
                return unsupported(&p.version);
            }
            Reject::new(RejectReason::InvalidField, msg)
        }
    }
}

fn major_of(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

fn unsupported(version: &str) -> Reject {
    Reject::new(
        RejectReason::UnsupportedVersion,
        format!("wire version {version:?} is not supported; this build reads major version {WIRE_MAJOR}"),
    )
}

/// Decodes and validates one message. `topic_stream` is the stream of the topic it
/// arrived on: a frame must be on its own stream's topic.
pub fn decode(bytes: &[u8], topic_stream: Stream) -> Result<Frame, Reject> {
    if bytes.is_empty() {
        return Err(Reject::new(RejectReason::Empty, "empty message"));
    }
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(Reject::new(
            RejectReason::TooLarge,
            format!("{} bytes exceeds the {} byte limit", bytes.len(), MAX_FRAME_BYTES),
        ));
    }
    let raw: RawFrame = serde_json::from_slice(bytes).map_err(|e| classify_json_error(bytes, &e))?;
    if major_of(&raw.version) != Some(WIRE_MAJOR) {
        return Err(unsupported(&raw.version));
    }
    let stream = Stream::parse(&raw.stream)
        .ok_or_else(|| Reject::new(RejectReason::InvalidField, format!("unknown stream {:?}", raw.stream)))?;
    if stream != topic_stream {
        return Err(Reject::new(
            RejectReason::StreamMismatch,
            format!("a {stream} frame arrived on the {topic_stream} topic"),
        ));
    }
    if raw.machine_id.is_empty() || raw.machine_id.len() > 64 {
        return Err(Reject::new(
            RejectReason::InvalidField,
            "machine_id must be 1-64 characters",
        ));
    }
    check_ts(raw.ts, "frame ts")?;
    if raw.samples.is_empty() {
        return Err(Reject::new(RejectReason::InvalidField, "frame has no samples"));
    }
    let mut samples = Vec::with_capacity(raw.samples.len());
    for s in raw.samples {
        check_ts(s.ts, "sample ts")?;
        let mut values = Vec::with_capacity(s.values.0.len());
        let mut seen = 0u64; // one bit per channel: the catalogue has fewer than 64
        for (name, v) in s.values.0 {
            let id = ChannelId::from_name(&name)
                .ok_or_else(|| Reject::new(RejectReason::UnknownChannel, format!("unknown channel {name:?}")))?;
            if seen & (1 << id.0) != 0 {
                return Err(Reject::new(
                    RejectReason::InvalidField,
                    format!("channel {name} appears twice in one sample"),
                ));
            }
            seen |= 1 << id.0;
            let spec = id.spec();
            if spec.stream != stream {
                return Err(Reject::new(
                    RejectReason::StreamMismatch,
                    format!("channel {name} belongs to the {} stream, not {stream}", spec.stream),
                ));
            }
            let v = match v {
                RawNumber::Finite(v) => v,
                RawNumber::NonFinite => {
                    return Err(Reject::new(
                        RejectReason::NonFinite,
                        format!("{name} is NaN or infinite"),
                    ));
                }
            };
            if v < spec.physical_min || v > spec.physical_max {
                return Err(Reject::new(
                    RejectReason::ImpossibleValue,
                    format!(
                        "{name} = {v} {} is outside the physical range {}..{}",
                        spec.unit, spec.physical_min, spec.physical_max
                    ),
                ));
            }
            values.push((id, v));
        }
        samples.push(Sample { ts_ms: s.ts, values });
    }
    Ok(Frame {
        machine_id: raw.machine_id.into_owned(),
        stream,
        seq: raw.seq,
        ts_ms: raw.ts,
        samples,
    })
}

fn check_ts(ts: i64, what: &str) -> Result<(), Reject> {
    if (TS_MIN_MS..TS_MAX_MS).contains(&ts) {
        Ok(())
    } else {
        Err(Reject::new(
            RejectReason::BadTimestamp,
            format!("{what} {ts} is not a UTC millisecond timestamp between 2000 and 2100"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        let he = ChannelId::from_name("helium_level_pct").unwrap();
        let s2 = ChannelId::from_name("coldhead_stage2_k").unwrap();
        Frame {
            machine_id: "MRI-0001".into(),
            stream: Stream::Temperature,
            seq: 7,
            ts_ms: 1_764_300_000_000,
            samples: vec![
                Sample {
                    ts_ms: 1_764_300_000_000,
                    values: vec![(he, 81.5), (s2, 4.1)],
                },
                Sample {
                    ts_ms: 1_764_300_001_000,
                    values: vec![(he, 81.4), (s2, 4.2)],
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let f = frame();
        assert_eq!(decode(&f.encode(), Stream::Temperature).unwrap(), f);
        assert_eq!(f.reading_count(), 4);
    }

    fn reason(bytes: &[u8]) -> RejectReason {
        decode(bytes, Stream::Temperature).unwrap_err().reason
    }

    #[test]
    fn rejects_bad_input_with_reasons() {
        let good = String::from_utf8(frame().encode()).unwrap();
        assert_eq!(reason(b""), RejectReason::Empty);
        assert_eq!(reason(&vec![b' '; MAX_FRAME_BYTES + 1]), RejectReason::TooLarge);
        assert_eq!(reason(b"{not json"), RejectReason::MalformedJson);
        assert_eq!(reason(&good.as_bytes()[..good.len() - 3]), RejectReason::MalformedJson);
        assert_eq!(
            reason(good.replace("\"1.0\"", "\"2.0\"").as_bytes()),
            RejectReason::UnsupportedVersion
        );
        assert_eq!(
            reason(br#"{"version":"3.1","payload":"something else"}"#),
            RejectReason::UnsupportedVersion
        );
        assert_eq!(
            reason(good.replace("81.5", "\"high\"").as_bytes()),
            RejectReason::InvalidField
        );
        assert_eq!(
            reason(good.replace("\"seq\":7,", "").as_bytes()),
            RejectReason::InvalidField
        );
        assert_eq!(reason(good.replace("81.5", "NaN").as_bytes()), RejectReason::NonFinite);
        assert_eq!(
            reason(good.replace("81.5", "\"-Infinity\"").as_bytes()),
            RejectReason::NonFinite
        );
        assert_eq!(
            reason(good.replace("81.5", "1e999").as_bytes()),
            RejectReason::NonFinite
        );
        assert_eq!(
            reason(good.replace("helium_level_pct", "flux").as_bytes()),
            RejectReason::UnknownChannel
        );
        assert_eq!(
            reason(good.replace("helium_level_pct", "room_o2_pct").as_bytes()),
            RejectReason::StreamMismatch
        );
        assert_eq!(
            reason(good.replace("81.5", "-3").as_bytes()),
            RejectReason::ImpossibleValue
        );
        assert_eq!(
            reason(good.replace("1764300000000", "17643").as_bytes()),
            RejectReason::BadTimestamp
        );
        assert_eq!(
            decode(good.as_bytes(), Stream::Room).unwrap_err().reason,
            RejectReason::StreamMismatch
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let good = frame().encode();
        // Every truncation and every single-byte corruption of a good frame.
        for cut in 0..good.len() {
            let _ = decode(&good[..cut], Stream::Temperature);
            let mut b = good.clone();
            b[cut] = b[cut].wrapping_add(37);
            let _ = decode(&b, Stream::Temperature);
        }
    }
}
