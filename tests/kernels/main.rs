//! The property tests that run the matmul machinery at the 4-lane width
//! (`pulp::Scalar128b` through the `generic` entry points): matmul, the
//! low-precision and int8 products, SiLU/SwiGLU epilogues, and the GPT-2
//! and Llama layers. One test crate, so that instantiation is compiled
//! once: as six crates, each compiled it again (4.5–6.5 minutes apiece in
//! a release build, most of `cargo test`'s build time).
//!
//! Run one module: `cargo test --release --test kernels -- matmul::`.

#[path = "../common/mod.rs"]
mod common;

mod block;
mod int8;
mod llama;
mod lowp;
mod matmul;
mod silu;
