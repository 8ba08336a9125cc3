//! Code for one architecture that the generic (`pulp::Simd`) kernels cannot
//! express, reached only under that architecture's SIMD token.

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
pub(crate) mod cache;
#[cfg(target_arch = "x86_64")]
pub(crate) mod int8_avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod int8_neon;
#[cfg(target_arch = "x86_64")]
pub(crate) mod vnni;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;
