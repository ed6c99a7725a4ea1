//! The simulated fleet: hospitals (sites) with their climate and working hours,
//! manufacturers with their models and firmware lines, and the machines installed
//! at each site with their install date, service history and per-machine baselines.

use crate::time::{DAY_MS, HOUR_MS, format_date, parse_date, weekday};
use larmor_ingest::Device;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// One scanner model of a manufacturer.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    pub name: &'static str,
    pub field_strength_t: f64,
}

/// A manufacturer: slug (outbox name), display name, models, firmware lines
/// (oldest first) and the set points its magnets run at.
#[derive(Debug)]
pub struct Manufacturer {
    pub slug: &'static str,
    pub name: &'static str,
    pub models: &'static [ModelSpec],
    pub firmware: &'static [&'static str],
    /// Vessel pressure set point, kPa gauge.
    pub vessel_pressure_kpa: f64,
    /// Cold head 2nd stage of a new cold head, K.
    pub stage2_k: f64,
}

const fn model(name: &'static str, field_strength_t: f64) -> ModelSpec {
    ModelSpec { name, field_strength_t }
}

/// Fictional manufacturers, so nothing here claims to be a real vendor's data.
pub const MANUFACTURERS: &[Manufacturer] = &[
    Manufacturer {
        slug: "aurora",
        name: "Aurora Medical",
        models: &[model("Aurora Vega 1.5T", 1.5), model("Aurora Vega 3T", 3.0)],
        firmware: &["VX19", "VX21", "VX23"],
        vessel_pressure_kpa: 12.0,
        stage2_k: 4.02,
    },
    Manufacturer {
        slug: "boreal",
        name: "Boreal Imaging",
        models: &[model("Boreal Orion 1.5T", 1.5), model("Boreal Orion XT 3T", 3.0)],
        firmware: &["7.0.4", "7.2.1", "7.4.0"],
        vessel_pressure_kpa: 16.0,
        stage2_k: 4.08,
    },
    Manufacturer {
        slug: "cygnus",
        name: "Cygnus Systems",
        models: &[model("Cygnus Lyra 3T", 3.0), model("Cygnus Lyra Wide 1.5T", 1.5)],
        firmware: &["R10", "R11", "R12"],
        vessel_pressure_kpa: 20.0,
        stage2_k: 3.98,
    },
];

/// When a site books scans. Hours are local time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WorkPattern {
    /// Weekdays `open..close`, optionally a Saturday morning session; closed otherwise.
    Weekdays {
        open_h: u8,
        close_h: u8,
        saturday_close_h: Option<u8>,
    },
    /// Every day `open..close`, the same on weekends.
    SevenDays { open_h: u8, close_h: u8 },
    /// 24/7: a full day session, and emergency scans at night (`night_fill` = chance per hour).
    AroundTheClock { night_fill: f64 },
}

impl WorkPattern {
    pub fn describe(&self) -> String {
        match *self {
            WorkPattern::Weekdays {
                open_h,
                close_h,
                saturday_close_h,
            } => match saturday_close_h {
                Some(s) => format!("Mon-Fri {open_h:02}-{close_h:02}h, Sat {open_h:02}-{s:02}h"),
                None => format!("Mon-Fri {open_h:02}-{close_h:02}h"),
            },
            WorkPattern::SevenDays { open_h, close_h } => format!("daily {open_h:02}-{close_h:02}h"),
            WorkPattern::AroundTheClock { .. } => "24/7".to_string(),
        }
    }

