//! Run-time instruction-set selection and the per-call [`Config`].
//!
//! Every kernel is written once, generically over [`pulp::Simd`], and
//! instantiated for each level below. The level is chosen once per call from
//! [`Config::isa`]; [`Isa::detect`] picks the best one this CPU runs.

pub use crate::arch::cache::CacheSizes;
use crate::error::KernelError;
use pulp::{Simd, WithSimd};
use std::fmt;
use std::str::FromStr;

/// An instruction-set level a kernel can run at.
///
/// | level    | vector | where                                   |
/// |----------|--------|-----------------------------------------|
/// | `Scalar` | 1 lane | everywhere (portable Rust)              |
/// | `Avx2`   | 8×f32  | x86-64 with AVX2 + FMA (pulp's `V3`)     |
/// | `Avx512` | 16×f32 | x86-64 with AVX-512 F/BW/CD/DQ/VL (`V4`) |
/// | `Neon`   | 4×f32  | aarch64 (compiled only there)           |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable scalar code, one lane.
    Scalar,
    /// AVX2 with FMA, 256-bit vectors.
    Avx2,
    /// AVX-512 (F, BW, CD, DQ, VL), 512-bit vectors.
    Avx512,
    /// Arm NEON, 128-bit vectors.
    Neon,
}

/// Name of the environment variable that lowers [`Isa::detect`].
pub const ISA_ENV: &str = "TK_ISA";

impl Isa {
    /// Every level, from the least to the most capable on its architecture.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::Avx512];

    /// Whether this CPU (and this build) can run `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Avx2 => pulp::x86::V3::try_new().is_some(),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Avx512 => pulp::x86::V4::try_new().is_some(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => pulp::aarch64::Neon::try_new().is_some(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every level this CPU can run, `Scalar` first and the best last.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The best level this CPU runs, lowered by the `TK_ISA` environment
    /// variable (`scalar`, `avx2`, `avx512`, `neon`) when it names a level
    /// that is available. A value naming an unavailable level, or no level at
    /// all, is ignored here; [`Isa::env_override`] reports it as an error.
    pub fn detect() -> Isa {
        let best = Isa::hardware_best();
        match Isa::env_override() {
            Ok(Some(isa)) if isa.is_available() => isa,
            _ => best,
        }
    }

    /// The best level this CPU runs, ignoring `TK_ISA` (detected once per
    /// process).
    pub fn hardware_best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| *Isa::available().last().unwrap_or(&Isa::Scalar))
    }

    /// The level named by `TK_ISA`, if the variable is set.
    ///
    /// # Errors
    /// [`KernelError::UnknownIsa`] when the value names no level.
    pub fn env_override() -> Result<Option<Isa>, KernelError> {
        match std::env::var(ISA_ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse().map(Some),
            _ => Ok(None),
        }
    }

    /// Number of f32 lanes in one vector register at this level.
    pub fn f32_lanes(self) -> usize {
        match self {
            Isa::Scalar => 1,
            Isa::Neon => 4,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }

    /// Lower-case name, as accepted by `TK_ISA` and `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = KernelError;

    /// Parses `scalar`, `avx2`, `avx512` or `neon` (case-insensitive,
    /// surrounding blanks ignored; `avx-512` and `avx512f` also accepted).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Ok(Isa::Scalar),
            "avx2" => Ok(Isa::Avx2),
            "avx512" | "avx-512" | "avx512f" => Ok(Isa::Avx512),
            "neon" => Ok(Isa::Neon),
            _ => Err(KernelError::UnknownIsa {
                value: s.to_string(),
            }),
        }
    }
}

/// How many threads a kernel may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parallelism {
    /// The calling thread only.
    #[default]
    Serial,
    /// Up to `n` threads of a rayon pool; `Threads(0)` means all cores.
    /// Kernels use fewer when the work is too small to pay for them.
    /// Without the `rayon` feature this runs serially.
    Threads(usize),
}

impl Parallelism {
    /// The number of threads this asks for (`Serial` = 1, `Threads(0)` = cores).
    pub fn threads(self) -> usize {
        match self {
            Parallelism::Serial => 1,
            Parallelism::Threads(0) => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            Parallelism::Threads(n) => n,
        }
    }
}

/// Per-call settings: which instruction set and how many threads.
///
/// `Config::default()` is the detected ISA ([`Isa::detect`]) and
/// [`Parallelism::Serial`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Instruction-set level. Asking for one the CPU cannot run is an `Err`.
    pub isa: Isa,
    /// Thread budget.
    pub parallelism: Parallelism,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            isa: Isa::detect(),
            parallelism: Parallelism::Serial,
        }
    }
}

impl Config {
    /// The detected ISA with the given parallelism.
    pub fn with_parallelism(parallelism: Parallelism) -> Self {
        Config {
            parallelism,
            ..Config::default()
        }
    }

    /// A serial config at the given level.
    pub fn with_isa(isa: Isa) -> Self {
        Config {
            isa,
            parallelism: Parallelism::Serial,
        }
    }

