// A block with a mistake, used in a model (a block, a stage, fused, forwarded): one error, in the
// block, and nothing else.
#[rep::block(post(relu))]
pub struct Broken<Cin, Cout, S> {
    dense: ConvBn<Cin, Cout, 3, S>,
    pointwise: Frobnicate<Cin, Cout>,
}

#[rep::model]
pub struct Net {
    stem: Broken<3, 16, 2>,
    #[rep(repeat = 2)]
    stage: Vec<Broken<16, 32, 2>>,
    pool: GlobalAvgPool,
    head: Linear<32, 10>,
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let net = Net::new(&mut rng).unwrap();
    let fused = rep::Reparameterize::fuse(&net).unwrap();
    let x = rep::ndarray::Array4::zeros((1, 3, 32, 32));
    let _ = (net.forward(&x), fused.forward(&x), rep::plan::Plan::new(&fused, [1, 3, 32, 32]));
}
