//! The small vector pieces every kernel needs, written once: unaligned
//! whole-vector loads and stores, the masked part-vector at the end of a
//! row ([`Part`]), and a dot product. All `#[inline(always)]`: they compile
//! into the caller's loop at the caller's SIMD level.

use pulp::Simd;

/// One whole vector at `p` (no alignment needed).
///
/// # Safety
/// `p` valid for `S::F32_LANES` reads.
#[inline(always)]
pub(crate) unsafe fn load<S: Simd>(p: *const f32) -> S::f32s {
    // SAFETY: the caller's contract; `S::f32s` is plain data.
    unsafe { (p as *const S::f32s).read_unaligned() }
}

/// One whole vector to `p` (no alignment needed).
///
/// # Safety
/// `p` valid for `S::F32_LANES` writes.
#[inline(always)]
pub(crate) unsafe fn store<S: Simd>(p: *mut f32, v: S::f32s) {
    // SAFETY: the caller's contract.
    unsafe { (p as *mut S::f32s).write_unaligned(v) }
}

/// The first `n` lanes of a vector (`n ≤ S::F32_LANES`; the tail of a row
/// that is not a whole number of vectors): loads read only those lanes
/// (zero in the others), stores write only those lanes — nothing past the
/// row is touched.
#[derive(Clone, Copy)]
pub(crate) struct Part<S: Simd> {
    s: S,
    mask: pulp::MemMask<S::m32s>,
}

impl<S: Simd> Part<S> {
    /// The first `n` lanes (at most the vector).
    #[inline(always)]
    pub(crate) fn new(s: S, n: usize) -> Self {
        Part {
            s,
            mask: s.mask_between_m32s(0, n.min(S::F32_LANES) as u32),
        }
    }

    /// [`Part::new`] loading and storing with the level's masked
    /// instructions (`vmovups` under a k-mask, `vmaskmovps`). The mask
    /// `mask_between_m32s` returns also carries pointers to assembly stubs,
    /// one per mask, that pulp's masked loads and stores jump through: two
    /// indirect jumps per access, which mispredict whenever the length
    /// changes, as it does row by row on attention's causal diagonal. The
    /// instructions cost build time where they are inlined into many kernel
    /// variants (as `new` in the microkernel's edges: +10 s on the crate's
    /// release build, 50 → 60 s on an Intel Xeon), so only the softmax
    /// takes them.
    #[inline(always)]
    pub(crate) fn native(s: S, n: usize) -> Self {
        Part {
            s,
            mask: pulp::MemMask::new(s.mask_between_m32s(0, n.min(S::F32_LANES) as u32).mask()),
        }
    }

    /// The live lanes at `p`, zero elsewhere.
    ///
    /// # Safety
    /// `p` valid for `n` reads.
    #[inline(always)]
    pub(crate) unsafe fn load(self, p: *const f32) -> S::f32s {
        // SAFETY: the mask covers the n lanes the caller guarantees.
        unsafe { self.s.mask_load_ptr_f32s(self.mask, p) }
    }

    /// The live lanes of `v` to `p`.
    ///
    /// # Safety
    /// `p` valid for `n` writes.
    #[inline(always)]
    pub(crate) unsafe fn store(self, p: *mut f32, v: S::f32s) {
        // SAFETY: as `load`.
        unsafe { self.s.mask_store_ptr_f32s(self.mask, p, v) }
    }
}

/// `Σ_i a[i]·b[i]` over `n` contiguous floats: two accumulators (the FMA
/// latency), one masked tail, one reduction.
///
/// # Safety
/// `a` and `b` valid for `n` reads.
#[inline(always)]
pub(crate) unsafe fn dot<S: Simd>(s: S, a: *const f32, b: *const f32, n: usize) -> f32 {
    let lanes = S::F32_LANES;
    let (mut x0, mut x1) = (s.splat_f32s(0.0), s.splat_f32s(0.0));
    let mut i = 0;
    // SAFETY: whole vectors stay below n; the tail is a `Part`.
    unsafe {
        while i + 2 * lanes <= n {
            x0 = s.mul_add_e_f32s(load::<S>(a.add(i)), load::<S>(b.add(i)), x0);
            x1 = s.mul_add_e_f32s(load::<S>(a.add(i + lanes)), load::<S>(b.add(i + lanes)), x1);
            i += 2 * lanes;
        }
        while i < n {
            let part = Part::new(s, n - i);
            x0 = s.mul_add_e_f32s(part.load(a.add(i)), part.load(b.add(i)), x0);
            i += lanes;
        }
    }
    s.reduce_sum_f32s(s.add_f32s(x0, x1))
}
