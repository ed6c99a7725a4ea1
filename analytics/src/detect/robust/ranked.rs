//! The AVX2 window of the robust detector (x86-64 only).
//!
//! The window for AVX2: each reading has an entry (its place in the ring) that
//! holds its value and its rank in the sorted window. Replacing a reading counts
//! the values below the new one (64 compares, 4 at a time) and moves the ranks
//! in between by one (64 bytes, 32 at a time); the median's entries are where
//! the ranks compare equal. Nothing is moved but ranks, and no branch depends on
//! the readings but the MAD's (every 8th reading) and a leaving zero's.

use super::sorted::mad_of_sorted;
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
/// [`super::sorted::Sorted`] does), so the two agree to the sign of a zero.
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
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
            29, 30, 31,
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
    /// [`super::sorted::Sorted`]. The entries' zeros are re-signed in rank order to
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
