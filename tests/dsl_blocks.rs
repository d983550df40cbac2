//! The DSL examples (`examples/blocks.rs`): every block fuses exactly, in both `usize` and
//! `Const` geometry; `forward_train` updates BN statistics and `forward` does not; weight names
//! follow the declaration.

#[allow(dead_code)]
#[path = "../examples/blocks.rs"]
mod blocks;

mod common;

use blocks::{Dbb, OrepaLinear, RepConvN, RepVgg};
use common::{random_tensor, rng};
use rep::layers::{Layer, Parameters};
use rep::{Const, Costs, Error, Hw, Reparameterize, StateDict};

#[test]
fn every_example_block_fuses_exactly() {
    for seed in [0, 1] {
        let outcomes = blocks::check_all(seed).unwrap();
        assert!(outcomes.len() >= 25);
        for o in outcomes {
            assert!(o.relative_error <= common::REL_TOL, "{} {}: {:e}", o.block, o.config, o.relative_error);
            assert!(o.params.1 < o.params.0 && o.macs.1 < o.macs.0, "{} {}: fused must be cheaper", o.block, o.config);
        }
    }
}

fn running_stats(model: &dyn Parameters) -> Vec<f32> {
    let mut values = Vec::new();
    model.visit("", &mut |name, t| {
        if name.contains("running_") {
            values.extend(t.iter().copied());
        }
    });
    values
}

#[test]
fn forward_train_updates_statistics_and_forward_does_not() {
    let mut r = rng(3);
    let x = random_tensor((4, 6, 9, 7), &mut r);
    let mut dbb = Dbb::new(6usize, 6usize, 1usize, 2usize, &mut r).unwrap();
    let before = running_stats(&dbb);
    dbb.forward(&x).unwrap();
    assert_eq!(running_stats(&dbb), before, "eval forward must not touch running statistics");
    dbb.forward_train(&x).unwrap();
    let after = running_stats(&dbb);
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(changed, before.len(), "every BN of every branch updates its statistics");
    assert_eq!(dbb.dbb_avg.1.num_batches_tracked, 1);

    // OREPA's BN after the sum trains too, with batch statistics.
    let mut orepa = OrepaLinear::new(6usize, 8usize, 2usize, &mut r).unwrap();
    let y = orepa.forward_train(&x).unwrap();
    assert_eq!(orepa.bn.num_batches_tracked, 1);
    let mean = y.mean().unwrap();
    assert!(mean > 0.0, "ReLU after a batch-normalized sum: {mean}");
}

#[test]
fn weight_names_follow_the_declaration() {
    let mut r = rng(0);
    let names = |m: &dyn Parameters| {
        let mut n = Vec::new();
        m.visit("stage1.0", &mut |name, _| n.push(name.to_owned()));
        n
    };
    let repconv = RepConvN::new(4usize, 4usize, 1usize, &mut r).unwrap();
    assert_eq!(
        names(&repconv),
        [
            "stage1.0.rbr_dense.0.weight",
            "stage1.0.rbr_dense.1.weight",
            "stage1.0.rbr_dense.1.bias",
            "stage1.0.rbr_dense.1.running_mean",
            "stage1.0.rbr_dense.1.running_var",
            "stage1.0.rbr_1x1.0.weight",
            "stage1.0.rbr_1x1.1.weight",
            "stage1.0.rbr_1x1.1.bias",
            "stage1.0.rbr_1x1.1.running_mean",
            "stage1.0.rbr_1x1.1.running_var",
        ]
    );
    assert_eq!(repconv.rbr_dense.1.eps, 1e-3);
    assert_eq!(repconv.rbr_dense.1.momentum, Some(0.03));
    let fused = repconv.fuse().unwrap();
    assert_eq!(names(&fused), ["stage1.0.rbr_reparam.weight", "stage1.0.rbr_reparam.bias"]);

    let dbb = Dbb::new(4usize, 4usize, 1usize, 1usize, &mut r).unwrap();
    let dbb_names = names(&dbb);
    for expected in
        ["stage1.0.dbb_avg.avgbn.running_var", "stage1.0.dbb_1x1_kxk.idconv1.weight", "stage1.0.dbb_origin.conv.weight"]
    {
        assert!(dbb_names.iter().any(|n| n == expected), "{expected} not in {dbb_names:?}");
    }
}

