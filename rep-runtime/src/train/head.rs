//! The backward of the head (global average pool, linear) and of the shape-changing ops of graph
//! networks (nearest upsampling, channel concatenation).

use super::Gradients;
use crate::error::{Error, Result};
use crate::layers::{GlobalAvgPool, Linear, join};
use ndarray::{Array2, Array4, Axis};

impl GlobalAvgPool {
    /// `dx[n,c,i,j] = dy[n,c] / (H·W)` for an input of spatial size `hw`.
    pub fn backward(&self, (h, w): (usize, usize), dy: &Array2<f32>) -> Array4<f32> {
        let area = (h * w) as f32;
        let (n, c) = dy.dim();
        Array4::from_shape_fn((n, c, h, w), |(n, c, _, _)| dy[[n, c]] / area)
    }
}

impl Linear {
    /// With the layer's input `x`: adds `dW = dyᵀ·x` and `db = Σ_n dy` under `prefix`, returns
    /// `dx = dy·W`.
    pub fn backward(
        &self,
        x: &Array2<f32>,
        dy: &Array2<f32>,
        prefix: &str,
        grads: &mut Gradients,
    ) -> Result<Array2<f32>> {
        if dy.dim() != (x.nrows(), self.out_features()) || x.ncols() != self.in_features() {
            return Err(Error::shape("linear output gradient", &[x.nrows(), self.out_features()], dy.shape()));
        }
        grads.accumulate(&join(prefix, "weight"), dy.t().dot(x).into_dyn())?;
        if self.bias.is_some() {
            grads.accumulate(&join(prefix, "bias"), dy.sum_axis(Axis(0)).into_dyn())?;
        }
        Ok(dy.dot(&self.weight))
    }
}

/// The transpose of [`crate::layers::upsample_nearest`]: each input position receives the sum of
/// the `factor × factor` outputs it was copied to.
pub fn upsample_nearest_backward(dy: &Array4<f32>, factor: usize) -> Result<Array4<f32>> {
    let (n, c, h, w) = dy.dim();
    if factor == 0 || h % factor != 0 || w % factor != 0 {
        return Err(Error::geometry(format!("upsampling gradient of {h}x{w} is not a multiple of factor {factor}")));
    }
    let mut dx = Array4::<f32>::zeros((n, c, h / factor, w / factor));
    for ((b, ch, i, j), &d) in dy.indexed_iter() {
        dx[[b, ch, i / factor, j / factor]] += d;
    }
    Ok(dx)
}

/// The transpose of [`crate::layers::concat_channels`]: `dy` split back along the channel axis
/// into parts of `channels[k]` channels each.
pub fn concat_channels_backward(dy: &Array4<f32>, channels: &[usize]) -> Result<Vec<Array4<f32>>> {
    let total: usize = channels.iter().sum();
    if total != dy.shape()[1] {
        return Err(Error::shape("concatenation gradient channels", &[total], &[dy.shape()[1]]));
    }
    let mut start = 0;
    Ok(channels
        .iter()
        .map(|&c| {
            let part = dy.slice(ndarray::s![.., start..start + c, .., ..]).to_owned();
            start += c;
            part
        })
        .collect())
}
