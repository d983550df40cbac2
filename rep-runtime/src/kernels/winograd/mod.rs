//! Winograd convolution for stride-1, undilated 3×3 layers (Lavin & Gray, 2016): F(2×2, 3×3)
//! and F(4×4, 3×3).
//!
//! Each `m × m` block of outputs ("tile", `m` = 2 or 4) is computed from the `α × α` input
//! patch under it (`α = m + 2`) as `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`, where `g` is the 3×3
//! kernel, `d` the patch and ⊙ the element-wise product. For F(2×2, 3×3):
//!
//! ```text
//!      ⎡1  0 -1  0⎤        ⎡ 1    0    0 ⎤        ⎡1  1  1  0⎤
//! Bᵀ = ⎢0  1  1  0⎥    G = ⎢1/2  1/2  1/2⎥   Aᵀ = ⎣0  1 -1 -1⎦
//!      ⎢0 -1  1  0⎥        ⎢1/2 -1/2  1/2⎥
//!      ⎣0  1  0 -1⎦        ⎣ 0    0    1 ⎦
//! ```
//!
//! and for F(4×4, 3×3) (interpolation points 0, ±2/3, ±3/2, ∞) the matrices in [`f4`].
//!
//! Summed over input channels, the element-wise products become `α²` independent GEMMs, one
//! per position ξ of the transformed tile: `M[ξ] = U[ξ] · V[ξ]` with `U[ξ]` `[C_out, C_in]`
//! (the transformed kernel, computed once, in f64, and packed for `gemm_packed`) and
//! `V[ξ]` `[C_in, tiles]`: 16 multiplications per 4 outputs instead of 36 (2.25× fewer) for
//! F(2×2, 3×3), 36 per 16 instead of 144 (4×) for F(4×4, 3×3), whose larger transforms cost
//! some precision (≈ 2e-6 relative instead of ≈ 5e-7 per layer).
//!
//! Layouts: `V` is `[C_in][α²][tiles]` and `M` is `[C_out][α²][tiles]`, so that the input
//! transform of one channel and the output transform of one output channel each own a
//! contiguous block (and run in parallel); the GEMMs read and write them with a row stride
//! of `α²·tiles`. Tiles of all images of a batch share one GEMM.

mod bands;
mod f2;
mod f4;

use super::SendPtr;
use super::gemm::{Epilogue, PackedMatrix, RightOperand, gemm_packed};
use super::{Activation, ConvOperands};
use crate::error::{Error, Result};
use crate::geometry::{ConvGeometry, Hw};
use crate::kernels::{LINE_FLOATS, to_cache_line};
use rayon::prelude::*;

/// The output tile of a Winograd convolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tile {
    /// F(2×2, 3×3): 4×4 input patches, 2.25× fewer multiplications than direct; 3e-7 to 8e-7
    /// relative error per layer on unit-scale inputs at 48 to 512 input channels.
    F2,
    /// F(4×4, 3×3): 6×6 input patches, 4× fewer multiplications than direct; 1.3e-6 to
    /// 2.5e-6 relative error per layer on unit-scale inputs at 48 to 512 input channels,
    /// on the interpolation points 0, ±2/3, ±3/2 (Lavin's 0, ±1, ±2 gave 5e-6 to 1.1e-5). The
    /// default: within the project's 1e-5 with a margin, and the faster of the two from 48
    /// channels up.
    #[default]
    F4,
}

impl Tile {
    /// Outputs per tile side, `m`.
    pub fn outputs(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// Positions of a transformed tile, `α² = (m + 2)²`.
    pub fn positions(self) -> usize {
        (self.outputs() + 2).pow(2)
    }

    /// `G` (`α × 3`), the kernel transform.
    fn kernel_transform(self) -> &'static [[f64; 3]] {
        match self {
            Tile::F2 => &f2::G,
            Tile::F4 => &f4::G,
        }
    }

