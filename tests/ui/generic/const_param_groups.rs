#[rep::block]
pub struct Grouped<const C: usize, const G: usize> {
    dense: ConvBn<C, C, 3, 1, Groups<G>>,
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let _ = Grouped::<6, 4>::new(&mut rng);
}
