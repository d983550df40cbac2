#[rep::block]
pub struct Wrong {
    valid: ConvBn<8, 8, 5, 1, Padding<0>>,
    pointwise: ConvBn<8, 8, 1>,
}

fn main() {}
