//! The layers of a YOLOv7 graph, train-time and fused: YOLO's `Conv` (Conv-BN-SiLU, or
//! Conv-BN-LeakyReLU(0.1) in YOLOv7-tiny), RepConv and SPPCSPC (itself a small graph).

use crate::graph::GraphLayer;
use crate::layers::{BatchNorm2d, Layer, Parameters};
use crate::ndarray::{Array4, ArrayViewD, ArrayViewMutD};
use crate::plan::{CompileNode, GraphPlanBuilder, Value};
use crate::train::{Gradients, Train};
use crate::zoo::yolo::{ConvBnSilu, ConvBnSiluFused, RepConv, RepConvFused};
use crate::{Costs, Hw, Reparameterize, Result};

/// YOLOv7-tiny's `Conv`: a bias-free k×k conv, BN (ε 1e-3, momentum 0.03) and LeakyReLU(0.1);
/// fuses to one conv with bias (`conv.weight`, `conv.bias`).
#[crate::block(post(leaky_relu(0.1)), fused = "conv")]
pub struct ConvBnLeaky<Cin, Cout, K, S> {
    #[rep(rename = "")]
    conv: crate::layers::ConvBn<Cin, Cout, K, S, Eps<1e-3>, Momentum<0.03>>,
}

/// SPPCSPC (`c_in → c`, hidden `c_ = c`, pools 5, 9, 13, SiLU), declared as a graph:
/// `x₁ = cv4(cv3(cv1(x)))`, `y₁ = cv6(cv5([x₁, m₅(x₁), m₉(x₁), m₁₃(x₁)]))`, `y₂ = cv2(x)`,
/// output `cv7([y₁, y₂])`. Weights under `cv1`…`cv7`, as the official module names them.
#[crate::graph(new(c_in: usize, c: usize))]
pub struct Sppcspc {
    cv1: ConvBnSilu<{ c_in }, { c }, 1, 1>,
    cv3: ConvBnSilu<{ c }, { c }, 3, 1>,
    cv4: ConvBnSilu<{ c }, { c }, 1, 1>,
    #[rep(rename = "m.0")]
    m0: MaxPool<5, 1, 2>,
    #[rep(rename = "m.1", from = 2)]
    m1: MaxPool<9, 1, 4>,
    #[rep(rename = "m.2", from = 2)]
    m2: MaxPool<13, 1, 6>,
    #[rep(from = (2, 3, 4, 5))]
    cat1: Concat,
    cv5: ConvBnSilu<{ 4 * c }, { c }, 1, 1>,
    cv6: ConvBnSilu<{ c }, { c }, 3, 1>,
    #[rep(from = input)]
    cv2: ConvBnSilu<{ c_in }, { c }, 1, 1>,
    #[rep(from = (8, 9))]
    cat2: Concat,
    cv7: ConvBnSilu<{ 2 * c }, { c }, 1, 1>,
}

/// YOLO's `Conv` with run-time sizes, SiLU.
pub type Conv = ConvBnSilu<usize, usize, usize, usize>;
/// YOLOv7-tiny's `Conv` with run-time sizes, LeakyReLU(0.1).
pub type ConvLeaky = ConvBnLeaky<usize, usize, usize, usize>;
/// YOLOv7's RepConv with run-time sizes (3×3 + 1×1 + identity when `C_in == C_out`, stride 1).
pub type RepConv3 = RepConv<usize, usize, usize, usize>;

/// A train-time layer of a YOLOv7 graph.
#[derive(Clone, Debug)]
pub enum Yolov7Layer {
    /// `Conv` with SiLU.
    Conv(Conv),
    /// `Conv` with LeakyReLU(0.1) (YOLOv7-tiny).
    ConvLeaky(ConvLeaky),
    /// RepConv (boxed: three branches make it far larger than a `Conv`).
    RepConv(Box<RepConv3>),
    /// SPPCSPC: `cv1`…`cv7` and three max pools, a graph of its own.
    Sppcspc(Box<Sppcspc>),
}

