//! A small YOLOv7-style network — Conv-BN-SiLU downsampling, RepConv stages, a neck that
//! upsamples and concatenates (RepConvN where the output feeds the concatenation), and YOLOR's
//! implicit detection head — at three width/depth settings of Scaled-YOLOv4 compound scaling.
//! Prints the cost table (parameters and multiply-adds, train-time vs fused, two resolutions)
//! and the fused-vs-train error, including for the EMA model after one training step.
//!
//! ```text
//! cargo run --release --example yolo_parts
//! ```

use rep::layers::{Layer, Parameters, concat_channels, randomize_vectors, upsample_nearest};
use rep::ndarray::Array4;
use rep::rand::{Rng, SeedableRng, rngs::StdRng};
use rep::zoo::yolo::{ConvBnSilu, Ema, ImplicitHead, RepConv, RepConvN, Scaling};
use rep::{Const, Costs, Hw, Reparameterize};

/// Anchors per level × (classes + box + objectness), as YOLOv7's COCO head.
const OUTPUTS: usize = 3 * (80 + 5);

/// Input → P3 (stride 8).
#[rep::model(new(s: &Scaling))]
pub struct ToP3 {
    stem: ConvBnSilu<3, { s.channels(32) }, 3, 2>,
    down1: ConvBnSilu<{ s.channels(32) }, { s.channels(64) }, 3, 2>,
    #[rep(repeat = s.blocks(3))]
    stage1: Vec<RepConv<{ s.channels(64) }, { s.channels(64) }, 1, 1>>,
    down2: ConvBnSilu<{ s.channels(64) }, { s.channels(128) }, 3, 2>,
}

/// P3 → P4 (stride 16).
#[rep::model(new(s: &Scaling))]
pub struct ToP4 {
    #[rep(repeat = s.blocks(3))]
    stage2: Vec<RepConv<{ s.channels(128) }, { s.channels(128) }, 1, 1>>,
    down3: ConvBnSilu<{ s.channels(128) }, { s.channels(256) }, 3, 2>,
}

type Lateral = ConvBnSilu<usize, usize, Const<1>, Const<1>>;
type Merge = RepConvN<usize, usize, Const<1>, Const<1>>;
type Out = RepConv<usize, usize, Const<1>, Const<1>>;
type Head = ImplicitHead<usize, usize>;

/// The network: backbone to P3 and P4, a top-down neck, one implicit head per level.
#[derive(Clone)]
pub struct TinyYolo {
    pub p3: ToP3,
    pub p4: ToP4,
    pub lateral: Lateral,
    pub merge: Merge,
    pub out3: Out,
    pub out4: Out,
    pub head3: Head,
    pub head4: Head,
}

/// The fused network: the same parts, each fused.
pub struct TinyYoloFused {
    parts: [Box<dyn Part>; 8],
}

/// What both forms need of a part.
pub trait Part: Layer + Costs {}
impl<T: Layer + Costs> Part for T {}

impl TinyYolo {
    pub fn new(s: &Scaling, rng: &mut StdRng) -> rep::Result<Self> {
        let (c128, c256) = (s.channels(128), s.channels(256));
        Ok(TinyYolo {
            p3: ToP3::new(s, rng)?,
            p4: ToP4::new(s, rng)?,
            lateral: Lateral::new(c256, c128, Const, Const, rng)?,
            // Its output is concatenated-into downstream: no identity branch (RepConvN).
            merge: Merge::new(2 * c128, c128, Const, Const, rng)?,
            out3: Out::new(c128, c128, Const, Const, rng)?,
            out4: Out::new(c256, c256, Const, Const, rng)?,
            head3: Head::new(c128, OUTPUTS, rng)?,
            head4: Head::new(c256, OUTPUTS, rng)?,
        })
    }

    fn parts(&self) -> [&dyn Part; 8] {
        [&self.p3, &self.p4, &self.lateral, &self.merge, &self.out3, &self.out4, &self.head3, &self.head4]
    }

