//! The steps of a [`super::Plan`]: what each runs, on raw row-major buffers.

use super::Shape;
use crate::error::{Error, Result};
use crate::geometry::Hw;
use crate::kernels::{self, WinogradConv};
use crate::layers::{Activation, Conv2d, Linear, SqueezeExcite};
use rayon::prelude::*;

/// One layer of a plan, with the shapes it maps between.
#[derive(Clone, Debug)]
pub struct Step {
    /// The layer's name (its weight prefix).
    pub name: String,
    pub(super) op: Op,
    /// Shape of the step's input.
    pub input: Shape,
    /// Shape of the step's output.
    pub output: Shape,
}

/// How a planned convolution is computed.
#[derive(Clone, Debug)]
pub enum ConvKernel {
    /// im2col + GEMM (or the pointwise special case) on the weights packed once, here; only
    /// the packed copy is kept.
    Packed(kernels::PackedConv),
    /// The depthwise loop (`C_in / groups == 1`: no GEMM), on the layer's own weights.
    Depthwise(Conv2d),
    /// Winograd on the kernel transformed at planning time. For inputs that hold NaN or ±∞
    /// (Winograd's transforms would spread them over whole tiles) the step runs the direct
    /// kernel on weights recovered from the transformed ones ([`WinogradConv::to_conv2d`]),
    /// which puts them exactly where PyTorch does.
    Winograd(WinogradConv),
}

impl ConvKernel {
    pub(super) fn direct(conv: &Conv2d) -> Result<Self> {
        Ok(if conv.geometry.in_per_group() == 1 {
            ConvKernel::Depthwise(Conv2d { weight: conv.weight.as_standard_layout().into_owned(), ..conv.clone() })
        } else {
            ConvKernel::Packed(kernels::PackedConv::new(&conv.geometry, conv.operands())?)
        })
    }

    pub(super) fn winograd(conv: &Conv2d, tile: kernels::Tile) -> Result<Self> {
        Ok(ConvKernel::Winograd(WinogradConv::with_tile(conv, tile)?))
    }

    /// The convolution's shapes.
    pub fn geometry(&self) -> &crate::geometry::ConvGeometry {
        match self {
            ConvKernel::Packed(packed) => packed.geometry(),
            ConvKernel::Depthwise(conv) => &conv.geometry,
            ConvKernel::Winograd(winograd) => winograd.geometry(),
        }
    }
}

/// What a step computes.
#[derive(Clone, Debug)]
pub(super) enum Op {
    Conv { kernel: ConvKernel, activation: Activation },
    Activation(Activation),
    SqueezeExcite { down: Dense, up: Dense },
    GlobalAvgPool,
    Linear(Dense),
}

/// A dense `[out, in]` matrix with a bias, row-major.
#[derive(Clone, Debug)]
pub(super) struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

impl Dense {
    fn new(weight: &[f32], bias: Option<&[f32]>, outputs: usize, inputs: usize) -> Self {
        Dense { weight: weight.to_vec(), bias: bias.map_or_else(|| vec![0.0; outputs], <[f32]>::to_vec), inputs }
    }

    fn from_conv(conv: &Conv2d) -> Self {
        let weight = conv.weight.as_standard_layout();
        let bias = conv.bias.as_ref().map(|b| b.to_vec());
        let g = &conv.geometry;
        Dense::new(weight.as_slice().expect("standard layout"), bias.as_deref(), g.out_channels, g.in_channels)
    }

    fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// `y[r] = activation(b + W · x[r])` for each of the rows of `x` ([`kernels::dense_into`]).
    fn apply(&self, x: &[f32], y: &mut [f32], activation: Activation) {
        kernels::dense_into(&self.weight, &self.bias, self.inputs, x, y, activation);
    }
}

