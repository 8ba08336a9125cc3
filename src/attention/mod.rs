//! Flash-style multi-head attention: `softmax(scale·Q·Kᵀ + mask)·V` without
//! ever materialising the `q_len × kv_len` score matrix.
//!
//! - [`view`]: `[batch, seq, heads, head_dim]` views ([`HeadsRef`],
//!   [`HeadsMut`]) in BSHD, BHSD or any strided layout (e.g. straight out of
//!   a fused QKV projection);
//! - `flash`: prefill, KV-outer flash schedule on the matmul microkernel;
//! - `decode`: few queries against a long KV cache, split-KV across threads;
//! - `softmax`: the online softmax's row operations both share.
//!
//! Causal masking is bottom-right aligned (FlashAttention-2, llama.cpp):
//! query i sees keys `j ≤ i + (kv_len − q_len)`, so a decode step is the
//! same call with `q_len = 1`. Grouped-query attention maps query head `h`
//! to KV head `h / (heads / kv_heads)` without copying K or V.

mod decode;
mod flash;
pub(crate) mod softmax;
pub mod view;

pub use view::{HeadsElem, HeadsMut, HeadsRef};

use crate::error::KernelError;
use crate::isa::{Config, Level, Parallelism, Token};
use crate::threads;
use pulp::{Simd, WithSimd};
use std::cell::Cell;
use view::Layout;

/// Attention options (public fields, so callers can write a literal).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttentionOptions {
    /// Mask keys after the query (bottom-right aligned, see the module docs).
    pub causal: bool,
    /// Score scale; `None` = `1/√head_dim`.
    pub scale: Option<f32>,
}

/// A validated call in raw-pointer form.
#[derive(Clone, Copy)]
pub(crate) struct Attn {
    pub q: *const f32,
    pub ql: Layout,
    /// f32, or IEEE halves when `kv16` (widened where read: by decode a
    /// sub-block at a time, by prefill a key block at a time).
    pub k: *const f32,
    pub kl: Layout,
    pub v: *const f32,
    pub vl: Layout,
    /// `k` and `v` point at [`half::f16`] elements.
    pub kv16: bool,
    pub o: *mut f32,
    pub ol: Layout,
    /// Null, or `batch·heads·lq` floats.
    pub lse: *mut f32,
    /// `scale·log2 e`: scores, running maxima and softmax numerators are
    /// kept in log2 units, so each numerator is one `2^x`
    /// ([`crate::math::exp2_nonpos`]) instead of an `e^x`.
    pub scale_log2: f32,
    pub causal: bool,
    /// Query heads per KV head.
    pub group: usize,
    pub batch: usize,
    pub heads: usize,
    pub lq: usize,
    pub lk: usize,
    pub dim: usize,
}

impl Attn {
    /// Keys query `i` may see: `[0, kv_end(i))` (causal: the query's own
    /// position, aligned to the end of the keys, and those before it).
    #[inline(always)]
    pub(crate) fn kv_end(&self, i: usize) -> usize {
        if self.causal {
            (i + self.lk - self.lq + 1).min(self.lk)
        } else {
            self.lk
        }
    }
}

/// Queries per (batch, head) at or below which the decode path runs.
const DECODE_MAX_Q: usize = 4;
/// Keys per split-KV chunk at least (below, one thread reads K/V alone).
/// SmolLM2's decode step at 540 keys (9 heads, 3 KV heads, D = 64, 30
/// layers' caches in turn): 3.4 ms on one thread, 1.8 ms split in two
/// (Intel Xeon, 2 vCPUs); with 1024 here it ran on one thread.
const MIN_KEYS_PER_CHUNK: usize = 256;

