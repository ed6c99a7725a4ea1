//! Per-frame costs of ingest on one core: `wire::decode` (JSON to readings) and
//! `FrameVerifier::verify` (registry key, Ed25519 signature over the payload,
//! clock), on the frames the end-to-end bench sends (20 samples per frame).
//! Run: `cargo bench -p larmor-benches --bench wire_decode`

use larmor::simulated::{simulated_enrolment, simulated_keys};
use larmor_datasets::{Fleet, Simulator};
use larmor_ingest::trust::{FrameVerifier, TrustConfig};
use larmor_ingest::{DeviceRegistry, wire};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let machines = 20;
    let seed = 7;
    let mut sim = Simulator::new(Fleet::generate(machines, seed), seed);
    let devices = simulated_enrolment(Fleet::generate(machines, seed).devices(), seed);
    let keys = simulated_keys(&devices, seed);
    let registry = DeviceRegistry::new(devices).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    // 20 samples per frame: a gateway batching 2 s at 10 Hz, as in ingest_e2e.
    let frames = sim.frames(now - 60_000, 20, 100);
    let encoded: Vec<(Vec<u8>, larmor_ingest::Stream)> = frames.iter().map(|f| (f.encode(), f.stream)).collect();
    let signatures: Vec<String> = frames
        .iter()
        .zip(&encoded)
        .map(|(f, (p, _))| keys[&f.machine_id].sign(p))
        .collect();
    let readings_per_pass: usize = frames.iter().map(|f| f.reading_count()).sum();
    let bytes_per_pass: usize = encoded.iter().map(|e| e.0.len()).sum();
    let report = |what: &str, passes: usize, secs: f64| {
        let readings = (readings_per_pass * passes) as f64;
        println!(
            "{what}: {:.2} M readings/s, {:.0} MB/s, {:.0} frames/s, {:.3} core-s per million readings ({} readings in {:.2}s, one core)",
            readings / secs / 1e6,
            (bytes_per_pass * passes) as f64 / secs / 1e6,
            (encoded.len() * passes) as f64 / secs,
            secs / readings * 1e6,
            readings,
            secs
        );
    };

    let passes = 200;
    let start = Instant::now();
    for _ in 0..passes {
        for (bytes, stream) in &encoded {
            black_box(wire::decode(black_box(bytes), *stream).unwrap());
        }
    }
    report("wire_decode", passes, start.elapsed().as_secs_f64());

    let mut verifier = FrameVerifier::new(TrustConfig::default());
    let passes = 20;
    let start = Instant::now();
    for _ in 0..passes {
        for ((f, (bytes, _)), sig) in frames.iter().zip(&encoded).zip(&signatures) {
            let device = registry.get(&f.machine_id).unwrap();
            verifier
                .verify(f, device, black_box(bytes), Some(sig.as_bytes()), now)
                .unwrap();
        }
    }
    report("verify (Ed25519 + clock)", passes, start.elapsed().as_secs_f64());
}
