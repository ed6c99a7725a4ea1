//! Windowed scoring after the Numenta Anomaly Benchmark's rule (standard
//! profile): a window around each labelled anomaly (10 % of the series'
//! length shared among its anomalies, centred on the label); the earliest alarm
//! in a window earns up to 1 (a sigmoid of how early it came), later alarms in
//! it nothing; a window without an alarm costs 1; every alarm outside the
//! windows costs up to 0.11 (less just after a window). Alarms in the
//! probation (the first 15 % of a series) count for nothing. Totals are
//! normalised so that never alarming scores 0 and alarming at the start of
//! every window (and nowhere else) 100.

/// Weights of the standard profile.
const TP_WEIGHT: f64 = 1.0;
const FP_WEIGHT: f64 = 0.11;
const FN_WEIGHT: f64 = 1.0;
/// Share of a series that is probation.
pub const PROBATION: f64 = 0.15;

/// NAB's scaled sigmoid: about 1 at a window's start (-1), 0 at its end (0),
/// towards -1 after it.
fn scaled_sigmoid(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// Windows (inclusive index ranges) around `labels` in a series of `n` readings.
pub fn windows(n: usize, labels: &[usize]) -> Vec<(usize, usize)> {
    if labels.is_empty() || n == 0 {
        return Vec::new();
    }
    let len = (0.1 * n as f64 / labels.len() as f64) as usize;
    let mut w: Vec<(usize, usize)> = labels
        .iter()
        .map(|&l| (l.saturating_sub(len / 2), (l + len / 2).min(n - 1)))
        .collect();
    w.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (a, b) in w {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// Scores and counts of one or more series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub raw: f64,
    /// What never alarming scores, and what a perfect detector scores.
    pub null: f64,
    pub perfect: f64,
    pub windows: usize,
    pub detected: usize,
    /// Alarms outside every window (after probation).
    pub false_alarms: usize,
    /// Readings scored (after probation).
    pub readings: usize,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.raw += o.raw;
        self.null += o.null;
        self.perfect += o.perfect;
        self.windows += o.windows;
        self.detected += o.detected;
        self.false_alarms += o.false_alarms;
        self.readings += o.readings;
    }

    /// 0 for never alarming, 100 for perfect; `None` without windows.
    pub fn normalised(&self) -> Option<f64> {
        (self.perfect > self.null).then(|| 100.0 * (self.raw - self.null) / (self.perfect - self.null))
    }
}

/// Scores one series whose readings alarm where `alarm[i]`.
pub fn score(alarm: &[bool], labels: &[usize]) -> Tally {
    let n = alarm.len();
    let wins = windows(n, labels);
    let probation = (PROBATION * n as f64) as usize;
    let mut t = Tally {
        windows: wins.len(),
        null: -FN_WEIGHT * wins.len() as f64,
        perfect: TP_WEIGHT * scaled_sigmoid(-1.0) * wins.len() as f64,
        readings: n.saturating_sub(probation),
        ..Tally::default()
    };
    let mut hit = vec![false; wins.len()];
    let mut w = 0; // the first window not yet passed
    for (i, &a) in alarm.iter().enumerate() {
        while w < wins.len() && wins[w].1 < i {
            w += 1;
        }
        if !a || i < probation {
            continue;
        }
        if w < wins.len() && wins[w].0 <= i {
            let (s, e) = wins[w];
            if !hit[w] {
                hit[w] = true;
                let width = (e - s + 1) as f64;
                let y = -((e - i + 1) as f64) / width;
                t.raw += TP_WEIGHT * scaled_sigmoid(y);
            }
        } else {
            t.false_alarms += 1;
            let unweighted = match w.checked_sub(1).map(|p| wins[p]) {
                Some((s, e)) => {
                    let width = (e - s + 1) as f64;
                    scaled_sigmoid((i - e) as f64 / (width - 1.0).max(1.0))
                }
                None => -1.0,
            };
            t.raw += FP_WEIGHT * unweighted;
        }
    }
    t.detected = hit.iter().filter(|&&h| h).count();
    t.raw -= FN_WEIGHT * (wins.len() - t.detected) as f64;
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_alarming_is_zero_and_perfect_is_hundred() {
        let n = 1000;
        let labels = [400, 700];
        let t = score(&vec![false; n], &labels);
        assert_eq!(t.normalised(), Some(0.0));
        let w = windows(n, &labels);
        let mut perfect = vec![false; n];
        for &(s, _) in &w {
            perfect[s] = true;
        }
        let t = score(&perfect, &labels);
        assert!((t.normalised().unwrap() - 100.0).abs() < 1e-9);
        // Late in the window earns less; a false alarm costs.
        let mut late = vec![false; n];
        late[w[0].1] = true;
        late[w[1].0] = true;
        late[100 + n / 5] = true;
        let t = score(&late, &labels);
        assert_eq!(t.false_alarms, 1, "{t:?}");
        late[100 + n / 5] = false;
        let u = score(&late, &labels);
        // An alarm at a window's end earns about nothing (but avoids the miss).
        assert!(u.normalised().unwrap() < 80.0, "{u:?}");
        assert!(t.normalised().unwrap() < u.normalised().unwrap(), "{t:?} {u:?}");
        // Alarms in probation count for nothing.
        let mut early = perfect.clone();
        early[10] = true;
        assert_eq!(score(&early, &labels), score(&perfect, &labels));
    }
}
