//! The gradients of a convolution: per image and group, im2col and two products
//! (`dW += dY · colsᵀ`, `dcols = Wᵀ · dY`), then col2im ([`fold`]), the transpose of im2col,
//! which sends each column entry back to the input position it was read from — or, for a
//! padded position, to that channel's pad value.

use super::driver::Plane;
use super::im2col::unfold;
use super::{ConvOperands, check_operands, contiguous, valid_range};
use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use crate::kernels::Activation;
use crate::kernels::gemm::gemm_accumulate;
use crate::kernels::scratch::{self, Buffer};
use ndarray::{Array1, Array4, ArrayView2, ArrayView4, ArrayViewMut2};
use rayon::prelude::*;

/// What [`conv2d_backward`] returns: `dL/d·` of every operand of [`super::conv2d`].
#[derive(Clone, Debug)]
pub struct ConvGradients {
    /// `dL/dx`, shaped as the input.
    pub input: Array4<f32>,
    /// `dL/dW = Σ_{n,i,j} dY[n,o,i,j] · x_pad[n, c, i·s_h + u·d_h, j·s_w + v·d_w]`.
    pub weight: Array4<f32>,
    /// `dL/db[o] = Σ_{n,i,j} dY[n,o,i,j]`.
    pub bias: Array1<f32>,
    /// `dL/dfill[c]`: the part of the input gradient that fell on padded positions of channel
    /// `c` (what DBB's BN-and-pad sends back into its BN).
    pub pad_fill: Array1<f32>,
}

/// The gradients of `y = conv2d(x, W, b, fill)` given `dy = dL/dy` (`[N, C_out, H_out, W_out]`).
pub fn conv2d_backward(
    input: ArrayView4<'_, f32>,
    geometry: &ConvGeometry,
    operands: ConvOperands<'_>,
    dy: ArrayView4<'_, f32>,
) -> Result<ConvGradients> {
    check_operands(geometry, &operands)?;
    let [n, c, h, w] = input.shape().try_into().expect("4-D view");
    if c != geometry.in_channels {
        return Err(Error::Channels { layer: "conv2d backward", expected: geometry.in_channels, found: c });
    }
    let out = geometry.output_size(h, w)?;
    let expected = [n, geometry.out_channels, out.h, out.w];
    if dy.shape() != expected {
        return Err(Error::shape("conv output gradient", &expected, dy.shape()));
    }
    let (input, dy) = (input.as_standard_layout(), dy.as_standard_layout());
    let (x, dy) = (input.as_slice().expect("standard layout"), dy.as_slice().expect("standard layout"));
    let weight = operands.weight.as_standard_layout();
    let weight = weight.as_slice().expect("standard layout");
    let fill = operands.pad_fill.map(contiguous);
    let plane = Plane { geometry, height: h, width: w, out_h: out.h, out_w: out.w, activation: Activation::Identity };
    let (in_len, out_len) = (c * h * w, geometry.out_channels * out.h * out.w);
    let mut dx = Array4::<f32>::zeros((n, c, h, w));
    // A fixed split of the batch into one run of images per thread, summed in order: the
    // gradients are the same from run to run (for a given thread count).
    let per_thread = n.div_ceil(rayon::current_num_threads()).max(1);
    let parts: Vec<Sums> = dx
        .as_slice_mut()
        .expect("fresh array")
        .par_chunks_mut((per_thread * in_len).max(1))
        .enumerate()
        .map(|(part, dx)| {
            let images = part * per_thread..(part * per_thread + per_thread).min(n);
            let mut sums = Sums::zeros(geometry);
            let columns = geometry.in_per_group() * geometry.kernel.h * geometry.kernel.w * band_rows(&plane) * out.w;
            let (mut cols, mut dcols) = (scratch::take(Buffer::Im2col), scratch::take(Buffer::ColumnGradients));
            for buffer in [&mut cols, &mut dcols] {
                if buffer.len() < columns {
                    buffer.resize(columns, 0.0);
                }
            }
            let mut work = Columns { cols: &mut cols[..columns], dcols: &mut dcols[..columns] };
            for (k, image) in images.enumerate() {
                let dx = &mut dx[k * in_len..(k + 1) * in_len];
                let x = &x[image * in_len..(image + 1) * in_len];
                let dy = &dy[image * out_len..(image + 1) * out_len];
                image_backward(&plane, Image { x, dy, dx }, weight, fill.as_deref(), &mut work, &mut sums);
            }
            scratch::put_back(Buffer::Im2col, cols);
            scratch::put_back(Buffer::ColumnGradients, dcols);
            sums
        })
        .collect();
    let sums = parts.into_iter().fold(Sums::zeros(geometry), Sums::add);
    Ok(ConvGradients {
        input: dx,
        weight: Array4::from_shape_vec(geometry.weight_shape(), sums.weight).expect("sized by geometry"),
        bias: Array1::from(sums.bias),
        pad_fill: Array1::from(sums.fill),
    })
}

