#[rep::block(post(relu))]
pub struct Block<C> {
    dense: ConvBn<C, C, 3>,
}
#[rep::model]
pub struct Net {
    stem: Blok<8>,
    pool: GlobalAvgPool,
    head: Linear<8, 2>,
}
fn main() {}
