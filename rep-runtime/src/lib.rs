//! # rep-runtime
//!
//! The runtime of `rep`: everything needed to run, fuse and load structurally
//! re-parameterizable convolutional networks, usable by hand without the macros.
//!
//! * [`layers`] — Conv2d, BatchNorm2d (PyTorch training semantics), scaling layer, implicit
//!   knowledge, pooling, activations, SE, Linear, ConvBn — NCHW `f32` on `ndarray`.
//! * [`fusion`] — the algebra that turns linear train-time branches into one
//!   [`fusion::AffineConv`] (kernel + bias + geometry, in f64) and sums them.
//! * [`kernels`] — im2col + packed SGEMM, Winograd, depthwise and pointwise convolution, the
//!   convolution's backward.
//! * [`graph`] — graph networks (YOLO): layers reading earlier outputs, concatenation,
//!   addition, upsampling, max pooling; the planned re-parameterization check.
//! * [`plan`] — compiled, allocation-free inference: an immutable `Plan`, a `PlanState` per caller.
//! * [`train`] — backward passes, gradients by name, losses, optimizers and schedules.
//! * [`io`] — safetensors state dicts with all-or-nothing, fully reported loading; key maps.
//! * [`compare`] — the fused-vs-train equivalence measure.
//!
//! ```
//! use rep_runtime::{ConvGeometry, fusion, layers::{BatchNorm2d, ConvBn, Layer}};
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! # fn main() -> rep_runtime::Result<()> {
//! let mut rng = StdRng::seed_from_u64(0);
//! // RepVGG block, 8 → 8 channels, stride 1: 3×3+BN, 1×1+BN and an identity BN.
//! let dense = ConvBn::new(ConvGeometry::new(8, 8, 3).padding(1), &mut rng)?;
//! let pointwise = ConvBn::new(ConvGeometry::new(8, 8, 1), &mut rng)?;
//! let identity = BatchNorm2d::new(8);
//! let fused = fusion::sum_branches(&[
//!     ("dense", dense.fuse()?),
//!     ("pointwise", pointwise.fuse()?),
//!     ("identity", fusion::bn_identity(&identity, 1)?),
//! ])?
//! .to_conv2d();
//!
//! let x = ndarray::Array4::<f32>::ones((1, 8, 5, 7));
//! let train = &(&dense.forward(&x)? + &pointwise.forward(&x)?) + &identity.forward(&x)?;
//! let deploy = fused.forward(&x)?;
//! assert!((&train - &deploy).iter().all(|d| d.abs() < 1e-4));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod compare;
pub mod dim;
pub mod ema;
pub mod error;
pub mod fusion;
pub mod geometry;
pub mod graph;
pub mod io;
pub mod kernels;
pub mod layers;
pub mod plan;
pub mod train;
mod traits;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use dim::{Const, Dim};
pub use error::{Error, Result};
pub use geometry::{ConvGeometry, Hw};
pub use io::StateDict;
pub use layers::{Costs, add_macs};
pub use traits::{Block, Reparameterize, StageRoles};
pub use {ndarray, rand};
