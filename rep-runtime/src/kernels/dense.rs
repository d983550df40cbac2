//! Fully connected layers, the one matrix–vector kernel of the runtime: `y[r] = act(b + W·x[r])`
//! for every row `r` of `x`, as dot products straight from the row-major weights (no packing,
//! no allocation), [`BLOCK`] outputs per parallel task and every row of `x` against a block while
//! it is in cache. `Linear::forward`, a plan's classifier and squeeze-excite all run it.

use super::Activation;
use super::SendPtr;
use rayon::prelude::*;

/// Outputs per parallel task.
const BLOCK: usize = 128;

/// `y[r·outputs + o] = activation(bias[o] + Σ_i weight[o·inputs + i] · x[r·inputs + i])` for
/// `weight: [outputs, inputs]`, `bias: [outputs]`, `x: [rows, inputs]`, `y: [rows, outputs]`
/// (`outputs = bias.len()`; the callers size every slice).
pub(crate) fn dense_into(
    weight: &[f32],
    bias: &[f32],
    inputs: usize,
    x: &[f32],
    y: &mut [f32],
    activation: Activation,
) {
    let outputs = bias.len();
    debug_assert!(weight.len() == outputs * inputs && y.len() * inputs == x.len() * outputs);
    if inputs == 0 || outputs == 0 {
        for y_r in y.chunks_exact_mut(outputs.max(1)) {
            y_r.iter_mut().zip(bias).for_each(|(y, b)| *y = activation.apply(*b));
        }
        return;
    }
    let y_ptr = SendPtr(y.as_mut_ptr());
    weight.par_chunks(BLOCK * inputs).zip(bias.par_chunks(BLOCK)).enumerate().for_each(|(block, (w, b))| {
        for (r, x_r) in x.chunks_exact(inputs).enumerate() {
            // SAFETY: outputs `block·BLOCK ..` of row `r` lie inside `y` (`rows × outputs`) and
            // belong to this block alone.
            let y_r = unsafe { std::slice::from_raw_parts_mut(y_ptr.get().add(r * outputs + block * BLOCK), b.len()) };
            for ((y, w), b) in y_r.iter_mut().zip(w.chunks_exact(inputs)).zip(b) {
                *y = activation.apply(b + dot(w, x_r));
            }
        }
    });
}

/// `Σ a[i]·b[i]` (`a` and `b` of one length): four 16-lane fused multiply-add chains on
/// AVX-512, eight plain accumulators elsewhere.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of unequal lengths");
    #[cfg(target_arch = "x86_64")]
    if super::isa::avx512() {
        // SAFETY: the CPU has AVX-512F; the lengths are equal.
        return unsafe { dot_avx512(a, b) };
    }
    let mut lanes = [0.0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(p, q)| p * q).sum();
    for (p, q) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += p[lane] * q[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// [`dot`] in four independent chains of 16 lanes (the plain loop's one chain of additions,
/// latency-bound, made the classifier 1.2–1.7× slower than ONNX Runtime's).
///
/// # Safety
/// The CPU supports AVX-512F; `a.len() == b.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use super::lane_mask;
    use std::arch::x86_64::*;
    let (n, a, b) = (a.len(), a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (all loads): `i + 64 ≤ n` in the loop; the masks keep the rest inside `n`.
    while i + 64 <= n {
        for (j, acc_j) in acc.iter_mut().enumerate() {
            unsafe {
                let (p, q) = (_mm512_loadu_ps(a.add(i + 16 * j)), _mm512_loadu_ps(b.add(i + 16 * j)));
                *acc_j = _mm512_fmadd_ps(p, q, *acc_j);
            }
        }
        i += 64;
    }
    while i < n {
        let mask = lane_mask(n - i);
        unsafe {
            let (p, q) = (_mm512_maskz_loadu_ps(mask, a.add(i)), _mm512_maskz_loadu_ps(mask, b.add(i)));
            acc[0] = _mm512_fmadd_ps(p, q, acc[0]);
        }
        i += 16;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    #[test]
    fn dot_matches_f64_at_every_length_and_keeps_nan() {
        for n in 0..200 {
            let (a, b) = (values(n, 1), values(n, 2));
            let want: f64 = a.iter().zip(&b).map(|(p, q)| f64::from(*p) * f64::from(*q)).sum();
            let got = f64::from(dot(&a, &b));
            assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "length {n}: {got} vs {want}");
        }
        let (mut a, b) = (values(100, 3), values(100, 4));
        a[77] = f32::NAN;
        assert!(dot(&a, &b).is_nan());
    }
}
