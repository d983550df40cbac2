//! `…Fused::new(sizes…)` builds the fused skeleton directly (zero weights): its geometry is
//! exactly what `fuse()` produces, across kernels, strides, groups, dilation, field orders and
//! SE, so that a deploy checkpoint loads into it without a train-time model.

mod common;

use common::{random_tensor, relative_error, rng};
use rep::layers::{Layer, Parameters, randomize_vectors};
use rep::zoo::repvgg::{Arch, RepVgg, RepVggFused};
use rep::{Const, Reparameterize, StateDict};

#[rep::block]
pub struct Asymmetric<C, G> {
    tall: ConvBn<C, C, 3x1, 1, Groups<G>>,
    wide: ConvBn<C, C, 1x3, 1, Groups<G>, Dilation<2>>,
}

#[rep::block(post(silu, se(hidden = C / 4)))]
pub struct PointwiseFirst<C> {
    pointwise: ConvBn<C, C, 1>,
    dense: ConvBn<C, C, 5, 1, Dilation<2>>,
}

/// The skeleton has the fused block's shapes; the fused weights load into it and compute the
/// same function.
fn check<B: Reparameterize + Parameters>(name: &str, block: &mut B, skeleton: B::Fused, channels: usize)
where
    B::Fused: Layer + Parameters,
{
    randomize_vectors(block, &mut rng(1));
    let fused = block.fuse().unwrap();
    let shapes = |m: &dyn Parameters| {
        let mut v = Vec::new();
        m.visit("", &mut |n, t| v.push((n.to_owned(), t.shape().to_vec())));
        v
    };
    assert_eq!(shapes(&skeleton), shapes(&fused), "{name}");
    let mut skeleton = skeleton;
    StateDict::from_parameters(&fused).load_into(&mut skeleton).unwrap();
    let x = random_tensor((2, channels, 11, 9), &mut rng(2));
    let err = relative_error(&skeleton.forward(&x).unwrap(), &fused.forward(&x).unwrap());
    assert!(err == 0.0, "{name}: {err:e}");
}

#[test]
fn fused_skeletons_match_fuse() {
    let mut r = rng(0);
    for (cin, cout, s) in [(8usize, 8usize, 1usize), (4, 8, 2), (6, 6, 2)] {
        let mut block = common::RepVgg::new(cin, cout, s, &mut r).unwrap();
        let skeleton = common::RepVggFused::new(cin, cout, s).unwrap();
        check(&format!("RepVgg-like {cin}->{cout} s{s}"), &mut block, skeleton, cin);
    }
    let mut block = common::RepVgg::new(Const::<8>, Const::<8>, Const::<1>, &mut r).unwrap();
    check("Const sizes", &mut block, common::RepVggFused::new(Const::<8>, Const::<8>, Const::<1>).unwrap(), 8);
    for groups in [1, 2, 4] {
        let mut block = Asymmetric::new(8usize, groups, &mut r).unwrap();
        check(
            &format!("3x1 + dilated 1x3, {groups} groups"),
            &mut block,
            AsymmetricFused::new(8usize, groups).unwrap(),
            8,
        );
    }
    let mut block = PointwiseFirst::new(8usize, &mut r).unwrap();
    check("1x1 declared first, dilated 5x5, SE", &mut block, PointwiseFirstFused::new(8usize).unwrap(), 8);
}

#[test]
fn a_fused_network_is_built_without_its_train_time_form() {
    let arch = Arch::new("small", [1, 2, 1, 1], [8, 16, 16, 32, 32], vec![1, 1, 2, 1, 1, 2], 5).unwrap();
    let mut model = RepVgg::new(&arch, &mut rng(3)).unwrap();
    randomize_vectors(&mut model, &mut rng(4));
    let fused = model.fuse().unwrap();
    let mut skeleton = RepVggFused::new(&arch).unwrap();
    StateDict::from_parameters(&fused).load_into(&mut skeleton).unwrap();
    let x = random_tensor((1, 3, 32, 32), &mut rng(5));
    assert_eq!(skeleton.forward(&x).unwrap(), fused.forward(&x).unwrap());
}
