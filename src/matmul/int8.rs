//! The opt-in int8 mode ([`super::matmul_weights_int8`]): activations
//! quantized per 32 along k to `i8` with an f32 scale, Q8_0/Q4_0/Q4_1
//! weights used as their integers, integer dot products per block, one f32
//! multiply-add per block by the two scales.
//!
//! The weights enter the integer products unsigned (`u = q + 128` for Q8_0,
//! the raw nibble for Q4_0 and Q4_1), the activations signed: that is the
//! operand order of `vpdpbusd` (u8 × i8). The offset is taken back exactly,
//! in integers, from a per-row correction `−off·Σ q_a` computed once when A
//! is quantized ([`QuantA`]), so no cancellation happens in floating point.
//! Q4_1's `w = d·u + m` adds `m·d_a·Σ q_a` per block: one f32 multiply-add
//! with the block sums kept in [`QuantA::sa`].
//!
//! - AVX-512 VNNI (`Isa::Avx512` on a CPU with VNNI): decode (m ≤ 8)
//!   streams the `[n, k]` blocks once (`crate::arch::vnni::dot`); larger m
//!   packs B a chunk of 128 columns at a time as 4-k groups of u8 and runs a
//!   4 × 32 outer-product microkernel (`crate::arch::vnni::gemm_chunk`).
//! - AVX2 (`Isa::Avx2`, or `Isa::Avx512` without VNNI): `vpmaddubsw` +
//!   `vpmaddwd` a block at a time, 4 rows of A against each weight row
//!   (`crate::arch::int8_avx2::dot`), for every m.
//! - NEON with the dot-product extension (`Isa::Neon` on an aarch64 CPU
//!   with `dotprod`): `sdot`, a block at a time, 4 rows of A against each
//!   weight row (`crate::arch::int8_neon::dot`), for every m.
//! - every other level (scalar, NEON without `dotprod`, the `generic`
//!   tokens): the same integers in portable code ([`portable_dot`]) —
//!   exact, but not fast.

use super::lowp::finish_row;
use super::{LowB, Problem};
use crate::act::VecFn;
use crate::quant::{QK, WeightFormat};
use pulp::Simd;
use std::cell::Cell;

/// Output columns per chunk (decode accumulators, and the packed B chunk
/// of the VNNI GEMM: 4 panels of 32).
pub(crate) const CHUNK: usize = 128;

/// Rows of A at or below which the product streams the weights (no
/// packing): the same bound as the f32-activation path's.
pub(crate) use super::lowp::DOT_ROWS;

/// A quantized per 32 along k, rows padded with zeros to a multiple of 4.
#[derive(Default)]
pub(crate) struct QuantA {
    /// Padded row count.
    pub mp: usize,
    pub k: usize,
    pub nb: usize,
    /// `[mp][k]` quants.
    pub q: Vec<i8>,
    /// `[mp][nb]` scales.
    pub d: Vec<f32>,
    /// `[mp][nb]`: `−off · Σ q` over each block.
    pub blk: Vec<i32>,
    /// `[mp][k/4]`: `−off · Σ q` over each group of 4.
    pub lane: Vec<i32>,
    /// `[mp][nb]`: `d · Σ q` over each block (the activations' block sums,
    /// for Q4_1's `m` term).
    pub sa: Vec<f32>,
}

/// Which integer kernel runs the int8 mode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kernel {
    /// Portable integer code.
    Portable,
    /// `vpmaddubsw` (AVX2).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// `vpdpbusd` (AVX-512 VNNI).
    #[cfg(target_arch = "x86_64")]
    Vnni,
    /// `sdot` (NEON with the dot-product extension).
    #[cfg(target_arch = "aarch64")]
    Sdot,
}

impl Kernel {
    /// The kernel for `isa` on this CPU.
    pub(crate) fn for_isa(isa: crate::Isa) -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            use crate::Isa;
            if isa == Isa::Avx512 && crate::arch::vnni::available() {
                return Kernel::Vnni;
            }
            if matches!(isa, Isa::Avx2 | Isa::Avx512) && crate::arch::int8_avx2::available() {
                return Kernel::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        if isa == crate::Isa::Neon && crate::arch::int8_neon::available() {
            return Kernel::Sdot;
        }
        let _ = isa;
        Kernel::Portable
    }
}

