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

/// `Σ a[i]·b[i]` with eight independent accumulators, so the compiler can vectorize it.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
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
