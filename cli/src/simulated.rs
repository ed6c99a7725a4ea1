//! The simulated fleet's device identities: each machine's deterministic key
//! pair, enrolled in a registry (the verifying side) and held by the publisher
//! (the signing side).

use larmor_ingest::Device;
use larmor_ingest::trust::DeviceKey;
use std::collections::HashMap;

/// Enrols simulated machines with their deterministic keys.
pub fn simulated_enrolment(mut devices: Vec<Device>, seed: u64) -> Vec<Device> {
    for d in &mut devices {
        d.public_key = Some(DeviceKey::simulated(seed, &d.machine_id).public_hex());
    }
    devices
}

/// The signing keys of simulated machines, as their devices would hold them.
pub fn simulated_keys(devices: &[Device], seed: u64) -> HashMap<String, DeviceKey> {
    devices
        .iter()
        .map(|d| (d.machine_id.clone(), DeviceKey::simulated(seed, &d.machine_id)))
        .collect()
}
