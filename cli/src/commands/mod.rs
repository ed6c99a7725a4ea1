//! One module per subcommand.

pub mod archive;
pub mod common;
pub mod dataset;
pub mod detect;
pub mod device;
pub mod query;
pub mod run;
pub mod simulate;
