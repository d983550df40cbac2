// Literal `Vec` stages still fix their channels: 32 out of `stage1`, 48 into `stage2`.
#[rep::block(post(relu))]
pub struct RepVgg<Cin, Cout, S> {
    dense: ConvBn<Cin, Cout, 3, S>,
    pointwise: ConvBn<Cin, Cout, 1, S>,
}

#[rep::model]
pub struct Net {
    stem: RepVgg<3, 16, 2>,
    #[rep(repeat = 2)]
    stage1: Vec<RepVgg<16, 32, 2>>,
    #[rep(repeat = 2)]
    stage2: Vec<RepVgg<48, 64, 2>>,
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let _ = Net::new(&mut rng);
}
