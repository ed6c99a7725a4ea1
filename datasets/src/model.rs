//! The physics of one machine: a small state model of the cryogenics (cold
//! head, helium, vessel pressure and heater), the helium compressor and its
//! cooling water, the gradient and RF chain, vibration features and the two
//! rooms. Failure modes act on it through [`Effects`]; it returns the true
//! (noisy, unrounded) value of every channel at each step.

use crate::fleet::{Baseline, Climate, Machine};
use crate::modes::FailureMode;
use crate::schedule::Activity;
use crate::signals::*;
use crate::time::{DAY_MS, MINUTE_MS};
use std::f64::consts::TAU;

/// How active failures and service work change the machine at one instant.
/// All zero/false is a healthy machine.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Effects {
    /// Share of the cold head's cooling capacity lost to wear, 0..1.
    pub capacity_loss: f64,
    /// The compressor is off (failed, tripped, or stopped for service): the cold head stops too.
    pub compressor_stopped: bool,
    /// Helium compressor failure severity, 0..1.
    pub compressor_wear: f64,
    /// Compressor bearing wear severity, 0..1.
    pub bearing_wear: f64,
    /// Cooling-water inlet pulled towards `water_inlet_target_c` by this share.
    pub water_inlet_pull: f64,
    pub water_inlet_target_c: f64,
    /// Share of cooling-water flow lost.
    pub flow_loss: f64,
    /// Extra helium loss, %/day, and the leak's severity 0..1.
    pub helium_leak_pct_day: f64,
    pub helium_leak: f64,
    /// Gradient coil cooling lost, 0..1.
    pub coil_cooling_loss: f64,
    /// Room conditions pulled towards a target by a share (HVAC out of specification).
    pub room_temp_pull: f64,
    pub room_temp_target_c: f64,
    pub room_humidity_pull: f64,
    pub room_humidity_target_pct: f64,
    pub tech_room_pull: f64,
    pub tech_room_target_c: f64,
    /// No exams: the machine is down or under maintenance.
    pub scanning_blocked: bool,
}

impl FailureMode {
    /// Adds this mode's effect at precursor severity `s` (0..1), or its downtime
    /// effect when `down`. `magnitude` (0..1) varies how far an episode goes.
    pub fn apply(self, variant: u8, magnitude: f64, s: f64, down: bool, fx: &mut Effects) {
        let s = if down { 1.0 } else { s };
        match self {
            FailureMode::ColdHeadDegradation => {
                fx.capacity_loss += (0.47 + 0.16 * magnitude) * s;
                fx.compressor_stopped |= down; // switched off for the cold-head swap
            }
            FailureMode::CompressorFailure => {
                fx.compressor_wear = fx.compressor_wear.max(s * (0.85 + 0.3 * magnitude));
                fx.compressor_stopped |= down;
            }
            FailureMode::ChillerFault => {
                if variant == 0 {
                    fx.water_inlet_pull = s;
                    fx.water_inlet_target_c = 30.5 + 3.0 * magnitude;
                } else {
                    fx.flow_loss = (0.65 + 0.15 * magnitude) * s;
                }
                fx.compressor_stopped |= down; // tripped
            }
            FailureMode::HeliumLeak => {
                let rate = 1.2 + 1.0 * magnitude;
                fx.helium_leak_pct_day += rate * s;
                fx.helium_leak = fx.helium_leak.max(s);
            }
            FailureMode::GradientCoolingFault => {
                fx.coil_cooling_loss = fx.coil_cooling_loss.max(s * (0.9 + 0.2 * magnitude));
            }
            FailureMode::HvacOutOfSpec => match variant {
                0 => {
                    fx.room_temp_pull = s;
                    fx.room_temp_target_c = 26.0 + 2.0 * magnitude;
                }
                1 => {
                    fx.room_humidity_pull = s;
                    fx.room_humidity_target_pct = 69.0 + 8.0 * magnitude;
                }
                _ => {
                    fx.tech_room_pull = s;
                    fx.tech_room_target_c = 30.5 + 4.0 * magnitude;
                }
            },
            FailureMode::CompressorBearingWear => {
                fx.bearing_wear = fx.bearing_wear.max(s * (0.9 + 0.2 * magnitude));
                fx.compressor_stopped |= down; // seized
            }
        }
        fx.scanning_blocked |= down;
    }
}