/// A fused layer of a YOLOv7 graph: one conv with bias and its activation, or a fused SPPCSPC.
#[derive(Clone, Debug)]
pub enum Yolov7LayerFused {
    /// `Conv` with SiLU.
    Conv(ConvBnSiluFused),
    /// `Conv` with LeakyReLU(0.1).
    ConvLeaky(ConvBnLeakyFused),
    /// RepConv as one conv (`rbr_reparam`).
    RepConv(RepConvFused),
    /// SPPCSPC with every `Conv` fused.
    Sppcspc(Box<SppcspcFused>),
}

/// Implements `Layer`, `Parameters` and `Costs` for an enum of layers by delegating to the
/// variant's layer.
macro_rules! delegate_to_variant {
    ($enum:ident { $($variant:ident),* }) => {
        impl Layer for $enum {
            fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
                match self { $($enum::$variant(l) => l.forward(x),)* }
            }

            fn forward_train(&mut self, x: &Array4<f32>) -> Result<Array4<f32>> {
                match self { $($enum::$variant(l) => l.forward_train(x),)* }
            }
        }

        impl Parameters for $enum {
            fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
                match self { $($enum::$variant(l) => l.visit(prefix, f),)* }
            }

            fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
                match self { $($enum::$variant(l) => l.visit_mut(prefix, f),)* }
            }

            fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, u64)) {
                match self { $($enum::$variant(l) => l.visit_counters(prefix, f),)* }
            }

            fn visit_counters_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut u64)) {
                match self { $($enum::$variant(l) => l.visit_counters_mut(prefix, f),)* }
            }

            fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut BatchNorm2d)) {
                match self { $($enum::$variant(l) => l.visit_batch_norms(f),)* }
            }
        }

        impl Costs for $enum {
            fn parameter_count(&self) -> usize {
                match self { $($enum::$variant(l) => l.parameter_count(),)* }
            }

            fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
                match self { $($enum::$variant(l) => l.macs(input),)* }
            }
        }
    };
}

delegate_to_variant!(Yolov7Layer { Conv, ConvLeaky, RepConv, Sppcspc });
delegate_to_variant!(Yolov7LayerFused { Conv, ConvLeaky, RepConv, Sppcspc });

impl GraphLayer for Yolov7Layer {
    fn in_channels(&self) -> usize {
        use crate::Block;
        match self {
            Yolov7Layer::Conv(l) => l.in_channels(),
            Yolov7Layer::ConvLeaky(l) => l.in_channels(),
            Yolov7Layer::RepConv(l) => l.in_channels(),
            Yolov7Layer::Sppcspc(g) => g.in_channels(),
        }
    }

    fn out_channels(&self) -> usize {
        use crate::Block;
        match self {
            Yolov7Layer::Conv(l) => l.out_channels(),
            Yolov7Layer::ConvLeaky(l) => l.out_channels(),
            Yolov7Layer::RepConv(l) => l.out_channels(),
            Yolov7Layer::Sppcspc(g) => g.out_channels(),
        }
    }

    fn has_identity_branch(&self) -> bool {
        matches!(self, Yolov7Layer::RepConv(l) if crate::Block::has_identity_branch(l.as_ref()))
    }
}

impl GraphLayer for Yolov7LayerFused {
    fn in_channels(&self) -> usize {
        match self {
            Yolov7LayerFused::Conv(l) => l.conv.geometry().in_channels,
            Yolov7LayerFused::ConvLeaky(l) => l.conv.geometry().in_channels,
            Yolov7LayerFused::RepConv(l) => l.conv.geometry().in_channels,
            Yolov7LayerFused::Sppcspc(g) => g.in_channels(),
        }
    }

    fn out_channels(&self) -> usize {
        match self {
            Yolov7LayerFused::Conv(l) => l.conv.geometry().out_channels,
            Yolov7LayerFused::ConvLeaky(l) => l.conv.geometry().out_channels,
            Yolov7LayerFused::RepConv(l) => l.conv.geometry().out_channels,
            Yolov7LayerFused::Sppcspc(g) => g.out_channels(),
        }
    }
}

/// What a [`Yolov7Layer`]'s training forward keeps for its backward.
pub enum Yolov7LayerCache {
    /// `Conv` with SiLU.
    Conv(<Conv as Train>::Cache),
    /// `Conv` with LeakyReLU(0.1).
    ConvLeaky(<ConvLeaky as Train>::Cache),
    /// RepConv.
    RepConv(<RepConv3 as Train>::Cache),
    /// SPPCSPC.
    Sppcspc(<Sppcspc as Train>::Cache),
}

