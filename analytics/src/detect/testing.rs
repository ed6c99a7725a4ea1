//! Helpers for the detectors' unit tests: deterministic noise and a kernel
//! driven through episodes.

use super::series::{Debounce, Episode, Kernel};

/// Deterministic Gaussian noise (xorshift + Box-Muller), standard deviation `sigma`.
pub fn noise(seed: u64, n: usize, sigma: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            sigma * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect()
}

/// Feeds `xs` at `dt_ms` spacing; returns every score and whether an episode opened there.
pub fn run_kernel<K: Kernel>(
    mut k: K,
    xs: &[f64],
    dt_ms: i64,
    confirm: u32,
    clear_after: u32,
) -> (Vec<f64>, Vec<bool>) {
    let d = Debounce { confirm, clear_after };
    let mut e = Episode::default();
    let mut scores = Vec::with_capacity(xs.len());
    let mut opened = Vec::with_capacity(xs.len());
    for (i, &x) in xs.iter().enumerate() {
        let s = k.update(1_764_000_000_000 + i as i64 * dt_ms, x);
        assert!((0.0..=1.0).contains(&s), "score {s} at {i}");
        scores.push(s);
        opened.push(e.update(s, d));
    }
    (scores, opened)
}

/// Indices where an episode opened.
pub fn starts(opened: &[bool]) -> Vec<usize> {
    opened.iter().enumerate().filter(|(_, o)| **o).map(|(i, _)| i).collect()
}
