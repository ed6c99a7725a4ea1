//! The `larmor` command's library half: configuration, the topology of
//! `larmor run`, the simulated fleet's identities and the `/metrics` endpoint.
//! `main.rs` only parses arguments.

pub mod config;
pub mod metrics_http;
pub mod simulated;
pub mod topology;
