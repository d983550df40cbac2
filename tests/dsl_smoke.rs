mod common;
use common::{assert_close, random_tensor, rng};
use rep::layers::{Layer, Parameters};
use rep::{Const, Reparameterize};

/// RepVGG block.
#[rep::block(post(relu), fused = "rbr_reparam")]
pub struct RepVgg<Cin, Cout, S> {
    #[rep(rename = "rbr_dense")]
    dense: ConvBn<Cin, Cout, 3, S>,
    #[rep(rename = "rbr_1x1")]
    pointwise: ConvBn<Cin, Cout, 1, S>,
    #[rep(rename = "rbr_identity", when = Cin == Cout && S == 1)]
    identity: Option<Bn<Cout>>,
}

#[test]
fn smoke() {
    let mut r = rng(1);
    let mut block = RepVgg::new(Const::<4>, Const::<4>, Const::<1>, &mut r).unwrap();
    assert!(block.identity.is_some());
    block.dense.bn.randomize(&mut r);
    let x = random_tensor((2, 4, 7, 5), &mut r);
    let fused = block.fuse().unwrap();
    assert_close("smoke", &fused.forward(&x).unwrap(), &block.forward(&x).unwrap());
    let mut names = vec![];
    block.visit("", &mut |n, _| names.push(n.to_string()));
    println!("{names:?}");
    let dynamic = RepVgg::new(4usize, 8usize, 2usize, &mut r).unwrap();
    assert!(dynamic.identity.is_none());
}