/// A block format as the int8 kernels see it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Blk {
    /// Q8_0: f16 d, 32 × i8.
    Q8,
    /// Q4_0: f16 d, 16 bytes of nibbles (`q − 8`).
    Q4,
    /// Q4_1: f16 d, f16 m, 16 bytes of nibbles (`d·q + m`).
    Q4m,
}

impl Blk {
    /// The int8 mode's formats.
    pub(crate) fn of(fmt: WeightFormat) -> Option<Blk> {
        match fmt {
            WeightFormat::Q8_0 => Some(Blk::Q8),
            WeightFormat::Q4_0 => Some(Blk::Q4),
            WeightFormat::Q4_1 => Some(Blk::Q4m),
            _ => None,
        }
    }

    /// Where the quants start in a block.
    pub(crate) const fn quants_at(self) -> usize {
        match self {
            Blk::Q4m => 4,
            _ => 2,
        }
    }

    /// Whether the quants are nibbles.
    pub(crate) const fn nibbles(self) -> bool {
        !matches!(self, Blk::Q8)
    }
}

thread_local! {
    /// The calling thread's quantized A, reused across calls.
    static QA: Cell<Option<QuantA>> = const { Cell::new(None) };
    /// Per worker thread: accumulators, packed B and its scales.
    static WORK: Cell<Option<Work>> = const { Cell::new(None) };
}

#[derive(Default)]
struct Work {
    acc: Vec<f32>,
    pack: Vec<u8>,
    scales: Vec<f32>,
}

/// The weights' offset: the unsigned weight is `q + off`.
pub(crate) fn offset(fmt: WeightFormat) -> i32 {
    match fmt {
        WeightFormat::Q8_0 => 128,
        WeightFormat::Q4_1 => 0,
        _ => 8,
    }
}

impl QuantA {
    /// Quantizes A's rows (any strides) for weights in `fmt`.
    ///
    /// # Errors
    /// `a` on a NaN or infinite activation.
    pub(crate) fn new<L: crate::isa::Level>(
        level: L,
        p: &Problem,
        fmt: WeightFormat,
    ) -> Result<QuantA, crate::KernelError> {
        let mut qa = QA.take().unwrap_or_default();
        let (m, k) = (p.m, p.k);
        let nb = k / QK;
        let mp = m.next_multiple_of(4);
        qa.mp = mp;
        qa.k = k;
        qa.nb = nb;
        qa.q.clear();
        qa.q.resize(mp * k, 0);
        qa.d.clear();
        qa.d.resize(mp * nb, 0.0);
        qa.blk.clear();
        qa.blk.resize(mp * nb, 0);
        qa.lane.clear();
        qa.lane.resize(mp * (k / 4), 0);
        qa.sa.clear();
        qa.sa.resize(mp * nb, 0.0);
        let off = offset(fmt);
        match level.run(QuantRows {
            p,
            off,
            qa: &mut qa,
        }) {
            Ok(Ok(())) => Ok(qa),
            Ok(Err(e)) | Err(e) => {
                QA.set(Some(qa));
                Err(e)
            }
        }
    }

    /// Gives the buffers back for the next call on this thread.
    pub(crate) fn put(self) {
        QA.set(Some(self));
    }
}

/// The rows of A quantized at a level: the loops are plain Rust that LLVM
/// vectorizes with the level's instructions.
struct QuantRows<'a> {
    p: &'a Problem,
    off: i32,
    qa: &'a mut QuantA,
}

