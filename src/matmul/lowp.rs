//! Products with low-precision B ([`crate::quant`]): the weights are
//! widened to f32 in registers, never copied whole.
//!
//! - decode (m ≤ [`DOT_ROWS`], weights `[n, k]`): each output is a dot
//!   product of an A row with a weight row, the weights streamed once and
//!   dequantized a block at a time (`dot_cols`);
//! - decode with bf16/f16 `[k, n]` weights (m = 1): rows streamed as axpys
//!   into column accumulators, as the f32 path does (`axpy_cols`);
//! - everything else: the f32 packed driver, with B converted while it is
//!   packed (`pack_b`), so the conversion is paid once per packed block
//!   and reused by every row of A.
//!
//! On AVX2 the kernels run with F16C added where the CPU has it (every
//! AVX2 CPU does; pulp's `V3` does not name it): f16 weights and the block
//! scales widen by `vcvtph2ps` (`Fmt::F16C`). Measured (AMD Zen 5 forced to
//! AVX2, 1×4096·4096×256 warm, one thread, interleaved): f16 12.0 → 48.4
//! GB/s; with the Q4 nibbles split once per block (`q4_block_v3`), Q4_1
//! 6.4 → 9.8 GB/s, Q4_0 8.4 → 9.8 GB/s.

use super::gemv::finish;
use super::{Act, Gemv, LowB, Problem};
use crate::act::VecFn;
use crate::quant::simd::{bf16s, f16s_at, i8s, prefetch, q4s};
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, QK, WeightFormat, bf16, f16};
use aligned_vec::{AVec, ConstAlign};
use pulp::Simd;
use std::cell::Cell;

type Buf = AVec<f32, ConstAlign<64>>;

/// Rows of A handled by one pass of the dot-product path; larger m goes
/// through the packed driver. Up to 4 rows share each dequantized weight
/// vector; 5–8 rows take two passes over the weights.
pub(crate) const DOT_ROWS: usize = 8;

/// Output columns per chunk of the dot-product path (accumulators of up to 4
/// A rows stay in L1).
const CHUNK: usize = 512;

thread_local! {
    /// (accumulators, contiguous copy of A's rows), per thread; taken out
    /// rather than borrowed in a `with` closure (see `gemm::PACK`).
    static SCRATCH: Cell<Option<(Buf, Buf)>> = const { Cell::new(None) };
}

/// An f16 scale as f32. Normal halves (every scale but tiny ones) move
/// their bits into place in integer arithmetic: exponent rebiased by 112,
/// significand shifted by 13. Zero and subnormal halves are their 10-bit
/// significand times 2⁻²⁴, converted from the integer: exact, and no
/// arithmetic on an f32 subnormal anywhere — the compiler computes both
/// arms before choosing, and a multiply with a subnormal operand costs a
/// microcode assist (~150 cycles on Intel) on every call. Measured
/// (Q4_1, 1×576·576×1536, Intel Xeon): 2.2 ms with the subnormal
/// multiply, see the `lowp` bench for the figure without. Infinite and
/// NaN scales are refused by [`crate::quant::WeightsRef`].
#[inline(always)]
fn scale_f32(h: f16) -> f32 {
    let b = u32::from(h.to_bits());
    let sign = (b & 0x8000) << 16;
    if b & 0x7c00 != 0 {
        f32::from_bits(sign | (((b & 0x7fff) << 13) + (112 << 23)))
    } else {
        let v = (b & 0x3ff) as f32 * f32::from_bits(0x3380_0000); // 2⁻²⁴
        f32::from_bits(v.to_bits() | sign)
    }
}

/// Units whose parameters [`dot_block`] converts in one pass, ahead of
/// their dot products.
const SCALES: usize = 32;

