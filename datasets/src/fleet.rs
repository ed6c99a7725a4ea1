//! The simulated fleet: sites (hospitals), manufacturers and their models, and
//! the machines installed at each site.

use larmor_ingest::Device;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A manufacturer: slug (outbox name), display name, models and firmware lines.
pub struct Manufacturer {
    pub slug: &'static str,
    pub name: &'static str,
    pub models: &'static [&'static str],
    pub firmware: &'static [&'static str],
}

/// Fictional manufacturers, so nothing here claims to be a real vendor's data.
pub const MANUFACTURERS: &[Manufacturer] = &[
    Manufacturer {
        slug: "aurora",
        name: "Aurora Medical",
        models: &["Aurora Vega 1.5T", "Aurora Vega 3T"],
        firmware: &["VX21", "VX23"],
    },
    Manufacturer {
        slug: "boreal",
        name: "Boreal Imaging",
        models: &["Boreal Orion 1.5T", "Boreal Orion XT 3T"],
        firmware: &["7.2.1", "7.4.0"],
    },
    Manufacturer {
        slug: "cygnus",
        name: "Cygnus Systems",
        models: &["Cygnus Lyra 3T", "Cygnus Lyra Wide 1.5T"],
        firmware: &["R11", "R12"],
    },
];

/// A hospital.
pub struct Site {
    pub slug: &'static str,
    /// Typical magnet-room temperature there, °C.
    pub room_temp_c: f64,
}

pub const SITES: &[Site] = &[
    Site {
        slug: "st-anne-general",
        room_temp_c: 20.0,
    },
    Site {
        slug: "northfield-university",
        room_temp_c: 19.5,
    },
    Site {
        slug: "harbour-childrens",
        room_temp_c: 20.5,
    },
    Site {
        slug: "valley-regional",
        room_temp_c: 21.0,
    },
    Site {
        slug: "lakeside-clinic",
        room_temp_c: 19.0,
    },
];

/// One simulated machine.
#[derive(Debug, Clone)]
pub struct Machine {
    pub id: String,
    pub site: usize,
    pub manufacturer: usize,
    pub model: &'static str,
    pub firmware: &'static str,
    /// Per-machine offsets so machines are not identical.
    pub helium_level_pct: f64,
    pub stage2_k: f64,
}

pub struct Fleet {
    pub machines: Vec<Machine>,
}

impl Fleet {
    /// The same `n` and `seed` always give the same fleet. Manufacturers rotate so
    /// every fleet of 3 or more machines has all of them.
    pub fn generate(n: usize, seed: u64) -> Fleet {
        let mut rng = SmallRng::seed_from_u64(seed);
        let machines = (0..n)
            .map(|i| {
                let m = &MANUFACTURERS[i % MANUFACTURERS.len()];
                Machine {
                    id: format!("MRI-{:04}", i + 1),
                    site: (i / 2) % SITES.len(),
                    manufacturer: i % MANUFACTURERS.len(),
                    model: m.models[rng.random_range(0..m.models.len())],
                    firmware: m.firmware[rng.random_range(0..m.firmware.len())],
                    helium_level_pct: rng.random_range(65.0..95.0),
                    stage2_k: rng.random_range(3.9..4.2),
                }
            })
            .collect();
        Fleet { machines }
    }

    /// Registry entries for every machine.
    pub fn devices(&self) -> Vec<Device> {
        self.machines
            .iter()
            .map(|m| Device {
                machine_id: m.id.clone(),
                site: SITES[m.site].slug.to_string(),
                manufacturer: MANUFACTURERS[m.manufacturer].slug.to_string(),
                model: m.model.to_string(),
                firmware: m.firmware.to_string(),
                public_key: None,
                revoked: false,
            })
            .collect()
    }
}
