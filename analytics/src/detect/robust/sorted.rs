//! The portable window of the robust detector: the readings kept in arrival
//! order and sorted, the median in O(1) and the MAD by a selection on the
//! sorted values, for any CPU and any window length.

/// A fixed window kept twice: in arrival order (to know what leaves) and sorted
/// (median in O(1)). Replacing a value shifts only the readings between the old
/// and the new value's places; the MAD is a selection on the sorted window.
#[derive(Clone)]
pub(super) struct Sorted {
    ring: Vec<f64>,
    /// The window sorted, then `+inf` up to the length [`rank`] searches fastest
    /// (see [`padded_len`]); but for the last replacement, which moves its
    /// values one reading late.
    sorted: Vec<f64>,
    /// That replacement: (from, to, old, new), places in `sorted` as it is.
    pending: Option<(usize, usize, f64, f64)>,
    head: usize,
}

impl Sorted {
    pub(super) fn new(window: usize) -> Self {
        Sorted {
            ring: Vec::with_capacity(window),
            sorted: vec![f64::INFINITY; padded_len(window)],
            pending: None,
            head: 0,
        }
    }

    pub(super) fn clear(&mut self) {
        self.ring.clear();
        self.sorted.fill(f64::INFINITY);
        self.pending = None;
        self.head = 0;
    }

    /// Readings in the window so far.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.ring.len()
    }

    /// A copy with the pending replacement applied (as the next reading sees it).
    #[cfg(test)]
    pub(super) fn settled(&self) -> Sorted {
        let mut k = self.clone();
        k.apply_pending();
        k
    }

    /// The sorted window, without the padding (once settled).
    #[cfg(test)]
    pub(super) fn window(&self) -> &[f64] {
        &self.sorted[..self.len()]
    }

    #[inline]
    fn median(&self) -> f64 {
        let n = self.len();
        if n % 2 == 1 {
            self.sorted[n / 2]
        } else {
            0.5 * (self.sorted[n / 2 - 1] + self.sorted[n / 2])
        }
    }

    /// Takes `x` while the window fills up.
    pub(super) fn fill(&mut self, x: f64) {
        let n = self.len();
        self.ring.push(x);
        let at = rank(&self.sorted, x);
        self.sorted.copy_within(at..n, at + 1);
        self.sorted[at] = x;
    }

    /// The median of the full window; refreshes `mad` when asked; then `x`
    /// replaces the oldest reading.
    #[inline(always)]
    pub(super) fn step(&mut self, x: f64, refresh: bool, mad: &mut f64) -> f64 {
        let n = self.len();
        let old = self.ring[self.head];
        let (from, to) = self.places(old, x);
        self.apply_pending();
        let m = self.median();
        if refresh {
            *mad = mad_of_sorted(&self.sorted[..n], m);
        }
        self.ring[self.head] = x;
        self.head += 1;
        if self.head == n {
            self.head = 0;
        }
        // (Also when `x` equals `old`: moving nothing costs less than a branch
        // that a quantised signal takes at random.)
        self.pending = Some((from, to, old, x));
        m
    }

    /// Where `old` leaves and `x` enters the window as it is with the pending
    /// replacement, searched in the sorted buffer as it is without it: counts
    /// corrected by the two pending values. So the search does not wait for the
    /// previous reading's moves (each search would otherwise wait for the last
    /// one's memory moves, which wait for its search).
    #[inline(always)]
    fn places(&self, old: f64, x: f64) -> (usize, usize) {
        let s = &self.sorted[..];
        let (mut from, mut to) = (rank(s, old), rank(s, x));
        if let Some((_, _, po, px)) = self.pending {
            from = from + usize::from(px < old) - usize::from(po < old);
            to = to + usize::from(px < x) - usize::from(po < x);
        }
        (from, to)
    }

    /// Moves the values for the pending replacement. Any copy of the old value
    /// may leave: equal values are interchangeable.
    #[inline(always)]
    fn apply_pending(&mut self) {
        if let Some((from, to, _, x)) = self.pending.take() {
            let s = &mut self.sorted[..];
            if to > from {
                s.copy_within(from + 1..to, from);
                s[to - 1] = x;
            } else {
                s.copy_within(to..from, to + 1);
                s[to] = x;
            }
        }
    }
}

