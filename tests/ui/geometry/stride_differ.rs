#[rep::block(post(relu))]
pub struct Wrong {
    dense: ConvBn<8, 16, 3, 2>,
    pointwise: ConvBn<8, 16, 1, 1>,
}

fn main() {}
