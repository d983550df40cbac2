// Deriving what the macros already derive is harmless: the derives are merged.
#[rep::block(post(relu))]
#[derive(Clone, Debug)]
pub struct Block<C> {
    dense: ConvBn<C, C, 3>,
}

#[rep::model]
#[derive(Debug, Clone)]
pub struct Net {
    stem: Block<8>,
}

fn main() {
    let net = Net::new(&mut <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(0)).unwrap();
    let copy = net.clone();
    println!("{:?}", copy.stem.dense.conv.weight().shape());
}
