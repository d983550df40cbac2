//! # rep
//!
//! Structural re-parameterization of convolutional networks: train a rich multi-branch block,
//! deploy one convolution that computes exactly the same function.
//!
//! * [`block`] declares a re-parameterizable block and generates its training forward, the fused
//!   `<Name>Fused` struct, [`Reparameterize`], [`layers::Parameters`], [`Costs`] and [`Block`];
//! * [`model`] composes blocks, stages of blocks, a global pool and a linear head;
//! * [`zoo`] holds the families of the literature with their authors' weight names and
//!   checkpoint adapters (RepVGG, OREPA, YOLOv7's parts, DBB, ACNet);
//! * everything else is the runtime ([`rep_runtime`]): layers, the f64 fusion algebra, kernels,
//!   safetensors I/O — usable by hand without the macros.
//!
//! ```
//! use rep::layers::{Layer, randomize_vectors};
//! use rep::{Const, Reparameterize};
//!
//! /// RepVGG block.
//! #[rep::block(post(relu), fused = "rbr_reparam")]
//! pub struct RepVgg<Cin, Cout, S> {
//!     #[rep(rename = "rbr_dense")]
//!     dense: ConvBn<Cin, Cout, 3, S>,
//!     #[rep(rename = "rbr_1x1")]
//!     pointwise: ConvBn<Cin, Cout, 1, S>,
//!     #[rep(rename = "rbr_identity", when = Cin == Cout && S == 1)]
//!     identity: Option<Bn<Cout>>,
//! }
//!
//! # fn main() -> rep::Result<()> {
//! let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
//! let mut block = RepVgg::new(Const::<8>, Const::<8>, Const::<1>, &mut rng)?; // checked at compile time
//! randomize_vectors(&mut block, &mut rng);
//! let x = rep::ndarray::Array4::ones((1, 8, 7, 5));
//! let fused = block.fuse()?;
//! let diff = (&block.forward(&x)? - &fused.forward(&x)?).mapv(f32::abs);
//! assert!(diff.iter().all(|d| *d < 1e-4));
//! let dynamic = RepVgg::new(8usize, 16usize, 2usize, &mut rng)?; // checked here, at run time
//! assert!(dynamic.identity.is_none());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub use rep_runtime::*;

pub mod zoo;

extern crate self as rep;

pub use rep_macros::{block, graph, model};
