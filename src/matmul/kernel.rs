//! The register-blocked microkernel (its tiles and blocking by name:
//! [`super::tiles`]).
//!
//! Contract (the one place it is stated): `microkernel` computes an
//! `MR × NR` tile (`NR = NV·lanes`) of `A·B` over `kc` steps, with the
//! accumulators in registers for the whole loop, then writes
//! `C ← act(alpha·acc + c_scale·C + bias)` for the `m_eff × n_eff` corner
//! that exists (`bias`: one per column), then multiplies by U when given.
//! With `c_scale = None`, C is never read (BLAS β = 0). C has a
//! unit column stride (callers with another layout pass a tile buffer).
//! A element (i, p) is at `a[i·a_rs + p·a_cs]` (packed: `a_rs = 1`,
//! `a_cs = MR`, rows past `m_eff` zero); B row p of the tile is `NR`
//! contiguous floats at `b[p·b_rs]` (packed: zero-padded past `n_eff`;
//! unpacked: only `n_eff` columns exist and are loaded with a mask).

use crate::act::VecFn;
use crate::simd::{Part, load, store};
use pulp::Simd;

/// What happens to C after one k-block of a tile.
#[derive(Clone, Copy)]
pub(crate) struct TileEpi<F> {
    pub alpha: f32,
    /// `Some(s)`: add `s·C` (first block: β; later blocks: 1). `None`: C is
    /// not read.
    pub c_scale: Option<f32>,
    /// Null, or the bias of this tile's first column (one per column).
    /// Only on the last k-block.
    pub bias: *const f32,
    /// Activation, applied on the last k-block only (`Identity` otherwise).
    pub act: F,
    /// Null, or the tile of U (unit column stride, rows `mul_rs` apart)
    /// multiplied in after `act`. Only on the last k-block.
    pub mul: *const f32,
    pub mul_rs: usize,
}

impl TileEpi<crate::act::Identity> {
    /// `C ← acc`: no scale, bias, activation or multiplier, C not read.
    pub(crate) const PLAIN: Self = TileEpi {
        alpha: 1.0,
        c_scale: None,
        bias: core::ptr::null(),
        act: crate::act::Identity,
        mul: core::ptr::null(),
        mul_rs: 0,
    };
}

/// See the module docs for the contract.
///
/// # Safety
/// `a` valid for the elements the contract reads (rows `< m_eff` when
/// unpacked, all `MR` rows when packed), `b` for `kc` rows of the tile (`NR`
/// floats when packed, `n_eff` when not), `c` for `m_eff` rows of `n_eff`
/// floats at stride `c_rs`, `bias` (if not null) for `n_eff` (per column) or
/// `m_eff` (per row) floats, `epi.mul` (if not null) for `m_eff` rows of
/// `n_eff` floats at stride `epi.mul_rs`. `1 ≤ m_eff ≤ MR`, `1 ≤ n_eff ≤ NR`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn microkernel<
    S: Simd,
    F: VecFn,
    const MR: usize,
    const NV: usize,
    const PACKED_A: bool,
    const PACKED_B: bool,
