//! Robust deviation: each reading against the median and MAD (median absolute
//! deviation) of the readings just before it. Catches steps and excursions;
//! one outlier cannot shift a median, so the baseline survives spikes. A lone
//! spike scores high but does not open an episode (`confirm`).

use super::series::{
    Debounce, Kernel, Resolution, SeriesDetector, channel_mask, div_exact, exact_reciprocal, names, with_unit,
};
use super::{AnomalyKind, ConfigError};
use serde::{Deserialize, Serialize};

/// `[detect.robust]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RobustConfig {
    /// Readings in the sliding window (its median and MAD are the baseline).
    pub window: usize,
    /// Distance from the median, in robust standard deviations (1.4826 × MAD), that opens an episode.
    pub threshold: f64,
    /// Consecutive readings beyond the threshold needed (a lone spike is not a step).
    pub confirm: u32,
    /// Consecutive readings back inside needed to end an episode.
    pub clear_after: u32,
    /// Channels watched: levels that should not jump. Load-driven channels (gradient, RF, room
    /// climate, heater duty) and discrete ones (door, occupancy) move in steps by design.
    pub channels: Vec<String>,
}

impl Default for RobustConfig {
    fn default() -> Self {
        RobustConfig {
            window: 64,
            threshold: 8.0,
            confirm: 3,
            clear_after: 3,
            channels: names(&[
                "helium_level_pct",
                "vessel_pressure_kpa",
                "coldhead_stage1_k",
                "coldhead_stage2_k",
                "compressor_supply_mpa",
                "compressor_return_mpa",
                "water_inlet_c",
                "water_outlet_c",
                "water_flow_lpm",
                "room_o2_pct",
            ]),
        }
    }
}

/// What one kernel needs.
#[derive(Debug, Clone, Copy)]
pub struct RobustParams {
    pub window: usize,
    pub threshold: f64,
}

impl RobustConfig {
    pub fn params(&self) -> RobustParams {
        RobustParams {
            window: self.window.max(8),
            threshold: self.threshold,
        }
    }

    pub fn detector(&self) -> Result<SeriesDetector<RobustKernel>, ConfigError> {
        if self.threshold.is_nan() || self.threshold <= 0.0 {
            return Err(ConfigError::invalid("robust", "threshold must be above 0"));
        }
        Ok(SeriesDetector::new(
            "robust",
            None::<AnomalyKind>,
            self.params(),
            Debounce {
                confirm: self.confirm,
                clear_after: self.clear_after,
            },
            channel_mask("robust", &self.channels)?,
        ))
    }
}

/// The median and MAD of the readings before each new one, from one of two
/// windows that give the same numbers to the bit: `Ranked` (AVX2, windows up
/// to 64, the CPU checked once at creation), else `Sorted` (any CPU, any window).
#[derive(Clone)]
pub struct RobustKernel {
    p: RobustParams,
    window: Window,
    last: f64,
    res: Resolution,
    mad: f64,
    tick: u32,
    /// `1 / threshold` when dividing by the threshold is exactly a multiplication
    /// (a power of two, like the default 8).
    inv_threshold: Option<f64>,
    // for `explain`
    median: f64,
    sigma: f64,
    z: f64,
}

/// The window the kernel keeps (see [`RobustKernel`]).
#[derive(Clone)]
enum Window {
    Sorted(Sorted),
    #[cfg(target_arch = "x86_64")]
    Ranked(Box<ranked::Ranked>),
}

/// Consistency constant: 1.4826 × MAD estimates σ for normal noise.
const MAD_TO_SIGMA: f64 = 1.4826;

/// A fixed window kept twice: in arrival order (to know what leaves) and sorted
/// (median in O(1)). Replacing a value shifts only the readings between the old
/// and the new value's places; the MAD is a selection on the sorted window.
#[derive(Clone)]
struct Sorted {
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
    fn new(window: usize) -> Self {
        Sorted {
            ring: Vec::with_capacity(window),
            sorted: vec![f64::INFINITY; padded_len(window)],
            pending: None,
            head: 0,
        }
    }

    fn clear(&mut self) {
        self.ring.clear();
        self.sorted.fill(f64::INFINITY);
        self.pending = None;
        self.head = 0;
    }

    /// Readings in the window so far.
    #[inline]
    fn len(&self) -> usize {
        self.ring.len()
    }

    /// A copy with the pending replacement applied (as the next reading sees it).
    #[cfg(test)]
    fn settled(&self) -> Sorted {
        let mut k = self.clone();
        k.apply_pending();
        k
    }

