//! Branches are summed, so the order they are declared in must not matter: an optional
//! identity, a bare identity, an avg-pool branch or a BN declared before the convs gives the
//! same block, which fuses exactly (relative error ≤ 1e-5 against the train-time form).

mod common;

use common::{REL_TOL, random_tensor, relative_error, rng};
use rep::layers::{Layer, randomize_vectors};
use rep::{Const, Reparameterize};

#[rep::block(post(relu))]
pub struct IdentityFirst<Cin, Cout, S> {
    #[rep(when = Cin == Cout && S == 1)]
    identity: Option<Bn<Cout>>,
    dense: ConvBn<Cin, Cout, 3, S>,
    pointwise: ConvBn<Cin, Cout, 1, S>,
}

#[rep::block]
pub struct BareIdentityFirst<C> {
    skip: Identity<C>,
    dense: ConvBn<C, C, 3>,
}

#[rep::block]
pub struct PoolFirst<C, S> {
    pool: (AvgPool<C, 3, S>, Bn<C>),
    dense: ConvBn<C, C, 3, S>,
}

#[rep::block(post(silu))]
pub struct BnFirstGrouped<C, G> {
    bn: Bn<C>,
    dense: ConvBn<C, C, 3, 1, Groups<G>>,
    pointwise: ConvBn<C, C, 1, 1, Groups<G>>,
}

fn assert_fuses<B>(name: &str, block: &mut B, channels: usize)
where
    B: Layer + Reparameterize + rep::layers::Parameters,
    B::Fused: Layer,
{
    randomize_vectors(block, &mut rng(1));
    let x = random_tensor((2, channels, 9, 7), &mut rng(2));
    let fused = block.fuse().unwrap_or_else(|e| panic!("{name}: {e}"));
    let err = relative_error(&fused.forward(&x).unwrap(), &block.forward(&x).unwrap());
    assert!(err <= REL_TOL, "{name}: {err:e}");
}

#[test]
fn declaration_order_does_not_matter() {
    let mut r = rng(0);
    for stride in [1, 2] {
        let mut block = IdentityFirst::new(8usize, 8usize, stride, &mut r).unwrap();
        assert_eq!(block.identity.is_some(), stride == 1);
        assert_fuses(&format!("optional identity first, stride {stride}"), &mut block, 8);
        let mut block = IdentityFirst::new(4usize, 8usize, stride, &mut r).unwrap();
        assert_fuses(&format!("optional identity first, 4 -> 8, stride {stride}"), &mut block, 4);
        let mut block = PoolFirst::new(6usize, stride, &mut r).unwrap();
        assert_fuses(&format!("avg-pool branch first, stride {stride}"), &mut block, 6);
    }
    let mut block = IdentityFirst::new(Const::<8>, Const::<8>, Const::<1>, &mut r).unwrap();
    assert_fuses("optional identity first, Const sizes", &mut block, 8);
    let mut block = BareIdentityFirst::new(5usize, &mut r).unwrap();
    assert_fuses("identity first", &mut block, 5);
    for groups in [1, 2, 4] {
        let mut block = BnFirstGrouped::new(8usize, groups, &mut r).unwrap();
        assert_fuses(&format!("BN first, {groups} groups"), &mut block, 8);
    }
}