    /// Booked sessions of a local weekday (0 = Monday) as `(start_h, end_h, fill)`:
    /// `fill` is the share of slots that are booked.
    pub fn sessions(&self, weekday: u32) -> Vec<(f64, f64, f64)> {
        match *self {
            WorkPattern::Weekdays {
                open_h,
                close_h,
                saturday_close_h,
            } => match weekday {
                0..=4 => vec![(f64::from(open_h), f64::from(close_h), 0.9)],
                5 => saturday_close_h
                    .map(|c| vec![(f64::from(open_h) + 1.0, f64::from(c), 0.7)])
                    .unwrap_or_default(),
                _ => vec![],
            },
            WorkPattern::SevenDays { open_h, close_h } => {
                let fill = if weekday < 5 { 0.9 } else { 0.75 };
                vec![(f64::from(open_h), f64::from(close_h), fill)]
            }
            WorkPattern::AroundTheClock { night_fill } => {
                let day_fill = if weekday < 5 { 0.92 } else { 0.6 };
                vec![(0.0, 7.0, night_fill), (7.0, 22.0, day_fill), (22.0, 24.0, night_fill)]
            }
        }
    }
}

/// A hospital: where it is, its weather and its working hours.
#[derive(Debug)]
pub struct Site {
    pub slug: &'static str,
    pub name: &'static str,
    pub city: &'static str,
    /// Köppen-style description, for people.
    pub climate: &'static str,
    /// Local time = UTC + this (no daylight saving: the simulator keeps standard time).
    pub utc_offset_min: i32,
    pub pattern: WorkPattern,
    /// Outdoor temperature: yearly mean, seasonal and day/night half-amplitudes, °C.
    pub outdoor_mean_c: f64,
    pub outdoor_season_c: f64,
    pub outdoor_daily_c: f64,
    /// Seasons are reversed south of the equator.
    pub southern: bool,
    /// Magnet-room set point, °C, and the room's mean relative humidity and its seasonal swing, %.
    pub room_temp_c: f64,
    pub room_humidity_pct: f64,
    pub humidity_season_pct: f64,
}

