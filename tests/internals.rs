//! Tests of crate-private pieces, through `transformer_kernels::internals`
//! (hidden, not API): the softmax's `2^x` and row step, the low-precision
//! widenings on every level, the activation quantizer's rounding, and the
//! tokenizer's pre-tokenization pattern and byte table. They live here, not
//! in `src`, so `cargo test` does not compile the library a second time as
//! a unit-test harness (`[lib] test = false`).

mod common;

use pulp::{Simd, WithSimd};
use transformer_kernels::internals;
use transformer_kernels::reference::{bf16_value, f16_value};

/// Worst error of `exp2_nonpos` in ULP of the exact f64 value over
/// [−126, 0] (dense grid plus every integer and half-integer), and the
/// special inputs.
fn check_exp2<S: Simd>(s: S, name: &str) {
    let mut xs: Vec<f32> = (0..=(1 << 20))
        .map(|i| -126.0 * i as f32 / (1 << 20) as f32)
        .collect();
    xs.extend((0..=252).map(|i| -(i as f32) / 2.0));
    xs.extend([-1e-7, -1e-30, -0.0, -126.4, -126.6, -127.0, -200.0, -1e30]);
    xs.extend([f32::NEG_INFINITY, f32::NAN]);
    // An odd count: the last piece goes through the partial load.
    xs.push(-0.25);
    if xs.len().is_multiple_of(2) {
        xs.push(-0.75);
    }
    let mut out = vec![0.0f32; xs.len()];
    internals::exp2_nonpos_slice(s, &xs, &mut out);
    let mut worst = 0.0f64;
    for (&x, &y) in xs.iter().zip(&out) {
        if x.is_nan() {
            assert!(y.is_nan(), "{name}: exp2(NaN) = {y}");
        } else if x < -126.5 {
            assert_eq!(y, 0.0, "{name}: exp2({x}) = {y}, want 0 (flushed)");
        } else if x >= -126.0 {
            let e = (x as f64).exp2();
            let ulp = (e as f32).to_bits();
            let ulp = (f32::from_bits(ulp + 1) - e as f32) as f64;
            let err = (y as f64 - e).abs() / ulp;
            worst = worst.max(err);
            assert!(
                err <= 2.0,
                "{name}: exp2({x}) = {y}, exact {e} ({err:.2} ULP)"
            );
        }
    }
    println!("exp2_nonpos on {name}: max {worst:.2} ULP on [-126, 0]");
    assert!(worst > 0.0, "{name}: no error at all is implausible");
}

/// Runs `op` on every level this CPU has, plus the portable 4-lane and
/// 1-lane tokens.
fn on_every_level<Op: WithSimd<Output = ()> + Copy>(op: Op) {
    Simd::vectorize(pulp::Scalar, op);
    Simd::vectorize(pulp::Scalar128b, op);
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(v3) = pulp::x86::V3::try_new() {
            Simd::vectorize(v3, op);
        }
        if let Some(v4) = pulp::x86::V4::try_new() {
            Simd::vectorize(v4, op);
        }
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(n) = pulp::aarch64::Neon::try_new() {
        Simd::vectorize(n, op);
    }
}

#[derive(Clone, Copy)]
struct Exp2;

impl WithSimd for Exp2 {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        check_exp2(s, &format!("{} lanes", S::F32_LANES));
    }
}

#[test]
fn exp2_nonpos_within_2_ulp_on_every_level() {
    on_every_level(Exp2);
}

/// Every one of the 65 536 bit patterns, widened a vector at a time,
/// against the formats' definitions (NaN for NaN, bit-exact otherwise);
/// every i8, and every nibble of every byte.
#[derive(Clone, Copy)]
struct Exhaustive;

