//! Products of operands not packed ahead, on the `gemm` crate's kernels: measured faster than
//! packing them on the fly for the packed SGEMM (1.1–1.7× on the unplanned convolutions and the
//! backward products of RepVGG-A0's layers), and generic over `f32` and `f64`.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

/// `c += a · b` with the `gemm` crate's AVX-512 (x86-v4) kernels, single-threaded (the
/// callers parallelize): the unplanned convolutions, whose weights are not packed ahead (the
/// crate packs them block by block in cache, which costs far less per call than packing them
/// whole for `gemm_packed`).
pub(crate) fn sgemm(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, c: &mut ArrayViewMut2<'_, f32>) {
    gemm_accumulate(a, b, c, 1.0, ::gemm::Parallelism::None);
}

/// `a · b` in f64 (the fusion algebra's kernel products), on all of rayon's threads.
pub(crate) fn matmul_f64(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> Array2<f64> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    gemm_accumulate(a, b, &mut c.view_mut(), 1.0, ::gemm::Parallelism::Rayon(rayon::current_num_threads()));
    c
}

/// `c += a · b` with the `gemm` crate's kernels (`one` is the element type's 1).
pub(crate) fn gemm_accumulate<T: Copy + 'static>(
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    c: &mut ArrayViewMut2<'_, T>,
    one: T,
    parallelism: ::gemm::Parallelism,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert!(b.nrows() == k && c.dim() == (m, n), "operand shapes checked by the callers");
    if m == 0 || n == 0 {
        return;
    }
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the pointers and strides come from live ndarray views whose shapes were checked
    // above; `c` is borrowed mutably and does not alias `a` or `b`.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            true,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            one,
            one,
            false,
            false,
            false,
            parallelism,
        );
    }
}