/// `out = softmax(scale·q·kᵀ + mask)·v` per batch and head.
///
/// Shapes: `q` and `out` `[B, q_len, H, D]`; `k` and `v` `[B, kv_len, H_kv,
/// D]` with `H_kv` dividing `H` (grouped-query / multi-query attention).
/// `k` and `v` are f32, or both [`half::f16`] (an f16 KV cache): the result
/// is then exactly the f32 one on their widened values — the decode path
/// widens each block of keys as it reads it (half the bytes from memory),
/// the prefill path each block of 256 keys as it packs it (no f32 copy of
/// the cache).
/// A row whose scores are all −∞ (reachable only through −∞ inputs) is all
/// zeros, as in PyTorch.
///
/// Accuracy: scores are f32 FMA chains over D, scaled by `scale·log2 e` (one
/// more rounding than `scale` alone); softmax numerators are `2^(s − max)`
/// (≤ 2 ULP); each output is a convex combination of V rows, within
/// `~(D + kv_len)·ε·max|v|` of the exact value (stated per test in
/// `tests/attention.rs`).
///
/// # Errors
/// - [`KernelError::ShapeMismatch`] when batch, head_dim or heads disagree
///   between `q`, `k`, `v` and `out` (naming the argument), or `H_kv` does not
///   divide `H`;
/// - [`KernelError::Empty`] (`k`) when `kv_len = 0` with queries to answer;
/// - [`KernelError::InvalidArgument`] (`opts`) when causal with
///   `q_len > kv_len` (rows with nothing to see), or `scale` is not finite
///   or above `f32::MAX / log2 e` in magnitude;
/// - [`KernelError::IsaUnavailable`].
///
/// Batch, heads or `q_len` = 0 is a no-op.
pub fn attention<T: HeadsElem>(
    out: HeadsMut<'_>,
    q: HeadsRef<'_>,
    k: HeadsRef<'_, T>,
    v: HeadsRef<'_, T>,
    opts: &AttentionOptions,
    cfg: &Config,
) -> Result<(), KernelError> {
    let isa_ok = cfg.validate();
    let p = prepare(out, q, k, v, opts, None, isa_ok)?;
    run_isa(cfg.isa, p, cfg.parallelism)
}

/// [`attention`] that also writes each query row's log-sum-exp of its scaled,
/// masked scores to `lse` (`[batch, heads, q_len]`, row-major), so partial
/// results over different key ranges can be merged. A row with every score
/// −∞ gets −∞.
///
/// # Errors
/// As [`attention`], plus [`KernelError::ShapeMismatch`] (`lse`) if its
/// length is not `batch·heads·q_len`.
pub fn attention_with_lse<T: HeadsElem>(
    out: HeadsMut<'_>,
    q: HeadsRef<'_>,
    k: HeadsRef<'_, T>,
    v: HeadsRef<'_, T>,
    opts: &AttentionOptions,
    lse: &mut [f32],
    cfg: &Config,
) -> Result<(), KernelError> {
    let isa_ok = cfg.validate();
    let p = prepare(out, q, k, v, opts, Some(lse), isa_ok)?;
    run_isa(cfg.isa, p, cfg.parallelism)
}

/// Attention on an explicit [`pulp::Simd`] token: for callers who dispatch
/// themselves, and for tests of widths this CPU has no `Isa` for
/// (`pulp::Scalar128b` runs the 4-lane NEON schedule in portable code).
pub mod generic {
    use super::*;

    /// [`super::attention_with_lse`] (or [`super::attention`] when `lse` is
    /// `None`) on `simd`, with up to `parallelism` threads (the prefill
    /// query split and the split-KV decode, as on the run-time levels). Same
    /// checks and errors, except the ISA one: holding a token proves the
    /// CPU runs it.
    #[allow(clippy::too_many_arguments)]
    pub fn attention<S: Simd, T: HeadsElem>(
        simd: S,
        parallelism: Parallelism,
        out: HeadsMut<'_>,
        q: HeadsRef<'_>,
        k: HeadsRef<'_, T>,
        v: HeadsRef<'_, T>,
        opts: &AttentionOptions,
        lse: Option<&mut [f32]>,
    ) -> Result<(), KernelError> {
        match prepare(out, q, k, v, opts, lse, Ok(()))? {
            Some(p) => run_at(Token(simd), &p, parallelism.threads()),
            None => Ok(()),
        }
    }
}

/// Runs a validated call (`None`: nothing to compute) at a run-time level.
/// Not generic, so the kernels it reaches are compiled once, in this crate,
/// rather than again in every crate that calls [`attention`] (each test
/// binary, each example) for each element type.
fn run_isa(isa: crate::Isa, p: Option<Attn>, par: Parallelism) -> Result<(), KernelError> {
    match p {
        Some(p) => run_at(isa, &p, par.threads()),
        None => Ok(()),
    }
}

