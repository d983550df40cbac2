//! The F(4×4, 3×3) transforms, on the interpolation points 0, ±2/3, ±3/2 and ∞:
//!
//! ```text
//!      ⎡36   0 -97   0  36   0⎤        ⎡  1/36      0       0   ⎤
//!      ⎢ 0 -18 -27   8  12   0⎥        ⎢-1/520  -1/780  -1/1170⎥        ⎡1 27  27  8   8  0⎤
//! Bᵀ = ⎢ 0  18 -27  -8  12   0⎥    G = ⎢-1/520   1/780  -1/1170⎥   Aᵀ = ⎢0 18 -18 12 -12  0⎥
//!      ⎢ 0 -12  -8  27  18   0⎥        ⎢1/1170   1/780   1/520 ⎥        ⎢0 12  12 18  18  0⎥
//!      ⎢ 0  12  -8 -27  18   0⎥        ⎢1/1170  -1/780   1/520 ⎥        ⎣0  8  -8 27 -27  1⎦
//!      ⎣ 0  36   0 -97   0  36⎦        ⎣   0       0     1/36   ⎦
//! ```
//!
//! Row `j` of `Bᵀ` holds the coefficients of `∏_{l≠j} (x − p_l)` (of `∏_l (x − p_l)` for
//! ∞), column `j` of `Aᵀ` the powers of `p_j`; the scale of each is made integral, and `G`
//! carries the inverse scales and the interpolation's `1/∏_{l≠j}(p_j − p_l)`. Lavin's
//! points 0, ±1, ±2 cost fewer operations, but their rounding error was 3–4× larger in every
//! trial on unit-scale data (32 to 256 input channels), and several times the
//! F(2×2) one; these points put F(4×4) within the project's 1e-5 with a margin. Their
//! transforms keep the ± symmetry: each pair of rows is an even part ± an odd part.

use super::Tiling;

/// Positions in a transformed tile.
pub(super) const XI: usize = 36;

/// `G` of F(4×4, 3×3).
pub(super) const G: [[f64; 3]; 6] = [
    [1.0 / 36.0, 0.0, 0.0],
    [-1.0 / 520.0, -1.0 / 780.0, -1.0 / 1170.0],
    [-1.0 / 520.0, 1.0 / 780.0, -1.0 / 1170.0],
    [1.0 / 1170.0, 1.0 / 780.0, 1.0 / 520.0],
    [1.0 / 1170.0, -1.0 / 780.0, 1.0 / 520.0],
    [0.0, 0.0, 1.0 / 36.0],
];

/// A left inverse of [`G`] (`G_INVERSE · G = I₃`): `g = G⁻ U G⁻ᵀ` recovers the kernel.
pub(super) const G_INVERSE: [[f64; 6]; 3] =
    [[36.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, -390.0, 390.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 36.0]];

/// `Bᵀ d` for one column `d` of six values.
fn input_1d(d: [f32; 6]) -> [f32; 6] {
    let (even1, odd1) = (12.0 * d[4] - 27.0 * d[2], 18.0 * d[1] - 8.0 * d[3]);
    let (even2, odd2) = (18.0 * d[4] - 8.0 * d[2], 12.0 * d[1] - 27.0 * d[3]);
    [
        36.0 * (d[0] + d[4]) - 97.0 * d[2],
        even1 - odd1,
        even1 + odd1,
        even2 - odd2,
        even2 + odd2,
        36.0 * (d[1] + d[5]) - 97.0 * d[3],
    ]
}

/// `Aᵀ m` for one column `m` of six values.
fn output_1d(m: [f32; 6]) -> [f32; 4] {
    let (a, b, c, d) = (m[1] + m[2], m[1] - m[2], m[3] + m[4], m[3] - m[4]);
    [m[0] + 27.0 * a + 8.0 * c, 18.0 * b + 12.0 * d, 12.0 * a + 18.0 * c, 8.0 * b + 27.0 * d + m[5]]
}

/// `Bᵀ d B` for every tile of input channel `c` of every image, into `v_c` (`[36][columns]`),
/// one tile at a time.
pub(super) fn input_portable(x: &[f32], channels: usize, c: usize, t: &Tiling, v_c: &mut [f32]) {
    let (h, w) = (t.input.h as isize, t.input.w as isize);
    let columns = t.columns();
    for image in 0..t.images {
        let x_c = &x[(image * channels + c) * (h * w) as usize..][..(h * w) as usize];
        for ty in 0..t.tiles.h {
            for tx in 0..t.tiles.w {
                let d: [[f32; 6]; 6] = std::array::from_fn(|a| {
                    std::array::from_fn(|b| {
                        let (i, j) = (
                            (4 * (ty + t.row_offset) + a) as isize - t.padding.h as isize,
                            (4 * tx + b) as isize - t.padding.w as isize,
                        );
                        if (0..h).contains(&i) && (0..w).contains(&j) { x_c[(i * w + j) as usize] } else { 0.0 }
                    })
                });
                // Bᵀ d (down each column), then (Bᵀ d) B (along each row).
                let columns_t: [[f32; 6]; 6] = std::array::from_fn(|b| input_1d(std::array::from_fn(|a| d[a][b])));
                let tile = image * t.per_image() + ty * t.tiles.w + tx;
                for k in 0..6 {
                    let row = input_1d(std::array::from_fn(|b| columns_t[b][k]));
                    for (l, value) in row.into_iter().enumerate() {
                        v_c[(6 * k + l) * columns + tile] = value;
                    }
                }
            }
        }
    }
}

