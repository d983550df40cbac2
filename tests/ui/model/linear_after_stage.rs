// A `Linear` that takes 64 features after a stage that outputs 32 channels.
#[rep::block(post(relu))]
pub struct RepVgg<Cin, Cout, S> {
    dense: ConvBn<Cin, Cout, 3, S>,
    pointwise: ConvBn<Cin, Cout, 1, S>,
}

#[rep::model]
pub struct Net {
    #[rep(repeat = 2)]
    stage: Vec<RepVgg<3, 32, 2>>,
    pool: GlobalAvgPool,
    head: Linear<64, 10>,
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let _ = Net::new(&mut rng);
}