    pub fn fuse(&self) -> rep::Result<TinyYoloFused> {
        Ok(TinyYoloFused {
            parts: [
                Box::new(self.p3.fuse()?),
                Box::new(self.p4.fuse()?),
                Box::new(self.lateral.fuse()?),
                Box::new(self.merge.fuse()?),
                Box::new(self.out3.fuse()?),
                Box::new(self.out4.fuse()?),
                Box::new(self.head3.fuse()?),
                Box::new(self.head4.fuse()?),
            ],
        })
    }

    /// Eval forward: the head outputs at strides 8 and 16.
    pub fn forward(&self, x: &Array4<f32>) -> rep::Result<[Array4<f32>; 2]> {
        forward(self.parts(), x)
    }

    /// Training forward: batch statistics, running statistics updated.
    pub fn forward_train(&mut self, x: &Array4<f32>) -> rep::Result<[Array4<f32>; 2]> {
        let p3 = self.p3.forward_train(x)?;
        let p4 = self.p4.forward_train(&p3)?;
        let top = upsample_nearest(&self.lateral.forward_train(&p4)?, 2)?;
        let merged = self.merge.forward_train(&concat_channels(&[&p3, &top])?)?;
        let y3 = self.head3.forward_train(&self.out3.forward_train(&merged)?)?;
        let y4 = self.head4.forward_train(&self.out4.forward_train(&p4)?)?;
        Ok([y3, y4])
    }
}

impl Parameters for TinyYolo {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, rep::ndarray::ArrayViewD<'_, f32>)) {
        for (name, part) in self.named() {
            part.visit(&rep::layers::join(prefix, name), f);
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, rep::ndarray::ArrayViewMutD<'_, f32>)) {
        for (name, part) in self.named_mut() {
            part.visit_mut(&rep::layers::join(prefix, name), f);
        }
    }

    fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut rep::layers::BatchNorm2d)) {
        for (_, part) in self.named_mut() {
            part.visit_batch_norms(f);
        }
    }
}

impl TinyYolo {
    fn named(&self) -> [(&str, &dyn Parameters); 8] {
        [
            ("p3", &self.p3),
            ("p4", &self.p4),
            ("lateral", &self.lateral),
            ("merge", &self.merge),
            ("out3", &self.out3),
            ("out4", &self.out4),
            ("head3", &self.head3),
            ("head4", &self.head4),
        ]
    }

    fn named_mut(&mut self) -> [(&str, &mut dyn Parameters); 8] {
        [
            ("p3", &mut self.p3),
            ("p4", &mut self.p4),
            ("lateral", &mut self.lateral),
            ("merge", &mut self.merge),
            ("out3", &mut self.out3),
            ("out4", &mut self.out4),
            ("head3", &mut self.head3),
            ("head4", &mut self.head4),
        ]
    }
}

impl TinyYoloFused {
    pub fn forward(&self, x: &Array4<f32>) -> rep::Result<[Array4<f32>; 2]> {
        forward(self.parts(), x)
    }

    fn parts(&self) -> [&dyn Part; 8] {
        std::array::from_fn(|i| self.parts[i].as_ref())
    }
}

fn forward(parts: [&dyn Part; 8], x: &Array4<f32>) -> rep::Result<[Array4<f32>; 2]> {
    let [p3_net, p4_net, lateral, merge, out3, out4, head3, head4] = parts;
    let p3 = p3_net.forward(x)?;
    let p4 = p4_net.forward(&p3)?;
    let top = upsample_nearest(&lateral.forward(&p4)?, 2)?;
    let merged = merge.forward(&concat_channels(&[&p3, &top])?)?;
    Ok([head3.forward(&out3.forward(&merged)?)?, head4.forward(&out4.forward(&p4)?)?])
}