    /// The rows of a left inverse of `G` (`3 × α`).
    fn kernel_inverse(self) -> [&'static [f64]; 3] {
        match self {
            Tile::F2 => f2::G_INVERSE.each_ref().map(|row| row.as_slice()),
            Tile::F4 => f4::G_INVERSE.each_ref().map(|row| row.as_slice()),
        }
    }
}

/// The input and output transforms of one tile size, for this CPU.
#[derive(Clone, Copy, Debug)]
struct Transforms {
    /// `Bᵀ d B` of every tile of one input channel: `(x, channels, c, tiling, V_c)`.
    input: unsafe fn(&[f32], usize, usize, &Tiling, &mut [f32]),
    /// `Aᵀ m A` + bias of every tile of one output plane: `(M_o, image, tiling, columns, bias,
    /// plane)`.
    output: unsafe fn(&[f32], usize, &Tiling, usize, f32, &mut [f32]),
}

impl Tile {
    /// The transforms: AVX-512 ones when the CPU has it, portable ones otherwise.
    fn transforms(self) -> Transforms {
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::isa::avx512() {
            return match self {
                Tile::F2 => Transforms { input: f2::avx512::input, output: f2::avx512::output },
                Tile::F4 => Transforms { input: f4::avx512::input, output: f4::avx512::output },
            };
        }
        match self {
            Tile::F2 => Transforms { input: f2::input_portable, output: f2::output_portable },
            Tile::F4 => Transforms { input: f4::input_portable, output: f4::output_portable },
        }
    }
}

/// A 3×3 stride-1 convolution with its kernel transformed for Winograd.
#[derive(Clone, Debug)]
pub struct WinogradConv {
    /// `U[ξ]` of each group, `[C_out/groups, C_in/groups]`, packed for the GEMM; index
    /// `ξ · groups + group`. `U[ξ][o][c] = (G g_{o,c} Gᵀ)[ξ]`.
    transformed: Vec<PackedMatrix>,
    bias: Vec<f32>,
    geometry: ConvGeometry,
    tile: Tile,
    /// The tile's transforms for this CPU, chosen once.
    transforms: Transforms,
}

/// The tiling of one layer's output (or of a band of it), and the input rows and columns
/// each tile reads.
#[derive(Clone, Copy, Debug)]
struct Tiling {
    images: usize,
    input: Hw,
    output: Hw,
    /// Tiles down (in this band) and across one image.
    tiles: Hw,
    padding: Hw,
    /// The band's first row of tiles in the image (0 for a whole layer); its output rows
    /// start at `m · row_offset`, and the output plane handed to a transform starts there.
    row_offset: usize,
}

impl Tiling {
    fn per_image(&self) -> usize {
        self.tiles.h * self.tiles.w
    }

    /// Tiles of the whole batch: the GEMMs' column count.
    fn columns(&self) -> usize {
        self.images * self.per_image()
    }
}

impl WinogradConv {
    /// Whether `geometry` is one this transform computes: 3×3, stride 1, dilation 1.
    pub fn supports(geometry: &ConvGeometry) -> bool {
        geometry.kernel.to_array() == [3, 3]
            && geometry.stride.to_array() == [1, 1]
            && geometry.dilation.to_array() == [1, 1]
            && geometry.padding.h <= 2
            && geometry.padding.w <= 2
    }

