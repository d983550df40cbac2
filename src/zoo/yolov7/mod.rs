//! YOLOv7 and YOLOv7-tiny as graphs ([`graph`](mod@crate::graph)), under the official weight names
//! (`model.N.*`), so that an official checkpoint saved as safetensors loads without renaming.
//!
//! * [`Yolov7`] is the train-time network: YOLO `Conv`s (Conv-BN-SiLU; LeakyReLU(0.1) in tiny),
//!   SPPCSPC, RepConv before the head, and IDetect with its implicit vectors. Every BatchNorm
//!   has ε = 1e-3 and momentum 0.03, as the official `initialize_weights` sets them.
//! * [`Yolov7Fused`] is what the official `Model.fuse()` makes: every `Conv` one conv with bias,
//!   every RepConv one 3×3 conv (`rbr_reparam`), IDetect's implicit vectors folded into its
//!   convs (the vectors stay, unused, under their names, as in the official fused model).
//! * [`Config`] is the variant, the compound scaling (channels `make_divisible(c·width, 8)`),
//!   the classes and the anchors; [`checkpoint`] infers it from a checkpoint.
//!
//! Both forms return the head's raw maps `[B, 3, H, W, 5 + classes]` per level
//! ([`Yolo::forward_maps`], the official training-mode output) or the decoded `z`
//! `[B, Σ 3·H·W, 5 + classes]` ([`Yolo::forward`], the official eval output), which
//! [`crate::zoo::detect::non_max_suppression`] filters.
//!
//! ```
//! # fn main() -> rep::Result<()> {
//! use rep::zoo::yolov7::{Config, Variant, Yolov7};
//! use rep::Reparameterize;
//! # use rep::rand::SeedableRng;
//! # let mut rng = rep::rand::rngs::StdRng::seed_from_u64(0);
//! let model = Yolov7::new(Config::new(Variant::Yolov7, 0.125, 2)?, &mut rng)?;
//! let x = rep::ndarray::Array4::zeros((1, 3, 64, 64));
//! let z = model.forward(&x)?; // [1, 3·(8² + 4² + 2²), 7]
//! assert_eq!(z.shape(), &[1, 252, 7]);
//! let fused = model.fuse()?;
//! assert_eq!(fused.forward(&x)?.shape(), &[1, 252, 7]);
//! # Ok(())
//! # }
//! ```

pub mod checkpoint;
mod head;
mod layers;
mod layout;
mod networks;

pub use head::{AnchorBuffers, IDetect, IDetectFused};
pub use layers::{
    Conv, ConvBnLeaky, ConvBnLeakyFused, ConvLeaky, RepConv3, Sppcspc, SppcspcFused, SppcspcLayer, SppcspcLayerFused,
    Yolov7Layer, Yolov7LayerCache, Yolov7LayerFused,
};
pub use layout::{Layout, Module, YOLOV7, YOLOV7_TINY};
pub use networks::{Yolov7Body, Yolov7BodyFused, Yolov7TinyBody, Yolov7TinyBodyFused};

use crate::graph::{Graph, GraphLayer};
use crate::layers::{BatchNorm2d, Parameters, join};
use crate::ndarray::{Array3, Array4, Array5, ArrayView4, ArrayViewD, ArrayViewMutD};
use crate::plan::{GraphPlan, GraphPlanState, KernelChoice};
use crate::train::{Gradients, Train};
use crate::zoo::detect::{Anchors, decode};
use crate::zoo::yolo::Scaling;
use crate::{Costs, Error, Hw, Reparameterize, Result};

/// Which network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `cfg/training/yolov7.yaml`.
    Yolov7,
    /// `cfg/training/yolov7-tiny.yaml`.
    Tiny,
}

impl Variant {
    /// The node layout.
    pub fn layout(self) -> &'static Layout {
        match self {
            Variant::Yolov7 => &YOLOV7,
            Variant::Tiny => &YOLOV7_TINY,
        }
    }

    /// The default anchors of the official configuration.
    pub fn anchors(self) -> Anchors {
        match self {
            Variant::Yolov7 => Anchors::yolov7(),
            Variant::Tiny => Anchors::yolov7_tiny(),
        }
    }

    /// The official name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Yolov7 => "yolov7",
            Variant::Tiny => "yolov7-tiny",
        }
    }
}

