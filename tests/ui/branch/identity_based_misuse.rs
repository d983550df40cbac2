// `IdentityBased` (DBB's W = I + Δ) is a bias-free 1x1 from C to C channels with stride 1:
// each misuse is one error at the op.
#[rep::block]
pub struct Block {
    dense: ConvBn<4, 8, 3>,
    #[rep(names("a", "b"))]
    wide: (Conv<4, 8, 1, IdentityBased<true>>, Bn<8>),
    #[rep(names("a", "b"))]
    spatial: (Conv<4, 4, 3, IdentityBased<true>>, Conv<4, 8, 1>),
}

fn main() {}
