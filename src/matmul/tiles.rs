//! The f32 microkernels by name, and their blocking: the one place the
//! matmul driver ([`super::gemm`]), the thread splitter and attention read
//! tile and block sizes from.
//!
//! A [`Tile`] is an `MR × NR` register tile of C (`NR = NV` vectors of the
//! level's width) with the accumulators in registers for a whole k-block
//! (the contract is in [`super::kernel`]). Its [`Blocking`] comes from the
//! cache sizes detected at run time ([`CacheSizes::detect`]), scaled from
//! the constants the tile was tuned with on a 48 KiB-L1, 1 MiB-L2 core:
//!
//! - **KC** (k per block) keeps the A micro-panel (`MR·KC` floats, read in
//!   place or packed) in L1: a multiple of 32 (the low-precision formats
//!   pack whole 32-blocks), at least 64, shrunk in proportion on an L1
//!   smaller than 48 KiB;
//! - **NC** (columns of B per packed block) keeps the `KC × NC` B block in
//!   L2: a multiple of NR, shrunk in proportion on an L2 smaller than
//!   1 MiB;
//! - **MC** (rows of A per block) is about 1024 rows, a multiple of MR, so
//!   no block but the last ends in an edge tile; per product the blocks
//!   are evened out and a short remainder joins them
//!   ([`Blocking::row_block`]). Where A is read in place and `k < KC`, the
//!   driver takes `KC/k` times as many rows (the same bytes of A per
//!   block; B packed once per block, not once per MC rows).
//!
//! Larger caches keep the tuned sizes: on an Intel Xeon with 2 MiB of L2
//! per core (interleaved runs, one thread), doubling NC for AVX-512 (a
//! 1 MiB B block, the same share of L2) lost 7% on 512×768·3072×… (MLP
//! down), 8% on 1024×1024×64 and 2% on 1024³, and won nothing outside the
//! noise: the A panels streaming through L2 need the other half.
//!
//! How a tile is chosen (per call, from the level and the problem): see
//! [`plan`].

use super::Problem;
use crate::arch::cache::CacheSizes;

/// One register tile of the f32 microkernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    /// `<level>_<MR>x<NR>`.
    pub name: &'static str,
    /// Its place in [`TILES`].
    pub id: usize,
    /// f32 lanes of the level's vectors.
    pub lanes: usize,
    /// Rows of C (A values broadcast per k-step).
    pub mr: usize,
    /// Vectors of C per row (`NR = nv·lanes`).
    pub nv: usize,
    /// Whether A is always packed for this tile (`MR` values per k-step
    /// contiguous). Otherwise A is read in place (rows addressed from base
    /// pointers) unless no stride of A is 1 — see [`plan`].
    pub packs_a: bool,
    /// Whether A is packed, though it has a unit stride, when the product
    /// runs more than one k-block (see [`deep_pack_pays`];
    /// [`detected_blocking`] may lower that depth per CPU).
    pub packs_deep_a: bool,
    /// Vector (or, for scalar code, floating-point) registers of the level.
    pub registers: usize,
    /// Tuned KC, MC, NC at [`CacheSizes::FALLBACK`].
    base: (usize, usize, usize),
}

/// AVX-512, A packed: 28 of 32 zmm hold C.
pub(crate) const AVX512_14X32: Tile = Tile {
    name: "avx512_14x32",
    id: 0,
    lanes: 16,
    mr: 14,
    nv: 2,
    packs_a: true,
    packs_deep_a: false,
    registers: 32,
    // A packed 14-row micro-panel must fit L1 too (14×512 floats = 28 KiB).
    base: (512, 14 * 73, 128),
};

/// AVX-512, A read in place: 14 rows in place would need 14 address
/// registers (LLVM shuffles them every k-step); 6 rows are addressed from
/// two base pointers and one stride, and 24 zmm hold C.
pub(crate) const AVX512_6X64: Tile = Tile {
    name: "avx512_6x64",
    id: 1,
    lanes: 16,
    mr: 6,
    nv: 4,
    packs_a: false,
    packs_deep_a: false,
    registers: 32,
    // KC = 1024 keeps the 6×1024 A micro-panel (24 KiB) in L1 and makes
    // fewer passes over C; NC = 128 keeps the 1024×128 B block (512 KiB) in
    // half of a 1 MiB L2 (against 512/512: 1024³ +2–4%, 2048³ +4–6%).
    base: (1024, 6 * 170, 128),
};

