#[rep::block(post(relu))]
pub struct Wrong {
    dense: ConvBn<8, 16, 3>,
    pointwise: ConvBn<8, 12, 1>,
}

fn main() {}
