//! One module per subcommand.

pub mod alerts;
pub mod archive;
pub mod channel;
pub mod common;
pub mod dataset;
pub mod detect;
pub mod device;
pub mod evaluate;
pub mod forecast;
pub mod query;
pub mod run;
pub mod simulate;
pub mod train;
