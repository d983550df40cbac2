#[rep::block(post(relu), fuse_name = "x")]
pub struct Wrong {
    #[rep(rename = "rbr_dense", skip)]
    dense: ConvBn<8, 8, 3, 1, Stride<2>>,
}

fn main() {}
