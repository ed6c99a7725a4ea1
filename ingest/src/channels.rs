//! The channel catalogue: every telemetry channel Larmor knows, its stream, unit,
//! physical limits (beyond them a reading is impossible and rejected) and default
//! alarm range (beyond it a detector raises an anomaly).
//!
//! Units are fixed per channel name; the wire format carries bare numbers.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// A telemetry stream: one Kafka topic each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Temperature,
    Vibration,
    Room,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Temperature, Stream::Vibration, Stream::Room];

    /// Position in [`Stream::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Temperature => "temperature",
            Stream::Vibration => "vibration",
            Stream::Room => "room",
        }
    }

    pub fn parse(s: &str) -> Option<Stream> {
        match s {
            "temperature" => Some(Stream::Temperature),
            "vibration" => Some(Stream::Vibration),
            "room" => Some(Stream::Room),
            _ => None,
        }
    }

    /// Room data (occupancy, door, room climate) is hospital-private: it never
    /// leaves for a manufacturer.
    pub fn is_hospital_private(self) -> bool {
        self == Stream::Room
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Index of a channel in [`CATALOG`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u16);

impl ChannelId {
    pub fn spec(self) -> &'static ChannelSpec {
        &CATALOG[self.0 as usize]
    }
    pub fn name(self) -> &'static str {
        self.spec().name
    }
    pub fn stream(self) -> Stream {
        self.spec().stream
    }
    /// Looks a channel up by its wire name.
    pub fn from_name(name: &str) -> Option<ChannelId> {
        // Called for every value of every frame: see `NameHasher`.
        static INDEX: OnceLock<HashMap<&'static str, ChannelId, BuildHasherDefault<NameHasher>>> = OnceLock::new();
        INDEX
            .get_or_init(|| {
                CATALOG
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name, ChannelId(i as u16)))
                    .collect()
            })
            .get(name)
            .copied()
    }
    pub fn all() -> impl Iterator<Item = ChannelId> {
        (0..CATALOG.len() as u16).map(ChannelId)
    }
    pub fn of_stream(stream: Stream) -> impl Iterator<Item = ChannelId> {
        Self::all().filter(move |c| c.stream() == stream)
    }
}

/// Hashes a channel name by its length and its first and last eight bytes: a few
/// instructions, where SipHash or a byte-at-a-time hash walks the whole name. Only
/// for the channel-name index: the keys are our own constants (no flooding to fear),
/// and names that collide are still told apart by the map's full comparison.
#[derive(Default)]
struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let word = |b: &[u8]| b.iter().take(8).fold(0u64, |w, &x| (w << 8) | x as u64);
        let head = word(bytes);
        let tail = word(&bytes[bytes.len().saturating_sub(8)..]);
        let h = (head ^ tail.rotate_left(29) ^ (bytes.len() as u64) ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
    fn write_u8(&mut self, _: u8) {
        // `str` ends its hash with a 0xff marker byte: nothing to mix in.
    }
}

/// What Larmor knows about one channel.
#[derive(Debug, Clone, Copy)]
pub struct ChannelSpec {
    /// Wire and archive name.
    pub name: &'static str,
    pub stream: Stream,
    pub unit: &'static str,
    pub description: &'static str,
    /// Values outside [min, max] cannot be measured by a working sensor: rejected at ingest.
    pub physical_min: f64,
    pub physical_max: f64,
    /// Default alarm range for the threshold detector (None = no limit on that side).
    pub alarm_low: Option<f64>,
    pub alarm_high: Option<f64>,
}

const fn ch(
    name: &'static str,
    stream: Stream,
    unit: &'static str,
    description: &'static str,
    physical: (f64, f64),
    alarm_low: Option<f64>,
    alarm_high: Option<f64>,
) -> ChannelSpec {
    ChannelSpec {
        name,
        stream,
        unit,
        description,
        physical_min: physical.0,
        physical_max: physical.1,
        alarm_low,
        alarm_high,
    }
}

use Stream::{Room, Temperature, Vibration};

