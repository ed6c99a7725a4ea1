//! Larmor ingest: everything that enters the system. It owns the wire format
//! and channel catalogue, the device registry, the Kafka source with its
//! dead-letter queue, the Parquet archive writer and the archive's ledger.

pub mod archive;
pub mod channels;
pub mod compact;
pub mod dlq;
pub mod kafka;
pub mod ledger;
pub mod metrics;
pub mod publish;
pub mod registry;
pub mod source;
pub mod trust;
pub mod verify;
pub mod wire;

pub use channels::{CATALOG, ChannelId, ChannelSpec, Stream};
pub use registry::{Device, DeviceRegistry, RegistryWatch, SharedRegistry};
pub use wire::{Frame, Reject, RejectReason, Sample};
