//! Rotary position embeddings (RoPE), in place on strided head views.
//!
//! Each head vector's first `rotary_dim` elements are rotated in pairs by the
//! angle `pos·ω_i`, `ω_i = θ^(−2i/rotary_dim)` (then scaled, see
//! [`RopeScaling`]), `i < rotary_dim/2`; the rest of the vector is left as it
//! is (partial rotary). A pair `(a, b)` becomes `(a·cos − b·sin, b·cos +
//! a·sin)`. The pairs are
//!
//! - [`RopeLayout::HalfSplit`] (GPT-NeoX, Hugging Face Llama): `(x[i],
//!   x[i + rotary_dim/2])`;
//! - [`RopeLayout::Interleaved`] (GPT-J, llama.cpp's GGUF Llama): `(x[2i],
//!   x[2i + 1])`.
//!
//! Angles and their cosines and sines are computed in f64 and rounded once
//! to f32, so position 100 000 is as accurate as position 0 (an f32 angle
//! there would be off by up to 4e-3 rad). Each output element is then two
//! f32 products and a sum: within `2ε·(|a| + |b|)` of the exact rotation of
//! the f32 inputs (`tests/rope.rs` asserts `3ε·(|a| + |b|)`).
//!
//! [`RopeTable`] holds cos/sin for positions `0..max_positions`, built once
//! per model; [`rope`] computes the rows it needs in the call (same values,
//! f64 `sin`/`cos` per position and frequency — use the table in a loop).

use crate::attention::HeadsMut;
use crate::attention::view::Layout;
use crate::error::KernelError;
use crate::isa::{Config, Level, Parallelism, Token};
use crate::simd::Part;
use crate::threads;
use pulp::{Simd, WithSimd, c32};

/// Which elements of a head vector form a rotated pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RopeLayout {
    /// `(x[i], x[i + r/2])` — GPT-NeoX / Hugging Face `rotate_half`.
    #[default]
    HalfSplit,
    /// `(x[2i], x[2i + 1])` — GPT-J / llama.cpp (`ggml_rope` mode 0).
    Interleaved,
}

/// Frequency scaling for contexts longer than the model was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RopeScaling {
    /// `ω_i` as is.
    #[default]
    None,
    /// Linear position interpolation: `ω_i / factor` (positions squeezed by
    /// `factor`).
    Linear {
        /// `> 0`.
        factor: f64,
    },
    /// Llama 3's piecewise scaling (`rope_type = "llama3"` in Hugging Face):
    /// with wavelength `λ_i = 2π/ω_i`, `λ_lo = original_max_positions /
    /// low_freq_factor` and `λ_hi = original_max_positions /
    /// high_freq_factor`,
    ///
    /// - `λ_i < λ_hi` (high frequencies): `ω_i` unchanged;
    /// - `λ_i > λ_lo` (low frequencies): `ω_i / factor`;
    /// - between: `(1 − t)·ω_i/factor + t·ω_i` with `t =
    ///   (original_max_positions/λ_i − low_freq_factor) / (high_freq_factor −
    ///   low_freq_factor)`.
    ///
    /// Llama 3.1/3.2: factor 32 (8 for 3.1), low 1, high 4, original 8192.
    Llama3 {
        /// `> 0`.
        factor: f64,
        /// `> 0`.
        low_freq_factor: f64,
        /// `> low_freq_factor`.
        high_freq_factor: f64,
        /// The training context length, `> 0`.
        original_max_positions: usize,
    },
}

/// What defines the rotation (public fields, so callers can write a literal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeParams {
    /// Elements of each head vector that are rotated: even, `> 0`, at most
    /// the head dimension (the rest is untouched).
    pub rotary_dim: usize,
    /// Frequency base θ (10 000 in Llama 2, 500 000 in Llama 3, 100 000 in
    /// SmolLM2), finite and `> 1`.
    pub theta: f64,
    /// Pair layout.
    pub layout: RopeLayout,
    /// Frequency scaling.
    pub scaling: RopeScaling,
}

