//! The backward of graph networks ([`crate::graph::Graph`]): the forward keeps each node's cache
//! (a layer's own, the channel split of a concatenation, a pool's input), and the backward walks
//! the nodes in reverse, summing into each value the gradients of all its readers — the
//! transposes of concatenation (a split), addition (a copy to each source), upsampling (a sum)
//! and max pooling (to each window's argmax, as PyTorch routes it).

use super::{Gradients, Train};
use crate::error::{Error, Result};
use crate::graph::{Graph, Op, Source, shape_op};
use crate::layers::{Layer, MaxPool2d, join};
use ndarray::Array4;

/// What one node of a graph keeps for its backward.
#[derive(Debug)]
pub enum NodeCache<C> {
    /// A layer's cache.
    Layer(C),
    /// The channels of each concatenated source.
    Concat(Vec<usize>),
    /// An addition (its sources get the gradient as it is).
    Add,
    /// Nearest upsampling by this factor.
    Upsample(usize),
    /// A max pool's input.
    MaxPool(Array4<f32>),
}

/// What a graph's forward keeps for its backward: one cache per node, and the input's shape.
#[derive(Debug)]
pub struct GraphCache<C> {
    nodes: Vec<NodeCache<C>>,
    input: (usize, usize, usize, usize),
}

/// A graph's outputs and what its backward needs of the forward that made them.
pub type CachedOutputs<C> = (Vec<Array4<f32>>, GraphCache<C>);

impl<L: Train + Layer> Graph<L> {
    /// Train-mode forward keeping what [`Graph::backward_all`] needs: every output's value.
    pub fn forward_cached_all(&mut self, x: &Array4<f32>) -> Result<CachedOutputs<L::Cache>> {
        let mut caches = Vec::with_capacity(self.nodes().len());
        let outputs = self.with_layers_taken(|graph, layers| {
            graph.evaluate(x, |node, inputs| {
                let (y, cache) = match node.op {
                    Op::Layer(k) => {
                        let (y, cache) = layers[k].forward_cached(inputs[0])?;
                        (y, NodeCache::Layer(cache))
                    }
                    Op::Concat => {
                        (shape_op(node.op, inputs)?, NodeCache::Concat(inputs.iter().map(|t| t.shape()[1]).collect()))
                    }
                    Op::Add => (shape_op(node.op, inputs)?, NodeCache::Add),
                    Op::Upsample(factor) => (shape_op(node.op, inputs)?, NodeCache::Upsample(factor)),
                    Op::MaxPool(_) => (shape_op(node.op, inputs)?, NodeCache::MaxPool(inputs[0].clone())),
                };
                caches.push(cache);
                Ok(y)
            })
        })?;
        Ok((outputs, GraphCache { nodes: caches, input: x.dim() }))
    }