impl Train for Yolov7Layer {
    type Cache = Yolov7LayerCache;

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, Yolov7LayerCache)> {
        Ok(match self {
            Yolov7Layer::Conv(l) => l.forward_cached(x).map(|(y, c)| (y, Yolov7LayerCache::Conv(c)))?,
            Yolov7Layer::ConvLeaky(l) => l.forward_cached(x).map(|(y, c)| (y, Yolov7LayerCache::ConvLeaky(c)))?,
            Yolov7Layer::RepConv(l) => l.forward_cached(x).map(|(y, c)| (y, Yolov7LayerCache::RepConv(c)))?,
            Yolov7Layer::Sppcspc(g) => g.forward_cached(x).map(|(y, c)| (y, Yolov7LayerCache::Sppcspc(c)))?,
        })
    }

    fn backward(
        &self,
        cache: Yolov7LayerCache,
        dy: &Array4<f32>,
        prefix: &str,
        grads: &mut Gradients,
    ) -> Result<Array4<f32>> {
        match (self, cache) {
            (Yolov7Layer::Conv(l), Yolov7LayerCache::Conv(c)) => l.backward(c, dy, prefix, grads),
            (Yolov7Layer::ConvLeaky(l), Yolov7LayerCache::ConvLeaky(c)) => l.backward(c, dy, prefix, grads),
            (Yolov7Layer::RepConv(l), Yolov7LayerCache::RepConv(c)) => l.backward(c, dy, prefix, grads),
            (Yolov7Layer::Sppcspc(g), Yolov7LayerCache::Sppcspc(c)) => g.backward(c, dy, prefix, grads),
            _ => Err(crate::Error::Wiring(format!("`{prefix}`: a cache of another layer kind"))),
        }
    }

    fn freeze_batch_norm(&mut self, frozen: bool) {
        match self {
            Yolov7Layer::Conv(l) => l.freeze_batch_norm(frozen),
            Yolov7Layer::ConvLeaky(l) => l.freeze_batch_norm(frozen),
            Yolov7Layer::RepConv(l) => l.freeze_batch_norm(frozen),
            Yolov7Layer::Sppcspc(g) => g.freeze_batch_norm(frozen),
        }
    }
}

impl CompileNode for Yolov7LayerFused {
    fn compile_node(&self, plan: &mut GraphPlanBuilder, input: Value, name: &str) -> Result<Value> {
        match self {
            Yolov7LayerFused::Conv(l) => plan.layer(input, l, name),
            Yolov7LayerFused::ConvLeaky(l) => plan.layer(input, l, name),
            Yolov7LayerFused::RepConv(l) => plan.layer(input, l, name),
            Yolov7LayerFused::Sppcspc(g) => g.compile_node(plan, input, name),
        }
    }
}

impl Reparameterize for Yolov7Layer {
    type Fused = Yolov7LayerFused;

    fn fuse(&self) -> Result<Yolov7LayerFused> {
        Ok(match self {
            Yolov7Layer::Conv(l) => Yolov7LayerFused::Conv(l.fuse()?),
            Yolov7Layer::ConvLeaky(l) => Yolov7LayerFused::ConvLeaky(l.fuse()?),
            Yolov7Layer::RepConv(l) => Yolov7LayerFused::RepConv(l.fuse()?),
            Yolov7Layer::Sppcspc(g) => Yolov7LayerFused::Sppcspc(Box::new(g.fuse()?)),
        })
    }
}

/// `From` each layer type into its variant of a YOLOv7 layer enum (`into` boxes where the
/// variant is boxed): how the declared networks ([`super::networks`]) build their graphs.
macro_rules! into_variant {
    ($enum:ident { $($variant:ident($ty:ty)),* }) => {$(
        impl From<$ty> for $enum {
            fn from(layer: $ty) -> $enum {
                $enum::$variant(layer.into())
            }
        }
    )*};
}

into_variant!(Yolov7Layer { Conv(Conv), ConvLeaky(ConvLeaky), RepConv(RepConv3), Sppcspc(Sppcspc) });
into_variant!(Yolov7LayerFused {
    Conv(ConvBnSiluFused),
    ConvLeaky(ConvBnLeakyFused),
    RepConv(RepConvFused),
    Sppcspc(SppcspcFused)
});
