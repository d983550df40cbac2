//! The two reference fixtures (official RepVGG code and timm's ByobNet), evaluated with a
//! RepVGG network assembled by hand from runtime layers: train-time logits, fused logits, and
//! our fused weights against the peers' own deploy weights, all within the project's tolerance (ARCHITECTURE.md).

mod common;

use common::{REL_TOL, relative_error};
use ndarray::{Array2, Array4, ArrayD, ArrayViewD, ArrayViewMutD};
use ndarray_npy::read_npy;
use rep::layers::{Activation, BatchNorm2d, Conv2d, ConvBn, Layer, Linear, Parameters, global_avg_pool, join};
use rep::{ConvGeometry, StateDict, fusion};
use std::path::PathBuf;

/// The names one implementation gives the parts of its network.
struct Naming {
    dir: &'static str,
    blocks: fn(stage: usize, index: usize) -> String,
    dense: &'static str,
    pointwise: &'static str,
    identity: &'static str,
    reparam: &'static str,
    head: &'static str,
}

const OFFICIAL: Naming = Naming {
    dir: "official_a0_w25",
    blocks: |stage, index| if stage == 0 { "stage0".into() } else { format!("stage{stage}.{index}") },
    dense: "rbr_dense",
    pointwise: "rbr_1x1",
    identity: "rbr_identity",
    reparam: "rbr_reparam",
    head: "linear",
};

const TIMM: Naming = Naming {
    dir: "timm_a0_w25",
    blocks: |stage, index| if stage == 0 { "stem".into() } else { format!("stages.{}.{index}", stage - 1) },
    dense: "conv_kxk",
    pointwise: "conv_1x1",
    identity: "identity",
    reparam: "reparam_conv",
    head: "head.fc",
};

/// RepVGG block: `ReLU(BN(conv3x3(x)) + BN(conv1x1(x)) + BN(x))`.
struct Block {
    dense: ConvBn,
    pointwise: ConvBn,
    identity: Option<BatchNorm2d>,
}

/// A RepVGG network with the fixtures' layout (A0 depths, widths ×0.25, ×0.5 last, 10 classes).
struct Network {
    blocks: Vec<(String, Block)>,
    head: Linear,
    naming: &'static Naming,
}

impl Network {
    fn new(naming: &'static Naming) -> Self {
        let (depths, widths) = ([1, 2, 4, 14, 1], [16, 16, 32, 64, 256]);
        let mut rng = common::rng(0);
        let mut blocks = Vec::new();
        let mut cin = 3;
        for (stage, (&depth, &cout)) in depths.iter().zip(&widths).enumerate() {
            for index in 0..depth {
                let stride = if index == 0 { 2 } else { 1 };
                let block = Block {
                    dense: ConvBn::new(ConvGeometry::new(cin, cout, 3).stride(stride).padding(1), &mut rng).unwrap(),
                    pointwise: ConvBn::new(ConvGeometry::new(cin, cout, 1).stride(stride), &mut rng).unwrap(),
                    identity: (cin == cout && stride == 1).then(|| BatchNorm2d::new(cout)),
                };
                blocks.push(((naming.blocks)(stage, index), block));
                cin = cout;
            }
        }
        Network { blocks, head: Linear::new(cin, 10, &mut rng), naming }
    }

    fn forward(&self, x: &Array4<f32>) -> Array2<f32> {
        let mut x = x.clone();
        for (_, b) in &self.blocks {
            let mut y = &b.dense.forward(&x).unwrap() + &b.pointwise.forward(&x).unwrap();
            if let Some(bn) = &b.identity {
                y = &y + &bn.forward(&x).unwrap();
            }
            x = Activation::Relu.forward(&y).unwrap();
        }
        self.head.forward(&global_avg_pool(&x)).unwrap()
    }

    /// One conv per block, named as the implementation names its deploy weights.
    fn fuse(&self) -> Vec<(String, Conv2d)> {
        self.blocks
            .iter()
            .map(|(name, b)| {
                let mut branches = vec![("dense", b.dense.fuse().unwrap()), ("pointwise", b.pointwise.fuse().unwrap())];
                if let Some(bn) = &b.identity {
                    branches.push(("identity", fusion::bn_identity(bn, 1).unwrap()));
                }
                (join(name, self.naming.reparam), fusion::sum_branches(&branches).unwrap().to_conv2d())
            })
            .collect()
    }
}

