//! Compiled inference: a fused network planned once for one input shape, then run with no
//! per-call setup.
//!
//! [`Plan::new`] walks a fused model (anything that implements [`Compile`]; `#[rep::model]`
//! and `#[rep::block]` generate it for their `…Fused` types), records one [`Step`] per layer,
//! and decides everything that does not depend on the input's values:
//!
//! * each convolution's kernel: stride-1 3×3 layers with enough channels run Winograd
//!   F(2×2, 3×3) with the kernel transformed here, once (see [`KernelChoice`]; F(4×4, 3×3)
//!   on request); the others run im2col + GEMM on weights packed here, once;
//! * every buffer's size: two activation buffers sized for the largest layer (each step reads
//!   one and writes the other), the Winograd workspace and the squeeze-and-excite scratch.
//!
//! The plan is immutable and `Send + Sync`; the buffers live in a [`PlanState`]
//! ([`Plan::state`]), one per caller, so threads serving one model share its weights.
//! [`Plan::run`] allocates nothing: the GEMM (`gemm_packed`) packs into
//! per-thread buffers that only grow, and the first run (made by [`Plan::state`]) grows them.
//!
//! ```
//! # fn main() -> rep_runtime::Result<()> {
//! use rep_runtime::layers::{Activation, Conv2d};
//! use rep_runtime::plan::Plan;
//! use rep_runtime::ConvGeometry;
//! # use rand::SeedableRng;
//! # let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let conv = Conv2d::new_with_bias(ConvGeometry::new(8, 8, 3).padding(1), &mut rng)?;
//! let layers = (conv, Activation::Relu);
//! let plan = Plan::new(&layers, [1, 8, 10, 10])?;
//! let mut state = plan.state()?;
//! let y = plan.run(&mut state, ndarray::Array4::zeros((1, 8, 10, 10)).view())?;
//! assert_eq!(y.shape(), &[1, 8, 10, 10]);
//! # Ok(())
//! # }
//! ```

mod awake;
mod graph;
mod run;
mod steps;

pub use graph::{CompileNode, GraphPlan, GraphPlanBuilder, GraphPlanState, Value};
pub use run::{Plan, PlanState, StepTime};
pub use steps::{ConvKernel, Step};

use crate::error::{Error, Result};
use crate::kernels::Tile;
use crate::layers::{Activation, Conv2d, GlobalAvgPool, Linear, SqueezeExcite};

/// A fused layer or network that can append its inference steps to a plan.
pub trait Compile {
    /// Appends this layer's steps, naming them under `name` (a dotted weight-name prefix).
    fn compile(&self, plan: &mut PlanBuilder, name: &str) -> Result<()>;
}

/// Which convolution kernel a plan uses for stride-1 3×3 layers.
///
/// Every choice keeps each layer within the project's 1e-5 relative tolerance of the exact
/// convolution (F(4×4) within 2.5e-6 on unit-scale data, F(2×2) within 8e-7; see [`Tile`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelChoice {
    /// Winograd with the default tile (F(4×4), [`Tile::default`]) where it is measured to pay:
    /// stride-1 3×3 convolutions with at least [`WINOGRAD_MIN_CHANNELS`] input and output
    /// channels per group and at least [`WINOGRAD_MIN_TILES`] output tiles; im2col elsewhere.
    #[default]
    Auto,
    /// im2col + GEMM everywhere (the reference path [`crate::layers::Layer::forward`] takes).
    Direct,
    /// Winograd with the given tile for every layer it supports (even narrow ones).
    Winograd(Tile),
}

/// Fewest channels per group (in and out) at which [`KernelChoice::Auto`] picks Winograd: the
/// transforms cost O(C) per tile, the products O(C²), so Winograd wins on wide layers only.
pub const WINOGRAD_MIN_CHANNELS: usize = 32;

/// Fewest 4×4 output tiles (over the whole batch: output maps of 16×16 for one image) at which
/// [`KernelChoice::Auto`] picks Winograd. Its 36 products are GEMMs with one column per tile:
/// with fewer tiles than a 32-column panel they run mostly on padding, and the transforms
/// cost more than they save. Measured on single layers (`conv_layers C C SIZE 1`, one
/// thread): at 8×8 and 10×10 maps im2col is 1.3–4× faster for 32 to 512 channels; at 16×16
/// F(4×4) is 1.5–2.5× faster from 128 channels (about even below).
pub const WINOGRAD_MIN_TILES: usize = 16;

/// The shape of the tensor flowing between steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `[N, C, H, W]`.
    Map([usize; 4]),
    /// `[N, features]`.
    Flat([usize; 2]),
}

