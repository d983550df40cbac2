// With `Const` sizes the `when` condition is known at compile time, and so are the checks of
// the branch it guards: at stride 2 there is no identity branch and nothing to check; at
// stride 1 it exists, and a 4-channel identity cannot be added to 8 output channels.
#[rep::block(post(relu))]
pub struct Block<Cin, Cout, S> {
    dense: ConvBn<Cin, Cout, 3, S>,
    #[rep(when = S == 1)]
    identity: Option<Bn<Cin>>,
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let _ = Block::new(rep::Const::<4>, rep::Const::<8>, rep::Const::<2>, &mut rng);
    let _ = Block::new(rep::Const::<4>, rep::Const::<8>, rep::Const::<1>, &mut rng);
}
