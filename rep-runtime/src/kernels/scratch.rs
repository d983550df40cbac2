//! The kernels' per-thread scratch buffers, in one place. Each grows to the largest use seen on
//! its thread and is kept for the next call (so a planned forward allocates nothing once warm).
//! A buffer is taken out while in use and put back after, so a nested task that rayon runs on
//! the same thread simply gets a fresh (empty) one instead of aliasing it.

use super::{LINE_FLOATS, to_cache_line};
use crate::geometry::ConvGeometry;
use std::cell::{Cell, RefCell};
use std::ops::Range;

/// What a buffer holds.
#[derive(Clone, Copy, Debug)]
pub(super) enum Buffer {
    /// im2col columns of one band of output rows.
    Im2col,
    /// Products of a whole-batch GEMM before they are copied into each image's planes.
    BatchedProducts,
    /// Packed panels of the SGEMM's `B`.
    PackedB,
    /// Winograd's `V` and `M` of the band being computed.
    WinogradBands,
    /// Rows (or a padded plane) of Winograd's input transform.
    WinogradRows,
    /// The gradient of im2col columns, in a convolution's backward.
    ColumnGradients,
    /// Row maxima of a max pool's plane.
    PoolRows,
}

thread_local! {
    static BUFFERS: [Cell<Vec<f32>>; 7] = const {
        [
            Cell::new(Vec::new()),
            Cell::new(Vec::new()),
            Cell::new(Vec::new()),
            Cell::new(Vec::new()),
            Cell::new(Vec::new()),
            Cell::new(Vec::new()),
            Cell::new(Vec::new()),
        ]
    };
}

/// Takes this thread's `buffer` out (empty if it is in use or was never grown).
pub(super) fn take(buffer: Buffer) -> Vec<f32> {
    BUFFERS.with(|buffers| buffers[buffer as usize].take())
}

/// Puts `values` back as this thread's `buffer`, for the next call.
pub(super) fn put_back(buffer: Buffer, values: Vec<f32>) {
    BUFFERS.with(|buffers| buffers[buffer as usize].set(values));
}

/// The first `len` floats of `values` from a cache line on, growing `values` (zero-filled,
/// never shrunk) to hold them: rows a multiple of 16 floats apart then have no 16-float vector
/// that straddles two lines (which costs two loads or stores: 8 % of RepVGG-A0's time, measured
/// on Zen 5, before the kernels' buffers started on lines).
pub(super) fn lines(values: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if values.len() < len + LINE_FLOATS {
        values.resize(len + LINE_FLOATS, 0.0);
    }
    let start = to_cache_line(values);
    &mut values[start..start + len]
}

/// Runs `f` on this thread's `buffer` (taken out for the call, put back after).
pub(super) fn with<R>(buffer: Buffer, f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    let mut values = take(buffer);
    let result = f(&mut values);
    put_back(buffer, values);
    result
}

/// im2col's gather table for one unfold shape (geometry, input `[H, W]` and output width, output
/// rows): for each tap and output column, the input position it reads within a channel's plane.
#[derive(Default)]
pub(super) struct IndexTable {
    /// The shape the positions were built for.
    pub(super) key: Option<(ConvGeometry, [usize; 3], Range<usize>)>,
    /// The positions, tap by tap.
    pub(super) positions: Vec<u32>,
}

thread_local! {
    static OFFSETS: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
}

/// Takes this thread's offset list out (a direct convolution's tap offsets; empty if it is in
/// use or was never grown).
pub(super) fn take_offsets() -> Vec<u32> {
    OFFSETS.with(Cell::take)
}

/// Puts `offsets` back as this thread's offset list, for the next call.
pub(super) fn put_back_offsets(offsets: Vec<u32>) {
    OFFSETS.with(|cell| cell.set(offsets));
}

thread_local! {
    static INDEX_TABLE: RefCell<IndexTable> = RefCell::new(IndexTable::default());
}

/// Runs `f` on this thread's [`IndexTable`] (kept for the next call, so that a repeated shape is
/// not rebuilt and a grown table allocates nothing).
pub(super) fn with_index_table<R>(f: impl FnOnce(&mut IndexTable) -> R) -> R {
    INDEX_TABLE.with(|table| f(&mut table.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_start_on_a_cache_line_whatever_the_allocation() {
        let buffer = vec![0.0f32; 64];
        for skip in 0..LINE_FLOATS {
            let offset = to_cache_line(&buffer[skip..]);
            assert!(offset < LINE_FLOATS && (buffer[skip + offset..].as_ptr() as usize).is_multiple_of(64));
        }
        for (initial, len) in [(0, 0), (0, 1), (3, 17), (100, 50), (5, 1000)] {
            let mut values = vec![1.0f32; initial];
            let line = lines(&mut values, len);
            assert_eq!((line.as_ptr() as usize % 64, line.len()), (0, len), "grown from {initial} to {len}");
        }
    }
}
