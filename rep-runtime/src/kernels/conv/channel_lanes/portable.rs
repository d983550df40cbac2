//! The channel-lanes micro-kernel in plain Rust, for CPUs without AVX-512 (and as the tests'
//! reference), and the same code compiled for AVX2 and FMA.

use super::{LANES, MAX_VECTORS, Tap, Tile};

/// [`portable_kernel`] compiled for AVX2 and FMA, for CPUs that have them but not AVX-512.
///
/// # Safety
/// The CPU supports AVX2 and FMA; as for [`portable_kernel`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn avx2_kernel<const V: usize, const P: usize>(taps: &[Tap], w: *const f32, tile: &Tile<P>) {
    // SAFETY: as the caller guarantees.
    unsafe { portable_kernel::<V, P>(taps, w, tile) }
}

/// The portable micro-kernel: the same sums in the same order as the AVX-512 one.
///
/// # Safety
/// Each tap's `16·V` weights lie at `w + tap[0]`; each position's input at `origin + tap[1]`
/// is readable; the tile's `channels` rows of its columns of `C` are the caller's to write.
#[inline(always)]
pub(super) unsafe fn portable_kernel<const V: usize, const P: usize>(taps: &[Tap], w: *const f32, tile: &Tile<P>) {
    let width = LANES * V;
    let mut acc = [[0.0f32; LANES * MAX_VECTORS]; P];
    for &[weight, input] in taps {
        // SAFETY: as the caller guarantees.
        let w_k = unsafe { std::slice::from_raw_parts(w.add(weight as usize), width) };
        for (j, acc_j) in acc.iter_mut().enumerate() {
            // SAFETY: as the caller guarantees.
            let x = unsafe { *tile.origins[j].wrapping_add(input as usize) };
            for (a, &w) in acc_j.iter_mut().zip(w_k) {
                *a = w.mul_add(x, *a);
            }
        }
    }
    let (out, pass) = (tile.out, tile.pass);
    // SAFETY (of every slot): row `o` < the block's channels, column `column` of the block,
    // inside the caller's region.
    let slot = |o: usize, column: usize| unsafe { out.c.add(o * out.ldc + column) };
    if pass.accumulate {
        // Every position's earlier sums are read before any is stored: a class's last call
        // repeats its last position, which must not add them twice.
        for (&column, acc_j) in tile.columns.iter().zip(&mut acc) {
            for (o, value) in acc_j.iter_mut().enumerate().take(out.channels) {
                // SAFETY: as above.
                *value += unsafe { *slot(o, column) };
            }
        }
    }
    for (&column, acc_j) in tile.columns.iter().zip(&acc) {
        for (o, &sum) in acc_j.iter().enumerate().take(out.channels) {
            // SAFETY: `o` < the block's channels.
            let bias = if out.bias.is_null() { 0.0 } else { unsafe { *out.bias.add(o) } };
            // SAFETY: as above.
            unsafe { *slot(o, column) = if pass.finish { out.activation.apply(sum + bias) } else { sum } };
        }
    }
}