/// Decode or prefill at `level`.
fn run_at<L: Level>(level: L, p: &Attn, nt: usize) -> Result<(), KernelError> {
    if p.lq <= DECODE_MAX_Q {
        run_decode(level, p, nt)
    } else {
        run_prefill(level, p, nt)
    }
}

/// [`prepare_raw`] on typed views: the element type's only part.
#[inline]
fn prepare<T: HeadsElem>(
    out: HeadsMut<'_>,
    q: HeadsRef<'_>,
    k: HeadsRef<'_, T>,
    v: HeadsRef<'_, T>,
    opts: &AttentionOptions,
    lse: Option<&mut [f32]>,
    isa_ok: Result<(), KernelError>,
) -> Result<Option<Attn>, KernelError> {
    let kv = (
        k.layout,
        k.ptr().cast::<f32>(),
        v.layout,
        v.ptr().cast::<f32>(),
    );
    prepare_raw(out, q, kv, T::F16, opts, lse, isa_ok)
}

/// Validates a call; `None` when there is nothing to compute. `kv` is K's
/// layout and data, then V's (f32, or IEEE halves when `kv16`). `isa_ok` is
/// the entry point's ISA check, reported after the shape errors.
fn prepare_raw(
    mut out: HeadsMut<'_>,
    q: HeadsRef<'_>,
    kv: (Layout, *const f32, Layout, *const f32),
    kv16: bool,
    opts: &AttentionOptions,
    lse: Option<&mut [f32]>,
    isa_ok: Result<(), KernelError>,
) -> Result<Option<Attn>, KernelError> {
    let (kl, kp, vl, vp) = kv;
    let (ql, ol) = (q.layout, out.layout);
    let shape = |arg, msg: String| Err(KernelError::shape(arg, msg));
    for (arg, l) in [("k", kl), ("v", vl), ("out", ol)] {
        if l.batch != ql.batch {
            return shape(
                arg,
                format!("{arg} has batch {} but q has {}", l.batch, ql.batch),
            );
        }
        if l.dim != ql.dim {
            return shape(
                arg,
                format!("{arg} has head_dim {} but q has {}", l.dim, ql.dim),
            );
        }
    }
    if ol.seq != ql.seq || ol.heads != ql.heads {
        return shape(
            "out",
            format!(
                "out has seq {} and {} heads but q has seq {} and {} heads",
                ol.seq, ol.heads, ql.seq, ql.heads
            ),
        );
    }
    if vl.seq != kl.seq || vl.heads != kl.heads {
        return shape(
            "v",
            format!(
                "v has seq {} and {} heads but k has seq {} and {} heads",
                vl.seq, vl.heads, kl.seq, kl.heads
            ),
        );
    }
    let (batch, lq, heads, dim) = (ql.batch, ql.seq, ql.heads, ql.dim);
    let (lk, kv_heads) = (kl.seq, kl.heads);
    if kv_heads == 0 || heads % kv_heads != 0 {
        return shape(
            "k",
            format!("k has {kv_heads} heads, which does not divide q's {heads}"),
        );
    }
    let lse_len = batch * heads * lq;
    if let Some(l) = &lse
        && l.len() != lse_len
    {
        return shape(
            "lse",
            format!(
                "lse has {} elements but batch·heads·q_len is {lse_len}",
                l.len()
            ),
        );
    }
    let scale = opts.scale.unwrap_or(1.0 / (dim.max(1) as f32).sqrt());
    let scale_log2 = scale * std::f32::consts::LOG2_E;
    if !scale_log2.is_finite() {
        return Err(KernelError::invalid(
            "opts",
            format!("scale {scale} is not finite (or |scale|·log2 e overflows f32)"),
        ));
    }
    isa_ok?;
    if batch == 0 || heads == 0 || lq == 0 {
        return Ok(None);
    }
    if lk == 0 {
        return Err(KernelError::empty(
            "k",
            "kv_len is 0: the queries have no keys to attend to",
        ));
    }
    if opts.causal && lq > lk {
        return Err(KernelError::invalid(
            "opts",
            format!(
                "causal attention with q_len {lq} > kv_len {lk}: the first rows would see no key"
            ),
        ));
    }
    if dim == 0 {
        return Ok(None);
    }
    // f16 keys and values are widened where they are read: a sub-block at
    // a time by decode, a key block at a time (into the packed Kᵀ and V)
    // by prefill.
    Ok(Some(Attn {
        q: q.ptr(),
        ql,
        k: kp,
        kl,
        v: vp,
        vl,
        kv16,
        o: out.ptr(),
        ol,
        lse: lse.map_or(core::ptr::null_mut(), |l| l.as_mut_ptr()),
        scale_log2,
        causal: opts.causal,
        group: heads / kv_heads,
        batch,
        heads,
        lq,
        lk,
        dim,
    }))
}

