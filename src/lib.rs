//! # rep
//!
//! Structural re-parameterization of convolutional networks: train a rich multi-branch block,
//! deploy one convolution that computes exactly the same function.
//!
//! This facade re-exports [`rep_runtime`] (layers, fusion algebra, kernels, weight I/O) and
//! the proc macros of `rep-macros`.

pub use rep_runtime::*;

extern crate self as rep;

pub use rep_macros::{block, model};