/// AVX2 + FMA: 12 of 16 ymm hold C (B block 512×256 = 512 KiB: +3–6% over
/// 256×1024 when tuned).
pub(crate) const AVX2_6X16: Tile = Tile {
    name: "avx2_6x16",
    id: 2,
    lanes: 8,
    mr: 6,
    nv: 2,
    packs_a: false,
    // Measured on an AMD EPYC Zen 3 (AVX2 its widest level, 32 KiB L1d,
    // 512 KiB L2; one thread, alternating processes, ours/`gemm` medians
    // of 5, two to four runs): with A in place 512³ 0.69–0.97, 1024³
    // 0.75–0.92, 512×768·768×3072 0.82–0.91, 512×3072·3072×768 0.82–0.94;
    // packed 0.92–1.03, 0.94–1.09, 0.94–1.03, 0.95–1.17. At one k-block
    // (64³–256³, 1024×1024·64) packing lost 2–15%.
    packs_deep_a: true,
    registers: 16,
    base: (512, 6 * 170, 256),
};

/// NEON (and the 4-lane `Scalar128b` width): 24 of 32 q registers hold C;
/// NEON packs A so each k-step's 8 values are two q loads (`arch::aarch64`).
pub(crate) const NEON_8X12: Tile = Tile {
    name: "neon_8x12",
    id: 3,
    lanes: 4,
    mr: 8,
    nv: 3,
    packs_a: false,
    packs_deep_a: false,
    registers: 32,
    base: (256, 8 * 128, 1020),
};

/// The 4-lane width with A read in place: attention's S = Q·Kᵀ and
/// O += P·V on NEON and `Scalar128b` (Q and P rows are read where they
/// are; the NEON lane form of [`NEON_8X12`] needs A packed). 24 of 32 q
/// registers hold C.
pub(crate) const NEON_6X16: Tile = Tile {
    name: "neon_6x16",
    id: 4,
    lanes: 4,
    mr: 6,
    nv: 4,
    packs_a: false,
    packs_deep_a: false,
    registers: 32,
    base: (256, 6 * 170, 1024),
};

/// Portable scalar code: 8 accumulators, so C, one B row and the broadcast
/// A value fit the 16 floating-point registers of baseline x86-64.
pub(crate) const SCALAR_2X4: Tile = Tile {
    name: "scalar_2x4",
    id: 5,
    lanes: 1,
    mr: 2,
    nv: 4,
    packs_a: false,
    packs_deep_a: false,
    registers: 16,
    base: (256, 2 * 512, 512),
};

/// Every tile the matmul driver or attention can run.
pub(crate) const TILES: [Tile; 6] = [
    AVX512_14X32,
    AVX512_6X64,
    AVX2_6X16,
    NEON_8X12,
    NEON_6X16,
    SCALAR_2X4,
];

const _: () = {
    let mut i = 0;
    while i < TILES.len() {
        assert!(TILES[i].id == i);
        i += 1;
    }
};

/// The tile attention's products run on at a level of `lanes` lanes
/// (`attention::flash`): the query side (Q, then P) read in place, the key
/// side (Kᵀ, V) packed.
pub(crate) const fn attention(lanes: usize) -> Tile {
    match lanes {
        16 => AVX512_6X64,
        8 => AVX2_6X16,
        4 => NEON_6X16,
        _ => SCALAR_2X4,
    }
}

/// Query rows that are a whole number of tiles on every level: attention
/// splits a head's queries across threads at multiples of it, so a row's
/// tile, and with it its order of summation, does not depend on the split.
pub(crate) const ATTENTION_SPLIT_ROWS: usize = 6;

const _: () = {
    let mut lanes = 1;
    while lanes <= 16 {
        assert!(ATTENTION_SPLIT_ROWS.is_multiple_of(attention(lanes).mr));
        lanes *= 2;
    }
};

/// Tile and block sizes, all in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Blocking {
    pub mr: usize,
    pub nr: usize,
    /// k per block: an A micro-panel (MR·KC) stays in L1.
    pub kc: usize,
    /// Rows of A per block (the packed A block, MC·KC, is reused across
    /// every column block).
    pub mc: usize,
    /// Columns of B packed at once: a KC·NC block of B stays in L2.
    pub nc: usize,
    /// Floats of B that stay in L1 read in place (¾ of the L1d: the rest
    /// for the rows of A and C): a contiguous B up to this span is not
    /// packed.
    pub b_in_l1: usize,
    /// A tile that reads A in place packs it when `k` exceeds this
    /// ([`deep_pack_pays`]): KC for a tile that [`Tile::packs_deep_a`],
    /// otherwise never (`usize::MAX`) unless the CPU's rule lowers it
    /// ([`detected_blocking`]).
    pub pack_a_above_k: usize,
}

impl Tile {
    /// Columns of C in the tile.
    pub const fn nr(&self) -> usize {
        self.nv * self.lanes
    }

    /// Registers the k-loop keeps live: the accumulators, one B row and the
    /// broadcast A value.
    pub const fn registers_used(&self) -> usize {
        self.mr * self.nv + self.nv + 1
    }

