//! [`GraphBuilder`]: adds nodes one at a time, resolving YOLO-style sources and checking the
//! wiring as it goes, so that every mistake names the node that makes it.

use super::{Graph, GraphLayer, Node, Op, Source, check_planned_reparameterization};
use crate::error::{Error, Result};
use crate::layers::MaxPool2d;

/// The source value naming the graph's input, from any node (YOLO's `-1` names it only for the
/// first node).
pub const INPUT: isize = isize::MIN;

/// Builds a [`Graph`] node by node. Sources are YOLO's `from` values: `-1` the previous node
/// (the input for the first node), `-k` the k-th node back, `i ≥ 0` node `i`, and [`INPUT`].
#[derive(Debug)]
pub struct GraphBuilder<L> {
    input_channels: usize,
    nodes: Vec<Node>,
    layers: Vec<L>,
}

impl<L: GraphLayer> GraphBuilder<L> {
    /// An empty graph reading `input_channels` channels.
    pub fn new(input_channels: usize) -> Self {
        GraphBuilder { input_channels, nodes: Vec::new(), layers: Vec::new() }
    }

    /// The number of nodes so far (the index the next node gets).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node has been added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The output channels of a source, as [`GraphBuilder`] resolves it.
    pub fn channels_of(&self, from: isize) -> Result<usize> {
        let source = self.resolve(from, "")?;
        Ok(self.source_channels(source))
    }

    /// Adds a layer reading `from`; its input channels must be the source's. Returns its index.
    pub fn layer(&mut self, name: &str, from: isize, layer: L) -> Result<usize> {
        let source = self.resolve(from, name)?;
        let found = self.source_channels(source);
        if layer.in_channels() != found {
            return Err(self.wiring(
                name,
                format!("the layer takes {} input channels, but its source gives {found}", layer.in_channels()),
            ));
        }
        let channels = layer.out_channels();
        self.layers.push(layer);
        Ok(self.push(name, Op::Layer(self.layers.len() - 1), vec![source], channels))
    }

    /// Adds a channel concatenation of `from`, in order (YOLO's `Concat`).
    pub fn concat(&mut self, name: &str, from: &[isize]) -> Result<usize> {
        let sources = self.resolve_all(from, name)?;
        let channels = sources.iter().map(|&s| self.source_channels(s)).sum();
        Ok(self.push(name, Op::Concat, sources, channels))
    }

    /// Adds an element-wise sum of `from` (YOLO's `Shortcut`); all must have the same channels.
    pub fn add(&mut self, name: &str, from: &[isize]) -> Result<usize> {
        let sources = self.resolve_all(from, name)?;
        let channels: Vec<usize> = sources.iter().map(|&s| self.source_channels(s)).collect();
        if channels.iter().any(|&c| c != channels[0]) {
            return Err(self.wiring(name, format!("added sources have different channels {channels:?}")));
        }
        Ok(self.push(name, Op::Add, sources, channels[0]))
    }

    /// Adds nearest-neighbour upsampling by `factor` (`nn.Upsample(None, factor, 'nearest')`).
    pub fn upsample(&mut self, name: &str, from: isize, factor: usize) -> Result<usize> {
        if factor == 0 {
            return Err(self.wiring(name, "upsampling factor must be at least 1, found 0".into()));
        }
        let source = self.resolve(from, name)?;
        Ok(self.push(name, Op::Upsample(factor), vec![source], self.source_channels(source)))
    }

    /// Adds max pooling (YOLO's `MP` is `MaxPool2d::new(2, 2, 0)`).
    pub fn max_pool(&mut self, name: &str, from: isize, pool: MaxPool2d) -> Result<usize> {
        let source = self.resolve(from, name)?;
        Ok(self.push(name, Op::MaxPool(pool), vec![source], self.source_channels(source)))
    }

    /// The graph returning the values of `outputs` (node indices, in order), after checking
    /// planned re-parameterization ([`check_planned_reparameterization`]).
    pub fn build(self, outputs: &[usize]) -> Result<Graph<L>> {
        let count = self.nodes.len();
        if outputs.is_empty() {
            return Err(Error::Wiring("a graph needs at least one output node".into()));
        }
        if let Some(&o) = outputs.iter().find(|&&o| o >= count) {
            return Err(Error::Wiring(format!("output node {o} does not exist; the graph has {count} nodes")));
        }
        let mut last_use: Vec<usize> = (0..count).collect();
        for (i, node) in self.nodes.iter().enumerate() {
            for source in &node.from {
                if let Source::Node(j) = *source {
                    last_use[j] = i;
                }
            }
        }
        let graph = Graph {
            input_channels: self.input_channels,
            nodes: self.nodes,
            layers: self.layers,
            outputs: outputs.to_vec(),
            last_use,
        };
        check_planned_reparameterization(&graph)?;
        Ok(graph)
    }

    fn push(&mut self, name: &str, op: Op, from: Vec<Source>, channels: usize) -> usize {
        self.nodes.push(Node { name: name.to_owned(), op, from, channels });
        self.nodes.len() - 1
    }

    fn source_channels(&self, source: Source) -> usize {
        match source {
            Source::Input => self.input_channels,
            Source::Node(j) => self.nodes[j].channels,
        }
    }

    /// Resolves a YOLO-style `from` for the node about to be added.
    fn resolve(&self, from: isize, name: &str) -> Result<Source> {
        let next = self.nodes.len();
        if from == INPUT {
            return Ok(Source::Input);
        }
        let index = if from < 0 { next.checked_sub(from.unsigned_abs()) } else { Some(from as usize) };
        match index {
            None if from == -1 => Ok(Source::Input),
            Some(j) if j < next => Ok(Source::Node(j)),
            _ => Err(self.wiring(
                name,
                format!(
                    "source {from} is out of range: nodes 0..{next} come before it (and -1 for the input of node 0)"
                ),
            )),
        }
    }

    fn resolve_all(&self, from: &[isize], name: &str) -> Result<Vec<Source>> {
        if from.is_empty() {
            return Err(self.wiring(name, "needs at least one source".into()));
        }
        from.iter().map(|&f| self.resolve(f, name)).collect()
    }

    fn wiring(&self, name: &str, message: String) -> Error {
        Error::Wiring(format!("node {} `{name}`: {message}", self.nodes.len()))
    }
}
