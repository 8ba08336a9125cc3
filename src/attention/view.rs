//! 4-D views `[batch, seq, heads, head_dim]` with the last dimension
//! contiguous and any strides for the other three.

use crate::error::KernelError;

/// Shape and strides, checked against a data length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub dim: usize,
    /// Strides of batch, seq and head, in elements (head_dim's is 1).
    pub strides: [usize; 3],
}

impl Layout {
    fn check(&self, len: usize, mutable: bool) -> Result<(), KernelError> {
        let ext = [self.batch, self.seq, self.heads];
        if ext.contains(&0) || self.dim == 0 {
            return Ok(());
        }
        let mut last: usize = self.dim - 1;
        for (n, s) in ext.iter().zip(self.strides) {
            last = (n - 1)
                .checked_mul(s)
                .and_then(|o| o.checked_add(last))
                .ok_or_else(|| {
                    KernelError::bounds(
                        "data",
                        format!(
                            "a {ext:?}x{} view with strides {:?} overflows usize",
                            self.dim, self.strides
                        ),
                    )
                })?;
        }
        if last >= len {
            return Err(KernelError::bounds(
                "data",
                format!(
                    "a [{}, {}, {}, {}] view with strides {:?} needs {} elements but data has {len}",
                    self.batch,
                    self.seq,
                    self.heads,
                    self.dim,
                    self.strides,
                    last + 1
                ),
            ));
        }
        if mutable {
            // Sorted by stride, each dimension must step past the whole
            // extent of the smaller ones (head_dim: stride 1, extent dim).
            // (stride, extent) of the dimensions with more than one
            // element, sorted; a fixed array (views are made per call).
            let mut dims = [(0usize, 1usize); 3];
            for (d, (&n, s)) in dims.iter_mut().zip(ext.iter().zip(self.strides)) {
                if n > 1 {
                    *d = (s, n);
                }
            }
            dims.sort_unstable();
            let mut span = self.dim;
            for (s, n) in dims.into_iter().filter(|&(_, n)| n > 1) {
                if s < span {
                    return Err(KernelError::Overlapping {
                        arg: "data",
                        msg: format!(
                            "a mutable [{}, {}, {}, {}] view with strides {:?} has elements that overlap",
                            self.batch, self.seq, self.heads, self.dim, self.strides
                        ),
                    });
                }
                span = s.saturating_mul(n - 1).saturating_add(span);
            }
        }
        Ok(())
    }

    /// Offset of element (b, s, h, 0).
    #[inline]
    pub fn offset(&self, b: usize, s: usize, h: usize) -> usize {
        b * self.strides[0] + s * self.strides[1] + h * self.strides[2]
    }
}

/// Element types a read-only [`HeadsRef`] may hold: `f32`, and IEEE half
/// ([`half::f16`]) for keys and values (an f16 KV cache). Sealed.
pub trait HeadsElem: Copy + Send + Sync + 'static + sealed::Sealed {
    /// Whether this is [`half::f16`].
    #[doc(hidden)]
    const F16: bool;
    /// The value as f32 (exact).
    #[doc(hidden)]
    fn to_f32(self) -> f32;
}
impl HeadsElem for f32 {
    const F16: bool = false;
    fn to_f32(self) -> f32 {
        self
    }
}
impl HeadsElem for half::f16 {
    const F16: bool = true;
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}
mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

