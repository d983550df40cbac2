#[rep::block]
pub struct Wrong {
    dense: ConvBn<8, 8, 3>,
    pointwise: ConvBn<8, 8, 1, 1, Padding<1>>,
}

fn main() {}
