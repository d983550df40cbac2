#[rep::block(post(relu))]
pub struct Wrong {
    dense: ConvBn<8, 16, 3, 2>,
    identity: Bn<16>,
}

fn main() {}