    /// The sorted window, without the padding (once settled).
    #[cfg(test)]
    fn window(&self) -> &[f64] {
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
    fn fill(&mut self, x: f64) {
        let n = self.len();
        self.ring.push(x);
        let at = rank(&self.sorted, x);
        self.sorted.copy_within(at..n, at + 1);
        self.sorted[at] = x;
    }

    /// The median of the full window; refreshes `mad` when asked; then `x`
    /// replaces the oldest reading.
    #[inline(always)]
    fn step(&mut self, x: f64, refresh: bool, mad: &mut f64) -> f64 {
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
fn mad_of_sorted(s: &[f64], m: f64) -> f64 {
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
fn mad_walk(s: &[f64], m: f64) -> f64 {
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

/// The window for AVX2: each reading has an entry (its place in the ring) that
/// holds its value and its rank in the sorted window. Replacing a reading counts
/// the values below the new one (64 compares, 4 at a time) and moves the ranks
/// in between by one (64 bytes, 32 at a time); the median's entries are where
/// the ranks compare equal. Nothing is moved but ranks, and no branch depends on
/// the readings but the MAD's (every 8th reading) and a leaving zero's.
#[cfg(target_arch = "x86_64")]
mod ranked {
    use super::mad_of_sorted;
    use std::arch::x86_64::*;

    /// Entries: the window's readings, then padding (`+inf`, rank [`PAD`]).
    const N: usize = 64;

    /// The rank of padding entries: above every real one, kept by [`Ranked::replace`].
    const PAD: i8 = i8::MAX;

    /// A rank as stored: offset by -128, so that ranks order as signed bytes.
    #[inline(always)]
    fn rank_of(r: usize) -> i8 {
        (r as u8 ^ 0x80) as i8
    }

    #[inline(always)]
    fn rank_get(q: i8) -> usize {
        (q as u8 ^ 0x80) as usize
    }

    /// Whether `x` is -0.
    #[inline(always)]
    fn is_neg_zero(x: f64) -> bool {
        x.to_bits() == (-0.0f64).to_bits()
    }

    /// [`mad_of_sorted`] of the first `n` values of `s`: how many of the
    /// smallest deviations come from below the median is counted (the test is
    /// monotone, so the count is where the binary search stops) rather than
    /// searched: independent compares instead of a chain of dependent loads.
    #[inline(always)]
    fn mad_of_sorted64(s: &[f64; N], n: usize, m: f64) -> f64 {
        let (p, k) = (n / 2, n.div_ceil(2));
        if !m.is_finite() || p == 0 {
            return mad_of_sorted(&s[..n], m);
        }
        // (see `mad_of_sorted`: the count i from the left, the deviations
        // m - s[p-1-q] against s[p+k-1-q] - m for q < p, here j = p-1-q)
        let (l, r) = (&s[..N / 2], &s[k..][..N / 2]);
        let mut i = 0u64;
        for j in 0..N / 2 {
            i += u64::from((m - l[j] < r[j] - m) & (j < p));
        }
        let i = i as usize;
        let a = if i > 0 { m - s[p - i] } else { f64::NEG_INFINITY };
        let b = if k > i { s[p + k - i - 1] - m } else { f64::NEG_INFINITY };
        a.max(b)
    }

    /// Values and ranks by entry: the sorted window is `sorted[rank[e]] = value[e]`.
    /// Equal values are ranked as in a sorted array into which each value is
    /// inserted before its equals and from which the first equal one leaves (as
    /// [`super::Sorted`] does), so the two agree to the sign of a zero.
    #[derive(Clone)]
    #[repr(C, align(32))]
    pub(super) struct Ranked {
        value: [f64; N],
        rank: [i8; N],
        /// The window sorted, for the MAD (the first `len` values; the padding's
        /// go to the last place, beyond them when there is padding).
        sorted: [f64; N],
        pub(super) len: usize,
        /// Readings the window holds once full.
        window: usize,
        /// The entry the next reading replaces once the window is full.
        head: usize,
        /// The median, once the window is full.
        median: f64,
    }

    // The 32-byte group store in `replace` relies on `value` starting the struct
    // at a 32-byte boundary.
    const _: () = assert!(std::mem::offset_of!(Ranked, value) == 0 && std::mem::align_of::<Ranked>() >= 32);

    impl Ranked {
        /// `None` for a window over 64, or without AVX2: a `Ranked` exists only
        /// where [`Ranked::step`] may run.
        pub(super) fn new(window: usize) -> Option<Box<Ranked>> {
            ((1..=N).contains(&window) && is_x86_feature_detected!("avx2")).then(|| {
                Box::new(Ranked {
                    value: [f64::INFINITY; N],
                    rank: [PAD; N],
                    sorted: [0.0; N],
                    len: 0,
                    window,
                    head: 0,
                    median: 0.0,
                })
            })
        }

        pub(super) fn clear(&mut self) {
            self.value = [f64::INFINITY; N];
            self.rank = [PAD; N];
            self.len = 0;
            self.head = 0;
        }

        pub(super) fn is_full(&self) -> bool {
            self.len == self.window
        }

        /// The window's values sorted (for the tests).
        #[cfg(test)]
        pub(super) fn window(&self) -> Vec<f64> {
            let mut s = vec![0.0; self.len];
            self.sort_into(&mut s);
            s
        }

        /// The MAD about `m`, as [`Ranked::step`] computes it (for the tests).
        #[cfg(test)]
        pub(super) fn mad_now(&self, m: f64) -> f64 {
            let mut k = self.clone();
            k.sort();
            mad_of_sorted64(&k.sorted, k.len, m)
        }

        fn sort_into(&self, sorted: &mut [f64]) {
            let n = sorted.len();
            for (&v, &r) in self.value[..n].iter().zip(&self.rank[..n]) {
                sorted[rank_get(r)] = v;
            }
        }

        /// The window sorted into `self.sorted`.
        #[inline(always)]
        fn sort(&mut self) {
            for (&v, &r) in self.value.iter().zip(&self.rank) {
                self.sorted[rank_get(r) % N] = v;
            }
        }

        /// How many values are below `x`, padding excluded (plain code, for the cold paths).
        fn below(&self, x: f64) -> usize {
            self.value.iter().filter(|&&v| v < x).count()
        }

        /// Takes `x` while the window fills up. (Out of line: the first readings only.)
        #[inline(never)]
        pub(super) fn fill(&mut self, x: f64) {
            let (e, r) = (self.len, rank_of(self.below(x)));
            for q in &mut self.rank[..e] {
                if *q >= r {
                    *q += 1;
                }
            }
            self.rank[e] = r;
            self.value[e] = x;
            self.len += 1;
            if self.len == self.window {
                let n = self.len;
                let mut s = [0.0; N];
                self.sort_into(&mut s[..n]);
                self.median = if n % 2 == 1 {
                    s[n / 2]
                } else {
                    0.5 * (s[n / 2 - 1] + s[n / 2])
                };
            }
        }

        /// The median of the full window; refreshes `mad` when asked; then `x`
        /// replaces the oldest reading.
        ///
        /// Needs AVX2, which the existence of `self` guarantees (see [`Ranked::new`]).
        #[target_feature(enable = "avx2")]
        #[inline]
        pub(super) fn step(&mut self, x: f64, refresh: bool, mad: &mut f64) -> f64 {
            let n = self.len;
            let m = self.median;
            if refresh {
                *mad = self.mad(n, m, *mad);
            }
            let e = self.head;
            let old = self.value[e];
            let (r0, r1) = if old == 0.0 && self.value.iter().any(|&v| is_neg_zero(v)) {
                self.replace_zero(e, x);
                self.ranks()
            } else {
                self.replace(e, old, x)
            };
            self.head += 1;
            if self.head == n {
                self.head = 0;
            }
            // The next reading's median, found now: not on its way to its score.
            self.median = self.median_of(r0, r1);
            m
        }

        /// The ranks as stored, 32 a vector.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn ranks(&self) -> (__m256i, __m256i) {
            // SAFETY: `rank` is 64 bytes: two unaligned 32-byte loads in bounds.
            unsafe {
                let p = self.rank.as_ptr().cast::<__m256i>();
                (_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1)))
            }
        }

        /// The median of the full window with ranks `r0`, `r1` (as `sorted[n / 2]`,
        /// or the mean of the middle two): its entries are where the ranks compare
        /// equal.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn median_of(&self, r0: __m256i, r1: __m256i) -> f64 {
            let n = self.len;
            let (hi, lo) = (_mm256_set1_epi8(rank_of(n / 2)), _mm256_set1_epi8(rank_of((n - 1) / 2)));
            let eq = |r| _mm256_or_si256(_mm256_cmpeq_epi8(r, hi), _mm256_cmpeq_epi8(r, lo));
            let at = _mm256_movemask_epi8(eq(r0)) as u32 as u64 | (_mm256_movemask_epi8(eq(r1)) as u32 as u64) << 32;
            // (for an odd n, one entry; else the middle two, in either order: a
            // sum is the same both ways)
            let (a, b) = (
                at.trailing_zeros() as usize,
                (at & at.wrapping_sub(1)).trailing_zeros() as usize,
            );
            if n % 2 == 1 {
                self.value[a % N]
            } else {
                0.5 * (self.value[a % N] + self.value[b % N])
            }
        }

        /// The MAD of the `n` values about their median `m`, `last` the one
        /// before. That is still the ⌈n/2⌉-th smallest deviation when as many
        /// deviations are below it and at least as many up to it (counted, no
        /// sort): usually so, the scale moving slowly. Else sorted and selected.
        /// (Out of line: every 8th reading only.)
        #[target_feature(enable = "avx2")]
        #[inline(never)]
        fn mad(&mut self, n: usize, m: f64, last: f64) -> f64 {
            if m.is_finite() && last > 0.0 && last.is_finite() {
                // |v - m| equals the `m - v` or `v - m` the selection takes (the
                // padding's is +inf: neither below nor up to `last`)
                let (mm, t) = (_mm256_set1_pd(m), _mm256_set1_pd(last));
                let abs = _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX)); // all but the sign
                let (mut lt, mut le) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for v in self.value.as_chunks::<4>().0 {
                    let d = _mm256_and_pd(_mm256_sub_pd(_mm256_set_pd(v[3], v[2], v[1], v[0]), mm), abs);
                    lt = _mm256_sub_epi64(lt, _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_LT_OQ>(d, t)));
                    le = _mm256_sub_epi64(le, _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_LE_OQ>(d, t)));
                }
                let sum = |s: __m256i| {
                    let s = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
                    (_mm_cvtsi128_si64(s) + _mm_extract_epi64::<1>(s)) as usize
                };
                let k = n.div_ceil(2);
                if sum(lt) < k && k <= sum(le) {
                    return last;
                }
            }
            self.sort();
            mad_of_sorted64(&self.sorted, n, m)
        }

        /// Entry `e` takes `x` instead of `old`; returns the new ranks.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn replace(&mut self, e: usize, old: f64, x: f64) -> (__m256i, __m256i) {
            let (r0, r1) = self.ranks();
            let xx = _mm256_set1_pd(x);
            let (mut a, mut b) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            let vp = self.value.as_mut_ptr().cast::<__m256d>();
            for i in 0..N / 8 {
                // SAFETY: `value` is 64 values: 16 loads of 4, in bounds.
                let (v, w) = unsafe {
                    (
                        _mm256_loadu_pd(vp.add(2 * i).cast()),
                        _mm256_loadu_pd(vp.add(2 * i + 1).cast()),
                    )
                };
                // (x > v: v < x with the value the operand that can come from memory;
                // a mask is -1: subtracting counts)
                a = _mm256_sub_epi64(a, _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_GT_OQ>(xx, v)));
                b = _mm256_sub_epi64(b, _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_GT_OQ>(xx, w)));
            }
            let s = _mm256_add_epi64(a, b);
            let s = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let below = (_mm_cvtsi128_si64(s) + _mm_extract_epi64::<1>(s)) as usize;
            // x's rank once `old` has left, before the values equal to it
            let to = _mm256_set1_epi8(rank_of(below - usize::from(old < x)));
            let from = _mm256_set1_epi8(self.rank[e]);
            let me = _mm256_set1_epi8(e as i8);
            let one = _mm256_set1_epi8(1);
            let lanes = _mm256_setr_epi8(
                0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
                28, 29, 30, 31,
            );
            let moved = |r: __m256i, first: i8| {
                // down one above `from` (it leaves), then up one from `to` (x enters)
                let r = _mm256_add_epi8(r, _mm256_cmpgt_epi8(r, from));
                let r = _mm256_add_epi8(_mm256_add_epi8(r, one), _mm256_cmpgt_epi8(to, r));
                let mine = _mm256_cmpeq_epi8(_mm256_add_epi8(lanes, _mm256_set1_epi8(first)), me);
                _mm256_blendv_epi8(r, to, mine)
            };
            let (r0, r1) = (moved(r0, 0), moved(r1, 32));
            // SAFETY: as for the loads.
            unsafe {
                let p = self.rank.as_mut_ptr().cast::<__m256i>();
                _mm256_storeu_si256(p, r0);
                _mm256_storeu_si256(p.add(1), r1);
            }
            // The value with the rest of its group of 4, as one 32-byte store: the
            // next reading's 32-byte loads can take it from the store buffer (not
            // from a store of 8 bytes, which they would wait for to reach the
            // cache). (Volatile: else the compiler makes a masked store of it.)
            // SAFETY: e / 4 < 16 groups of `value`, which is 32-byte aligned
            // (`Ranked` is, and it is its first field).
            unsafe {
                let p = vp.add(e / 4);
                let lane = _mm256_cmpeq_epi64(_mm256_setr_epi64x(0, 1, 2, 3), _mm256_set1_epi64x((e % 4) as i64));
                let v = _mm256_blendv_pd(_mm256_loadu_pd(p.cast()), xx, _mm256_castsi256_pd(lane));
                std::ptr::write_volatile(p, v);
            }
            (r0, r1)
        }

        /// [`replace`](Self::replace) when a zero leaves while the window holds
        /// a -0: the zero that leaves the sorted window is its first one, as in
        /// [`super::Sorted`]. The entries' zeros are re-signed in rank order to
        /// match (the readings they stand for are equal).
        #[cold]
        #[inline(never)]
        fn replace_zero(&mut self, e: usize, x: f64) {
            let n = self.len;
            let mut sorted = [0.0; N];
            let sorted = &mut sorted[..n];
            self.sort_into(sorted);
            let from = sorted.partition_point(|&v| v < 0.0);
            sorted.copy_within(from + 1.., from);
            let to = sorted[..n - 1].partition_point(|&v| v < x);
            sorted.copy_within(to..n - 1, to + 1);
            sorted[to] = x;
            // the ranks as `replace` moves them
            let (old_rank, to_rank) = (self.rank[e], rank_of(self.below(x) - usize::from(0.0 < x)));
            for q in &mut self.rank[..n] {
                if *q > old_rank {
                    *q -= 1;
                }
                if *q >= to_rank {
                    *q += 1;
                }
            }
            self.rank[e] = to_rank;
            for (v, &r) in self.value[..n].iter_mut().zip(&self.rank[..n]) {
                *v = sorted[rank_get(r)];
            }
        }
    }
}