    /// Transforms a convolution's kernel for `tile` (what `WinogradConv::new` and
    /// `WinogradConv::with_tile` do for a `Conv2d`). Refuses geometries
    /// [`WinogradConv::supports`] does not, and operands that pad with anything but zeros.
    pub fn from_operands(geometry: &ConvGeometry, operands: ConvOperands<'_>, tile: Tile) -> Result<Self> {
        let geometry = *geometry;
        if !Self::supports(&geometry) || operands.pad_fill.is_some() {
            return Err(Error::Geometry(format!(
                "Winograd needs a zero-padded 3x3 kernel with stride 1, dilation 1 and padding \
                 at most 2; found kernel {}, stride {}, dilation {}, padding {}{}",
                geometry.kernel,
                geometry.stride,
                geometry.dilation,
                geometry.padding,
                if operands.pad_fill.is_some() { ", custom pad fill" } else { "" }
            )));
        }
        crate::kernels::check_operands(&geometry, &operands)?;
        let (cout, cin_g) = (geometry.out_channels, geometry.in_per_group());
        let weight = operands.weight.as_standard_layout();
        let weight = weight.as_slice().expect("standard layout");
        let (xi_count, g_matrix) = (tile.positions(), tile.kernel_transform());
        let alpha = g_matrix.len();
        let mut transformed = vec![0.0f32; xi_count * cout * cin_g];
        for (oc, g) in weight.chunks_exact(9).enumerate() {
            // U = G g Gᵀ in f64: G g (α×3), then (G g) Gᵀ (α×α).
            let mut gg = [[0.0f64; 3]; 6];
            for (gg_r, row) in gg.iter_mut().zip(g_matrix) {
                *gg_r = std::array::from_fn(|col| (0..3).map(|k| row[k] * f64::from(g[3 * k + col])).sum());
            }
            for (r, gg_r) in gg[..alpha].iter().enumerate() {
                for (c, g_c) in g_matrix.iter().enumerate() {
                    let value: f64 = (0..3).map(|k| gg_r[k] * g_c[k]).sum();
                    transformed[(r * alpha + c) * cout * cin_g + oc] = value as f32;
                }
            }
        }
        let bias = operands.bias.map_or_else(|| vec![0.0; cout], |b| b.to_vec());
        let (cout_g, groups) = (geometry.out_per_group(), geometry.groups);
        let transformed = (0..xi_count * groups)
            .map(|job| {
                let (xi, group) = (job / groups, job % groups);
                let u = &transformed[(xi * cout + group * cout_g) * cin_g..][..cout_g * cin_g];
                PackedMatrix::pack(u, cout_g, cin_g, cin_g)
            })
            .collect();
        Ok(WinogradConv { transformed, bias, geometry, tile, transforms: tile.transforms() })
    }

    /// The kernel `[C_out, C_in/g, 3, 3]`, recovered from the transformed one
    /// (`g = G⁻ U G⁻ᵀ`, in f64; within a few f32 roundings of the original weights). For the
    /// rare calls that need the direct kernel (inputs holding NaN or ±∞, whose values Winograd
    /// would spread over a tile), so that a plan keeps one copy of the weights; allocates.
    pub fn recovered_weight(&self) -> ndarray::Array4<f32> {
        let g = &self.geometry;
        let (cout, cin_g, cout_g, groups) = (g.out_channels, g.in_per_group(), g.out_per_group(), g.groups);
        let (alpha, inverse) = (self.tile.outputs() + 2, self.tile.kernel_inverse());
        ndarray::Array4::from_shape_fn((cout, cin_g, 3, 3), |(o, c, r, s)| {
            let u = |a: usize, b: usize| {
                let packed = &self.transformed[(a * alpha + b) * groups + o / cout_g];
                f64::from(packed.get(o % cout_g, c))
            };
            let mut value = 0.0;
            for (a, &left) in inverse[r].iter().enumerate().filter(|(_, v)| **v != 0.0) {
                for (b, &right) in inverse[s].iter().enumerate().filter(|(_, v)| **v != 0.0) {
                    value += left * u(a, b) * right;
                }
            }
            value as f32
        })
    }

    /// The bias added to every output of a channel.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// Floats held: the transformed kernels and the bias (for memory accounting).
    pub fn floats(&self) -> usize {
        self.transformed.iter().map(PackedMatrix::floats).sum::<usize>() + self.bias.len()
    }

    /// The convolution's geometry.
    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// The output tile.
    pub fn tile(&self) -> Tile {
        self.tile
    }

    fn tiling(&self, images: usize, input: Hw) -> Result<Tiling> {
        let output = self.geometry.output_size(input.h, input.w)?;
        let m = self.tile.outputs();
        let tiles = Hw { h: output.h.div_ceil(m), w: output.w.div_ceil(m) };
        Ok(Tiling { images, input, output, tiles, padding: self.geometry.padding, row_offset: 0 })
    }