    /// The blocking for these cache sizes (see the module docs).
    pub fn blocking(&self, caches: &CacheSizes) -> Blocking {
        let fb = CacheSizes::FALLBACK;
        let (kc0, mc0, nc0) = self.base;
        let nr = self.nr();
        // `num` is clamped to at most `den` (a fallback size, ≤ 1 MiB) and
        // `x` is a tuned block size in bytes or elements (≤ 1 MiB), so
        // the product fits u64 whatever cache sizes come in (u128 division
        // is a library call, on every product).
        let scale =
            |x: usize, num: usize, den: usize| (x as u64 * num as u64 / den as u64) as usize;
        // Smaller caches shrink the blocks in proportion; larger ones leave
        // them as tuned (see the module docs for why).
        let kc = (scale(kc0, caches.l1d.clamp(1, fb.l1d), fb.l1d) / 32 * 32).max(64);
        let b_bytes = scale(kc0 * nc0 * 4, caches.l2.clamp(1, fb.l2), fb.l2);
        let nc = (b_bytes / (kc * 4) / nr * nr).max(nr);
        let mc = mc0 / self.mr * self.mr;
        Blocking {
            mr: self.mr,
            nr,
            kc,
            mc,
            nc,
            b_in_l1: caches.l1d / 4 * 3 / 4,
            pack_a_above_k: if self.packs_deep_a { kc } else { usize::MAX },
        }
    }
}

impl Blocking {
    /// The rows per block for a product of `m` rows with row blocks of
    /// about `mc` (a multiple of MR): the blocks are as even as whole tiles
    /// allow, and a remainder shorter than a quarter of `mc` joins the
    /// blocks before it instead of running a block of its own. A block of
    /// its own packs the whole B panel again for a few rows, in short edge
    /// tiles: m = 1024 at MC = 1020 ran as 1020 + 4 rows. Measured (Intel
    /// Xeon, AVX-512 6×64 with A packed, one thread, ours/`gemm`, two
    /// alternating runs): 1024³ 0.92–0.93 as 1020 + 4, 0.97–0.99 as one
    /// block of 1026.
    pub fn row_block(mc: usize, mr: usize, m: usize) -> usize {
        let mc0 = mc.max(mr);
        let mut blocks = m.div_ceil(mc0).max(1);
        if blocks > 1 && m - (blocks - 1) * mc0 < mc0 / 4 {
            blocks -= 1;
        }
        loop {
            let mc = m.div_ceil(blocks).next_multiple_of(mr).max(mr);
            // Whole tiles round each block up: the last one takes what is
            // left, which can again be short.
            let used = m.div_ceil(mc);
            if used <= 1 || m - (used - 1) * mc >= mc0 / 4 {
                return mc;
            }
            blocks = used - 1;
        }
    }

    /// The columns per packed B block for a product of depth `k` with one
    /// k-block (`k ≤ KC`): NC grows as k shrinks so the block keeps about
    /// the KC·NC floats (its share of L2) it was sized for, a whole number
    /// of tiles, never fewer than NC. With NC as for a KC-deep block,
    /// 1024×1024·64 ran as eight 128-column stripes of C, each row tile
    /// writing 512 bytes of six rows 4 KiB apart; as one block of all 1024
    /// columns, each row tile writes six whole rows. Measured (Intel Xeon,
    /// AVX-512 6×64 tile, one thread, ours/`gemm`, three alternating runs):
    /// 1024×1024·64 0.97–0.98 → 1.04–1.06, 2048×512·128 0.91–0.93 →
    /// 1.00–1.01, 512×2048·64 0.98–1.01 → 1.02.
    pub fn col_block(&self, k: usize) -> usize {
        let k = k.clamp(1, self.kc.max(1));
        let nr = self.nr.max(1);
        (self.kc * self.nc / k / nr * nr).max(self.nc)
    }
}

/// Whether packing A pays for itself. Measured on a 1 MiB-L2 core: reading
/// A in place (6×64 tile on AVX-512) was as fast or faster than packing it
/// (14×32) at every size when one of A's strides is 1 — rows or columns are
/// then contiguous streams. On a 2 MiB-L2 Xeon, packing measured 1–5%
/// faster on 512³, 1024³ and two GPT-2 projections and 7–16% slower on
/// 48³–128³: not a rule yet. Only a layout with no unit stride, where every
/// element would cost its own cache line, is packed (and only when big
/// enough).
fn pack_a_pays(p: &Problem, nr: usize) -> bool {
    p.rsa != 1 && p.csa != 1 && p.n > 2 * nr && p.m * p.k >= 64 * 64
}

