#[rep::block]
pub struct Wrong {
    dense: (Conv<8, 8, 3>, Bn<8>, Relu),
}

fn main() {}