>(
    s: S,
    kc: usize,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    b: *const f32,
    b_rs: usize,
    c: *mut f32,
    c_rs: usize,
    m_eff: usize,
    n_eff: usize,
    epi: &TileEpi<F>,
) {
    let lanes = S::F32_LANES;
    let zero = s.splat_f32s(0.0);
    // The B-load mode is fixed per k-loop (not tested per step): whole
    // vectors when B is packed or the tile's width is whole vectors, the
    // last vector masked otherwise.
    // SAFETY: the caller's contract.
    let acc = unsafe {
        if PACKED_B || n_eff == NV * lanes {
            kloop::<S, MR, NV, PACKED_A, true>(s, kc, a, a_rs, a_cs, b, b_rs, m_eff, n_eff)
        } else {
            kloop::<S, MR, NV, PACKED_A, false>(s, kc, a, a_rs, a_cs, b, b_rs, m_eff, n_eff)
        }
    };
    // SAFETY: the caller's contract.
    unsafe {
        // Hand the accumulators to the epilogue through a separate array,
        // copied by a tiny constant loop LLVM fully unrolls: the epilogue
        // indexes its input dynamically, and if that were `acc` itself, `acc`
        // would live in memory and the k-loop would store it every step.
        let mut out = [[zero; NV]; MR];
        for i in 0..MR {
            for j in 0..NV {
                out[i][j] = acc[i][j];
            }
        }
        let plain = epi.act.is_identity()
            && epi.alpha == 1.0
            && epi.bias.is_null()
            && epi.mul.is_null()
            && epi.c_scale.is_none();
        if plain && m_eff == MR && n_eff == NV * lanes {
            // A whole tile, `C ← acc` (a product without epilogue, β = 0,
            // k ≤ KC: every small and short-k one): no masks, bounds or
            // epilogue tests per vector. At 1024×1024×64, 17% of the
            // kernel's samples were outside the k-loop, mostly in the
            // general store below. (`C ← acc + C` is left to it: taken
            // here too, attention's P·V at D = 128 ran 1–8% slower in 3 of
            // 4 interleaved runs.)
            return store_full::<S, MR, NV>(&out, c, c_rs);
        }
        if F::IDENTITY {
            // No activation (attention's tiles): small enough to inline.
            return store_tile(s, &out, c, c_rs, m_eff, n_eff, epi);
        }
        // With an activation, the general epilogue is a function of its own
        // (one per level and tile shape, not one per call site).
        crate::isa::outlined(
            s,
            StoreTile::<F, MR, NV> {
                acc: out.as_ptr().cast(),
                c,
                c_rs,
                m_eff,
                n_eff,
                epi,
            },
        );
    }
}

/// The k-loop of [`microkernel`]: the `MR × NV` accumulators of
/// `A·B` over `kc` steps. `FULL_B`: every B vector is whole (B packed, or
/// the tile's width whole vectors).
///
/// # Safety
/// As [`microkernel`] for `a` and `b`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn kloop<
    S: Simd,
    const MR: usize,
    const NV: usize,
    const PACKED_A: bool,
    const FULL_B: bool,
