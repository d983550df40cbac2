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
    // Read into words, so that the data (at a header-length offset, a multiple of 16 in every
    // npy version) can be viewed as `f32` in place.
    let (words, len) = super::files::read_whole::<u32>(path)?;
    // SAFETY: `words` owns `4 · words.len() ≥ len` initialized bytes; u8 has no alignment
    // requirement, and `words` is not used while this view is alive.
    let bytes = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), len) };
    check_shape_size(bytes).map_err(|reason| Error::Npy { path: path.to_owned(), reason })?;
    let view = ArrayView::<f32, D>::view_npy(bytes)
        .map_err(|e| Error::Npy { path: path.to_owned(), reason: e.to_string() })?;
    Ok(view.as_standard_layout().into_owned())
}

/// Refuses a header whose shape no array can have: ndarray needs the product of the non-zero
/// axis lengths, in bytes, to fit `isize` (`[0, 2⁶⁴ − 1]` holds no element, yet its strides
/// overflow, and `ndarray-npy` panics on it). Headers it cannot read are left to `view_npy`,
/// which reports them.
fn check_shape_size(bytes: &[u8]) -> std::result::Result<(), String> {
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(1 << 16)]);
    let Some(shape) = header.split("'shape':").nth(1).and_then(|rest| rest.split(')').next()) else {
        return Ok(());
    };
    let dims = shape.trim_start().trim_start_matches('(').split(',').map(str::trim).filter(|d| !d.is_empty());
    let mut size = std::mem::size_of::<f32>();
    for dim in dims {
        let Ok(dim) = dim.replace('_', "").parse::<usize>() else { return Ok(()) };
        size = size.checked_mul(dim.max(1)).filter(|&s| s <= isize::MAX as usize).ok_or_else(|| {
            format!("the header's shape ({}) is too large for any array", shape.trim().trim_start_matches('('))
        })?;
    }
    Ok(())
}

/// Writes `array` as an `f32` `.npy` file, atomically (see [`super::write_atomic`]).
pub fn write_npy<D: Dimension>(path: impl AsRef<Path>, array: &Array<f32, D>) -> Result<()> {
    let path = path.as_ref();
    write_atomic(path, |file| array.write_npy(file).map_err(std::io::Error::other))
}
