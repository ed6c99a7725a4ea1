//! Small dense least squares for the channel-group residuals: normal equations
//! solved by Cholesky with a touch of ridge, so collinear or constant channels give
//! a finite answer instead of a failure.

// Index loops read like the formulas.
#![allow(clippy::needless_range_loop)]

/// Solves (A + λ·diag(A)) x = b for a symmetric positive semi-definite `a` (n×n,
/// row-major); None if it is singular even with the ridge.
pub fn solve_ridge(a: &[f64], b: &[f64], n: usize, ridge: f64) -> Option<Vec<f64>> {
    let mut m = a.to_vec();
    for i in 0..n {
        m[i * n + i] += ridge * a[i * n + i].abs().max(1e-12);
    }
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = m[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                // Relative to the diagonal: a pivot lost to rounding is singular too.
                if s <= 1e-12 * m[i * n + i].abs() || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k * n + i] * x[k];
        }
        x[i] = s / l[i * n + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_line_and_survives_a_constant_column() {
        // y = 2 + 3x over x = 0..9: normal equations of [1, x]
        let xs: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let (n, sx, sxx) = (10.0, xs.iter().sum::<f64>(), xs.iter().map(|x| x * x).sum::<f64>());
        let sy: f64 = xs.iter().map(|x| 2.0 + 3.0 * x).sum();
        let sxy: f64 = xs.iter().map(|x| x * (2.0 + 3.0 * x)).sum();
        let beta = solve_ridge(&[n, sx, sx, sxx], &[sy, sxy], 2, 1e-12).unwrap();
        assert!((beta[0] - 2.0).abs() < 1e-6 && (beta[1] - 3.0).abs() < 1e-6, "{beta:?}");
        // a second regressor identical to the intercept: singular without the ridge
        assert!(solve_ridge(&[n, n, n, n], &[sy, sy], 2, 0.0).is_none());
        assert!(solve_ridge(&[n, n, n, n], &[sy, sy], 2, 1e-6).is_some());
    }
}
