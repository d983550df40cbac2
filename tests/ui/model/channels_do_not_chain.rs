#[rep::block(post(relu))]
pub struct RepVgg<Cin, Cout, S> {
    dense: ConvBn<Cin, Cout, 3, S>,
    pointwise: ConvBn<Cin, Cout, 1, S>,
}

#[rep::model]
pub struct Net {
    stem: RepVgg<3, 16, 2>,
    next: RepVgg<8, 32, 2>,
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let _ = Net::new(&mut rng);
}
