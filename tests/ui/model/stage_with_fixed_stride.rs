// A stage's blocks after the first take stride 1, but this block's stride is the literal 2.
#[rep::block(post(relu))]
pub struct Down<Cin, Cout> {
    dense: ConvBn<Cin, Cout, 3, 2>,
}

#[rep::model]
pub struct Net {
    #[rep(repeat = 3)]
    stage: Vec<Down<3, 16>>,
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let _ = Net::new(&mut rng);
}