impl Shape {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Shape::Map(s) => s.iter().product(),
            Shape::Flat(s) => s.iter().product(),
        }
    }

    /// Number of values, or an error when it does not fit in a `usize`.
    fn checked_len(&self) -> Result<usize> {
        self.dims().iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
            Error::Geometry(format!("a tensor of shape {:?} has more values than fit in memory", self.dims()))
        })
    }

    /// Whether the tensor holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn dims(&self) -> &[usize] {
        match self {
            Shape::Map(s) => s,
            Shape::Flat(s) => s,
        }
    }

    /// The `[N, C, H, W]` shape, or an error naming `what` needed it.
    fn map(&self, what: &str) -> Result<[usize; 4]> {
        match *self {
            Shape::Map(s) => Ok(s),
            Shape::Flat(s) => {
                Err(Error::Geometry(format!("plan step `{what}` needs an [N, C, H, W] input, found [N, C] = {s:?}")))
            }
        }
    }
}

/// Collects the steps of a plan, tracking the shape between them.
#[derive(Debug)]
pub struct PlanBuilder {
    steps: Vec<Step>,
    shape: Shape,
    choice: KernelChoice,
    /// The layers compiled, in order, with their names, when tracing ([`trace`]).
    trace: Option<Vec<(String, Traced)>>,
}

/// One layer a model compiles to, as [`trace`] records it (the layer itself, not its kernel):
/// what an exporter writes.
#[derive(Clone, Debug)]
pub enum Traced {
    /// A convolution followed by an activation.
    Conv(Conv2d, Activation),
    /// An element-wise activation.
    Activation(Activation),
    /// Squeeze-and-excitation (boxed: two convolutions make it the largest layer).
    SqueezeExcite(Box<SqueezeExcite>),
    /// Mean over the spatial axes: `[N, C, H, W] → [N, C]`.
    GlobalAvgPool,
    /// A fully connected layer on `[N, features]`.
    Linear(Linear),
}

/// The layers `model` compiles to for inputs `[N, C, H, W]`, in order, each with its step name
/// (a dotted weight-name prefix): a plan's structure without its kernels, for export.
pub fn trace<M: Compile + ?Sized>(model: &M, input: [usize; 4]) -> Result<Vec<(String, Traced)>> {
    Shape::Map(input).checked_len()?;
    let mut builder = PlanBuilder::new(Shape::Map(input), KernelChoice::Direct);
    builder.trace = Some(Vec::new());
    model.compile(&mut builder, "")?;
    Ok(builder.trace.unwrap_or_default())
}

impl PlanBuilder {
    pub(crate) fn new(shape: Shape, choice: KernelChoice) -> Self {
        PlanBuilder { steps: Vec::new(), shape, choice, trace: None }
    }

    /// Records `layer` under `name` when tracing.
    fn record(&mut self, name: &str, layer: impl FnOnce() -> Traced) {
        if let Some(trace) = &mut self.trace {
            trace.push((name.to_owned(), layer()));
        }
    }