/// Whether a tile that reads A in place packs it anyway
/// ([`Tile::packs_deep_a`]): when the product runs more than one k-block
/// (`k > KC`) over more than two column panels and one row tile. At one
/// k-block packing only adds a pass over A and takes the product off the
/// two-loop path, which needs A in place.
fn deep_pack_pays(p: &Problem, tile: &Tile, bl: &Blocking) -> bool {
    p.k > bl.pack_a_above_k && p.n > 2 * tile.nr() && p.m > tile.mr
}

/// Whether packing B pays: B rows must be contiguous to skip it, and then
/// it is skipped when B is small enough to stay in L1 as it is, or m so
/// small that the pack would rival the arithmetic.
fn pack_b_pays(p: &Problem, bl: &Blocking) -> bool {
    // B read in place stays in L1 when its whole span is contiguous and
    // at most ¾ of the L1d. On a 48 KiB L1d, 96³ read B in place (36 KiB)
    // 4–10% faster than packed (interleaved, Intel Xeon); at 112³ and
    // 128³ (49 and 64 KiB) in place gained nothing.
    let span = (p.k.max(1) - 1).saturating_mul(p.rsb).saturating_add(p.n);
    let fits_l1 = span <= bl.b_in_l1;
    p.csb != 1 || !(fits_l1 || p.m <= 4 * bl.mr) || p.k > bl.kc
}

/// How one product runs at a level of `lanes` f32 lanes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub tile: Tile,
    pub blocking: Blocking,
    pub pack_a: bool,
    pub pack_b: bool,
}

/// Picks the tile, blocking and packing for `p` at a level with `lanes`
/// lanes (`neon`: the level is NEON, which always packs A for its lane-form
/// k-step). The same plan drives the loops and the thread split.
/// `blocking` gives a tile's blocking (at run time: [`detected_blocking`]).
#[inline(always)]
pub(crate) fn plan(
    p: &Problem,
    lanes: usize,
    neon: bool,
    blocking: impl Fn(&Tile) -> Blocking,
) -> Plan {
    let widest = match lanes {
        16 => AVX512_14X32,
        8 => AVX2_6X16,
        4 => NEON_8X12,
        _ => SCALAR_2X4,
    };
    let strided_a = pack_a_pays(p, widest.nr());
    // AVX-512 has a tile for each case; the other levels pack A for their
    // one tile when it pays.
    let tile = if lanes == 16 && !strided_a {
        AVX512_6X64
    } else {
        widest
    };
    let blocking = blocking(&tile);
    let pack_a = tile.packs_a || strided_a || neon || deep_pack_pays(p, &tile, &blocking);
    // Low-precision B is always converted while packed.
    let pack_b = p.w.is_some() || pack_b_pays(p, &blocking);
    Plan {
        tile,
        blocking,
        pack_a,
        pack_b,
    }
}

/// [`plan`] for level `S` on this CPU's caches.
#[inline(always)]
pub(crate) fn plan_at<S: pulp::Simd>(p: &Problem) -> Plan {
    #[cfg(target_arch = "aarch64")]
    let neon = crate::arch::aarch64::is_neon::<S>();
    #[cfg(not(target_arch = "aarch64"))]
    let neon = false;
    plan(p, S::F32_LANES, neon, detected_blocking)
}

/// On Intel cores the AVX-512 6×64 tile packs A once k exceeds this.
/// Measured on an Intel Xeon (AVX-512 with BF16/AMX, 48 KiB L1d, 2 MiB L2;
/// one thread, ours/`gemm` medians of 5 alternating rounds, four runs):
/// A in place 512³ 0.95, 1024³ 0.93–0.96, 2048³ 0.85–0.87,
/// 512×768·768×2304 0.94–0.96, 512×768·768×3072 0.92–0.96,
/// 512×3072·3072×768 0.93–0.94; A packed for k > 256: 0.92–0.96,
/// 0.93–0.95, 0.89–0.93, 0.96–1.00, 0.91–1.01, 0.94–0.97. An AMD Zen 5 ran
/// the in-place tile level with `gemm` on those shapes (see the README),
/// so the rule is Intel's only.
/// k ≤ 256 (256³, 1024×1024·64, the small cubes) keeps A in place and the
/// two-loop path.
const INTEL_AVX512_PACK_A_ABOVE_K: usize = 256;

/// A tile's blocking for this CPU's caches (and, on Intel cores, the
/// AVX-512 pack-A depth above), computed once per process (a few divisions
/// a product otherwise).
fn detected_blocking(t: &Tile) -> Blocking {
    static B: std::sync::OnceLock<[Blocking; TILES.len()]> = std::sync::OnceLock::new();
    let all = B.get_or_init(|| {
        let caches = CacheSizes::detect();
        TILES.map(|t| {
            let mut b = t.blocking(&caches);
            if t.id == AVX512_6X64.id && crate::arch::cache::intel() {
                b.pack_a_above_k = INTEL_AVX512_PACK_A_ABOVE_K;
            }
            b
        })
    });
    all[t.id]
}