impl WithSimd for Exhaustive {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let lanes = S::F32_LANES;
        let bits: Vec<u16> = (0..=u16::MAX).collect();
        let mut out = vec![0.0f32; bits.len()];
        let bf: Vec<half::bf16> = bits.iter().map(|&b| half::bf16::from_bits(b)).collect();
        internals::widen_bf16(s, &bf, &mut out);
        for (&b, &g) in bits.iter().zip(&out) {
            let want = bf16_value(b);
            assert!(
                (want.is_nan() && g.is_nan()) || g.to_bits() == (want as f32).to_bits(),
                "bf16 {b:#06x}: {g} vs {want} at {lanes} lanes"
            );
        }
        let hf: Vec<half::f16> = bits.iter().map(|&b| half::f16::from_bits(b)).collect();
        internals::widen_f16(s, &hf, &mut out);
        for (&b, &g) in bits.iter().zip(&out) {
            let want = f16_value(b);
            assert!(
                (want.is_nan() && g.is_nan()) || g.to_bits() == (want as f32).to_bits(),
                "f16 {b:#06x}: {g} vs {want} at {lanes} lanes"
            );
        }
        let bytes: Vec<u8> = (0..=255u8).collect();
        let signed: Vec<i8> = bytes.iter().map(|&b| b as i8).collect();
        let mut out = vec![0.0f32; 256];
        internals::widen_i8(s, &signed, &mut out);
        for (&b, &g) in signed.iter().zip(&out) {
            assert_eq!(g, f32::from(b), "i8 {b} at {lanes} lanes");
        }
        internals::widen_q4_lo(s, &bytes, &mut out);
        for (&b, &g) in bytes.iter().zip(&out) {
            assert_eq!(
                g,
                f32::from(b & 15) - 8.0,
                "byte {b:#04x} lo at {lanes} lanes"
            );
        }
        internals::widen_q4_hi(s, &bytes, &mut out);
        for (&b, &g) in bytes.iter().zip(&out) {
            assert_eq!(
                g,
                f32::from(b >> 4) - 8.0,
                "byte {b:#04x} hi at {lanes} lanes"
            );
        }
    }
}

#[test]
fn widening_is_exact_for_every_bit_pattern_on_every_level() {
    on_every_level(Exhaustive);
}

/// The F16C widening the AVX2 kernels use (where this CPU has it), on
/// every one of the 65 536 bit patterns, as the other widenings above.
#[cfg(target_arch = "x86_64")]
#[test]
fn f16c_widening_is_exact_for_every_bit_pattern() {
    let bits: Vec<u16> = (0..=u16::MAX).collect();
    let hf: Vec<half::f16> = bits.iter().map(|&b| half::f16::from_bits(b)).collect();
    let mut out = vec![0.0f32; bits.len()];
    if !internals::widen_f16_f16c(&hf, &mut out) {
        eprintln!("no AVX2 + F16C here: F16C widening not tested");
        return;
    }
    for (&b, &g) in bits.iter().zip(&out) {
        let want = f16_value(b);
        assert!(
            (want.is_nan() && g.is_nan()) || g.to_bits() == (want as f32).to_bits(),
            "f16 {b:#06x}: {g} vs {want} (F16C)"
        );
    }
}

/// Equal to `f32::round` clamped to ±127 on every f32 within 64 ULPs of
/// each half-integer and integer in ±130 (where the two could disagree),
/// on a grid across the range, and beyond it; NaN gives 0.
#[test]
fn round_to_i8_is_f32_round_clamped() {
    let check = |y: f32| {
        let want = (y.round() as i32).clamp(-127, 127) as i8;
        assert_eq!(internals::round_to_i8(y), want, "{y:e}");
    };
    for h in -260i32..=260 {
        let c = h as f32 * 0.5;
        for d in -64i32..=64 {
            let y = f32::from_bits((c.to_bits() as i32 + d) as u32);
            if y.abs() <= 130.0 {
                check(y);
            }
        }
    }
    for i in 0..2_000_000u32 {
        check(i as f32 * 1.3e-4 - 130.0);
    }
    for y in [
        0.0f32,
        -0.0,
        1e-45,
        -1e-45,
        0.49999997,
        -0.49999997,
        0.5,
        -0.5,
        126.5,
        -126.5,
        127.49999,
        127.5,
        -127.5,
        128.0,
        -128.0,
        1e30,
        -1e30,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ] {
        check(y);
    }
    assert_eq!(internals::round_to_i8(f32::NAN), 0);
}

