//! F(4×4, 3×3)'s transforms in AVX-512, sixteen tiles per register.

use super::XI;
use crate::kernels::lane_mask;
use crate::kernels::winograd::{Tiling, pad_channel};
use std::arch::x86_64::*;

/// `Bᵀ d` for six registers of sixteen tiles each; rows 1–4 are even parts ± odd parts.
#[inline]
#[target_feature(enable = "avx512f")]
fn input_1d(d: [__m512; 6]) -> [__m512; 6] {
    let k = _mm512_set1_ps;
    // a·x − b·y
    let difference = |a: f32, x: __m512, b: f32, y: __m512| _mm512_fmsub_ps(k(a), x, _mm512_mul_ps(k(b), y));
    let (even1, odd1) = (difference(12.0, d[4], 27.0, d[2]), difference(18.0, d[1], 8.0, d[3]));
    let (even2, odd2) = (difference(18.0, d[4], 8.0, d[2]), difference(12.0, d[1], 27.0, d[3]));
    [
        difference(36.0, _mm512_add_ps(d[0], d[4]), 97.0, d[2]),
        _mm512_sub_ps(even1, odd1),
        _mm512_add_ps(even1, odd1),
        _mm512_sub_ps(even2, odd2),
        _mm512_add_ps(even2, odd2),
        difference(36.0, _mm512_add_ps(d[1], d[5]), 97.0, d[3]),
    ]
}

/// `Aᵀ m` for six registers of sixteen tiles each.
#[inline]
#[target_feature(enable = "avx512f")]
fn output_1d(m: [__m512; 6]) -> [__m512; 4] {
    let k = _mm512_set1_ps;
    let (a, b) = (_mm512_add_ps(m[1], m[2]), _mm512_sub_ps(m[1], m[2]));
    let (c, d) = (_mm512_add_ps(m[3], m[4]), _mm512_sub_ps(m[3], m[4]));
    [
        _mm512_fmadd_ps(k(27.0), a, _mm512_fmadd_ps(k(8.0), c, m[0])),
        _mm512_fmadd_ps(k(18.0), b, _mm512_mul_ps(k(12.0), d)),
        _mm512_fmadd_ps(k(12.0), a, _mm512_mul_ps(k(18.0), c)),
        _mm512_fmadd_ps(k(8.0), b, _mm512_fmadd_ps(k(27.0), d, m[5])),
    ]
}

/// `Bᵀ` applied to column `l` of `d B` (`d`: its six rows, for sixteen tiles), stored as the
/// six values `(k, l)` of the `n` tiles from `at` in `v_c` (`[36][columns]`).
///
/// # Safety
/// The CPU supports AVX-512F; `at + n ≤ columns`, `n ≤ 16`, `v_c` holds `36·columns` floats.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store_input_column(d: [__m512; 6], l: usize, v_c: &mut [f32], columns: usize, at: usize, n: usize) {
    for (k, value) in input_1d(d).into_iter().enumerate() {
        let index = (6 * k + l) * columns + at;
        debug_assert!(index + n <= v_c.len());
        // SAFETY: `n` tiles from `at` lie inside row 6k + l of `v_c`.
        unsafe { _mm512_mask_storeu_ps(v_c.as_mut_ptr().add(index), lane_mask(n), value) };
    }
}

/// `Aᵀ m A` + bias of the `n` tiles from `at` (`m_o`: `[36][columns]`): `rows[i][j]` holds
/// output `(i, j)` of each tile, a tile per lane. (Plain loops: closures passed to
/// `array::from_fn` or `map` were not inlined into these functions, and moved every register
/// through memory.)
///
/// # Safety
/// The CPU supports AVX-512F; `at + n ≤ columns`, `n ≤ 16`, `m_o` holds `36·columns` floats.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn output_tiles(m_o: &[f32], columns: usize, at: usize, n: usize, bias: __m512) -> [[__m512; 4]; 4] {
    debug_assert!(35 * columns + at + n <= m_o.len());
    // Aᵀ m, one column of the 6×6 tile at a time: s[i][j].
    let mut s = [[_mm512_setzero_ps(); 6]; 4];
    for j in 0..6 {
        let mut column = [_mm512_setzero_ps(); 6];
        for (a, value) in column.iter_mut().enumerate() {
            // SAFETY: `n` tiles from `at` lie inside row 6a + j of `m_o`.
            *value = unsafe { _mm512_maskz_loadu_ps(lane_mask(n), m_o.as_ptr().add((6 * a + j) * columns + at)) };
        }
        for (s_i, value) in s.iter_mut().zip(output_1d(column)) {
            s_i[j] = value;
        }
    }
    let mut rows = [[_mm512_setzero_ps(); 4]; 4];
    for (row, s_i) in rows.iter_mut().zip(s) {
        for (value, sum) in row.iter_mut().zip(output_1d(s_i)) {
            *value = _mm512_add_ps(sum, bias);
        }
    }
    rows
}