#[test]
fn checkpoints_round_trip_through_the_generated_names() {
    let mut r = rng(5);
    let source = RepVgg::new(8usize, 8usize, 1usize, 2usize, Const, &mut r).unwrap();
    let mut target = RepVgg::new(8usize, 8usize, 1usize, 2usize, Const, &mut r).unwrap();
    StateDict::from_parameters(&source).load_into(&mut target).unwrap();
    let x = random_tensor((1, 8, 5, 5), &mut r);
    assert_eq!(source.forward(&x).unwrap(), target.forward(&x).unwrap());

    // A checkpoint of a block without identity does not load into one with identity.
    let other = RepVgg::new(8usize, 16usize, 1usize, 2usize, Const, &mut r).unwrap();
    let err = StateDict::from_parameters(&other).load_into(&mut target).unwrap_err();
    assert!(err.to_string().contains("missing key: rbr_identity.weight"), "{err}");
}

#[test]
fn dynamic_geometry_is_checked_at_construction() {
    let mut r = rng(0);
    let err = RepVgg::new(6usize, 8usize, 1usize, 4usize, Const, &mut r).err().unwrap();
    assert!(matches!(err, Error::Geometry(_)), "{err}");
    assert!(err.to_string().contains("groups = G, which does not divide its Cin input channels"), "{err}");
    assert!(RepVgg::new(Const::<8>, 8usize, Const::<1>, 2usize, Const, &mut r).is_ok());
}

#[test]
fn costs_follow_the_conv_formula() {
    let mut r = rng(0);
    let block = RepVgg::new(Const::<16>, Const::<32>, Const::<2>, Const::<1>, Const, &mut r).unwrap();
    let (macs, out) = block.macs(Hw::new(15, 9)).unwrap();
    assert_eq!(out, Hw::new(8, 5));
    // 3×3 branch: 16·9·8·5·32, 1×1 branch: 16·1·8·5·32.
    assert_eq!(macs, 16 * 9 * 40 * 32 + 16 * 40 * 32);
    assert_eq!(block.parameter_count(), 32 * 16 * 9 + 32 * 16 + 4 * 32);
    let fused = block.fuse().unwrap();
    assert_eq!(fused.macs(Hw::new(15, 9)).unwrap().0, 16 * 9 * 40 * 32);
    assert_eq!(fused.parameter_count(), 32 * 16 * 9 + 32);
}

/// timm's SE width, `make_divisible(C / 16, 8)`, written in the block: literal, `Const` and
/// `usize` sizes agree.
#[rep::block(post(se(hidden = make_divisible(Cout / 16, 8)), relu))]
pub struct TimmSe<Cin, Cout> {
    dense: ConvBn<Cin, Cout, 3>,
}

#[test]
fn size_expressions_round_like_timm() {
    let mut r = rng(3);
    let mut small = TimmSe::new(8usize, 48usize, &mut r).unwrap();
    assert_eq!(small.se.down.geometry().out_channels, 8, "48 / 16 = 3 rounds up to the divisor 8");
    let large = TimmSe::new(rep::Const::<8>, rep::Const::<256>, &mut r).unwrap();
    assert_eq!(large.se.down.geometry().out_channels, 16);
    // Non-trivial BN statistics, so that a wrong fold cannot pass.
    rep::layers::randomize_vectors(&mut small, &mut r);
    let x = common::random_tensor((1, 8, 5, 5), &mut r);
    let fused = rep::Reparameterize::fuse(&small).unwrap();
    assert!(common::relative_error(&fused.forward(&x).unwrap(), &small.forward(&x).unwrap()) <= common::REL_TOL);
}