impl RopeParams {
    /// Half-split pairs, no scaling.
    pub fn new(rotary_dim: usize, theta: f64) -> Self {
        RopeParams {
            rotary_dim,
            theta,
            layout: RopeLayout::HalfSplit,
            scaling: RopeScaling::None,
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`KernelError::InvalidArgument`] naming `rotary_dim` (zero or odd),
    /// `theta` (not finite or ≤ 1) or `scaling` (a factor not finite and
    /// positive, `high_freq_factor ≤ low_freq_factor`, or
    /// `original_max_positions = 0`).
    pub fn validate(&self) -> Result<(), KernelError> {
        if self.rotary_dim == 0 || !self.rotary_dim.is_multiple_of(2) {
            return Err(KernelError::invalid(
                "rotary_dim",
                format!("rotary_dim = {} must be even and positive", self.rotary_dim),
            ));
        }
        if !(self.theta.is_finite() && self.theta > 1.0) {
            return Err(KernelError::invalid(
                "theta",
                format!("theta = {} must be finite and > 1", self.theta),
            ));
        }
        let pos = |f: f64| f.is_finite() && f > 0.0;
        match self.scaling {
            RopeScaling::None => Ok(()),
            RopeScaling::Linear { factor } if pos(factor) => Ok(()),
            RopeScaling::Linear { factor } => Err(KernelError::invalid(
                "scaling",
                format!("linear factor = {factor} must be finite and > 0"),
            )),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: lo,
                high_freq_factor: hi,
                original_max_positions: orig,
            } => {
                if pos(factor) && pos(lo) && pos(hi) && hi > lo && orig > 0 {
                    Ok(())
                } else {
                    Err(KernelError::invalid(
                        "scaling",
                        format!(
                            "llama3 scaling needs finite factor > 0 (got {factor}), 0 < \
                             low_freq_factor < high_freq_factor (got {lo}, {hi}) and \
                             original_max_positions > 0 (got {orig})"
                        ),
                    ))
                }
            }
        }
    }

    /// The `rotary_dim/2` angular frequencies `ω_i` after scaling, in f64.
    pub fn frequencies(&self) -> Vec<f64> {
        let r = self.rotary_dim as f64;
        (0..self.rotary_dim / 2)
            .map(|i| {
                let w = self.theta.powf(-2.0 * i as f64 / r);
                match self.scaling {
                    RopeScaling::None => w,
                    RopeScaling::Linear { factor } => w / factor,
                    RopeScaling::Llama3 {
                        factor,
                        low_freq_factor: lo,
                        high_freq_factor: hi,
                        original_max_positions: orig,
                    } => {
                        let orig = orig as f64;
                        let wavelen = 2.0 * std::f64::consts::PI / w;
                        if wavelen < orig / hi {
                            w
                        } else if wavelen > orig / lo {
                            w / factor
                        } else {
                            let t = (orig / wavelen - lo) / (hi - lo);
                            (1.0 - t) * w / factor + t * w
                        }
                    }
                }
            })
            .collect()
    }

    /// Appends the cos/sin row of position `pos` in the kernel's order:
    /// half-split `[cos_0 … cos_{h−1}, sin_0 … sin_{h−1}]`, interleaved
    /// `[cos_0, sin_0, cos_1, sin_1, …]` (one complex number per pair).
    fn push_row(&self, freqs: &[f64], pos: usize, out: &mut Vec<f32>) {
        let angle = |w: f64| pos as f64 * w;
        match self.layout {
            RopeLayout::HalfSplit => {
                out.extend(freqs.iter().map(|&w| angle(w).cos() as f32));
                out.extend(freqs.iter().map(|&w| angle(w).sin() as f32));
            }
            RopeLayout::Interleaved => {
                for &w in freqs {
                    let (s, c) = angle(w).sin_cos();
                    out.extend([c as f32, s as f32]);
                }
            }
        }
    }
}

/// Which position each token of a view has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions<'a> {
    /// Token `s` (of every batch) is at `start + s`: a prefill (`start = 0`)
    /// or the new tokens after a KV cache of `start` tokens.
    Start(usize),
    /// Explicit position ids, `batch·seq` of them, batch-major (`ids[b·seq +
    /// s]`), e.g. for packed sequences or tree decoding.
    Ids(&'a [usize]),
}

/// cos/sin of every position `0..max_positions`, built once per model:
/// `max_positions · rotary_dim` floats.
#[derive(Debug, Clone)]
pub struct RopeTable {
    params: RopeParams,
    max_positions: usize,
    rows: Vec<f32>,
}

