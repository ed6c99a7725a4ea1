//! The `larmor` command's library half: configuration, the pipeline wiring of
//! `larmor run`, and the `/metrics` endpoint. `main.rs` only parses arguments.

pub mod config;
pub mod metrics_http;
pub mod pipeline;
