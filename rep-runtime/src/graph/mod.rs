//! Graph networks: layers that read earlier layers' outputs, as YOLO's backbones, necks and
//! heads do — concatenation, addition, nearest upsampling and max pooling between layers.
//!
//! A [`Graph`] is built node by node with [`GraphBuilder`], whose sources follow YOLO's
//! `from` convention: `-1` is the previous node (the graph's input for the first node), `-k`
//! the k-th node back, and `i ≥ 0` node `i`. Every node is checked as it is added — sources in
//! range, channels that meet — and [`GraphBuilder::build`] checks planned re-parameterization
//! ([`check_planned_reparameterization`]). Each layer's weights are named under its node's name (`"0"`, `"51"`, or
//! `"cv1"`), so a graph visited under `"model"` has YOLO's `model.N.*` names.
//!
//! ```
//! # fn main() -> rep_runtime::Result<()> {
//! use rep_runtime::graph::{Graph, GraphBuilder};
//! use rep_runtime::layers::{Conv2d, Layer, MaxPool2d};
//! use rep_runtime::ConvGeometry;
//! # use rand::SeedableRng;
//! # let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let conv = |c_in, c_out, rng: &mut _| Conv2d::new_with_bias(ConvGeometry::new(c_in, c_out, 3).padding(1), rng);
//! let mut g = GraphBuilder::new(3);
//! g.layer("0", -1, conv(3, 8, &mut rng)?)?;
//! g.layer("1", -1, conv(8, 8, &mut rng)?)?;
//! g.concat("2", &[-1, 0])?; // 16 channels
//! g.max_pool("3", -1, MaxPool2d::new(2, 2, 0))?;
//! let graph: Graph<Conv2d> = g.build(&[3])?;
//! let y = graph.forward(&ndarray::Array4::zeros((1, 3, 8, 8)))?;
//! assert_eq!(y.shape(), &[1, 16, 4, 4]);
//! # Ok(())
//! # }
//! ```

mod build;
mod planned;

pub use build::{GraphBuilder, INPUT};
pub use planned::check_planned_reparameterization;

use crate::error::{Error, Result};
use crate::geometry::Hw;
use crate::layers::{BatchNorm2d, Costs, Layer, MaxPool2d, Parameters, concat_channels, join, upsample_nearest};
use crate::traits::Reparameterize;
use ndarray::{Array4, ArrayViewD, ArrayViewMutD};

/// What a graph needs of a layer beyond running it: its channels, and whether it adds its input
/// to its output (an identity branch), for the planned re-parameterization check.
pub trait GraphLayer: Layer + Parameters + Costs {
    /// Input channels.
    fn in_channels(&self) -> usize;

    /// Output channels.
    fn out_channels(&self) -> usize;

    /// Whether the layer has an identity branch: its output is `f(x) + BN(x)` (YOLOv7's RepConv
    /// with `C_in == C_out` and stride 1). Such a layer must not sit on a shortcut path
    /// ([`check_planned_reparameterization`]).
    fn has_identity_branch(&self) -> bool {
        false
    }
}

/// Where a node reads from: the graph's input or node `i` (the type the planned
/// re-parameterization rule of `rep-rules` reads, shared with the graph macro).
pub use rep_rules::Source;

/// What a node computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The layer at this index of the graph's layers (one source).
    Layer(usize),
    /// Channel concatenation of every source, in order (`torch.cat(dim=1)`).
    Concat,
    /// Element-wise sum of every source (same shapes).
    Add,
    /// Nearest-neighbour upsampling by an integer factor (one source).
    Upsample(usize),
    /// Max pooling (one source).
    MaxPool(MaxPool2d),
}

/// One node: its name (the prefix of its layer's weights), its operation and its sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The node's name.
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// What it reads, in order.
    pub from: Vec<Source>,
    /// Its output channels.
    pub channels: usize,
}

/// A network whose nodes read earlier nodes' outputs; `L` is the layer type (an enum of a
/// family's blocks, or `Box<dyn …>`). Built and checked by [`GraphBuilder`].
#[derive(Clone, Debug)]
pub struct Graph<L> {
    input_channels: usize,
    nodes: Vec<Node>,
    layers: Vec<L>,
    outputs: Vec<usize>,
    /// The last node reading each node's output (the node itself when nothing does), so that a
    /// forward frees every activation as soon as it is dead.
    last_use: Vec<usize>,
}

impl<L> Graph<L> {
    /// The nodes, in evaluation order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The layers, in the order their nodes appear.
    pub fn layers(&self) -> &[L] {
        &self.layers
    }

    /// The layers, mutably.
    pub fn layers_mut(&mut self) -> &mut [L] {
        &mut self.layers
    }