    /// The shape the next step receives.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    fn push(&mut self, step: Step) -> Result<()> {
        step.output.checked_len()?;
        self.shape = step.output;
        self.steps.push(step);
        Ok(())
    }

    /// A convolution followed by `activation`; its kernel is chosen here (see [`KernelChoice`]).
    pub fn conv(&mut self, conv: &Conv2d, activation: Activation, name: &str) -> Result<()> {
        let input = self.shape.map(name)?;
        let g = &conv.geometry;
        if input[1] != g.in_channels {
            return Err(Error::Geometry(format!(
                "plan step `{name}` takes {} input channels but the step before outputs {}",
                g.in_channels, input[1]
            )));
        }
        crate::kernels::check_operands(g, &conv.operands())
            .map_err(|e| Error::Geometry(format!("plan step `{name}`: {e}")))?;
        let out = g.output_size(input[2], input[3])?;
        let output = Shape::Map([input[0], g.out_channels, out.h, out.w]);
        if self.trace.is_some() {
            // Tracing keeps the layer, not a kernel: nothing to pack or transform.
            output.checked_len()?;
            self.record(name, || Traced::Conv(conv.clone(), activation));
            self.shape = output;
            return Ok(());
        }
        let winograd = crate::kernels::WinogradConv::supports(g) && conv.pad_fill.is_none();
        let wide = g.in_per_group() >= WINOGRAD_MIN_CHANNELS && g.out_per_group() >= WINOGRAD_MIN_CHANNELS;
        let tiles = input[0] * out.h.div_ceil(4) * out.w.div_ceil(4);
        let kernel = match self.choice {
            KernelChoice::Winograd(tile) if winograd => ConvKernel::winograd(conv, tile)?,
            KernelChoice::Auto if winograd && wide && tiles >= WINOGRAD_MIN_TILES => {
                ConvKernel::winograd(conv, Tile::default())?
            }
            _ => ConvKernel::direct(conv)?,
        };
        self.push(Step::new(name, steps::Op::Conv { kernel, activation }, self.shape, output))
    }

    /// An element-wise activation, in place — or inside the convolution just before it, when
    /// that one has none yet.
    pub fn activation(&mut self, activation: Activation, name: &str) -> Result<()> {
        if activation != Activation::Identity {
            self.record(name, || Traced::Activation(activation));
        }
        if let Some(previous) = self.steps.last_mut()
            && previous.take_activation(activation)
        {
            return Ok(());
        }
        if activation != Activation::Identity {
            self.push(Step::new(name, steps::Op::Activation(activation), self.shape, self.shape))?;
        }
        Ok(())
    }

    /// Squeeze-and-excitation, in place.
    pub fn squeeze_excite(&mut self, se: &SqueezeExcite, name: &str) -> Result<()> {
        let input = self.shape.map(name)?;
        let op = steps::Op::squeeze_excite(se, input, name)?;
        self.record(name, || Traced::SqueezeExcite(Box::new(se.clone())));
        self.push(Step::new(name, op, self.shape, self.shape))
    }

    /// Mean over the spatial axes: `[N, C, H, W] → [N, C]`.
    pub fn global_avg_pool(&mut self, name: &str) -> Result<()> {
        let [n, c, ..] = self.shape.map(name)?;
        self.record(name, || Traced::GlobalAvgPool);
        self.push(Step::new(name, steps::Op::GlobalAvgPool, self.shape, Shape::Flat([n, c])))
    }

    /// A fully connected layer on `[N, features]`.
    pub fn linear(&mut self, linear: &Linear, name: &str) -> Result<()> {
        let n = match self.shape {
            Shape::Flat([n, f]) if f == linear.in_features() => n,
            other => {
                return Err(Error::Geometry(format!(
                    "plan step `{name}` takes [N, {}] but the step before outputs {:?}",
                    linear.in_features(),
                    other.dims()
                )));
            }
        };
        let output = Shape::Flat([n, linear.out_features()]);
        self.record(name, || Traced::Linear(linear.clone()));
        self.push(Step::new(name, steps::Op::linear(linear)?, self.shape, output))
    }
}

impl Compile for Conv2d {
    fn compile(&self, plan: &mut PlanBuilder, name: &str) -> Result<()> {
        plan.conv(self, Activation::Identity, name)
    }
}

impl Compile for Activation {
    fn compile(&self, plan: &mut PlanBuilder, name: &str) -> Result<()> {
        plan.activation(*self, name)
    }
}

impl Compile for SqueezeExcite {
    fn compile(&self, plan: &mut PlanBuilder, name: &str) -> Result<()> {
        plan.squeeze_excite(self, name)
    }
}

impl Compile for GlobalAvgPool {
    fn compile(&self, plan: &mut PlanBuilder, name: &str) -> Result<()> {
        plan.global_avg_pool(name)
    }
}

impl Compile for Linear {
    fn compile(&self, plan: &mut PlanBuilder, name: &str) -> Result<()> {
        plan.linear(self, name)
    }
}

impl<T: Compile> Compile for [T] {
    fn compile(&self, plan: &mut PlanBuilder, name: &str) -> Result<()> {
        self.iter()
            .enumerate()
            .try_for_each(|(i, layer)| layer.compile(plan, &crate::layers::join(name, &i.to_string())))
    }
}

impl<T: Compile> Compile for Vec<T> {
    fn compile(&self, plan: &mut PlanBuilder, name: &str) -> Result<()> {
        self.as_slice().compile(plan, name)
    }
}

impl<T: Compile> Compile for Option<T> {
    fn compile(&self, plan: &mut PlanBuilder, name: &str) -> Result<()> {
        self.as_ref().map_or(Ok(()), |layer| layer.compile(plan, name))
    }
}

impl<A: Compile, B: Compile> Compile for (A, B) {
    fn compile(&self, plan: &mut PlanBuilder, name: &str) -> Result<()> {
        self.0.compile(plan, &crate::layers::join(name, "0"))?;
        self.1.compile(plan, &crate::layers::join(name, "1"))
    }
}
