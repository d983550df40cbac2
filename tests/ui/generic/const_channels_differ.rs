use rep::Const;

#[rep::block]
pub struct TwoWidths<Cin, Cout, Mid> {
    dense: ConvBn<Cin, Cout, 3>,
    pointwise: ConvBn<Cin, Mid, 1>,
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let _ = TwoWidths::new(Const::<8>, Const::<16>, Const::<12>, &mut rng);
}
