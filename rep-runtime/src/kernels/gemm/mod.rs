//! Single-precision GEMM on weights packed once, with no allocation per call.
//!
//! `C = A · B` (or `C += A · B`) for a row-major `A` `[M, K]` packed ahead of time into panels
//! of `MR` rows ([`PackedMatrix`]), a row-major `B` `[K, N]` read through a row stride, and a
//! row-major `C` `[M, N]`. `B` is copied, [`KC`] rows at a time, into panels of [`NR`] columns
//! in a per-thread buffer that only ever grows; each `KC × NR` panel of `B` then stays in L1
//! while every `MR`-row panel of `A` streams past it through the micro-kernel, which keeps an
//! `MR × NR` block of `C` in registers.
//!
//! The micro-kernel uses AVX-512 (12 × 32 block: 24 accumulators; 12 × 16 for a last panel
//! of at most 16 columns) when the CPU has it, and a portable loop otherwise; both give the
//! same sums in the same order per element. After the last depth block it adds a per-row bias
//! and applies the activation in registers ([`Epilogue`]), so `C` is stored once, finished.

use crate::kernels::Activation;
use crate::kernels::scratch::{self, Buffer};
use std::ops::Range;

/// Rows of `A` (and of the block of `C`) per micro-kernel call.
pub(crate) const MR: usize = 12;
/// Columns of `B` (and of the block of `C`) per micro-kernel call: two 16-lane registers.
pub(crate) const NR: usize = 32;
/// Columns of a narrow last panel: one 16-lane register.
pub(crate) const NR_NARROW: usize = 16;
/// Most depth of one pass over a packed panel of `B` (`KC × NR` floats = 32 KiB, half of L1).
pub(crate) const KC: usize = 256;

/// The depth of every pass of a GEMM of depth `depth` (the last one may be shorter): as few
/// passes as [`KC`] allows, of equal depth, so that no pass is a short remainder that reloads
/// and stores `C` for a few products.
pub(crate) fn depth_block(depth: usize) -> usize {
    depth.div_ceil(depth.div_ceil(KC).max(1)).max(1)
}

#[cfg(target_arch = "x86_64")]
mod avx512;
mod listed;
mod micro;
mod pack;
mod portable;
mod unpacked;

pub(crate) use listed::{ListedRows, gemm_listed};
pub(crate) use micro::{BlockOutput, RowsOfB, Strided};
use micro::{MicroKernels, micro_kernels};
pub use pack::PackedMatrix;
pub(crate) use portable::portable_kernel;
pub(crate) use unpacked::{gemm_accumulate, matmul_f64, sgemm};

/// `B`, the right operand of [`gemm_packed`]: `[depth, columns]`, row-major, rows `ldb` apart
/// (`(depth − 1) · ldb + columns` floats).
#[derive(Clone, Copy)]
pub(crate) enum RightOperand<'a> {
    /// Anywhere: copied into column panels depth block by depth block when `A` has enough rows
    /// to repay the copy (the kernel then reads `B` from L1), read in place otherwise.
    Rows { values: &'a [f32], ldb: usize },
    /// Just written (so in cache), with rows [`resident_stride`] apart: read in place unless
    /// `A` has more than [`RESIDENT_PACK_MIN_ROWS`] rows (measured on 3×3 stride-2 layers: 5–10 %
    /// faster than packing at 64 rows, 5 % slower at 256).
    Resident { values: &'a [f32], ldb: usize },
}

/// A row stride of at least `columns` floats for a `B` read in place
/// ([`RightOperand::Resident`]): an odd number of cache lines, so that the rows of a column
/// panel spread over every set of L1 instead of a few (a stride of 2 KiB would put all of them in
/// two of its 64 sets).
pub(crate) fn resident_stride(columns: usize) -> usize {
    const LINE: usize = 16;
    (columns.div_ceil(LINE) | 1) * LINE
}

/// What becomes of `C` once its products are summed:
/// `C[i][j] = activation(C[i][j] + bias[i])`, `i` a row of `A`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Epilogue<'a> {
    /// One value per row of `A` (all of them, not just a call's panels), or none.
    pub(crate) bias: Option<&'a [f32]>,
    /// Applied after the bias.
    pub(crate) activation: Activation,
}

