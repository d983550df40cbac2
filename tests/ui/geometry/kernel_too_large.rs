#[rep::block(kernel = 3)]
pub struct Wrong {
    dense: ConvBn<8, 8, 3>,
    wide: ConvBn<8, 8, 5>,
}

fn main() {}
