// Zero channels given as `Const<0>`: an inline const assertion.
#[rep::block(post(relu))]
pub struct Block<C> {
    dense: ConvBn<C, C, 3>,
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let _ = Block::new(rep::Const::<0>, &mut rng);
}
