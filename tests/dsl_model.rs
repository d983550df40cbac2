//! `#[rep::model]`: a RepVGG block and a three-stage model in a few lines, and the two reference
//! fixtures (official RepVGG and timm naming) loaded, run and fused through the DSL.

mod common;

use common::{REL_TOL, random_tensor, relative_error, rng};
use ndarray::{Array2, Array4};
use ndarray_npy::read_npy;
use rep::layers::randomize_vectors;
use rep::{Costs, Error, Hw, Reparameterize, StateDict};

// ---- The README's promise: a block and a three-stage model in under 20 lines. ----
#[rep::block(post(relu))]
pub struct RepVgg<Cin, Cout, S> {
    dense: ConvBn<Cin, Cout, 3, S>,
    pointwise: ConvBn<Cin, Cout, 1, S>,
    #[rep(when = Cin == Cout && S == 1)]
    identity: Option<Bn<Cout>>,
}

#[rep::model(new(width: usize, depth: usize))]
pub struct Tiny {
    stem: RepVgg<3, 16, 2>,
    #[rep(repeat = depth)]
    stage1: Vec<RepVgg<16, { width }, 2>>,
    #[rep(repeat = depth)]
    stage2: Vec<RepVgg<{ width }, { width * 2 }, 2>>,
    pool: GlobalAvgPool,
    head: Linear<{ width * 2 }, 10>,
}
// ---- 19 lines. ----

#[test]
fn three_stage_model_fuses_exactly() {
    let mut r = rng(2);
    let mut model = Tiny::new(24, 3, &mut r).unwrap();
    randomize_vectors(&mut model, &mut r);
    assert_eq!(model.stage1.len(), 3);
    assert!(model.stage1[0].identity.is_none(), "the first block of a stage changes shape");
    assert!(model.stage1[1].identity.is_some(), "blocks after the first of a stage keep channels, stride 1");
    let x = random_tensor((2, 3, 33, 27), &mut r);
    let fused = model.fuse().unwrap();
    let err = relative_error(&fused.forward(&x).unwrap(), &model.forward(&x).unwrap());
    println!("Tiny(width 24, depth 3): fused vs train relative error {err:.2e}");
    assert!(err <= REL_TOL, "{err:e}");

    let (train_macs, out) = model.macs(Hw::new(33, 27)).unwrap();
    let (fused_macs, _) = fused.macs(Hw::new(33, 27)).unwrap();
    assert_eq!(out, Hw::square(1));
    assert!(fused_macs < train_macs && fused.parameter_count() < model.parameter_count());

    let mut names = Vec::new();
    rep::layers::Parameters::visit(&fused, "", &mut |n, _| names.push(n.to_owned()));
    assert_eq!(names[..2], ["stem.reparam.weight", "stem.reparam.bias"]);
    assert!(names.contains(&"stage2.2.reparam.weight".to_owned()));
    assert_eq!(names[names.len() - 2..], ["head.weight", "head.bias"]);
}

#[test]
fn forward_train_runs_the_whole_model() {
    let mut r = rng(4);
    let mut model = Tiny::new(8, 1, &mut r).unwrap();
    let x = random_tensor((4, 3, 16, 16), &mut r);
    let before = model.stem.dense.bn.running_mean.clone();
    let logits = model.forward_train(&x).unwrap();
    assert_eq!(logits.dim(), (4, 10));
    assert_ne!(model.stem.dense.bn.running_mean, before);
    assert_eq!(model.stage2[0].pointwise.bn.num_batches_tracked, 1);
}

/// `Network::freeze_batch_norm` reaches every BN of the model (stem, stages, identity
/// branches): frozen, both training forwards give the eval forward's logits and leave the
/// running statistics alone; unfrozen again, they use the batch's statistics.
#[test]
fn frozen_batch_norm_reaches_every_layer_of_a_model() {
    use rep::train::Network;
    let mut r = rng(5);
    let mut model = Tiny::new(8, 2, &mut r).unwrap();
    randomize_vectors(&mut model, &mut r);
    let x = random_tensor((4, 3, 16, 16), &mut r);
    let statistics = |m: &Tiny| {
        let mut values = Vec::new();
        rep::layers::Parameters::visit(m, "", &mut |name, t| {
            if name.contains("running") || name.contains("num_batches") {
                values.extend(t.iter().copied());
            }
        });
        values
    };
    let before = statistics(&model);
    let eval = model.forward(&x).unwrap();
    model.freeze_batch_norm(true);
    let (cached, _) = Network::forward_cached(&mut model, &x).unwrap();
    let train = model.forward_train(&x).unwrap();
    assert_eq!(statistics(&model), before, "a frozen BN keeps its running statistics");
    assert!(relative_error(&cached, &eval) <= REL_TOL && relative_error(&train, &eval) <= REL_TOL);
    assert_eq!(model.stage1[1].identity.as_ref().unwrap().num_batches_tracked, 0);

    model.freeze_batch_norm(false);
    let (cached, _) = Network::forward_cached(&mut model, &x).unwrap();
    assert_ne!(statistics(&model), before);
    assert!(relative_error(&cached, &eval) > 1e-3, "unfrozen, the batch's statistics normalize");
}

