#[rep::block]
pub struct Wrong {
    dense: ConvBn<6, 8, 3, 1, Groups<4>>,
}

fn main() {}
