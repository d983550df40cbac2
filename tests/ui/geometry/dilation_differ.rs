#[rep::block]
pub struct Wrong {
    dense: ConvBn<8, 8, 3, 1, Dilation<2>>,
    other: ConvBn<8, 8, 3, 1, Dilation<1>, Padding<2>>,
}

fn main() {}
