//! IDetect, YOLOv7's detection head: per level ImplicitA, a 1×1 conv with bias and ImplicitM,
//! named as the official module names them (`ia.{i}.implicit`, `m.{i}.weight`, `m.{i}.bias`,
//! `im.{i}.implicit`, and the buffers `anchors` and `anchor_grid`).

use crate::layers::{ImplicitA, ImplicitM, Layer, Parameters, join};
use crate::ndarray::{Array3, Array4, Array5, Array6, ArrayViewD, ArrayViewMutD};
use crate::zoo::detect::Anchors;
use crate::zoo::yolo::{ImplicitHead, ImplicitHeadFused};
use crate::{Costs, Error, Hw, Reparameterize, Result};

/// The anchors as IDetect stores them: `anchors` `[levels, na, 2]` in grid cells (pixels /
/// stride) and `anchor_grid` `[levels, 1, na, 1, 1, 2]` in pixels (what decoding uses).
#[derive(Clone, Debug, PartialEq)]
pub struct AnchorBuffers {
    /// Anchors in grid cells.
    pub anchors: Array3<f32>,
    /// Anchors in pixels.
    pub anchor_grid: Array6<f32>,
    /// The stride of each level (8, 16, 32).
    pub strides: Vec<usize>,
}

impl AnchorBuffers {
    /// The buffers of `anchors`.
    pub fn new(anchors: &Anchors) -> Result<Self> {
        let levels = anchors.levels.len();
        let per_level = anchors.levels.first().map_or(0, |(_, a)| a.len());
        if anchors.levels.iter().any(|(_, a)| a.len() != per_level) || per_level == 0 {
            return Err(Error::Architecture("every level needs the same, non-zero number of anchors".into()));
        }
        let pixels = |l: usize, a: usize, xy: usize| {
            let (w, h) = anchors.levels[l].1[a];
            if xy == 0 { w } else { h }
        };
        Ok(AnchorBuffers {
            anchors: Array3::from_shape_fn((levels, per_level, 2), |(l, a, xy)| {
                pixels(l, a, xy) / anchors.levels[l].0 as f32
            }),
            anchor_grid: Array6::from_shape_fn((levels, 1, per_level, 1, 1, 2), |(l, _, a, _, _, xy)| pixels(l, a, xy)),
            strides: anchors.levels.iter().map(|(s, _)| *s).collect(),
        })
    }

    /// Anchors per level.
    pub fn per_level(&self) -> usize {
        self.anchors.shape()[1]
    }

    /// The pixel anchors for decoding (`anchor_grid`, as the official eval forward uses).
    pub fn to_anchors(&self) -> Anchors {
        let levels = self.strides.iter().enumerate().map(|(l, &stride)| {
            let anchors = (0..self.per_level())
                .map(|a| (self.anchor_grid[[l, 0, a, 0, 0, 0]], self.anchor_grid[[l, 0, a, 0, 0, 1]]))
                .collect();
            (stride, anchors)
        });
        Anchors { levels: levels.collect() }
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
        f(&join(prefix, "anchors"), self.anchors.view().into_dyn());
        f(&join(prefix, "anchor_grid"), self.anchor_grid.view().into_dyn());
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
        f(&join(prefix, "anchors"), self.anchors.view_mut().into_dyn());
        f(&join(prefix, "anchor_grid"), self.anchor_grid.view_mut().into_dyn());
    }
}

/// `ia.implicit` of level `i` → `ia.{i}.implicit`: IDetect puts the level after the first part.
pub(super) fn level_key(prefix: &str, level: usize, name: &str) -> String {
    let (part, rest) = name.split_once('.').unwrap_or((name, ""));
    join(prefix, &join(&format!("{part}.{level}"), rest))
}

/// YOLOv7's IDetect (train-time form).
#[derive(Clone, Debug)]
pub struct IDetect {
    /// One implicit head per level.
    pub levels: Vec<ImplicitHead<usize, usize>>,
    /// The anchors.
    pub anchors: AnchorBuffers,
}

/// IDetect after the official `IDetect.fuse()`: each level one 1×1 conv with the implicit
/// vectors folded in (`W' = m·W`, `b' = m·(b + W·a)`). The implicit vectors stay as inert
/// buffers, as in the official fused model (whose `fuseforward` ignores them), so that a deploy
/// checkpoint keeps the official keys.
#[derive(Clone, Debug)]
pub struct IDetectFused {
    /// One fused head per level (`m.{i}`).
    pub levels: Vec<ImplicitHeadFused>,
    /// The original `ia.{i}` and `im.{i}` vectors, unused by the forward.
    pub implicit: Vec<(ImplicitA, ImplicitM)>,
    /// The anchors.
    pub anchors: AnchorBuffers,
}

impl IDetect {
    /// A head reading `channels` (one per level) with `classes` classes, PyTorch's
    /// initialization for the conv and YOLOR's for the implicit vectors.
    pub fn new(channels: &[usize], classes: usize, anchors: &Anchors, rng: &mut impl crate::rand::Rng) -> Result<Self> {
        let anchors = AnchorBuffers::new(anchors)?;
        let outputs = anchors.per_level() * (classes + 5);
        let levels = channels.iter().map(|&c| ImplicitHead::new(c, outputs, rng)).collect::<Result<_>>()?;
        Ok(IDetect { levels, anchors })
    }