/// Fictional hospitals in varied climates and working patterns.
pub const SITES: &[Site] = &[
    Site {
        slug: "st-anne-general",
        name: "St Anne General Hospital",
        city: "Lyon",
        climate: "temperate (Cfb)",
        utc_offset_min: 60,
        pattern: WorkPattern::Weekdays {
            open_h: 7,
            close_h: 20,
            saturday_close_h: Some(13),
        },
        outdoor_mean_c: 12.5,
        outdoor_season_c: 9.5,
        outdoor_daily_c: 5.0,
        southern: false,
        room_temp_c: 20.0,
        room_humidity_pct: 46.0,
        humidity_season_pct: 5.0,
    },
    Site {
        slug: "northfield-university",
        name: "Northfield University Hospital",
        city: "Minneapolis",
        climate: "humid continental (Dfa)",
        utc_offset_min: -360,
        pattern: WorkPattern::AroundTheClock { night_fill: 0.35 },
        outdoor_mean_c: 7.5,
        outdoor_season_c: 15.0,
        outdoor_daily_c: 5.5,
        southern: false,
        room_temp_c: 19.5,
        room_humidity_pct: 42.0,
        humidity_season_pct: 7.0,
    },
    Site {
        slug: "harbour-childrens",
        name: "Harbour Children's Hospital",
        city: "Bristol",
        climate: "oceanic (Cfb)",
        utc_offset_min: 0,
        pattern: WorkPattern::Weekdays {
            open_h: 8,
            close_h: 18,
            saturday_close_h: None,
        },
        outdoor_mean_c: 11.0,
        outdoor_season_c: 6.0,
        outdoor_daily_c: 4.0,
        southern: false,
        room_temp_c: 20.5,
        room_humidity_pct: 48.0,
        humidity_season_pct: 4.0,
    },
    Site {
        slug: "valley-regional",
        name: "Valley Regional Medical Centre",
        city: "Seville",
        climate: "hot-summer Mediterranean (Csa)",
        utc_offset_min: 60,
        pattern: WorkPattern::SevenDays { open_h: 7, close_h: 22 },
        outdoor_mean_c: 19.0,
        outdoor_season_c: 8.5,
        outdoor_daily_c: 7.0,
        southern: false,
        room_temp_c: 21.0,
        room_humidity_pct: 44.0,
        humidity_season_pct: 5.0,
    },
    Site {
        slug: "lakeside-clinic",
        name: "Lakeside Clinic",
        city: "Tampere",
        climate: "subarctic-boreal (Dfc)",
        utc_offset_min: 120,
        pattern: WorkPattern::Weekdays {
            open_h: 8,
            close_h: 16,
            saturday_close_h: None,
        },
        outdoor_mean_c: 4.5,
        outdoor_season_c: 12.0,
        outdoor_daily_c: 4.0,
        southern: false,
        room_temp_c: 19.0,
        room_humidity_pct: 40.0,
        humidity_season_pct: 7.5,
    },
    Site {
        slug: "riverside-cancer-centre",
        name: "Riverside Cancer Centre",
        city: "Houston",
        climate: "humid subtropical (Cfa)",
        utc_offset_min: -360,
        pattern: WorkPattern::Weekdays {
            open_h: 7,
            close_h: 21,
            saturday_close_h: Some(14),
        },
        outdoor_mean_c: 21.0,
        outdoor_season_c: 8.0,
        outdoor_daily_c: 5.5,
        southern: false,
        room_temp_c: 20.0,
        room_humidity_pct: 50.0,
        humidity_season_pct: 6.0,
    },
    Site {
        slug: "desert-springs-medical",
        name: "Desert Springs Medical Center",
        city: "Phoenix",
        climate: "hot desert (BWh)",
        utc_offset_min: -420,
        pattern: WorkPattern::AroundTheClock { night_fill: 0.3 },
        outdoor_mean_c: 24.0,
        outdoor_season_c: 9.5,
        outdoor_daily_c: 8.0,
        southern: false,
        room_temp_c: 20.5,
        room_humidity_pct: 38.0,
        humidity_season_pct: 4.0,
    },
    Site {
        slug: "coastal-trauma-centre",
        name: "Coastal Trauma Centre",
        city: "Singapore",
        climate: "tropical rainforest (Af)",
        utc_offset_min: 480,
        pattern: WorkPattern::AroundTheClock { night_fill: 0.45 },
        outdoor_mean_c: 27.5,
        outdoor_season_c: 1.0,
        outdoor_daily_c: 3.5,
        southern: false,
        room_temp_c: 20.0,
        room_humidity_pct: 52.0,
        humidity_season_pct: 3.0,
    },
    Site {
        slug: "highland-community",
        name: "Highland Community Hospital",
        city: "Curitiba",
        climate: "subtropical highland (Cfb)",
        utc_offset_min: -180,
        pattern: WorkPattern::Weekdays {
            open_h: 8,
            close_h: 17,
            saturday_close_h: None,
        },
        outdoor_mean_c: 17.0,
        outdoor_season_c: 4.5,
        outdoor_daily_c: 5.0,
        southern: true,
        room_temp_c: 20.5,
        room_humidity_pct: 47.0,
        humidity_season_pct: 5.0,
    },
    Site {
        slug: "metro-imaging",
        name: "Metro Outpatient Imaging",
        city: "Toronto",
        climate: "humid continental (Dfa)",
        utc_offset_min: -300,
        pattern: WorkPattern::SevenDays { open_h: 6, close_h: 23 },
        outdoor_mean_c: 9.0,
        outdoor_season_c: 13.0,
        outdoor_daily_c: 5.0,
        southern: false,
        room_temp_c: 19.5,
        room_humidity_pct: 41.0,
        humidity_season_pct: 7.0,
    },
    Site {
        slug: "southern-cross-private",
        name: "Southern Cross Private Hospital",
        city: "Melbourne",
        climate: "oceanic (Cfb)",
        utc_offset_min: 600,
        pattern: WorkPattern::Weekdays {
            open_h: 7,
            close_h: 19,
            saturday_close_h: Some(12),
        },
        outdoor_mean_c: 15.0,
        outdoor_season_c: 5.5,
        outdoor_daily_c: 6.0,
        southern: true,
        room_temp_c: 20.0,
        room_humidity_pct: 45.0,
        humidity_season_pct: 4.0,
    },
    Site {
        slug: "alpine-orthopaedic",
        name: "Alpine Orthopaedic Clinic",
        city: "Innsbruck",
        climate: "humid continental, alpine (Dfb)",
        utc_offset_min: 60,
        pattern: WorkPattern::Weekdays {
            open_h: 7,
            close_h: 18,
            saturday_close_h: None,
        },
        outdoor_mean_c: 9.0,
        outdoor_season_c: 10.5,
        outdoor_daily_c: 6.5,
        southern: false,
        room_temp_c: 19.5,
        room_humidity_pct: 43.0,
        humidity_season_pct: 6.0,
    },
];