>(
    s: S,
    kc: usize,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    b: *const f32,
    b_rs: usize,
    m_eff: usize,
    n_eff: usize,
) -> [[S::f32s; NV]; MR] {
    let lanes = S::F32_LANES;
    // On AVX-512 with whole B vectors the main k-loops run two k-steps per
    // iteration (the same FMAs in the same order per accumulator:
    // bit-identical). Measured on an Intel Xeon (6×64, one thread,
    // ours/`gemm`, alternating runs): 256³ 0.94–0.95 → 0.99–1.01, 128³
    // 0.97–0.98 → 1.01, 512³ 0.93 → 0.98–1.00; by 4: 64³ 1.02–1.03 →
    // 0.99; by 8: 0.89–0.96 everywhere. AVX2 gained ~3% at most, so the
    // other levels and the masked-B edge loops keep one step: every
    // unrolled copy is compiled once per tile, packing and activation
    // (unrolled everywhere, the crate's release build took 65 → 88 s).
    let unrolled = S::F32_LANES == 16 && FULL_B;
    let zero = s.splat_f32s(0.0);
    let mut acc = [[zero; NV]; MR];
    // Unpacked A: rows past m_eff reread the last row (computed, never
    // stored), so nothing outside A is read.
    let mut arow = [0usize; MR];
    if !PACKED_A {
        for (i, r) in arow.iter_mut().enumerate() {
            *r = i.min(m_eff - 1) * a_rs;
        }
    }
    // Unpacked B: the last vector of a narrow tile is loaded with a mask.
    let bpart: [_; NV] = core::array::from_fn(|j| Part::new(s, n_eff.saturating_sub(j * lanes)));
    // SAFETY: all reads stay within what the caller's contract guarantees.
    unsafe {
        // The B row of the tile at `$bp`, as NV vectors.
        macro_rules! load_b {
            ($bp:expr) => {{
                let mut bv = [zero; NV];
                for (j, v) in bv.iter_mut().enumerate() {
                    let p = $bp.add(j * lanes);
                    *v = if FULL_B || (j + 1) * lanes <= n_eff {
                        load::<S>(p)
                    } else if j * lanes < n_eff {
                        bpart[j].load(p)
                    } else {
                        zero
                    };
                }
                bv
            }};
        }
        // One k-step: load the B row of the tile, broadcast each A element
        // (`$a(i)` gives its address), rank-1 update of the accumulators.
        macro_rules! step {
            ($bp:expr, $a:expr) => {
                step!(acc, $bp, $a)
            };
            ($acc:ident, $bp:expr, $a:expr) => {{
                let bv = load_b!($bp);
                for (i, row) in $acc.iter_mut().enumerate() {
                    let av = s.splat_f32s(*$a(i));
                    for (acc_ij, &bj) in row.iter_mut().zip(&bv) {
                        *acc_ij = s.mul_add_e_f32s(av, bj, *acc_ij);
                    }
                }
            }};
        }
        // Every pointer is formed for a step that reads it (`a + kk·a_cs`),
        // never advanced past the last step: with a column-major A that
        // would leave the operand, which `add` does not allow.
        #[cfg(target_arch = "aarch64")]
        let lane_form = PACKED_A && MR == 8 && crate::arch::aarch64::is_neon::<S>();
        #[cfg(not(target_arch = "aarch64"))]
        let lane_form = false;
        if lane_form {
            // NEON, packed A: the 8 A values of a step are contiguous, two q
            // loads, then 8·NV by-lane FMAs (see `arch::aarch64`).
            #[cfg(target_arch = "aarch64")]
            for kk in 0..kc {
                let bv = load_b!(b.add(kk * b_rs));
                crate::arch::aarch64::fma_8rows_lane(&mut acc, &bv, a.add(kk * a_cs));
            }
        } else if !PACKED_A && m_eff == MR && MR * NV <= 4 {
            // A tile this small (an edge: 1–2 vectors by 2–4 rows) is bound
            // by the FMA latency, not the ports: MR·NV chains each wait ~4
            // cycles per step. Two accumulator sets over alternate k-steps,
            // added at the end, halve that wait.
            let base: [*const f32; MR] =
                core::array::from_fn(|g| a.add((3 * g).min(MR - 1) * a_rs));
            let mut acc2 = [[zero; NV]; MR];
            let mut kk = 0;
            while kk + 2 <= kc {
                let (k0, k1) = (kk, kk + 1);
                step!(acc, b.add(k0 * b_rs), |i: usize| base[i / 3]
                    .add(k0 * a_cs + (i % 3) * a_rs));
                step!(acc2, b.add(k1 * b_rs), |i: usize| base[i / 3]
                    .add(k1 * a_cs + (i % 3) * a_rs));
                kk += 2;
            }
            if kk < kc {
                step!(acc, b.add(kk * b_rs), |i: usize| base[i / 3]
                    .add(kk * a_cs + (i % 3) * a_rs));
            }
            for (row, row2) in acc.iter_mut().zip(&acc2) {
                for (x, &y) in row.iter_mut().zip(row2) {
                    *x = s.add_f32s(*x, y);
                }
            }
        } else if !PACKED_A && m_eff == MR {
            // A read in place, all rows live: row i at base[i/3] + (i%3)·a_rs,
            // so six rows need two pointers and one stride register (an
            // addressing mode each) instead of six offsets LLVM would spill.
            let base: [*const f32; MR] =
                core::array::from_fn(|g| a.add((3 * g).min(MR - 1) * a_rs));
            let mut kk = 0;
            if unrolled {
                while kk + 2 <= kc {
                    for k1 in [kk, kk + 1] {
                        let bp = b.add(k1 * b_rs);
                        step!(bp, |i: usize| base[i / 3].add(k1 * a_cs + (i % 3) * a_rs));
                    }
                    kk += 2;
                }
            }
            while kk < kc {
                let bp = b.add(kk * b_rs);
                step!(bp, |i: usize| base[i / 3].add(kk * a_cs + (i % 3) * a_rs));
                kk += 1;
            }
        } else {
            let mut kk = 0;
            if unrolled && PACKED_A {
                while kk + 2 <= kc {
                    for k1 in [kk, kk + 1] {
                        let (ap, bp) = (a.add(k1 * a_cs), b.add(k1 * b_rs));
                        step!(bp, |i: usize| ap.add(i));
                    }
                    kk += 2;
                }
            }
            while kk < kc {
                let (ap, bp) = (a.add(kk * a_cs), b.add(kk * b_rs));
                step!(bp, |i: usize| ap.add(if PACKED_A { i } else { arow[i] }));
                kk += 1;
            }
        }
    }
    acc
}

