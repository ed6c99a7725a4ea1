//! The sensor-fault detector of the pipeline, per machine and frame: runs the
//! per-channel stuck and spike trackers, and judges what only frames show:
//! a whole stream gone silent (one anomaly when it resumes) and a channel
//! missing from a stream that keeps reporting (one anomaly while it lasts).

use super::clock::{ClockParams, ClockSkew, RHYTHM_CHANNEL, Rhythm};
use super::spikes::{SpikeParams, SpikeTracker, spike_explanation};
use super::stuck::{Intervals, SensorFaultKernel};
use super::{SensorFaultParams, fmt_ms};
use crate::detect::series::{Debounce, Episode, Kernel, score};
use crate::detect::{Anomaly, AnomalyKind, Detector, MachineMap};
use larmor_ingest::{CATALOG, ChannelId, Frame, Stream};

struct ChannelState {
    kernel: SensorFaultKernel,
    episode: Episode,
    spikes: SpikeTracker,
    last_seen: i64,
    missing: bool,
}

struct MachineState {
    streams: [Intervals; 3],
    channels: Vec<Option<ChannelState>>,
    rhythm: Rhythm,
}

/// Stuck channels, spikes, missing channels, stream dropouts and clock skew, per machine.
pub struct SensorFaultDetector {
    params: SensorFaultParams,
    spikes: SpikeParams,
    clock: ClockParams,
    debounce: Debounce,
    watched: Vec<bool>,
    /// The channel whose daily rhythm tells the clock's skew.
    rhythm: ChannelId,
    machines: MachineMap<MachineState>,
}

impl SensorFaultDetector {
    pub(super) fn new(
        params: SensorFaultParams,
        spikes: SpikeParams,
        clock: ClockParams,
        debounce: Debounce,
        watched: Vec<bool>,
    ) -> Self {
        SensorFaultDetector {
            params,
            spikes,
            clock,
            debounce,
            watched,
            rhythm: ChannelId::from_name(RHYTHM_CHANNEL).expect("the rhythm channel is in the catalogue"),
            machines: MachineMap::default(),
        }
    }
}

fn sensor_anomaly(
    frame: &Frame,
    channels: Vec<&'static str>,
    ts_ms: i64,
    value: f64,
    score: f64,
    why: String,
) -> Anomaly {
    Anomaly {
        machine_id: frame.machine_id.clone(),
        stream: frame.stream,
        channels,
        ts_ms,
        value,
        score,
        detector: "sensor_fault",
        kind: AnomalyKind::SensorFault,
        explanation: why,
    }
}

impl Detector for SensorFaultDetector {
    fn name(&self) -> &'static str {
        "sensor_fault"
    }

    fn observe(&mut self, frame: &Frame, out: &mut Vec<Anomaly>) {
        let (Some(first), Some(last)) = (frame.samples.first(), frame.samples.last()) else {
            return;
        };
        let params = self.params;
        let spike_params = self.spikes;
        let clock = self.clock;
        let m = match self.machines.get_mut(&frame.machine_id) {
            Some(m) => m,
            None => self
                .machines
                .entry(frame.machine_id.clone())
                .or_insert_with(|| MachineState {
                    streams: [Intervals::new(&params); 3],
                    channels: (0..CATALOG.len()).map(|_| None).collect(),
                    rhythm: Rhythm::new(clock),
                }),
        };
        let stream = &mut m.streams[frame.stream.index()];

        // A whole stream silent: one anomaly, when it resumes.
        if let Some(gap) = stream.observe(first.ts_ms) {
            let channels: Vec<&'static str> = stream_channels(frame.stream)
                .filter(|c| m.channels[c.0 as usize].is_some())
                .map(|c| c.name())
                .collect();
            let limit = stream.limit_ms();
            let why = format!(
                "no {} data for {} (usually every {}): the gateway or its link dropped out",
                frame.stream,
                fmt_ms(gap),
                fmt_ms(stream.usual_ms())
            );
            let value = first.values.first().map_or(0.0, |v| v.1);
            out.push(sensor_anomaly(
                frame,
                channels,
                first.ts_ms,
                value,
                score(gap / limit),
                why,
            ));
        }
        for (i, s) in frame.samples.iter().enumerate() {
            if i > 0 {
                stream.observe(s.ts_ms);
            }
            for &(c, v) in &s.values {
                if c == self.rhythm
                    && let Some(skew) = m.rhythm.update(s.ts_ms, v)
                {
                    out.push(clock_anomaly(frame, s.ts_ms, v, &skew, &self.clock));
                }
                if !self.watched[c.0 as usize] {
                    continue;
                }
                let ch = m.channels[c.0 as usize].get_or_insert_with(|| ChannelState {
                    kernel: SensorFaultKernel::new(&params),
                    episode: Episode::default(),
                    spikes: SpikeTracker::new(spike_params),
                    last_seen: s.ts_ms,
                    missing: false,
                });
                ch.last_seen = ch.last_seen.max(s.ts_ms);
                ch.missing = false;
                let sc = ch.kernel.update(s.ts_ms, v);
                if ch.episode.update(sc, self.debounce) {
                    let spec = c.spec();
                    let why = format!("{}: {}", spec.name, ch.kernel.explain(v, spec.unit));
                    out.push(sensor_anomaly(frame, vec![spec.name], s.ts_ms, v, sc, why));
                }
                if let Some(e) = ch.spikes.update(s.ts_ms, v) {
                    let spec = c.spec();
                    let why = spike_explanation(spec.name, spec.unit, &e, &spike_params);
                    let sc = score(e.ratio / spike_params.threshold);
                    out.push(sensor_anomaly(frame, vec![spec.name], e.ts_ms, e.value, sc, why));
                }
            }
        }

        // Channels gone quiet while their stream keeps reporting: one anomaly per frame that finds them.
        let limit = stream.limit_ms();
        let mut gone = Vec::new();
        let mut longest = 0.0_f64;
        for c in stream_channels(frame.stream) {
            if let Some(ch) = m.channels[c.0 as usize].as_mut() {
                let silent = (last.ts_ms - ch.last_seen) as f64;
                if !ch.missing && silent > limit {
                    ch.missing = true;
                    gone.push(c.name());
                    longest = longest.max(silent);
                }
            }
        }
        if !gone.is_empty() {
            let why = format!(
                "{} missing for {} while the {} stream keeps reporting: a sensor dropped out",
                gone.join(", "),
                fmt_ms(longest),
                frame.stream
            );
            out.push(sensor_anomaly(
                frame,
                gone,
                last.ts_ms,
                0.0,
                score(longest / limit),
                why,
            ));
        }
    }

    fn end_warm_up(&mut self) {
        for m in self.machines.values_mut() {
            m.streams = [Intervals::new(&self.params); 3];
            m.rhythm.reset_day();
            for ch in m.channels.iter_mut().flatten() {
                ch.kernel.end_warm_up();
                ch.spikes.reset();
            }
        }
    }
}

