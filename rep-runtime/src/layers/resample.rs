//! Shape-changing tensor ops of graph networks (YOLO's necks): upsampling and concatenation.

use crate::error::{Error, Result};
use ndarray::Array4;

/// Nearest-neighbour upsampling by an integer factor (`nn.Upsample(scale_factor, 'nearest')`).
pub fn upsample_nearest(x: &Array4<f32>, factor: usize) -> Result<Array4<f32>> {
    if factor == 0 {
        return Err(Error::geometry("upsampling factor must be at least 1, found 0"));
    }
    let (n, c, h, w) = x.dim();
    Ok(Array4::from_shape_fn((n, c, h * factor, w * factor), |(b, ch, i, j)| x[[b, ch, i / factor, j / factor]]))
}

/// Concatenation along the channel axis (`torch.cat(dim=1)`); batch and spatial sizes must agree.
pub fn concat_channels(parts: &[&Array4<f32>]) -> Result<Array4<f32>> {
    let Some(first) = parts.first() else {
        return Err(Error::geometry("nothing to concatenate"));
    };
    let (n, _, h, w) = first.dim();
    for part in parts {
        let (pn, pc, ph, pw) = part.dim();
        if (pn, ph, pw) != (n, h, w) {
            return Err(Error::shape("concatenated tensor", &[n, pc, h, w], part.shape()));
        }
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(ndarray::Axis(1), &views).map_err(|e| Error::geometry(e.to_string()))
}
