//! The F(2×2, 3×3) transforms: `Bᵀ d B` of 4×4 input patches, `Aᵀ m A` of 4×4 products.

use super::Tiling;

/// Positions in a transformed tile.
pub(super) const XI: usize = 16;

/// `G` of F(2×2, 3×3).
pub(super) const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];

/// A left inverse of [`G`] (`G_INVERSE · G = I₃`): `g = G⁻ U G⁻ᵀ` recovers the kernel.
pub(super) const G_INVERSE: [[f64; 4]; 3] = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];

/// `Bᵀ d B` for every tile of input channel `c` of every image, into `v_c` (`[16][columns]`),
/// one row of tiles at a time.
///
/// `d B` is applied once per (padded) input row — each row serves two rows of tiles — after
/// combining rows: `Bᵀ d` takes rows `2·ty … 2·ty + 3` for each row of tiles `ty`.
pub(super) fn input_portable(x: &[f32], channels: usize, c: usize, t: &Tiling, v_c: &mut [f32]) {
    let (h, w) = (t.input.h, t.input.w);
    let width = 2 * t.tiles.w + 2;
    let columns = t.columns();
    crate::kernels::scratch::with(crate::kernels::scratch::Buffer::WinogradRows, |rows| {
        if rows.len() < 8 * width {
            rows.resize(8 * width, 0.0);
        }
        let (padded, mixed) = rows[..8 * width].split_at_mut(4 * width);
        for image in 0..t.images {
            let x_c = &x[(image * channels + c) * h * w..][..h * w];
            for ty in 0..t.tiles.h {
                // The four input rows under this row of tiles, zero-padded on every side.
                for (k, row) in padded.chunks_exact_mut(width).enumerate() {
                    let r = (2 * (ty + t.row_offset) + k) as isize - t.padding.h as isize;
                    row.fill(0.0);
                    if (0..h as isize).contains(&r) {
                        let src = &x_c[r as usize * w..][..w];
                        let start = t.padding.w.min(width);
                        let len = w.min(width - start);
                        row[start..start + len].copy_from_slice(&src[..len]);
                    }
                }
                // Bᵀ d: combine the rows, whole rows at a time.
                let (r0, rest) = padded.split_at(width);
                let (r1, rest) = rest.split_at(width);
                let (r2, r3) = rest.split_at(width);
                let (m0, rest) = mixed.split_at_mut(width);
                let (m1, rest) = rest.split_at_mut(width);
                let (m2, m3) = rest.split_at_mut(width);
                for i in 0..width {
                    m0[i] = r0[i] - r2[i];
                    m1[i] = r1[i] + r2[i];
                    m2[i] = r2[i] - r1[i];
                    m3[i] = r1[i] - r3[i];
                }
                // (Bᵀ d) B: combine the columns of every tile.
                let first = image * t.per_image() + ty * t.tiles.w;
                for (k, mk) in [&*m0, &*m1, &*m2, &*m3].into_iter().enumerate() {
                    let (v0, rest) = v_c[4 * k * columns..(4 * k + 4) * columns].split_at_mut(columns);
                    let (v1, rest) = rest.split_at_mut(columns);
                    let (v2, v3) = rest.split_at_mut(columns);
                    let span = first..first + t.tiles.w;
                    for ((((tx, a), b), c), d) in (0..t.tiles.w)
                        .zip(&mut v0[span.clone()])
                        .zip(&mut v1[span.clone()])
                        .zip(&mut v2[span.clone()])
                        .zip(&mut v3[span])
                    {
                        let p = &mk[2 * tx..2 * tx + 4];
                        *a = p[0] - p[2];
                        *b = p[1] + p[2];
                        *c = p[2] - p[1];
                        *d = p[1] - p[3];
                    }
                }
            }
        }
    });
}