/// [`super::input_portable`] sixteen tiles at a time: [`input_narrow`] on maps at most
/// [`NARROW_TILES`] tiles wide, [`input_wide`] on wider ones.
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(in crate::kernels::winograd) unsafe fn input(x: &[f32], channels: usize, c: usize, t: &Tiling, v_c: &mut [f32]) {
    // SAFETY: AVX-512F, as the caller guarantees; the width is checked.
    unsafe {
        if t.tiles.w <= NARROW_TILES {
            input_narrow(x, channels, c, t, v_c)
        } else {
            input_wide(x, channels, c, t, v_c)
        }
    }
}

/// [`super::input_portable`] sixteen tiles of a row of tiles at a time. The channel is copied into a
/// zero-padded plane; `d B` is applied once per plane row (each serves up to two rows of
/// tiles), gathering column `4·tx + b` of sixteen tiles with two permutations; `Bᵀ (d B)`
/// then combines six such rows per row of tiles.
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn input_wide(x: &[f32], channels: usize, c: usize, t: &Tiling, v_c: &mut [f32]) {
    let (h, w) = (t.input.h, t.input.w);
    let (tiles_h, tiles_w) = (t.tiles.h, t.tiles.w);
    let chunks = tiles_w.div_ceil(16);
    // Chunk `q` reads plane columns 64q .. 64q + 69.
    let width = 64 * chunks + 16;
    let height = 4 * tiles_h + 2;
    let lanes = 16 * chunks;
    let columns = t.columns();
    let every_fourth = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    crate::kernels::scratch::with(crate::kernels::scratch::Buffer::WinogradRows, |scratch| {
        let need = height * width + 6 * height * lanes;
        let (plane, rows) = crate::kernels::scratch::lines(scratch, need).split_at_mut(height * width);
        for image in 0..t.images {
            let x_c = &x[(image * channels + c) * h * w..][..h * w];
            pad_channel(x_c, t, 4, plane, width);
            // d B for every plane row: rows[l][r][tile].
            for (r, row) in plane.chunks_exact(width).enumerate() {
                for q in 0..chunks {
                    // SAFETY: reads columns 64q + b .. 64q + b + 64 ≤ width of the row.
                    let load = |offset: usize| unsafe { _mm512_loadu_ps(row.as_ptr().add(64 * q + offset)) };
                    let column = |b: usize| {
                        let low = _mm512_permutex2var_ps(load(b), every_fourth, load(b + 16));
                        let high = _mm512_permutex2var_ps(load(b + 32), every_fourth, load(b + 48));
                        _mm512_shuffle_f32x4::<0b01_00_01_00>(low, high)
                    };
                    let mixed = input_1d(std::array::from_fn(column));
                    for (l, value) in mixed.into_iter().enumerate() {
                        // SAFETY: sixteen lanes of row r of rows[l], inside `rows`.
                        unsafe { _mm512_storeu_ps(rows.as_mut_ptr().add((l * height + r) * lanes + 16 * q), value) };
                    }
                }
            }
            // Bᵀ (d B): six plane rows per row of tiles.
            let first = image * tiles_h * tiles_w;
            for ty in 0..tiles_h {
                for q in 0..chunks {
                    let n = 16.min(tiles_w - 16 * q);
                    let at = first + ty * tiles_w + 16 * q;
                    for l in 0..6 {
                        // SAFETY: rows 4ty .. 4ty + 6 < height of rows[l].
                        let d = std::array::from_fn(|a| unsafe {
                            _mm512_loadu_ps(rows.as_ptr().add((l * height + 4 * ty + a) * lanes + 16 * q))
                        });
                        // SAFETY: `n` tiles from `at`, inside the image's tiles.
                        unsafe { store_input_column(d, l, v_c, columns, at, n) };
                    }
                }
            }
        }
    });
}

