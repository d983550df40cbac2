//! Every construct of the block DSL in one place; `main` fuses each block and compares.
use rep::layers::{Layer, randomize_vectors};
use rep::{Const, Reparameterize};

/// Const generics, literal 1x3 / 3x1 kernels, `Bias`, `Padding`, `Eps`, `Momentum`, identity,
/// avg-pool and scale branches, a post-sum BN.
#[rep::block(kernel = 5, post(bn(eps = 1e-3, momentum = 0.03), leaky_relu(0.1)), fused = "conv_reparam")]
pub struct Literal<const C: usize> {
    main: (Conv<C, C, 5, 1, Bias<true>, Padding<2>>, Bn<C, Eps<1e-3>, Momentum<0.03>>),
    row: ConvBn<C, C, 1x3>,
    column: ConvBn<C, C, 3x1, 1, Padding<1x0>>,
    #[rep(rename = "skip")]
    identity: Identity<C>,
    #[rep(names("pool", "scale"))]
    pooled: (AvgPool<C, 3, 1>, Scale<C, Init<0.5>>),
}

/// Dilation: a dilated 3x3, a 1x1 and a dilated 1x3, centred.
#[rep::block(post(relu))]
pub struct Dilated<const C: usize> {
    main: ConvBn<C, C, 3, 1, Dilation<2>>,
    pointwise: ConvBn<C, C, 1>,
    row: ConvBn<C, C, 1x3, 1, Dilation<2>, Padding<0x2>>,
}

/// `Dim` parameters with arithmetic, an optional branch, SE and SiLU after the sum.
#[rep::block(post(silu, se(hidden = Cout / 4)))]
pub struct Dynamic<Cin, Cout, S> {
    dense: ConvBn<Cin, Cout, 3, S>,
    expand: (Conv<Cin, { Cin * 2 }, 1>, Bn<{ Cin * 2 }>, Conv<{ Cin * 2 }, Cout, 3, S>, Bn<Cout>),
    #[rep(when = Cin == Cout && S == 1)]
    identity: Option<Bn<Cout>>,
    #[rep(when = S == 1)]
    scaled: Option<(Identity<Cin>, Scale<Cin>)>,
}

/// OREPA's linear deep stem (two unpadded 3x3 convs, one 5x5), a DCT prior after an
/// identity-initialized 1x1, YOLOR's implicit vectors, BN after the sum (online training forward).
#[rep::block(post(bn))]
pub struct Stem<const C: usize> {
    deep: (Conv<C, C, 3, 1, Padding<0>>, Conv<C, C, 3, 1, Padding<0>>, Scale<C>),
    prior: (Conv<C, C, 1, 1, IdentityInit<true>>, DctPrior<C, 5, 1, Padding<0>>),
}

/// YOLOR's implicit vectors around a 1x1 conv, beside a plain 1x1.
#[rep::block]
pub struct Implicit<const C: usize> {
    plain: Conv<C, C, 1>,
    implicit: (ImplicitA<C>, Conv<C, C, 1>, ImplicitM<C>, Identity<C>),
}

/// Sigmoid and identity post-ops, nothing else.
#[rep::block(post(identity, sigmoid))]
pub struct Plain {
    only: Conv<3, 4, 3, 2, Bias<true>>,
}

fn check<B>(mut block: B, x: &rep::ndarray::Array4<f32>, rng: &mut rep::rand::rngs::StdRng)
where
    B: Layer + rep::layers::Parameters + Reparameterize,
    B::Fused: Layer,
{
    randomize_vectors(&mut block, rng);
    let (a, b) = (block.forward(x).unwrap(), block.fuse().unwrap().forward(x).unwrap());
    let err = rep::compare::difference(&b, &a).unwrap().relative();
    assert!(err < 1e-5, "{err}");
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let x = rep::ndarray::Array4::from_shape_fn((2, 4, 9, 11), |(n, c, h, w)| ((n + c * 3 + h * 5 + w * 7) % 11) as f32 / 5.0 - 1.0);
    check(Literal::<4>::new(&mut rng).unwrap(), &x, &mut rng);
    check(Dilated::<4>::new(&mut rng).unwrap(), &x, &mut rng);
    let mut stem = Stem::<4>::new(&mut rng).unwrap();
    assert_eq!(stem.squeeze().unwrap().geometry.kernel, rep::Hw::square(5));
    let mut structural = stem.clone();
    let (a, b) = (stem.forward_train(&x).unwrap(), structural.forward_train_structural(&x).unwrap());
    assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-4), "online vs structural");
    check(stem, &x, &mut rng);
    check(Implicit::<4>::new(&mut rng).unwrap(), &x, &mut rng);
    check(Dynamic::new(4usize, 4usize, 1usize, &mut rng).unwrap(), &x, &mut rng);
    check(Dynamic::new(Const::<4>, Const::<8>, Const::<2>, &mut rng).unwrap(), &x, &mut rng);
    let x3 = x.slice(rep::ndarray::s![.., 0..3, .., ..]).to_owned();
    check(Plain::new(&mut rng).unwrap(), &x3, &mut rng);
}