/// Time constants of the lagged states, ms.
const TAU_COIL: f64 = 12.0 * 60_000.0;
const TAU_GRADIENT_AMP: f64 = 8.0 * 60_000.0;
const TAU_RF_AMP: f64 = 5.0 * 60_000.0;
const TAU_TECH_ROOM: f64 = 45.0 * 60_000.0;
const TAU_ROOM: f64 = 30.0 * 60_000.0;
/// Cold head warming up once stopped, and cooling back down once restarted.
const TAU_WARM: f64 = 150.0 * 60_000.0;
const TAU_COOL: f64 = 60.0 * 60_000.0;
/// Compressor pressures equalising after a stop, and recovering after a start.
const TAU_EQUALISE: f64 = 10.0 * 60_000.0;
const TAU_PRESSURISE: f64 = 3.0 * 60_000.0;

/// Vessel relief: pressure cannot rise beyond this, kPa.
const RELIEF_KPA: f64 = 36.2;
/// Helium boil-off with the cold head fully stopped, %/day.
const BOILOFF_STOPPED_PCT_DAY: f64 = 3.0;
/// 2nd-stage creep with cold-head age, K per operating hour.
const STAGE2_AGE_K_PER_H: f64 = 5e-6;

#[derive(Debug, Clone, Copy, Default)]
struct Alphas {
    dt_ms: i64,
    coil: f64,
    gradient_amp: f64,
    rf_amp: f64,
    tech_room: f64,
    room: f64,
    warm: f64,
    cool: f64,
    equalise: f64,
    pressurise: f64,
}

impl Alphas {
    fn new(dt_ms: i64) -> Self {
        let a = |tau: f64| 1.0 - (-(dt_ms.max(0) as f64) / tau).exp();
        Alphas {
            dt_ms,
            coil: a(TAU_COIL),
            gradient_amp: a(TAU_GRADIENT_AMP),
            rf_amp: a(TAU_RF_AMP),
            tech_room: a(TAU_TECH_ROOM),
            room: a(TAU_ROOM),
            warm: a(TAU_WARM),
            cool: a(TAU_COOL),
            equalise: a(TAU_EQUALISE),
            pressurise: a(TAU_PRESSURISE),
        }
    }
}

/// One machine's physical state.
#[derive(Clone)]
pub struct MachineModel {
    b: Baseline,
    climate: Climate,
    room_temp_c: f64,
    room_humidity_pct: f64,
    humidity_season_pct: f64,
    pub helium_pct: f64,
    pub coldhead_hours: f64,
    coil_c: f64,
    gradient_amp_c: f64,
    rf_amp_c: f64,
    tech_heat: f64,
    room_heat: f64,
    /// 0 = cold head at temperature, 1 = fully warmed up.
    warm: f64,
    /// 0 = compressor pressures normal, 1 = equalised (stopped).
    equalised: f64,
    alphas: Alphas,
    season_day: i64,
    season: f64,
    pub noise: Noise,
}

impl MachineModel {
    pub fn new(machine: &Machine, noise: Noise) -> Self {
        let b = machine.baseline.clone();
        let site = machine.site();
        MachineModel {
            helium_pct: b.helium_level_pct,
            coldhead_hours: machine.coldhead_hours,
            coil_c: b.coil_base_c,
            gradient_amp_c: b.gradient_amp_c,
            rf_amp_c: b.rf_amp_c,
            tech_heat: 0.0,
            room_heat: 0.0,
            warm: 0.0,
            equalised: 0.0,
            alphas: Alphas::new(MINUTE_MS),
            season_day: i64::MIN,
            season: 0.0,
            climate: Climate::of(site),
            room_temp_c: site.room_temp_c,
            room_humidity_pct: site.room_humidity_pct,
            humidity_season_pct: site.humidity_season_pct,
            b,
            noise,
        }
    }

    /// A helium top-up by the service.
    pub fn refill_helium(&mut self) {
        self.helium_pct = self.helium_pct.max(self.b.helium_refill_pct);
    }

    pub fn new_cold_head(&mut self) {
        self.coldhead_hours = 0.0;
    }