/// `Aᵀ m A` + bias for every tile of one output plane `y` of `image`; `m_o` is that output
/// channel's `[16][columns]`. Computed over runs of consecutive tiles at once (unit-stride
/// loops), then scattered into the plane's 2×2 blocks.
pub(super) fn output_portable(m_o: &[f32], image: usize, t: &Tiling, columns: usize, bias: f32, y: &mut [f32]) {
    const RUN: usize = 64;
    let (out_h, out_w, tw) = (t.output.h - 2 * t.row_offset, t.output.w, t.tiles.w);
    let tiles = t.per_image();
    let first = image * tiles;
    let mut start = 0;
    while start < tiles {
        let len = RUN.min(tiles - start);
        let m: [&[f32]; XI] = std::array::from_fn(|xi| &m_o[xi * columns + first + start..][..len]);
        let mut s = [[0.0f32; RUN]; 8];
        for j in 0..4 {
            let (upper, lower) = s.split_at_mut(4);
            let (s0, s1) = (&mut upper[j], &mut lower[j]);
            for i in 0..len {
                let (a, b, c, d) = (m[j][i], m[4 + j][i], m[8 + j][i], m[12 + j][i]);
                s0[i] = a + b + c;
                s1[i] = b - c - d;
            }
        }
        let mut blocks = [[0.0f32; RUN]; 4];
        for (half, s) in [&s[..4], &s[4..]].into_iter().enumerate() {
            let (left, right) = blocks.split_at_mut(2 * half + 1);
            let (y0, y1) = (&mut left[2 * half], &mut right[0]);
            for i in 0..len {
                y0[i] = s[0][i] + s[1][i] + s[2][i] + bias;
                y1[i] = s[1][i] - s[2][i] - s[3][i] + bias;
            }
        }
        let [b00, b01, b10, b11] = &blocks;
        for (i, tile) in (start..start + len).enumerate() {
            let (row, col) = (2 * (tile / tw), 2 * (tile % tw));
            let two_cols = col + 1 < out_w;
            y[row * out_w + col] = b00[i];
            if two_cols {
                y[row * out_w + col + 1] = b01[i];
            }
            if row + 1 < out_h {
                y[(row + 1) * out_w + col] = b10[i];
                if two_cols {
                    y[(row + 1) * out_w + col + 1] = b11[i];
                }
            }
        }
        start += len;
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Hw;

    /// Both input transforms write the same `V`, on a map several SIMD chunks wide with
    /// uneven padding, batch 2.
    #[test]
    fn simd_and_portable_input_transforms_agree() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let (channels, h, w) = (3, 11, 69);
            let t = Tiling {
                images: 2,
                input: Hw { h, w },
                output: Hw { h: h + 1, w: w + 2 },
                tiles: Hw { h: 6, w: 36 },
                padding: Hw { h: 1, w: 2 },
                row_offset: 0,
            };
            let x: Vec<f32> = (0..2 * channels * h * w).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
            for c in 0..channels {
                let mut portable = vec![f32::NAN; XI * t.columns()];
                let mut simd = portable.clone();
                input_portable(&x, channels, c, &t, &mut portable);
                // SAFETY: AVX-512F checked above.
                unsafe { avx512::input(&x, channels, c, &t, &mut simd) };
                assert_eq!(portable, simd, "channel {c}");
            }
        }
    }

    /// Both output transforms write the same plane (odd output sizes: partial tiles).
    #[test]
    fn simd_and_portable_output_transforms_agree() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let output = Hw { h: 9, w: 67 };
            let t = Tiling {
                images: 2,
                input: output,
                output,
                tiles: Hw { h: 5, w: 34 },
                padding: Hw { h: 1, w: 1 },
                row_offset: 0,
            };
            let columns = t.columns();
            let m: Vec<f32> = (0..XI * columns).map(|i| ((i * 53) % 97) as f32 - 48.0).collect();
            for image in 0..2 {
                let mut portable = vec![f32::NAN; output.h * output.w];
                let mut simd = portable.clone();
                output_portable(&m, image, &t, columns, 0.5, &mut portable);
                // SAFETY: AVX-512F checked above.
                unsafe { avx512::output(&m, image, &t, columns, 0.5, &mut simd) };
                assert_eq!(portable, simd, "image {image}");
            }
        }
    }
}