impl RopeTable {
    /// Builds the table (f64 angles, rounded once to f32).
    ///
    /// # Errors
    /// As [`RopeParams::validate`]; [`KernelError::InvalidArgument`]
    /// (`max_positions`) if the table's size overflows.
    pub fn new(params: &RopeParams, max_positions: usize) -> Result<Self, KernelError> {
        params.validate()?;
        let len = max_positions
            .checked_mul(params.rotary_dim)
            .filter(|&n| n <= isize::MAX as usize / 4)
            .ok_or_else(|| {
                KernelError::invalid(
                    "max_positions",
                    format!(
                        "{max_positions} positions × rotary_dim {} floats do not fit in memory",
                        params.rotary_dim
                    ),
                )
            })?;
        let freqs = params.frequencies();
        let mut rows = Vec::with_capacity(len);
        for pos in 0..max_positions {
            params.push_row(&freqs, pos, &mut rows);
        }
        Ok(RopeTable {
            params: *params,
            max_positions,
            rows,
        })
    }

    /// The parameters the table was built from.
    pub fn params(&self) -> &RopeParams {
        &self.params
    }

    /// Positions covered: `0..max_positions`.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Rotates `x` in place (see the module docs).
    ///
    /// # Errors
    /// - [`KernelError::ShapeMismatch`] (`x`) if its head dimension is below
    ///   `rotary_dim`;
    /// - [`KernelError::ShapeMismatch`] (`positions`) if `Ids` does not hold
    ///   `batch·seq` ids;
    /// - [`KernelError::OutOfBounds`] (`positions`) if a position is not
    ///   below `max_positions`;
    /// - [`KernelError::IsaUnavailable`].
    pub fn apply(
        &self,
        mut x: HeadsMut<'_>,
        positions: Positions<'_>,
        cfg: &Config,
    ) -> Result<(), KernelError> {
        check(&x, &self.params, positions, Some(self.max_positions))?;
        cfg.validate()?;
        run(
            cfg.isa,
            cfg.parallelism,
            x.ptr(),
            x.layout,
            &self.params,
            positions,
            RowSource::Table(&self.rows),
        );
        Ok(())
    }

    /// [`RopeTable::apply`] on an explicit [`pulp::Simd`] token, serial
    /// (for callers who dispatch themselves, and tests of the 4-lane width).
    ///
    /// # Errors
    /// As [`RopeTable::apply`], without the ISA one.
    pub fn apply_on<S: Simd>(
        &self,
        simd: S,
        mut x: HeadsMut<'_>,
        positions: Positions<'_>,
    ) -> Result<(), KernelError> {
        check(&x, &self.params, positions, Some(self.max_positions))?;
        run(
            Token(simd),
            Parallelism::Serial,
            x.ptr(),
            x.layout,
            &self.params,
            positions,
            RowSource::Table(&self.rows),
        );
        Ok(())
    }
}

/// Rotates `x` in place, computing the cos/sin rows it needs in the call
/// (f64 `sin`/`cos` for each position and frequency; build a [`RopeTable`]
/// once instead when the same positions recur).
///
/// # Errors
/// As [`RopeParams::validate`] and [`RopeTable::apply`] (no position bound).
pub fn rope(
    mut x: HeadsMut<'_>,
    params: &RopeParams,
    positions: Positions<'_>,
    cfg: &Config,
) -> Result<(), KernelError> {
    params.validate()?;
    check(&x, params, positions, None)?;
    cfg.validate()?;
    let rows = rows_for(params, &x.layout, positions);
    run(
        cfg.isa,
        cfg.parallelism,
        x.ptr(),
        x.layout,
        params,
        positions,
        RowSource::PerToken(&rows),
    );
    Ok(())
}

/// The in-call [`rope`] on an explicit [`pulp::Simd`] token, serial (for
/// callers who dispatch themselves, and tests of the 4-lane width).
pub mod generic {
    use super::*;

    /// As [`super::rope`], on `simd`, one thread.
    ///
    /// # Errors
    /// As [`super::rope`], without the ISA one.
    pub fn rope<S: Simd>(
        simd: S,
        mut x: HeadsMut<'_>,
        params: &RopeParams,
        positions: Positions<'_>,
    ) -> Result<(), KernelError> {
        params.validate()?;
        check(&x, params, positions, None)?;
        let rows = rows_for(params, &x.layout, positions);
        run(
            Token(simd),
            Parallelism::Serial,
            x.ptr(),
            x.layout,
            params,
            positions,
            RowSource::PerToken(&rows),
        );
        Ok(())
    }
}

