// Two ops of one sequence under one name: their weights would share a key.
#[rep::block]
pub struct Seq<C> {
    #[rep(names("conv", "conv"))]
    branch: (Conv<C, C, 1>, Conv<C, C, 1>),
}

fn main() {}