/// A YOLOv7 configuration: variant, compound scaling, classes and anchors.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The layout.
    pub variant: Variant,
    /// Width and depth multipliers (every official layout repeats each module once, so depth
    /// changes nothing in them).
    pub scaling: Scaling,
    /// Number of classes.
    pub classes: usize,
    /// Anchors per level, with the strides 8, 16, 32.
    pub anchors: Anchors,
}

impl Config {
    /// The official configuration of `variant` at width multiplier `width`, with `classes`
    /// classes and the default anchors.
    pub fn new(variant: Variant, width: f64, classes: usize) -> Result<Config> {
        if !(width.is_finite() && width > 0.0 && width <= 64.0) {
            return Err(Error::Architecture(format!("width multiple must be in (0, 64], found {width}")));
        }
        if classes == 0 || classes > 1 << 20 {
            return Err(Error::Architecture(format!("classes must be in 1..=2^20, found {classes}")));
        }
        Ok(Config { variant, scaling: Scaling { width, depth: 1.0 }, classes, anchors: variant.anchors() })
    }
}

/// A YOLOv7 network: its graph (`model.0` … `model.{N−1}`) and detection head (`model.N`).
/// [`Yolov7`] and [`Yolov7Fused`] are its two forms.
#[derive(Clone, Debug)]
pub struct Yolo<L, H> {
    config: Config,
    /// The layers before the head.
    pub graph: Graph<L>,
    /// The detection head.
    pub head: H,
}

/// YOLOv7, train-time form.
pub type Yolov7 = Yolo<Yolov7Layer, IDetect>;
/// YOLOv7, fused form.
pub type Yolov7Fused = Yolo<Yolov7LayerFused, IDetectFused>;

/// What the network needs of its head.
pub trait DetectionHead: Parameters {
    /// The raw maps `[B, na, H, W, 5 + classes]` of the three inputs.
    fn maps(&self, inputs: &[Array4<f32>]) -> Result<Vec<Array5<f32>>>;
    /// The anchors the head holds (loaded with its weights).
    fn anchor_buffers(&self) -> &AnchorBuffers;
    /// Parameters and multiply-adds of the head at its inputs' spatial sizes.
    fn costs(&self, inputs: &[Hw]) -> Result<(usize, u64)>;
}

/// Implements [`DetectionHead`] for a head type with `levels` and `anchors` and a `forward`.
macro_rules! detection_head {
    ($($head:ty),*) => {$(
        impl DetectionHead for $head {
            fn maps(&self, inputs: &[Array4<f32>]) -> Result<Vec<Array5<f32>>> {
                self.forward(inputs)
            }

            fn anchor_buffers(&self) -> &AnchorBuffers {
                &self.anchors
            }

            fn costs(&self, inputs: &[Hw]) -> Result<(usize, u64)> {
                head::head_costs(&self.levels, inputs)
            }
        }
    )*};
}

detection_head!(IDetect, IDetectFused);

impl Yolov7 {
    /// A randomly initialized network (PyTorch's initialization; BN ε 1e-3, momentum 0.03),
    /// built from its declaration ([`Yolov7Body`] or [`Yolov7TinyBody`]).
    pub fn new(config: Config, rng: &mut impl crate::rand::Rng) -> Result<Yolov7> {
        let c = |base| config.scaling.channels(base);
        let graph = match config.variant {
            Variant::Yolov7 => Yolov7Body::new(c(32), c(64), c(128), c(256), c(512), c(1024), rng)?.into_graph(),
            Variant::Tiny => Yolov7TinyBody::new(c(32), c(64), c(128), c(256), c(512), rng)?.into_graph(),
        };
        let head = IDetect::new(&head_channels(&graph), config.classes, &config.anchors, rng)?;
        Ok(Yolo { config, graph, head })
    }

    /// Training-mode raw maps (BatchNorm on batch statistics, running statistics updated).
    pub fn forward_train_maps(&mut self, x: &Array4<f32>) -> Result<Vec<Array5<f32>>> {
        let features = self.graph.forward_train_all(x)?;
        self.head.forward(&features)
    }
}

/// What [`Yolov7::forward_cached_maps`] keeps for [`Yolov7::backward_maps`].
pub struct Yolov7Cache {
    graph: crate::train::GraphCache<Yolov7LayerCache>,
    heads: Vec<<crate::zoo::yolo::ImplicitHead<usize, usize> as Train>::Cache>,
}