#[rustfmt::skip]
/// Every channel, in a fixed order (a [`ChannelId`] is an index here).
/// Ranges follow `shared/domain/mri-telemetry.md`; all alarm limits are configurable.
pub static CATALOG: &[ChannelSpec] = &[
    // --- temperature stream: magnet and helium ---
    ch("helium_level_pct", Temperature, "%", "liquid helium level in the magnet vessel", (0.0, 110.0), Some(40.0), None),
    ch("vessel_pressure_kpa", Temperature, "kPa", "helium vessel pressure, gauge", (-101.0, 500.0), Some(3.0), Some(35.0)),
    ch("vessel_heater_pct", Temperature, "%", "vessel pressure heater duty", (0.0, 100.0), None, None),
    // cold head
    ch("coldhead_stage1_k", Temperature, "K", "cold head 1st stage (thermal shield)", (0.0, 400.0), None, Some(60.0)),
    ch("coldhead_stage2_k", Temperature, "K", "cold head 2nd stage (recondenser)", (0.0, 400.0), None, Some(4.8)),
    // helium compressor
    ch("compressor_supply_mpa", Temperature, "MPa", "compressor helium supply (high) pressure", (0.0, 5.0), Some(1.8), Some(2.5)),
    ch("compressor_return_mpa", Temperature, "MPa", "compressor helium return (low) pressure", (0.0, 5.0), Some(0.4), Some(1.1)),
    ch("water_inlet_c", Temperature, "°C", "compressor cooling-water inlet temperature", (-20.0, 100.0), None, Some(28.0)),
    ch("water_outlet_c", Temperature, "°C", "compressor cooling-water outlet temperature", (-20.0, 100.0), None, Some(40.0)),
    ch("water_flow_lpm", Temperature, "L/min", "compressor cooling-water flow", (0.0, 100.0), Some(6.0), None),
    // gradient and RF chain
    ch("gradient_coil_c", Temperature, "°C", "gradient coil temperature", (-20.0, 150.0), None, Some(55.0)),
    ch("gradient_amp_c", Temperature, "°C", "gradient amplifier cabinet temperature", (-20.0, 150.0), None, Some(50.0)),
    ch("rf_amp_c", Temperature, "°C", "RF amplifier temperature", (-20.0, 150.0), None, Some(55.0)),
    // --- vibration stream: features an edge gateway computes per window ---
    ch("coldhead_vib_rms_mms", Vibration, "mm/s", "cold head vibration velocity, RMS", (0.0, 1000.0), None, Some(7.1)),
    ch("coldhead_vib_peak_mms", Vibration, "mm/s", "cold head vibration velocity, peak", (0.0, 5000.0), None, None),
    ch("coldhead_vib_crest", Vibration, "1", "cold head crest factor (peak/RMS)", (1.0, 100.0), None, Some(6.0)),
    ch("coldhead_vib_kurtosis", Vibration, "1", "cold head kurtosis", (0.0, 1000.0), None, Some(6.0)),
    ch("coldhead_band_displacer_mms", Vibration, "mm/s", "cold head energy in the displacer band (1-2.4 Hz)", (0.0, 1000.0), None, None),
    ch("compressor_vib_rms_mms", Vibration, "mm/s", "compressor vibration velocity, RMS", (0.0, 1000.0), None, Some(7.1)),
    ch("compressor_vib_peak_mms", Vibration, "mm/s", "compressor vibration velocity, peak", (0.0, 5000.0), None, None),
    ch("compressor_vib_crest", Vibration, "1", "compressor crest factor (peak/RMS)", (1.0, 100.0), None, Some(6.0)),
    ch("compressor_vib_kurtosis", Vibration, "1", "compressor kurtosis", (0.0, 1000.0), None, Some(6.0)),
    ch("compressor_band_motor_mms", Vibration, "mm/s", "compressor energy in the motor band (50/60 Hz and harmonics)", (0.0, 1000.0), None, None),
    ch("compressor_band_bearing_mms", Vibration, "mm/s", "compressor energy in the bearing-defect band (1-5 kHz)", (0.0, 1000.0), None, Some(2.0)),
    ch("gradient_vib_rms_mms", Vibration, "mm/s", "gradient coil vibration velocity, RMS", (0.0, 1000.0), None, None),
    // --- room stream: hospital-private ---
    ch("room_temp_c", Room, "°C", "magnet room temperature", (-20.0, 60.0), Some(15.0), Some(24.0)),
    ch("room_humidity_pct", Room, "%", "magnet room relative humidity", (0.0, 100.0), Some(25.0), Some(65.0)),
    ch("room_o2_pct", Room, "%", "magnet room oxygen (life-safety)", (0.0, 100.0), Some(19.5), None),
    ch("tech_room_temp_c", Room, "°C", "technical (equipment) room temperature", (-20.0, 60.0), Some(10.0), Some(28.0)),
    ch("door_open", Room, "0/1", "magnet room door open (1) or closed (0)", (0.0, 1.0), None, None),
    ch("occupancy", Room, "persons", "people detected in the magnet room", (0.0, 50.0), None, None),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for id in ChannelId::all() {
            assert_eq!(ChannelId::from_name(id.name()), Some(id));
        }
        assert_eq!(ChannelId::from_name("nope"), None);
    }

    #[test]
    fn catalogue_fits_the_decoder_bitset() {
        assert!(CATALOG.len() <= 64);
    }

    #[test]
    fn alarm_ranges_sit_inside_physical_limits() {
        for c in CATALOG {
            for a in [c.alarm_low, c.alarm_high].into_iter().flatten() {
                assert!(a > c.physical_min && a < c.physical_max, "{}", c.name);
            }
        }
    }
}