#[cfg(feature = "model")]
#[test]
fn gpt2_pattern_pieces() {
    let cases: &[(&str, &[&str])] = &[
        ("Hello world", &["Hello", " world"]),
        ("it's  a\n\nb", &["it", "'s", " ", " a", "\n", "\n", "b"]),
        ("x  ", &["x", "  "]),
        ("a, b!!", &["a", ",", " b", "!!"]),
        ("12 apples", &["12", " apples"]),
        (" \ta", &[" ", "\t", "a"]),
        ("'ll'x", &["'ll", "'", "x"]),
        ("héllo wörld", &["héllo", " wörld"]),
        ("", &[]),
    ];
    for (s, want) in cases {
        assert_eq!(internals::gpt2_pieces(s), *want, "{s:?}");
    }
}

#[cfg(feature = "model")]
#[test]
fn byte_chars_are_a_bijection() {
    let c = internals::byte_chars();
    let mut seen = std::collections::HashSet::new();
    for ch in c {
        assert!(seen.insert(ch));
        assert!((ch as u32) < 0x200 && ch != '\0');
    }
    assert_eq!(c[b'A' as usize], 'A');
    assert_eq!(c[b' ' as usize], 'Ġ');
    assert_eq!(c[b'\n' as usize], 'Ċ');
}

/// The tile table: every tile's accumulators, a B row and the broadcast fit
/// its level's registers, and for any cache sizes (tiny, odd, huge) its
/// blocking keeps KC a positive multiple of 32 (the low-precision packers
/// convert whole 32-blocks), MC a multiple of MR and NC of NR, so no block
/// but the last ends in an edge tile.
#[test]
fn every_tile_fits_its_registers_and_blocks_in_whole_tiles() {
    use transformer_kernels::internals::{tile_blocking, tiles};
    use transformer_kernels::isa::CacheSizes;
    let all = tiles();
    assert!(all.len() >= 5);
    for t in &all {
        assert!(
            t.registers_used <= t.registers,
            "{}: {} registers live, {} exist",
            t.name,
            t.registers_used,
            t.registers
        );
        assert_eq!(t.registers_used, t.mr * t.nr / t.lanes + t.nr / t.lanes + 1);
        assert!(
            t.name.ends_with(&format!("_{}x{}", t.mr, t.nr)),
            "{}",
            t.name
        );
    }
    let sizes = [
        1usize,
        4 << 10,
        32 << 10,
        48 << 10,
        80 << 10,
        1 << 20,
        2 << 20,
        3 << 20,
        5 << 20,
        260 << 20,
        usize::MAX,
    ];
    for t in &all {
        for &l1d in &sizes[..6] {
            for &l2 in &sizes {
                let c = CacheSizes {
                    l1d,
                    l2,
                    l3: 32 << 20,
                };
                let (kc, mc, nc) = tile_blocking(t.name, &c);
                assert!(kc >= 64 && kc % 32 == 0, "{} {c:?}: kc {kc}", t.name);
                assert!(mc >= t.mr && mc % t.mr == 0, "{} {c:?}: mc {mc}", t.name);
                assert!(nc >= t.nr && nc % t.nr == 0, "{} {c:?}: nc {nc}", t.name);
            }
        }
    }
    // At the sizes they were tuned on (or larger), the tuned constants; at
    // half the L1 or L2, half the block.
    let tuned = CacheSizes::FALLBACK;
    assert_eq!(tile_blocking("avx512_6x64", &tuned), (1024, 1020, 128));
    assert_eq!(tile_blocking("avx512_14x32", &tuned), (512, 1022, 128));
    assert_eq!(tile_blocking("avx2_6x16", &tuned), (512, 1020, 256));
    let big = CacheSizes {
        l1d: 80 << 10,
        l2: 2 << 20,
        l3: 260 << 20,
    };
    assert_eq!(tile_blocking("avx512_6x64", &big), (1024, 1020, 128));
    let small = CacheSizes {
        l1d: 24 << 10,
        l2: 512 << 10,
        l3: 0,
    };
    // KC 512: the 6-row A panel 12 KiB of 24; NC: a 256 KiB B block.
    assert_eq!(tile_blocking("avx512_6x64", &small), (512, 1020, 128));
    assert_eq!(tile_blocking("avx2_6x16", &small), (256, 1020, 256));
    let detected = CacheSizes::detect();
    assert!(
        detected.l1d >= 4 << 10 && detected.l2 >= detected.l1d,
        "{detected:?}"
    );
}

