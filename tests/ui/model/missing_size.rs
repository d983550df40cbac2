#[rep::block(post(relu))]
pub struct Block<Cin, Cout> {
    dense: ConvBn<Cin, Cout, 3>,
}
#[rep::model]
pub struct Net {
    stem: Block<8>,
    pool: GlobalAvgPool,
    head: Linear<8, 2>,
}
fn main() {}