macro_rules! heads_ctors {
    ($slice:ty, $elem:ty) => {
        /// `[batch, seq, heads, head_dim]` stored in that order (the `BSHD`
        /// layout of most engines' projection outputs).
        ///
        /// # Errors
        /// [`KernelError::OutOfBounds`] if `data` is too short.
        pub fn bshd(
            data: $slice,
            batch: usize,
            seq: usize,
            heads: usize,
            head_dim: usize,
        ) -> Result<Self, KernelError> {
            let st = [seq * heads * head_dim, heads * head_dim, head_dim];
            Self::strided(data, batch, seq, heads, head_dim, st)
        }

        /// `[batch, heads, seq, head_dim]` storage viewed as
        /// `[batch, seq, heads, head_dim]` (the `BHSD` layout).
        ///
        /// # Errors
        /// [`KernelError::OutOfBounds`] if `data` is too short.
        pub fn bhsd(
            data: $slice,
            batch: usize,
            seq: usize,
            heads: usize,
            head_dim: usize,
        ) -> Result<Self, KernelError> {
            let st = [heads * seq * head_dim, head_dim, seq * head_dim];
            Self::strided(data, batch, seq, heads, head_dim, st)
        }

        /// Number of batches.
        pub fn batch(&self) -> usize {
            self.layout.batch
        }
        /// Sequence length.
        pub fn seq(&self) -> usize {
            self.layout.seq
        }
        /// Number of heads.
        pub fn heads(&self) -> usize {
            self.layout.heads
        }
        /// Elements per head vector.
        pub fn head_dim(&self) -> usize {
            self.layout.dim
        }
        /// Strides of batch, seq and head (head_dim's is 1).
        pub fn strides(&self) -> [usize; 3] {
            self.layout.strides
        }
        /// The head vector at (batch, seq, head), or `None` outside.
        pub fn row(&self, b: usize, s: usize, h: usize) -> Option<&[$elem]> {
            let l = &self.layout;
            (b < l.batch && s < l.seq && h < l.heads).then(|| {
                let o = l.offset(b, s, h);
                &self.data[o..o + l.dim]
            })
        }
    };
}

/// A read-only `[batch, seq, heads, head_dim]` view of `T` (`f32`, or
/// [`half::f16`] for the keys and values of an f16 KV cache).
#[derive(Debug, Clone, Copy)]
pub struct HeadsRef<'a, T: HeadsElem = f32> {
    data: &'a [T],
    pub(crate) layout: Layout,
}

impl<'a, T: HeadsElem> HeadsRef<'a, T> {
    heads_ctors!(&'a [T], T);

    /// Explicit strides `[batch, seq, head]` in elements, head_dim
    /// contiguous. E.g. K inside a fused QKV projection output
    /// `[B, S, 3, H, D]`: `HeadsRef::strided(&qkv[H*D..], B, S, H, D,
    /// [S*3*H*D, 3*H*D, D])`.
    ///
    /// # Errors
    /// [`KernelError::OutOfBounds`] if an element lies outside `data` or the
    /// extent overflows `usize`.
    pub fn strided(
        data: &'a [T],
        batch: usize,
        seq: usize,
        heads: usize,
        head_dim: usize,
        strides: [usize; 3],
    ) -> Result<Self, KernelError> {
        let layout = Layout {
            batch,
            seq,
            heads,
            dim: head_dim,
            strides,
        };
        layout.check(data.len(), false)?;
        Ok(HeadsRef { data, layout })
    }

    pub(crate) fn ptr(&self) -> *const T {
        self.data.as_ptr()
    }
}

/// A mutable `[batch, seq, heads, head_dim]` view; elements never overlap.
#[derive(Debug)]
pub struct HeadsMut<'a> {
    data: &'a mut [f32],
    pub(crate) layout: Layout,
}

impl<'a> HeadsMut<'a> {
    heads_ctors!(&'a mut [f32], f32);

    /// Explicit strides, as [`HeadsRef::strided`].
    ///
    /// # Errors
    /// [`KernelError::OutOfBounds`] as [`HeadsRef::strided`];
    /// [`KernelError::Overlapping`] if two elements would share memory.
    pub fn strided(
        data: &'a mut [f32],
        batch: usize,
        seq: usize,
        heads: usize,
        head_dim: usize,
        strides: [usize; 3],
    ) -> Result<Self, KernelError> {
        let layout = Layout {
            batch,
            seq,
            heads,
            dim: head_dim,
            strides,
        };
        layout.check(data.len(), true)?;
        Ok(HeadsMut { data, layout })
    }

    /// A read-only view of the same elements.
    pub fn as_ref(&self) -> HeadsRef<'_> {
        HeadsRef {
            data: self.data,
            layout: self.layout,
        }
    }

    pub(crate) fn ptr(&mut self) -> *mut f32 {
        self.data.as_mut_ptr()
    }
}
