//! Larmor datasets: a simulated MRI fleet an MRI service engineer would
//! recognise. Sites with climates and working hours, three manufacturers with
//! models, firmware and service histories, booked scan schedules that drive the
//! load, seven failure modes with precursors and repairs, sensor faults that are
//! not failures, and planned maintenance. Everything is deterministic from a seed.
//!
//! Outputs: live frames for Kafka ([`live`]), backfilled Parquet archives with a
//! ground-truth events table ([`backfill`]), iCalendar schedules ([`ical`]) and
//! the shipped sample ([`sample`]). The data dictionary is `datasets/README.md`.

pub mod backfill;
pub mod events;
pub mod fleet;
pub mod ical;
pub mod live;
pub mod model;
pub mod modes;
pub mod run;
pub mod sample;
pub mod scenario;
pub mod schedule;
pub mod signals;
pub mod sim;
pub mod tally;
pub mod time;

pub use backfill::{BackfillConfig, BackfillReport};
pub use fleet::{Fleet, Machine};
pub use modes::{FailureMode, SensorFaultKind};
pub use scenario::{Event, EventKind, Scenario, ScenarioConfig};
pub use sim::Simulator;
pub use tally::Tally;