/// `C = epilogue(A · B)` (`accumulate == false`) or `C = epilogue(C + A · B)` for the rows of
/// `a` in `panels` (`C`'s first row is row `panels.start · MR` of `A`); `B` is
/// `[a.depth(), columns]`, `C` has rows `ldc` apart.
///
/// # Safety
/// `c` must address `(rows of the panels) × columns` floats, rows `ldc` apart, that nothing
/// else reads or writes during the call; `b` must hold `(depth − 1) · ldb + columns` floats;
/// the epilogue's bias, if any, one value per row of `a`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_packed(
    a: &PackedMatrix,
    panels: Range<usize>,
    b: RightOperand<'_>,
    columns: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    epilogue: Epilogue<'_>,
) {
    debug_assert!(epilogue.bias.is_none_or(|bias| bias.len() >= a.rows));
    let depth = a.depth;
    let first_row = panels.start * MR;
    let rows = a.rows.min(panels.end * MR).saturating_sub(first_row);
    if rows == 0 || columns == 0 {
        return;
    }
    if depth == 0 {
        for i in 0..rows {
            // SAFETY: row `i` of `C` is inside the caller's region.
            let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), columns) };
            let bias = epilogue.bias.map_or(0.0, |bias| bias[first_row + i]);
            row.iter_mut().for_each(|v| *v = epilogue.activation.apply(if accumulate { *v } else { 0.0 } + bias));
        }
        return;
    }
    let kernels = micro_kernels::<Strided>();
    let layout = ColumnPanels::new(columns);
    let target = Target { a, first_row, rows, layout: &layout, c, ldc, accumulate, epilogue };
    // A panel of `B` serves every panel of `A`: with few of those, copying it costs about as
    // much as the products, and the kernel reads `B` in place instead.
    let (pack, b, ldb) = match b {
        RightOperand::Rows { values, ldb } => (rows > PACK_MIN_ROWS, values, ldb),
        RightOperand::Resident { values, ldb } => (rows > RESIDENT_PACK_MIN_ROWS, values, ldb),
    };
    debug_assert!(b.len() >= (depth - 1) * ldb + columns);
    scratch::with(Buffer::PackedB, |packed| {
        let step = depth_block(depth);
        let packed = if pack { scratch::lines(packed, step * layout.padded) } else { &mut [] };
        let mut k0 = 0;
        while k0 < depth {
            let kc = step.min(depth - k0);
            if pack {
                pack_b(b, ldb, k0..k0 + kc, &layout, &mut packed[..kc * layout.padded]);
            }
            let block = |p: usize, q: usize| {
                let start = layout.panel(q).0;
                let b_panel = if pack {
                    Strided { first: packed[start * kc..].as_ptr(), stride: layout.panel(q).1 }
                } else {
                    Strided { first: b[k0 * ldb + start..].as_ptr(), stride: ldb }
                };
                // SAFETY: the caller's guarantees on `C`; the `B` panel holds kc rows of at
                // least the panel's width.
                unsafe { target.block(&kernels, p, q, k0..k0 + kc, b_panel) };
            };
            let a_panels = panels.start..panels.start + rows.div_ceil(MR);
            // Keep the smaller operand's block in cache and stream the larger one past it once:
            // many rows and few columns (a wide layer on a small map) sweep the columns inside.
            if rows > layout.padded {
                for p in a_panels {
                    (0..layout.count).for_each(|q| block(p, q));
                }
            } else {
                for q in 0..layout.count {
                    a_panels.clone().for_each(|p| block(p, q));
                }
            }
            k0 += kc;
        }
    });
}

/// A GEMM's `C` and what the micro-kernels need to store into it, block by block.
struct Target<'a> {
    a: &'a PackedMatrix,
    /// Row of `A` that is `C`'s first row, and how many rows `C` has.
    first_row: usize,
    rows: usize,
    layout: &'a ColumnPanels,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    epilogue: Epilogue<'a>,
}

impl Target<'_> {
    /// The products of panel `p` of `A` over `depths` (one of its depth blocks) with column
    /// panel `q` of `B`, whose rows `b` gives: stored (or added) into `C`'s block, finished
    /// after the last depth block.
    ///
    /// # Safety
    /// As for [`gemm_packed`]; `b`'s rows `0..depths.len()` each hold panel `q`'s columns.
    #[inline(always)]
    unsafe fn block<B: RowsOfB>(&self, kernels: &MicroKernels<B>, p: usize, q: usize, depths: Range<usize>, b: B) {
        let row = p * MR - self.first_row;
        let (start, width) = self.layout.panel(q);
        let a_panel = self.a.panel(p, depths.clone());
        // The next panel of `A` (contiguous after this one), fetched while this one runs.
        let next = a_panel.as_ptr().wrapping_add(depths.len() * MR);
        let last = depths.end == self.a.depth;
        let output = BlockOutput {
            // SAFETY (of the offset): the block (rows row.., columns start..) lies inside `C`
            // as the caller guaranteed.
            c: unsafe { self.c.add(row * self.ldc + start) },
            ldc: self.ldc,
            rows: MR.min(self.rows - row),
            cols: width.min(self.layout.columns - start),
            accumulate: self.accumulate || depths.start > 0,
            bias: match self.epilogue.bias {
                Some(bias) if last => bias[p * MR..].as_ptr(),
                _ => std::ptr::null(),
            },
            activation: if last { self.epilogue.activation } else { Activation::Identity },
        };
        let kernel = kernels.pick(width, output.rows);
        // SAFETY: the output block is inside `C`; the `A` panel holds `depths.len()·MR` floats,
        // and `b` that many rows of at least `cols` floats; the bias, `rows` values from the
        // block's first row.
        unsafe { kernel(depths.len(), a_panel.as_ptr(), next, b, &output) };
    }
}