    /// Advances the state by `dt_ms` to `t_ms` and writes every channel's value.
    #[inline]
    pub fn step(&mut self, t_ms: i64, dt_ms: i64, act: &Activity, fx: &Effects, out: &mut [f64; CHANNELS]) {
        if dt_ms != self.alphas.dt_ms {
            self.alphas = Alphas::new(dt_ms);
        }
        let a = self.alphas;
        let b = &self.b;
        let day = t_ms.div_euclid(DAY_MS);
        if day != self.season_day {
            self.season_day = day;
            self.season = self.climate.season(day);
        }
        let daily = self.climate.daily(t_ms);
        let outdoor = self.climate.outdoor_c(self.season, daily);

        // --- compressor and cooling water ---
        let stopped = fx.compressor_stopped;
        self.equalised += if stopped {
            (1.0 - self.equalised) * a.equalise
        } else {
            -self.equalised * a.pressurise
        };
        let running = 1.0 - self.equalised;
        let cw = fx.compressor_wear;
        let mut inlet = b.water_setpoint_c + 0.12 * (outdoor - 15.0);
        inlet += (fx.water_inlet_target_c - inlet) * fx.water_inlet_pull;
        let flow = (b.water_flow_lpm * (1.0 - fx.flow_loss)).max(0.3);
        let heat_kw = 0.15 + running * 4.5 * (1.0 + 0.3 * cw);
        let outlet = inlet + heat_kw / (flow / 60.0 * 4.186);
        let wobble = if cw > 0.0 {
            (TAU * t_ms.rem_euclid(20 * MINUTE_MS) as f64 / (20 * MINUTE_MS) as f64).sin()
        } else {
            0.0
        };
        let supply_run = b.supply_mpa - 0.25 * cw + 0.06 * cw * wobble + 0.004 * (inlet - 15.0);
        let return_run = b.return_mpa + 0.22 * cw + 0.002 * (inlet - 15.0);
        let supply = supply_run + (b.static_mpa - supply_run) * self.equalised;
        let ret = return_run + (b.static_mpa - return_run) * self.equalised;

        // --- cryogenics ---
        self.warm += if stopped {
            (1.0 - self.warm) * a.warm
        } else {
            -self.warm * a.cool
        };
        if !stopped {
            self.coldhead_hours += dt_ms as f64 / 3_600_000.0;
        }
        let condition = (1.0 - fx.capacity_loss - 0.1 * cw).max(0.0);
        let capacity = condition * (1.0 - self.warm);
        let load = b.heat_load;
        let deficit = (load - capacity).max(0.0);
        let leak = fx.helium_leak;
        let heater = b.heater_pct * ((capacity - load) / (1.0 - load)).clamp(0.0, 1.3) + 25.0 * leak;
        let leak_wave = if leak > 0.0 {
            (TAU * t_ms.rem_euclid(5 * 3_600_000) as f64 / 18_000_000.0).sin()
        } else {
            0.0
        };
        let pressure = (b.vessel_pressure_kpa + 80.0 * deficit).min(RELIEF_KPA) - 2.0 * leak + 1.5 * leak * leak_wave;
        let boiloff = b.helium_drift_pct_day + BOILOFF_STOPPED_PCT_DAY * deficit / load + fx.helium_leak_pct_day;
        self.helium_pct = (self.helium_pct - boiloff * dt_ms as f64 / DAY_MS as f64).max(0.0);
        let stage2 = b.stage2_k + STAGE2_AGE_K_PER_H * self.coldhead_hours + 0.9 * (1.0 - condition) + 36.0 * self.warm;
        let stage1 = b.stage1_k + 14.0 * (1.0 - condition) + 85.0 * self.warm;

        // --- gradient and RF chain, rooms ---
        let gcl = fx.coil_cooling_loss;
        let coil_target = b.coil_base_c + 3.0 * gcl + b.coil_gain_c * act.load * (1.0 + 1.5 * gcl);
        self.coil_c += (coil_target - self.coil_c) * a.coil;
        self.tech_heat += (act.load - self.tech_heat) * a.tech_room;
        self.room_heat += (0.7 * act.load + 0.1 * act.occupancy - self.room_heat) * a.room;
        let mut tech = b.tech_room_c + 0.06 * (outdoor - 15.0) + 1.2 * self.tech_heat;
        tech += (fx.tech_room_target_c - tech) * fx.tech_room_pull;
        let amp_target = b.gradient_amp_c + 0.3 * (tech - 21.0) + 8.0 * act.load;
        self.gradient_amp_c += (amp_target - self.gradient_amp_c) * a.gradient_amp;
        let rf_target = b.rf_amp_c + 0.3 * (tech - 21.0) + 9.0 * act.rf;
        self.rf_amp_c += (rf_target - self.rf_amp_c) * a.rf_amp;
        let mut room = self.room_temp_c + b.room_offset_c + 0.15 * daily + 0.8 * self.room_heat;
        room += (fx.room_temp_target_c - room) * fx.room_temp_pull;
        let mut humidity = self.room_humidity_pct + self.humidity_season_pct * self.season + 1.0 * daily;
        humidity += (fx.room_humidity_target_pct - humidity) * fx.room_humidity_pull;

        // --- vibration features ---
        let coldhead_level = 0.03 + 0.97 * running;
        let wear = 1.0 - condition;
        let ch_rms = b.coldhead_vib_mms * coldhead_level * (1.0 + 0.3 * wear);
        let ch_crest = 2.8 + 0.8 * wear;
        let comp_level = 0.02 + 0.98 * running;
        let bw = fx.bearing_wear;
        let motor = b.compressor_motor_mms * (1.0 + 2.8 * cw) * comp_level;
        let bearing = b.compressor_bearing_mms * (1.0 + 9.0 * bw * bw.sqrt()) * comp_level;
        let other = b.compressor_other_mms * comp_level;
        let comp_rms = (motor * motor + bearing * bearing + other * other).sqrt();
        let comp_crest = 2.9 + 3.4 * bw * bw + 0.3 * cw;

        // --- readings: value + sensor noise ---
        let n = &mut self.noise;
        let mut noisy = |c: usize, v: f64, scale: f64| v + SIGNALS[c].noise * scale * n.gauss();
        out[HELIUM_LEVEL] = noisy(HELIUM_LEVEL, self.helium_pct, 1.0);
        out[VESSEL_PRESSURE] = noisy(VESSEL_PRESSURE, pressure, 1.0);
        out[VESSEL_HEATER] = noisy(VESSEL_HEATER, heater.clamp(0.0, 100.0), 1.0);
        out[COLDHEAD_STAGE1] = noisy(COLDHEAD_STAGE1, stage1, 1.0);
        out[COLDHEAD_STAGE2] = noisy(COLDHEAD_STAGE2, stage2, 1.0);
        out[COMPRESSOR_SUPPLY] = noisy(COMPRESSOR_SUPPLY, supply, 1.0);
        out[COMPRESSOR_RETURN] = noisy(COMPRESSOR_RETURN, ret, 1.0);
        out[WATER_INLET] = noisy(WATER_INLET, inlet, 1.0);
        out[WATER_OUTLET] = noisy(WATER_OUTLET, outlet, 1.0);
        out[WATER_FLOW] = noisy(WATER_FLOW, flow, 1.0);
        out[GRADIENT_COIL] = noisy(GRADIENT_COIL, self.coil_c, 1.0);
        out[GRADIENT_AMP] = noisy(GRADIENT_AMP, self.gradient_amp_c, 1.0);
        out[RF_AMP] = noisy(RF_AMP, self.rf_amp_c, 1.0);
        let ch_rms = noisy(COLDHEAD_VIB_RMS, ch_rms, coldhead_level);
        let ch_crest = noisy(COLDHEAD_VIB_CREST, ch_crest, 1.0);
        out[COLDHEAD_VIB_RMS] = ch_rms;
        out[COLDHEAD_VIB_PEAK] = ch_rms * ch_crest;
        out[COLDHEAD_VIB_CREST] = ch_crest;
        out[COLDHEAD_VIB_KURTOSIS] = noisy(COLDHEAD_VIB_KURTOSIS, 3.0 + 1.2 * wear, 1.0);
        out[COLDHEAD_BAND_DISPLACER] = 0.82 * ch_rms;
        let comp_rms = noisy(COMPRESSOR_VIB_RMS, comp_rms, comp_level);
        let comp_crest = noisy(COMPRESSOR_VIB_CREST, comp_crest, 1.0);
        out[COMPRESSOR_VIB_RMS] = comp_rms;
        out[COMPRESSOR_VIB_PEAK] = comp_rms * comp_crest;
        out[COMPRESSOR_VIB_CREST] = comp_crest;
        out[COMPRESSOR_VIB_KURTOSIS] = noisy(COMPRESSOR_VIB_KURTOSIS, 3.0 + 5.5 * bw * bw + 0.4 * cw, 1.0);
        out[COMPRESSOR_BAND_MOTOR] = noisy(COMPRESSOR_BAND_MOTOR, motor, comp_level);
        out[COMPRESSOR_BAND_BEARING] = noisy(COMPRESSOR_BAND_BEARING, bearing, comp_level);
        out[GRADIENT_VIB_RMS] = noisy(GRADIENT_VIB_RMS, 0.25 + b.gradient_vib_gain_mms * act.acoustic, 1.0);
        out[ROOM_TEMP] = noisy(ROOM_TEMP, room, 1.0);
        out[ROOM_HUMIDITY] = noisy(ROOM_HUMIDITY, humidity, 1.0);
        out[ROOM_O2] = noisy(ROOM_O2, 20.9, 1.0);
        out[TECH_ROOM_TEMP] = noisy(TECH_ROOM_TEMP, tech, 1.0);
        out[DOOR_OPEN] = if act.door_open { 1.0 } else { 0.0 };
        out[OCCUPANCY] = act.occupancy;
    }
}
