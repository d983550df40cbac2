#[rep::block(post(relu))]
pub struct Block<C> {
    dense: ConvBn<C, C, 3, 1, Padding<1>, Padding<2>>,
}

fn main() {}