#[test]
fn channels_that_do_not_chain_are_an_error_at_construction() {
    #[rep::model(new(a: usize, b: usize))]
    pub struct Broken {
        first: RepVgg<3, { a }, 2>,
        second: RepVgg<{ b }, 8, 1>,
    }
    let mut r = rng(0);
    assert!(Broken::new(8, 8, &mut r).is_ok());
    let err = Broken::new(8, 6, &mut r).err().unwrap();
    assert!(matches!(err, Error::Geometry(_)));
    assert_eq!(err.to_string(), "invalid geometry: `second` takes 6 input channels but `first` before it outputs 8");
}

// ---- The reference fixtures, through the DSL: the official layout is `rep::zoo::repvgg::RepVgg`. ----
#[rep::block(post(relu), fused = "reparam_conv")]
pub struct TimmBlock<Cin, Cout, S> {
    conv_kxk: ConvBn<Cin, Cout, 3, S>,
    conv_1x1: ConvBn<Cin, Cout, 1, S>,
    #[rep(when = Cin == Cout && S == 1)]
    identity: Option<Bn<Cout>>,
}

#[rep::model]
pub struct TimmA0W25 {
    stem: TimmBlock<3, 16, 2>,
    #[rep(repeat = 2, rename = "stages.0")]
    stage1: Vec<TimmBlock<16, 16, 2>>,
    #[rep(repeat = 4, rename = "stages.1")]
    stage2: Vec<TimmBlock<16, 32, 2>>,
    #[rep(repeat = 14, rename = "stages.2")]
    stage3: Vec<TimmBlock<32, 64, 2>>,
    #[rep(repeat = 1, rename = "stages.3")]
    stage4: Vec<TimmBlock<64, 256, 2>>,
    pool: GlobalAvgPool,
    #[rep(rename = "head.fc")]
    head: Linear<256, 10>,
}

fn fixture(dir: &str, file: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join(file)
}

/// Loads train weights, checks train and fused logits, and compares our fused state dict with
/// the peer's deploy file key by key (the names must match exactly).
macro_rules! check_fixture {
    ($model:expr, $dir:literal) => {{
        let mut model = $model.unwrap();
        StateDict::load(fixture($dir, "train.safetensors")).unwrap().load_into(&mut model).unwrap();
        let x: Array4<f32> = read_npy(fixture($dir, "input.npy")).unwrap();
        let expect_train: Array2<f32> = read_npy(fixture($dir, "expect_train.npy")).unwrap();
        let expect_deploy: Array2<f32> = read_npy(fixture($dir, "expect_deploy.npy")).unwrap();
        let train_err = relative_error(&model.forward(&x).unwrap(), &expect_train);
        let fused = model.fuse().unwrap();
        let deploy_err = relative_error(&fused.forward(&x).unwrap(), &expect_deploy);
        let ours = StateDict::from_parameters(&fused);
        let peer = StateDict::load(fixture($dir, "deploy.safetensors")).unwrap();
        assert_eq!(ours.tensors.keys().collect::<Vec<_>>(), peer.tensors.keys().collect::<Vec<_>>());
        let weight_err = ours.tensors.iter().map(|(k, t)| relative_error(t, &peer.tensors[k])).fold(0.0f32, f32::max);
        println!("{} via DSL: train {train_err:.2e}, fused {deploy_err:.2e}, weights {weight_err:.2e}", $dir);
        assert!(train_err <= REL_TOL && deploy_err <= REL_TOL && weight_err <= REL_TOL);

        // The peer's deploy file loads into our fused struct as it is.
        let mut reloaded = model.fuse().unwrap();
        peer.load_into(&mut reloaded).unwrap();
        assert!(relative_error(&reloaded.forward(&x).unwrap(), &expect_deploy) <= REL_TOL);
    }};
}

#[test]
fn official_fixture_through_the_dsl() {
    let arch = rep::zoo::repvgg::Arch::new("a0-w25", [2, 4, 14, 1], [16, 16, 32, 64, 256], vec![1; 22], 10).unwrap();
    check_fixture!(rep::zoo::repvgg::RepVgg::new(&arch, &mut rng(0)), "official_a0_w25");
}

#[test]
fn timm_fixture_through_the_dsl() {
    check_fixture!(TimmA0W25::new(&mut rng(0)), "timm_a0_w25");
}