thread_local! {
    /// Per-thread prefill scratch; taken out and put back (not borrowed in a
    /// `with` closure, whose body would lose the SIMD target features).
    static SCRATCH: Cell<Option<flash::Scratch>> = const { Cell::new(None) };
    static DECODE_SCRATCH: Cell<Option<decode::Scratch>> = const { Cell::new(None) };
}

/// Prefill: work items are (batch, head, query range); a head's queries are
/// split only when there are fewer heads than about two per thread, at
/// boundaries that balance the causal triangle (later queries see more keys).
fn run_prefill<L: Level>(level: L, p: &Attn, nt: usize) -> Result<(), KernelError> {
    let heads_total = p.batch * p.heads;
    let flops = 4.0 * p.lq as f64 * p.lk as f64 * p.dim as f64 * heads_total as f64;
    let nt = if flops < 4e6 { 1 } else { nt.max(1) };
    let splits = if nt > 1 && heads_total < 2 * nt {
        (2 * nt).div_ceil(heads_total)
    } else {
        1
    };
    let bounds = query_splits(p, splits);
    let items: Vec<(usize, usize, usize, usize)> = (0..heads_total)
        .flat_map(|bh| {
            bounds
                .windows(2)
                .filter(|w| w[1] > w[0])
                .map(move |w| (bh / p.heads, bh % p.heads, w[0], w[1]))
        })
        .collect();
    // SAFETY: `p` points into views borrowed for this call; items cover
    // disjoint (batch, head, query-range) output rows and lse entries.
    let shared = unsafe { threads::Shared::new(*p) };
    let run = |j: usize| {
        let (b, h, q0, q1) = items[j];
        let p = *shared.get();
        let mut sc = threads::scratch(&SCRATCH, Default::default);
        let r = level.run(PrefillOp {
            p,
            b,
            h,
            q0,
            q1,
            sc: &mut sc,
        });
        debug_assert!(r.is_ok(), "validated");
    };
    threads::for_each_index(nt, items.len(), run);
    Ok(())
}

/// Query boundaries `0 = b_0 < … < b_n = lq` with about equal work per part.
fn query_splits(p: &Attn, n: usize) -> Vec<usize> {
    if n <= 1 {
        return vec![0, p.lq];
    }
    let work = |i: usize| p.kv_end(i) as f64;
    let total: f64 = (0..p.lq).map(work).sum();
    let mut out = vec![0];
    let mut acc = 0.0;
    for i in 0..p.lq {
        acc += work(i);
        if acc >= total * out.len() as f64 / n as f64 && out.len() < n {
            // Round to whole tiles so no tile straddles two items.
            let b = (i + 1)
                .next_multiple_of(crate::matmul::tiles::ATTENTION_SPLIT_ROWS)
                .min(p.lq);
            if b > *out.last().unwrap() {
                out.push(b);
            }
        }
    }
    if *out.last().unwrap() != p.lq {
        out.push(p.lq);
    }
    out
}

struct PrefillOp<'a> {
    p: Attn,
    b: usize,
    h: usize,
    q0: usize,
    q1: usize,
    sc: &'a mut flash::Scratch,
}

impl WithSimd for PrefillOp<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        flash::run(s, &self.p, self.b, self.h, self.q0, self.q1, self.sc);
    }
}

