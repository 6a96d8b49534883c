//! Bounds-checked matrix views and the one call into the `gemm` crate.

/// A read-only strided `rows × cols` matrix over a slice: element `(i, j)` is
/// `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// Whether every element of a strided `rows × cols` view lies inside `len` values.
fn in_bounds(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
}

impl<'a> MatRef<'a> {
    /// # Panics
    /// When an element of the view lies outside `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(
            in_bounds(data.len(), rows, cols, rs, cs),
            "matrix view {rows}x{cols} (strides {rs}, {cs}) outside {} values",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The row-major `rows × cols` matrix at the start of `data`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// Rows of the view.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the view.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The transpose (a view, nothing moves).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// A writable strided `rows × cols` matrix over a slice whose elements are distinct values
/// (unit stride along one axis, the other stride at least that axis' length).
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatMut<'a> {
    /// # Panics
    /// When an element of the view lies outside `data`, or two elements share a value.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(
            in_bounds(data.len(), rows, cols, rs, cs),
            "matrix view {rows}x{cols} (strides {rs}, {cs}) outside {} values",
            data.len()
        );
        assert!(
            rows <= 1 || cols <= 1 || (cs == 1 && rs >= cols) || (rs == 1 && cs >= rows),
            "overlapping output view {rows}x{cols} (strides {rs}, {cs})"
        );
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The row-major `rows × cols` matrix at the start of `data`.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`, single-threaded (callers
/// parallelise over images, so that results do not depend on the thread count).
///
/// # Panics
/// When the shapes do not chain (`lhs: m × k`, `rhs: k × n`, `dst: m × n`).
pub fn matmul(dst: MatMut<'_>, lhs: MatRef<'_>, rhs: MatRef<'_>, accumulate: bool) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    assert!(
        lhs.rows == m && rhs.rows == k && rhs.cols == n,
        "matmul: {}x{} · {}x{} into {m}x{n}",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[i * dst.rs + j * dst.cs] = 0.0;
                }
            }
        }
        return;
    }
    // SAFETY: `gemm::gemm` reads `lhs` at `i·rs + l·cs` for i < m, l < k and `rhs` at
    // `l·rs + j·cs` for l < k, j < n, and writes `dst` at `i·rs + j·cs` for i < m, j < n. The
    // constructors checked that each of these offsets lies inside its slice (`in_bounds`), and
    // `MatMut::new` that distinct (i, j) address distinct values. `dst` is borrowed mutably and
    // the inputs shared, so the output aliases neither input, and nothing else reads or writes
    // these slices during the call. `Parallelism::None` keeps the call on this thread. The
    // strides fit `isize` because each is at most a slice length.
    #[allow(unsafe_code)] // the gemm crate's only entry point takes raw pointers
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    /// Row-major, transposed and strided views give the naive product; accumulation adds.
    #[test]
    fn products_of_views() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![9.0; m * n];
        matmul(
            MatMut::row_major(&mut c, m, n),
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&b, k, n),
            false,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-5);
        }
        // (bᵀ)ᵀ through a transposed copy of b, written into a column-major output
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut ct = vec![0.0; m * n];
        matmul(
            MatMut::new(&mut ct, m, n, 1, m),
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&bt, n, k).t(),
            false,
        );
        for i in 0..m {
            for j in 0..n {
                assert!((ct[j * m + i] - want[i * n + j]).abs() < 1e-5);
            }
        }
        matmul(
            MatMut::row_major(&mut c, m, n),
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&b, k, n),
            true,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - 2.0 * y).abs() < 1e-5);
        }
    }

    #[test]
    #[should_panic = "outside"]
    fn view_out_of_bounds() {
        let a = [0.0f32; 5];
        let _ = MatRef::new(&a, 2, 3, 3, 1);
    }

    #[test]
    #[should_panic = "overlapping"]
    fn overlapping_output() {
        let mut a = [0.0f32; 8];
        let _ = MatMut::new(&mut a, 2, 3, 2, 1);
    }
}
