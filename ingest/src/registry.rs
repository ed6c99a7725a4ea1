//! The device registry: which machines are enrolled, where they stand and who
//! made them. It is a TOML file the hospital's IT controls; ingest refuses frames
//! from machines that are not in it.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// One enrolled machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub machine_id: String,
    /// Hospital (site) the machine stands in.
    pub site: String,
    /// Manufacturer slug; also the name of its outbox (`manufacturer/<slug>/`).
    pub manufacturer: String,
    pub model: String,
    pub firmware: String,
    /// Ed25519 public key (hex) that signs the device's frames; filled by enrolment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// A revoked device's frames are refused.
    #[serde(default)]
    pub revoked: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RegistryFile {
    #[serde(default, rename = "device")]
    devices: Vec<Device>,
}

/// Enrolled devices, looked up by machine id.
#[derive(Debug, Clone, Default)]
pub struct DeviceRegistry {
    devices: Vec<Device>,
    index: HashMap<String, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read the device registry {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the device registry {path} is not valid TOML: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("machine {0} is enrolled twice in the device registry; remove one entry")]
    Duplicate(String),
    #[error("machine {0} is not in the device registry; enrol it first with `larmor device enroll`")]
    NotEnrolled(String),
}

impl DeviceRegistry {
    pub fn new(devices: Vec<Device>) -> Result<Self, RegistryError> {
        let mut index = HashMap::with_capacity(devices.len());
        for (i, d) in devices.iter().enumerate() {
            if index.insert(d.machine_id.clone(), i).is_some() {
                return Err(RegistryError::Duplicate(d.machine_id.clone()));
            }
        }
        Ok(DeviceRegistry { devices, index })
    }

    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Io {
            path: p.clone(),
            source,
        })?;
        let file: RegistryFile = toml::from_str(&text).map_err(|source| RegistryError::Parse { path: p, source })?;
        Self::new(file.devices)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&RegistryFile {
            devices: self.devices.clone(),
        })
        .expect("registry serializes")
    }

    /// Writes the registry durably and whole (a running pipeline reloads the file
    /// when it changes, and a revocation must survive a power cut), keeping the
    /// file's permissions so whoever could read it (ingest) still can.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        larmor_datadir::durable::write_file(path, self.to_toml().as_bytes())
    }

    /// Adds a device; refuses a machine id that is already enrolled.
    pub fn enroll(&mut self, device: Device) -> Result<(), RegistryError> {
        if self.index.contains_key(&device.machine_id) {
            return Err(RegistryError::Duplicate(device.machine_id));
        }
        self.index.insert(device.machine_id.clone(), self.devices.len());
        self.devices.push(device);
        Ok(())
    }

    /// Marks a device revoked: its frames are refused from then on.
    pub fn revoke(&mut self, machine_id: &str) -> Result<(), RegistryError> {
        let i = *self
            .index
            .get(machine_id)
            .ok_or_else(|| RegistryError::NotEnrolled(machine_id.to_string()))?;
        self.devices[i].revoked = true;
        Ok(())
    }

    pub fn get(&self, machine_id: &str) -> Option<&Device> {
        self.index.get(machine_id).map(|&i| &self.devices[i])
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Manufacturer slugs, sorted and unique.
    pub fn manufacturers(&self) -> Vec<String> {
        let mut m: Vec<String> = self.devices.iter().map(|d| d.manufacturer.clone()).collect();
        m.sort();
        m.dedup();
        m
    }
}

/// The registry in force, shared by everything that looks devices up (ingest's
/// checks, alert routing). A reload swaps the whole registry at once, so a reader
/// never sees half of one file and half of another.
#[derive(Clone, Debug)]
pub struct SharedRegistry(std::sync::Arc<arc_swap::ArcSwap<DeviceRegistry>>);

impl SharedRegistry {
    pub fn new(registry: std::sync::Arc<DeviceRegistry>) -> Self {
        SharedRegistry(std::sync::Arc::new(arc_swap::ArcSwap::new(registry)))
    }

    /// The registry as it is now (a cheap handle: hold it for a batch of lookups).
    pub fn current(&self) -> std::sync::Arc<DeviceRegistry> {
        self.0.load_full()
    }

    pub fn replace(&self, registry: std::sync::Arc<DeviceRegistry>) {
        self.0.store(registry);
    }
}

impl From<std::sync::Arc<DeviceRegistry>> for SharedRegistry {
    fn from(r: std::sync::Arc<DeviceRegistry>) -> Self {
        SharedRegistry::new(r)
    }
}

/// Notices when the registry file changes, so a revocation or a new enrolment
/// takes effect while ingest runs, without a restart.
#[derive(Debug)]
pub struct RegistryWatch {
    path: std::path::PathBuf,
    /// The file as it was when last loaded.
    loaded: Option<Stamp>,
    /// The file as the previous check saw it: a change is loaded once two checks
    /// in a row agree, so a file an editor is still writing in place is not taken
    /// half-written (a shorter registry would refuse every machine it lost).
    seen: Option<Stamp>,
    every: std::time::Duration,
    last_check: std::time::Instant,
}

