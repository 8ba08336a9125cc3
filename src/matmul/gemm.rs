//! The five-loop blocked driver (BLIS/GotoBLAS): pack B blocks for L2, pack
//! A blocks, run the microkernel over each tile. Generic over the SIMD level;
//! the tile, block sizes and packing come from [`super::tiles::plan`].

use super::kernel::{TileEpi, microkernel_narrowing};
use super::tiles::{self, Blocking, Plan};
use super::{Act, Problem};
use crate::act::{Identity, VecFn};
use crate::threads;
use aligned_vec::{AVec, ConstAlign};
use pulp::Simd;
use std::cell::Cell;

type Buf = AVec<f32, ConstAlign<64>>;

thread_local! {
    /// Packing buffers (A, B), reused across calls on the same thread. Taken
    /// out and put back rather than borrowed in a `with` closure: code inside
    /// such a closure is compiled without the SIMD target features.
    static PACK: Cell<Option<(Buf, Buf)>> = const { Cell::new(None) };
}

fn ensure(buf: &mut Buf, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
}

/// Runs the whole problem on this thread, in a function of its own per
/// level (whatever calls it: the serial path and every thread's share run
/// the same compiled code).
pub(crate) fn run<S: Simd>(s: S, p: &Problem) {
    crate::isa::outlined(s, Run(p));
}

struct Run<'a>(&'a Problem);

impl pulp::WithSimd for Run<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        run_here(s, self.0)
    }
}

#[inline(always)]
fn run_here<S: Simd>(s: S, p: &Problem) {
    let plan = tiles::plan_at::<S>(p);
    match p.act {
        Act::NONE => by_tile(s, p, (Identity, Identity), &plan),
        act => by_tile(s, p, (act, Act::NONE), &plan),
    }
}

/// The plan's tile as const generics (the lane count is a constant, so each
/// level compiles only its own tiles).
#[inline(always)]
fn by_tile<S: Simd, F: VecFn>(s: S, p: &Problem, acts: (F, F), plan: &Plan) {
    use tiles::{AVX2_6X16 as T2, AVX512_6X64 as T6, AVX512_14X32 as T14};
    use tiles::{NEON_8X12 as TN, SCALAR_2X4 as TS};
    match S::F32_LANES {
        16 if plan.tile == T14 => run_tiles::<S, F, { T14.mr }, { T14.nv }>(s, p, acts, plan),
        16 => run_tiles::<S, F, { T6.mr }, { T6.nv }>(s, p, acts, plan),
        8 => run_tiles::<S, F, { T2.mr }, { T2.nv }>(s, p, acts, plan),
        4 => run_tiles::<S, F, { TN.mr }, { TN.nv }>(s, p, acts, plan),
        _ => run_tiles::<S, F, { TS.mr }, { TS.nv }>(s, p, acts, plan),
    }
}

