//! Matrices packed into panels of `MR` rows, depth block by depth block.

use super::{MR, depth_block};
use std::ops::Range;

/// A row-major `[rows, depth]` matrix packed into panels of `MR` rows, depth block by depth
/// block: block `b` (depths `b·kc ..`, `kc` = `depth_block` of them, fewer in the last) holds every panel `p` in turn, and panel
/// `p` holds, for each `k` of the block, `A[p·MR .. p·MR + MR, k]` (zeros past the last row).
/// A GEMM pass over one depth block thus reads one contiguous stream.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedMatrix {
    pub(super) data: Vec<f32>,
    pub(super) rows: usize,
    pub(super) depth: usize,
}

impl PackedMatrix {
    /// Packs `rows × depth` values of `a`, row `i` starting at `a[i · row_stride]`.
    ///
    /// # Panics
    /// If `a` is too short for the shape (callers pass matrices they have just checked).
    pub fn pack(a: &[f32], rows: usize, depth: usize, row_stride: usize) -> Self {
        if rows > 0 && depth > 0 {
            assert!(a.len() >= (rows - 1) * row_stride + depth, "matrix shorter than its shape");
        }
        let panels = rows.div_ceil(MR);
        let mut data = vec![0.0; panels * depth * MR];
        let step = depth_block(depth);
        for k0 in (0..depth).step_by(step) {
            let kc = step.min(depth - k0);
            let block = &mut data[k0 * panels * MR..(k0 + kc) * panels * MR];
            for (p, panel) in block.chunks_exact_mut(kc * MR).enumerate() {
                for i in 0..MR.min(rows - p * MR) {
                    let row = &a[(p * MR + i) * row_stride + k0..][..kc];
                    for (slot, &value) in panel.chunks_exact_mut(MR).zip(row) {
                        slot[i] = value;
                    }
                }
            }
        }
        PackedMatrix { data, rows, depth }
    }

    /// The value at `row`, `col` of the matrix that was packed.
    pub(crate) fn get(&self, row: usize, col: usize) -> f32 {
        let (p, i) = (row / MR, row % MR);
        let step = depth_block(self.depth);
        let (k0, kc) = (col / step * step, step.min(self.depth - col / step * step));
        self.data[k0 * self.panels() * MR + (p * kc + col - k0) * MR + i]
    }

    /// Floats held, padding included (for memory accounting).
    pub fn floats(&self) -> usize {
        self.data.len()
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the matrix (the GEMM's `K`).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Number of `MR`-row panels.
    pub fn panels(&self) -> usize {
        self.rows.div_ceil(MR)
    }

    /// Panel `p` over the depth block `k` (one of [`depth_block`]'s blocks).
    pub(super) fn panel(&self, p: usize, k: Range<usize>) -> &[f32] {
        let step = depth_block(self.depth);
        debug_assert!(k.start.is_multiple_of(step) && k.end == self.depth.min(k.start + step));
        let start = k.start * self.panels() * MR + p * k.len() * MR;
        &self.data[start..start + k.len() * MR]
    }
}