/// Parameters and multiply-adds of one image at `res`×`res`.
fn costs(parts: [&dyn Part; 8], res: usize) -> rep::Result<(usize, u64)> {
    let [p3_net, p4_net, lateral, merge, out3, out4, head3, head4] = parts;
    let params = parts.iter().map(|p| p.parameter_count()).sum();
    let (m3, hw3) = p3_net.macs(Hw::square(res))?;
    let (m4, hw4) = p4_net.macs(hw3)?;
    let mut macs = m3 + m4 + lateral.macs(hw4)?.0 + merge.macs(hw3)?.0;
    macs += out3.macs(hw3)?.0 + head3.macs(hw3)?.0 + out4.macs(hw4)?.0 + head4.macs(hw4)?.0;
    Ok((params, macs))
}

/// The project's relative error (ARCHITECTURE.md, Tolerances) over both head outputs, `a` the reference.
fn relative_error(a: &[Array4<f32>; 2], b: &[Array4<f32>; 2]) -> rep::Result<f32> {
    let [d3, d4] = [rep::compare::difference(&b[0], &a[0])?, rep::compare::difference(&b[1], &a[1])?];
    Ok(d3.max(d4).relative())
}

/// The three settings of the table.
pub const SETTINGS: [(&str, Scaling); 3] = [
    ("tiny", Scaling { width: 0.25, depth: 0.33 }),
    ("small", Scaling { width: 0.5, depth: 0.67 }),
    ("base", Scaling { width: 1.0, depth: 1.0 }),
];

/// One row of the report.
pub struct Row {
    pub name: &'static str,
    pub scaling: Scaling,
    pub costs: [(usize, u64, usize, u64); 2],
    pub fused_error: f32,
    pub ema_error: f32,
}

/// Builds every setting with random weights and BN statistics, checks the fused form against
/// the train-time form (eval), and the fused EMA model after one training step.
pub fn report(seed: u64) -> rep::Result<Vec<Row>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for (name, scaling) in SETTINGS {
        let mut net = TinyYolo::new(&scaling, &mut rng)?;
        randomize_vectors(&mut net, &mut rng);
        let x = Array4::from_shape_simple_fn((2, 3, 48, 80), || rng.random_range(-1.0f32..1.0));
        let fused = net.fuse()?;
        let fused_error = relative_error(&net.forward(&x)?, &fused.forward(&x)?)?;

        let mut ema = Ema::new(&net, 0.9999);
        net.forward_train(&x)?;
        ema.update(&net)?;
        let ema_fused = ema.model.fuse()?;
        let ema_error = relative_error(&ema.model.forward(&x)?, &ema_fused.forward(&x)?)?;

        let mut costs = [(0, 0, 0, 0); 2];
        for (slot, res) in costs.iter_mut().zip([320, 640]) {
            let (tp, tm) = self::costs(net.parts(), res)?;
            let (fp, fm) = self::costs(fused.parts(), res)?;
            *slot = (tp, tm, fp, fm);
        }
        rows.push(Row { name, scaling, costs, fused_error, ema_error });
    }
    Ok(rows)
}

#[allow(dead_code)]
fn main() -> rep::Result<()> {
    let rows = report(0)?;
    println!("Compound scaling of a YOLOv7-style network (RepConv stages, RepConvN neck, implicit head)");
    println!(
        "{:<6} {:>5} {:>5} {:>5} {:>10} {:>10} {:>14} {:>14} {:>11} {:>11}",
        "name", "width", "depth", "res", "params", "fused", "MACs", "fused MACs", "fused err", "EMA err"
    );
    for row in &rows {
        for (res, (tp, tm, fp, fm)) in [320, 640].iter().zip(row.costs) {
            println!(
                "{:<6} {:>5} {:>5} {:>5} {:>10} {:>10} {:>14} {:>14} {:>11.2e} {:>11.2e}",
                row.name, row.scaling.width, row.scaling.depth, res, tp, fp, tm, fm, row.fused_error, row.ema_error
            );
        }
    }
    Ok(())
}