    /// Given `dL/d output` for each output of the forward that made `cache`, adds `dL/dθ` of
    /// every parameter to `grads` (named under `prefix` as [`crate::layers::Parameters`] names
    /// them) and returns `dL/dx`. Nodes no output depends on get no gradient.
    pub fn backward_all(
        &self,
        cache: GraphCache<L::Cache>,
        dys: &[Array4<f32>],
        prefix: &str,
        grads: &mut Gradients,
    ) -> Result<Array4<f32>> {
        let (nodes, outputs) = (self.nodes(), self.outputs());
        if dys.len() != outputs.len() || cache.nodes.len() != nodes.len() {
            return Err(Error::Wiring(format!(
                "backward of a graph with {} outputs and {} nodes given {} gradients and {} node caches",
                outputs.len(),
                nodes.len(),
                dys.len(),
                cache.nodes.len()
            )));
        }
        let mut pending: Vec<Option<Array4<f32>>> = vec![None; nodes.len()];
        let mut dx = Array4::zeros(cache.input);
        let mut add = |pending: &mut Vec<Option<Array4<f32>>>, source: Source, g: Array4<f32>| -> Result<()> {
            let slot = match source {
                Source::Input => &mut dx,
                Source::Node(j) => pending[j].get_or_insert_with(|| Array4::zeros(g.dim())),
            };
            if slot.dim() != g.dim() {
                return Err(Error::shape("graph gradient", slot.shape(), g.shape()));
            }
            *slot += &g;
            Ok(())
        };
        for (&o, dy) in outputs.iter().zip(dys) {
            add(&mut pending, Source::Node(o), dy.clone())?;
        }
        for (i, node_cache) in cache.nodes.into_iter().enumerate().rev() {
            let node = &nodes[i];
            let Some(g) = pending[i].take() else { continue };
            match (node.op, node_cache) {
                (Op::Layer(k), NodeCache::Layer(c)) => {
                    let d = self.layers()[k].backward(c, &g, &join(prefix, &node.name), grads)?;
                    add(&mut pending, node.from[0], d)?;
                }
                (Op::Concat, NodeCache::Concat(channels)) => {
                    let parts = super::concat_channels_backward(&g, &channels)?;
                    for (&source, part) in node.from.iter().zip(parts) {
                        add(&mut pending, source, part)?;
                    }
                }
                (Op::Add, NodeCache::Add) => {
                    for &source in &node.from {
                        add(&mut pending, source, g.clone())?;
                    }
                }
                (Op::Upsample(_), NodeCache::Upsample(factor)) => {
                    add(&mut pending, node.from[0], super::upsample_nearest_backward(&g, factor)?)?;
                }
                (Op::MaxPool(pool), NodeCache::MaxPool(x)) => {
                    add(&mut pending, node.from[0], max_pool_backward(&pool, &x, &g)?)?;
                }
                _ => return Err(Error::Wiring(format!("node {i} `{}`: its cache is of another kind", node.name))),
            }
        }
        Ok(dx)
    }
}

/// A graph with one output trains as a layer (SPPCSPC inside YOLOv7).
impl<L: Train + Layer> Train for Graph<L> {
    type Cache = GraphCache<L::Cache>;

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, Self::Cache)> {
        let (mut outputs, cache) = self.forward_cached_all(x)?;
        match outputs.len() {
            1 => Ok((outputs.remove(0), cache)),
            n => Err(Error::Wiring(format!("a graph trained as a layer must have 1 output, found {n}"))),
        }
    }

    fn backward(
        &self,
        cache: Self::Cache,
        dy: &Array4<f32>,
        prefix: &str,
        grads: &mut Gradients,
    ) -> Result<Array4<f32>> {
        self.backward_all(cache, std::slice::from_ref(dy), prefix, grads)
    }

    fn freeze_batch_norm(&mut self, frozen: bool) {
        self.layers_mut().iter_mut().for_each(|layer| layer.freeze_batch_norm(frozen));
    }
}

/// The transpose of max pooling: each output's gradient goes to its window's maximum — the
/// first in scan order among equal values, the last NaN when there is one (PyTorch's
/// `max_pool2d` indices); padding never receives any.
pub fn max_pool_backward(pool: &MaxPool2d, x: &Array4<f32>, dy: &Array4<f32>) -> Result<Array4<f32>> {
    let (n, c, h, w) = x.dim();
    let out = pool.output_size(crate::Hw::new(h, w))?;
    if dy.dim() != (n, c, out.h, out.w) {
        return Err(Error::shape("max pool output gradient", &[n, c, out.h, out.w], dy.shape()));
    }
    let window = |o: usize, stride: usize, pad: usize, k: usize, size: usize| {
        (o * stride).saturating_sub(pad)..(o * stride + k).saturating_sub(pad).min(size)
    };
    let mut dx = Array4::zeros((n, c, h, w));
    for ((b, ch, i, j), &d) in dy.indexed_iter() {
        let rows = window(i, pool.stride.h, pool.padding.h, pool.kernel.h, h);
        let cols = window(j, pool.stride.w, pool.padding.w, pool.kernel.w, w);
        let (mut best, mut at) = (f32::NEG_INFINITY, (rows.start, cols.start));
        for r in rows {
            for s in cols.clone() {
                let v = x[[b, ch, r, s]];
                if v > best || v.is_nan() {
                    (best, at) = (v, (r, s));
                }
            }
        }
        dx[[b, ch, at.0, at.1]] += d;
    }
    Ok(dx)
}
