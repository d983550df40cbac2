//! The authors' own block checkpoints (`tests/fixtures/blocks/`, written by the original DBB,
//! ACNet and MobileOne code) loaded through the zoo's adapters with no renaming: the train-time form and our
//! fused form reproduce the original's outputs, the original's deploy file loads into our fused
//! form, our export has exactly the original's keys, and the train-time file round-trips bit
//! for bit (DBB's identity-based 1×1 stores its difference from the identity, as the original).

mod common;

use common::{REL_TOL, relative_error};
use ndarray::{Array4, ArrayD};
use ndarray_npy::read_npy;
use rep::layers::{Layer, Parameters};
use rep::zoo::{acnet::AcBlock, dbb::Dbb};
use rep::{Reparameterize, StateDict};
use std::path::PathBuf;

fn fixture(dir: &str, file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blocks").join(dir).join(file)
}

/// Checks one fixture against a block built by its adapter and its fused form.
fn check<B: Layer + Parameters + Reparameterize>(dir: &str, block: &B)
where
    B::Fused: Layer + Parameters + Clone,
{
    let x: Array4<f32> = read_npy(fixture(dir, "input.npy")).unwrap();
    let expect_train: ArrayD<f32> = read_npy(fixture(dir, "expect_train.npy")).unwrap();
    let expect_deploy: ArrayD<f32> = read_npy(fixture(dir, "expect_deploy.npy")).unwrap();
    let train_err = relative_error(&block.forward(&x).unwrap().into_dyn(), &expect_train);
    assert!(train_err <= REL_TOL, "{dir}: train-time form {train_err:e}");

    let fused = block.fuse().unwrap();
    let fused_err = relative_error(&fused.forward(&x).unwrap().into_dyn(), &expect_deploy);
    assert!(fused_err <= REL_TOL, "{dir}: our fused form {fused_err:e}");

    let theirs = StateDict::load(fixture(dir, "deploy.safetensors")).unwrap();
    let ours = StateDict::from_parameters(&fused);
    assert_eq!(
        ours.tensors.keys().collect::<Vec<_>>(),
        theirs.tensors.keys().collect::<Vec<_>>(),
        "{dir}: deploy keys"
    );
    let mut original = fused.clone();
    theirs.load_into(&mut original).unwrap();
    let deploy_err = relative_error(&original.forward(&x).unwrap().into_dyn(), &expect_deploy);
    assert!(deploy_err <= REL_TOL, "{dir}: the original's deploy file {deploy_err:e}");

    let train = StateDict::load(fixture(dir, "train.safetensors")).unwrap();
    assert!(StateDict::from_parameters(block) == train, "{dir}: the train-time file does not round-trip bit for bit");
    println!("{dir}: train {train_err:.1e}, fused {fused_err:.1e}, original deploy {deploy_err:.1e}");
}

#[test]
fn dbb_depthwise() {
    let state = StateDict::load(fixture("dbb_c12_12_s1_dw", "train.safetensors")).unwrap();
    let block = Dbb::from_state_dict(&state, 1).unwrap();
    assert!(matches!(block, Dbb::Depthwise(_)), "groups = out_channels: the depthwise variant");
    check("dbb_c12_12_s1_dw", &block);
}

#[test]
fn dbb_grouped_with_identity_based_1x1() {
    let state = StateDict::load(fixture("dbb_c8_16_s2_g2", "train.safetensors")).unwrap();
    let block = Dbb::from_state_dict(&state, 2).unwrap();
    assert!(matches!(block, Dbb::Identity(_)), "internal width = input width: idconv1");
    check("dbb_c8_16_s2_g2", &block);
}

#[test]
fn acnet() {
    let state = StateDict::load(fixture("acnet_c8_8_s2", "train.safetensors")).unwrap();
    let block = AcBlock::from_state_dict(&state, 2, 1).unwrap();
    check("acnet_c8_8_s2", &block);
}

/// The finding that started the DBB adapter: the checkpoint stores Δ = W − I, so reading it as a
/// whole kernel gives wrong numbers; with the identity-based op a zero Δ is the identity.
#[test]
fn identity_based_1x1_starts_at_the_identity() {
    let g = rep::ConvGeometry::new(4, 4, 1).groups(2);
    let conv = rep::layers::IdentityBasedConv::new(g).unwrap();
    let x = Array4::from_shape_fn((1, 4, 3, 2), |(_, c, i, j)| (c * 6 + i * 2 + j) as f32);
    assert_eq!(conv.forward(&x).unwrap(), x);
    assert!(rep::layers::IdentityBasedConv::new(rep::ConvGeometry::new(4, 8, 1)).is_err());
}

#[test]
fn mobileone_depthwise_two_branches() {
    use rep::zoo::mobileone::MobileOneBlock;
    let state = StateDict::load(fixture("mobileone_dw_c12_k3_s1_b2", "train.safetensors")).unwrap();
    let block = MobileOneBlock::from_state_dict(&state, 1, 12).unwrap();
    assert!(block.conv1.is_some() && block.conv2.is_none() && block.scale.is_some() && block.skip.is_some());
    check("mobileone_dw_c12_k3_s1_b2", &block);
}

