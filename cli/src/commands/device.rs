//! `larmor device`: enrol and revoke devices in the registry.

use larmor_datasets::Fleet;
use larmor_ingest::registry::{Device, DeviceRegistry};
use larmor_ingest::trust::DeviceKey;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum DeviceCommand {
    /// Create a key pair for a machine and add it to the registry. The private key
    /// is written to --key-out (mode 0600) for the device or its gateway.
    Enroll {
        /// Registry file (created if missing).
        #[arg(long)]
        registry: PathBuf,
        #[arg(long)]
        machine_id: String,
        #[arg(long)]
        site: String,
        /// Manufacturer slug, e.g. `aurora`; it names the manufacturer's outbox.
        #[arg(long)]
        manufacturer: String,
        #[arg(long)]
        model: String,
        #[arg(long)]
        firmware: String,
        /// Where to write the private key (hex). Default: `<machine-id>.key` beside the registry.
        #[arg(long)]
        key_out: Option<PathBuf>,
    },
    /// Revoke a machine: its frames are refused from then on.
    Revoke {
        #[arg(long)]
        registry: PathBuf,
        machine_id: String,
    },
    /// Write the registry of a simulated fleet (for `larmor simulate` against a real cluster).
    SimulatedRegistry {
        #[arg(long, default_value_t = 20)]
        machines: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

fn load_or_new(path: &Path) -> anyhow::Result<DeviceRegistry> {
    if path.exists() {
        Ok(DeviceRegistry::load(path)?)
    } else {
        Ok(DeviceRegistry::default())
    }
}

pub fn device(cmd: DeviceCommand) -> anyhow::Result<()> {
    match cmd {
        DeviceCommand::Enroll {
            registry,
            machine_id,
            site,
            manufacturer,
            model,
            firmware,
            key_out,
        } => {
            let mut r = load_or_new(&registry)?;
            let key = DeviceKey::generate()?;
            r.enroll(Device {
                machine_id: machine_id.clone(),
                site,
                manufacturer,
                model,
                firmware,
                public_key: Some(key.public_hex()),
                revoked: false,
            })?;
            let key_out = key_out.unwrap_or_else(|| {
                registry
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(format!("{}.key", larmor_datadir::naming::sanitize_id(&machine_id)))
            });
            write_secret(&key_out, &key.to_hex())?;
            r.save(&registry)?;
            println!(
                "enrolled {machine_id}; private key in {} (give it to the device, then delete it here)",
                key_out.display()
            );
        }
        DeviceCommand::Revoke { registry, machine_id } => {
            let mut r = DeviceRegistry::load(&registry)?;
            r.revoke(&machine_id)?;
            r.save(&registry)?;
            println!(
                "revoked {machine_id}; a running `larmor run` with [registry] path = {} refuses its frames from its next check of the file (registry.watch_interval)",
                registry.display()
            );
        }
        DeviceCommand::SimulatedRegistry { machines, seed, out } => {
            let devices = larmor::simulated::simulated_enrolment(Fleet::generate(machines, seed).devices(), seed);
            DeviceRegistry::new(devices)?.save(&out)?;
            println!(
                "wrote the registry of {machines} simulated machines (seed {seed}) to {}",
                out.display()
            );
        }
    }
    Ok(())
}

/// Writes a private key readable by its owner only.
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create the key file {}: {e} (it must not exist yet)",
                path.display()
            )
        })?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}
