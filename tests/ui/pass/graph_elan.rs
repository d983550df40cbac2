// The same ELAN block with RepConvN (no identity branch) where YOLOv7 puts a re-parameterized
// conv on a concatenation path, and a RepConv with its identity on a plain chain: both compile.
use rep::zoo::yolo::{ConvBnSilu, RepConv, RepConvN};

#[rep::graph]
pub struct Elan {
    cv1: ConvBnSilu<16, 8, 1, 1>,
    rep: RepConvN<8, 8, 1, 1>,
    #[rep(from = (-1, 0))]
    cat: Concat,
    chain: RepConv<16, 16, 1, 1>,
}

fn main() {
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0);
    let _ = Elan::new(&mut rng).unwrap();
}