impl RobustKernel {
    /// Readings in the window so far.
    #[cfg(test)]
    fn len(&self) -> usize {
        match &self.window {
            Window::Sorted(w) => w.len(),
            #[cfg(target_arch = "x86_64")]
            Window::Ranked(w) => w.len,
        }
    }

    /// The window sorted, as the next reading sees it.
    #[cfg(test)]
    fn window(&self) -> Vec<f64> {
        match &self.window {
            Window::Sorted(w) => w.settled().window().to_vec(),
            #[cfg(target_arch = "x86_64")]
            Window::Ranked(w) => w.window(),
        }
    }

    /// The MAD of the window as the next reading sees it, about `m`, as the
    /// kernel computes it.
    #[cfg(test)]
    fn mad_now(&self, m: f64) -> f64 {
        match &self.window {
            Window::Sorted(w) => mad_of_sorted(w.settled().window(), m),
            #[cfg(target_arch = "x86_64")]
            Window::Ranked(w) => w.mad_now(m),
        }
    }

    /// Whether the ranked window (AVX2) is in use.
    #[cfg(test)]
    fn is_ranked(&self) -> bool {
        !matches!(self.window, Window::Sorted(_))
    }

    /// A kernel on the sorted window, whatever the CPU.
    #[cfg(test)]
    fn sorted(p: &RobustParams) -> Self {
        RobustKernel {
            window: Window::Sorted(Sorted::new(p.window)),
            ..Self::new(p)
        }
    }