/// The parameters of `n ≤ SCALES` consecutive units of a row: `out[0][i]`
/// is unit i's scale, `out[1][i]` Q4_1's minimum (`F::PARAMS` of them).
/// On AVX-512 the f16s are gathered and widened 16 units at a time
/// (`vcvtph2ps`), on AVX2 with F16C one at a time by `vcvtph2ps`; the dot
/// product then reads each as a broadcast operand. (On AMD Zen 5 the
/// gather costs ~20 cycles, about 1.1 cycles a Q4_0 block row in an
/// isolated loop; staging the halves through a stack array, or 64-byte
/// loads and `vpermw`, measured no faster in the kernel there.)
/// Measured (Q4_0, 1×4096·4096×256 weights warm, one thread, Intel Xeon):
/// converting each scale in the loop — 11 scalar integer ops, or a
/// `vpbroadcastw` + `vcvtph2ps` pair — left the loop 10 vector µops a block
/// row, 3 of them the scale's.
///
/// # Safety
/// The `n` units exist.
#[inline(always)]
#[cfg_attr(
    not(target_arch = "x86_64"),
    allow(clippy::extra_unused_type_parameters)
)]
unsafe fn unit_params<S: Simd, F: Fmt>(
    u: *const u8,
    ub: usize,
    n: usize,
    out: &mut [[f32; SCALES]; 2],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::arch::x86::is_v4::<S>() {
        let [first, second] = out;
        let mut i = 0;
        while i < n {
            // SAFETY: V4 proves AVX-512F; units i.. exist and start with
            // their PARAMS f16s, each unit at least 4 bytes; 16·ub is a
            // few hundred bytes; [i, i + 16) is inside (SCALES % 16 == 0).
            unsafe {
                let (p, f, sd) = (
                    u.add(i * ub),
                    first.as_mut_ptr().add(i),
                    second.as_mut_ptr().add(i),
                );
                if F::PARAMS == 2 {
                    crate::arch::x86::f16_strided_v4::<true>(p, ub, n - i, f, sd);
                } else {
                    crate::arch::x86::f16_strided_v4::<false>(p, ub, n - i, f, sd);
                }
            }
            i += 16;
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if F::F16C && crate::arch::x86::is_v3::<S>() {
        for i in 0..n {
            for (q, o) in out.iter_mut().enumerate().take(F::PARAMS) {
                // SAFETY: unit i exists (caller) and starts with PARAMS
                // f16s; `F16C`: the kernel runs with F16C (`in_f16c`).
                o[i] = unsafe { crate::arch::x86::half_f16c(u.add(i * ub + 2 * q)) };
            }
        }
        return;
    }
    for i in 0..n {
        for (q, o) in out.iter_mut().enumerate().take(F::PARAMS) {
            // SAFETY: unit i exists (caller) and starts with PARAMS f16s.
            o[i] = scale_f32(unsafe { u.add(i * ub + 2 * q).cast::<f16>().read_unaligned() });
        }
    }
}

/// One weight format, as units of contiguous elements along k: a 32-weight
/// block for the block formats, one vector for bf16/f16. A unit's weights
/// are `scale · raw`: raw is the block's integers (`q`, or `q − 8` for
/// Q4_0) or the widened values (bf16/f16, scale 1).
pub(crate) trait Fmt: Copy {
    /// Whether units carry a scale (the block formats): then dot products
    /// sum `raw·x` over a unit and multiply by the scale once.
    const SCALED: bool;
    /// How many f16 parameters a unit starts with: 0 (bf16/f16), 1 (the
    /// scale: Q8_0, Q4_0), 2 (scale and minimum: Q4_1).
    const PARAMS: usize = 0;
    /// Whether the kernel runs in [`crate::arch::x86::in_f16c`] (AVX2 with
    /// F16C): halves (f16 weights, block scales) widen with `vcvtph2ps`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    const F16C: bool = false;
    /// Elements per unit at this width.
    fn unit<S: Simd>() -> usize;
    /// Bytes per unit at this width.
    fn unit_bytes<S: Simd>() -> usize;
    /// The unit's scale (1 when not `SCALED`).
    ///
    /// # Safety
    /// `u` points to a whole unit.
    unsafe fn scale(u: *const u8) -> f32;
    /// Vector `v` (`< unit / lanes`) of the unit's raw values, as f32.
    ///
    /// # Safety
    /// As `scale`.
    unsafe fn raw<S: Simd>(s: S, u: *const u8, v: usize) -> S::f32s;
    /// Element `e` of a row starting at `row`, one at a time (tails).
    ///
    /// # Safety
    /// The row has more than `e` elements.
    unsafe fn get(row: *const u8, e: usize) -> f32;
    /// `f(v, raw(v))` for every vector of the unit, in order (a format may
    /// share work between them).
    ///
    /// # Safety
    /// As `scale`.
    #[inline(always)]
    unsafe fn each_raw<S: Simd>(s: S, u: *const u8, mut f: impl FnMut(usize, S::f32s)) {
        for v in 0..Self::unit::<S>() / S::F32_LANES {
            // SAFETY: the caller's contract.
            f(v, unsafe { Self::raw::<S>(s, u, v) });
        }
    }
    /// [`Fmt::each_raw`] with the unit's parameters already converted
    /// (`d`, `m`: splats of [`unit_params`]' values; used when
    /// `PARAMS == 2`).
    ///
    /// # Safety
    /// As `scale`; `d` and `m` are this unit's.
    #[inline(always)]
    unsafe fn each_raw_dm<S: Simd>(
        s: S,
        u: *const u8,
        d: S::f32s,
        m: S::f32s,
        f: impl FnMut(usize, S::f32s),
    ) {
        let _ = (d, m);
        // SAFETY: the caller's contract.
        unsafe { Self::each_raw(s, u, f) }
    }
}

/// Vector `v` of a unit's weights: `scale · raw`, exact (an 11-bit scale
/// times an integer of at most 8 bits).
///
/// # Safety
/// As [`Fmt::raw`]; `d` is `splat(F::scale(u))`.
#[inline(always)]
unsafe fn weights<S: Simd, F: Fmt>(s: S, u: *const u8, v: usize, d: S::f32s) -> S::f32s {
    // SAFETY: the caller's contract.
    let r = unsafe { F::raw::<S>(s, u, v) };
    if F::SCALED { s.mul_f32s(r, d) } else { r }
}

/// bf16 (`F16 = false`) or IEEE half (`F16 = true`) weights: one vector
/// per unit, no scale. `F16C`: the kernel runs in
/// [`crate::arch::x86::in_f16c`], and AVX2 widens halves with `vcvtph2ps`.
#[derive(Clone, Copy)]
pub(crate) struct Half16<const F16: bool, const F16C: bool>;
/// Q8_0 (`F16C`: as [`Fmt::F16C`], also for the three below).
#[derive(Clone, Copy)]
pub(crate) struct Q8<const F16C: bool>;
/// Q4_0.
#[derive(Clone, Copy)]
pub(crate) struct Q4<const F16C: bool>;
/// Q4_1: `d·nib + m` per element (one FMA, the single rounding llama.cpp's
/// dequantization has), so unscaled: every weight is widened to its f32
/// value before the dot product, and the products match the f32 product
/// with the dequantized weights term for term.
#[derive(Clone, Copy)]
pub(crate) struct Q4m<const F16C: bool>;

impl<const IS_F16: bool, const H: bool> Fmt for Half16<IS_F16, H> {
    const SCALED: bool = false;
    const F16C: bool = H;
    #[inline(always)]
    fn unit<S: Simd>() -> usize {
        S::F32_LANES
    }
    #[inline(always)]
    fn unit_bytes<S: Simd>() -> usize {
        2 * S::F32_LANES
    }
    #[inline(always)]
    unsafe fn scale(_: *const u8) -> f32 {
        1.0
    }
    #[inline(always)]
    unsafe fn raw<S: Simd>(_: S, u: *const u8, _: usize) -> S::f32s {
        // SAFETY: a unit is one vector of 16-bit floats (caller).
        unsafe {
            if IS_F16 {
                f16s_at::<S, H>(u.cast())
            } else {
                bf16s::<S>(u.cast())
            }
        }
    }
    #[inline(always)]
    unsafe fn get(row: *const u8, e: usize) -> f32 {
        // SAFETY: caller.
        unsafe {
            if IS_F16 {
                (*row.cast::<f16>().add(e)).to_f32()
            } else {
                (*row.cast::<bf16>().add(e)).to_f32()
            }
        }
    }
}

impl<const H: bool> Fmt for Q8<H> {
    const SCALED: bool = true;
    const PARAMS: usize = 1;
    const F16C: bool = H;
    #[inline(always)]
    fn unit<S: Simd>() -> usize {
        QK
    }
    #[inline(always)]
    fn unit_bytes<S: Simd>() -> usize {
        size_of::<BlockQ8_0>()
    }
    #[inline(always)]
    unsafe fn scale(u: *const u8) -> f32 {
        // SAFETY: a block starts with its f16 scale (caller).
        scale_f32(unsafe { u.cast::<f16>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn raw<S: Simd>(_: S, u: *const u8, v: usize) -> S::f32s {
        // SAFETY: `qs` is 32 bytes after the scale; v·lanes + lanes ≤ 32.
        unsafe { i8s::<S>(u.add(2 + v * S::F32_LANES).cast()) }
    }
    #[inline(always)]
    unsafe fn get(row: *const u8, e: usize) -> f32 {
        // SAFETY: caller; block e/32 of the row is whole.
        let b = unsafe { &*row.cast::<BlockQ8_0>().add(e / QK) };
        scale_f32(b.d) * f32::from(b.qs[e % QK])
    }
}

impl<const H: bool> Fmt for Q4<H> {
    const SCALED: bool = true;
    const PARAMS: usize = 1;
    const F16C: bool = H;
    #[inline(always)]
    fn unit<S: Simd>() -> usize {
        QK
    }
    #[inline(always)]
    fn unit_bytes<S: Simd>() -> usize {
        size_of::<BlockQ4_0>()
    }
    #[inline(always)]
    unsafe fn scale(u: *const u8) -> f32 {
        // SAFETY: a block starts with its f16 scale (caller).
        scale_f32(unsafe { u.cast::<f16>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn raw<S: Simd>(_: S, u: *const u8, v: usize) -> S::f32s {
        // Elements v·lanes.. : low nibbles of bytes e for e < 16, high
        // nibbles of bytes e − 16 after.
        let e = v * S::F32_LANES;
        let (byte, hi) = if e < 16 { (e, false) } else { (e - 16, true) };
        // SAFETY: `qs` is 16 bytes after the scale; byte + lanes ≤ 16.
        unsafe { q4s::<S>(u.add(2 + byte), hi) }
    }
    #[inline(always)]
    unsafe fn get(row: *const u8, e: usize) -> f32 {
        // SAFETY: caller; block e/32 of the row is whole.
        let b = unsafe { &*row.cast::<BlockQ4_0>().add(e / QK) };
        let byte = b.qs[e % 16];
        let nib = if e % QK < 16 { byte & 0x0f } else { byte >> 4 };
        scale_f32(b.d) * (f32::from(nib) - 8.0)
    }
    #[inline(always)]
    unsafe fn each_raw<S: Simd>(s: S, u: *const u8, mut f: impl FnMut(usize, S::f32s)) {
        #[cfg(target_arch = "x86_64")]
        if crate::arch::x86::is_v4::<S>() {
            // SAFETY: V4 proves AVX-512F; `qs` is 16 bytes after the scale.
            let (lo, hi) = unsafe { crate::arch::x86::q4_block_v4::<true>(u.add(2)) };
            // SAFETY: V4's f32 vector is __m512.
            unsafe {
                f(0, core::mem::transmute_copy(&lo));
                f(1, core::mem::transmute_copy(&hi));
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if crate::arch::x86::is_v3::<S>() {
            // SAFETY: V3 proves AVX2; `qs` is 16 bytes after the scale.
            let q = unsafe { crate::arch::x86::q4_block_v3::<true>(u.add(2)) };
            for (v, x) in q.iter().enumerate() {
                // SAFETY: V3's f32 vector is __m256.
                f(v, unsafe { core::mem::transmute_copy(x) });
            }
            return;
        }
        for v in 0..QK / S::F32_LANES {
            // SAFETY: the caller's contract.
            f(v, unsafe { Self::raw::<S>(s, u, v) });
        }
    }
}

impl<const H: bool> Fmt for Q4m<H> {
    const SCALED: bool = false;
    const PARAMS: usize = 2;
    const F16C: bool = H;
    #[inline(always)]
    fn unit<S: Simd>() -> usize {
        QK
    }
    #[inline(always)]
    fn unit_bytes<S: Simd>() -> usize {
        size_of::<BlockQ4_1>()
    }
    #[inline(always)]
    unsafe fn scale(_: *const u8) -> f32 {
        1.0
    }
    #[inline(always)]
    unsafe fn raw<S: Simd>(s: S, u: *const u8, v: usize) -> S::f32s {
        // SAFETY: a whole block at `u` (caller): d, m, then 16 bytes of
        // nibbles; byte + lanes ≤ 16 as for Q4_0.
        unsafe {
            let d = scale_f32(u.cast::<f16>().read_unaligned());
            let m = scale_f32(u.add(2).cast::<f16>().read_unaligned());
            let e = v * S::F32_LANES;
            let (byte, hi) = if e < 16 { (e, false) } else { (e - 16, true) };
            // (nib − 8) + 8 = nib exactly.
            let nib = s.add_f32s(q4s::<S>(u.add(4 + byte), hi), s.splat_f32s(8.0));
            s.mul_add_e_f32s(nib, s.splat_f32s(d), s.splat_f32s(m))
        }
    }
    #[inline(always)]
    unsafe fn get(row: *const u8, e: usize) -> f32 {
        // SAFETY: caller; block e/32 of the row is whole.
        let b = unsafe { &*row.cast::<BlockQ4_1>().add(e / QK) };
        let byte = b.qs[e % 16];
        let nib = if e % QK < 16 { byte & 0x0f } else { byte >> 4 };
        // d·nib is exact: one rounding, as the vector FMA.
        scale_f32(b.d) * f32::from(nib) + scale_f32(b.m)
    }
    #[inline(always)]
    unsafe fn each_raw<S: Simd>(s: S, u: *const u8, f: impl FnMut(usize, S::f32s)) {
        // SAFETY: a whole block at `u` (caller).
        unsafe {
            let d = s.splat_f32s(scale_f32(u.cast::<f16>().read_unaligned()));
            let m = s.splat_f32s(scale_f32(u.add(2).cast::<f16>().read_unaligned()));
            Self::each_raw_dm(s, u, d, m, f);
        }
    }
    #[inline(always)]
    unsafe fn each_raw_dm<S: Simd>(
        s: S,
        u: *const u8,
        d: S::f32s,
        m: S::f32s,
        mut f: impl FnMut(usize, S::f32s),
    ) {
        #[cfg(target_arch = "x86_64")]
        if crate::arch::x86::is_v4::<S>() {
            // SAFETY: V4 proves AVX-512F; the nibbles are 16 bytes at 4.
            let (lo, hi) = unsafe { crate::arch::x86::q4_block_v4::<false>(u.add(4)) };
            // SAFETY: V4's f32 vector is __m512.
            let (lo, hi): (S::f32s, S::f32s) = unsafe {
                (
                    core::mem::transmute_copy(&lo),
                    core::mem::transmute_copy(&hi),
                )
            };
            f(0, s.mul_add_e_f32s(lo, d, m));
            f(1, s.mul_add_e_f32s(hi, d, m));
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if crate::arch::x86::is_v3::<S>() {
            // SAFETY: V3 proves AVX2; the nibbles are 16 bytes at 4.
            let q = unsafe { crate::arch::x86::q4_block_v3::<false>(u.add(4)) };
            for (v, x) in q.iter().enumerate() {
                // SAFETY: V3's f32 vector is __m256.
                let x: S::f32s = unsafe { core::mem::transmute_copy(x) };
                f(v, s.mul_add_e_f32s(x, d, m));
            }
            return;
        }
        let eight = s.splat_f32s(8.0);
        for v in 0..QK / S::F32_LANES {
            let e = v * S::F32_LANES;
            let (byte, hi) = if e < 16 { (e, false) } else { (e - 16, true) };
            // SAFETY: byte + lanes ≤ 16 inside the block's nibbles.
            let nib = s.add_f32s(unsafe { q4s::<S>(u.add(4 + byte), hi) }, eight);
            f(v, s.mul_add_e_f32s(nib, d, m));
        }
    }
}

/// Calls `$body` with the `Fmt` type of a low-precision format.
macro_rules! with_fmt {
    ($w:expr, false, $F:ident => $body:expr) => {
        match $w.fmt {
            WeightFormat::Bf16 => {
                type $F = Half16<false, false>;
                $body
            }
            WeightFormat::F16 => {
                type $F = Half16<true, false>;
                $body
            }
            WeightFormat::Q8_0 => {
                type $F = Q8<false>;
                $body
            }
            WeightFormat::Q4_0 => {
                type $F = Q4<false>;
                $body
            }
            WeightFormat::Q4_1 => {
                type $F = Q4m<false>;
                $body
            }
            WeightFormat::F32 => unreachable!("f32 weights take the f32 paths"),
        }
    };
    ($w:expr, true, $F:ident => $body:expr) => {
        match $w.fmt {
            WeightFormat::Bf16 => {
                type $F = Half16<false, true>;
                $body
            }
            WeightFormat::F16 => {
                type $F = Half16<true, true>;
                $body
            }
            WeightFormat::Q8_0 => {
                type $F = Q8<true>;
                $body
            }
            WeightFormat::Q4_0 => {
                type $F = Q4<true>;
                $body
            }
            WeightFormat::Q4_1 => {
                type $F = Q4m<true>;
                $body
            }
            WeightFormat::F32 => unreachable!("f32 weights take the f32 paths"),
        }
    };
    ($w:expr, $f16c:ident, $F:ident => $body:expr) => {
        if $f16c {
            with_fmt!($w, true, $F => $body)
        } else {
            with_fmt!($w, false, $F => $body)
        }
    };
}

impl LowB {
    /// Bytes from one weight row (`[n, k]`) or one k-row (`[k, n]`) to the
    /// next.
    #[inline(always)]
    pub(crate) fn row_bytes(&self) -> usize {
        self.fmt.bytes(self.ld)
    }

    /// The weights from column `j0` on.
    #[inline(always)]
    pub(crate) fn at_col(self, j0: usize) -> LowB {
        let off = if self.out_in {
            j0 * self.row_bytes()
        } else {
            self.fmt.bytes(j0)
        };
        // SAFETY (pointer offset): column j0 exists (callers split n).
        LowB {
            ptr: unsafe { self.ptr.add(off) },
            ..self
        }
    }
}

/// Whether the product goes through a matrix-vector path here.
pub(crate) fn takes_dot(p: &Problem, w: &LowB) -> bool {
    (w.out_in && p.m <= DOT_ROWS) || (!w.out_in && p.m == 1)
}

/// Columns `[j0, j1)` of a product that [`takes_dot`], on this thread.
#[inline(always)]
pub(crate) fn run_cols<S: Simd, A: VecFn, const F16C: bool>(
    s: S,
    p: &Problem,
    w: &LowB,
    act: A,
    j0: usize,
    j1: usize,
) {
    with_fmt!(w, F16C, F => {
        if w.out_in {
            dot_cols::<S, A, F>(s, p, w, act, j0, j1)
        } else {
            axpy_cols::<S, A, F>(s, p, w, act, j0, j1)
        }
    })
}

/// The epilogue of row `i` over columns `[j, j + acc.len())`.
///
/// # Safety
/// Row i and those columns of C (and U) exist.
#[inline(always)]
pub(super) unsafe fn finish_row<S: Simd, A: VecFn>(
    s: S,
    p: &Problem,
    act: A,
    i: usize,
    j: usize,
    acc: &mut [f32],
) {
    let g = Gemv {
        k: p.k,
        x: core::ptr::null(),
        incx: 1,
        b: core::ptr::null(),
        rsb: 0,
        csb: 0,
        // SAFETY: row i of C exists.
        y: unsafe { p.c.add(i * p.rsc) },
        incy: p.csc,
        alpha: p.alpha,
        beta: p.beta,
        bias: p.bias,
        bias_stride: 1,
        act: Act::NONE,
        mul: if p.mul.is_null() {
            p.mul
        } else {
            // SAFETY: row i of U exists.
            unsafe { p.mul.add(i * p.rsu) }
        },
        incu: p.csu,
    };
    // SAFETY: the caller's contract.
    unsafe { finish(s, &g, act, j, acc) }
}

/// Sizes the accumulators and returns A as contiguous rows (copied into
/// `abuf` when A's columns are strided) and their stride.
#[inline(always)]
fn prepare(p: &Problem, acc: &mut Buf, abuf: &mut Buf, acc_len: usize) -> (*const f32, usize) {
    if acc.len() < acc_len {
        acc.resize(acc_len, 0.0);
    }
    if p.csa == 1 {
        return (p.a, p.rsa);
    }
    if abuf.len() < p.m * p.k {
        abuf.resize(p.m * p.k, 0.0);
    }
    for i in 0..p.m {
        for q in 0..p.k {
            // SAFETY: (i, q) is inside A.
            abuf[i * p.k + q] = unsafe { *p.a.add(i * p.rsa + q * p.csa) };
        }
    }
    (abuf.as_ptr(), p.k)
}

/// `[n, k]` weights: C[i][j] = dot(A row i, weight row j), the weights
/// streamed once per group of up to 4 A rows.
#[inline(always)]
fn dot_cols<S: Simd, A: VecFn, F: Fmt>(s: S, p: &Problem, w: &LowB, act: A, j0: usize, j1: usize) {
    let init = || (Buf::new(64), Buf::new(64));
    let mut guard = crate::threads::scratch(&SCRATCH, init);
    let (acc, abuf) = &mut *guard;
    let (a, rsa) = prepare(p, acc, abuf, 4 * CHUNK);
    let mut i0 = 0;
    while i0 < p.m {
        let mr = 4.min(p.m - i0);
        let mut j = j0;
        while j < j1 {
            let n = CHUNK.min(j1 - j);
            // SAFETY: rows i0..i0+mr of A (contiguous copy or in place with
            // unit column stride), weight rows j..j+n, C's columns j..j+n.
            unsafe {
                let a = a.add(i0 * rsa);
                if mr == 1 {
                    dot_block::<S, F, 1, 4>(s, w, a, rsa, 1, p.k, j, n, acc.as_mut_ptr());
                } else {
                    dot_block::<S, F, 4, 1>(s, w, a, rsa, mr, p.k, j, n, acc.as_mut_ptr());
                }
                for r in 0..mr {
                    finish_row(s, p, act, i0 + r, j, &mut acc[r * CHUNK..r * CHUNK + n]);
                }
            }
            j += n;
        }
        i0 += mr;
    }
}

/// `out[r·CHUNK + c] = dot(a row r, weight row j + c)` for `r < mr ≤ M`,
/// `c < n`, R weight rows at a time, one accumulator vector per (row,
/// weight row) pair.
///
/// # Safety
/// `a` holds `mr` rows of `k` floats at stride `rsa`; weight rows `j..j+n`
/// exist; `out` holds `M·CHUNK` floats.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn dot_block<S: Simd, F: Fmt, const M: usize, const R: usize>(
    s: S,
    w: &LowB,
    a: *const f32,
    rsa: usize,
    mr: usize,
    k: usize,
    j: usize,
    n: usize,
    out: *mut f32,
) {
    let lanes = S::F32_LANES;
    let unit = F::unit::<S>();
    let ub = F::unit_bytes::<S>();
    let units = k / unit;
    let rb = w.row_bytes();
    // Rows of A past mr read row 0 again (their sums are dropped).
    let arow: [*const f32; M] = core::array::from_fn(|i| {
        // SAFETY: row min(i, mr − 1) exists.
        unsafe { a.add(i.min(mr - 1) * rsa) }
    });
    // SAFETY: the caller's contract; every pointer below stays inside the
    // rows named there.
    unsafe {
        let mut c = 0;
        while c < n {
            let nr = R.min(n - c);
            let rows: [*const u8; R] =
                core::array::from_fn(|r| w.ptr.add((j + c + r.min(nr - 1)) * rb));
            let mut sums = [[s.splat_f32s(0.0); R]; M];
            let mut params = [[[0.0f32; SCALES]; 2]; R];
            for u in 0..units {
                let su = u % SCALES;
                if F::PARAMS > 0 && su == 0 {
                    for r in 0..R {
                        let left = SCALES.min(units - u);
                        unit_params::<S, F>(rows[r].add(u * ub), ub, left, &mut params[r]);
                    }
                }
                for r in 0..R {
                    let up = rows[r].add(u * ub);
                    // The same spot R rows on: the next group's rows (the
                    // weights are read as R interleaved streams, each a
                    // short row — 2.3 KB for Q4_0 at k = 4096 — too short
                    // for the hardware prefetcher to get ahead of them).
                    // Measured (Intel Xeon, 1×4096·4096×4096, weights
                    // cold, one thread): Q4_0 5.4 → 9.5 GB/s, Q8_0 10.1 →
                    // 13.0; two groups ahead or `prefetcht1`: no better.
                    prefetch(up.wrapping_add(R * rb));
                    if F::SCALED {
                        // Σ raw·x over the block, then one FMA by its
                        // scale: |raw| = |w|/d, so the block sum's rounding
                        // is bounded by the same Σ|w·x| as the f32 chain's.
                        let mut t = [s.splat_f32s(0.0); M];
                        F::each_raw::<S>(s, up, |v, rv| {
                            let off = u * unit + v * lanes;
                            for i in 0..M {
                                let xv = (arow[i].add(off) as *const S::f32s).read_unaligned();
                                t[i] = if v == 0 {
                                    s.mul_f32s(rv, xv)
                                } else {
                                    s.mul_add_e_f32s(rv, xv, t[i])
                                };
                            }
                        });
                        let d = s.splat_f32s(params[r][0][su]);
                        for i in 0..M {
                            sums[i][r] = s.mul_add_e_f32s(t[i], d, sums[i][r]);
                        }
                    } else {
                        let fma = |v: usize, wv: S::f32s| {
                            let off = u * unit + v * lanes;
                            for i in 0..M {
                                let xv = (arow[i].add(off) as *const S::f32s).read_unaligned();
                                sums[i][r] = s.mul_add_e_f32s(wv, xv, sums[i][r]);
                            }
                        };
                        if F::PARAMS == 2 {
                            let d = s.splat_f32s(params[r][0][su]);
                            let m = s.splat_f32s(params[r][1][su]);
                            F::each_raw_dm::<S>(s, up, d, m, fma);
                        } else {
                            F::each_raw::<S>(s, up, fma);
                        }
                    }
                }
            }
            for r in 0..nr {
                for i in 0..mr {
                    let mut t = s.reduce_sum_f32s(sums[i][r]);
                    // bf16/f16 rows with k not a multiple of the width.
                    for e in units * unit..k {
                        t += F::get(rows[r], e) * *arow[i].add(e);
                    }
                    *out.add(i * CHUNK + c + r) = t;
                }
            }
            c += nr;
        }
    }
}

/// `[k, n]` bf16/f16 weights, m = 1: y[j] = Σ_p x[p]·W[p][j], 8 weight rows
/// streamed per pass over column accumulators (as `gemv::rows_axpy`).
#[inline(always)]
fn axpy_cols<S: Simd, A: VecFn, F: Fmt>(s: S, p: &Problem, w: &LowB, act: A, j0: usize, j1: usize) {
    const ROWS: usize = 8;
    const CH: usize = 4096;
    let init = || (Buf::new(64), Buf::new(64));
    let mut guard = crate::threads::scratch(&SCRATCH, init);
    let (acc, abuf) = &mut *guard;
    let (x, _) = prepare(p, acc, abuf, CH);
    let lanes = S::F32_LANES;
    let rb = w.row_bytes();
    let eb = w.fmt.bytes(1);
    let mut j = j0;
    while j < j1 {
        let n = CH.min(j1 - j);
        let nv = n / lanes;
        let accp = acc.as_mut_ptr();
        // SAFETY: weight rows p < k, columns j..j+n exist; acc holds CH.
        unsafe {
            let col0 = w.ptr.add(j * eb);
            let mut p0 = 0;
            while p0 < p.k {
                let r = ROWS.min(p.k - p0);
                let xs: [f32; ROWS] =
                    core::array::from_fn(|q| if q < r { *x.add(p0 + q) } else { 0.0 });
                let xv: [S::f32s; ROWS] = core::array::from_fn(|q| s.splat_f32s(xs[q]));
                let rp: [*const u8; ROWS] =
                    core::array::from_fn(|q| col0.add((p0 + q.min(r - 1)) * rb));
                for v in 0..nv {
                    let off = v * lanes;
                    let mut a = if p0 == 0 {
                        s.splat_f32s(0.0)
                    } else {
                        (accp.add(off) as *const S::f32s).read_unaligned()
                    };
                    for q in 0..ROWS {
                        if q < r {
                            let wv = F::raw::<S>(s, rp[q].add(off * eb), 0);
                            a = s.mul_add_e_f32s(xv[q], wv, a);
                        }
                    }
                    (accp.add(off) as *mut S::f32s).write_unaligned(a);
                }
                for c in nv * lanes..n {
                    let mut a = if p0 == 0 { 0.0 } else { *accp.add(c) };
                    for q in 0..r {
                        a = xs[q].mul_add(F::get(rp[q], c), a);
                    }
                    *accp.add(c) = a;
                }
                p0 += r;
            }
            if p.k == 0 {
                acc[..n].fill(0.0);
            }
            finish_row(s, p, act, 0, j, &mut acc[..n]);
        }
        j += n;
    }
}

/// Packs `B[pc..pc+kc, jc..jc+nc]` of low-precision weights into f32
/// micro-panels of `nr` columns, each `kc × nr` row-major, zero-padded past
/// the last column — the layout of `gemm::pack_b`.
///
/// # Safety
/// The block is inside B; `dst` holds `ceil(nc/nr)·nr·kc` floats; for the
/// block formats `pc` and `kc` are multiples of 32.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn pack_b<S: Simd, const F16C: bool>(
    s: S,
    w: &LowB,
    pc: usize,
    jc: usize,
    kc: usize,
    nc: usize,
    nr: usize,
    dst: *mut f32,
) {
    // SAFETY: the caller's contract.
    unsafe {
        with_fmt!(w, F16C, F => if w.out_in {
            pack_out_in::<S, F>(s, w, pc, jc, kc, nc, nr, dst)
        } else {
            pack_in_out::<S, F>(s, w, pc, jc, kc, nc, nr, dst)
        })
    }
}

/// `[k, n]` bf16/f16: each row of a panel is `nr` contiguous weights,
/// widened a vector at a time.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn pack_in_out<S: Simd, F: Fmt>(
    s: S,
    w: &LowB,
    pc: usize,
    jc: usize,
    kc: usize,
    nc: usize,
    nr: usize,
    dst: *mut f32,
) {
    let lanes = S::F32_LANES;
    let rb = w.row_bytes();
    let eb = w.fmt.bytes(1);
    // SAFETY: reads (pc+q, jc+j), q < kc, j < nc: inside B; writes below
    // ceil(nc/nr)·nr·kc.
    unsafe {
        for (panel, jr) in (0..nc).step_by(nr).enumerate() {
            let nb = nr.min(nc - jr);
            let out = dst.add(panel * kc * nr);
            let full = nb / lanes * lanes;
            for q in 0..kc {
                let src = w.ptr.add((pc + q) * rb + (jc + jr) * eb);
                let row = out.add(q * nr);
                for c in (0..full).step_by(lanes) {
                    let v = F::raw::<S>(s, src.add(c * eb), 0);
                    (row.add(c) as *mut S::f32s).write_unaligned(v);
                }
                for c in full..nb {
                    *row.add(c) = F::get(src, c);
                }
                for c in nb..nr {
                    *row.add(c) = 0.0;
                }
            }
        }
    }
}

// A transpose: indices read clearer than iterator chains here.
#[allow(clippy::needless_range_loop)]
/// `[n, k]` weights: column j of the panel is weight row jc + jr + j,
/// widened a unit at a time into a row buffer and written down the column.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn pack_out_in<S: Simd, F: Fmt>(
    s: S,
    w: &LowB,
    pc: usize,
    jc: usize,
    kc: usize,
    nc: usize,
    nr: usize,
    dst: *mut f32,
) {
    const G: usize = 16;
    const KB: usize = 256;
    let lanes = S::F32_LANES;
    let unit = F::unit::<S>();
    let ub = F::unit_bytes::<S>();
    let rb = w.row_bytes();
    let mut tmp = [[0.0f32; KB]; G];
    // SAFETY: reads weight rows jc..jc+nc, elements pc..pc+kc; writes below
    // ceil(nc/nr)·nr·kc.
    unsafe {
        for (panel, jr) in (0..nc).step_by(nr).enumerate() {
            let nb = nr.min(nc - jr);
            let out = dst.add(panel * kc * nr);
            // G weight rows × KB elements at a time: widened into `tmp`,
            // then written k-major (G contiguous floats per k step).
            for g0 in (0..nr).step_by(G) {
                let gw = G.min(nr - g0);
                for q0 in (0..kc).step_by(KB) {
                    let kb = KB.min(kc - q0);
                    for g in 0..gw {
                        let t = tmp[g].as_mut_ptr();
                        if g0 + g >= nb {
                            core::ptr::write_bytes(t, 0, kb);
                            continue;
                        }
                        let row = w.ptr.add((jc + jr + g0 + g) * rb);
                        // Whole units inside [pc + q0, pc + q0 + kb).
                        let e0 = pc + q0;
                        let (u0, u1) = if e0.is_multiple_of(unit) {
                            (e0 / unit, (e0 + kb) / unit)
                        } else {
                            (0, 0)
                        };
                        for u in u0..u1 {
                            let up = row.add(u * ub);
                            let d = s.splat_f32s(F::scale(up));
                            for v in 0..unit / lanes {
                                let x = weights::<S, F>(s, up, v, d);
                                let at = u * unit + v * lanes - e0;
                                (t.add(at) as *mut S::f32s).write_unaligned(x);
                            }
                        }
                        let done = (u1 * unit).saturating_sub(e0);
                        for e in done..kb {
                            *t.add(e) = F::get(row, e0 + e);
                        }
                    }
                    for q in 0..kb {
                        let o = out.add((q0 + q) * nr + g0);
                        for g in 0..gw {
                            *o.add(g) = tmp[g][q];
                        }
                    }
                }
            }
        }
    }
}
