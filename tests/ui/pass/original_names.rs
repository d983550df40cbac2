// ACNet's own weight names: three branches under the block itself (`rename = ""`), each a
// conv and a BN with its own names. Final keys are unique, so this is accepted.
#[rep::block]
pub struct AcBlock<C> {
    #[rep(rename = "", names("square_conv", "square_bn"))]
    square: (Conv<C, C, 3>, Bn<C>),
    #[rep(rename = "", names("ver_conv", "ver_bn"))]
    ver: (Conv<C, C, 3x1>, Bn<C>),
    #[rep(rename = "", names("hor_conv", "hor_bn"))]
    hor: (Conv<C, C, 1x3>, Bn<C>),
}

fn main() {
    let block = AcBlock::new(8usize, &mut <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0)).unwrap();
    let mut names = Vec::new();
    rep::layers::Parameters::visit(&block, "", &mut |name, _| names.push(name.to_owned()));
    assert!(names.contains(&"square_conv.weight".to_owned()) && names.contains(&"hor_bn.running_var".to_owned()));
    let x = rep::ndarray::Array4::ones((1, 8, 5, 5));
    let fused = rep::Reparameterize::fuse(&block).unwrap();
    let _ = rep::layers::Layer::forward(&fused, &x).unwrap();
}