/// [`store_tile`] as an operation for [`crate::isa::outlined`]: the
/// accumulators travel as a pointer to the `[[S::f32s; NV]; MR]` array of the
/// level the caller runs at (the array is in memory already: the epilogue
/// indexes it dynamically).
struct StoreTile<'a, F, const MR: usize, const NV: usize> {
    acc: *const f32,
    c: *mut f32,
    c_rs: usize,
    m_eff: usize,
    n_eff: usize,
    epi: &'a TileEpi<F>,
}

impl<F: VecFn, const MR: usize, const NV: usize> pulp::WithSimd for StoreTile<'_, F, MR, NV> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        // SAFETY: `outlined` runs this at the caller's level, so `acc` points
        // to an initialised, aligned `[[S::f32s; NV]; MR]`; `c` and the
        // epilogue's pointers carry the caller's `microkernel` contract.
        unsafe {
            let acc = &*(self.acc as *const [[S::f32s; NV]; MR]);
            store_tile(s, acc, self.c, self.c_rs, self.m_eff, self.n_eff, self.epi);
        }
    }
}

/// [`microkernel`] with the tile narrowed to the live corner: to
/// `ceil(n_eff/lanes)` vectors when the last column panel is narrower than
/// `NR` (a 6×64 tile on 32 columns would otherwise spend half its FMAs on
/// padding; small products are all edge), and, for a 6-row tile reading A
/// in place, to 2 or 4 rows for the last rows of A. Same contract as
/// [`microkernel`].
///
/// # Safety
/// As [`microkernel`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn microkernel_narrowing<
    S: Simd,
    F: VecFn,
    const MR: usize,
    const NV: usize,
    const PACKED_A: bool,
    const PACKED_B: bool,
>(
    s: S,
    kc: usize,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    b: *const f32,
    b_rs: usize,
    c: *mut f32,
    c_rs: usize,
    m_eff: usize,
    n_eff: usize,
    epi: &TileEpi<F>,
) {
    // Leftover rows of an in-place 6-row tile run on a tile of 2 or 4 rows
    // (a 2-row edge on 6 rows spent two thirds of its FMAs on padding; the
    // packed-A tiles have zero rows in their panels and keep MR). A tile of
    // fewer rows reads a subset of the rows the MR-row one would (rows <
    // m_eff) and writes the same corner. They are functions of their own
    // (`isa::outlined`, one call per column panel): inlined, they tripled
    // the loop nest's code and its full tiles ran 2–4% slower. Only without
    // an activation (plain products and attention's tiles): for the
    // epilogue variants they added ~15% to the crate's build for edges
    // that are a few percent of those products.
    if F::IDENTITY && !PACKED_A && MR == 6 && m_eff <= 4 {
        macro_rules! edge {
            ($mr:literal) => {
                crate::isa::outlined(
                    s,
                    EdgeRows::<F, NV, PACKED_B, $mr> {
                        kc,
                        a,
                        a_rs,
                        a_cs,
                        b,
                        b_rs,
                        c,
                        c_rs,
                        m_eff,
                        n_eff,
                        epi,
                    },
                )
            };
        }
        return if m_eff <= 2 { edge!(2) } else { edge!(4) };
    }
    // SAFETY: the caller's contract.
    unsafe {
        narrow_cols::<S, F, MR, NV, PACKED_A, PACKED_B>(
            s, kc, a, a_rs, a_cs, b, b_rs, c, c_rs, m_eff, n_eff, epi,
        )
    }
}

/// The last `m_eff ≤ MR` rows of an in-place 6-row tile on a tile of `MR`
/// (2 or 4) rows, as an operation for [`crate::isa::outlined`] (one
/// function per row count: separate units for codegen).
struct EdgeRows<'a, F, const NV: usize, const PACKED_B: bool, const MR: usize> {
    kc: usize,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    b: *const f32,
    b_rs: usize,
    c: *mut f32,
    c_rs: usize,
    m_eff: usize,
    n_eff: usize,
    epi: &'a TileEpi<F>,
}

