#[rep::block]
pub struct Wrong {
    dense: ConvBn<8, 8, 3>,
    odd: MaxPool<8, 3>,
}

fn main() {}