    /// Checks that the ISA can run here.
    ///
    /// # Errors
    /// [`KernelError::IsaUnavailable`] otherwise.
    pub fn validate(&self) -> Result<(), KernelError> {
        if self.isa.is_available() {
            Ok(())
        } else {
            Err(KernelError::IsaUnavailable {
                requested: self.isa,
            })
        }
    }
}

/// Where a kernel's vector code runs: an [`Isa`] chosen at run time
/// (validated by the entry point, so [`Level::run`] cannot fail after it), or
/// a pulp token the caller holds ([`Token`], for the `generic` entry points
/// and the tests of widths this CPU has no `Isa` for). A kernel generic over
/// `Level` is instantiated for a token only where a caller uses it: the
/// library itself compiles the `Isa` levels alone.
pub(crate) trait Level: Copy + Send + Sync {
    /// Runs `op` at this level.
    fn run<Op: WithSimd>(self, op: Op) -> Result<Op::Output, KernelError>;
    /// `IsaUnavailable` where this level cannot run here.
    fn validate(self) -> Result<(), KernelError>;
}

impl Level for Isa {
    fn validate(self) -> Result<(), KernelError> {
        Config {
            isa: self,
            parallelism: Parallelism::Serial,
        }
        .validate()
    }
    #[inline]
    fn run<Op: WithSimd>(self, op: Op) -> Result<Op::Output, KernelError> {
        dispatch(self, op)
    }
}

/// A held SIMD token as a [`Level`] (holding it proves the CPU runs it).
#[derive(Clone, Copy)]
pub(crate) struct Token<S>(pub S);

impl<S: Simd> Level for Token<S> {
    fn validate(self) -> Result<(), KernelError> {
        Ok(()) // holding the token proves the CPU runs it
    }
    #[inline]
    fn run<Op: WithSimd>(self, op: Op) -> Result<Op::Output, KernelError> {
        Ok(self.0.vectorize(op))
    }
}

/// Runs `op` on the SIMD token of `isa`: the one place where a level becomes
/// code. Returns `IsaUnavailable` rather than running an instruction the CPU
/// lacks.
#[inline]
pub(crate) fn dispatch<Op: WithSimd>(isa: Isa, op: Op) -> Result<Op::Output, KernelError> {
    match isa {
        Isa::Scalar => return Ok(op.with_simd(pulp::Scalar::new())),
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 => {
            if let Some(s) = pulp::x86::V3::try_new() {
                return Ok(Simd::vectorize(s, op));
            }
        }
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx512 => {
            if let Some(s) = pulp::x86::V4::try_new() {
                return Ok(Simd::vectorize(s, op));
            }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            if let Some(s) = pulp::aarch64::Neon::try_new() {
                return Ok(Simd::vectorize(s, op));
            }
        }
        #[allow(unreachable_patterns)]
        _ => {}
    }
    Err(KernelError::IsaUnavailable { requested: isa })
}

/// Runs `op` at level `s` in a function of its own, never inlined into its
/// caller. Each `(level, Op)` pair is then compiled once, however many call
/// sites reach it, and it is a unit that codegen units can spread over cores
/// — where an `#[inline(always)]` chain would paste the whole kernel into
/// every caller (the matmul driver once was 100 000 lines of IR per level,
/// twice). The boundary costs two calls; use it around work that takes
/// microseconds (a tile epilogue, a packing pass, a whole product), never
/// inside a k-loop.
#[inline(never)]
pub(crate) fn outlined<S: Simd, Op: WithSimd>(s: S, op: Op) -> Op::Output {
    // The body gets `S`'s target features from pulp's `vectorize`; this
    // function has none, so LLVM cannot inline that body back into it.
    s.vectorize(op)
}

/// This core's f32 FMA throughput at `isa`, in GFLOP/s, measured now: 12
/// independent accumulators of vector FMAs (enough to hide their latency),
/// no memory traffic, best of three runs of `iters` steps. Benches and
/// examples divide by it to report "% of peak" from the same run.
///
/// # Errors
/// [`KernelError::IsaUnavailable`] if `isa` cannot run here.
pub fn fma_peak_gflops(isa: Isa, iters: usize) -> Result<f64, KernelError> {
    struct Fmas(usize);
    impl WithSimd for Fmas {
        type Output = f32;
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> f32 {
            let mut acc = [s.splat_f32s(0.0); 12];
            let x = s.splat_f32s(std::hint::black_box(0.999_999));
            let y = s.splat_f32s(std::hint::black_box(1e-7));
            for _ in 0..self.0 {
                for a in acc.iter_mut() {
                    *a = s.mul_add_e_f32s(*a, x, y);
                }
            }
            acc.iter().fold(0.0, |t, &a| t + s.reduce_sum_f32s(a))
        }
    }
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        std::hint::black_box(dispatch(isa, Fmas(iters))?);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((iters * 12 * isa.f32_lanes() * 2) as f64 / best / 1e9)
}