impl Yolov7 {
    /// Train-mode raw maps `[B, na, H, W, 5 + classes]` (BatchNorm on batch statistics, running
    /// statistics updated) and what [`Yolov7::backward_maps`] needs.
    pub fn forward_cached_maps(&mut self, x: &Array4<f32>) -> Result<(Vec<Array5<f32>>, Yolov7Cache)> {
        let (features, graph) = self.graph.forward_cached_all(x)?;
        let per_level = self.head.anchors.per_level();
        let (mut maps, mut heads) = (Vec::new(), Vec::new());
        for (level, feature) in self.head.levels.iter_mut().zip(&features) {
            let (y, cache) = level.forward_cached(feature)?;
            maps.push(head::split_anchors(y, per_level)?);
            heads.push(cache);
        }
        Ok((maps, Yolov7Cache { graph, heads }))
    }

    /// Given `dL/d map` for each raw map of the forward that made `cache`, adds `dL/dθ` of every
    /// parameter to `grads` under the official names (`model.N.*`, `model.105.m.0.weight`, …).
    pub fn backward_maps(&self, cache: Yolov7Cache, dmaps: &[Array5<f32>], grads: &mut Gradients) -> Result<()> {
        if dmaps.len() != cache.heads.len() {
            return Err(Error::Wiring(format!("{} map gradients for {} head levels", dmaps.len(), cache.heads.len())));
        }
        let head = self.head_name();
        let mut dfeatures = Vec::with_capacity(dmaps.len());
        for (i, ((level, c), dmap)) in self.head.levels.iter().zip(cache.heads).zip(dmaps).enumerate() {
            let dy = head::merge_anchors(dmap)?;
            // The head's gradients under its level's names (`ia.{i}.implicit`, `m.{i}.weight`, …).
            let mut own = Gradients::new();
            dfeatures.push(level.backward(c, &dy, "", &mut own)?);
            for (name, g) in own.iter() {
                grads.accumulate(&head::level_key(&head, i, name), g.view())?;
            }
        }
        self.graph.backward_all(cache.graph, &dfeatures, "model", grads).map(drop)
    }
}

impl Yolov7Fused {
    /// The fused network of `config` with zero weights: the skeleton a deploy checkpoint loads into.
    pub fn new(config: Config) -> Result<Yolov7Fused> {
        let c = |base| config.scaling.channels(base);
        let graph = match config.variant {
            Variant::Yolov7 => Yolov7BodyFused::new(c(32), c(64), c(128), c(256), c(512), c(1024))?.into_graph(),
            Variant::Tiny => Yolov7TinyBodyFused::new(c(32), c(64), c(128), c(256), c(512))?.into_graph(),
        };
        let head = IDetectFused::new(&head_channels(&graph), config.classes, &config.anchors)?;
        Ok(Yolo { config, graph, head })
    }
}

impl Yolov7Fused {
    /// Plans the fused network for inputs of shape `[N, 3, H, W]`: every layer's kernel chosen
    /// and its weights packed or transformed once, the head's convolutions included, buffers
    /// assigned by liveness ([`GraphPlan`]). Run it with [`Yolov7Fused::forward_planned`].
    pub fn plan(&self, input: [usize; 4], choice: KernelChoice) -> Result<GraphPlan> {
        let head = self.head_name();
        GraphPlan::new(input, choice, |plan| {
            let features = self.graph.compile_values(plan, plan.input(), "model")?;
            let levels = features.iter().zip(&self.head.levels).enumerate();
            levels.map(|(i, (&feature, level))| plan.layer(feature, level, &format!("{head}.m.{i}"))).collect()
        })
    }

    /// Detections `z` `[B, Σ na·H·W, 5 + classes]` of `x` through `plan` (made by
    /// [`Yolov7Fused::plan`]) in `state`: the network runs without allocating; decoding reads
    /// the head's outputs in place.
    pub fn forward_planned(
        &self,
        plan: &GraphPlan,
        state: &mut GraphPlanState,
        x: ArrayView4<'_, f32>,
    ) -> Result<Array3<f32>> {
        planned_detections(plan, state, x, &self.head.anchors.to_anchors())
    }
}