/// Row blocks: whole tiles, at most as many blocks as MC-row blocks would
/// make, none shorter than a quarter of MC unless it is the only one (for
/// MC of tens of tiles or more, as every tile's is), and
/// together they cover m (1024 rows at MC 1020: one block, not 1020 + 4).
#[test]
fn row_blocks_are_whole_tiles_without_a_short_last_block() {
    use transformer_kernels::internals::row_block;
    assert_eq!(row_block(1020, 6, 1024), 1026);
    assert_eq!(row_block(1020, 6, 2048), 1026);
    assert_eq!(row_block(1020, 6, 512), 516);
    assert_eq!(row_block(1020, 6, 1300), 654);
    for &mr in &[1usize, 2, 6, 8, 14] {
        for &mc0 in &[73 * mr, 170 * mr] {
            for m in (1..20_000).step_by(7) {
                let mc = row_block(mc0, mr, m);
                assert!(
                    mc >= mr && mc.is_multiple_of(mr),
                    "mr {mr} mc0 {mc0} m {m}: {mc}"
                );
                let blocks = m.div_ceil(mc);
                assert!(blocks <= m.div_ceil(mc0), "mr {mr} mc0 {mc0} m {m}: {mc}");
                let last = m - (blocks - 1) * mc;
                assert!(
                    blocks == 1 || last + mr > mc0 / 4,
                    "mr {mr} mc0 {mc0} m {m}: mc {mc}, last block {last}"
                );
                assert!(mc < mc0 + mc0 / 4 + 2 * mr, "mr {mr} mc0 {mc0} m {m}: {mc}");
            }
        }
    }
}

/// A product with one k-block packs B in blocks that widen as k shrinks:
/// whole tiles, never narrower than NC, about the KC·NC floats the block
/// was sized for (within one tile column), and NC itself at k = KC.
#[test]
fn col_blocks_keep_the_b_block_budget() {
    use transformer_kernels::internals::col_block;
    assert_eq!(col_block(1024, 128, 64, 64), 2048);
    assert_eq!(col_block(1024, 128, 64, 1024), 128);
    assert_eq!(col_block(1024, 128, 64, 300), 384);
    for &(kc, nc, nr) in &[
        (1024, 128, 64),
        (512, 1022, 14),
        (256, 1020, 12),
        (64, 4, 4),
    ] {
        for k in 1..=kc {
            let w = col_block(kc, nc, nr, k);
            assert!(w >= nc && w.is_multiple_of(nr), "{kc} {nc} {nr} k {k}: {w}");
            assert!(
                w * k <= kc * nc.max(nr) + nr * k,
                "{kc} {nc} {nr} k {k}: {w}"
            );
            assert!(
                w == nc || (w + nr) * k > kc * nc,
                "{kc} {nc} {nr} k {k}: {w}"
            );
        }
        assert_eq!(col_block(kc, nc, nr, kc), nc.max(nc / nr * nr));
        assert_eq!(col_block(kc, nc, nr, 10 * kc), col_block(kc, nc, nr, kc));
    }
}