impl pulp::WithSimd for QuantRows<'_> {
    type Output = Result<(), crate::KernelError>;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> Self::Output {
        let (p, off, qa) = (self.p, self.off, self.qa);
        let (m, k, nb) = (p.m, p.k, qa.nb);
        // A strided row is copied into `row` first; a contiguous one is read
        // in place (decode: no allocation in steady state).
        let mut row = Vec::new();
        for i in 0..m {
            let x: &[f32] = if p.csa == 1 {
                // SAFETY: row i of A holds k contiguous floats (validated
                // shape, unit column stride).
                unsafe { core::slice::from_raw_parts(p.a.add(i * p.rsa), k) }
            } else {
                row.clear();
                // SAFETY: (i, q) is inside A (validated shape).
                row.extend((0..k).map(|q| unsafe { *p.a.add(i * p.rsa + q * p.csa) }));
                &row
            };
            let q = &mut qa.q[i * k..(i + 1) * k];
            let d = &mut qa.d[i * nb..(i + 1) * nb];
            if let Err(e) = crate::quant::quantize_activations_in(x, q, d) {
                return Err(crate::KernelError::invalid(
                    "a",
                    format!("the int8 mode quantizes A: {e}"),
                ));
            }
            let lanes = &mut qa.lane[i * (k / 4)..(i + 1) * (k / 4)];
            for (l, g) in lanes.iter_mut().zip(q.chunks_exact(4)) {
                *l = -off * (g[0] as i32 + g[1] as i32 + g[2] as i32 + g[3] as i32);
            }
            let blk = &mut qa.blk[i * nb..(i + 1) * nb];
            let sa = &mut qa.sa[i * nb..(i + 1) * nb];
            for (((qb, lb), (bl, s)), &db) in q
                .chunks_exact(QK)
                .zip(lanes.chunks_exact(8))
                .zip(blk.iter_mut().zip(sa.iter_mut()))
                .zip(d.iter())
            {
                *bl = lb.iter().sum();
                *s = db * qb.iter().map(|&v| v as i32).sum::<i32>() as f32;
            }
        }
        Ok(())
    }
}

/// Columns `[j0, j1)` of the product on this thread.
///
/// # Safety
/// `qa` is `p`'s A quantized for `w`'s format; `w` is `p`'s weights.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn run_cols<S: Simd, A: VecFn>(
    s: S,
    p: &Problem,
    w: &LowB,
    qa: &QuantA,
    act: A,
    kernel: Kernel,
    j0: usize,
    j1: usize,
) {
    let mut guard = crate::threads::scratch(&WORK, Work::default);
    let work = &mut *guard;
    let f = Blk::of(w.fmt).expect("int8 mode: a block format");
    let rb = w.row_bytes();
    let bs = w.fmt.bytes(QK);
    let (k, nb) = (p.k, qa.nb);
    if work.acc.len() < 4 * CHUNK {
        work.acc.resize(4 * CHUNK, 0.0);
    }
    // The packing gathers address 128 weight rows with i32 offsets.
    #[cfg(target_arch = "x86_64")]
    let vnni = kernel == Kernel::Vnni;
    #[cfg(not(target_arch = "x86_64"))]
    let vnni = false;
    let packed = vnni && p.m > DOT_ROWS && CHUNK * rb < i32::MAX as usize;
    if packed {
        work.pack.resize(CHUNK * k, 0);
        work.scales.resize(2 * CHUNK * nb, 0.0);
        if work.acc.len() < qa.mp * CHUNK {
            work.acc.resize(qa.mp * CHUNK, 0.0);
        }
    }
    let mut jc = j0;
    while jc < j1 {
        let nc = CHUNK.min(j1 - jc);
        // SAFETY (pointer offset): weight rows jc..jc+nc exist (callers
        // split n).
        let wj = unsafe { w.ptr.add(jc * rb) };
        let acc = work.acc.as_mut_ptr();
        if packed {
            // SAFETY: the buffers have the sizes the kernels index (sized
            // above); weight rows jc..jc+nc exist; `vnni` was checked.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                crate::arch::vnni::pack_chunk(
                    f,
                    wj,
                    rb,
                    bs,
                    nc,
                    nb,
                    work.pack.as_mut_ptr(),
                    work.scales.as_mut_ptr(),
                );
                crate::arch::vnni::gemm_chunk(
                    f,
                    work.pack.as_ptr(),
                    work.scales.as_ptr(),
                    nc,
                    qa,
                    acc,
                    CHUNK,
                );
            }
            for i in 0..p.m {
                // SAFETY: row i of the accumulators holds nc values; row i
                // and columns jc..jc+nc of C exist.
                unsafe {
                    let row = core::slice::from_raw_parts_mut(acc.add(i * CHUNK), nc);
                    finish_row(s, p, act, i, jc, row);
                }
            }
            jc += nc;
            continue;
        }
        let mut i0 = 0;
        while i0 < p.m {
            let mr = 4.min(p.m - i0);
            // SAFETY: rows i0..i0+4 of the padded QuantA exist; `acc` holds
            // 4·CHUNK floats; the kernel's features were
            // checked by Kernel::for_isa.
            unsafe {
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Vnni => {
                        crate::arch::vnni::dot(f, wj, rb, bs, nc, qa, i0, mr, acc, CHUNK)
                    }
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 => {
                        crate::arch::int8_avx2::dot(f, wj, rb, bs, nc, qa, i0, mr, acc, CHUNK)
                    }
                    #[cfg(target_arch = "aarch64")]
                    Kernel::Sdot => {
                        crate::arch::int8_neon::dot(f, wj, rb, bs, nc, qa, i0, mr, acc, CHUNK)
                    }
                    Kernel::Portable => portable_dot(f, wj, rb, bs, nc, qa, i0, mr, acc, CHUNK),
                }
                for r in 0..mr {
                    let row = core::slice::from_raw_parts_mut(acc.add(r * CHUNK), nc);
                    finish_row(s, p, act, i0 + r, jc, row);
                }
            }
            i0 += mr;
        }
        jc += nc;
    }
}