/// Decode: jobs are (batch, query position, key chunk) with every head in
/// the job; the keys are split into about as many chunks as threads, and the
/// partial results merged per row.
fn run_decode<L: Level>(level: L, p: &Attn, nt: usize) -> Result<(), KernelError> {
    let positions = p.batch * p.lq;
    let per_row = if nt > 1 {
        nt.div_ceil(positions)
            .min(p.lk.div_ceil(MIN_KEYS_PER_CHUNK))
            .max(1)
    } else {
        1
    };
    let stride = p.dim + 2;
    // parts[((b·H + h)·lq + i)·per_row + c] holds (m, l, o) of chunk c.
    let mut parts = vec![0.0f32; p.batch * p.heads * p.lq * per_row * stride];
    let jobs = positions * per_row;
    let nt = if p.lk * p.dim * p.heads * positions < (1 << 16) {
        1
    } else {
        nt
    };
    // SAFETY: `p`'s views are borrowed for this call and `parts` lives past
    // the section; each job writes its own (b, i, chunk) slice of `parts`
    // and reads only inputs.
    let shared = unsafe { threads::Shared::new((*p, parts.as_mut_ptr())) };
    threads::for_each_index(nt, jobs, move |j| {
        let (pp, partp) = *shared.get();
        let (pos, c) = (j / per_row, j % per_row);
        let (b, i) = (pos / pp.lq, pos % pp.lq);
        let end = pp.kv_end(i);
        let step = end.div_ceil(per_row);
        let (c0, c1) = (c * step, ((c + 1) * step).min(end));
        // Head h of this job writes part ((b·H + h)·lq + i)·per_row + c.
        let part_stride = pp.lq * per_row * stride;
        // SAFETY: that index is below batch·heads·lq·per_row for every h,
        // and jobs differ in (b, i, c), so their parts are disjoint.
        let base = unsafe { partp.add(((b * pp.heads * pp.lq + i) * per_row + c) * stride) };
        if c0 >= c1 {
            // An empty chunk contributes nothing.
            for h in 0..pp.heads {
                // SAFETY: as above.
                unsafe {
                    *base.add(h * part_stride) = f32::NEG_INFINITY;
                    *base.add(h * part_stride + 1) = 0.0;
                }
            }
            return;
        }
        let mut sc = threads::scratch(&DECODE_SCRATCH, Default::default);
        let r = level.run(DecodeOp {
            p: pp,
            b,
            i,
            c0,
            c1,
            sc: &mut sc,
            parts: base,
            part_stride,
        });
        debug_assert!(r.is_ok(), "validated");
    });
    for row in 0..p.batch * p.heads * p.lq {
        let (b, h, i) = (row / (p.heads * p.lq), (row / p.lq) % p.heads, row % p.lq);
        let chunk = &parts[row * per_row * stride..(row + 1) * per_row * stride];
        // SAFETY: output row (b, i, h) has dim elements; lse has rows entries
        // in (b, h, i) order.
        unsafe {
            let lse = decode::merge(chunk, p.dim, p.o.add(p.ol.offset(b, i, h)));
            if !p.lse.is_null() {
                *p.lse.add(row) = lse;
            }
        }
    }
    Ok(())
}

struct DecodeOp<'a> {
    p: Attn,
    b: usize,
    i: usize,
    c0: usize,
    c1: usize,
    sc: &'a mut decode::Scratch,
    parts: *mut f32,
    part_stride: usize,
}

impl WithSimd for DecodeOp<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        // An f16 cache on AVX2: widened with F16C (every AVX2 CPU has it;
        // pulp's V3 does not name it), in one V3-only instantiation.
        #[cfg(target_arch = "x86_64")]
        if self.p.kv16 && crate::arch::x86::is_v3::<S>() && crate::arch::x86::has_f16c() {
            use pulp::x86::V3;
            struct Op<'a>(V3, DecodeOp<'a>);
            impl crate::arch::x86::F16cOp for Op<'_> {
                type Output = ();
                #[inline(always)]
                fn run(self) {
                    let (s, o) = (self.0, self.1);
                    // SAFETY: as below.
                    unsafe {
                        decode::chunk::<V3, true>(
                            s,
                            &o.p,
                            o.b,
                            o.i,
                            o.c0,
                            o.c1,
                            o.sc,
                            o.parts,
                            o.part_stride,
                        )
                    };
                }
            }
            // SAFETY: `S` is V3, whose token exists only where the CPU has
            // its features; `has_f16c` proves F16C.
            return unsafe { crate::arch::x86::in_f16c(Op(V3::new_unchecked(), self)) };
        }
        // SAFETY: run_decode hands each job an in-range position and key
        // chunk and its own parts for every head.
        unsafe {
            decode::chunk::<S, false>(
                s,
                &self.p,
                self.b,
                self.i,
                self.c0,
                self.c1,
                self.sc,
                self.parts,
                self.part_stride,
            )
        };
    }
}
