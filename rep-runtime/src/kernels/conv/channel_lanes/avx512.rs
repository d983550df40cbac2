//! The AVX-512 micro-kernel of [`super::band`]: `P` positions × `V` vectors of 16 output
//! channels in `P·V` registers.

use super::{LANES, Tap, Tile};
use crate::kernels::{activation, lane_mask};
use std::arch::x86_64::*;

/// `acc[j][v] += W[k][v] · x_j[k]` over every tap `k`, then bias and activation per vector, and a
/// store that transposes each position's channels into its column of `C`.
///
/// # Safety
/// The CPU supports AVX-512F; as for [`super::portable_kernel`].
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn kernel<const V: usize, const P: usize>(taps: &[Tap], w: *const f32, tile: &Tile<P>) {
    let mut acc = [[_mm512_setzero_ps(); V]; P];
    let origins = tile.origins;
    for (t, &[weight, input]) in taps.iter().enumerate() {
        // SAFETY: tap `k`'s weights and each position's input at this tap are readable, as the
        // caller guarantees.
        unsafe {
            // A hint only: prefetching an address outside any allocation does not fault.
            _mm_prefetch::<_MM_HINT_T0>(tile.next.wrapping_add(input as usize) as *const i8);
            _mm_prefetch::<_MM_HINT_T1>(tile.upcoming.wrapping_add(t * LANES) as *const i8);
            let w_k: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(w.add(weight as usize + v * LANES)));
            for (j, acc_j) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*origins[j].wrapping_add(input as usize));
                for v in 0..V {
                    acc_j[v] = _mm512_fmadd_ps(w_k[v], x, acc_j[v]);
                }
            }
        }
    }
    // Moved to an array that was never initialized, the accumulators are stored once here;
    // the finishing loops below index them at run time, and an initialized array made the
    // compiler store every accumulator after every multiply-add.
    let mut finished = std::mem::MaybeUninit::<[[__m512; V]; P]>::uninit();
    finished.write(acc);
    // SAFETY: written on the line above.
    let acc = unsafe { finished.assume_init_mut() };
    // Position `j`'s value of channel `o` is float `j·16·V + o` of the block.
    let values = acc.as_mut_ptr().cast::<f32>();
    let out = tile.out;
    let slot = |o: usize, j: usize| {
        // SAFETY (of the offsets): row `o` < the block's channels, column `j`'s of `C`.
        unsafe { out.c.add(o * out.ldc + tile.columns[j]) }
    };
    if tile.pass.accumulate {
        for o in 0..out.channels {
            for j in 0..P {
                // SAFETY: `o < 16·V`; the slot is inside the caller's region.
                unsafe { *values.add(j * LANES * V + o) += *slot(o, j) };
            }
        }
    }
    if tile.pass.finish {
        for v in 0..V {
            let mask = lane_mask(out.channels.saturating_sub(LANES * v));
            // SAFETY: the block's bias holds its channels (the mask keeps to them).
            let bias = (!out.bias.is_null()).then(|| unsafe { _mm512_maskz_loadu_ps(mask, out.bias.add(LANES * v)) });
            for acc_j in acc.iter_mut() {
                let value = bias.map_or(acc_j[v], |bias| _mm512_add_ps(acc_j[v], bias));
                acc_j[v] = activation::avx512_lanes(out.activation, value);
            }
        }
    }
    let values = acc.as_ptr().cast::<f32>();
    for o in 0..out.channels {
        for j in 0..P {
            // SAFETY: `o < 16·V`; the slot is inside the caller's region.
            unsafe { *slot(o, j) = *values.add(j * LANES * V + o) };
        }
    }
}
