//! F(2×2, 3×3)'s transforms in AVX-512, sixteen tiles per register.

use super::XI;
use crate::kernels::lane_mask;
use crate::kernels::winograd::{Tiling, pad_channel};
use std::arch::x86_64::*;

/// [`super::input_portable`] sixteen tiles at a time: the channel is copied into a
/// zero-padded plane, `Bᵀ d` combines four plane rows as whole registers, and the column
/// step `(e[i] − e[i+1], o[i] + e[i+1], e[i+1] − o[i], o[i] − o[i+1])` takes the even and
/// odd columns `e`, `o` of 32 (and, shifted by two, of the next 32) columns with one
/// permutation each.
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(in crate::kernels::winograd) unsafe fn input(x: &[f32], channels: usize, c: usize, t: &Tiling, v_c: &mut [f32]) {
    let (h, w) = (t.input.h, t.input.w);
    let (tiles_h, tiles_w) = (t.tiles.h, t.tiles.w);
    let chunks = tiles_w.div_ceil(16);
    // Chunk `q` reads plane columns 32q .. 32q + 34.
    let width = 32 * chunks + 16;
    let height = 2 * tiles_h + 2;
    let columns = t.columns();
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    crate::kernels::scratch::with(crate::kernels::scratch::Buffer::WinogradRows, |scratch| {
        let plane = crate::kernels::scratch::lines(scratch, height * width);
        for image in 0..t.images {
            let x_c = &x[(image * channels + c) * h * w..][..h * w];
            pad_channel(x_c, t, 2, plane, width);
            let first = image * tiles_h * tiles_w;
            for ty in 0..tiles_h {
                let rows: [&[f32]; 4] = std::array::from_fn(|k| &plane[(2 * ty + k) * width..][..width]);
                for q in 0..chunks {
                    let n = 16.min(tiles_w - 16 * q);
                    let mask = lane_mask(n);
                    // SAFETY: every load reads columns 32q .. 32q + 34 < width of a plane row.
                    let load =
                        |row: &[f32], offset: usize| unsafe { _mm512_loadu_ps(row.as_ptr().add(32 * q + offset)) };
                    // Bᵀ d for columns 32q + [0, 16, 2, 18] .. + 16.
                    let mixed = |offset: usize| {
                        let [r0, r1, r2, r3] = rows.map(|row| load(row, offset));
                        [_mm512_sub_ps(r0, r2), _mm512_add_ps(r1, r2), _mm512_sub_ps(r2, r1), _mm512_sub_ps(r1, r3)]
                    };
                    let (lo, hi, lo2, hi2) = (mixed(0), mixed(16), mixed(2), mixed(18));
                    let at = first + ty * tiles_w + 16 * q;
                    for k in 0..4 {
                        let e = _mm512_permutex2var_ps(lo[k], even, hi[k]);
                        let o = _mm512_permutex2var_ps(lo[k], odd, hi[k]);
                        let e1 = _mm512_permutex2var_ps(lo2[k], even, hi2[k]);
                        let o1 = _mm512_permutex2var_ps(lo2[k], odd, hi2[k]);
                        let outs =
                            [_mm512_sub_ps(e, e1), _mm512_add_ps(o, e1), _mm512_sub_ps(e1, o), _mm512_sub_ps(o, o1)];
                        for (l, value) in outs.into_iter().enumerate() {
                            let index = (4 * k + l) * columns + at;
                            debug_assert!(index + n <= v_c.len());
                            // SAFETY: `n` tiles from `at` lie inside row 4k + l of `v_c`.
                            unsafe { _mm512_mask_storeu_ps(v_c.as_mut_ptr().add(index), mask, value) };
                        }
                    }
                }
            }
        }
    });
}

/// `Aᵀ m A` + bias for sixteen tiles of a row of tiles at a time; the four outputs of each
/// tile are interleaved into two 32-column segments of the two output rows it covers.
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(in crate::kernels::winograd) unsafe fn output(
    m_o: &[f32],
    image: usize,
    t: &Tiling,
    columns: usize,
    bias: f32,
    y: &mut [f32],
) {
    let (out_h, out_w, tiles_w) = (t.output.h - 2 * t.row_offset, t.output.w, t.tiles.w);
    let first = image * t.per_image();
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let bias = _mm512_set1_ps(bias);
    for ty in 0..t.tiles.h {
        for q in 0..tiles_w.div_ceil(16) {
            let n = 16.min(tiles_w - 16 * q);
            let at = first + ty * tiles_w + 16 * q;
            // SAFETY: `n` tiles from `at` lie inside each of the 16 rows of `m_o`.
            let m: [__m512; XI] = std::array::from_fn(|xi| unsafe {
                _mm512_maskz_loadu_ps(lane_mask(n), m_o.as_ptr().add(xi * columns + at))
            });
            // Aᵀ m: rows 0+1+2 and 1−2−3 of each column.
            let s0: [__m512; 4] = std::array::from_fn(|j| _mm512_add_ps(_mm512_add_ps(m[j], m[4 + j]), m[8 + j]));
            let s1: [__m512; 4] = std::array::from_fn(|j| _mm512_sub_ps(_mm512_sub_ps(m[4 + j], m[8 + j]), m[12 + j]));
            for (i, s) in [s0, s1].into_iter().enumerate() {
                let row = 2 * ty + i;
                if row >= out_h {
                    break;
                }
                let left = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[0], s[1]), s[2]), bias);
                let right = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[1], s[2]), s[3]), bias);
                let col = 32 * q;
                let cols = out_w - col;
                let out = y[row * out_w + col..].as_mut_ptr();
                // SAFETY: the masks keep to the `cols` columns of this output row.
                unsafe {
                    _mm512_mask_storeu_ps(out, lane_mask(cols), _mm512_permutex2var_ps(left, low, right));
                    if cols > 16 {
                        _mm512_mask_storeu_ps(
                            out.add(16),
                            lane_mask(cols - 16),
                            _mm512_permutex2var_ps(left, high, right),
                        );
                    }
                }
            }
        }
    }
}
