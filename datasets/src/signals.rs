//! How each catalogue channel is measured by the simulated sensors: the
//! resolution a reading is rounded to, the sensor noise, and the scale of a
//! sensor fault on it. Also the bounded Gaussian noise source the model draws from.
//!
//! Channel indices here are positions in `larmor_ingest::CATALOG`; a test checks
//! that every name lines up, so a catalogue change cannot silently shift signals.

use larmor_ingest::{CATALOG, Stream};
use rand::RngCore;
use rand::rngs::SmallRng;
use std::sync::OnceLock;

pub const HELIUM_LEVEL: usize = 0;
pub const VESSEL_PRESSURE: usize = 1;
pub const VESSEL_HEATER: usize = 2;
pub const COLDHEAD_STAGE1: usize = 3;
pub const COLDHEAD_STAGE2: usize = 4;
pub const COMPRESSOR_SUPPLY: usize = 5;
pub const COMPRESSOR_RETURN: usize = 6;
pub const WATER_INLET: usize = 7;
pub const WATER_OUTLET: usize = 8;
pub const WATER_FLOW: usize = 9;
pub const GRADIENT_COIL: usize = 10;
pub const GRADIENT_AMP: usize = 11;
pub const RF_AMP: usize = 12;
pub const COLDHEAD_VIB_RMS: usize = 13;
pub const COLDHEAD_VIB_PEAK: usize = 14;
pub const COLDHEAD_VIB_CREST: usize = 15;
pub const COLDHEAD_VIB_KURTOSIS: usize = 16;
pub const COLDHEAD_BAND_DISPLACER: usize = 17;
pub const COMPRESSOR_VIB_RMS: usize = 18;
pub const COMPRESSOR_VIB_PEAK: usize = 19;
pub const COMPRESSOR_VIB_CREST: usize = 20;
pub const COMPRESSOR_VIB_KURTOSIS: usize = 21;
pub const COMPRESSOR_BAND_MOTOR: usize = 22;
pub const COMPRESSOR_BAND_BEARING: usize = 23;
pub const GRADIENT_VIB_RMS: usize = 24;
pub const ROOM_TEMP: usize = 25;
pub const ROOM_HUMIDITY: usize = 26;
pub const ROOM_O2: usize = 27;
pub const TECH_ROOM_TEMP: usize = 28;
pub const DOOR_OPEN: usize = 29;
pub const OCCUPANCY: usize = 30;

/// Number of simulated channels: the whole catalogue.
pub const CHANNELS: usize = 31;

/// How one channel is measured.
#[derive(Debug, Clone, Copy)]
pub struct SignalSpec {
    /// Catalogue name (checked against `CATALOG` by a test).
    pub name: &'static str,
    /// Readings are rounded to 10^-decimals, as the sensor or gateway reports them.
    pub decimals: u8,
    /// Sensor noise, one standard deviation, in the channel's unit.
    pub noise: f64,
    /// Typical size of a sensor fault on this channel (spike height, drift span).
    pub fault_scale: f64,
}

const fn sig(name: &'static str, decimals: u8, noise: f64, fault_scale: f64) -> SignalSpec {
    SignalSpec {
        name,
        decimals,
        noise,
        fault_scale,
    }
}

#[rustfmt::skip]
pub static SIGNALS: [SignalSpec; CHANNELS] = [
    sig("helium_level_pct", 2, 0.02, 12.0),
    sig("vessel_pressure_kpa", 2, 0.15, 10.0),
    sig("vessel_heater_pct", 1, 1.0, 30.0),
    sig("coldhead_stage1_k", 2, 0.15, 15.0),
    sig("coldhead_stage2_k", 3, 0.006, 1.2),
    sig("compressor_supply_mpa", 3, 0.004, 0.5),
    sig("compressor_return_mpa", 3, 0.004, 0.4),
    sig("water_inlet_c", 2, 0.08, 8.0),
    sig("water_outlet_c", 2, 0.1, 10.0),
    sig("water_flow_lpm", 2, 0.08, 4.0),
    sig("gradient_coil_c", 2, 0.12, 20.0),
    sig("gradient_amp_c", 2, 0.12, 15.0),
    sig("rf_amp_c", 2, 0.12, 15.0),
    sig("coldhead_vib_rms_mms", 2, 0.03, 5.0),
    sig("coldhead_vib_peak_mms", 2, 0.1, 15.0),
    sig("coldhead_vib_crest", 2, 0.04, 4.0),
    sig("coldhead_vib_kurtosis", 2, 0.08, 5.0),
    sig("coldhead_band_displacer_mms", 2, 0.025, 4.0),
    sig("compressor_vib_rms_mms", 2, 0.05, 6.0),
    sig("compressor_vib_peak_mms", 2, 0.2, 20.0),
    sig("compressor_vib_crest", 2, 0.04, 4.0),
    sig("compressor_vib_kurtosis", 2, 0.08, 5.0),
    sig("compressor_band_motor_mms", 2, 0.04, 5.0),
    sig("compressor_band_bearing_mms", 2, 0.012, 2.5),
    sig("gradient_vib_rms_mms", 2, 0.04, 5.0),
    sig("room_temp_c", 2, 0.04, 6.0),
    sig("room_humidity_pct", 1, 0.3, 25.0),
    sig("room_o2_pct", 2, 0.02, 2.5),
    sig("tech_room_temp_c", 2, 0.06, 8.0),
    sig("door_open", 0, 0.0, 1.0),
    sig("occupancy", 0, 0.0, 3.0),
];

