//! What the network families' checkpoint adapters ([`super::repvgg::Checkpoint`],
//! [`super::yolov7::checkpoint`]) share: the form a checkpoint holds, and the network loaded
//! from it in that form. Each family adds what only it knows (its namings, its architecture
//! inference, its outputs) on top.

use crate::{Reparameterize, Result};

/// The form of a checkpoint's weights: train-time (multi-branch blocks, BatchNorm) or deploy
/// (one convolution per block, as its authors' fuse writes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Train-time weights.
    Train,
    /// Deploy (fused) weights.
    Deploy,
}

/// A network of type `T` built from a checkpoint, in the form the checkpoint had.
#[derive(Clone, Debug)]
pub enum Loaded<T: Reparameterize> {
    /// Train-time weights.
    Train(Box<T>),
    /// Deploy weights, loaded into the fused skeleton directly.
    Deploy(Box<T::Fused>),
}

impl<T: Reparameterize> Loaded<T> {
    /// The form the checkpoint had.
    pub fn form(&self) -> Form {
        match self {
            Loaded::Train(_) => Form::Train,
            Loaded::Deploy(_) => Form::Deploy,
        }
    }

    /// The deploy form: fused now when the weights were train-time.
    pub fn into_deploy(self) -> Result<T::Fused> {
        match self {
            Loaded::Train(model) => model.fuse(),
            Loaded::Deploy(model) => Ok(*model),
        }
    }
}