#[inline(always)]
fn run_tiles<S: Simd, F: VecFn, const MR: usize, const NV: usize>(
    s: S,
    p: &Problem,
    acts: (F, F),
    plan: &Plan,
) {
    let (mut bl, pack_a, pack_b) = (plan.blocking, plan.pack_a, plan.pack_b);
    if !pack_a {
        // Read in place, A is held in no cache-sized buffer: MC only bounds
        // the rows one pass over a packed B block reads (an L3 block, sized
        // for KC-deep rows). Shallower products take proportionally more
        // rows, so B is packed once per block rather than once per MC rows
        // (1024×1024·64 packed all of B twice for a 4-row second block:
        // 2–3% of its time, before plain products moved to `PlainTiles`,
        // which has no row blocks; products with an epilogue still do).
        let deep = bl.kc / p.k.clamp(1, bl.kc);
        bl.mc = (bl.mc.saturating_mul(deep) / MR * MR).max(MR);
    }
    bl.mc = Blocking::row_block(bl.mc, MR, p.m);
    debug_assert!(bl.mr == MR && bl.nr == NV * S::F32_LANES);
    // A plain f32 product (no epilogue, unit-stride C) with A read in place
    // and one k-block: the tile loops alone, B packed per column block if
    // at all.
    let lean =
        !pack_a && F::IDENTITY && p.is_plain() && p.csc == 1 && p.k <= bl.kc && p.w.is_none();
    if lean {
        // One k-block: wider B blocks for shallower products.
        bl.nc = bl.col_block(p.k);
    }
    if lean && !pack_b {
        let no_buf = core::ptr::null_mut();
        return crate::isa::outlined(s, PlainTiles::<MR, NV, false>(p, &bl, no_buf));
    }
    if !pack_a && !pack_b {
        // Nothing to pack (small products): no scratch to fetch.
        let (mut a, mut b) = (Buf::new(64), Buf::new(64));
        return crate::isa::outlined(
            s,
            Loops::<F, MR, NV, false, false>(p, acts, &bl, &mut a, &mut b),
        );
    }
    let init = || (Buf::new(64), Buf::new(64));
    let mut guard = threads::scratch(&PACK, init);
    let (abuf, bbuf) = &mut *guard;
    if pack_a {
        ensure(abuf, bl.mc.min(p.m.next_multiple_of(MR)) * bl.kc.min(p.k));
    }
    if pack_b {
        ensure(
            bbuf,
            bl.nc.min(p.n.next_multiple_of(bl.nr)) * bl.kc.min(p.k),
        );
    }
    if lean {
        // (pack_b: the `!pack_b` case returned above.)
        return crate::isa::outlined(s, PlainTiles::<MR, NV, true>(p, &bl, bbuf.as_mut_ptr()));
    }
    match (pack_a, pack_b) {
        (true, true) => {
            crate::isa::outlined(s, Loops::<F, MR, NV, true, true>(p, acts, &bl, abuf, bbuf))
        }
        (true, false) => {
            crate::isa::outlined(s, Loops::<F, MR, NV, true, false>(p, acts, &bl, abuf, bbuf))
        }
        // (false, false) returned above.
        (false, _) => {
            crate::isa::outlined(s, Loops::<F, MR, NV, false, true>(p, acts, &bl, abuf, bbuf))
        }
    }
}

/// `C ← A·B` tile by tile, for a plain product (no epilogue, β = 0,
/// unit-stride C) with A read in place and one k-block (`k ≤ KC`): per
/// column block, B packed (`PACKED_B`; else read in place, one block), then
/// every row tile against its panels. What [`loops`] does for it without
/// the row blocks and the per-tile epilogue set-up, which were a fifth of
/// a 32³ product's time and ~5% of 1024×1024·64's.
struct PlainTiles<'a, const MR: usize, const NV: usize, const PACKED_B: bool>(
    &'a Problem,
    &'a Blocking,
    /// The B block buffer (`PACKED_B`): `ceil(nc/nr)·nr·k` floats.
    *mut f32,
);

impl<const MR: usize, const NV: usize, const PACKED_B: bool> pulp::WithSimd
    for PlainTiles<'_, MR, NV, PACKED_B>
{
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let PlainTiles(p, bl, bbuf) = self;
        let nr = NV * S::F32_LANES;
        let epi = TileEpi::PLAIN;
        let nc_step = if PACKED_B { bl.nc } else { p.n };
        for (jc, nc) in blocks(p.n, nc_step) {
            if PACKED_B {
                // SAFETY: the block [0, k) × [jc, jc+nc) lies inside B;
                // bbuf holds ceil(nc/nr)·nr·k floats (k ≤ KC).
                unsafe { pack_b::<S, NV>(p, 0, jc, p.k, nc, bbuf) };
            }
            for (i0, m_eff) in blocks(p.m, MR) {
                for (jr, n_eff) in blocks(nc, nr) {
                    // SAFETY: panel jr/nr of the packed block, or element
                    // (0, jc+jr) of B (csb = 1 when B is not packed); (i0, 0)
                    // of A and (i0, jc+jr) of C exist; the tile's live corner
                    // m_eff × n_eff is inside C, its k steps inside A and B.
                    unsafe {
                        let (b, b_rs) = if PACKED_B {
                            (bbuf.add(jr * p.k).cast_const(), nr)
                        } else {
                            (p.b.add(jc + jr), p.rsb)
                        };
                        microkernel_narrowing::<S, Identity, MR, NV, false, PACKED_B>(
                            s,
                            p.k,
                            p.a.add(i0 * p.rsa),
                            p.rsa,
                            p.csa,
                            b,
                            b_rs,
                            p.c.add(i0 * p.rsc + jc + jr),
                            p.rsc,
                            m_eff,
                            n_eff,
                            &epi,
                        )
                    };
                }
            }
        }
    }
}