/// [`super::input_portable`] for maps at most [`NARROW_TILES`] tiles wide, whose rows of tiles
/// would leave most of a register's sixteen lanes idle: each register holds sixteen
/// consecutive tiles of an image, across rows of tiles. The channel is copied into a
/// zero-padded plane as wide as the tiles need; for each row of tiles met by the sixteen, two
/// loads of a plane row serve the six columns `4·tx + b` of its tiles (one permutation each,
/// blended into the lanes of that row of tiles). Then `d B` and `Bᵀ (d B)`.
///
/// # Safety
/// The CPU supports AVX-512F; `t.tiles.w ≤ NARROW_TILES`.
#[target_feature(enable = "avx512f")]
unsafe fn input_narrow(x: &[f32], channels: usize, c: usize, t: &Tiling, v_c: &mut [f32]) {
    let (h, w) = (t.input.h, t.input.w);
    let (tiles_w, per_image, columns) = (t.tiles.w, t.per_image(), t.columns());
    debug_assert!(tiles_w <= NARROW_TILES);
    let (width, height) = (4 * tiles_w + 2, 4 * t.tiles.h + 2);
    crate::kernels::scratch::with(crate::kernels::scratch::Buffer::WinogradRows, |scratch| {
        // Room for the two loads from the last row's start.
        let plane = crate::kernels::scratch::lines(scratch, height * width + 32);
        for image in 0..t.images {
            let x_c = &x[(image * channels + c) * h * w..][..h * w];
            pad_channel(x_c, t, 4, &mut plane[..height * width], width);
            for first in (0..per_image).step_by(16) {
                let n = 16.min(per_image - first);
                // Lane i holds tile first + i: column 4·tx (+ b) of the 32 loaded from its row.
                let column: [i32; 16] = std::array::from_fn(|i| (4 * ((first + i) % tiles_w)) as i32);
                // SAFETY: sixteen i32s.
                let column = unsafe { _mm512_loadu_si512(column.as_ptr().cast()) };
                let mut columns_b = [column; 6];
                for (b, index) in columns_b.iter_mut().enumerate() {
                    *index = _mm512_add_epi32(column, _mm512_set1_epi32(b as i32));
                }
                // The rows of tiles met, each with its lanes.
                let (first_row, last_row) = (first / tiles_w, (first + n - 1) / tiles_w);
                // d B, row a of every tile, stored transposed: columns_of_d_b[l][a] (plain loops,
                // as in `output_tiles`).
                let mut columns_of_d_b = [[_mm512_setzero_ps(); 6]; 6];
                for a in 0..6 {
                    let mut d = [_mm512_setzero_ps(); 6];
                    for ty in first_row..=last_row {
                        let lanes = (ty * tiles_w).saturating_sub(first)..((ty + 1) * tiles_w - first).min(n);
                        let mask = lane_mask(lanes.end) & !lane_mask(lanes.start);
                        // SAFETY: 32 floats from the start of plane row 4ty + a < height.
                        let (low, high) = unsafe {
                            let row = plane.as_ptr().add((4 * ty + a) * width);
                            (_mm512_loadu_ps(row), _mm512_loadu_ps(row.add(16)))
                        };
                        for (d_b, index) in d.iter_mut().zip(&columns_b) {
                            *d_b = _mm512_mask_blend_ps(mask, *d_b, _mm512_permutex2var_ps(low, *index, high));
                        }
                    }
                    for (column, value) in columns_of_d_b.iter_mut().zip(input_1d(d)) {
                        column[a] = value;
                    }
                }
                let at = image * per_image + first;
                for (l, column) in columns_of_d_b.into_iter().enumerate() {
                    // SAFETY: `n` tiles from `at`, inside the image's tiles.
                    unsafe { store_input_column(column, l, v_c, columns, at, n) };
                }
            }
        }
    });
}

/// Widest maps, in tiles, for [`input_narrow`]: its permutations reach column `4·6 + 5` of
/// the 32 loaded.
const NARROW_TILES: usize = 7;

/// [`super::output_portable`] sixteen tiles at a time: [`output_narrow`] on maps at most
/// [`NARROW_TILES`] tiles wide, [`output_wide`] on wider ones.
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
    // SAFETY: AVX-512F, as the caller guarantees; the width is checked.
    unsafe {
        if t.tiles.w <= NARROW_TILES {
            output_narrow(m_o, image, t, columns, bias, y)
        } else {
            output_wide(m_o, image, t, columns, bias, y)
        }
    }
}