/// Most rows of `A` for which [`gemm_packed`] reads `B` in place rather than packing it.
const PACK_MIN_ROWS: usize = 4 * MR;

/// Most rows of `A` for which [`gemm_packed`] reads a [`RightOperand::Resident`] `B` in place.
const RESIDENT_PACK_MIN_ROWS: usize = 128;

/// How the columns of `B` are cut into panels: [`NR`] wide, except a last remainder of at
/// most [`NR_NARROW`] columns, which gets a narrow panel (no work on 16 padding columns).
struct ColumnPanels {
    columns: usize,
    count: usize,
    /// Columns of all panels together, padding included.
    padded: usize,
}

impl ColumnPanels {
    fn new(columns: usize) -> Self {
        let (full, rest) = (columns / NR, columns % NR);
        let last = match rest {
            0 => 0,
            1..=NR_NARROW => NR_NARROW,
            _ => NR,
        };
        ColumnPanels { columns, count: full + usize::from(rest > 0), padded: full * NR + last }
    }

    /// First column and width of panel `q`; a panel of width `w` starts at `start · kc` in the
    /// packed buffer.
    fn panel(&self, q: usize) -> (usize, usize) {
        let start = q * NR;
        (start, if start + NR <= self.columns { NR } else { self.padded - start })
    }
}

