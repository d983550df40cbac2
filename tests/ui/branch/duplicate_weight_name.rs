#[rep::block]
pub struct Wrong {
    #[rep(rename = "conv")]
    dense: ConvBn<8, 8, 3>,
    #[rep(rename = "conv")]
    pointwise: ConvBn<8, 8, 1>,
}

fn main() {}