/// [`Yolov7Fused::forward_planned`] with the head's pixel anchors given, so that the fused
/// model need not outlive its plan (which holds its own copy of every weight).
pub fn planned_detections(
    plan: &GraphPlan,
    state: &mut GraphPlanState,
    x: ArrayView4<'_, f32>,
    anchors: &Anchors,
) -> Result<Array3<f32>> {
    plan.run(state, x)?;
    let per_level = anchors.levels.first().map_or(1, |(_, a)| a.len()).max(1);
    let maps = (0..plan.outputs())
        .map(|i| {
            let y = plan.output(state, i)?;
            let &[b, c, h, w] = y.shape() else { unreachable!("plans hold 4-D values") };
            let y = y.into_shape_with_order((b, per_level, c / per_level, h, w)).map_err(|_| Error::Shape {
                what: "planned detection head output".into(),
                expected: vec![b, per_level * (c / per_level).max(1), h, w],
                found: vec![b, c, h, w],
            })?;
            Ok(y.permuted_axes([0, 1, 3, 4, 2]))
        })
        .collect::<Result<Vec<_>>>()?;
    decode(&maps, anchors)
}

/// The channels of the nodes the head reads.
fn head_channels<L: GraphLayer>(graph: &Graph<L>) -> Vec<usize> {
    graph.outputs().iter().map(|&o| graph.nodes()[o].channels).collect()
}

impl<L: GraphLayer, H: DetectionHead> Yolo<L, H> {
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The head's name: `model.{N}`, one past the last graph node.
    pub fn head_name(&self) -> String {
        format!("model.{}", self.graph.nodes().len())
    }

    /// Eval-mode raw maps `[B, na, H, W, 5 + classes]`, one per level (P3, P4, P5).
    pub fn forward_maps(&self, x: &Array4<f32>) -> Result<Vec<Array5<f32>>> {
        let features = self.graph.forward_all(x)?;
        self.head.maps(&features)
    }

    /// Eval-mode detections `z` `[B, Σ na·H·W, 5 + classes]`: boxes (x, y, w, h in input
    /// pixels), objectness and class scores, decoded with the anchors the head holds.
    pub fn forward(&self, x: &Array4<f32>) -> Result<Array3<f32>> {
        let maps = self.forward_maps(x)?;
        decode(&head::views(&maps), &self.head.anchor_buffers().to_anchors())
    }
}

impl<L: Parameters, H: Parameters> Parameters for Yolo<L, H> {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
        self.graph.visit(&join(prefix, "model"), f);
        self.head.visit(&join(prefix, &format!("model.{}", self.graph.nodes().len())), f);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
        self.graph.visit_mut(&join(prefix, "model"), f);
        self.head.visit_mut(&join(prefix, &format!("model.{}", self.graph.nodes().len())), f);
    }

    fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, u64)) {
        self.graph.visit_counters(&join(prefix, "model"), f);
    }

    fn visit_counters_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut u64)) {
        self.graph.visit_counters_mut(&join(prefix, "model"), f);
    }

    fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut BatchNorm2d)) {
        self.graph.visit_batch_norms(f);
    }
}

impl<L: GraphLayer, H: DetectionHead> Costs for Yolo<L, H> {
    fn parameter_count(&self) -> usize {
        // The head's sizes do not depend on the input; any size gives its parameters.
        self.graph.parameter_count() + self.head.costs(&[]).map_or(0, |(params, _)| params)
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        let sizes = self.graph.node_macs(input)?;
        let graph_macs = sizes.iter().try_fold(0, |total, (macs, _)| crate::add_macs(total, *macs))?;
        let levels: Vec<Hw> = self.graph.outputs().iter().map(|&o| sizes[o].1).collect();
        let (_, head_macs) = self.head.costs(&levels)?;
        Ok((crate::add_macs(graph_macs, head_macs)?, levels.first().copied().unwrap_or(input)))
    }
}

impl Reparameterize for Yolov7 {
    type Fused = Yolov7Fused;

    /// The fused network, as the official `Model.fuse()` makes it. Non-finite parameters are
    /// refused by name first.
    fn fuse(&self) -> Result<Yolov7Fused> {
        crate::io::check_finite(self)?;
        Ok(Yolo { config: self.config.clone(), graph: self.graph.fuse()?, head: self.head.fuse()? })
    }
}