/// The ⌈n/2⌉-th smallest |v - m| of a sorted, non-empty `s` whose median is `m`.
pub(super) fn mad_of_sorted(s: &[f64], m: f64) -> f64 {
    let n = s.len();
    let k = n.div_ceil(2);
    // `m` lies between s[n/2 - 1] and s[n/2] (for an even n it is their mean,
    // which rounds inside them), so the deviations are m - s[p-1-i] on the left,
    // s[p+j] - m on the right, both ascending. A mean that overflowed is not
    // between them: the plain walk handles it.
    let p = n / 2;
    if !m.is_finite() || p == 0 {
        return mad_walk(s, m);
    }
    let (left, right) = s.split_at(p);
    let l = |i: usize| m - left[p - 1 - i];
    let r = |j: usize| right[j] - m;
    // The smallest count i taken from the left such that the next left one is
    // not below the last right one taken: the first k are l(..i) and r(..k-i).
    // The test is monotone in i (false, then true): count the falses in
    // [lo, hi) by halving, with integer arithmetic rather than branches (on
    // noise each step is a coin toss).
    let (mut i, mut n) = (k.saturating_sub(right.len()), 0);
    n += k.min(left.len()) - i;
    while n > 0 {
        let half = n / 2;
        let p = i + half;
        let below = usize::from(l(p) < r(k - p - 1)); // p is still too few from the left
        i += below * (half + 1);
        n = half - below * (1 - n % 2);
    }
    let a = if i > 0 { l(i - 1) } else { f64::NEG_INFINITY };
    let b = if k > i { r(k - i - 1) } else { f64::NEG_INFINITY };
    a.max(b)
}

/// The MAD by walking outwards from the median, taking the nearer neighbour
/// each step, until half the window is behind.
pub(super) fn mad_walk(s: &[f64], m: f64) -> f64 {
    let n = s.len();
    let mut r: usize = s.iter().map(|&v| usize::from(v < m)).sum();
    let mut l = r as isize - 1;
    let mut d = 0.0;
    for _ in 0..n.div_ceil(2) {
        let dl = if l >= 0 { m - s[l as usize] } else { f64::INFINITY };
        let dr = if r < n { s[r] - m } else { f64::INFINITY };
        if dl < dr {
            d = dl;
            l -= 1;
        } else {
            d = dr;
            r += 1;
        }
    }
    d
}

/// Length of the sorted buffer for a window: 64 or 128 for the unrolled
/// searches below, else the window.
fn padded_len(window: usize) -> usize {
    match window {
        ..=64 => 64,
        65..=128 => 128,
        _ => window,
    }
}

/// How many values of the padded sorted buffer are below `x` (its insertion
/// point): a binary search without branches (each step a conditional add), so
/// noise costs no mispredictions.
#[inline(always)]
fn rank(s: &[f64], x: f64) -> usize {
    match s.len() {
        64 => lower_bound::<64>(s, x),
        128 => lower_bound::<128>(s, x),
        _ => s.partition_point(|&v| v < x),
    }
}

/// `#(v < x)` in a sorted `s` of `N` (a power of two) values.
#[inline(always)]
fn lower_bound<const N: usize>(s: &[f64], x: f64) -> usize {
    let s: &[f64; N] = s.try_into().expect("N values");
    let mut i = 0;
    let mut half = N / 2;
    while half > 0 {
        // the first i values are below x; is the (i + half)-th?
        i += half * usize::from(s[i + half - 1] < x);
        half /= 2;
    }
    // i ≤ N - 1 here: the last value decides between N - 1 and N
    i + usize::from(s[i.min(N - 1)] < x)
}
