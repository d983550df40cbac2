//! RepVGG end to end: the family (A0–B3g4 and custom layouts) defined with the DSL, PyTorch
//! checkpoints in the official and timm namings (train and deploy forms), architecture
//! inference, and deploy export.
//!
//! ```no_run
//! use rep::zoo::repvgg::{self, Naming};
//! # fn main() -> rep::Result<()> {
//! let checkpoint = repvgg::Checkpoint::load("RepVGG-A0-train.safetensors")?;
//! let (arch, model) = checkpoint.build(None)?;          // architecture inferred from the shapes
//! let deployed = model.into_deploy()?;                   // fuses a train-time checkpoint
//! repvgg::save_deploy(&deployed, "RepVGG-A0-deploy.safetensors", Naming::Official)?;
//! # let _ = arch; Ok(())
//! # }
//! ```

mod arch;
mod checkpoint;
mod commands;

pub use arch::Arch;
pub use checkpoint::{Checkpoint, Form, Loaded, Naming, save_deploy};
pub use commands::{CONVERT_TOLERANCE, Conversion, Inference, Opened, convert, infer, open};

/// RepVGG block: 3×3+BN, 1×1+BN and — when shapes allow — an identity BN, summed, then (when
/// `Se` is 1, RepVGG-D2se style) squeeze-and-excitation with `C_out / 16` hidden channels, then
/// ReLU; grouped as the layer asks. Weight names are the official code's.
#[crate::block(post(se(hidden = Cout / 16, when = Se == 1), relu), fused = "rbr_reparam")]
pub struct RepVggBlock<Cin, Cout, S, G, Se> {
    #[rep(rename = "rbr_dense")]
    dense: ConvBn<Cin, Cout, 3, S, Groups<G>>,
    #[rep(rename = "rbr_1x1")]
    pointwise: ConvBn<Cin, Cout, 1, S, Groups<G>>,
    #[rep(rename = "rbr_identity", when = Cin == Cout && S == 1)]
    identity: Option<Bn<Cout>>,
}

/// A RepVGG network of any [`Arch`], with the official code's weight names.
#[crate::model(new(arch: &Arch))]
pub struct RepVgg {
    stage0: RepVggBlock<3, { arch.widths[0] }, 2, { arch.groups_at(0) }, { arch.se as usize }>,
    #[rep(repeat = arch.depths[0], index = i)]
    stage1: Vec<
        RepVggBlock<
            { arch.widths[0] },
            { arch.widths[1] },
            2,
            { arch.groups_at(arch.first_layer(1) + i) },
            { arch.se as usize },
        >,
    >,
    #[rep(repeat = arch.depths[1], index = i)]
    stage2: Vec<
        RepVggBlock<
            { arch.widths[1] },
            { arch.widths[2] },
            2,
            { arch.groups_at(arch.first_layer(2) + i) },
            { arch.se as usize },
        >,
    >,
    #[rep(repeat = arch.depths[2], index = i)]
    stage3: Vec<
        RepVggBlock<
            { arch.widths[2] },
            { arch.widths[3] },
            2,
            { arch.groups_at(arch.first_layer(3) + i) },
            { arch.se as usize },
        >,
    >,
    #[rep(repeat = arch.depths[3], index = i)]
    stage4: Vec<
        RepVggBlock<
            { arch.widths[3] },
            { arch.widths[4] },
            2,
            { arch.groups_at(arch.first_layer(4) + i) },
            { arch.se as usize },
        >,
    >,
    gap: GlobalAvgPool,
    linear: Linear<{ arch.widths[4] }, { arch.classes }>,
}