/// One loop nest (a level, activation type, tile shape and packing choice)
/// as a function of its own: the variants compile as separate units instead
/// of one function holding all of them.
struct Loops<'a, F, const MR: usize, const NV: usize, const PACKED_A: bool, const PACKED_B: bool>(
    &'a Problem,
    (F, F),
    &'a Blocking,
    &'a mut Buf,
    &'a mut Buf,
);

impl<F: VecFn, const MR: usize, const NV: usize, const PACKED_A: bool, const PACKED_B: bool>
    pulp::WithSimd for Loops<'_, F, MR, NV, PACKED_A, PACKED_B>
{
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Loops(p, acts, bl, ab, bb) = self;
        loops::<S, F, MR, NV, PACKED_A, PACKED_B>(s, p, acts, bl, ab, bb)
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn loops<
    S: Simd,
    F: VecFn,
    const MR: usize,
    const NV: usize,
    const PACKED_A: bool,
    const PACKED_B: bool,
>(
    s: S,
    p: &Problem,
    // The activation of the last k-block, and "none" of the same type.
    (act, no_act): (F, F),
    bl: &Blocking,
    abuf: &mut Buf,
    bbuf: &mut Buf,
) {
    let nr = bl.nr;
    let unit_c = p.csc == 1;
    let unit_u = p.csu == 1;
    // Row-major tile buffers for a strided C and a strided U, left
    // uninitialised (zeroing their 3.5 KiB cost 2–3% of an 8³ product):
    // only the live corner is ever read, and the gathers or the kernel
    // write it first.
    let mut tile_buf = core::mem::MaybeUninit::<[f32; 14 * 32]>::uninit();
    let mut utile_buf = core::mem::MaybeUninit::<[f32; 14 * 32]>::uninit();
    let (tile, utile) = (
        tile_buf.as_mut_ptr().cast::<f32>(),
        utile_buf.as_mut_ptr().cast::<f32>(),
    );
    debug_assert!(MR * nr <= 14 * 32);
    // pc → ic → (pack A once) → jc → (pack B) → ir → jr: each element of A
    // and B is packed once per product (A again only when m > MC), the A
    // micro-panel stays in L1 over the jr loop, the B block in L2.
    for (pc, kc) in blocks(p.k, bl.kc) {
        let first = pc == 0;
        let last = pc + kc == p.k;
        for (ic, mc) in blocks(p.m, bl.mc) {
            if PACKED_A {
                // SAFETY: the block [ic, ic+mc) × [pc, pc+kc) lies inside A
                // (Problem invariant); abuf holds ceil(mc/MR)·MR·kc floats.
                unsafe { pack_a::<MR>(p, ic, pc, mc, kc, abuf.as_mut_ptr()) };
            }
            for (jc, nc) in blocks(p.n, bl.nc) {
                if PACKED_B {
                    // SAFETY: the block [pc, pc+kc) × [jc, jc+nc) lies inside
                    // B; bbuf holds ceil(nc/nr)·nr·kc floats.
                    unsafe {
                        match &p.w {
                            // kc and pc are multiples of 32 (every KC is).
                            // In a function of its own: one conversion
                            // per format, not one per loop nest.
                            Some(w) => crate::isa::outlined(
                                s,
                                PackLow {
                                    w,
                                    pc,
                                    jc,
                                    kc,
                                    nc,
                                    nr,
                                    dst: bbuf.as_mut_ptr(),
                                },
                            ),
                            None => pack_b::<S, NV>(p, pc, jc, kc, nc, bbuf.as_mut_ptr()),
                        }
                    }
                }
                for (ir, m_eff) in blocks(mc, MR) {
                    let (a, a_rs, a_cs) = if PACKED_A {
                        // SAFETY: panel ir/MR of the packed block.
                        (unsafe { abuf.as_ptr().add(ir * kc) }, 1, MR)
                    } else {
                        // SAFETY: element (ic+ir, pc) of A exists.
                        (
                            unsafe { p.a.add((ic + ir) * p.rsa + pc * p.csa) },
                            p.rsa,
                            p.csa,
                        )
                    };
                    for (jr, n_eff) in blocks(nc, nr) {
                        let (b, b_rs) = if PACKED_B {
                            // SAFETY: panel jr/nr of the packed block.
                            (unsafe { bbuf.as_ptr().add(jr * kc) }, nr)
                        } else {
                            // SAFETY: element (pc, jc+jr) of B exists (csb = 1).
                            (unsafe { p.b.add(pc * p.rsb + jc + jr) }, p.rsb)
                        };
                        let (i0, j0) = (ic + ir, jc + jr);
                        let c_scale = if first {
                            (p.beta != 0.0).then_some(p.beta)
                        } else {
                            Some(1.0)
                        };
                        let bias = if last && !p.bias.is_null() {
                            // SAFETY: bias has n elements at stride 1.
                            unsafe { p.bias.add(j0) }
                        } else {
                            core::ptr::null()
                        };
                        let (mul, mul_rs) = if !last || p.mul.is_null() {
                            (core::ptr::null(), 0)
                        } else if unit_u {
                            // SAFETY: element (i0, j0) of U exists (U is m×n).
                            (unsafe { p.mul.add(i0 * p.rsu + j0) }, p.rsu)
                        } else {
                            // Strided U: gathered into a row-major tile.
                            for i in 0..m_eff {
                                for j in 0..n_eff {
                                    // SAFETY: (i0 + i, j0 + j) is inside U.
                                    // SAFETY: and i·nr + j < MR·nr ≤ the buffer.
                                    unsafe {
                                        *utile.add(i * nr + j) =
                                            *p.mul.add((i0 + i) * p.rsu + (j0 + j) * p.csu)
                                    };
                                }
                            }
                            (utile.cast_const(), nr)
                        };
                        let epi = TileEpi {
                            alpha: p.alpha,
                            c_scale,
                            bias,
                            // The activation on the last k-block only.
                            act: if last { act } else { no_act },
                            mul,
                            mul_rs,
                        };
                        // SAFETY: (i0, j0) is inside C; the tile's live corner
                        // m_eff × n_eff is inside C.
                        let c = unsafe { p.c.add(i0 * p.rsc + j0 * p.csc) };
                        // Strided C goes through a row-major tile buffer.
                        let (ct, ct_rs) = if unit_c { (c, p.rsc) } else { (tile, nr) };
                        // SAFETY: gather/scatter touch only the live corner
                        // of C; the kernel writes `tile` at stride nr; the
                        // rest of `microkernel`'s contract is established by
                        // the bounds above.
                        unsafe {
                            if !unit_c && epi.c_scale.is_some() {
                                for i in 0..m_eff {
                                    for j in 0..n_eff {
                                        *tile.add(i * nr + j) = *c.add(i * p.rsc + j * p.csc);
                                    }
                                }
                            }
                            microkernel_narrowing::<S, F, MR, NV, PACKED_A, PACKED_B>(
                                s, kc, a, a_rs, a_cs, b, b_rs, ct, ct_rs, m_eff, n_eff, &epi,
                            );
                            if !unit_c {
                                for i in 0..m_eff {
                                    for j in 0..n_eff {
                                        *c.add(i * p.rsc + j * p.csc) = *tile.add(i * nr + j);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `(start, len)` of the blocks of `step` that cover `0..n`. Without the
/// division `step_by` makes to count its steps: five loops of it cost a
/// few divisions on every product, noticeable on the small ones.
#[inline(always)]
fn blocks(n: usize, step: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut i = 0;
    core::iter::from_fn(move || {
        (i < n).then(|| {
            let start = i;
            i += step;
            (start, step.min(n - start))
        })
    })
}

/// Packs B[pc..pc+kc, jc..jc+nc] into micro-panels of `NR = NV·lanes`
/// columns, each `kc × NR` row-major, zero-padded past the last column.
/// [`super::lowp::pack_b`] as an operation for [`crate::isa::outlined`].
struct PackLow<'a> {
    w: &'a super::LowB,
    pc: usize,
    jc: usize,
    kc: usize,
    nc: usize,
    nr: usize,
    dst: *mut f32,
}

impl pulp::WithSimd for PackLow<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        // As `LowpOp`: V3 runs with F16C added.
        #[cfg(target_arch = "x86_64")]
        if crate::arch::x86::is_v3::<S>() && crate::arch::x86::has_f16c() {
            use pulp::x86::V3;
            struct Op<'a>(V3, PackLow<'a>);
            impl crate::arch::x86::F16cOp for Op<'_> {
                type Output = ();
                #[inline(always)]
                fn run(self) {
                    let (s, o) = (self.0, self.1);
                    // SAFETY: as below.
                    unsafe {
                        super::lowp::pack_b::<V3, true>(s, o.w, o.pc, o.jc, o.kc, o.nc, o.nr, o.dst)
                    }
                }
            }
            // SAFETY: `S` is V3, whose token exists only where the CPU has
            // its features; `has_f16c` proves F16C.
            return unsafe { crate::arch::x86::in_f16c(Op(V3::new_unchecked(), self)) };
        }
        let PackLow {
            w,
            pc,
            jc,
            kc,
            nc,
            nr,
            dst,
        } = self;
        // SAFETY: built only by `loops`, which establishes `pack_b`'s
        // contract for this block and buffer.
        unsafe { super::lowp::pack_b::<S, false>(s, w, pc, jc, kc, nc, nr, dst) }
    }
}

/// Full rows of a row-major B move as `NV` vector loads and stores.
///
/// # Safety
/// The block is inside B; `dst` holds `ceil(nc/NR)·NR·kc` floats.
#[inline(always)]
unsafe fn pack_b<S: Simd, const NV: usize>(
    p: &Problem,
    pc: usize,
    jc: usize,
    kc: usize,
    nc: usize,
    dst: *mut f32,
) {
    let lanes = S::F32_LANES;
    let nr = NV * lanes;
    // SAFETY: reads (pc+q, jc+j) with q < kc, j < nc: inside B; writes
    // panel·kc·nr + q·nr + j < ceil(nc/nr)·nr·kc.
    unsafe {
        for (panel, jr) in (0..nc).step_by(nr).enumerate() {
            let nb = nr.min(nc - jr);
            let out = dst.add(panel * kc * nr);
            let src0 = p.b.add(pc * p.rsb + (jc + jr) * p.csb);
            if p.csb == 1 && nb == nr {
                for q in 0..kc {
                    let src = src0.add(q * p.rsb);
                    let row = out.add(q * nr);
                    for v in 0..NV {
                        let x = (src.add(v * lanes) as *const S::f32s).read_unaligned();
                        (row.add(v * lanes) as *mut S::f32s).write_unaligned(x);
                    }
                }
                continue;
            }
            for q in 0..kc {
                let row = out.add(q * nr);
                let src = src0.add(q * p.rsb);
                for j in 0..nb {
                    *row.add(j) = *src.add(j * p.csb);
                }
                for j in nb..nr {
                    *row.add(j) = 0.0;
                }
            }
        }
    }
}

/// Packs A[ic..ic+mc, pc..pc+kc] into micro-panels of `MR` rows, each
/// `kc × MR` (k-major), zero-padded past the last row.
///
/// # Safety
/// The block is inside A; `dst` holds `ceil(mc/MR)·MR·kc` floats.
#[inline(always)]
unsafe fn pack_a<const MR: usize>(
    p: &Problem,
    ic: usize,
    pc: usize,
    mc: usize,
    kc: usize,
    dst: *mut f32,
) {
    // SAFETY: reads (ic+i, pc+q) with i < mc, q < kc: inside A; writes stay
    // below ceil(mc/MR)·MR·kc.
    unsafe {
        for (panel, ir) in (0..mc).step_by(MR).enumerate() {
            let mb = MR.min(mc - ir);
            let out = dst.add(panel * kc * MR);
            let src = p.a.add((ic + ir) * p.rsa + pc * p.csa);
            if mb == MR {
                // A full panel: MR loads per step of q (rows are MR streams
                // whose current lines stay in L1), one contiguous MR-float
                // store. The loads are volatile only so that LLVM cannot
                // vectorise across q, which it does with scatters (slower
                // than this scalar transpose).
                let rows: [*const f32; MR] = core::array::from_fn(|i| src.add(i * p.rsa));
                for q in 0..kc {
                    let o = out.add(q * MR);
                    let col: [f32; MR] =
                        core::array::from_fn(|i| rows[i].add(q * p.csa).read_volatile());
                    (o as *mut [f32; MR]).write_unaligned(col);
                }
            } else {
                for q in 0..kc {
                    let o = out.add(q * MR);
                    for i in 0..MR {
                        *o.add(i) = if i < mb {
                            *src.add(i * p.rsa + q * p.csa)
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}