impl Parameters for Network {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
        for (name, b) in &self.blocks {
            let at = join(prefix, name);
            b.dense.visit(&join(&at, self.naming.dense), f);
            b.pointwise.visit(&join(&at, self.naming.pointwise), f);
            b.identity.visit(&join(&at, self.naming.identity), f);
        }
        self.head.visit(&join(prefix, self.naming.head), f);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
        for (name, b) in &mut self.blocks {
            let at = join(prefix, name);
            b.dense.visit_mut(&join(&at, self.naming.dense), f);
            b.pointwise.visit_mut(&join(&at, self.naming.pointwise), f);
            b.identity.visit_mut(&join(&at, self.naming.identity), f);
        }
        self.head.visit_mut(&join(prefix, self.naming.head), f);
    }
}

fn fixture(naming: &Naming, file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(naming.dir).join(file)
}

/// Deploy forward: `ReLU(conv(x))` per block, then the head.
fn deploy_forward(convs: &[(String, Conv2d)], head: &Linear, x: &Array4<f32>) -> Array2<f32> {
    let mut x = x.clone();
    for (_, conv) in convs {
        x = Activation::Relu.forward(&conv.forward(&x).unwrap()).unwrap();
    }
    head.forward(&global_avg_pool(&x)).unwrap()
}

fn check(naming: &'static Naming) {
    let mut net = Network::new(naming);
    StateDict::load(fixture(naming, "train.safetensors")).unwrap().load_into(&mut net).unwrap();
    let x: Array4<f32> = read_npy(fixture(naming, "input.npy")).unwrap();
    let expect_train: Array2<f32> = read_npy(fixture(naming, "expect_train.npy")).unwrap();
    let expect_deploy: Array2<f32> = read_npy(fixture(naming, "expect_deploy.npy")).unwrap();

    let train = net.forward(&x);
    let train_err = relative_error(&train, &expect_train);

    let fused = net.fuse();
    let deploy = deploy_forward(&fused, &net.head, &x);
    let deploy_err = relative_error(&deploy, &expect_deploy);

    // Our fused weights against the peer's own re-parameterized weights, tensor by tensor.
    let peer = StateDict::load(fixture(naming, "deploy.safetensors")).unwrap();
    let mut weight_err = 0.0f32;
    for (name, conv) in &fused {
        for (suffix, ours) in
            [("weight", conv.weight().clone().into_dyn()), ("bias", conv.bias().cloned().unwrap().into_dyn())]
        {
            let theirs: &ArrayD<f32> = &peer.tensors[&join(name, suffix)];
            weight_err = weight_err.max(relative_error(&ours, theirs));
        }
    }
    assert_eq!(peer.tensors.len(), 2 * fused.len() + 2, "deploy file has the blocks and the head only");

    println!(
        "{}: train logits rel. err {train_err:.2e}, fused logits rel. err {deploy_err:.2e}, \
         fused weights vs peer deploy rel. err {weight_err:.2e} (max |logit| {:.1})",
        naming.dir,
        expect_train.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    );
    assert!(train_err <= REL_TOL, "train-time logits: {train_err:e}");
    assert!(deploy_err <= REL_TOL, "fused logits: {deploy_err:e}");
    assert!(weight_err <= REL_TOL, "fused weights: {weight_err:e}");
}

#[test]
fn official_fixture() {
    check(&OFFICIAL);
}

#[test]
fn timm_fixture() {
    check(&TIMM);
}

#[test]
fn peer_deploy_weights_run_as_they_are() {
    for naming in [&OFFICIAL, &TIMM] {
        let peer = StateDict::load(fixture(naming, "deploy.safetensors")).unwrap();
        let net = Network::new(naming);
        let mut convs = net.fuse();
        for (name, conv) in &mut convs {
            let weight = peer.tensors[&join(name, "weight")].clone().into_dimensionality().unwrap();
            let bias = peer.tensors[&join(name, "bias")].clone().into_dimensionality().unwrap();
            *conv = Conv2d::from_weights(*conv.geometry(), weight, Some(bias)).unwrap();
        }
        let mut head = net.head.clone();
        head.weight = peer.tensors[&join(naming.head, "weight")].clone().into_dimensionality().unwrap();
        head.bias = Some(peer.tensors[&join(naming.head, "bias")].clone().into_dimensionality().unwrap());
        let x: Array4<f32> = read_npy(fixture(naming, "input.npy")).unwrap();
        let expect: Array2<f32> = read_npy(fixture(naming, "expect_deploy.npy")).unwrap();
        let err = relative_error(&deploy_forward(&convs, &head, &x), &expect);
        assert!(err <= REL_TOL, "{}: {err:e}", naming.dir);
    }
}
