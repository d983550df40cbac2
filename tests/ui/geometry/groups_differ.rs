#[rep::block]
pub struct Wrong {
    dense: ConvBn<8, 8, 3, 1, Groups<2>>,
    pointwise: ConvBn<8, 8, 1, 1, Groups<4>>,
}

fn main() {}