/// The unsigned weight `t` of the block at `blk` (the nibble, or `q + 128`).
///
/// # Safety
/// `blk` points at a whole block of format `f`.
#[inline(always)]
unsafe fn weight_u(f: Blk, blk: *const u8, t: usize) -> i32 {
    // SAFETY: the quants follow the scale(s); t < 32.
    unsafe {
        if f.nibbles() {
            let byte = *blk.add(f.quants_at() + t % 16);
            (if t < 16 { byte & 15 } else { byte >> 4 }) as i32
        } else {
            (*blk.add(2 + t) ^ 0x80) as i32
        }
    }
}

/// The f16 at byte `at` of a block (its scale at 0, Q4_1's `m` at 2).
///
/// # Safety
/// `blk` valid for `at + 2` reads.
#[inline(always)]
pub(crate) unsafe fn half(blk: *const u8, at: usize) -> f32 {
    // SAFETY: the caller's contract.
    let bits = unsafe { blk.add(at).cast::<u16>().read_unaligned() };
    crate::quant::f16::from_bits(bits).to_f32()
}

/// `out[r·ld + c] = Σ_b (d_a·d_w)·Σ_t q_a·(u − off) (+ m_w·d_a·Σ_t q_a for
/// Q4_1)` for rows `i0..i0+mr` of `qa` and weight rows `c < nc` at `w`
/// (`rb` bytes apart, `bs`-byte blocks), in portable code.
///
/// # Safety
/// As [`run_cols`]; `out` holds `mr` rows of `ld ≥ nc` floats.
#[allow(clippy::too_many_arguments)]
unsafe fn portable_dot(
    f: Blk,
    w: *const u8,
    rb: usize,
    bs: usize,
    nc: usize,
    qa: &QuantA,
    i0: usize,
    mr: usize,
    out: *mut f32,
    ld: usize,
) {
    let (k, nb) = (qa.k, qa.nb);
    for c in 0..nc {
        let mut acc = [0.0f32; 4];
        for b in 0..nb {
            // SAFETY: block b of weight row c exists.
            let blk = unsafe { w.add(c * rb + b * bs) };
            // SAFETY: as above.
            let dw = unsafe { half(blk, 0) };
            // SAFETY: as above (Q4_1 blocks hold m at byte 2).
            let mw = if f == Blk::Q4m {
                unsafe { half(blk, 2) }
            } else {
                0.0
            };
            let mut u = [0i32; QK];
            for (t, v) in u.iter_mut().enumerate() {
                // SAFETY: as above.
                *v = unsafe { weight_u(f, blk, t) };
            }
            for (r, a) in acc.iter_mut().enumerate().take(mr) {
                let i = i0 + r;
                let q = &qa.q[i * k + b * QK..i * k + (b + 1) * QK];
                let isum =
                    q.iter().zip(&u).map(|(&x, &y)| x as i32 * y).sum::<i32>() + qa.blk[i * nb + b];
                *a += (qa.d[i * nb + b] * dw) * isum as f32;
                if f == Blk::Q4m {
                    *a += mw * qa.sa[i * nb + b];
                }
            }
        }
        for (r, a) in acc.iter().enumerate().take(mr) {
            // SAFETY: the caller's contract.
            unsafe { *out.add(r * ld + c) = *a };
        }
    }
}