/// A past service visit, before the simulated period.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRecord {
    /// UTC day number.
    pub day: i64,
    /// `installation`, `planned_maintenance`, `cold_head_swap`, `adsorber_swap`,
    /// `firmware_upgrade`, `helium_refill` or an unplanned repair's failure mode.
    pub kind: &'static str,
    pub planned: bool,
    pub note: String,
}

/// Per-machine operating points: where this machine's healthy signals sit.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// Helium level at the fleet's reference date, and after a refill, %.
    pub helium_level_pct: f64,
    pub helium_refill_pct: f64,
    /// Healthy zero-boil-off loss, %/day (well under 0.1).
    pub helium_drift_pct_day: f64,
    pub vessel_pressure_kpa: f64,
    /// Heater duty with a healthy cold head, %.
    pub heater_pct: f64,
    /// Heat reaching the helium, as a share of a healthy cold head's capacity.
    pub heat_load: f64,
    pub stage1_k: f64,
    pub stage2_k: f64,
    pub supply_mpa: f64,
    pub return_mpa: f64,
    /// Both sides equalise to this when the compressor stops.
    pub static_mpa: f64,
    pub water_setpoint_c: f64,
    pub water_flow_lpm: f64,
    pub coil_base_c: f64,
    /// Coil temperature rise at full gradient load, °C.
    pub coil_gain_c: f64,
    pub gradient_amp_c: f64,
    pub rf_amp_c: f64,
    pub tech_room_c: f64,
    pub room_offset_c: f64,
    pub coldhead_vib_mms: f64,
    pub compressor_motor_mms: f64,
    pub compressor_other_mms: f64,
    pub compressor_bearing_mms: f64,
    /// Gradient vibration at full acoustic load, mm/s.
    pub gradient_vib_gain_mms: f64,
}

/// One simulated machine.
#[derive(Debug, Clone)]
pub struct Machine {
    pub id: String,
    /// Index in [`SITES`].
    pub site: usize,
    /// Index in [`MANUFACTURERS`].
    pub manufacturer: usize,
    pub model: &'static str,
    pub field_strength_t: f64,
    pub firmware: &'static str,
    /// UTC day number of the installation.
    pub install_day: i64,
    /// Operating hours of the current cold head at the reference date.
    pub coldhead_hours: f64,
    /// UTC day number of the last planned maintenance before the reference date.
    pub last_maintenance_day: i64,
    pub service_history: Vec<ServiceRecord>,
    pub baseline: Baseline,
}

impl Machine {
    pub fn site(&self) -> &'static Site {
        &SITES[self.site]
    }
    pub fn maker(&self) -> &'static Manufacturer {
        &MANUFACTURERS[self.manufacturer]
    }
}

/// The fleet's default reference date: the start of the default simulated period.
pub const DEFAULT_START: &str = "2025-01-01";

pub fn default_start_day() -> i64 {
    parse_date(DEFAULT_START).unwrap_or(20_089)
}

/// Mixes a seed with stream tags into an independent RNG seed (SplitMix64 finaliser).
pub fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xd1b5_4a32_d192_ed03);
    for _ in 0..2 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
    }
    z
}

/// RNG stream tags, so each use of the seed is independent of the others.
pub(crate) mod tag {
    pub const HISTORY: u64 = 1;
    pub const PLAN: u64 = 2;
    pub const NOISE: u64 = 3;
    pub const SCHEDULE: u64 = 4;
}