/// `Aᵀ m A` + bias for every tile of one output plane `y` of `image`, one tile at a time;
/// `m_o` is that output channel's `[36][columns]`.
pub(super) fn output_portable(m_o: &[f32], image: usize, t: &Tiling, columns: usize, bias: f32, y: &mut [f32]) {
    let (out_h, out_w) = (t.output.h - 4 * t.row_offset, t.output.w);
    for ty in 0..t.tiles.h {
        for tx in 0..t.tiles.w {
            let tile = image * t.per_image() + ty * t.tiles.w + tx;
            let m: [[f32; 6]; 6] = std::array::from_fn(|a| std::array::from_fn(|b| m_o[(6 * a + b) * columns + tile]));
            let s: [[f32; 4]; 6] = std::array::from_fn(|b| output_1d(std::array::from_fn(|a| m[a][b])));
            let s_rows: [[f32; 6]; 4] = std::array::from_fn(|i| std::array::from_fn(|b| s[b][i]));
            for (i, s_row) in s_rows.into_iter().enumerate() {
                let row = output_1d(s_row);
                for (j, value) in row.into_iter().enumerate() {
                    let (r, col) = (4 * ty + i, 4 * tx + j);
                    if r < out_h && col < out_w {
                        y[r * out_w + col] = value + bias;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Hw;

    /// Equal up to rounding: the transforms' sums cancel terms up to ~10⁴ times the inputs
    /// (the SIMD ones fuse their multiply-adds), so the bound is relative to the largest value.
    fn close(a: &[f32], b: &[f32]) {
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (p, q)) in a.iter().zip(b).enumerate() {
            assert!((p - q).abs() <= 1e-6 * scale, "[{i}] {p} vs {q} (largest {scale})");
        }
    }

    /// The SIMD transforms of maps one to eight tiles wide (the narrow paths up to seven,
    /// whose sixteen lanes span rows of tiles and images' last partial chunk) agree with the
    /// portable ones: every padding from 0 to 2, odd sizes, a batch of two, and a band that
    /// starts at a later row of tiles.
    #[test]
    fn narrow_transforms_agree() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            for tiles_w in 1..=8 {
                for pad in 0..=2 {
                    let w = (4 * tiles_w + 2 - 2 * pad).max(1) - (tiles_w % 2);
                    let h = w + 3;
                    let output = Hw { h: h + 2 * pad - 2, w: w + 2 * pad - 2 };
                    let tiles = Hw { h: output.h.div_ceil(4), w: output.w.div_ceil(4) };
                    let whole = Tiling {
                        images: 2,
                        input: Hw { h, w },
                        output,
                        tiles,
                        padding: Hw { h: pad, w: pad },
                        row_offset: 0,
                    };
                    let band = Tiling { images: 1, tiles: Hw { h: tiles.h - 1, w: tiles.w }, row_offset: 1, ..whole };
                    let x: Vec<f32> = (0..2 * 3 * h * w).map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0).collect();
                    for t in [whole, band] {
                        let mut portable = vec![f32::NAN; XI * t.columns()];
                        let mut simd = portable.clone();
                        input_portable(&x, 3, 1, &t, &mut portable);
                        // SAFETY: AVX-512F checked above.
                        unsafe { avx512::input(&x, 3, 1, &t, &mut simd) };
                        close(&portable, &simd);
                        // Products of unit scale (the transformed input's would hide the bias).
                        let m: Vec<f32> = (0..XI * t.columns()).map(|i| ((i * 53) % 97) as f32 / 10.0 - 4.8).collect();
                        let m = &m;
                        let plane = (t.output.h - 4 * t.row_offset) * t.output.w;
                        for image in 0..t.images {
                            let mut portable = vec![f32::NAN; plane];
                            let mut simd = portable.clone();
                            output_portable(m, image, &t, t.columns(), 0.5, &mut portable);
                            // SAFETY: AVX-512F checked above.
                            unsafe { avx512::output(m, image, &t, t.columns(), 0.5, &mut simd) };
                            close(&portable, &simd);
                        }
                    }
                }
            }
        }
    }

    /// Both transforms of each kind agree, on maps several SIMD chunks wide with uneven
    /// padding and partial tiles, batch 2.
    #[test]
    fn simd_and_portable_transforms_agree() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let (channels, h, w) = (3, 13, 69);
            let output = Hw { h: h + 1, w: w + 2 };
            let tiles = Hw { h: output.h.div_ceil(4), w: output.w.div_ceil(4) };
            let t = Tiling { images: 2, input: Hw { h, w }, output, tiles, padding: Hw { h: 1, w: 2 }, row_offset: 0 };
            let x: Vec<f32> = (0..2 * channels * h * w).map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0).collect();
            for c in 0..channels {
                let mut portable = vec![f32::NAN; XI * t.columns()];
                let mut simd = portable.clone();
                input_portable(&x, channels, c, &t, &mut portable);
                // SAFETY: AVX-512F checked above.
                unsafe { avx512::input(&x, channels, c, &t, &mut simd) };
                close(&portable, &simd);
            }
            let columns = t.columns();
            let m: Vec<f32> = (0..XI * columns).map(|i| ((i * 53) % 97) as f32 / 10.0 - 4.8).collect();
            for image in 0..2 {
                let mut portable = vec![f32::NAN; output.h * output.w];
                let mut simd = portable.clone();
                output_portable(&m, image, &t, columns, 0.5, &mut portable);
                // SAFETY: AVX-512F checked above.
                unsafe { avx512::output(&m, image, &t, columns, 0.5, &mut simd) };
                close(&portable, &simd);
            }
        }
    }
}
