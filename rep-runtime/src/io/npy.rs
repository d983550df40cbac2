//! NCHW `f32` tensors as NumPy `.npy` files, read with every size checked against the bytes
//! present and written atomically.

use super::files::write_atomic;
use crate::error::{Error, Result};
use ndarray::{Array, ArrayView, Dimension};
use ndarray_npy::{ViewNpyExt, WriteNpyExt};
use std::path::Path;

/// Reads a little-endian `f32` `.npy` file (C or Fortran order) of dimension `D`.
///
/// The file is read once into memory and the header's shape is checked against the bytes that
/// follow it before any tensor is allocated, so a header that claims more than the file holds
/// is an error, never an attempt at a huge allocation.
pub fn read_npy<D: Dimension>(path: impl AsRef<Path>) -> Result<Array<f32, D>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    // Word-aligned copy, so that the data (at a header-length offset, a multiple of 16 in every
    // npy version) can be viewed as `f32` without copying it element by element.
    let mut words = vec![0u32; bytes.len().div_ceil(4)];
    // SAFETY: `words` owns `4 · words.len() ≥ bytes.len()` initialized bytes; u8 has no
    // alignment requirement, and the u32 slice is not used while this view is alive.
    let aligned = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), bytes.len()) };
    aligned.copy_from_slice(&bytes);
    drop(bytes);
    let view = ArrayView::<f32, D>::view_npy(aligned)
        .map_err(|e| Error::Npy { path: path.to_owned(), reason: e.to_string() })?;
    Ok(view.as_standard_layout().into_owned())
}

/// Writes `array` as an `f32` `.npy` file, atomically (see [`super::write_atomic`]).
pub fn write_npy<D: Dimension>(path: impl AsRef<Path>, array: &Array<f32, D>) -> Result<()> {
    let path = path.as_ref();
    write_atomic(path, |file| array.write_npy(file).map_err(std::io::Error::other))
}