/// Small deterministic values in [−1, 1).
fn vals(n: usize, seed: u64) -> Vec<f32> {
    common::layer_input(n, 1, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Every microkernel of this level's width, called directly (not through a
/// product), against an f64 loop: A packed and in place (strided rows and
/// columns), B packed and not, every live corner at the edges (1, one
/// short of a vector, a vector, one past it, the whole tile), k from 1,
/// β = 0 / 1 / other, bias, GELU. Cells outside the live corner of C, and
/// the padding of packed operands, must be left as they were (NaN
/// sentinels: a read of one would poison the result too).
///
/// Tolerance: the f32 sum of kc products plus the epilogue's few roundings,
/// `2·(kc + 3)·u·(|α|·Σ|a·b| + |s·C| + |bias|)`; after GELU (slope ≤ 1.13)
/// that, times 1.13, plus GELU's own 4 ULP + 1e-7.
#[derive(Clone, Copy)]
struct Microkernels;

impl WithSimd for Microkernels {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        use internals::{TileCall, run_tile, tiles};
        let lanes = S::F32_LANES;
        let u = f32::EPSILON as f64 / 2.0;
        let mut calls = 0;
        for t in tiles().into_iter().filter(|t| t.lanes == lanes) {
            let (mr, nr) = (t.mr, t.nr);
            let mut ms = vec![1, mr.saturating_sub(1).max(1), mr];
            ms.dedup();
            let mut ns: Vec<usize> = [1, lanes.saturating_sub(1), lanes, lanes + 1, nr - 1, nr]
                .into_iter()
                .filter(|&n| (1..=nr).contains(&n))
                .collect();
            ns.sort();
            ns.dedup();
            for (packed_a, packed_b) in [(false, false), (true, false), (false, true), (true, true)]
            {
                for kc in [1usize, 2, 7, 33] {
                    for &m in &ms {
                        for &n in &ns {
                            for (e, (alpha, c_scale, bias, gelu)) in [
                                (1.0f32, None, false, false),
                                (-0.5, Some(1.0f32), true, false),
                                (1.0, Some(0.75), false, true),
                                (2.0, None, true, true),
                            ]
                            .into_iter()
                            .enumerate()
                            {
                                let seed = (kc * 1000 + m * 100 + n * 7 + e) as u64;
                                // A: logical m×kc; in place with rows 2·kc+1
                                // apart and columns 2 apart (neither unit),
                                // or packed MR per step.
                                let al = vals(m * kc, seed);
                                let (a, a_rs, a_cs) = if packed_a {
                                    let mut a = vec![0.0f32; mr * kc];
                                    for i in 0..m {
                                        for p in 0..kc {
                                            a[p * mr + i] = al[i * kc + p];
                                        }
                                    }
                                    (a, 1, mr)
                                } else {
                                    let (rs, cs) = (2 * kc + 1, 2);
                                    let mut a = vec![f32::NAN; (m - 1) * rs + (kc - 1) * cs + 1];
                                    for i in 0..m {
                                        for p in 0..kc {
                                            a[i * rs + p * cs] = al[i * kc + p];
                                        }
                                    }
                                    (a, rs, cs)
                                };
                                let bl = vals(kc * n, seed + 1);
                                let (b, b_rs) = if packed_b {
                                    let mut b = vec![0.0f32; kc * nr];
                                    for p in 0..kc {
                                        b[p * nr..p * nr + n]
                                            .copy_from_slice(&bl[p * n..p * n + n]);
                                    }
                                    (b, nr)
                                } else {
                                    let rs = n + 3;
                                    let mut b = vec![f32::NAN; (kc - 1) * rs + n];
                                    for p in 0..kc {
                                        b[p * rs..p * rs + n]
                                            .copy_from_slice(&bl[p * n..p * n + n]);
                                    }
                                    (b, rs)
                                };
                                let c_rs = nr + 5;
                                let c0 = vals(mr * c_rs, seed + 2);
                                let mut c = vec![f32::NAN; mr * c_rs];
                                for i in 0..m {
                                    c[i * c_rs..i * c_rs + n]
                                        .copy_from_slice(&c0[i * c_rs..i * c_rs + n]);
                                }
                                let before = c.clone();
                                let bv = vals(n, seed + 3);
                                run_tile(
                                    s,
                                    TileCall {
                                        tile: t.name,
                                        packed_a,
                                        packed_b,
                                        kc,
                                        a: &a,
                                        a_rs,
                                        a_cs,
                                        b: &b,
                                        b_rs,
                                        c: &mut c,
                                        c_rs,
                                        m_eff: m,
                                        n_eff: n,
                                        alpha,
                                        c_scale,
                                        bias: bias.then_some(&bv[..]),
                                        gelu,
                                    },
                                );
                                calls += 1;
                                let ctx = format!(
                                    "{} packed A {packed_a} B {packed_b} kc {kc} m {m} n {n} case {e}",
                                    t.name
                                );
                                for i in 0..mr {
                                    for j in 0..c_rs {
                                        let got = c[i * c_rs + j];
                                        if i >= m || j >= n {
                                            assert!(
                                                got.to_bits() == before[i * c_rs + j].to_bits(),
                                                "{ctx}: wrote ({i}, {j}) outside the live corner"
                                            );
                                            continue;
                                        }
                                        let (mut x, mut mag) = (0.0f64, 0.0f64);
                                        for p in 0..kc {
                                            let ab = al[i * kc + p] as f64 * bl[p * n + j] as f64;
                                            x += ab;
                                            mag += ab.abs();
                                        }
                                        x *= alpha as f64;
                                        mag *= alpha.abs() as f64;
                                        if let Some(cs) = c_scale {
                                            let old = cs as f64 * c0[i * c_rs + j] as f64;
                                            x += old;
                                            mag += old.abs();
                                        }
                                        if bias {
                                            x += bv[j] as f64;
                                            mag += (bv[j] as f64).abs();
                                        }
                                        let mut tol = 2.0 * (kc as f64 + 3.0) * u * mag;
                                        if gelu {
                                            x = transformer_kernels::reference::gelu_erf(x);
                                            tol = 1.13 * tol
                                                + 4.0 * (x.abs() * f32::EPSILON as f64)
                                                + 1e-7;
                                        }
                                        assert!(
                                            (got as f64 - x).abs() <= tol,
                                            "{ctx}: C({i}, {j}) = {got}, expected {x} ± {tol:e}"
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(
            calls > 0 || lanes == 4 && cfg!(target_arch = "aarch64"),
            "no tile of {lanes} lanes"
        );
    }
}

#[test]
fn every_microkernel_on_its_own_against_an_f64_loop() {
    on_every_level(Microkernels);
}

/// The spinning team behind `threads::install`: many sections in a row (as
/// a decode step runs them), each index run exactly once and every section
/// finished before the next starts; a nested section runs serially; a
/// second caller while the team serves the first falls back to the pool;
/// and a panic in a job reaches the caller, after which the team still
/// works. (A team larger than the machine's cores is not started: on a
/// 2-core machine the 3-thread round runs on the rayon pool, and must
/// behave the same.)
#[test]
fn thread_team_runs_every_index_once_per_section() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    for n in [2usize, 3] {
        let total = transformer_kernels::internals::install(n, || {
            let mut total = 0usize;
            for section in 0..2000usize {
                let jobs = 1 + section % 7;
                let hits: Vec<AtomicUsize> = (0..jobs).map(|_| AtomicUsize::new(0)).collect();
                let seen = AtomicUsize::new(0);
                transformer_kernels::internals::for_each_index(n, jobs, |i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                    // A nested section inside a job: serial, all its indices.
                    transformer_kernels::internals::for_each_index(n, 3, |_| {
                        seen.fetch_add(1, Ordering::Relaxed);
                    });
                });
                for (i, h) in hits.iter().enumerate() {
                    assert_eq!(
                        h.load(Ordering::Relaxed),
                        1,
                        "n={n} section {section} index {i}"
                    );
                }
                assert_eq!(seen.load(Ordering::Relaxed), 3 * jobs);
                total += jobs;
            }
            // Another thread asking for a team of n now: served (by the
            // pool), not deadlocked.
            let other = std::thread::spawn(move || {
                transformer_kernels::internals::install(n, || {
                    let c = AtomicUsize::new(0);
                    transformer_kernels::internals::for_each_index(n, 5, |_| {
                        c.fetch_add(1, Ordering::Relaxed);
                    });
                    c.load(Ordering::Relaxed)
                })
            });
            assert_eq!(other.join().unwrap(), 5);
            total
        });
        assert_eq!(total, (0..2000).map(|s| 1 + s % 7).sum::<usize>());
        let r = std::panic::catch_unwind(|| {
            transformer_kernels::internals::install(n, || {
                transformer_kernels::internals::for_each_index(n, 8, |i| {
                    if i == 7 {
                        panic!("job 7");
                    }
                })
            })
        });
        assert!(r.is_err());
        let c = AtomicUsize::new(0);
        transformer_kernels::internals::install(n, || {
            transformer_kernels::internals::for_each_index(n, 4, |_| {
                c.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(c.load(Ordering::Relaxed), 4);
    }
}

/// `softmax_row` on every level: rows of 0–300 scores (whole groups of
/// four vectors, single vectors after them, a partial tail), every prefix
/// `visible`, a running max below, inside or above the row's, or none
/// (−∞); a +∞ score. Each numerator within 2 ULP of `2^(x − m_new)` (the
/// `exp2` bound; `x − m_new` is exact here: both are multiples of 2⁻¹⁰
/// below 2⁹), the sum within 2 ULP + the f32 summation bound of the f64
/// sum, `row[visible..]` untouched.
#[derive(Clone, Copy)]
struct SoftmaxRow;

impl WithSimd for SoftmaxRow {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let mut seed = 0x2545_f491_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let lanes = S::F32_LANES;
        for len in (0usize..40).chain([63, 64, 65, 127, 128, 129, 255, 256, 300]) {
            let row: Vec<f32> = (0..len)
                .map(|_| ((next() % 40_000) as f32 - 30_000.0) / 1024.0)
                .collect();
            for visible in [0, 1, len / 2, len.saturating_sub(1), len] {
                let visible = visible.min(len);
                let mx = row[..visible]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                for m_old in [f32::NEG_INFINITY, mx - 3.0, mx, mx + 5.5, -20.0] {
                    let mut got = row.clone();
                    let (m_new, sum) = internals::softmax_row(s, &mut got, visible, m_old);
                    let want_m = mx.max(m_old);
                    let at = format!("{lanes} lanes, len {len}, visible {visible}, m_old {m_old}");
                    assert_eq!(m_new.to_bits(), want_m.to_bits(), "{at}");
                    let m_use = if want_m == f32::NEG_INFINITY {
                        0.0
                    } else {
                        want_m
                    };
                    let mut exact = 0.0f64;
                    for (j, (&x, &y)) in row.iter().zip(&got).enumerate() {
                        if j >= visible {
                            assert_eq!(y.to_bits(), x.to_bits(), "{at}: key {j} changed");
                            continue;
                        }
                        let e = ((x - m_use) as f64).exp2();
                        exact += e;
                        let ulp = f32::from_bits((e as f32).to_bits() + 1) as f64 - e;
                        assert!(
                            (y as f64 - e).abs() <= 2.0 * ulp.max(f32::MIN_POSITIVE as f64),
                            "{at}: 2^({x} − {m_use}) = {y}, exact {e}"
                        );
                    }
                    let bound = exact * (2.0 * f32::EPSILON as f64) * (1.0 + visible as f64);
                    assert!(
                        (sum as f64 - exact).abs() <= bound + 1e-37,
                        "{at}: sum {sum}, exact {exact}"
                    );
                }
            }
        }
        // A +∞ score takes the limit: 1 for +∞, 0 for the rest.
        let mut row = vec![1.0f32; 3 * lanes + 1];
        row[lanes + 1] = f32::INFINITY;
        let (m_new, sum) = internals::softmax_row(s, &mut row, 3 * lanes + 1, 0.0);
        assert_eq!((m_new, sum), (f32::INFINITY, 1.0));
        assert!(
            row.iter()
                .enumerate()
                .all(|(j, &v)| v == if j == lanes + 1 { 1.0 } else { 0.0 })
        );
    }
}

#[test]
fn softmax_row_matches_f64_on_every_level() {
    on_every_level(SoftmaxRow);
}
