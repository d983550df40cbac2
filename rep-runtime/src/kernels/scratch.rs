//! The kernels' per-thread scratch buffers, in one place. Each grows to the largest use seen on
//! its thread and is kept for the next call (so a planned forward allocates nothing once warm).
//! A buffer is taken out while in use and put back after, so a nested task that rayon runs on
//! the same thread simply gets a fresh (empty) one instead of aliasing it.

use std::cell::Cell;

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
}

thread_local! {
    static BUFFERS: [Cell<Vec<f32>>; 6] = const {
        [
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

/// Runs `f` on this thread's `buffer` (taken out for the call, put back after).
pub(super) fn with<R>(buffer: Buffer, f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    let mut values = take(buffer);
    let result = f(&mut values);
    put_back(buffer, values);
    result
}