    /// [`Kernel::update`] compiled for AVX2 (the ranked window's steps inlined).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn update_avx2(&mut self, x: f64) -> f64 {
        self.update_with::<true>(x)
    }

    /// One reading, on the ranked window or else the sorted one (the other's
    /// code left out).
    #[inline(always)]
    fn update_with<const RANKED: bool>(&mut self, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        // (`Resolution::push`, as a select: whether the value repeated is a
        // coin toss on a quantised signal)
        let d = (x - self.last).abs();
        let step = self.res.step;
        self.res.step = if (d < step) & (d > 0.0) { d } else { step };
        self.last = x;
        // The scale moves slowly: it is refreshed every 8th reading.
        let refresh = self.tick & 7 == 0;
        let m = match &mut self.window {
            Window::Sorted(w) if !RANKED => {
                if w.len() < self.p.window {
                    w.fill(x);
                    return 0.0;
                }
                w.step(x, refresh, &mut self.mad)
            }
            #[cfg(target_arch = "x86_64")]
            Window::Ranked(w) if RANKED => {
                if !w.is_full() {
                    w.fill(x);
                    return 0.0;
                }
                // SAFETY: a `Ranked` exists only where AVX2 is available.
                unsafe { w.step(x, refresh, &mut self.mad) }
            }
            _ => unreachable!("update_avx2 is for the ranked window"),
        };
        self.tick = self.tick.wrapping_add(1);
        let sigma = (MAD_TO_SIGMA * self.mad).max(self.res.get()).max(1e-9 * m.abs());
        self.median = m;
        self.sigma = sigma;
        self.z = if sigma > 0.0 { (x - m) / sigma } else { 0.0 };
        let ratio = div_exact(self.z.abs(), self.p.threshold, self.inv_threshold);
        // (`score`, without a branch on whether the ratio is 0: a reading at
        // the median is a coin toss on a quantised signal)
        let r = if ratio > 0.0 { ratio } else { 0.0 };
        if r.is_finite() { r / (1.0 + r) } else { 1.0 }
    }
}

