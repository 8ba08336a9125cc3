//! Strided matrix views: the shape and layout half of the matmul API.

use crate::error::KernelError;

/// Offset of the last element of a `rows × cols` view, or `None` when the
/// view is empty; `Err` when the computation overflows `usize`.
#[inline]
fn last_offset(
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> Result<Option<usize>, KernelError> {
    if rows == 0 || cols == 0 {
        return Ok(None);
    }
    match (rows - 1)
        .checked_mul(rs)
        .and_then(|r| (cols - 1).checked_mul(cs).and_then(|c| r.checked_add(c)))
    {
        Some(last) => Ok(Some(last)),
        None => Err(too_wide(rows, cols, rs, cs)),
    }
}

// The error messages are built out of line (`#[cold]`), so the checks
// inline into the caller's view construction as a few compares.
#[cold]
#[inline(never)]
fn too_wide(rows: usize, cols: usize, rs: usize, cs: usize) -> KernelError {
    KernelError::bounds(
        "data",
        format!(
            "a {rows}x{cols} view with strides ({rs}, {cs}) spans more than usize::MAX elements"
        ),
    )
}

#[cold]
#[inline(never)]
fn too_short(
    len: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    last: usize,
) -> KernelError {
    KernelError::bounds(
        "data",
        format!(
            "a {rows}x{cols} view with strides ({rs}, {cs}) needs {} elements but data has {len}",
            last + 1
        ),
    )
}

#[cold]
#[inline(never)]
fn overlapping(rows: usize, cols: usize, rs: usize, cs: usize) -> KernelError {
    KernelError::Overlapping {
        arg: "data",
        msg: format!(
            "a mutable {rows}x{cols} view with strides ({rs}, {cs}) has elements that overlap"
        ),
    }
}

#[inline]
fn check_bounds(
    len: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> Result<(), KernelError> {
    if let Some(last) = last_offset(rows, cols, rs, cs)?
        && last >= len
    {
        return Err(too_short(len, rows, cols, rs, cs, last));
    }
    Ok(())
}

/// Whether two distinct (i, j) can land on one element: refused for mutable
/// views. A layout passes when, along the dimension of the larger stride, the
/// step is at least the extent of the other dimension (every row-major,
/// column-major, padded or sub-matrix layout); rarer interleavings that
/// happen not to overlap are refused too.
#[inline]
fn check_no_overlap(rows: usize, cols: usize, rs: usize, cs: usize) -> Result<(), KernelError> {
    if rows == 0 || cols == 0 || (rows == 1 && cols == 1) {
        return Ok(());
    }
    let ((s1, n1), (s2, n2)) = if rs <= cs {
        ((rs, rows), (cs, cols))
    } else {
        ((cs, cols), (rs, rows))
    };
    let inner_ok = n1 <= 1 || s1 >= 1;
    let outer_ok = n2 <= 1 || s2 >= s1.saturating_mul(n1.max(1)).max(1);
    if inner_ok && outer_ok {
        Ok(())
    } else {
        Err(overlapping(rows, cols, rs, cs))
    }
}

/// A read-only view of an f32 matrix: element (i, j) is
/// `data[i·row_stride + j·col_stride]`. Every element is inside `data`
/// (checked at construction).
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A view with explicit strides (in elements; 0 repeats an element).
    ///
    /// # Errors
    /// [`KernelError::OutOfBounds`] if an element lies outside `data` or the
    /// extent overflows `usize`.
    #[inline]
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, KernelError> {
        check_bounds(data.len(), rows, cols, row_stride, col_stride)?;
        Ok(MatRef {
            data,
            rows,
            cols,
            rs: row_stride,
            cs: col_stride,
        })
    }

    /// A view whose bounds the caller has already checked.
    pub(crate) fn from_parts(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Self {
        debug_assert!(check_bounds(data.len(), rows, cols, rs, cs).is_ok());
        MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// Row-major `rows × cols` (row stride `cols`).
    ///
    /// # Errors
    /// As [`MatRef::new`].
    #[inline]
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// Column-major `rows × cols` (column stride `rows`).
    ///
    /// # Errors
    /// As [`MatRef::new`].
    #[inline]
    pub fn col_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::new(data, rows, cols, 1, rows)
    }

    /// The transposed view (no copy).
    #[inline]
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// The `rows × cols` block starting at (`row`, `col`).
    ///
    /// # Errors
    /// [`KernelError::OutOfBounds`] if the block leaves the matrix.
    pub fn submatrix(
        self,
        row: usize,
        col: usize,
        rows: usize,
        cols: usize,
    ) -> Result<Self, KernelError> {
        let (start, len) = sub_range(
            self.data.len(),
            (self.rows, self.cols),
            (self.rs, self.cs),
            (row, col, rows, cols),
        )?;
        Ok(MatRef {
            data: &self.data[start..start + len],
            rows,
            cols,
            rs: self.rs,
            cs: self.cs,
        })
    }

    /// Number of rows.
    #[inline]
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    #[inline]
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Step between rows, in elements.
    #[inline]
    pub fn row_stride(&self) -> usize {
        self.rs
    }
    /// Step between columns, in elements.
    #[inline]
    pub fn col_stride(&self) -> usize {
        self.cs
    }
    /// Element (i, j), or `None` outside the matrix.
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> Option<f32> {
        (i < self.rows && j < self.cols).then(|| self.data[i * self.rs + j * self.cs])
    }
    pub(crate) fn ptr(&self) -> *const f32 {
        self.data.as_ptr()
    }
}

/// Start and length in `data` of a sub-block, checked.
fn sub_range(
    len: usize,
    (nr, nc): (usize, usize),
    (rs, cs): (usize, usize),
    (row, col, rows, cols): (usize, usize, usize, usize),
) -> Result<(usize, usize), KernelError> {
    let fits =
        |start: usize, n: usize, total: usize| start.checked_add(n).is_some_and(|e| e <= total);
    if !fits(row, rows, nr) || !fits(col, cols, nc) {
        return Err(KernelError::bounds(
            "submatrix",
            format!("a {rows}x{cols} block at ({row}, {col}) leaves a {nr}x{nc} matrix"),
        ));
    }
    if rows == 0 || cols == 0 {
        return Ok((0, 0));
    }
    // In bounds of the parent, so none of these overflow.
    let start = row * rs + col * cs;
    let last = (rows - 1) * rs + (cols - 1) * cs;
    debug_assert!(start + last < len);
    Ok((start, last + 1))
}

/// A mutable view of an f32 matrix; its elements never overlap (checked).
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatMut<'a> {
    /// A mutable view with explicit strides (in elements).
    ///
    /// # Errors
    /// [`KernelError::OutOfBounds`] as [`MatRef::new`];
    /// [`KernelError::Overlapping`] if two elements would share memory
    /// (e.g. a zero stride along a dimension longer than 1).
    #[inline]
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, KernelError> {
        check_bounds(data.len(), rows, cols, row_stride, col_stride)?;
        check_no_overlap(rows, cols, row_stride, col_stride)?;
        Ok(MatMut {
            data,
            rows,
            cols,
            rs: row_stride,
            cs: col_stride,
        })
    }

    /// Row-major `rows × cols`.
    ///
    /// # Errors
    /// As [`MatMut::new`].
    #[inline]
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// Column-major `rows × cols`.
    ///
    /// # Errors
    /// As [`MatMut::new`].
    #[inline]
    pub fn col_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::new(data, rows, cols, 1, rows)
    }

    /// The transposed view (no copy).
    #[inline]
    pub fn t(self) -> Self {
        MatMut {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            data: self.data,
        }
    }

    /// The `rows × cols` block starting at (`row`, `col`).
    ///
    /// # Errors
    /// [`KernelError::OutOfBounds`] if the block leaves the matrix.
    pub fn submatrix(
        self,
        row: usize,
        col: usize,
        rows: usize,
        cols: usize,
    ) -> Result<Self, KernelError> {
        let (start, len) = sub_range(
            self.data.len(),
            (self.rows, self.cols),
            (self.rs, self.cs),
            (row, col, rows, cols),
        )?;
        Ok(MatMut {
            data: &mut self.data[start..start + len],
            rows,
            cols,
            rs: self.rs,
            cs: self.cs,
        })
    }

    /// A read-only view of the same elements.
    #[inline]
    pub fn as_ref(&self) -> MatRef<'_> {
        MatRef {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
        }
    }

    /// A shorter-lived mutable view of the same elements.
    #[inline]
    pub fn rb_mut(&mut self) -> MatMut<'_> {
        MatMut {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
        }
    }

    /// Number of rows.
    #[inline]
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    #[inline]
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Step between rows, in elements.
    #[inline]
    pub fn row_stride(&self) -> usize {
        self.rs
    }
    /// Step between columns, in elements.
    #[inline]
    pub fn col_stride(&self) -> usize {
        self.cs
    }
    /// Element (i, j), or `None` outside the matrix.
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> Option<f32> {
        self.as_ref().get(i, j)
    }
    pub(crate) fn ptr(&mut self) -> *mut f32 {
        self.data.as_mut_ptr()
    }
}
