#[rep::block(post(relu))]
pub struct Block<C> {
    dense: ConvBn<C, C, 3>,
}
#[rep::model]
pub struct Net {
    stem: Block<8>,
    act: Relu,
    pool: GlobalAvgPool,
    head: Linear<8, 2>,
}
fn main() {}