impl Op {
    pub(super) fn squeeze_excite(se: &SqueezeExcite, input: [usize; 4], name: &str) -> Result<Op> {
        let (down, up) = (&se.down.geometry, &se.up.geometry);
        let pointwise = |g: &crate::ConvGeometry| g.kernel.to_array() == [1, 1] && g.groups == 1;
        if down.in_channels != input[1] || up.out_channels != input[1] || up.in_channels != down.out_channels {
            return Err(Error::Geometry(format!(
                "plan step `{name}`: squeeze-excite maps {} -> {} -> {} channels on a {}-channel input",
                down.in_channels, down.out_channels, up.out_channels, input[1]
            )));
        }
        if !pointwise(down) || !pointwise(up) {
            return Err(Error::Geometry(format!("plan step `{name}`: squeeze-excite needs ungrouped 1x1 convs")));
        }
        for (conv, part) in [(&se.down, "down"), (&se.up, "up")] {
            kernels::check_operands(&conv.geometry, &conv.operands())
                .map_err(|e| Error::Geometry(format!("plan step `{name}`, squeeze-excite `{part}`: {e}")))?;
        }
        Ok(Op::SqueezeExcite { down: Dense::from_conv(&se.down), up: Dense::from_conv(&se.up) })
    }

    pub(super) fn linear(linear: &Linear) -> Result<Op> {
        linear.validate()?;
        let weight = linear.weight.as_standard_layout();
        let bias = linear.bias.as_ref().map(|b| b.to_vec());
        let weight = weight.as_slice().expect("standard layout");
        Ok(Op::Linear(Dense::new(weight, bias.as_deref(), linear.out_features(), linear.in_features())))
    }
}

impl Step {
    pub(super) fn new(name: &str, op: Op, input: Shape, output: Shape) -> Step {
        Step { name: name.to_owned(), op, input, output }
    }

    /// Makes a convolution without activation apply `activation`; false for any other step.
    pub(super) fn take_activation(&mut self, activation: Activation) -> bool {
        match &mut self.op {
            Op::Conv { activation: own @ Activation::Identity, .. } => {
                *own = activation;
                true
            }
            _ => false,
        }
    }

    /// Whether the step overwrites its input instead of writing a new buffer.
    pub(super) fn in_place(&self) -> bool {
        matches!(self.op, Op::Activation(_) | Op::SqueezeExcite { .. })
    }