pub struct Fleet {
    pub machines: Vec<Machine>,
    /// UTC day number the service histories run up to.
    pub reference_day: i64,
}

impl Fleet {
    /// The same `n` and `seed` always give the same fleet, with histories up to
    /// [`DEFAULT_START`]. Manufacturers rotate so every fleet of 3 or more
    /// machines has all of them.
    pub fn generate(n: usize, seed: u64) -> Fleet {
        Self::generate_at(n, seed, default_start_day())
    }

    /// Like [`Fleet::generate`], with service histories up to `reference_day`
    /// (the start of a simulated period). Machines, sites, makers, models and
    /// firmware do not depend on the reference day.
    pub fn generate_at(n: usize, seed: u64, reference_day: i64) -> Fleet {
        let mut rng = SmallRng::seed_from_u64(seed);
        let machines = (0..n)
            .map(|i| {
                let maker = i % MANUFACTURERS.len();
                let m = &MANUFACTURERS[maker];
                let spec = m.models[rng.random_range(0..m.models.len())];
                let firmware_index = rng.random_range(0..m.firmware.len());
                let baseline = baseline(&mut rng, m, spec.field_strength_t);
                let mut hist = SmallRng::seed_from_u64(mix(seed, i as u64, tag::HISTORY));
                let history = history(&mut hist, m, firmware_index, reference_day);
                Machine {
                    id: format!("MRI-{:04}", i + 1),
                    site: (i / 2) % SITES.len(),
                    manufacturer: maker,
                    model: spec.name,
                    field_strength_t: spec.field_strength_t,
                    firmware: m.firmware[firmware_index],
                    install_day: history.install_day,
                    coldhead_hours: history.coldhead_hours,
                    last_maintenance_day: history.last_maintenance_day,
                    service_history: history.records,
                    baseline,
                }
            })
            .collect();
        Fleet {
            machines,
            reference_day,
        }
    }

    /// Registry entries for every machine.
    pub fn devices(&self) -> Vec<Device> {
        self.machines
            .iter()
            .map(|m| Device {
                machine_id: m.id.clone(),
                site: m.site().slug.to_string(),
                manufacturer: m.maker().slug.to_string(),
                model: m.model.to_string(),
                firmware: m.firmware.to_string(),
                public_key: None,
                revoked: false,
            })
            .collect()
    }

    pub fn index_of(&self, machine_id: &str) -> Option<usize> {
        self.machines.iter().position(|m| m.id == machine_id)
    }
}

fn baseline(rng: &mut SmallRng, m: &Manufacturer, tesla: f64) -> Baseline {
    let three_tesla = tesla >= 2.0;
    Baseline {
        helium_level_pct: rng.random_range(62.0..95.0),
        helium_refill_pct: rng.random_range(88.0..95.0),
        helium_drift_pct_day: rng.random_range(0.0..0.03),
        vessel_pressure_kpa: m.vessel_pressure_kpa + rng.random_range(-1.5..1.5),
        heater_pct: rng.random_range(25.0..45.0),
        heat_load: rng.random_range(0.58..0.66),
        stage1_k: rng.random_range(38.0..46.0),
        stage2_k: m.stage2_k + rng.random_range(-0.05..0.05),
        supply_mpa: rng.random_range(2.05..2.15),
        return_mpa: rng.random_range(0.70..0.80),
        static_mpa: rng.random_range(1.55..1.70),
        water_setpoint_c: rng.random_range(10.0..16.0),
        water_flow_lpm: rng.random_range(7.8..9.5),
        coil_base_c: rng.random_range(19.0..22.0),
        coil_gain_c: if three_tesla {
            rng.random_range(14.0..16.0)
        } else {
            rng.random_range(11.0..13.0)
        },
        gradient_amp_c: rng.random_range(26.0..29.0),
        rf_amp_c: rng.random_range(28.0..32.0),
        tech_room_c: rng.random_range(19.0..22.0),
        room_offset_c: rng.random_range(-0.5..0.5),
        coldhead_vib_mms: rng.random_range(0.9..1.4),
        compressor_motor_mms: rng.random_range(1.3..1.9),
        compressor_other_mms: rng.random_range(0.9..1.3),
        compressor_bearing_mms: rng.random_range(0.18..0.35),
        gradient_vib_gain_mms: if three_tesla {
            rng.random_range(3.2..4.0)
        } else {
            rng.random_range(2.2..2.8)
        },
    }
}

