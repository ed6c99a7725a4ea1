//! Larmor's data directory, in one place: where every table and file lives
//! ([`DataDir`], [`Table`]), each table's Arrow schema ([`schema`]), how files
//! and partitions are named ([`naming`]), and how a file is written so that no
//! reader ever sees half of it ([`durable`], [`DatedWriter`]). Writers and readers import these;
//! nothing else in Larmor spells a path, a partition or a schema.

pub mod alert_store;
pub mod dated;
pub mod durable;
pub mod layout;
pub mod naming;
pub mod schema;

pub use dated::DatedWriter;
pub use layout::{DataDir, Table};
