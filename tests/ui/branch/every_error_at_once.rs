#[rep::block(post(relu))]
pub struct Wrong {
    dense: ConvBn<8, 16, 3>,
    pointwise: ConvBn<8, 12, 1>,
    strided: ConvBn<8, 16, 1, 2>,
    square: ConvBn<8, 16, 4>,
}

fn main() {}