struct History {
    install_day: i64,
    coldhead_hours: f64,
    last_maintenance_day: i64,
    records: Vec<ServiceRecord>,
}

/// A plausible service life from installation to the reference day: planned
/// maintenance every 3-4 months, cold-head swaps every 12-18k operating hours,
/// adsorber swaps, firmware upgrades up to the current line, and now and then an
/// unplanned repair.
fn history(rng: &mut SmallRng, m: &Manufacturer, firmware_index: usize, reference_day: i64) -> History {
    let install_day = reference_day - rng.random_range(180..4400);
    let mut records = vec![ServiceRecord {
        day: install_day,
        kind: "installation",
        planned: true,
        note: format!("installed with firmware {}", m.firmware[0]),
    }];
    let mut coldhead_swap_day = install_day;
    let mut coldhead_life_h = rng.random_range(12_000.0..18_000.0);
    let mut adsorber_swap_day = install_day;
    let mut last_pm = install_day;
    let mut fw = 0;
    // Firmware upgrades are spread over the machine's life up to the current line.
    let upgrades: Vec<i64> = (1..=firmware_index)
        .map(|k| install_day + (reference_day - install_day) * k as i64 / (firmware_index as i64 + 1))
        .collect();
    let mut day = install_day + rng.random_range(90..130);
    while day < reference_day - 2 {
        // Planned visits fall on a Sunday, when most sites do not scan.
        let visit = day + (6 - i64::from(weekday(day)));
        if visit >= reference_day {
            break;
        }
        let mut work = vec!["inspection, filters"];
        if (visit - coldhead_swap_day) as f64 * 24.0 >= coldhead_life_h {
            work.push("cold-head swap");
            records.push(ServiceRecord {
                day: visit,
                kind: "cold_head_swap",
                planned: true,
                note: format!("after {:.0} operating hours", (visit - coldhead_swap_day) as f64 * 24.0),
            });
            coldhead_swap_day = visit;
            coldhead_life_h = rng.random_range(12_000.0..18_000.0);
        }
        if visit - adsorber_swap_day >= 3 * 365 {
            work.push("adsorber swap");
            records.push(ServiceRecord {
                day: visit,
                kind: "adsorber_swap",
                planned: true,
                note: "compressor adsorber replaced".into(),
            });
            adsorber_swap_day = visit;
        }
        if fw < upgrades.len() && visit >= upgrades[fw] {
            fw += 1;
            records.push(ServiceRecord {
                day: visit,
                kind: "firmware_upgrade",
                planned: true,
                note: format!("{} -> {}", m.firmware[fw - 1], m.firmware[fw]),
            });
        }
        records.push(ServiceRecord {
            day: visit,
            kind: "planned_maintenance",
            planned: true,
            note: work.join(", "),
        });
        last_pm = visit;
        if rng.random_bool(0.25) {
            let repair_day = visit + rng.random_range(10..80);
            if repair_day < reference_day {
                let mode = crate::modes::FailureMode::ALL[rng.random_range(0..crate::modes::FailureMode::ALL.len())];
                records.push(ServiceRecord {
                    day: repair_day,
                    kind: mode.slug(),
                    planned: false,
                    note: format!("unplanned repair: {}", mode.describe()),
                });
            }
        }
        day = visit + rng.random_range(90..130);
    }
    records.sort_by_key(|r| r.day);
    History {
        install_day,
        coldhead_hours: ((reference_day - coldhead_swap_day) as f64 * 24.0).max(0.0),
        last_maintenance_day: last_pm,
        records,
    }
}

