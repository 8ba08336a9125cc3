//! The kernels a layer calls, on one of two kinds of level: a run-time
//! [`Config`] (the public `forward` methods) or a pulp token the caller holds
//! (the `forward_on` methods, one thread — how the tests run whole layers at
//! widths this CPU has no `Isa` for, such as NEON's 4 lanes). The layers are
//! written once, generic over [`LayerOps`]; the library itself instantiates
//! them for `&Config` alone.

use crate::attention::{self, AttentionOptions, HeadsElem, HeadsMut, HeadsRef};
use crate::error::KernelError;
use crate::isa::{Config, Parallelism};
use crate::matmul::int8::Blk;
use crate::matmul::{self, Epilogue, MatMut, MatRef};
use crate::norm;
use crate::quant::WeightsRef;
use crate::rope::{Positions, RopeTable};
use pulp::Simd;

/// The kernel entry points a decoder layer uses.
pub(crate) trait LayerOps: Copy {
    /// Checks that the level can run here (before any input is touched).
    fn validate(self) -> Result<(), KernelError>;
    fn layer_norm(
        self,
        x: &[f32],
        g: &[f32],
        b: &[f32],
        out: &mut [f32],
        eps: f32,
    ) -> Result<(), KernelError>;
    fn rms_norm(self, x: &[f32], g: &[f32], out: &mut [f32], eps: f32) -> Result<(), KernelError>;
    fn matmul_weights(
        self,
        c: MatMut<'_>,
        a: MatRef<'_>,
        w: WeightsRef<'_>,
        alpha: f32,
        beta: f32,
        epilogue: Epilogue<'_>,
    ) -> Result<(), KernelError>;
    fn matmul_int8(
        self,
        c: MatMut<'_>,
        a: MatRef<'_>,
        w: WeightsRef<'_>,
        alpha: f32,
        beta: f32,
        epilogue: Epilogue<'_>,
    ) -> Result<(), KernelError>;
    /// A layer's product: the int8 mode where the layer asks for it and
    /// the weights are in a block format, else f32 activations.
    #[allow(clippy::too_many_arguments)]
    fn product(
        self,
        int8: bool,
        c: MatMut<'_>,
        a: MatRef<'_>,
        w: WeightsRef<'_>,
        alpha: f32,
        beta: f32,
        epilogue: Epilogue<'_>,
    ) -> Result<(), KernelError> {
        if int8 && Blk::of(w.format()).is_some() {
            self.matmul_int8(c, a, w, alpha, beta, epilogue)
        } else {
            self.matmul_weights(c, a, w, alpha, beta, epilogue)
        }
    }
    fn attention<T: HeadsElem>(
        self,
        out: HeadsMut<'_>,
        q: HeadsRef<'_>,
        k: HeadsRef<'_, T>,
        v: HeadsRef<'_, T>,
        opts: &AttentionOptions,
    ) -> Result<(), KernelError>;
    fn rope(
        self,
        table: &RopeTable,
        x: HeadsMut<'_>,
        positions: Positions<'_>,
    ) -> Result<(), KernelError>;
}

impl LayerOps for &Config {
    fn validate(self) -> Result<(), KernelError> {
        Config::validate(self)
    }
    fn layer_norm(
        self,
        x: &[f32],
        g: &[f32],
        b: &[f32],
        out: &mut [f32],
        eps: f32,
    ) -> Result<(), KernelError> {
        norm::layer_norm(x, g, b, out, eps, self)
    }
    fn rms_norm(self, x: &[f32], g: &[f32], out: &mut [f32], eps: f32) -> Result<(), KernelError> {
        norm::rms_norm(x, g, out, eps, self)
    }
    fn matmul_weights(
        self,
        c: MatMut<'_>,
        a: MatRef<'_>,
        w: WeightsRef<'_>,
        alpha: f32,
        beta: f32,
        epilogue: Epilogue<'_>,
    ) -> Result<(), KernelError> {
        matmul::matmul_weights(c, a, w, alpha, beta, epilogue, self)
    }
    fn matmul_int8(
        self,
        c: MatMut<'_>,
        a: MatRef<'_>,
        w: WeightsRef<'_>,
        alpha: f32,
        beta: f32,
        epilogue: Epilogue<'_>,
    ) -> Result<(), KernelError> {
        matmul::matmul_weights_int8(c, a, w, alpha, beta, epilogue, self)
    }
    fn attention<T: HeadsElem>(
        self,
        out: HeadsMut<'_>,
        q: HeadsRef<'_>,
        k: HeadsRef<'_, T>,
        v: HeadsRef<'_, T>,
        opts: &AttentionOptions,
    ) -> Result<(), KernelError> {
        attention::attention(out, q, k, v, opts, self)
    }
    fn rope(
        self,
        table: &RopeTable,
        x: HeadsMut<'_>,
        positions: Positions<'_>,
    ) -> Result<(), KernelError> {
        table.apply(x, positions, self)
    }
}

/// A held pulp token as a layer's level: every kernel on it, one thread.
#[derive(Clone, Copy)]
pub(crate) struct On<S>(pub S);

impl<S: Simd> LayerOps for On<S> {
    fn validate(self) -> Result<(), KernelError> {
        Ok(()) // holding the token proves the CPU runs it
    }
    fn layer_norm(
        self,
        x: &[f32],
        g: &[f32],
        b: &[f32],
        out: &mut [f32],
        eps: f32,
    ) -> Result<(), KernelError> {
        norm::generic::layer_norm(self.0, x, g, b, out, eps)
    }
    fn rms_norm(self, x: &[f32], g: &[f32], out: &mut [f32], eps: f32) -> Result<(), KernelError> {
        norm::generic::rms_norm(self.0, x, g, out, eps)
    }
    fn matmul_weights(
        self,
        c: MatMut<'_>,
        a: MatRef<'_>,
        w: WeightsRef<'_>,
        alpha: f32,
        beta: f32,
        epilogue: Epilogue<'_>,
    ) -> Result<(), KernelError> {
        matmul::generic::matmul_weights(self.0, c, a, w, alpha, beta, epilogue)
    }
    fn matmul_int8(
        self,
        c: MatMut<'_>,
        a: MatRef<'_>,
        w: WeightsRef<'_>,
        alpha: f32,
        beta: f32,
        epilogue: Epilogue<'_>,
    ) -> Result<(), KernelError> {
        matmul::generic::matmul_weights_int8(self.0, c, a, w, alpha, beta, epilogue)
    }
    fn attention<T: HeadsElem>(
        self,
        out: HeadsMut<'_>,
        q: HeadsRef<'_>,
        k: HeadsRef<'_, T>,
        v: HeadsRef<'_, T>,
        opts: &AttentionOptions,
    ) -> Result<(), KernelError> {
        attention::generic::attention(self.0, Parallelism::Serial, out, q, k, v, opts, None)
    }
    fn rope(
        self,
        table: &RopeTable,
        x: HeadsMut<'_>,
        positions: Positions<'_>,
    ) -> Result<(), KernelError> {
        table.apply_on(self.0, x, positions)
    }
}
