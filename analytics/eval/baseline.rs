//! The baseline: a rolling z-score, each reading's distance from the mean of
//! the `window` readings before it, in their standard deviations.

use std::collections::VecDeque;

pub struct RollingZ {
    window: usize,
    buf: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
}

impl RollingZ {
    pub fn new(window: usize) -> RollingZ {
        RollingZ {
            window,
            buf: VecDeque::with_capacity(window + 1),
            sum: 0.0,
            sum_sq: 0.0,
        }
    }

    /// |z| of `x` against the window before it (0 until the window is full).
    pub fn update(&mut self, x: f64) -> f64 {
        let n = self.buf.len() as f64;
        let z = if self.buf.len() == self.window {
            let mean = self.sum / n;
            let var = (self.sum_sq / n - mean * mean).max(0.0);
            let d = (x - mean).abs();
            if d == 0.0 {
                0.0
            } else if var > 0.0 {
                d / var.sqrt()
            } else {
                f64::INFINITY
            }
        } else {
            0.0
        };
        self.buf.push_back(x);
        self.sum += x;
        self.sum_sq += x * x;
        if self.buf.len() > self.window {
            let old = self.buf.pop_front().expect("non-empty");
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        z
    }
}
