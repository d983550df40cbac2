//! Command-line arguments the example commands share.

use std::path::PathBuf;

/// The files of an `infer` command: a checkpoint and an NCHW f32 `.npy` in, an `.npy` out.
#[derive(clap::Args)]
pub struct InferFiles {
    /// The checkpoint to run (train-time or deploy form, the original's names).
    #[arg(long)]
    pub weights: PathBuf,
    /// NCHW f32 input `.npy`.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the output `.npy`.
    #[arg(long)]
    pub output: PathBuf,
}
