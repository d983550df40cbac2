#[rep::block]
pub struct Block<C> {
    dense: ConvBn<C, C, 3>,
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let _ = Block::new(8u32, &mut rng);
}