    /// The nodes whose outputs the graph returns.
    pub fn outputs(&self) -> &[usize] {
        &self.outputs
    }

    /// Input channels.
    pub fn input_channels(&self) -> usize {
        self.input_channels
    }

    /// Every layer node with its layer's index.
    fn layer_nodes(&self) -> impl Iterator<Item = (&Node, usize)> {
        self.nodes.iter().filter_map(|node| match node.op {
            Op::Layer(k) => Some((node, k)),
            _ => None,
        })
    }

    /// Runs the graph, `compute(node, inputs)` evaluating each node (layers through their own
    /// forward, the others usually through [`shape_op`]); returns the outputs' values. Each
    /// activation is dropped after its last reader.
    pub(crate) fn evaluate(
        &self,
        x: &Array4<f32>,
        mut compute: impl FnMut(&Node, &[&Array4<f32>]) -> Result<Array4<f32>>,
    ) -> Result<Vec<Array4<f32>>> {
        check_input(x, self.input_channels)?;
        let mut values: Vec<Option<Array4<f32>>> = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            let inputs = node
                .from
                .iter()
                .map(|source| match *source {
                    Source::Input => Ok(x),
                    Source::Node(j) => values[j].as_ref().ok_or_else(|| {
                        Error::Wiring(format!("node {i} `{}` reads node {j} after it was freed", node.name))
                    }),
                })
                .collect::<Result<Vec<_>>>()?;
            let y = compute(node, &inputs).map_err(|e| in_node(e, i, &node.name))?;
            values.push(Some(y));
            for source in &node.from {
                if let Source::Node(j) = *source
                    && self.last_use[j] == i
                    && !self.outputs.contains(&j)
                {
                    values[j] = None;
                }
            }
        }
        // Each output moves out of `values`; one named twice is copied for all but its last use.
        let outputs = self.outputs.iter().enumerate().map(|(k, &o)| {
            let value = if self.outputs[k + 1..].contains(&o) { values[o].clone() } else { values[o].take() };
            value.expect("outputs are kept")
        });
        Ok(outputs.collect())
    }

    /// The single output, or an error naming how many there are.
    fn single(mut outputs: Vec<Array4<f32>>) -> Result<Array4<f32>> {
        match outputs.len() {
            1 => Ok(outputs.remove(0)),
            n => Err(Error::Wiring(format!("a graph used as a layer must have 1 output, found {n}; call forward_all"))),
        }
    }
}

impl<L: Layer> Graph<L> {
    /// Eval-mode forward: the value of every output node, in order.
    pub fn forward_all(&self, x: &Array4<f32>) -> Result<Vec<Array4<f32>>> {
        self.evaluate(x, |node, inputs| match node.op {
            Op::Layer(k) => self.layers[k].forward(inputs[0]),
            op => shape_op(op, inputs),
        })
    }

    /// Training-mode forward (BatchNorm on batch statistics, running statistics updated): the
    /// value of every output node.
    pub fn forward_train_all(&mut self, x: &Array4<f32>) -> Result<Vec<Array4<f32>>> {
        self.with_layers_taken(|graph, layers| {
            graph.evaluate(x, |node, inputs| match node.op {
                Op::Layer(k) => layers[k].forward_train(inputs[0]),
                op => shape_op(op, inputs),
            })
        })
    }

    /// Takes the layers out (to run them mutably while the wiring is read), and puts them back.
    pub(crate) fn with_layers_taken<R>(&mut self, f: impl FnOnce(&Self, &mut Vec<L>) -> R) -> R {
        let mut layers = std::mem::take(&mut self.layers);
        let result = f(self, &mut layers);
        self.layers = layers;
        result
    }
}

/// A node that is not a layer, computed on its inputs.
pub(crate) fn shape_op(op: Op, inputs: &[&Array4<f32>]) -> Result<Array4<f32>> {
    match op {
        Op::Layer(_) => Err(Error::Wiring("a layer node needs its layer".into())),
        Op::Concat => concat_channels(inputs),
        Op::Add => add_all(inputs),
        Op::Upsample(factor) => upsample_nearest(inputs[0], factor),
        Op::MaxPool(pool) => pool.forward(inputs[0]),
    }
}

/// A graph with one output is a layer (SPPCSPC inside YOLOv7).
impl<L: Layer> Layer for Graph<L> {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        Self::single(self.forward_all(x)?)
    }

    fn forward_train(&mut self, x: &Array4<f32>) -> Result<Array4<f32>> {
        Self::single(self.forward_train_all(x)?)
    }
}

impl<L: GraphLayer> GraphLayer for Graph<L> {
    fn in_channels(&self) -> usize {
        self.input_channels
    }

    fn out_channels(&self) -> usize {
        self.outputs.first().map_or(0, |&o| self.nodes[o].channels)
    }
}