/// `Aᵀ m A` + bias for sixteen consecutive tiles of an image at a time (across rows of tiles,
/// as [`input_narrow`] lays them out). Each output row of a row of tiles is then gathered
/// from the four registers of its column within the tiles by two permutations and a blend.
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn output_narrow(m_o: &[f32], image: usize, t: &Tiling, columns: usize, bias: f32, y: &mut [f32]) {
    let (out_h, out_w, tiles_w, per_image) = (t.output.h - 4 * t.row_offset, t.output.w, t.tiles.w, t.per_image());
    let bias = _mm512_set1_ps(bias);
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let k = _mm512_set1_epi32;
    for first in (0..per_image).step_by(16) {
        let n = 16.min(per_image - first);
        // SAFETY: `n` tiles from `at`, inside the image's tiles.
        let rows = unsafe { output_tiles(m_o, columns, image * per_image + first, n, bias) };
        for ty in first / tiles_w..=(first + n - 1) / tiles_w {
            for half in 0..(4 * tiles_w).div_ceil(16) {
                // Output column c = 16·half + lane comes from the lane of tile c / 4 (+ 16 to
                // take the odd register of a pair) and from registers (c mod 4) of rows[i].
                let c = _mm512_add_epi32(iota, k(16 * half as i32));
                let lane = _mm512_sub_epi32(
                    _mm512_add_epi32(k((ty * tiles_w) as i32), _mm512_srli_epi32::<2>(c)),
                    k(first as i32),
                );
                let index = _mm512_add_epi32(lane, _mm512_slli_epi32::<4>(_mm512_and_si512(c, k(1))));
                // Columns of the row whose tiles are among these sixteen.
                let store = _mm512_cmplt_epi32_mask(c, k(out_w as i32))
                    & _mm512_cmpge_epi32_mask(lane, k(0))
                    & _mm512_cmplt_epi32_mask(lane, k(n as i32));
                for (i, row) in rows.iter().enumerate() {
                    let r = 4 * ty + i;
                    if r >= out_h {
                        break;
                    }
                    let pair_low = _mm512_permutex2var_ps(row[0], index, row[1]);
                    let pair_high = _mm512_permutex2var_ps(row[2], index, row[3]);
                    // Columns 2 and 3 of each tile (c mod 4 ≥ 2) come from the second pair.
                    let value = _mm512_mask_blend_ps(0xcccc, pair_low, pair_high);
                    // SAFETY: the mask keeps to the columns below `out_w` of output row r.
                    unsafe { _mm512_mask_storeu_ps(y.as_mut_ptr().add(r * out_w + 16 * half), store, value) };
                }
            }
        }
    }
}

/// `Aᵀ m A` + bias for sixteen tiles of a row of tiles at a time; the sixteen outputs of
/// each tile row are interleaved into 64 consecutive output columns.
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn output_wide(m_o: &[f32], image: usize, t: &Tiling, columns: usize, bias: f32, y: &mut [f32]) {
    let (out_h, out_w, tiles_w) = (t.output.h - 4 * t.row_offset, t.output.w, t.tiles.w);
    let first = image * t.per_image();
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let pairs_low = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    let pairs_high = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    let bias = _mm512_set1_ps(bias);
    for ty in 0..t.tiles.h {
        for q in 0..tiles_w.div_ceil(16) {
            let n = 16.min(tiles_w - 16 * q);
            // SAFETY: `n` tiles from `first + ty·tiles_w + 16q`, inside the image's tiles.
            let rows = unsafe { output_tiles(m_o, columns, first + ty * tiles_w + 16 * q, n, bias) };
            for (i, &[y0, y1, y2, y3]) in rows.iter().enumerate() {
                let row = 4 * ty + i;
                if row >= out_h {
                    break;
                }
                let (a_low, a_high) = (_mm512_permutex2var_ps(y0, low, y1), _mm512_permutex2var_ps(y0, high, y1));
                let (b_low, b_high) = (_mm512_permutex2var_ps(y2, low, y3), _mm512_permutex2var_ps(y2, high, y3));
                let quad = |a: __m512, index: __m512i, b: __m512| {
                    _mm512_castpd_ps(_mm512_permutex2var_pd(_mm512_castps_pd(a), index, _mm512_castps_pd(b)))
                };
                let segments = [
                    quad(a_low, pairs_low, b_low),
                    quad(a_low, pairs_high, b_low),
                    quad(a_high, pairs_low, b_high),
                    quad(a_high, pairs_high, b_high),
                ];
                let col = 64 * q;
                let cols = out_w - col;
                let out = y[row * out_w + col..].as_mut_ptr();
                for (segment, value) in segments.into_iter().enumerate() {
                    if cols > 16 * segment {
                        // SAFETY: the mask keeps to the `cols` columns of this output row.
                        unsafe { _mm512_mask_storeu_ps(out.add(16 * segment), lane_mask(cols - 16 * segment), value) };
                    }
                }
            }
        }
    }
}

const _: () = assert!(XI == 36);
