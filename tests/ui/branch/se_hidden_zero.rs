// `hidden = 8 / 16` is 0 channels.
#[rep::block(post(relu, se(hidden = 8 / 16)))]
pub struct Block {
    dense: ConvBn<8, 8, 3>,
}

fn main() {}