/// The gradients summed over images.
struct Sums {
    weight: Vec<f32>,
    bias: Vec<f32>,
    fill: Vec<f32>,
}

impl Sums {
    fn zeros(g: &ConvGeometry) -> Sums {
        let weight = g.weight_shape().iter().product();
        Sums { weight: vec![0.0; weight], bias: vec![0.0; g.out_channels], fill: vec![0.0; g.in_channels] }
    }

    fn add(mut self, other: Sums) -> Sums {
        for (mine, theirs) in
            [(&mut self.weight, other.weight), (&mut self.bias, other.bias), (&mut self.fill, other.fill)]
        {
            mine.iter_mut().zip(theirs).for_each(|(a, b)| *a += b);
        }
        self
    }
}

/// One image's input, output gradient and input gradient.
struct Image<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    dx: &'a mut [f32],
}

/// The unfolded columns of one group and their gradient (scratch, reused image to image).
struct Columns<'a> {
    cols: &'a mut [f32],
    dcols: &'a mut [f32],
}

/// One image: writes its `dx`, adds its share of the weight, bias and fill gradients to `sums`.
fn image_backward(
    plane: &Plane<'_>,
    image: Image<'_>,
    weight: &[f32],
    fill: Option<&[f32]>,
    work: &mut Columns<'_>,
    sums: &mut Sums,
) {
    let Image { x, dy, dx } = image;
    let (cols, dcols) = (&mut *work.cols, &mut *work.dcols);
    let g = plane.geometry;
    let (cin_g, cout_g) = (g.in_per_group(), g.out_per_group());
    let depth = cin_g * g.kernel.h * g.kernel.w;
    let (in_plane, out_plane) = (plane.height * plane.width, plane.out_h * plane.out_w);
    for group in 0..g.groups {
        let inputs = group * cin_g..(group + 1) * cin_g;
        let outputs = group * cout_g..(group + 1) * cout_g;
        let x_g = &x[inputs.start * in_plane..inputs.end * in_plane];
        let dy_g = ArrayView2::from_shape((cout_g, out_plane), &dy[outputs.start * out_plane..outputs.end * out_plane])
            .expect("sizes checked");
        let w_g = ArrayView2::from_shape((cout_g, depth), &weight[outputs.start * depth..outputs.end * depth])
            .expect("sizes checked");
        for (o, row) in outputs.clone().zip(dy_g.outer_iter()) {
            sums.bias[o] += row.sum();
        }
        let dw_g = &mut sums.weight[outputs.start * depth..outputs.end * depth];
        let mut dw_g = ArrayViewMut2::from_shape((cout_g, depth), dw_g).expect("sized");
        let dx_g = &mut dx[inputs.start * in_plane..inputs.end * in_plane];
        if g.is_pointwise() {
            // The input is its own im2col matrix, and dx its gradient: no unfold, no fold.
            let x_view = ArrayView2::from_shape((depth, out_plane), x_g).expect("sizes checked");
            gemm_accumulate(dy_g, x_view.t(), &mut dw_g, 1.0, gemm::Parallelism::None);
            let mut dx_view = ArrayViewMut2::from_shape((depth, out_plane), dx_g).expect("sizes checked");
            gemm_accumulate(w_g.t(), dy_g, &mut dx_view, 1.0, gemm::Parallelism::None);
            continue;
        }
        // Bands of output rows, so that the unfolded columns and their gradient stay in cache
        // between the unfold, the two products and the fold.
        let fill_g = fill.map(|f| &f[inputs.clone()]);
        for first in (0..plane.out_h).step_by(band_rows(plane)) {
            let rows = first..(first + band_rows(plane)).min(plane.out_h);
            let columns = rows.len() * plane.out_w;
            let (cols, dcols) = (&mut cols[..depth * columns], &mut dcols[..depth * columns]);
            unfold(plane, x_g, cin_g, fill_g, rows.clone(), cols, columns);
            let dy_band = dy_g.slice(ndarray::s![.., first * plane.out_w..first * plane.out_w + columns]);
            let cols_view = ArrayView2::from_shape((depth, columns), &*cols).expect("sized above");
            gemm_accumulate(dy_band, cols_view.t(), &mut dw_g, 1.0, gemm::Parallelism::None);
            dcols.fill(0.0);
            let mut dcols_view = ArrayViewMut2::from_shape((depth, columns), &mut *dcols).expect("sized above");
            gemm_accumulate(w_g.t(), dy_band, &mut dcols_view, 1.0, gemm::Parallelism::None);
            fold(plane, dcols, cin_g, rows, dx_g, &mut sums.fill[inputs.clone()]);
        }
    }
}