/// `machines.csv`: one row per machine with its site, maker and state at the reference date.
pub fn machines_csv(fleet: &Fleet) -> String {
    let mut out = String::from(
        "machine_id,site,site_name,city,climate,utc_offset_min,work_pattern,manufacturer,manufacturer_name,model,\
         field_strength_t,firmware,install_date,last_maintenance,coldhead_hours,helium_level_pct\n",
    );
    for m in &fleet.machines {
        let s = m.site();
        let row = [
            m.id.clone(),
            s.slug.into(),
            s.name.into(),
            s.city.into(),
            s.climate.into(),
            s.utc_offset_min.to_string(),
            s.pattern.describe(),
            m.maker().slug.into(),
            m.maker().name.into(),
            m.model.into(),
            format!("{:.1}", m.field_strength_t),
            m.firmware.into(),
            format_date(m.install_day),
            format_date(m.last_maintenance_day),
            format!("{:.0}", m.coldhead_hours),
            format!("{:.2}", m.baseline.helium_level_pct),
        ];
        crate::events::push_csv_row(&mut out, &row);
    }
    out
}

/// `service_history.csv`: every past service visit of every machine.
pub fn service_history_csv(fleet: &Fleet) -> String {
    let mut out = String::from("machine_id,date,kind,planned,note\n");
    for m in &fleet.machines {
        for r in &m.service_history {
            let row = [
                m.id.clone(),
                format_date(r.day),
                r.kind.into(),
                r.planned.to_string(),
                r.note.clone(),
            ];
            crate::events::push_csv_row(&mut out, &row);
        }
    }
    out
}

/// Outdoor conditions of a site.
#[derive(Debug, Clone)]
pub(crate) struct Climate {
    mean: f64,
    season: f64,
    daily: f64,
    southern: bool,
    offset_ms: i64,
}

impl Climate {
    pub fn of(site: &Site) -> Climate {
        Climate {
            mean: site.outdoor_mean_c,
            season: site.outdoor_season_c,
            daily: site.outdoor_daily_c,
            southern: site.southern,
            offset_ms: i64::from(site.utc_offset_min) * 60_000,
        }
    }

    /// Seasonal factor of a UTC day: +1 at midsummer (late July in the north), -1 at midwinter.
    pub fn season(&self, day: i64) -> f64 {
        let s = (std::f64::consts::TAU * (day as f64 - 20.0 - 180.0) / crate::time::YEAR_DAYS).cos();
        if self.southern { -s } else { s }
    }

    /// Daily factor: +1 mid-afternoon local time, -1 before dawn.
    pub fn daily(&self, t_ms: i64) -> f64 {
        let local_h = (t_ms + self.offset_ms).rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
        (std::f64::consts::TAU * (local_h - 15.0) / 24.0).cos()
    }

    pub fn outdoor_c(&self, season: f64, daily: f64) -> f64 {
        self.mean + self.season * season + self.daily * daily
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_fleet_with_every_maker() {
        let a = Fleet::generate(12, 7);
        let b = Fleet::generate(12, 7);
        assert_eq!(a.devices(), b.devices());
        assert_eq!(a.machines[3].service_history, b.machines[3].service_history);
        let makers: std::collections::BTreeSet<_> = a.devices().into_iter().map(|d| d.manufacturer).collect();
        assert_eq!(makers.len(), 3);
        // Devices do not depend on the reference day.
        assert_eq!(Fleet::generate_at(12, 7, 21_000).devices(), a.devices());
    }

    #[test]
    fn histories_are_plausible() {
        let f = Fleet::generate(30, 3);
        for m in &f.machines {
            assert!(m.install_day < f.reference_day);
            assert_eq!(m.service_history[0].kind, "installation");
            assert!(m.service_history.iter().all(|r| r.day < f.reference_day));
            assert!(m.service_history.windows(2).all(|w| w[0].day <= w[1].day));
            assert!(m.coldhead_hours < 22_000.0, "{}: {}", m.id, m.coldhead_hours);
            assert!(m.last_maintenance_day <= f.reference_day);
        }
        assert!(f.machines.iter().any(|m| m.service_history.len() > 10));
    }
}