/// cos/sin rows for every token of the view, token-major (`b·seq + s`).
fn rows_for(params: &RopeParams, l: &Layout, positions: Positions<'_>) -> Vec<f32> {
    let freqs = params.frequencies();
    let mut rows = Vec::with_capacity(l.batch * l.seq * params.rotary_dim);
    for t in 0..l.batch * l.seq {
        params.push_row(&freqs, position(positions, l.seq, t), &mut rows);
    }
    rows
}

fn position(positions: Positions<'_>, seq: usize, t: usize) -> usize {
    match positions {
        Positions::Start(p0) => p0 + t % seq,
        Positions::Ids(ids) => ids[t],
    }
}

fn check(
    x: &HeadsMut<'_>,
    params: &RopeParams,
    positions: Positions<'_>,
    max_positions: Option<usize>,
) -> Result<(), KernelError> {
    let l = &x.layout;
    if l.dim < params.rotary_dim {
        return Err(KernelError::shape(
            "x",
            format!(
                "head_dim = {} is below rotary_dim = {}",
                l.dim, params.rotary_dim
            ),
        ));
    }
    let tokens = l.batch * l.seq;
    let last = match positions {
        Positions::Start(p0) => {
            if tokens == 0 {
                None
            } else {
                Some(p0.checked_add(l.seq - 1).ok_or_else(|| {
                    KernelError::bounds(
                        "positions",
                        format!("start {p0} + seq {} overflows usize", l.seq),
                    )
                })?)
            }
        }
        Positions::Ids(ids) => {
            if ids.len() != tokens {
                return Err(KernelError::shape(
                    "positions",
                    format!(
                        "{} position ids for batch {} × seq {} = {tokens} tokens",
                        ids.len(),
                        l.batch,
                        l.seq
                    ),
                ));
            }
            ids.iter().copied().max()
        }
    };
    if let (Some(last), Some(max)) = (last, max_positions)
        && last >= max
    {
        return Err(KernelError::bounds(
            "positions",
            format!("position {last} is outside the table's 0..{max}"),
        ));
    }
    Ok(())
}

/// Where each token's cos/sin row comes from.
#[derive(Clone, Copy)]
enum RowSource<'a> {
    /// Row `pos` of a table.
    Table(&'a [f32]),
    /// Row `t` (the token's index) of rows built for this call.
    PerToken(&'a [f32]),
}

/// Tokens per thread below which a second thread costs more than it saves
/// (in elements rotated: 32 heads × 128 × 64 tokens).
const MIN_ELEMS_PER_THREAD: usize = 1 << 18;

/// One job: tokens `[t0, t1)` of the view.
#[derive(Clone, Copy)]
struct Job<'a> {
    x: *mut f32,
    l: Layout,
    r: usize,
    interleaved: bool,
    positions: Positions<'a>,
    rows: RowSource<'a>,
    t0: usize,
    t1: usize,
}

impl Job<'_> {
    fn tokens(self, t0: usize, t1: usize) -> Self {
        Job { t0, t1, ..self }
    }
}

fn run<L: Level>(
    level: L,
    par: Parallelism,
    x: *mut f32,
    l: Layout,
    params: &RopeParams,
    positions: Positions<'_>,
    rows: RowSource<'_>,
) {
    let tokens = l.batch * l.seq;
    if tokens == 0 || l.heads == 0 {
        return;
    }
    let elems = tokens * l.heads * params.rotary_dim;
    let nt = threads::threads_for(par, elems, MIN_ELEMS_PER_THREAD).min(tokens);
    let per = tokens.div_ceil(nt);
    let job = Job {
        x,
        l,
        r: params.rotary_dim,
        interleaved: params.layout == RopeLayout::Interleaved,
        positions,
        rows,
        t0: 0,
        t1: 0,
    };
    // SAFETY: jobs cover disjoint token ranges of a non-overlapping mutable
    // view (checked by `HeadsMut`), so no two threads write the same
    // element; the view outlives the call.
    let job = unsafe { threads::Shared::new(job) };
    threads::for_each_index(nt, tokens.div_ceil(per), move |j| {
        let r = level.run(job.get().tokens(j * per, ((j + 1) * per).min(tokens)));
        debug_assert!(r.is_ok(), "validated by the caller");
    });
}

