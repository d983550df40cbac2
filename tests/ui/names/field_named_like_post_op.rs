// A branch field called `bn` next to `post(bn)`: the block stores the post-sum BN in a field of
// that name, so the two would collide.
#[rep::block(post(bn, relu))]
pub struct Block<C> {
    dense: Conv<C, C, 3>,
    bn: Bn<C>,
}

fn main() {}
