//! Helpers the code `#[rep::block]` and `#[rep::model]` generate calls; not part of the API
//! (serde's `__private` convention).

use crate::error::{Error, Result};
use ndarray::Array4;

/// Adds a branch's output to the running sum of a block (`None` before the first branch),
/// refusing with a shape error instead of panicking when the shapes differ.
pub fn accumulate(sum: &mut Option<Array4<f32>>, branch: Array4<f32>, name: &str) -> Result<()> {
    match sum {
        None => *sum = Some(branch),
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
