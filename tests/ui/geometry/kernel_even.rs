#[rep::block]
pub struct Wrong {
    dense: ConvBn<8, 8, 3>,
    even: ConvBn<8, 8, 2>,
}

fn main() {}
