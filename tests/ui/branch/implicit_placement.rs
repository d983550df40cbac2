#[rep::block]
pub struct Wrong {
    padded: (ImplicitA<8>, Conv<8, 8, 3, 1, Bias<true>>),
    dangling: (Conv<8, 8, 1>, ImplicitA<8>),
}

fn main() {}