/// Output rows per band of [`conv2d_backward`]: about [`BAND_COLUMNS`] output positions.
fn band_rows(plane: &Plane<'_>) -> usize {
    (BAND_COLUMNS / plane.out_w.max(1)).clamp(1, plane.out_h.max(1))
}

/// Output positions per band: with up to a few hundred rows of unfolded input, the columns
/// and their gradient (a few hundred KB each) stay in L2 between the unfold, the products and
/// the fold, instead of streaming whole images' worth through memory.
const BAND_COLUMNS: usize = 256;

/// col2im, the transpose of [`unfold`], for the output rows `rows`: adds
/// `cols[(c·k_h + u)·k_w + v, (i − rows.start)·W_out + j]` to
/// `dx[c, i·s_h + u·d_h − p_h, j·s_w + v·d_w − p_w]`, or to `dfill[c]` when that position is padding.
fn fold(
    plane: &Plane<'_>,
    cols: &[f32],
    channels: usize,
    rows: std::ops::Range<usize>,
    dx: &mut [f32],
    dfill: &mut [f32],
) {
    let g = plane.geometry;
    let (h, w, out_h, out_w) = (plane.height, plane.width, plane.out_h, plane.out_w);
    let output_rows = rows;
    let mut rows = cols.chunks(output_rows.len() * out_w);
    for c in 0..channels {
        let dx_c = &mut dx[c * h * w..(c + 1) * h * w];
        let mut padded = 0.0f32;
        for u in 0..g.kernel.h {
            let off_h = (u * g.dilation.h) as isize - g.padding.h as isize;
            let (i_lo, i_hi) = valid_range(out_h, h, g.stride.h, off_h);
            for v in 0..g.kernel.w {
                let row = rows.next().expect("cols sized by caller");
                let off_w = (v * g.dilation.w) as isize - g.padding.w as isize;
                let (j_lo, j_hi) = valid_range(out_w, w, g.stride.w, off_w);
                for (i, values) in output_rows.clone().zip(row.chunks(out_w)) {
                    if i < i_lo || i >= i_hi {
                        padded += values.iter().sum::<f32>();
                        continue;
                    }
                    padded += values[..j_lo].iter().chain(&values[j_hi..]).sum::<f32>();
                    let ih = ((i * g.stride.h) as isize + off_h) as usize;
                    let start = ((j_lo * g.stride.w) as isize + off_w) as usize;
                    let dx_row = &mut dx_c[ih * w..(ih + 1) * w];
                    let values = &values[j_lo..j_hi];
                    if g.stride.w == 1 {
                        // Contiguous: one vectorizable add.
                        dx_row[start..start + values.len()].iter_mut().zip(values).for_each(|(d, v)| *d += v);
                    } else {
                        dx_row[start..].iter_mut().step_by(g.stride.w).zip(values).for_each(|(d, v)| *d += v);
                    }
                }
            }
        }
        dfill[c] += padded;
    }
}