fn clock_anomaly(frame: &Frame, ts_ms: i64, value: f64, skew: &ClockSkew, p: &ClockParams) -> Anomaly {
    let how = fmt_ms(skew.shift_ms.unsigned_abs() as f64);
    let (side, sign) = if skew.shift_ms > 0 {
        ("late", "ahead")
    } else {
        ("early", "behind")
    };
    let why = format!(
        "clock skew: the scans' daily rhythm ({RHYTHM_CHANNEL}) runs {how} {side} against this machine's usual \
         weeks, {} days in a row: the gateway's clock is probably {how} {sign}, shifting every stream's \
         timestamps (smallest shift judged: {})",
        skew.days,
        fmt_ms((p.min_shift * 15 * 60_000) as f64)
    );
    let score = score(skew.shift_ms.unsigned_abs() as f64 / (p.min_shift * 15 * 60_000) as f64);
    sensor_anomaly(frame, vec![RHYTHM_CHANNEL], ts_ms, value, score, why)
}

fn stream_channels(stream: Stream) -> impl Iterator<Item = ChannelId> {
    ChannelId::of_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::sensor_fault::SensorFaultConfig;
    use crate::detect::testing::noise;
    use larmor_ingest::Sample;

    fn frame(stream: Stream, t0: i64, n: usize, channels: &[&str], value: impl Fn(usize) -> f64) -> Frame {
        Frame {
            machine_id: "M1".into(),
            stream,
            seq: 1,
            ts_ms: t0,
            samples: (0..n)
                .map(|i| Sample {
                    ts_ms: t0 + i as i64 * 100,
                    values: channels
                        .iter()
                        .map(|c| (ChannelId::from_name(c).unwrap(), value(i)))
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn stream_dropout_and_missing_channel_are_one_anomaly_each() {
        let mut d = SensorFaultConfig::default().detector().unwrap();
        let mut out = vec![];
        let t0 = 1_764_000_000_000;
        let both = ["compressor_vib_rms_mms", "compressor_band_bearing_mms"];
        let e = noise(4, 20_000, 0.05);
        let mut t = t0;
        // 10 Hz, 5 samples per frame: 100 s of both channels
        for k in 0..200 {
            d.observe(&frame(Stream::Vibration, t, 5, &both, |i| 1.0 + e[k * 5 + i]), &mut out);
            t += 500;
        }
        assert!(out.is_empty(), "{out:?}");
        // the stream stops for 10 minutes, then comes back: one anomaly
        t += 600_000;
        d.observe(&frame(Stream::Vibration, t, 5, &both, |i| 1.0 + e[i]), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].kind, AnomalyKind::SensorFault);
        assert_eq!(out[0].channels.len(), 2);
        assert!(
            out[0].explanation.contains("no vibration data for 10 min"),
            "{}",
            out[0].explanation
        );
        // one channel stops while the other goes on: one anomaly after the limit, not one per frame
        for k in 0..600 {
            t += 500;
            d.observe(
                &frame(Stream::Vibration, t, 5, &both[..1], |i| 1.0 + e[k * 5 + i]),
                &mut out,
            );
        }
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[1].channels, vec!["compressor_band_bearing_mms"]);
    }
}