    /// Floats of workspace [`WinogradConv::run`] needs for `images` inputs of size `input`.
    pub fn workspace_len(&self, images: usize, input: Hw) -> Result<usize> {
        let t = self.tiling(images, input)?;
        let channels = self.geometry.in_channels.checked_add(self.geometry.out_channels);
        let floats = channels.and_then(|c| c.checked_mul(self.tile.positions())?.checked_mul(t.columns()));
        // Room to start `V` on a cache line.
        floats.and_then(|f| f.checked_add(LINE_FLOATS)).ok_or_else(|| {
            Error::Geometry(format!("Winograd workspace for {images} images of {input} overflows usize"))
        })
    }

    /// Convolves `x` (`[images, C_in, H, W]`, row-major) into `out` (`[images, C_out, H_out,
    /// W_out]`), then applies `activation`. `workspace` holds at least
    /// [`WinogradConv::workspace_len`] floats; nothing is allocated.
    pub fn run(
        &self,
        x: &[f32],
        images: usize,
        input: Hw,
        out: &mut [f32],
        workspace: &mut [f32],
        activation: Activation,
    ) -> Result<()> {
        let g = &self.geometry;
        let t = self.tiling(images, input)?;
        let (cin, cout) = (g.in_channels, g.out_channels);
        let need_in = images * cin * input.h * input.w;
        let need_out = images * cout * t.output.h * t.output.w;
        let need_ws = self.workspace_len(images, input)?;
        if x.len() != need_in || out.len() != need_out || workspace.len() < need_ws {
            return Err(Error::Geometry(format!(
                "Winograd buffers: input {} floats (expected {need_in}), output {} (expected {need_out}), \
                 workspace {} (expected at least {need_ws})",
                x.len(),
                out.len(),
                workspace.len()
            )));
        }
        if need_out == 0 {
            return Ok(());
        }
        let (columns, xi_count) = (t.columns(), self.tile.positions());
        if let Some(bands) = self.bands(&t, rayon::current_num_threads()) {
            self.run_in_bands(x, &t, bands, out, activation);
            return Ok(());
        }
        // Small maps of a large batch: a few images at a time, so that their `V` and `M` stay in
        // cache while each transformed kernel is read once per group (from L3, not DRAM).
        let group = (GROUP_FLOATS / (xi_count * (cin + cout) * t.per_image()).max(1)).max(1);
        if images > group {
            let (in_len, out_len) = (need_in / images, need_out / images);
            for first in (0..images).step_by(group) {
                let n = group.min(images - first);
                let (x, out) = (&x[first * in_len..][..n * in_len], &mut out[first * out_len..][..n * out_len]);
                self.run(x, n, input, out, workspace, activation)?;
            }
            return Ok(());
        }
        // On a cache line, so that the GEMMs' 16-float rows of `V` and `M` (whose starts are
        // multiples of 16 floats apart) never straddle two.
        let start = to_cache_line(workspace);
        let workspace = &mut workspace[start..];
        let (v, rest) = workspace.split_at_mut(xi_count * cin * columns);
        let m = &mut rest[..xi_count * cout * columns];
        v.par_chunks_mut(xi_count * columns).enumerate().for_each(|(c, v_c)| self.transform_input(x, c, &t, v_c));
        self.multiply(v, m, columns);
        out.par_chunks_mut(t.output.h * t.output.w).enumerate().for_each(|(plane, y)| {
            let (image, o) = (plane / cout, plane % cout);
            let m_o = &m[o * xi_count * columns..(o + 1) * xi_count * columns];
            self.transform_output(m_o, image, &t, columns, o, activation, y);
        });
        Ok(())
    }

    fn transform_input(&self, x: &[f32], c: usize, t: &Tiling, v_c: &mut [f32]) {
        // SAFETY: `transforms` offers the AVX-512 functions only on CPUs that have it.
        unsafe { (self.transforms.input)(x, self.geometry.in_channels, c, t, v_c) }
    }