impl<F: VecFn, const NV: usize, const PACKED_B: bool, const MR: usize> pulp::WithSimd
    for EdgeRows<'_, F, NV, PACKED_B, MR>
{
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let EdgeRows {
            kc,
            a,
            a_rs,
            a_cs,
            b,
            b_rs,
            c,
            c_rs,
            m_eff,
            n_eff,
            epi,
        } = self;
        // SAFETY: built only by `microkernel_narrowing` from its caller's
        // `microkernel` contract, for rows < m_eff ≤ MR of an in-place A.
        unsafe {
            narrow_cols::<S, F, MR, NV, false, PACKED_B>(
                s, kc, a, a_rs, a_cs, b, b_rs, c, c_rs, m_eff, n_eff, epi,
            )
        }
    }
}

/// [`microkernel`] on `ceil(n_eff/lanes)` vectors of columns.
///
/// # Safety
/// As [`microkernel`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn narrow_cols<
    S: Simd,
    F: VecFn,
    const MR: usize,
    const NV: usize,
    const PACKED_A: bool,
    const PACKED_B: bool,
>(
    s: S,
    kc: usize,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    b: *const f32,
    b_rs: usize,
    c: *mut f32,
    c_rs: usize,
    m_eff: usize,
    n_eff: usize,
    epi: &TileEpi<F>,
) {
    let nv = n_eff.div_ceil(S::F32_LANES);
    // SAFETY: a narrower tile reads a subset of what the NV-wide one would
    // (the first `nv` vectors of each B row) and writes the same corner.
    unsafe {
        match nv {
            1 if NV > 1 => microkernel::<S, F, MR, 1, PACKED_A, PACKED_B>(
                s, kc, a, a_rs, a_cs, b, b_rs, c, c_rs, m_eff, n_eff, epi,
            ),
            2 if NV > 2 => microkernel::<S, F, MR, 2, PACKED_A, PACKED_B>(
                s, kc, a, a_rs, a_cs, b, b_rs, c, c_rs, m_eff, n_eff, epi,
            ),
            3 if NV > 3 => microkernel::<S, F, MR, 3, PACKED_A, PACKED_B>(
                s, kc, a, a_rs, a_cs, b, b_rs, c, c_rs, m_eff, n_eff, epi,
            ),
            _ => microkernel::<S, F, MR, NV, PACKED_A, PACKED_B>(
                s, kc, a, a_rs, a_cs, b, b_rs, c, c_rs, m_eff, n_eff, epi,
            ),
        }
    }
}

/// The store of a whole `MR × NV·lanes` tile: `C ← acc`.
///
/// # Safety
/// As [`microkernel`] for `c`, with `m_eff = MR`, `n_eff = NV·lanes`.
#[inline(always)]
unsafe fn store_full<S: Simd, const MR: usize, const NV: usize>(
    acc: &[[S::f32s; NV]; MR],
    c: *mut f32,
    c_rs: usize,
) {
    // SAFETY: rows < MR and columns < NV·lanes are the live tile.
    unsafe {
        for (i, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                store::<S>(c.add(i * c_rs + j * S::F32_LANES), v);
            }
        }
    }
}

