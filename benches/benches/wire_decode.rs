//! Wire-format decode throughput: readings/s through `wire::decode` on one core.
//! Run: `cargo bench -p larmor-benches --bench wire_decode`

use larmor_datasets::{Fleet, Simulator};
use larmor_ingest::wire;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let mut sim = Simulator::new(Fleet::generate(20, 7), 7);
    // 10 samples per frame, as a gateway batching one second at 10 Hz would send.
    let frames = sim.frames(1_764_300_000_000, 10, 100);
    let encoded: Vec<(Vec<u8>, larmor_ingest::Stream)> = frames.iter().map(|f| (f.encode(), f.stream)).collect();
    let readings_per_pass: usize = frames.iter().map(|f| f.reading_count()).sum();
    let bytes_per_pass: usize = encoded.iter().map(|e| e.0.len()).sum();
    let passes = 400;
    let start = Instant::now();
    for _ in 0..passes {
        for (bytes, stream) in &encoded {
            black_box(wire::decode(black_box(bytes), *stream).unwrap());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let readings = (readings_per_pass * passes) as f64;
    println!(
        "wire_decode: {:.2} M readings/s, {:.0} MB/s, {:.0} frames/s ({} readings in {:.2}s, one core)",
        readings / secs / 1e6,
        (bytes_per_pass * passes) as f64 / secs / 1e6,
        (encoded.len() * passes) as f64 / secs,
        readings,
        secs
    );
}
