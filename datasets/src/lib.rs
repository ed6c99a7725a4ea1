//! Larmor datasets: simulated MRI fleets (sites, manufacturers, machines) and the
//! telemetry they send, deterministic from a seed, plus live publishing to Kafka.

pub mod fleet;
pub mod live;
pub mod sim;
pub mod tally;

pub use fleet::{Fleet, Machine};
pub use sim::Simulator;
pub use tally::Tally;
