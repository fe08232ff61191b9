//! The matrix products behind [`Dense`](crate::Dense), through the `gemm`
//! crate: kernels for SSE to AVX2 and NEON, and AVX-512 with the default
//! feature `avx512`, picked at run time; no system library, any strides
//! (transposed, stepped, reversed views).
//!
//! Chosen over ndarray's `general_mat_mul` (the `matrixmultiply` crate, whose
//! kernels stop at AVX2 and whose small products are slow) by measurement:
//! `cargo bench --bench networks -- dense_products` compares them; the
//! CHANGELOG has the figures.

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::real::Real;

/// Products at least this large (`m·n·k` multiply-adds) are split across
/// threads with the `rayon` feature; smaller ones cost more to split than
/// to compute (the elementwise kernels' threshold idea, for products).
#[cfg(feature = "rayon")]
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// `c = a b` (`accumulate = false`) or `c += a b` (`accumulate = true`), for
/// `a` of shape `(m, k)`, `b` of `(k, n)` and `c` of `(m, n)`, any layouts.
pub(crate) fn product_into<F: Real>(
    a: &ArrayView2<'_, F>,
    b: &ArrayView2<'_, F>,
    c: &mut ArrayViewMut2<'_, F>,
    accumulate: bool,
) {
    let ((m, k), n) = (a.dim(), b.ncols());
    debug_assert_eq!(b.nrows(), k);
    debug_assert_eq!(c.dim(), (m, n));
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: c + 0, or 0.
        if !accumulate {
            c.fill(F::zero());
        }
        return;
    }
    let [a_rows, a_cols] = [a.strides()[0], a.strides()[1]];
    let [b_rows, b_cols] = [b.strides()[0], b.strides()[1]];
    let [c_rows, c_cols] = [c.strides()[0], c.strides()[1]];
    // SAFETY: every pointer is the first logical element of a live ndarray
    // view whose shape is the (m, k), (k, n) or (m, n) passed, and whose
    // strides (in elements, possibly negative) are the ones passed, so every
    // element gemm reads or writes is inside its view. `c` is borrowed
    // mutably and `a`, `b` immutably, so the output aliases neither input.
    // `F` is f32 or f64 (`Real` is implemented for nothing else), the types
    // gemm supports; for others it would panic, not misbehave.
    // Tested by the Dense tests, and by `product_matches_ndarray_on_every_layout`
    // below on transposed, stepped and reversed views.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cols,
            c_rows,
            accumulate,
            a.as_ptr(),
            a_cols,
            a_rows,
            b.as_ptr(),
            b_cols,
            b_rows,
            // dst = alpha · dst + beta · a b; alpha is read only with read_dst.
            F::ONE,
            F::ONE,
            false,
            false,
            false,
            parallelism(m * n * k),
        );
    }
}

/// Splits a large product across rayon's threads, unless this is one of
/// them already: a product inside a parallel loop (a convolution's samples)
/// runs on its own thread, as nested splitting only adds overhead.
#[cfg(feature = "rayon")]
fn parallelism(work: usize) -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if work >= PARALLEL_MIN_WORK && threads > 1 && rayon::current_thread_index().is_none() {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

#[cfg(not(feature = "rayon"))]
fn parallelism(_work: usize) -> gemm::Parallelism {
    gemm::Parallelism::None
}

#[cfg(test)]
mod tests {
    use ndarray::linalg::general_mat_mul;
    use ndarray::{Array2, s};

    use super::*;

    #[test]
    fn product_matches_ndarray_on_every_layout() {
        let a = Array2::from_shape_fn((9, 14), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let b = Array2::from_shape_fn((14, 12), |(i, j)| ((i * 5 + j) % 13) as f64 - 6.0);
        let views_a = [a.view(), a.slice(s![..;-1, ..]), a.slice(s![..;2, ..;-1])];
        for a in views_a {
            let k = a.ncols();
            for b in [b.slice(s![..k, ..]), b.slice(s![..k;-1, ..;3])] {
                for transposed_c in [false, true] {
                    let mut want = Array2::from_elem((a.nrows(), b.ncols()), 0.5);
                    let mut got = if transposed_c {
                        Array2::from_elem((b.ncols(), a.nrows()), 0.5).reversed_axes()
                    } else {
                        want.clone()
                    };
                    for accumulate in [false, true] {
                        general_mat_mul(1.0, &a, &b, if accumulate { 1.0 } else { 0.0 }, &mut want);
                        product_into(&a, &b, &mut got.view_mut(), accumulate);
                        // Small integers: both are exact.
                        assert_eq!(
                            got, want,
                            "accumulate {accumulate}, transposed c {transposed_c}"
                        );
                    }
                }
            }
        }
        // Empty sums and empty results.
        let mut c = Array2::from_elem((2, 3), 7.0);
        product_into(
            &Array2::<f64>::zeros((2, 0)).view(),
            &Array2::zeros((0, 3)).view(),
            &mut c.view_mut(),
            true,
        );
        assert_eq!(c, Array2::from_elem((2, 3), 7.0));
        product_into(
            &Array2::<f64>::zeros((2, 0)).view(),
            &Array2::zeros((0, 3)).view(),
            &mut c.view_mut(),
            false,
        );
        assert_eq!(c, Array2::<f64>::zeros((2, 3)));
        let mut empty = Array2::<f32>::zeros((0, 3));
        product_into(
            &Array2::zeros((0, 4)).view(),
            &Array2::ones((4, 3)).view(),
            &mut empty.view_mut(),
            false,
        );
    }
}