/// Channels a sensor fault can hit: analogue measurements, not the door switch
/// or the people counter.
pub fn is_analogue(channel: usize) -> bool {
    channel != DOOR_OPEN && channel != OCCUPANCY
}

/// Stream of each channel, from the catalogue.
pub fn stream_of(channel: usize) -> Stream {
    CATALOG[channel].stream
}

/// Bit mask of a stream's channels.
pub fn stream_mask(stream: Stream) -> u64 {
    (0..CHANNELS)
        .filter(|&c| stream_of(c) == stream)
        .fold(0, |m, c| m | 1 << c)
}

/// Every channel present.
pub const ALL_PRESENT: u64 = (1 << CHANNELS) - 1;

/// Per-channel rounding and physical clamping, precomputed for the hot loop.
#[derive(Clone)]
pub struct Quantizer {
    scale: [f64; CHANNELS],
    min: [f64; CHANNELS],
    max: [f64; CHANNELS],
}

impl Default for Quantizer {
    fn default() -> Self {
        Quantizer {
            scale: std::array::from_fn(|c| 10f64.powi(i32::from(SIGNALS[c].decimals))),
            min: std::array::from_fn(|c| CATALOG[c].physical_min),
            max: std::array::from_fn(|c| CATALOG[c].physical_max),
        }
    }
}

impl Quantizer {
    /// Rounds to the channel's resolution and clamps to its physical range.
    #[inline]
    pub fn apply(&self, channel: usize, v: f64) -> f64 {
        // Adding and subtracting 1.5·2^52 rounds to an integer without a libm call.
        const ROUND: f64 = 6_755_399_441_055_744.0;
        let s = self.scale[channel];
        let r = ((v * s + ROUND) - ROUND) / s;
        r.clamp(self.min[channel], self.max[channel])
    }
}

/// Table size of the noise source: 2^12 quantiles of the standard normal.
const TABLE_BITS: u32 = 12;

fn normal_table() -> &'static [f64; 1 << TABLE_BITS] {
    static TABLE: OnceLock<[f64; 1 << TABLE_BITS]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let n = (1 << TABLE_BITS) as f64;
        std::array::from_fn(|i| inverse_normal_cdf((i as f64 + 0.5) / n))
    })
}

/// Standard-normal deviates from a quantile table: fast, deterministic, and
/// bounded at ±3.7 σ, so healthy noise can never cross an alarm limit
/// that sits further than that from the nominal value.
#[derive(Clone)]
pub struct Noise {
    rng: SmallRng,
    table: &'static [f64; 1 << TABLE_BITS],
    bits: u64,
    left: u32,
}

impl Noise {
    pub fn new(rng: SmallRng) -> Self {
        Noise {
            rng,
            table: normal_table(),
            bits: 0,
            left: 0,
        }
    }

    /// One standard-normal deviate.
    #[inline]
    pub fn gauss(&mut self) -> f64 {
        if self.left == 0 {
            self.bits = self.rng.next_u64();
            self.left = 64 / TABLE_BITS;
        }
        let i = (self.bits & ((1 << TABLE_BITS) - 1)) as usize;
        self.bits >>= TABLE_BITS;
        self.left -= 1;
        self.table[i]
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Acklam's rational approximation of the inverse standard-normal CDF
/// (relative error below 1.2e-9).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn signals_line_up_with_the_catalogue() {
        assert_eq!(CATALOG.len(), CHANNELS, "every catalogue channel must be simulated");
        for (c, spec) in CATALOG.iter().enumerate() {
            assert_eq!(SIGNALS[c].name, spec.name, "channel {c}");
        }
        assert_eq!(CATALOG[OCCUPANCY].name, "occupancy");
        assert_eq!(CATALOG[GRADIENT_VIB_RMS].name, "gradient_vib_rms_mms");
    }

    #[test]
    fn noise_is_standard_normal_and_bounded() {
        let mut n = Noise::new(SmallRng::seed_from_u64(3));
        let xs: Vec<f64> = (0..200_000).map(|_| n.gauss()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
        assert!(xs.iter().all(|x| x.abs() < 3.7));
    }

    #[test]
    fn quantizer_rounds_to_the_resolution() {
        let q = Quantizer::default();
        assert_eq!(q.apply(COLDHEAD_STAGE2, 4.05349), 4.053);
        assert_eq!(q.apply(HELIUM_LEVEL, 81.4251), 81.43);
        assert_eq!(q.apply(HELIUM_LEVEL, -3.0), 0.0, "clamped to the physical range");
        assert_eq!(q.apply(OCCUPANCY, 1.6), 2.0);
    }
}