impl WithSimd for Job<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let (l, r) = (self.l, self.r);
        for t in self.t0..self.t1 {
            let (b, sq) = (t / l.seq, t % l.seq);
            let row = match self.rows {
                RowSource::Table(tab) => {
                    let p = position(self.positions, l.seq, t);
                    &tab[p * r..(p + 1) * r]
                }
                RowSource::PerToken(rows) => &rows[t * r..(t + 1) * r],
            };
            // SAFETY (every call below): (b, sq, h) is inside the view for
            // h < heads (t < batch·seq), each head vector has dim ≥ r
            // elements, and `row` holds r floats.
            let x0 = unsafe { self.x.add(l.offset(b, sq, 0)) };
            let (hs, cs) = (l.strides[2], row.as_ptr());
            let (lanes, cl) = (S::F32_LANES, S::C32_LANES);
            // The common head sizes: the token's cos/sin stay in registers
            // across its heads (measured: 25–31% faster at 32 heads × 128
            // for 128 tokens, no change at 9 + 3 heads × 64).
            unsafe {
                if self.interleaved {
                    match (r / 2).is_multiple_of(cl).then_some(r / 2 / cl) {
                        Some(1) => heads_interleaved::<S, 1>(s, x0, hs, l.heads, cs),
                        Some(2) => heads_interleaved::<S, 2>(s, x0, hs, l.heads, cs),
                        Some(4) => heads_interleaved::<S, 4>(s, x0, hs, l.heads, cs),
                        Some(8) => heads_interleaved::<S, 8>(s, x0, hs, l.heads, cs),
                        _ => {
                            (0..l.heads).for_each(|h| rotate_interleaved(s, x0.add(h * hs), cs, r))
                        }
                    }
                } else {
                    match (r / 2).is_multiple_of(lanes).then_some(r / 2 / lanes) {
                        Some(1) => heads_half_split::<S, 1>(s, x0, hs, l.heads, cs),
                        Some(2) => heads_half_split::<S, 2>(s, x0, hs, l.heads, cs),
                        Some(4) => heads_half_split::<S, 4>(s, x0, hs, l.heads, cs),
                        Some(8) => heads_half_split::<S, 8>(s, x0, hs, l.heads, cs),
                        _ => (0..l.heads).for_each(|h| rotate_half_split(s, x0.add(h * hs), cs, r)),
                    }
                }
            }
        }
    }
}

/// Half-split rotation of `heads` head vectors `hs` apart, rotary dim
/// `2·NV·lanes`, the cos/sin row loaded once.
///
/// # Safety
/// `x + h·hs` valid for `2·NV·lanes` reads and writes for `h < heads`;
/// `cs` for `2·NV·lanes` reads.
#[inline(always)]
unsafe fn heads_half_split<S: Simd, const NV: usize>(
    s: S,
    x: *mut f32,
    hs: usize,
    heads: usize,
    cs: *const f32,
) {
    let lanes = S::F32_LANES;
    let h = NV * lanes;
    // SAFETY: offsets below 2h from `cs` and from each head's start.
    unsafe {
        let ld = |p: *const f32| (p as *const S::f32s).read_unaligned();
        let c: [S::f32s; NV] = core::array::from_fn(|j| ld(cs.add(j * lanes)));
        let sn: [S::f32s; NV] = core::array::from_fn(|j| ld(cs.add(h + j * lanes)));
        for hh in 0..heads {
            let v = x.add(hh * hs);
            for j in 0..NV {
                let (pa, pb) = (v.add(j * lanes), v.add(h + j * lanes));
                let (a, b) = (ld(pa), ld(pb));
                let na = s.mul_add_e_f32s(a, c[j], s.neg_f32s(s.mul_f32s(b, sn[j])));
                let nb = s.mul_add_e_f32s(b, c[j], s.mul_f32s(a, sn[j]));
                (pa as *mut S::f32s).write_unaligned(na);
                (pb as *mut S::f32s).write_unaligned(nb);
            }
        }
    }
}

