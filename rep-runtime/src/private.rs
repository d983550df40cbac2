//! Helpers the code `#[rep::block]`, `#[rep::model]` and `#[rep::graph]` generate calls; not part of the API
//! (serde's `__private` convention).

use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use crate::layers::{Conv2d, Linear, SqueezeExcite};
use ndarray::{Array1, Array4};

/// Adds a branch's output to the running sum of a block (`None` before the first branch),
/// refusing with a shape error instead of panicking when the shapes differ.
pub fn accumulate(sum: &mut Option<Array4<f32>>, branch: Array4<f32>, name: &str) -> Result<()> {
    match sum {
        None => *sum = Some(branch),
        Some(total) if total.shape() == branch.shape() && total.len() >= crate::kernels::PARALLEL_ELEMENTS => {
            ndarray::Zip::from(total).and(&branch).par_for_each(|t, &b| *t += b);
        }
        Some(total) if total.shape() == branch.shape() => *total += &branch,
        Some(total) => return Err(Error::shape(format!("output of branch `{name}`"), total.shape(), branch.shape())),
    }
    Ok(())
}

/// Checks that a model's next layer takes the channels the previous one outputs, then records
/// what this one outputs. `previous` is `None` before the first layer that has channels.
pub fn chain_channels(previous: &mut Option<(String, usize)>, name: String, input: usize, output: usize) -> Result<()> {
    if let Some((before, channels)) = previous.as_ref()
        && *channels != input
    {
        return Err(Error::geometry(format!(
            "`{name}` takes {input} input channels but `{before}` before it outputs {channels}"
        )));
    }
    *previous = Some((name, output));
    Ok(())
}

/// A convolution of `geometry` with zero weights and a zero bias (a fused skeleton).
pub fn zero_conv(geometry: ConvGeometry) -> Result<Conv2d> {
    geometry.validate()?;
    Conv2d::from_weights(geometry, Array4::zeros(geometry.weight_shape()), Some(Array1::zeros(geometry.out_channels)))
}

/// A squeeze-excite of zeros on `channels` channels with `hidden` inside.
pub fn zero_squeeze_excite(channels: usize, hidden: usize) -> Result<SqueezeExcite> {
    Ok(SqueezeExcite {
        down: zero_conv(ConvGeometry::new(channels, hidden, 1))?,
        up: zero_conv(ConvGeometry::new(hidden, channels, 1))?,
        names: ("down", "up"),
    })
}

/// A linear layer `[out, in]` of zeros, with a zero bias.
pub fn zero_linear(inputs: usize, outputs: usize) -> Linear {
    Linear { weight: ndarray::Array2::zeros((outputs, inputs)), bias: Some(Array1::zeros(outputs)) }
}

/// Whether two channel counts can meet: they are equal, or one is decided only at run time.
pub const fn channels_meet(a: Option<usize>, b: Option<usize>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// The channels of a concatenation of `parts`, when every part's is static.
pub const fn channels_sum(parts: &[Option<usize>]) -> Option<usize> {
    let mut total = 0usize;
    let mut i = 0;
    while i < parts.len() {
        match parts[i] {
            Some(c) => total += c,
            None => return None,
        }
        i += 1;
    }
    Some(total)
}

/// The channels of an addition of `parts`: the first static one (the others must meet it).
pub const fn channels_any(parts: &[Option<usize>]) -> Option<usize> {
    let mut i = 0;
    while i < parts.len() {
        if parts[i].is_some() {
            return parts[i];
        }
        i += 1;
    }
    None
}

/// Whether every static one of `parts` meets `first`.
pub const fn all_meet(first: Option<usize>, parts: &[Option<usize>]) -> bool {
    let mut i = 0;
    while i < parts.len() {
        if !channels_meet(first, parts[i]) {
            return false;
        }
        i += 1;
    }
    true
}
