#[rep::model(new(width: usize))]
pub struct Net {
    head: Linear<16, 10>,
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let _ = Net::new(8, &mut rng);
}