    #[allow(clippy::too_many_arguments)]
    fn transform_output(
        &self,
        m_o: &[f32],
        image: usize,
        t: &Tiling,
        columns: usize,
        o: usize,
        activation: Activation,
        y: &mut [f32],
    ) {
        // SAFETY: as above.
        unsafe { (self.transforms.output)(m_o, image, t, columns, self.bias[o], y) };
        activation.apply_slice(y);
    }

    /// `M[ξ] = U[ξ] · V[ξ]` for every ξ and group: the α²·groups GEMMs spread over rayon's
    /// threads.
    fn multiply(&self, v: &[f32], m: &mut [f32], columns: usize) {
        let m_ptr = SendPtr(m.as_mut_ptr());
        let jobs = self.transformed.len();
        // SAFETY: distinct jobs write disjoint rows and columns of `m`, which outlives the loop.
        (0..jobs).into_par_iter().for_each(|job| unsafe { self.multiply_one(job, v, m_ptr.get(), columns) });
    }

    /// [`WinogradConv::multiply`] on the calling thread.
    fn multiply_sequential(&self, v: &[f32], m: &mut [f32], columns: usize) {
        for job in 0..self.transformed.len() {
            // SAFETY: `m` is borrowed mutably for the whole loop.
            unsafe { self.multiply_one(job, v, m.as_mut_ptr(), columns) };
        }
    }

    /// `M[ξ] = U[ξ] · V[ξ]` for the rows of one group, `job = ξ · groups + group`.
    ///
    /// # Safety
    /// `m` points at `M` (`[C_out][α²][columns]`); nothing else touches the rows and columns
    /// of this job while it runs.
    unsafe fn multiply_one(&self, job: usize, v: &[f32], m: *mut f32, columns: usize) {
        let g = &self.geometry;
        let (cin_g, cout_g, groups) = (g.in_per_group(), g.out_per_group(), g.groups);
        let stride = self.tile.positions() * columns;
        let (xi, group) = (job / groups, job % groups);
        let u = &self.transformed[job];
        let b = &v[group * cin_g * stride + xi * columns..];
        // SAFETY: `b` reads `cin_g` rows of `columns` floats, `α²·columns` apart, inside `v`;
        // `c` writes `cout_g` such rows inside `M`, as the caller guarantees.
        unsafe {
            let c = m.add(group * cout_g * stride + xi * columns);
            gemm_packed(
                u,
                0..u.panels(),
                RightOperand::Rows { values: b, ldb: stride },
                columns,
                c,
                stride,
                false,
                Epilogue::default(),
            );
        }
    }
}

/// Copies one input channel `x_c` into `plane`, rows `width` wide, zero-padded: plane row `r`
/// holds input row `r + m·row_offset − p_h` from column `p_w` on (`m` outputs per tile side),
/// zeros everywhere else.
#[cfg(target_arch = "x86_64")]
fn pad_channel(x_c: &[f32], t: &Tiling, m: usize, plane: &mut [f32], width: usize) {
    let (h, w) = (t.input.h, t.input.w);
    plane.fill(0.0);
    for (r, row) in plane.chunks_exact_mut(width).enumerate() {
        let Some(source) = (r + m * t.row_offset).checked_sub(t.padding.h).filter(|&s| s < h) else {
            continue;
        };
        let len = w.min(width - t.padding.w);
        row[t.padding.w..t.padding.w + len].copy_from_slice(&x_c[source * w..][..len]);
    }
}

/// Most floats of `V` and `M` for the images [`WinogradConv::run`] transforms and multiplies
/// together (4 MiB, a share of L3): A0 at batch 32 took 0.71× the time with groups of images
/// (273–283 ms against 396 ms, one thread) as with its whole batch at once; half or twice this
/// measured the same or slower.
const GROUP_FLOATS: usize = 1 << 20;