    /// The raw maps `[B, na, H, W, 5 + classes]` of the head's inputs, one per level (what the
    /// official model returns in training mode).
    pub fn forward(&self, inputs: &[Array4<f32>]) -> Result<Vec<Array5<f32>>> {
        level_maps(&self.levels, self.anchors.per_level(), inputs)
    }
}

impl IDetectFused {
    /// The fused head of `channels` with zero weights: the skeleton a deploy checkpoint loads into.
    pub fn new(channels: &[usize], classes: usize, anchors: &Anchors) -> Result<Self> {
        let anchors = AnchorBuffers::new(anchors)?;
        let outputs = anchors.per_level() * (classes + 5);
        let levels = channels.iter().map(|&c| ImplicitHeadFused::new(c, outputs)).collect::<Result<_>>()?;
        let implicit = channels.iter().map(|&c| (ImplicitA::new(c), ImplicitM::new(outputs))).collect();
        Ok(IDetectFused { levels, implicit, anchors })
    }

    /// The raw maps `[B, na, H, W, 5 + classes]`, one per level.
    pub fn forward(&self, inputs: &[Array4<f32>]) -> Result<Vec<Array5<f32>>> {
        level_maps(&self.levels, self.anchors.per_level(), inputs)
    }
}

/// Each level's head on its input, its output split into the raw map of each anchor.
fn level_maps<H: Layer>(levels: &[H], per_level: usize, inputs: &[Array4<f32>]) -> Result<Vec<Array5<f32>>> {
    if inputs.len() != levels.len() {
        return Err(Error::Wiring(format!("{} head inputs for {} levels", inputs.len(), levels.len())));
    }
    levels.iter().zip(inputs).map(|(head, x)| split_anchors(head.forward(x)?, per_level)).collect()
}

/// `[B, na·o, H, W]` → `[B, na, H, W, o]` (the official `view(bs, na, no, ny, nx).permute(0, 1, 3, 4, 2)`).
pub(super) fn split_anchors(y: Array4<f32>, anchors: usize) -> Result<Array5<f32>> {
    let (b, c, h, w) = y.dim();
    let y = y.into_shape_with_order((b, anchors, c / anchors, h, w)).map_err(|_| Error::Shape {
        what: format!("detection head output ({anchors} anchors · outputs channels)"),
        expected: vec![b, anchors * (c / anchors).max(1), h, w],
        found: vec![b, c, h, w],
    })?;
    Ok(y.permuted_axes([0, 1, 3, 4, 2]).as_standard_layout().into_owned())
}

/// `[B, na, H, W, o]` → `[B, na·o, H, W]`: the transpose of [`split_anchors`], for gradients.
pub(super) fn merge_anchors(map: &Array5<f32>) -> Result<Array4<f32>> {
    let (b, na, h, w, o) = map.dim();
    let merged = map.view().permuted_axes([0, 1, 4, 2, 3]).as_standard_layout().into_owned();
    merged.into_shape_with_order((b, na * o, h, w)).map_err(|e| Error::Geometry(format!("map gradient: {e}")))
}

impl Reparameterize for IDetect {
    type Fused = IDetectFused;

    fn fuse(&self) -> Result<IDetectFused> {
        let levels = self.levels.iter().map(Reparameterize::fuse).collect::<Result<_>>()?;
        let implicit = self.levels.iter().map(|l| (l.head.0.clone(), l.head.2.clone())).collect();
        Ok(IDetectFused { levels, implicit, anchors: self.anchors.clone() })
    }
}

impl Parameters for IDetect {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
        for (i, head) in self.levels.iter().enumerate() {
            head.visit("", &mut |name, t| f(&level_key(prefix, i, name), t));
        }
        self.anchors.visit(prefix, f);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
        for (i, head) in self.levels.iter_mut().enumerate() {
            head.visit_mut("", &mut |name, t| f(&level_key(prefix, i, name), t));
        }
        self.anchors.visit_mut(prefix, f);
    }
}

impl Parameters for IDetectFused {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
        for (i, (head, (a, m))) in self.levels.iter().zip(&self.implicit).enumerate() {
            a.visit(&level_key(prefix, i, "ia"), f);
            head.visit("", &mut |name, t| f(&level_key(prefix, i, name), t));
            m.visit(&level_key(prefix, i, "im"), f);
        }
        self.anchors.visit(prefix, f);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
        for (i, (head, (a, m))) in self.levels.iter_mut().zip(&mut self.implicit).enumerate() {
            a.visit_mut(&level_key(prefix, i, "ia"), f);
            head.visit_mut("", &mut |name, t| f(&level_key(prefix, i, name), t));
            m.visit_mut(&level_key(prefix, i, "im"), f);
        }
        self.anchors.visit_mut(prefix, f);
    }
}

/// Parameters and multiply-adds of the heads at the three levels' sizes (`inputs`).
pub(super) fn head_costs<H: Costs>(levels: &[H], inputs: &[Hw]) -> Result<(usize, u64)> {
    let params = levels.iter().map(Costs::parameter_count).sum();
    let macs = levels.iter().zip(inputs).try_fold(0, |total, (head, &hw)| crate::add_macs(total, head.macs(hw)?.0))?;
    Ok((params, macs))
}

/// Views of per-level maps (for decoding).
pub(super) fn views(maps: &[Array5<f32>]) -> Vec<crate::ndarray::ArrayView5<'_, f32>> {
    maps.iter().map(|m| m.view()).collect()
}