/// The epilogue: `C ← act(alpha·acc + c_scale·C + bias)·U` on the live
/// corner (no `·U` when `epi.mul` is null), in two passes over the tile:
/// the affine part, then the activation and the store vector by vector
/// (live vectors only). The activation once ran as a pass of its own over
/// all `MR × NV` vectors (24 at 6×64): with GELU's ~20 constants that
/// spilled the tile, and the fused bias-GELU on 512×3072·768 cost 9–10%
/// over the plain product against 5.4–7.1% this way (Intel Xeon, one
/// thread, three interleaved runs of fifteen).
///
/// # Safety
/// As [`microkernel`] for `c`, `bias` and `epi.mul`.
#[inline(always)]
unsafe fn store_tile<S: Simd, F: VecFn, const MR: usize, const NV: usize>(
    s: S,
    acc: &[[S::f32s; NV]; MR],
    c: *mut f32,
    c_rs: usize,
    m_eff: usize,
    n_eff: usize,
    epi: &TileEpi<F>,
) {
    let lanes = S::F32_LANES;
    let alpha = s.splat_f32s(epi.alpha);
    let mut v = *acc;
    // SAFETY: every access is to row i < m_eff and columns < n_eff (full
    // vectors only when all their lanes are < n_eff, masked otherwise).
    // Constant trip counts with the live-corner test inside: indexing `acc`
    // with data-dependent bounds would keep it in memory (no SROA) and make
    // the k-loop store every accumulator on every step.
    unsafe {
        let live = |i: usize, j: usize| i < m_eff && j * lanes < n_eff;
        let part = |j: usize| Part::new(s, n_eff - j * lanes);
        let full = |j: usize| (j + 1) * lanes <= n_eff;
        let load = |p: *const f32, j: usize| {
            if full(j) {
                load::<S>(p)
            } else {
                part(j).load(p)
            }
        };
        #[allow(clippy::needless_range_loop)]
        for i in 0..MR {
            for j in 0..NV {
                if !live(i, j) {
                    continue;
                }
                let col = j * lanes;
                let mut x = v[i][j];
                if epi.alpha != 1.0 {
                    x = s.mul_f32s(x, alpha);
                }
                if let Some(cs) = epi.c_scale {
                    let old = load(c.add(i * c_rs + col), j);
                    x = if cs == 1.0 {
                        s.add_f32s(x, old)
                    } else {
                        s.mul_add_e_f32s(old, s.splat_f32s(cs), x)
                    };
                }
                if !epi.bias.is_null() {
                    x = s.add_f32s(x, load(epi.bias.add(col), j));
                }
                v[i][j] = x;
            }
        }
        if m_eff == MR && n_eff == NV * lanes && !F::IDENTITY {
            // A whole tile: the activation on G vectors at a time, their
            // operations interleaved (`apply_n`). One vector after another,
            // GELU's ~110-cycle dependency chain left the FMA units idle:
            // the fused bias-GELU on 512×3072·768 cost +12% over the plain
            // product (AMD Zen 3, AVX2; +11% on an Intel Xeon, AVX-512),
            // 4 at a time +9% (both); 8 at a time with GELU's reciprocal
            // as `vrcp14ps` + a Newton step (not a 512-bit division)
            // +6–8% (Intel Xeon). The floor is the GELU's own work: ~38
            // vector operations on the two FMA ports, ≥ 19 cycles per 16
            // outputs, is ~5% of this product's FMA cycles (k = 768).
            const G: usize = crate::act::INTERLEAVE;
            let at = |t: usize| (t / NV, t % NV);
            let mut t = 0;
            while t < MR * NV {
                let g_len = G.min(MR * NV - t);
                let y = if g_len == G {
                    epi.act.apply_n(
                        s,
                        crate::math::each!(s, G, |g| {
                            let (i, j) = at(t + g);
                            v[i][j]
                        }),
                    )
                } else {
                    crate::math::each!(s, G, |g| {
                        let (i, j) = at(t + g.min(g_len - 1));
                        epi.act.apply(s, v[i][j])
                    })
                };
                for (g, &x) in y.iter().enumerate().take(g_len) {
                    let (i, j) = at(t + g);
                    let col = j * lanes;
                    let x = if epi.mul.is_null() {
                        x
                    } else {
                        s.mul_f32s(x, crate::simd::load::<S>(epi.mul.add(i * epi.mul_rs + col)))
                    };
                    store::<S>(c.add(i * c_rs + col), x);
                }
                t += G;
            }
            return;
        }
        #[allow(clippy::needless_range_loop)]
        for i in 0..MR {
            for j in 0..NV {
                if !live(i, j) {
                    continue;
                }
                let col = j * lanes;
                let mut x = epi.act.apply(s, v[i][j]);
                if !epi.mul.is_null() {
                    x = s.mul_f32s(x, load(epi.mul.add(i * epi.mul_rs + col), j));
                }
                let p = c.add(i * c_rs + col);
                if full(j) {
                    store::<S>(p, x);
                } else {
                    part(j).store(p, x);
                }
            }
        }
    }
}