impl Kernel for RobustKernel {
    type Config = RobustParams;

    fn new(p: &RobustParams) -> Self {
        #[cfg(target_arch = "x86_64")]
        let window = match ranked::Ranked::new(p.window) {
            Some(r) => Window::Ranked(r),
            None => Window::Sorted(Sorted::new(p.window)),
        };
        #[cfg(not(target_arch = "x86_64"))]
        let window = Window::Sorted(Sorted::new(p.window));
        RobustKernel {
            p: *p,
            window,
            last: f64::NAN,
            res: Resolution::default(),
            mad: 0.0,
            tick: 0,
            inv_threshold: exact_reciprocal(p.threshold),
            median: 0.0,
            sigma: 0.0,
            z: 0.0,
        }
    }

    #[inline]
    fn update(&mut self, _ts_ms: i64, x: f64) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if let Window::Ranked(_) = self.window {
            // SAFETY: a `Ranked` exists only where AVX2 is available.
            return unsafe { self.update_avx2(x) };
        }
        self.update_with::<false>(x)
    }

    fn explain(&self, value: f64, unit: &str) -> String {
        format!(
            "{} is {:.1} robust σ {} the median {} of the last {} readings (σ {})",
            with_unit(value, unit),
            self.z.abs(),
            if self.z > 0.0 { "above" } else { "below" },
            with_unit(self.median, unit),
            self.p.window,
            with_unit(self.sigma, unit),
        )
    }

    fn end_warm_up(&mut self) {
        // The archive is read as averages: their spread is not live data's.
        match &mut self.window {
            Window::Sorted(w) => w.clear(),
            #[cfg(target_arch = "x86_64")]
            Window::Ranked(w) => w.clear(),
        }
        self.tick = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::series::score;
    use crate::detect::testing::{noise, run_kernel, starts};

    fn kernel() -> RobustKernel {
        RobustKernel::new(&RobustConfig::default().params())
    }

    /// The kernel as the CPU gets it, and on the sorted window (the same
    /// kernel twice where the CPU has no AVX2).
    fn both(p: &RobustParams) -> [RobustKernel; 2] {
        [RobustKernel::new(p), RobustKernel::sorted(p)]
    }

    #[test]
    fn median_and_mad_match_a_sort() {
        let xs: Vec<f64> = noise(7, 500, 1.0);
        for mut k in both(&RobustConfig::default().params()) {
            for (i, &x) in xs.iter().enumerate() {
                k.update(i as i64, x);
                let n = k.len();
                let mut w: Vec<f64> = if n < 64 {
                    xs[..=i].to_vec()
                } else {
                    xs[i + 1 - 64..=i].to_vec()
                };
                w.sort_by(f64::total_cmp);
                assert_eq!(k.window(), w, "sorted window at {i}");
                if n == 64 {
                    let m = 0.5 * (w[31] + w[32]);
                    let mut dev: Vec<f64> = w.iter().map(|v| (v - m).abs()).collect();
                    dev.sort_by(f64::total_cmp);
                    assert_eq!(k.mad_now(m), dev[31], "MAD at {i}: the 32nd smallest deviation");
                }
            }
        }
    }

    /// The kernel as first written: the window sorted afresh for every reading.
    struct Naive {
        p: RobustParams,
        window: std::collections::VecDeque<f64>,
        last: f64,
        res: Resolution,
        mad: f64,
        tick: u32,
    }

    impl Naive {
        fn new(p: RobustParams) -> Self {
            Naive {
                p,
                window: Default::default(),
                last: f64::NAN,
                res: Resolution::default(),
                mad: 0.0,
                tick: 0,
            }
        }

        /// Score and median of one reading.
        fn update(&mut self, x: f64) -> (f64, f64) {
            if !x.is_finite() {
                return (0.0, f64::NAN);
            }
            self.res.push(x - self.last);
            self.last = x;
            let mut out = (0.0, f64::NAN);
            if self.window.len() == self.p.window {
                let mut s: Vec<f64> = self.window.iter().copied().collect();
                s.sort_by(f64::total_cmp);
                let n = s.len();
                let m = if n % 2 == 1 {
                    s[n / 2]
                } else {
                    0.5 * (s[n / 2 - 1] + s[n / 2])
                };
                let mut dev: Vec<f64> = s.iter().map(|v| (v - m).abs()).collect();
                dev.sort_by(f64::total_cmp);
                if self.tick & 7 == 0 {
                    self.mad = dev[n.div_ceil(2) - 1];
                }
                self.tick = self.tick.wrapping_add(1);
                let sigma = (MAD_TO_SIGMA * self.mad).max(self.res.get()).max(1e-9 * m.abs());
                let z = if sigma > 0.0 { (x - m) / sigma } else { 0.0 };
                out = (score(z.abs() / self.p.threshold), m);
                self.window.pop_front();
            }
            self.window.push_back(x);
            out
        }
    }

    /// xorshift64*: a seeded stream of u64.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            s.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    /// Random series of every shape the window meets: continuous noise, coarse
    /// quantisation (many equal values), runs of one value, spikes, steps, huge
    /// magnitudes, zeros of both signs.
    fn random_series(seed: u64, n: usize) -> Vec<f64> {
        let mut next = rng(seed);
        let mut uniform = move || (next() >> 11) as f64 / (1u64 << 53) as f64;
        let shape = (seed % 5) as u32;
        let mut level = 0.0;
        (0..n)
            .map(|_| {
                let u = uniform();
                if uniform() < 0.002 {
                    level += (uniform() - 0.5) * 20.0; // a step
                }
                let v = match shape {
                    0 => level + (u - 0.5) * 3.0,
                    1 => level + ((u - 0.5) * 6.0).round() * 0.5, // 13 levels
                    2 => {
                        if u < 0.3 {
                            0.0
                        } else if u < 0.4 {
                            -0.0
                        } else {
                            level + (u * 4.0).floor()
                        }
                    }
                    // near the largest f64: the mean of two overflows
                    3 => (if level >= 0.0 { 1.0 } else { -1.0 }) * (1.0 + 0.79 * u) * 1e308,
                    _ => level + ((u - 0.5) * 100.0).round() / 100.0,
                };
                if uniform() < 0.01 { v + 50.0 * (u - 0.5) } else { v } // spikes
            })
            .collect()
    }

    #[test]
    fn seeded_random_windows_match_a_naive_sort() {
        let mut checked = 0;
        for (case, window) in [8, 9, 15, 16, 17, 31, 63, 64, 65, 100, 127, 128, 129, 250]
            .into_iter()
            .enumerate()
        {
            for seed in 0..5u64 {
                let seed = seed * 31 + case as u64;
                let p = RobustParams {
                    window,
                    threshold: if seed.is_multiple_of(2) { 8.0 } else { 7.3 },
                };
                let xs = random_series(seed, 6 * window + 300);
                let mut naive = Naive::new(p);
                let mut kernels = both(&p);
                for (i, &x) in xs.iter().enumerate() {
                    let (want, m) = naive.update(x);
                    let mut w: Vec<f64> = xs[(i + 1).saturating_sub(window)..=i]
                        .iter()
                        .copied()
                        .filter(|v| v.is_finite())
                        .collect();
                    w.sort_by(f64::total_cmp);
                    for k in &mut kernels {
                        let full = k.len() == window;
                        let got = k.update(i as i64, x);
                        let at = format!("window {window}, seed {seed}, reading {i}");
                        assert_eq!(got.to_bits(), want.to_bits(), "score, {at}: {got} vs {want}");
                        if full && x.is_finite() {
                            // (a sort puts -0 before 0; the window keeps them as they came)
                            assert!(k.median == m, "median, {at}: {} vs {m}", k.median);
                            checked += 1;
                        }
                        let s = k.window();
                        if w.len() <= window {
                            assert!(
                                s.len() == w.len() && s.iter().zip(&w).all(|(a, b)| a == b),
                                "sorted window, {at}"
                            );
                        }
                        if s.len() == window && w.len() == window {
                            // The MAD selection against a sort of the deviations, on the window as it is now.
                            let m = if window % 2 == 1 {
                                s[window / 2]
                            } else {
                                0.5 * (s[window / 2 - 1] + s[window / 2])
                            };
                            let mut dev: Vec<f64> = w.iter().map(|v| (v - m).abs()).collect();
                            dev.sort_by(f64::total_cmp);
                            let want = dev[window.div_ceil(2) - 1];
                            // (equal as numbers: a deviation of zero may come out as -0)
                            let got = k.mad_now(m);
                            assert!(got == want, "MAD, {at}: {got} vs {want}");
                            assert!(got == mad_walk(&s, m), "MAD against the walk, {at}");
                        }
                    }
                }
            }
        }
        assert!(checked > 20_000, "{checked}");
    }

    /// The ranked window (AVX2) and the sorted one give the same scores,
    /// medians and explanations to the bit, through gaps, zeros of both signs
    /// and a warm-up's end.
    #[test]
    fn ranked_and_sorted_windows_agree_to_the_bit() {
        for window in [8, 9, 16, 31, 33, 63, 64, 65] {
            for seed in 0..10u64 {
                let p = RobustParams {
                    window,
                    threshold: if seed.is_multiple_of(2) { 8.0 } else { 7.3 },
                };
                let [mut a, mut b] = both(&p);
                #[cfg(target_arch = "x86_64")]
                assert_eq!(a.is_ranked(), window <= 64 && is_x86_feature_detected!("avx2"));
                assert!(!b.is_ranked());
                let mut xs = random_series(seed, 40 * window + 500);
                for (i, x) in xs.iter_mut().enumerate() {
                    if i % 97 == 13 {
                        *x = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][i % 3]; // gaps
                    }
                }
                for (i, &x) in xs.iter().enumerate() {
                    if i == xs.len() / 2 {
                        a.end_warm_up();
                        b.end_warm_up();
                    }
                    let (sa, sb) = (a.update(i as i64, x), b.update(i as i64, x));
                    let at = format!("window {window}, seed {seed}, reading {i}");
                    assert_eq!(sa.to_bits(), sb.to_bits(), "score, {at}");
                    assert_eq!(a.median.to_bits(), b.median.to_bits(), "median, {at}");
                    assert_eq!(a.explain(x, "K"), b.explain(x, "K"), "{at}");
                    let (wa, wb) = (a.window(), b.window());
                    assert!(
                        wa.iter().map(|v| v.to_bits()).eq(wb.iter().map(|v| v.to_bits())),
                        "window, {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_step_is_one_episode_a_spike_is_none() {
        let mut xs = noise(1, 3000, 0.1);
        xs[1000] += 5.0; // spike: scores high, no episode
        for x in &mut xs[2000..] {
            *x += 3.0; // step
        }
        let cfg = RobustConfig::default();
        let (scores, eps) = run_kernel(kernel(), &xs, 1000, cfg.confirm, cfg.clear_after);
        assert!(scores[1000] > 0.8, "{}", scores[1000]);
        assert_eq!(
            starts(&eps),
            vec![2002],
            "one episode, confirmed on the third reading of the step"
        );
    }

    #[test]
    fn quiet_on_noise_within_budget() {
        // 200k readings of Gaussian noise, plus quantisation: no episode allowed.
        let xs: Vec<f64> = noise(3, 200_000, 0.02)
            .iter()
            .map(|x| (x * 100.0).round() / 100.0 + 81.0)
            .collect();
        let cfg = RobustConfig::default();
        let (scores, eps) = run_kernel(kernel(), &xs, 1000, cfg.confirm, cfg.clear_after);
        assert!(starts(&eps).is_empty(), "{:?}", starts(&eps));
        let high = scores.iter().filter(|&&s| s >= 0.5).count();
        assert!(high <= 20, "{high} single readings over the threshold");
    }
}