    /// The kernel the step runs, for profiles.
    pub fn kernel_name(&self) -> &'static str {
        match &self.op {
            Op::Conv { kernel: ConvKernel::Winograd(w), .. } => match w.tile() {
                kernels::Tile::F2 => "winograd",
                kernels::Tile::F4 => "winograd4",
            },
            Op::Conv { kernel: ConvKernel::Depthwise(_), .. } => "depthwise",
            Op::Conv { kernel: ConvKernel::Packed(packed), .. } => packed.kernel_name(),
            Op::Activation(_) => "activation",
            Op::SqueezeExcite { .. } => "squeeze-excite",
            Op::GlobalAvgPool => "avg-pool",
            Op::Linear(_) => "linear",
        }
    }

    /// Whether the step runs Winograd (whose transforms spread a non-finite input over a tile).
    pub(super) fn is_winograd(&self) -> bool {
        matches!(self.op, Op::Conv { kernel: ConvKernel::Winograd(_), .. })
    }

    /// Floats of weights the step holds (packed or transformed copies included).
    pub fn weight_floats(&self) -> usize {
        let conv_floats = |conv: &Conv2d| conv.weight.len() + conv.bias.as_ref().map_or(0, |b| b.len());
        match &self.op {
            Op::Conv { kernel: ConvKernel::Depthwise(conv), .. } => conv_floats(conv),
            Op::Conv { kernel: ConvKernel::Packed(packed), .. } => packed.floats(),
            Op::Conv { kernel: ConvKernel::Winograd(winograd), .. } => winograd.floats(),
            Op::SqueezeExcite { down, up } => down.weight.len() + down.bias.len() + up.weight.len() + up.bias.len(),
            Op::Linear(dense) => dense.weight.len() + dense.bias.len(),
            Op::Activation(_) | Op::GlobalAvgPool => 0,
        }
    }

    /// Multiply-adds of the step.
    pub fn macs(&self) -> u64 {
        let rows = |s: &Shape| match *s {
            Shape::Map([n, ..]) | Shape::Flat([n, _]) => n as u64,
        };
        match (&self.op, self.output) {
            (Op::Conv { kernel, .. }, Shape::Map([n, _, h, w])) => {
                kernel.geometry().macs(Hw { h, w }).ok().and_then(|m| m.checked_mul(n as u64)).unwrap_or(u64::MAX)
            }
            (Op::Linear(d), _) => rows(&self.input) * (d.weight.len() as u64),
            (Op::SqueezeExcite { down, up }, _) => rows(&self.input) * (down.weight.len() + up.weight.len()) as u64,
            _ => 0,
        }
    }

    /// Floats of shared workspace the step needs.
    pub(super) fn workspace_len(&self) -> Result<usize> {
        Ok(match (&self.op, self.input) {
            (Op::Conv { kernel: ConvKernel::Winograd(winograd), .. }, Shape::Map([n, _, h, wd])) => {
                winograd.workspace_len(n, Hw { h, w: wd })?
            }
            (Op::SqueezeExcite { down, up }, Shape::Map([n, ..])) => n * (2 * up.outputs() + down.outputs()),
            _ => 0,
        })
    }

    /// Computes the step from `x` into `y` (both sized by the plan). `finite` tells whether
    /// the network's input held only finite values; when it did not, Winograd layers take the
    /// direct path (see [`ConvKernel::Winograd`]).
    pub(super) fn run(&self, x: &[f32], y: &mut [f32], workspace: &mut [f32], finite: bool) -> Result<()> {
        match (&self.op, self.input) {
            (Op::Conv { kernel: ConvKernel::Winograd(w), activation }, Shape::Map(shape)) if !finite => {
                let conv = w.to_conv2d();
                kernels::conv2d_into(x, shape, &conv.geometry, conv.operands(), *activation, y)
            }
            (Op::Conv { kernel: ConvKernel::Packed(packed), activation }, Shape::Map(shape)) => {
                packed.run_into(x, shape, *activation, y)
            }
            (Op::Conv { kernel: ConvKernel::Depthwise(conv), activation }, Shape::Map(shape)) => {
                kernels::conv2d_into(x, shape, &conv.geometry, conv.operands(), *activation, y)
            }
            (Op::Conv { kernel: ConvKernel::Winograd(w), activation }, Shape::Map([n, _, h, wd])) => {
                w.run(x, n, Hw { h, w: wd }, y, workspace, *activation)
            }
            (Op::GlobalAvgPool, Shape::Map([_, _, h, w])) => {
                mean_planes(x, h * w, y);
                Ok(())
            }
            (Op::Linear(dense), _) => {
                dense.apply(x, y, Activation::Identity);
                Ok(())
            }
            _ => Err(Error::Geometry(format!("plan step `{}` cannot run on {:?}", self.name, self.input))),
        }
    }

    /// Computes an in-place step on `data`.
    pub(super) fn run_in_place(&self, data: &mut [f32], workspace: &mut [f32]) -> Result<()> {
        match (&self.op, self.input) {
            (Op::Activation(activation), _) => {
                activation.apply_slice(data);
                Ok(())
            }
            (Op::SqueezeExcite { down, up }, Shape::Map([n, c, h, w])) => {
                let (pooled, rest) = workspace.split_at_mut(n * c);
                let (hidden, rest) = rest.split_at_mut(n * down.outputs());
                let gate = &mut rest[..n * c];
                mean_planes(data, h * w, pooled);
                down.apply(pooled, hidden, Activation::Relu);
                up.apply(hidden, gate, Activation::Sigmoid);
                data.par_chunks_mut((h * w).max(1)).zip(gate.par_iter()).for_each(|(plane, g)| {
                    plane.iter_mut().for_each(|v| *v *= g);
                });
                Ok(())
            }
            _ => Err(Error::Geometry(format!("plan step `{}` cannot run in place on {:?}", self.name, self.input))),
        }
    }
}

/// `y[i] = mean(x[i·len .. (i+1)·len])`.
fn mean_planes(x: &[f32], len: usize, y: &mut [f32]) {
    let scale = 1.0 / len.max(1) as f32;
    y.par_iter_mut().zip(x.par_chunks(len.max(1))).for_each(|(y, plane)| *y = plane.iter().sum::<f32>() * scale);
}