#[test]
fn mobileone_pointwise_three_branches_with_se() {
    use rep::zoo::mobileone::MobileOneBlock;
    let state = StateDict::load(fixture("mobileone_pw_c12_24_b3_se", "train.safetensors")).unwrap();
    let block = MobileOneBlock::from_state_dict(&state, 1, 1).unwrap();
    assert!(block.conv2.is_some() && block.conv3.is_none() && block.scale.is_none() && block.se.is_some());
    check("mobileone_pw_c12_24_b3_se", &block);
}

/// A checkpoint loaded into the wrong model says which adapter reads it.
#[test]
fn a_mismatch_names_the_family_whose_naming_the_checkpoint_has() {
    let dbb = StateDict::load(fixture("dbb_c8_16_s2_g2", "train.safetensors")).unwrap();
    let mut acnet = AcBlock::new(8usize, 16usize, 2usize, 1usize, &mut common::rng(0)).unwrap();
    let err = dbb.load_into(&mut acnet).unwrap_err().to_string();
    assert!(
        err.contains("hint: these are the original DBB names: build with `rep::zoo::dbb::Dbb::from_state_dict`"),
        "{err}"
    );
    let acnet_state = StateDict::from_parameters(&acnet);
    let mut wrapped = StateDict::default();
    for (k, v) in acnet_state.tensors {
        wrapped.tensors.insert(format!("module.{k}"), v);
    }
    let err = wrapped.load_into(&mut acnet).unwrap_err().to_string();
    assert!(err.contains("strip_prefix(\"module\")") && !err.contains("ACNet"), "{err}");
}

/// Key maps rename whole segments both ways, and refuse to merge two keys into one.
#[test]
fn key_maps_rename_both_ways() {
    use rep::io::KeyMap;
    let original = StateDict::load(fixture("acnet_c8_8_s2", "train.safetensors")).unwrap();
    let map = KeyMap::new().rule("square_conv", "square.conv").rule("square_bn", "square.bn");
    let ours = map.import(original.clone()).unwrap();
    assert!(
        ours.tensors.contains_key("square.conv.weight") && ours.counters.contains_key("square.bn.num_batches_tracked")
    );
    assert!(ours.tensors.contains_key("hor_conv.weight"), "keys no rule matches stay");
    assert!(map.export(ours).unwrap() == original, "export undoes import");
    let merging = KeyMap::new().rule("ver_conv", "conv").rule("hor_conv", "conv");
    let err = merging.import(original).unwrap_err().to_string();
    assert!(err.contains("would both be renamed `conv.weight`"), "{err}");
}

/// MobileOne-S0 … S4 as Apple's `MobileOne` builds them: the fused parameter counts are the
/// paper's (2.1 M, 4.8 M, 7.8 M, 10.1 M, 14.8 M), the names Apple's, and S0 (four branches) fuses
/// exactly.
#[test]
fn mobileone_networks() {
    use rep::zoo::mobileone::{MobileOne, MobileOneArch};
    let expected = [("S0", 2.1), ("S1", 4.8), ("S2", 7.8), ("S3", 10.1), ("S4", 14.8)];
    for (name, millions) in expected {
        let arch = MobileOneArch::named(name, 1000).unwrap();
        let model = MobileOne::new(&arch, &mut common::rng(0)).unwrap();
        let fused = model.fuse().unwrap();
        let params = rep::Costs::parameter_count(&fused) as f64 / 1e6;
        assert!((params - millions).abs() < 0.06, "{name}: {params:.3} M parameters, the paper says {millions} M");
        println!("MobileOne-{name}: {params:.3} M parameters fused (paper: {millions} M)");
        if name == "S0" {
            let names: Vec<String> = StateDict::from_parameters(&model).tensors.into_keys().collect();
            for key in [
                "stage0.rbr_conv.0.conv.weight",
                "stage1.0.rbr_conv.3.bn.running_var",
                "stage1.1.rbr_skip.weight",
                "linear.bias",
            ] {
                assert!(names.iter().any(|n| n == key), "{key}");
            }
        }
    }
    let arch = MobileOneArch::custom([1, 1, 2, 1], [0.25, 0.25, 0.25, 0.25], 2, true, 10).unwrap();
    let mut model = MobileOne::new(&arch, &mut common::rng(1)).unwrap();
    rep::layers::randomize_vectors(&mut model, &mut common::rng(2));
    let x = common::random_tensor((2, 3, 33, 29), &mut common::rng(3));
    let err = relative_error(&model.fuse().unwrap().forward(&x).unwrap(), &model.forward(&x).unwrap());
    assert!(err <= REL_TOL, "fused MobileOne: {err:e}");
    assert!(MobileOneArch::named("S9", 10).is_err());
}
