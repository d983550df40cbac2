#[rep::block]
pub struct Wrong {
    stem: (Conv<8, 8, 3>, Conv<8, 8, 3>),
}

fn main() {}