/// Copies rows `k` of `B` into its column panels, `[panel][k][width]`, zero-padded.
fn pack_b(b: &[f32], ldb: usize, k: Range<usize>, layout: &ColumnPanels, packed: &mut [f32]) {
    let kc = k.len();
    for q in 0..layout.count {
        let (start, width) = layout.panel(q);
        let cols = width.min(layout.columns - start);
        let panel = &mut packed[start * kc..(start + width) * kc];
        if cols == NR {
            // Full panels (nearly all): fixed-size copies the compiler inlines, not a `memcpy`
            // and a zero-length `memset` call per row.
            for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                let src: &[f32; NR] = b[(k.start + kk) * ldb + start..][..NR].try_into().expect("NR values");
                <&mut [f32; NR]>::try_from(dst).expect("NR slots").copy_from_slice(src);
            }
            continue;
        }
        for (kk, dst) in panel.chunks_exact_mut(width).enumerate() {
            let src = &b[(k.start + kk) * ldb + start..][..cols];
            dst[..cols].copy_from_slice(src);
            dst[cols..].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j])).sum();
            }
        }
        c
    }

    #[test]
    fn resident_strides_are_odd_lines_of_at_least_the_columns() {
        for columns in 0..3000 {
            let stride = resident_stride(columns);
            assert!(
                stride >= columns
                    && stride.is_multiple_of(16)
                    && !(stride / 16).is_multiple_of(2)
                    && stride < columns + 33
            );
        }
    }

    #[test]
    fn depth_blocks_are_even_and_at_most_kc() {
        for (depth, block) in [(1, 1), (256, 256), (257, 129), (288, 144), (576, 192), (1152, 231), (0, 1)] {
            assert_eq!(depth_block(depth), block, "depth {depth}");
        }
        for depth in 1..2000 {
            let block = depth_block(depth);
            assert!(block <= KC && depth.div_ceil(block) == depth.div_ceil(KC), "depth {depth}: block {block}");
        }
    }

    #[test]
    fn packed_gemm_matches_f64_reference_on_edges_strides_and_panel_ranges() {
        for (m, k, n) in [
            (1, 1, 1),
            (12, 256, 32),
            (13, 257, 33),
            (25, 600, 70),
            (7, 3, 100),
            (40, 9, 5),
            (30, 40, 50),
            (5, 17, 16),
            (61, 300, 45),
            (100, 20, 17),
            (49, 513, 64),
        ] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let expected = reference(&a, &b, m, k, n);
            let packed = PackedMatrix::pack(&a, m, k, k);
            // B read through a wider row stride, C written with one, both fresh and accumulating.
            let ldb = n + 3;
            let mut wide_b = vec![f32::NAN; (k - 1) * ldb + n];
            for p in 0..k {
                wide_b[p * ldb..p * ldb + n].copy_from_slice(&b[p * n..(p + 1) * n]);
            }
            let ldc = n + 5;
            let kinds = [RightOperand::Rows { values: &wide_b, ldb }, RightOperand::Resident { values: &wide_b, ldb }];
            for (accumulate, b_kind) in [false, true].into_iter().flat_map(|a| kinds.map(|k| (a, k))) {
                let mut c = vec![if accumulate { 1.0 } else { f32::NAN }; m * ldc];
                // SAFETY: `c` holds m rows of ldc ≥ n floats; `wide_b` is sized for k rows.
                unsafe {
                    gemm_packed(
                        &packed,
                        0..packed.panels(),
                        b_kind,
                        n,
                        c.as_mut_ptr(),
                        ldc,
                        accumulate,
                        Epilogue::default(),
                    )
                };
                for i in 0..m {
                    for j in 0..n {
                        let want = expected[i * n + j] + if accumulate { 1.0 } else { 0.0 };
                        let got = f64::from(c[i * ldc + j]);
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{m}x{k}x{n} [{i},{j}]: {got} vs {want}"
                        );
                    }
                    assert!(
                        c[i * ldc + n..(i + 1) * ldc].iter().all(|v| v.is_nan() || *v == 1.0),
                        "wrote past the row"
                    );
                }
            }
            // A sub-range of panels computes just those rows.
            if packed.panels() > 1 {
                let mut c = vec![0.0f32; (m - MR) * n];
                // SAFETY: rows MR.. of C, n columns each.
                unsafe {
                    gemm_packed(
                        &packed,
                        1..packed.panels(),
                        RightOperand::Rows { values: &b, ldb: n },
                        n,
                        c.as_mut_ptr(),
                        n,
                        false,
                        Epilogue::default(),
                    )
                };
                for (got, want) in c.iter().zip(&expected[MR * n..]) {
                    assert!((f64::from(*got) - want).abs() <= 1e-4 * (1.0 + want.abs()));
                }
            }
        }
    }

    #[test]
    fn both_micro_kernels_agree_with_the_reference_and_finish_blocks() {
        let k = 37;
        let (mut a, b, bias) = (values(k * MR, 3), values(k * NR, 4), values(MR, 5));
        a[5 * MR + 2] = f32::NAN; // row 2 of the block is NaN whatever the activation
        let activations =
            [Activation::Identity, Activation::Relu, Activation::Silu, Activation::LeakyRelu(0.1), Activation::Sigmoid];
        type Kernel = micro::MicroKernel<Strided>;
        let kernels = micro_kernels::<Strided>();
        let shapes: [(usize, Kernel, Kernel, usize, usize, bool); 6] = [
            (NR, portable_kernel::<NR, Strided>, kernels.pick(NR, MR), MR, NR, true),
            (NR_NARROW, portable_kernel::<NR_NARROW, Strided>, kernels.pick(NR_NARROW, 11), 11, 13, false),
            (NR, portable_kernel::<NR, Strided>, kernels.pick(NR, 5), 5, 20, true),
            (NR, portable_kernel::<NR, Strided>, kernels.pick(NR, 8), 8, 32, false),
            (NR_NARROW, portable_kernel::<NR_NARROW, Strided>, kernels.pick(NR_NARROW, 4), 4, 16, true),
            (NR, portable_kernel::<NR, Strided>, kernels.pick(NR, 3), 3, 31, true),
        ];
        for (width, portable, chosen, rows, cols, accumulate) in shapes {
            for (activation, with_bias) in activations.into_iter().flat_map(|a| [(a, false), (a, true)]) {
                let run = |kernel: Kernel| {
                    let mut c: Vec<f32> = values(MR * width, 6);
                    let output = BlockOutput {
                        c: c.as_mut_ptr(),
                        ldc: width,
                        rows,
                        cols,
                        accumulate,
                        bias: if with_bias { bias.as_ptr() } else { std::ptr::null() },
                        activation,
                    };
                    // SAFETY: MR × width blocks with ldc = width; `bias` holds MR values.
                    unsafe { kernel(k, a.as_ptr(), a.as_ptr(), Strided { first: b.as_ptr(), stride: width }, &output) };
                    c
                };
                let (by_portable, by_chosen, before) = (run(portable), run(chosen), values(MR * width, 6));
                for i in 0..MR {
                    for j in 0..width {
                        let at = i * width + j;
                        if i >= rows || j >= cols {
                            assert!(by_portable[at] == before[at] && by_chosen[at] == before[at], "wrote outside");
                            continue;
                        }
                        let sum: f64 = (0..k).map(|p| f64::from(a[p * MR + i]) * f64::from(b[p * width + j])).sum();
                        let sum = sum + if accumulate { f64::from(before[at]) } else { 0.0 };
                        let sum = sum + if with_bias { f64::from(bias[i]) } else { 0.0 };
                        let want = activation.apply(sum as f32);
                        for got in [by_portable[at], by_chosen[at]] {
                            assert!(
                                (want.is_nan() && got.is_nan()) || (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                                "{activation:?} bias {with_bias} [{i},{j}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