/// What tells one version of the file from the next: modification time, length
/// and inode (`DeviceRegistry::save` renames a new file into place, so even a
/// same-length change within one mtime tick shows).
type Stamp = (std::time::SystemTime, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some((m.modified().ok()?, m.len(), inode))
}

impl RegistryWatch {
    /// Watches `path`, checking at most once per `every`; the file as it is now is
    /// the baseline. Create it before loading the registry it watches, so a change
    /// made in between is reloaded, not missed.
    pub fn new(path: &Path, every: std::time::Duration) -> Self {
        let now = stamp(path);
        RegistryWatch {
            path: path.to_path_buf(),
            loaded: now,
            seen: now,
            every,
            last_check: std::time::Instant::now(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The registry as the file now says, when it changed since the last load and
    /// has stayed the same since the previous check. A file that cannot be read or
    /// parsed is reported and retried at the next check; the caller keeps the
    /// registry it has.
    pub fn poll(&mut self) -> Option<Result<DeviceRegistry, RegistryError>> {
        if self.last_check.elapsed() < self.every {
            return None;
        }
        self.last_check = std::time::Instant::now();
        let now = stamp(&self.path);
        let settled = now == self.seen;
        self.seen = now;
        if now == self.loaded || !settled {
            return None;
        }
        let loaded = DeviceRegistry::load(&self.path);
        if loaded.is_ok() {
            self.loaded = now;
        }
        Some(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str, m: &str) -> Device {
        Device {
            machine_id: id.into(),
            site: "st-anne".into(),
            manufacturer: m.into(),
            model: "X 3T".into(),
            firmware: "1.0".into(),
            public_key: None,
            revoked: false,
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let r = DeviceRegistry::new(vec![dev("A", "aurora"), dev("B", "boreal")]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("devices.toml");
        r.save(&p).unwrap();
        let back = DeviceRegistry::load(&p).unwrap();
        assert_eq!(back.devices(), r.devices());
        assert_eq!(back.get("B").unwrap().manufacturer, "boreal");
        assert!(back.get("C").is_none());
        assert_eq!(back.manufacturers(), vec!["aurora", "boreal"]);
    }

    #[test]
    fn enrol_and_revoke() {
        let mut r = DeviceRegistry::new(vec![dev("A", "aurora")]).unwrap();
        assert!(matches!(r.enroll(dev("A", "x")), Err(RegistryError::Duplicate(_))));
        r.enroll(dev("B", "boreal")).unwrap();
        assert!(!r.get("B").unwrap().revoked);
        r.revoke("B").unwrap();
        assert!(r.get("B").unwrap().revoked);
        assert!(matches!(r.revoke("C"), Err(RegistryError::NotEnrolled(_))));
    }

    #[test]
    fn a_watch_reloads_a_changed_registry_and_keeps_retrying_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("devices.toml");
        let mut r = DeviceRegistry::new(vec![dev("A", "aurora")]).unwrap();
        r.save(&p).unwrap();
        let mut w = RegistryWatch::new(&p, std::time::Duration::ZERO);
        assert!(w.poll().is_none(), "unchanged");
        r.revoke("A").unwrap();
        r.enroll(dev("B", "boreal")).unwrap();
        r.save(&p).unwrap();
        assert!(w.poll().is_none(), "a change is loaded once it has settled");
        let back = w.poll().expect("changed").unwrap();
        assert!(back.get("A").unwrap().revoked);
        assert!(back.get("B").is_some());
        assert!(w.poll().is_none(), "loaded once");
        // Written in place, in two goes: the half-written file is never loaded.
        std::fs::write(&p, "[[device]]\nmachine_id = ").unwrap();
        assert!(w.poll().is_none());
        std::fs::write(&p, "[[device]]\nmachine_id = \"A\"\nsite = ").unwrap();
        assert!(w.poll().is_none(), "still changing");
        assert!(matches!(w.poll(), Some(Err(RegistryError::Parse { .. }))));
        assert!(w.poll().is_some(), "a broken file is retried");
        r.save(&p).unwrap();
        assert!(w.poll().is_none());
        assert_eq!(w.poll().unwrap().unwrap().len(), 2);
        // A new file of the same length (here the same content) is still seen.
        r.save(&p).unwrap();
        assert!(w.poll().is_none());
        assert_eq!(w.poll().expect("a new file").unwrap().len(), 2);
    }

    #[test]
    fn refuses_duplicates() {
        assert!(matches!(
            DeviceRegistry::new(vec![dev("A", "x"), dev("A", "y")]),
            Err(RegistryError::Duplicate(_))
        ));
    }
}
