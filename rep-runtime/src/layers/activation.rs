//! Activations as layers (the function itself is [`crate::kernels::Activation`], which the
//! kernels apply inside their epilogues).

use super::Layer;
use crate::error::Result;
pub use crate::kernels::Activation;
use ndarray::Array4;

impl Layer for Activation {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        let mut y = x.clone();
        self.apply_inplace(&mut y);
        Ok(y)
    }
}