/// Interleaved rotation of `heads` head vectors `hs` apart, rotary dim
/// `2·NV·C32_LANES`, the cos/sin row loaded once.
///
/// # Safety
/// As [`heads_half_split`] for `2·NV·C32_LANES` floats.
#[inline(always)]
unsafe fn heads_interleaved<S: Simd, const NV: usize>(
    s: S,
    x: *mut f32,
    hs: usize,
    heads: usize,
    cs: *const f32,
) {
    let cl = S::C32_LANES;
    // SAFETY: pairs below NV·cl from `cs` and from each head's start.
    unsafe {
        let w: [S::c32s; NV] = core::array::from_fn(|j| {
            ((cs as *const c32).add(j * cl) as *const S::c32s).read_unaligned()
        });
        for hh in 0..heads {
            let v = x.add(hh * hs) as *mut c32;
            for (j, &wj) in w.iter().enumerate() {
                let p = v.add(j * cl) as *mut S::c32s;
                p.write_unaligned(s.mul_c32s(p.read_unaligned(), wj));
            }
        }
    }
}

/// Half-split rotation of `x[0..r]` with `cs = [cos; r/2] ++ [sin; r/2]`.
///
/// # Safety
/// `x` valid for `r` reads and writes, `cs` for `r` reads.
#[inline(always)]
unsafe fn rotate_half_split<S: Simd>(s: S, x: *mut f32, cs: *const f32, r: usize) {
    let lanes = S::F32_LANES;
    let h = r / 2;
    // SAFETY: every access is to [0, h) or [h, r) of x and cs, full vectors
    // only where all their lanes are inside, the rest one element at a time.
    unsafe {
        let ld = |p: *const f32| (p as *const S::f32s).read_unaligned();
        let mut i = 0;
        while i + lanes <= h {
            let (a, b) = (ld(x.add(i)), ld(x.add(h + i)));
            let (c, sn) = (ld(cs.add(i)), ld(cs.add(h + i)));
            let na = s.mul_add_e_f32s(a, c, s.neg_f32s(s.mul_f32s(b, sn)));
            let nb = s.mul_add_e_f32s(b, c, s.mul_f32s(a, sn));
            (x.add(i) as *mut S::f32s).write_unaligned(na);
            (x.add(h + i) as *mut S::f32s).write_unaligned(nb);
            i += lanes;
        }
        if i < h {
            let part = Part::new(s, h - i);
            let (a, b) = (part.load(x.add(i)), part.load(x.add(h + i)));
            let (c, sn) = (part.load(cs.add(i)), part.load(cs.add(h + i)));
            let na = s.mul_add_e_f32s(a, c, s.neg_f32s(s.mul_f32s(b, sn)));
            let nb = s.mul_add_e_f32s(b, c, s.mul_f32s(a, sn));
            part.store(x.add(i), na);
            part.store(x.add(h + i), nb);
        }
    }
}

/// Interleaved rotation of `x[0..r]`: each pair `(x[2i], x[2i+1])` is a
/// complex number multiplied by `cs[2i] + i·cs[2i+1]` (cos + i·sin).
///
/// # Safety
/// As [`rotate_half_split`].
#[inline(always)]
unsafe fn rotate_interleaved<S: Simd>(s: S, x: *mut f32, cs: *const f32, r: usize) {
    let pairs = r / 2;
    let cl = S::C32_LANES;
    let (xc, cc) = (x as *mut c32, cs as *const c32);
    // SAFETY: pairs [i, i + cl) with i + cl ≤ r/2 as vectors (c32 is two
    // f32, alignment 4), the rest one pair at a time.
    unsafe {
        let mut i = 0;
        while i + cl <= pairs {
            let v = (xc.add(i) as *const S::c32s).read_unaligned();
            let w = (cc.add(i) as *const S::c32s).read_unaligned();
            (xc.add(i) as *mut S::c32s).write_unaligned(s.mul_c32s(v, w));
            i += cl;
        }
        while i < pairs {
            let (a, b) = (*x.add(2 * i), *x.add(2 * i + 1));
            let (c, sn) = (*cs.add(2 * i), *cs.add(2 * i + 1));
            *x.add(2 * i) = a * c - b * sn;
            *x.add(2 * i + 1) = b * c + a * sn;
            i += 1;
        }
    }
}
