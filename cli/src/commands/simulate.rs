//! `larmor simulate`: publish a simulated fleet to any Kafka.

use super::common::{load_config, until_stopped};
use anyhow::Context;
use larmor_datasets::live::{LiveConfig, LiveFleet};
use larmor_datasets::{Fleet, Simulator};
use larmor_ingest::publish::FramePublisher;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub async fn simulate(
    brokers: String,
    machines: usize,
    rate: f64,
    duration: Option<Duration>,
    seed: u64,
    speed: f64,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let cfg = load_config(&config)?;
    let publisher = FramePublisher::new(&cfg.kafka.client_config(&brokers)?, &cfg.topics)
        .context("cannot create a Kafka producer")?;
    let generated = Fleet::generate(machines, seed);
    let devices = larmor::simulated::simulated_enrolment(generated.devices(), seed);
    let publisher = publisher.with_keys(larmor::simulated::simulated_keys(&devices, seed));
    let fleet = LiveFleet::new(Simulator::new(generated, seed)).with_speed(speed);
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (fleet, stop) = (fleet.clone(), stop.clone());
        let live = LiveConfig {
            rate_hz: rate,
            frame_interval: cfg.simulator.frame_interval,
        };
        std::thread::spawn(move || fleet.run(&publisher, live, &stop))
    };
    println!("publishing {machines} machines at {rate} samples/s each to {brokers}; Ctrl-C to stop");
    until_stopped(duration).await;
    stop.store(true, Ordering::Relaxed);
    let sent = tokio::task::block_in_place(|| worker.join())
        .map_err(|_| anyhow::anyhow!("the simulator thread panicked"))?
        .with_context(|| format!("publishing to {brokers} failed; check the address and that the topics exist"))?;
    let readings = fleet.tally.lock().unwrap_or_else(|p| p.into_inner()).readings();
    println!("published {sent} frames, {readings} readings");
    Ok(())
}
