//! Direct convolution for `C_in / groups == 1` (depthwise, with any channel multiplier).

use super::driver::Plane;
use super::valid_range;

/// One image. Output channel `o` reads input channel `o / (C_out / groups)`.
pub(super) fn conv(
    plane: &Plane<'_>,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    fill: Option<&[f32]>,
    out: &mut [f32],
) {
    let g = plane.geometry;
    let (h, w, out_h, out_w) = (plane.height, plane.width, plane.out_h, plane.out_w);
    let taps = g.kernel.h * g.kernel.w;
    let multiplier = g.out_per_group();
    for (o, y) in out.chunks_mut(out_h * out_w).enumerate() {
        let c = o / multiplier;
        let x_c = &x[c * h * w..(c + 1) * h * w];
        let w_o = &weight[o * taps..(o + 1) * taps];
        let pad = fill.map_or(0.0, |f| f[c]);
        // Every tap first contributes as if it read padding; in-range taps then correct it.
        y.fill(bias.map_or(0.0, |b| b[o]) + pad * w_o.iter().sum::<f32>());
        for u in 0..g.kernel.h {
            let off_h = (u * g.dilation.h) as isize - g.padding.h as isize;
            let (i_lo, i_hi) = valid_range(out_h, h, g.stride.h, off_h);
            for v in 0..g.kernel.w {
                let tap = w_o[u * g.kernel.w + v];
                let off_w = (v * g.dilation.w) as isize - g.padding.w as isize;
                let (j_lo, j_hi) = valid_range(out_w, w, g.stride.w, off_w);
                for i in i_lo..i_hi {
                    let ih = ((i * g.stride.h) as isize + off_h) as usize;
                    let x_row = &x_c[ih * w..(ih + 1) * w];
                    let y_row = &mut y[i * out_w..(i + 1) * out_w];
                    let first = ((j_lo * g.stride.w) as isize + off_w) as usize;
                    let inputs = x_row[first..].iter().step_by(g.stride.w);
                    for (y, &x) in y_row[j_lo..j_hi].iter_mut().zip(inputs) {
                        *y += tap * (x - pad);
                    }
                }
            }
        }
    }
}
