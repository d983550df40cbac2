#[rep::block]
pub struct Wrong {
    dense: ConvBn<8, 16, 3>,
    one_kxk: (Conv<8, 4, 1>, Bn<6>, Conv<4, 16, 3>),
}

fn main() {}