impl GraphLayer for crate::layers::Conv2d {
    fn in_channels(&self) -> usize {
        self.geometry().in_channels
    }

    fn out_channels(&self) -> usize {
        self.geometry().out_channels
    }
}

impl<L: Parameters> Parameters for Graph<L> {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
        for (node, k) in self.layer_nodes() {
            self.layers[k].visit(&join(prefix, &node.name), f);
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
        for node in &self.nodes {
            if let Op::Layer(k) = node.op {
                self.layers[k].visit_mut(&join(prefix, &node.name), f);
            }
        }
    }

    fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, u64)) {
        for (node, k) in self.layer_nodes() {
            self.layers[k].visit_counters(&join(prefix, &node.name), f);
        }
    }

    fn visit_counters_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut u64)) {
        for node in &self.nodes {
            if let Op::Layer(k) = node.op {
                self.layers[k].visit_counters_mut(&join(prefix, &node.name), f);
            }
        }
    }

    fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut BatchNorm2d)) {
        self.layers.iter_mut().for_each(|layer| layer.visit_batch_norms(f));
    }
}

impl<L: Costs> Graph<L> {
    /// Multiply-adds of one image of spatial size `input`, and every node's output size.
    pub fn node_macs(&self, input: Hw) -> Result<Vec<(u64, Hw)>> {
        let mut sizes: Vec<(u64, Hw)> = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            let size = |s: &Source| match *s {
                Source::Input => input,
                Source::Node(j) => sizes[j].1,
            };
            let first = size(&node.from[0]);
            let cost = match node.op {
                Op::Layer(k) => self.layers[k].macs(first),
                Op::Concat | Op::Add => match node.from.iter().map(size).find(|hw| *hw != first) {
                    Some(other) => Err(Error::geometry(format!("sources of size {first} and {other} do not meet"))),
                    None => Ok((0, first)),
                },
                Op::Upsample(f) => Ok((0, Hw::new(first.h.saturating_mul(f), first.w.saturating_mul(f)))),
                Op::MaxPool(pool) => pool.macs(first),
            };
            sizes.push(cost.map_err(|e| in_node(e, i, &node.name))?);
        }
        Ok(sizes)
    }
}

impl<L: Costs> Costs for Graph<L> {
    fn parameter_count(&self) -> usize {
        self.layers.iter().map(Costs::parameter_count).sum()
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        let sizes = self.node_macs(input)?;
        let total = sizes.iter().try_fold(0, |total, (macs, _)| crate::add_macs(total, *macs))?;
        Ok((total, self.outputs.first().map_or(input, |&o| sizes[o].1)))
    }
}

impl<L: Reparameterize> Reparameterize for Graph<L> {
    type Fused = Graph<L::Fused>;

    fn fuse(&self) -> Result<Graph<L::Fused>> {
        let layers = self.layer_nodes().map(|(node, k)| self.layers[k].fuse().map_err(|e| in_layer(e, &node.name)));
        Ok(Graph {
            input_channels: self.input_channels,
            nodes: self.nodes.clone(),
            layers: layers.collect::<Result<_>>()?,
            outputs: self.outputs.clone(),
            last_use: self.last_use.clone(),
        })
    }
}

/// Checks that `x` has the graph's input channels.
fn check_input(x: &Array4<f32>, channels: usize) -> Result<()> {
    if x.shape()[1] == channels {
        Ok(())
    } else {
        Err(Error::Channels { layer: "graph input", expected: channels, found: x.shape()[1] })
    }
}

/// The element-wise sum of same-shaped tensors.
fn add_all(inputs: &[&Array4<f32>]) -> Result<Array4<f32>> {
    let mut sum = inputs[0].clone();
    for other in &inputs[1..] {
        if other.shape() != sum.shape() {
            return Err(Error::shape("added tensor", sum.shape(), other.shape()));
        }
        sum += *other;
    }
    Ok(sum)
}

/// Prefixes a fusion or non-finite error with the node's name (the weights' prefix).
fn in_layer(error: Error, name: &str) -> Error {
    match error {
        Error::Fusion { what, reason } => Error::Fusion { what: join(name, &what), reason },
        Error::NonFinite { what, index, value } => Error::NonFinite { what: join(name, &what), index, value },
        other => other,
    }
}

/// Prefixes a geometry or wiring error with the node it happened in.
fn in_node(error: Error, index: usize, name: &str) -> Error {
    match error {
        Error::Geometry(msg) => Error::Geometry(format!("node {index} `{name}`: {msg}")),
        Error::Shape { what, expected, found } => {
            Error::Shape { what: format!("node {index} `{name}`: {what}"), expected, found }
        }
        other => other,
    }
}
