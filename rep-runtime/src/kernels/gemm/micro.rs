//! The micro-kernels' interface: where a block's rows of `B` lie ([`RowsOfB`]), where its
//! block of `C` goes and how it is finished ([`BlockOutput`]), and which kernels this CPU runs.

use super::{MR, NR, NR_NARROW, portable_kernel};
use crate::kernels::Activation;

/// Where and how a micro-kernel stores its `MR × W` block of `C`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockOutput {
    /// The block's first value; rows `ldc` apart.
    pub(crate) c: *mut f32,
    pub(crate) ldc: usize,
    /// Rows (≤ `MR`) and columns (≤ `W`) of the block that exist.
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// Adds the block's products to what `C` holds instead of overwriting it.
    pub(crate) accumulate: bool,
    /// The bias of the block's first row (then one per row), or null for none.
    pub(crate) bias: *const f32,
    /// Applied to each value last (after accumulating and adding the bias).
    pub(crate) activation: Activation,
}

/// Where a micro-kernel finds row `k` of its panel of `B` (whose first `cols` values it reads).
pub(crate) trait RowsOfB: Copy {
    /// The first value of row `k`.
    ///
    /// # Safety
    /// `k` is below the depth the source was made for.
    unsafe fn row(self, k: usize) -> *const f32;
}

/// Rows `stride` floats apart: a packed panel, or `B` read in place.
#[derive(Clone, Copy)]
pub(crate) struct Strided {
    pub(crate) first: *const f32,
    pub(crate) stride: usize,
}

impl RowsOfB for Strided {
    #[inline(always)]
    unsafe fn row(self, k: usize) -> *const f32 {
        // SAFETY: the caller's `k` is inside the panel.
        unsafe { self.first.add(k * self.stride) }
    }
}

/// One `MR × W` block: `C[i][j] = act((C[i][j] +) Σ_k a[k·MR + i] · B_k[j] + bias[i])`
/// for `i < rows`, `j < cols` of the [`BlockOutput`] (only those columns of `B`'s rows are
/// read); the second pointer is a hint (possibly dangling, never read) of what to prefetch: the
/// next panel of `A`, which the weights' layout streams from memory.
pub(super) type MicroKernel<B> = unsafe fn(usize, *const f32, *const f32, B, &BlockOutput);

/// The micro-kernels for full ([`NR`]) and narrow ([`NR_NARROW`]) panels, each for blocks of
/// at most 4, 8 and [`MR`] rows: a last panel of `A` with 4 or 8 rows (64 or 128 output
/// channels, say) does no multiply-adds on its zero padding.
#[derive(Clone, Copy)]
pub(super) struct MicroKernels<B> {
    wide: [MicroKernel<B>; 3],
    narrow: [MicroKernel<B>; 3],
}

impl<B> MicroKernels<B> {
    /// The kernel for a block `width` columns wide with `rows` rows.
    pub(super) fn pick(&self, width: usize, rows: usize) -> MicroKernel<B> {
        let kernels = if width == NR { &self.wide } else { &self.narrow };
        kernels[match rows {
            0..=4 => 0,
            5..=8 => 1,
            _ => 2,
        }]
    }
}

/// The fastest micro-kernels this CPU runs.
pub(super) fn micro_kernels<B: RowsOfB>() -> MicroKernels<B> {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::isa::avx512() {
        use super::avx512::kernel;
        return MicroKernels {
            wide: [kernel::<2, 4, B>, kernel::<2, 8, B>, kernel::<2, MR, B>],
            narrow: [kernel::<1, 4, B>, kernel::<1, 8, B>, kernel::<1, MR, B>],
        };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::isa::avx2_fma() {
        use super::portable::avx2_kernel;
        return MicroKernels { wide: [avx2_kernel::<NR, B>; 3], narrow: [avx2_kernel::<NR_NARROW, B>; 3] };
    }
    MicroKernels { wide: [portable_kernel::<NR, B>; 3], narrow: [portable_kernel::<NR_NARROW, B>; 3] }
}
